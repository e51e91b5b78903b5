//! `shoulders index build` and `shoulders attribute`.

use crate::{print_json, CliError};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shoulders_attrib::index::{DocInput, Index, IndexError};
use shoulders_attrib::shares::{shares, Clusterer, SpanEvidence};
use shoulders_ledger::{ContentStore, LedgerError, Reader};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest text `attribute` accepts, in bytes.
pub const MAX_TEXT_BYTES: u64 = 1024 * 1024;
/// Spans occurring more often than this (copies included) are not looked up.
const MAX_RAW_OCCURRENCES: u64 = 1000;

/// What `index build` records beside the index: who contributed each document and its cluster.
#[derive(Serialize, Deserialize)]
struct Attribution {
    format: String,
    dataset_id: String,
    /// Ledger size when the index was built (contributions after it are not indexed yet).
    ledger_size: u64,
    tokenizer: String,
    contributions: Vec<ContributionInfo>,
}

#[derive(Serialize, Deserialize)]
struct ContributionInfo {
    contribution: u64,
    contributor: String,
    tokens: u64,
    /// The earliest contribution of its duplicate cluster.
    cluster: u64,
}

fn index_dir(data_dir: &Path, dataset_id: &str) -> PathBuf {
    data_dir.join("indexes").join(dataset_id.replace('/', "__"))
}

/// Build and print the index report.
pub fn build(data_dir: &Path, dataset_id: &str) -> Result<()> {
    print_json(&build_index(data_dir, dataset_id)?)
}

/// (Re)build the index of `dataset_id`; returns the report `index build` prints.
pub fn build_index(data_dir: &Path, dataset_id: &str) -> Result<serde_json::Value> {
    let dir = crate::data_dir(data_dir);
    let reader = Reader::open(&dir)?;
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
    let mut total = 0u64;
    let mut meta = Vec::with_capacity(dataset.contributions.len());
    for &index in &dataset.contributions {
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
        total += c.byte_size;
        meta.push((index, c.contributor.clone(), c.content_hash.clone()));
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "indexing {bar:40} {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("static template"),
    );
    // Documents stream from the content store (each checked against its hash) into the index
    // builder and the duplicate clusterer; only the token array and the suffix array are held
    // whole.
    let clusterer = std::cell::RefCell::new(Clusterer::new());
    let target = index_dir(data_dir, dataset_id);
    let docs = meta.iter().map(|(index, _, hash)| {
        let bytes = store.get(hash).map_err(|e| IndexError::Io {
            path: PathBuf::from(hash),
            source: std::io::Error::other(e.to_string()),
        })?;
        clusterer.borrow_mut().add(*index, &bytes);
        bar.inc(bytes.len() as u64);
        Ok(DocInput {
            contribution: *index,
            bytes,
        })
    });
    let info = shoulders_attrib::index::build(&target, docs, &mut |_| {})?;
    bar.finish_and_clear();
    let cluster_of = clusterer.into_inner().finish();
    let attribution = Attribution {
        format: "shoulders-attribution/v1".into(),
        dataset_id: dataset_id.to_string(),
        ledger_size: reader.size(),
        tokenizer: "bytes-utf8".into(),
        contributions: meta
            .iter()
            .map(|(c, who, _)| ContributionInfo {
                contribution: *c,
                contributor: who.clone(),
                tokens: state.contribution(*c).map_or(0, |x| x.token_count),
                cluster: cluster_of[c],
            })
            .collect(),
    };
    let path = target.join("attribution.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&attribution)?)
        .with_context(|| format!("write {}", path.display()))?;
    let clusters_count = cluster_of.iter().filter(|(c, r)| c == r).count();
    Ok(json!({
        "dataset_id": dataset_id,
        "index_dir": target,
        "documents": meta.len(),
        "tokens": total,
        "duplicate_clusters": clusters_count,
        "pointer_bytes": info.pointer_width,
        "ledger_size": reader.size(),
    }))
}

/// Index a directory of UTF-8 files (one document each, in order of relative path, numbered
/// from 0) without a ledger: for cross-checks against infini-gram and for benchmarks.
pub fn build_files(docs_dir: &Path, out: &Path) -> Result<()> {
    let mut files = Vec::new();
    let mut stack = vec![docs_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
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
        std::fs::read(path)
            .map(|bytes| DocInput {
                contribution: i as u64,
                bytes,
            })
            .map_err(|source| shoulders_attrib::index::IndexError::Io {
                path: path.clone(),
                source,
            })
    });
    let start = std::time::Instant::now();
    let info = shoulders_attrib::index::build(out, docs, &mut |_| {})?;
    print_json(&json!({
        "index_dir": out,
        "documents": info.doc_count,
        "tokens": info.token_count,
        "pointer_bytes": info.pointer_width,
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
    /// Shortest span reported, in tokens (bytes).
    #[arg(long, default_value_t = 16)]
    pub min_len: usize,
    /// Spans found in more independent sources (duplicate clusters) than this are too common
    /// to attribute.
    #[arg(long, default_value_t = 10)]
    pub max_occurrences: u64,
    /// Keep at most this many spans, the rarest and longest first.
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
    let dir = index_dir(&args.data_dir, &args.dataset_id);
    if !dir.join("attribution.json").exists() {
        return Err(LedgerError::NotFound(format!(
            "no index for {}; run `shoulders index build --data-dir {} {}`",
            args.dataset_id,
            args.data_dir.display(),
            args.dataset_id
        ))
        .into());
    }
    let index = Index::open(&dir)?;
    let meta: Attribution = serde_json::from_slice(&std::fs::read(dir.join("attribution.json"))?)
        .context("attribution.json is not readable; rebuild the index")?;
    let contributor: BTreeMap<u64, String> = meta
        .contributions
        .iter()
        .map(|c| (c.contribution, c.contributor.clone()))
        .collect();
    let cluster_of: BTreeMap<u64, u64> = meta
        .contributions
        .iter()
        .map(|c| (c.contribution, c.cluster))
        .collect();
    let tokens_of: BTreeMap<u64, u64> = meta
        .contributions
        .iter()
        .map(|c| (c.contribution, c.tokens))
        .collect();

    let bytes = text.as_bytes();
    // Occurrences are judged per duplicate cluster, not per copy: a span found in one document
    // and its ten copies is as rare, and as informative, as a span found once. Raw occurrences
    // above MAX_RAW_OCCURRENCES are too common to look up.
    let spans = index.maximal_spans(bytes, args.min_len, MAX_RAW_OCCURRENCES)?;
    let mut found = Vec::with_capacity(spans.len());
    for s in spans {
        let hits = index.find(&bytes[s.start..s.end], MAX_RAW_OCCURRENCES as usize)?;
        let clusters: std::collections::BTreeSet<u64> = hits
            .iter()
            .filter_map(|h| cluster_of.get(&h.contribution).copied())
            .collect();
        if clusters.is_empty() || clusters.len() as u64 > args.max_occurrences {
            continue;
        }
        found.push((s, hits, clusters.len() as u64));
    }
    // Most informative first: rarest (fewest independent sources), then longest, then earliest.
    found.sort_by(|a, b| {
        a.2.cmp(&b.2)
            .then((b.0.end - b.0.start).cmp(&(a.0.end - a.0.start)))
            .then(a.0.start.cmp(&b.0.start))
    });
    found.truncate(args.max_spans);
    found.sort_by_key(|f| f.0.start);
    let mut evidence = Vec::with_capacity(found.len());
    let mut shown = Vec::with_capacity(found.len());
    for (s, hits, sources) in &found {
        shown.push(json!({
            "text": String::from_utf8_lossy(&bytes[s.start..s.end]),
            "start": s.start,
            "end": s.end,
            "occurrences": s.occurrences,
            "independent_sources": sources,
            "contributions": hits.iter().map(|h| json!({
                "contribution": h.contribution,
                "offset": h.offset,
                "contributor": contributor.get(&h.contribution),
                "cluster": cluster_of.get(&h.contribution),
            })).collect::<Vec<_>>(),
        }));
        evidence.push(SpanEvidence {
            len: (s.end - s.start) as u64,
            contributions: hits.iter().map(|h| h.contribution).collect(),
        });
    }
    let shares =
        shares(&evidence, &cluster_of, &contributor, &tokens_of).ok_or_else(|| CliError {
            code: "E_INDEX_EMPTY",
            message: "the index holds no contributions".into(),
        })?;
    Ok(json!({
        "dataset_id": args.dataset_id,
        "tokenizer": meta.tokenizer,
        "text_tokens": bytes.len(),
        "index_ledger_size": meta.ledger_size,
        "spans": shown,
        "shares": shares,
    }))
}
