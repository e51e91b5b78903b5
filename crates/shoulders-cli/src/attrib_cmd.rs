//! `shoulders index build`, `shoulders index verify` and `shoulders attribute`.

use crate::{print_json, CliError};
use anyhow::{Context, Result};
use serde_json::json;
use shoulders_attrib::dataset::{self, index_exists, AttributeOptions, BuildDoc, DatasetIndex};
use shoulders_attrib::index::{BuildMode, DocInput, IndexError, DEFAULT_WINDOW_BYTES};
use shoulders_ledger::{ContentStore, LedgerError, Reader};
use std::path::{Path, PathBuf};

/// Largest text `attribute` accepts, in bytes.
pub const MAX_TEXT_BYTES: u64 = 1024 * 1024;

/// Build and print the index report.
pub fn build(data_dir: &Path, dataset_id: &str) -> Result<()> {
    print_json(&build_index(data_dir, dataset_id)?)
}

/// (Re)build the index of `dataset_id` as one segment; returns the report `index build`
/// prints.
pub fn build_index(data_dir: &Path, dataset_id: &str) -> Result<serde_json::Value> {
    let dir = crate::data_dir(data_dir);
    let mut reader = Reader::open(&dir)?;
    let state = reader.state()?;
    let dataset = state.dataset(dataset_id).ok_or_else(|| {
        LedgerError::NotFound(format!("no dataset {dataset_id:?} in this ledger"))
    })?;
    if dataset.contributions.is_empty() {
        return Err(CliError {
            code: "E_INDEX_EMPTY",
            message: format!("dataset {dataset_id} has no contributions yet"),
        }
        .into());
    }
    let store = ContentStore::new(&dir);
    let meta = contribution_meta(&state, &store, &dataset.contributions)?;
    let total = meta.iter().map(|m| m.3).sum();
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "indexing {bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("static template"),
    );
    // Documents stream from the content store (each checked against its hash) into the index
    // builder; only the token array, the suffix array and the PLCP array are held whole.
    let docs = stream_docs(&store, &meta, Some(&bar));
    let report = dataset::build(data_dir, dataset_id, reader.size(), docs, &mut |_| {})?;
    bar.finish_and_clear();
    Ok(serde_json::to_value(report)?)
}

/// (index, contributor, content hash, bytes) of each contribution, checking that the content
/// store holds it.
fn contribution_meta(
    state: &shoulders_state::State,
    store: &ContentStore,
    contributions: &[u64],
) -> Result<Vec<(u64, String, String, u64)>> {
    let mut meta = Vec::with_capacity(contributions.len());
    for &index in contributions {
        let c = state
            .contribution(index)
            .expect("dataset contributions exist");
        if !store.contains(&c.content_hash) {
            return Err(LedgerError::NotFound(format!(
                "the content of contribution {index} ({}) is not in this data directory's content store; \
                 add it with `shoulders contribute` or copy it into content/sha256/",
                c.content_hash
            ))
            .into());
        }
        meta.push((
            index,
            c.contributor.clone(),
            c.content_hash.clone(),
            c.byte_size,
        ));
    }
    Ok(meta)
}

/// The documents of `meta`, read from the content store.
fn stream_docs<'a>(
    store: &'a ContentStore,
    meta: &'a [(u64, String, String, u64)],
    bar: Option<&'a indicatif::ProgressBar>,
) -> impl Iterator<Item = Result<BuildDoc, IndexError>> + 'a {
    meta.iter().map(move |(index, who, hash, _)| {
        let bytes = store.get(hash).map_err(|e| IndexError::Io {
            path: PathBuf::from(hash),
            source: std::io::Error::other(e.to_string()),
        })?;
        if let Some(bar) = bar {
            bar.inc(bytes.len() as u64);
        }
        Ok(BuildDoc {
            contribution: *index,
            contributor: who.clone(),
            bytes,
        })
    })
}

/// `index update`: append a segment over the contributions since the index (a full build when
/// the dataset has no segmented index yet), then merge segments as the policy says. Prints
/// `{"appended": report or null, "merged": report or null}`.
pub fn update(data_dir: &Path, dataset_id: &str) -> Result<()> {
    print_json(&update_index(data_dir, dataset_id)?)
}

/// See [`update`].
pub fn update_index(data_dir: &Path, dataset_id: &str) -> Result<serde_json::Value> {
    let idir = dataset::index_dir(data_dir, dataset_id);
    if shoulders_attrib::segments::read_manifest(&idir)?.is_none() {
        let built = build_index(data_dir, dataset_id)?;
        return Ok(json!({ "appended": built, "merged": null, "full_build": true }));
    }
    let dir = crate::data_dir(data_dir);
    let mut reader = Reader::open(&dir)?;
    let state = reader.state()?;
    let dataset = state.dataset(dataset_id).ok_or_else(|| {
        LedgerError::NotFound(format!("no dataset {dataset_id:?} in this ledger"))
    })?;
    let store = ContentStore::new(&dir);
    let size = reader.size();
    let mut meta = Vec::new();
    let mut failed = None;
    let appended = dataset::append(data_dir, dataset_id, size, |from| {
        let new: Vec<u64> = dataset
            .contributions
            .iter()
            .copied()
            .filter(|&c| c >= from && c < size)
            .collect();
        match contribution_meta(&state, &store, &new) {
            Ok(m) => meta = m,
            Err(e) => failed = Some(e),
        }
        stream_docs(&store, &meta, None)
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let appended = appended?;
    let merged = dataset::merge(data_dir, dataset_id, false, true)?;
    Ok(json!({ "appended": appended, "merged": merged }))
}

/// `index merge`: merge every segment of the dataset into one.
pub fn merge(data_dir: &Path, dataset_id: &str) -> Result<()> {
    let merged = dataset::merge(data_dir, dataset_id, true, true)?;
    print_json(&json!({ "merged": merged }))
}

/// `index verify`: open the dataset's index and run every per-token check on each segment
/// ([`shoulders_attrib::index::Index::verify_full`]); prints what was checked and how long it
/// took.
pub fn verify(data_dir: &Path, dataset_id: &str) -> Result<()> {
    let started = std::time::Instant::now();
    let index = DatasetIndex::open(data_dir, dataset_id)?;
    let open_seconds = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let (mut documents, mut tokens) = (0u64, 0u64);
    let mut segments = Vec::new();
    for seg in index.segments() {
        seg.index.verify_full()?;
        let info = seg.index.info();
        documents += info.doc_count;
        tokens += info.token_count;
        segments.push(json!({
            "dir": seg.dir,
            "documents": info.doc_count,
            "tokens": info.token_count,
            "pointer_bytes": info.pointer_width,
        }));
    }
    print_json(&json!({
        "dataset_id": dataset_id,
        "index_dir": dataset::index_dir(data_dir, dataset_id),
        "ok": true,
        "documents": documents,
        "tokens": tokens,
        "window_bytes": index.generation_index().window(),
        "segments": segments,
        "open_seconds": open_seconds,
        "verify_seconds": started.elapsed().as_secs_f64(),
    }))
}

/// Index a directory of UTF-8 files (one document each, in order of relative path, numbered
/// from 0) without a ledger: for cross-checks against infini-gram and for benchmarks. With
/// `attribution`, the full attribution build (normalisation, originals, copy map).
pub fn build_files(docs_dir: &Path, out: &Path, attribution: bool) -> Result<()> {
    let mut files = Vec::new();
    let mut stack = vec![docs_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
            let entry = entry?;
            let (path, kind) = (entry.path(), entry.file_type()?);
            // Not through symbolic links: only the directory's own regular files.
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                files.push(path);
            }
        }
    }
    files.sort_by(|a, b| {
        a.strip_prefix(docs_dir)
            .ok()
            .cmp(&b.strip_prefix(docs_dir).ok())
    });
    let docs = files.iter().enumerate().map(|(i, path)| {
        shoulders_artifacts::files::read_regular_file(path, shoulders_attrib::index::MAX_DOC_BYTES)
            .map(|bytes| DocInput {
                contribution: i as u64,
                bytes,
            })
            .map_err(|e| shoulders_attrib::index::IndexError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })
    });
    let start = std::time::Instant::now();
    let mode = if attribution {
        BuildMode::Attribution {
            window_bytes: DEFAULT_WINDOW_BYTES,
        }
    } else {
        BuildMode::Plain
    };
    let info = shoulders_attrib::index::build_with(out, docs, mode, &mut |_| {})?;
    let copied: Option<u64> = info
        .content
        .as_ref()
        .map(|c| c.windows.iter().sum::<u64>() - c.own_windows.iter().sum::<u64>());
    print_json(&json!({
        "index_dir": out,
        "documents": info.doc_count,
        "tokens": info.token_count,
        "pointer_bytes": info.pointer_width,
        "copied_windows": copied,
        "build_seconds": start.elapsed().as_secs_f64(),
    }))
}

/// Arguments of `shoulders attribute`.
#[derive(clap::Args)]
pub struct AttributeArgs {
    #[arg(long)]
    pub data_dir: PathBuf,
    #[arg(long = "dataset")]
    pub dataset_id: String,
    /// The output to attribute (UTF-8 text, at most 1 MiB).
    #[arg(long)]
    pub text: PathBuf,
    /// Show at most this many spans, the rarest and longest first (the shares always count
    /// every span).
    #[arg(long, default_value_t = 64)]
    pub max_spans: usize,
}

/// Attribute a text file and print the spans and shares.
pub fn attribute(args: AttributeArgs) -> Result<()> {
    print_json(&attribute_value(args)?)
}

/// The spans and shares `attribute` prints.
pub fn attribute_value(args: AttributeArgs) -> Result<serde_json::Value> {
    let text = crate::read_limited(&args.text, MAX_TEXT_BYTES, "text", "E_TEXT_TOO_LARGE")?;
    if text.is_empty() {
        return Err(CliError {
            code: "E_TEXT_EMPTY",
            message: format!("{} is empty", args.text.display()),
        }
        .into());
    }
    let text = String::from_utf8(text).map_err(|_| CliError {
        code: "E_TEXT_NOT_UTF8",
        message: format!("{} is not UTF-8 text", args.text.display()),
    })?;
    if !index_exists(&args.data_dir, &args.dataset_id) {
        return Err(LedgerError::NotFound(format!(
            "no index for {}; run `shoulders index build --data-dir {} {}`",
            args.dataset_id,
            args.data_dir.display(),
            args.dataset_id
        ))
        .into());
    }
    let index = DatasetIndex::open(&args.data_dir, &args.dataset_id)?;
    // Takedowns and pending reviews apply at once: the ledger's current exclusions (a
    // directory holding only an index, as `index build-files` writes, has none).
    let dir = crate::data_dir(&args.data_dir);
    let state = if dir.exists() {
        Some(Reader::open(&dir)?.state()?)
    } else {
        None
    };
    let excluded = state
        .as_ref()
        .map(|s| s.attribution_excluded(&args.dataset_id))
        .unwrap_or_default();
    let report = index.attribute(
        &text,
        &AttributeOptions {
            max_spans: args.max_spans,
            excluded,
        },
    )?;
    // Reserved content is still found and credited; the report says which (a violation of a
    // do-not-train mark is visible).
    let reserved = state
        .as_ref()
        .map(|s| s.tdm_reserved_among(report.contributions_named()))
        .unwrap_or_default();
    let mut v = serde_json::to_value(report)?;
    if !reserved.is_empty() {
        v["tdm_reserved"] = serde_json::json!(reserved);
    }
    Ok(v)
}
