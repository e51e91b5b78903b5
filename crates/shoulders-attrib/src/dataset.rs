//! One dataset's attribution index as `shoulders index build` leaves it in a data directory
//! (`D/indexes/<owner>%2F<name>/`, see [`index_name`]: the suffix-array index with its copy map, plus
//! `attribution.json`), and the attribution of a text against it: the spans found, who owns
//! them, and contributor shares. One use case for the CLI (`shoulders attribute`), the API and
//! the gateway: they all call [`DatasetIndex::attribute`] and get an [`AttributionReport`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::budget::Budget;
use crate::index::{
    build_with, BuildMode, DocInput, Holder, Index, IndexError, Match, DEFAULT_WINDOW_BYTES,
    MAX_OUTPUT_BYTES,
};
use crate::normalize::{normalize, NORMALIZATION};
use crate::segments::{
    self, IndexState, LocalShard, Manifest, MergeLock, SegmentEntry, Shard, WriterLock,
    MANIFEST_FILE, MANIFEST_FORMAT,
};
use crate::shares::{byte_credit, informative, Rule, Shares, WindowCredit};

/// `attribution.json` file name inside an index directory.
pub const ATTRIBUTION_FILE: &str = "attribution.json";
/// `format` of `attribution.json`.
pub const ATTRIBUTION_FORMAT: &str = "shoulders-attribution/v2";
/// Largest `attribution.json` read, in bytes.
const MAX_ATTRIBUTION_FILE_BYTES: u64 = 1 << 32;
/// Occurrences listed per span (the count is always exact).
pub const MAX_SOURCES_PER_SPAN: usize = 8;
/// Occurrences scanned, per segment, for the first holder of a paraphrased passage too short
/// for a window ([`DatasetIndex::attribute`]); content more common than that is credited to
/// nobody.
pub const MAX_PASSAGE_HOLDERS: u64 = 4096;

/// What `index build` records beside the index: who contributed each document.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attribution {
    pub format: String,
    pub dataset_id: String,
    /// Ledger size when the index was built (contributions after it are not indexed yet).
    pub ledger_size: u64,
    pub tokenizer: String,
    pub normalization: String,
    pub window_bytes: u32,
    /// In log order (= document order).
    pub contributions: Vec<ContributionInfo>,
}

/// One indexed contribution.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContributionInfo {
    pub contribution: u64,
    pub contributor: String,
}

/// The folder name of `dataset_id`'s indexes: every byte other than `a-z`, `0-9` and `-` is
/// written `%XX`. One-to-one, so two datasets never share a folder (with `/` → `__`, the
/// datasets `a/b__c` and `a__b/c` did, and one was answered from the other's index), and no
/// name contains `.`, so the `.paraphrase` suffix cannot collide with another dataset either.
pub fn index_name(dataset_id: &str) -> String {
    let mut out = String::with_capacity(dataset_id.len() + 4);
    for b in dataset_id.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The dataset id of an index folder name ([`index_name`] reversed); `None` for any other
/// name (the `.paraphrase` and `.lock` entries beside the folders, or a name [`index_name`]
/// never writes).
pub fn dataset_of_index_name(name: &str) -> Option<String> {
    let mut out = Vec::with_capacity(name.len());
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = name.get(i + 1..i + 3)?;
                let v = u8::from_str_radix(hex, 16).ok()?;
                if v.is_ascii_lowercase()
                    || v.is_ascii_digit()
                    || v == b'-'
                    || hex != format!("{v:02X}")
                {
                    return None;
                }
                out.push(v);
                i += 3;
            }
            c if c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// The index directory of `dataset_id` under a data directory.
pub fn index_dir(data_dir: &Path, dataset_id: &str) -> PathBuf {
    data_dir.join("indexes").join(index_name(dataset_id))
}

/// The paraphrase (BM25 passage) index of `dataset_id`, beside its suffix-array index.
pub fn paraphrase_dir(data_dir: &Path, dataset_id: &str) -> PathBuf {
    data_dir
        .join("indexes")
        .join(format!("{}.paraphrase", index_name(dataset_id)))
}

/// Whether `data_dir` holds a built index for `dataset_id` (segmented, or from before
/// segments).
pub fn index_exists(data_dir: &Path, dataset_id: &str) -> bool {
    index_version(data_dir, dataset_id).is_some()
}

/// When the index of `dataset_id` last changed (its manifest's, or for an index from before
/// segments its `attribution.json`'s modification time); `None` when there is none. A cache
/// reopens the index when this changes.
pub fn index_version(data_dir: &Path, dataset_id: &str) -> Option<std::time::SystemTime> {
    let dir = index_dir(data_dir, dataset_id);
    [MANIFEST_FILE, ATTRIBUTION_FILE].iter().find_map(|f| {
        std::fs::metadata(dir.join(f))
            .and_then(|m| m.modified())
            .ok()
    })
}

/// One contribution as it goes into [`build`]: in log order.
pub struct BuildDoc {
    pub contribution: u64,
    pub contributor: String,
    pub bytes: Vec<u8>,
}

/// What [`build`] and [`append`] report.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub dataset_id: String,
    /// The segment written.
    pub index_dir: PathBuf,
    /// Its ledger range `[from_ledger_size, ledger_size)` (0 for a full build).
    pub from_ledger_size: u64,
    /// Segments of the index after this build.
    pub segments: usize,
    pub documents: u64,
    /// Original bytes indexed.
    pub bytes: u64,
    /// Normalised tokens (bytes, separators included).
    pub tokens: u64,
    pub window_bytes: u32,
    pub ledger_size: u64,
    /// Windows of new content (owned by the contribution that holds them).
    pub own_windows: u64,
    /// Windows that copy an earlier contribution (in this segment or an earlier one).
    pub copied_windows: u64,
    /// Contributions whose windows mostly (over half) copy earlier ones.
    pub mostly_copied: Vec<CopiedContribution>,
    /// Passages in the paraphrase index.
    pub paraphrase_passages: u64,
    /// Wall time of the suffix-array index with its copy map, and of the paraphrase index.
    pub index_seconds: f64,
    pub paraphrase_seconds: f64,
}

/// A contribution that is mostly a copy.
#[derive(Debug, Clone, Serialize)]
pub struct CopiedContribution {
    pub contribution: u64,
    pub contributor: String,
    /// Share of its windows that earlier contributions hold, in ppm.
    pub copied_ppm: u64,
}

/// What [`merge`] reports.
#[derive(Debug, Clone, Serialize)]
pub struct MergeReport {
    pub dataset_id: String,
    /// The segments merged, and the one that replaced them.
    pub merged: Vec<String>,
    pub into: String,
    pub from_ledger_size: u64,
    pub to_ledger_size: u64,
    pub documents: u64,
    pub tokens: u64,
    /// Segments of the index after the merge.
    pub segments: usize,
    pub seconds: f64,
}

/// Read and parse `dir/attribution.json`.
pub(crate) fn read_attribution(dir: &Path) -> Result<Attribution, IndexError> {
    let path = dir.join(ATTRIBUTION_FILE);
    let len = std::fs::metadata(&path)
        .map_err(|e| IndexError::Corrupt(format!("{}: {e}", path.display())))?
        .len();
    if len > MAX_ATTRIBUTION_FILE_BYTES {
        return Err(IndexError::Corrupt(format!(
            "{} is too large",
            path.display()
        )));
    }
    let bytes = std::fs::read(&path).map_err(|source| IndexError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        IndexError::Corrupt(format!(
            "{} is not readable ({e}); rebuild the index with `shoulders index build`",
            path.display()
        ))
    })
}

/// A segment just built: its directory, metadata and per-document window counts.
struct BuiltSegment {
    entry: SegmentEntry,
    contributions: Vec<ContributionInfo>,
    bytes: u64,
    window_bytes: u32,
    windows: Vec<u64>,
    own_windows: Vec<u64>,
    seconds: f64,
}

/// Build one segment over `docs` (ledger range `[from, to)`) in `index_dir/name`.
fn build_segment(
    index_dir: &Path,
    name: &str,
    dataset_id: &str,
    (from, to): (u64, u64),
    docs: impl Iterator<Item = Result<BuildDoc, IndexError>>,
    progress: &mut dyn FnMut(u64),
) -> Result<BuiltSegment, IndexError> {
    let target = index_dir.join(name);
    let mut contributions = Vec::new();
    let mut bytes = 0u64;
    let docs = docs.map(|d| {
        d.map(|d| {
            bytes += d.bytes.len() as u64;
            contributions.push(ContributionInfo {
                contribution: d.contribution,
                contributor: d.contributor,
            });
            DocInput {
                contribution: d.contribution,
                bytes: d.bytes,
            }
        })
    });
    let started = std::time::Instant::now();
    let info = build_with(
        &target,
        docs,
        BuildMode::Attribution {
            window_bytes: DEFAULT_WINDOW_BYTES,
        },
        progress,
    )?;
    let layout = info.content.as_ref().expect("attribution build");
    let attribution = Attribution {
        format: ATTRIBUTION_FORMAT.into(),
        dataset_id: dataset_id.to_string(),
        ledger_size: to,
        tokenizer: info.tokenizer.clone(),
        normalization: NORMALIZATION.into(),
        window_bytes: layout.window_bytes,
        contributions: contributions.clone(),
    };
    let json = serde_json::to_vec_pretty(&attribution)
        .map_err(|e| IndexError::Corrupt(format!("cannot encode {ATTRIBUTION_FILE}: {e}")))?;
    write_synced(&target.join(ATTRIBUTION_FILE), &json)?;
    Ok(BuiltSegment {
        entry: SegmentEntry {
            dir: name.to_string(),
            from,
            to,
            documents: info.doc_count,
            tokens: info.token_count,
        },
        contributions,
        bytes,
        window_bytes: layout.window_bytes,
        windows: layout.windows.clone(),
        own_windows: layout.own_windows.clone(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// GC of garbage left by earlier updates, unless a merge is building (its unlisted directory
/// would look like garbage); then the garbage waits for the next update.
fn collect_garbage_if_no_merge(
    data_dir: &Path,
    dataset_id: &str,
    manifest: &Manifest,
) -> Result<(), IndexError> {
    if let Some(_merging) = MergeLock::try_acquire(data_dir, dataset_id)? {
        segments::collect_garbage(&index_dir(data_dir, dataset_id), manifest, &[])?;
    }
    Ok(())
}

/// (Re)build the attribution index of `dataset_id` under `data_dir` from its contributions in
/// log order, as one segment over `[0, ledger_size)` (see [`crate::segments`]; the manifest is
/// swapped atomically, so readers see the old index or the new one). Takes the dataset's
/// [`WriterLock`]. `progress` gets the bytes taken in.
pub fn build(
    data_dir: &Path,
    dataset_id: &str,
    ledger_size: u64,
    docs: impl Iterator<Item = Result<BuildDoc, IndexError>>,
    progress: &mut dyn FnMut(u64),
) -> Result<BuildReport, IndexError> {
    let _lock = WriterLock::acquire(data_dir, dataset_id)?;
    let dir = index_dir(data_dir, dataset_id);
    let old = segments::read_manifest(&dir).ok().flatten();
    if let Some(old) = &old {
        collect_garbage_if_no_merge(data_dir, dataset_id, old)?;
    }
    let generation = old.as_ref().map_or(0, |m| m.generation) + 1;
    let name = segments::segment_name(0, ledger_size, generation);
    let seg = build_segment(&dir, &name, dataset_id, (0, ledger_size), docs, progress)?;
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        dataset_id: dataset_id.to_string(),
        generation,
        ledger_size,
        segments: vec![seg.entry.clone()],
    };
    segments::write_manifest(&dir, &manifest)?;
    // The paraphrase index, from the originals the segment now holds.
    let started = std::time::Instant::now();
    let built = Index::open(&dir.join(&name))?;
    let paraphrase_info = crate::paraphrase::build(
        &paraphrase_dir(data_dir, dataset_id),
        (0..built.doc_count()).map(|d| Ok(original_doc(&built, d))),
    )?;
    drop(built);
    let paraphrase_seconds = started.elapsed().as_secs_f64();
    Ok(report(
        dataset_id,
        &dir,
        &seg,
        1,
        ledger_size,
        &seg.own_windows,
        paraphrase_info.passage_count,
        paraphrase_seconds,
    ))
}

/// Document `d` of an attribution index as it was contributed.
fn original_doc(ix: &Index, d: u32) -> DocInput {
    DocInput {
        contribution: ix.contribution(d).unwrap_or_default(),
        bytes: ix.original(d).unwrap_or_default().to_vec(),
    }
}

#[allow(clippy::too_many_arguments)]
fn report(
    dataset_id: &str,
    dir: &Path,
    seg: &BuiltSegment,
    segments: usize,
    ledger_size: u64,
    own_windows: &[u64],
    paraphrase_passages: u64,
    paraphrase_seconds: f64,
) -> BuildReport {
    let mut mostly_copied = Vec::new();
    for (i, c) in seg.contributions.iter().enumerate() {
        let (w, own) = (seg.windows[i], own_windows[i]);
        if w > 0 && (w - own) * 2 > w {
            mostly_copied.push(CopiedContribution {
                contribution: c.contribution,
                contributor: c.contributor.clone(),
                copied_ppm: (w - own) * 1_000_000 / w,
            });
        }
    }
    let own: u64 = own_windows.iter().sum();
    let all: u64 = seg.windows.iter().sum();
    BuildReport {
        dataset_id: dataset_id.to_string(),
        index_dir: dir.join(&seg.entry.dir),
        from_ledger_size: seg.entry.from,
        segments,
        documents: seg.entry.documents,
        bytes: seg.bytes,
        tokens: seg.entry.tokens,
        window_bytes: seg.window_bytes,
        ledger_size,
        own_windows: own,
        copied_windows: all - own,
        mostly_copied,
        paraphrase_passages,
        index_seconds: seg.seconds,
        paraphrase_seconds,
    }
}

/// Make the contributions after the index attributable without a rebuild: under the
/// dataset's [`WriterLock`], read the manifest's ledger size `from`, take `new_docs(from)` (the
/// dataset's contributions with log index in `[from, ledger_size)`, in log order), build one
/// segment over them alone and swap the manifest. `Ok(None)` when there is nothing to add
/// (`ledger_size` not past the manifest's, or no documents). Needs a segmented index
/// (`E_INDEX_CORRUPT` otherwise: run `index build`). See [`append_using`] for the build
/// report's cost.
pub fn append<I>(
    data_dir: &Path,
    dataset_id: &str,
    ledger_size: u64,
    new_docs: impl FnOnce(u64) -> I,
) -> Result<Option<BuildReport>, IndexError>
where
    I: Iterator<Item = Result<BuildDoc, IndexError>>,
{
    append_using(data_dir, dataset_id, ledger_size, new_docs, None)
}

/// [`append`], measuring the new documents' copied windows against `current` (the index as
/// it stands, e.g. a server's open one) instead of opening the earlier segments again. A
/// window of a new document counts as copied when the new segment's copy map gives it to an
/// earlier document, or when an earlier segment holds it: one matching-statistics pass of the
/// document against each earlier segment (documents over [`MAX_OUTPUT_BYTES`] in pieces),
/// within [`Budget::for_output`] of the document per segment; a pass over its budget leaves
/// the rest of that document counted as its own (the report only; attribution is exact).
pub fn append_using<I>(
    data_dir: &Path,
    dataset_id: &str,
    ledger_size: u64,
    new_docs: impl FnOnce(u64) -> I,
    current: Option<&DatasetIndex>,
) -> Result<Option<BuildReport>, IndexError>
where
    I: Iterator<Item = Result<BuildDoc, IndexError>>,
{
    let _lock = WriterLock::acquire(data_dir, dataset_id)?;
    let dir = index_dir(data_dir, dataset_id);
    let Some(old) = segments::read_manifest(&dir)? else {
        return Err(IndexError::Corrupt(format!(
            "the index of {dataset_id} has no {MANIFEST_FILE} (none built, or built before segments); build it with `shoulders index build`"
        )));
    };
    if ledger_size <= old.ledger_size {
        return Ok(None);
    }
    collect_garbage_if_no_merge(data_dir, dataset_id, &old)?;
    if old.segments.len() >= segments::MAX_SEGMENTS {
        return Err(IndexError::TooLarge(format!(
            "{dataset_id} has {} segments (limit {}); run `shoulders index merge`",
            old.segments.len(),
            segments::MAX_SEGMENTS
        )));
    }
    let mut docs = new_docs(old.ledger_size).peekable();
    if docs.peek().is_none() {
        return Ok(None);
    }
    let generation = old.generation + 1;
    let name = segments::segment_name(old.ledger_size, ledger_size, generation);
    let seg = match build_segment(
        &dir,
        &name,
        dataset_id,
        (old.ledger_size, ledger_size),
        docs,
        &mut |_| {},
    ) {
        Ok(s) => s,
        Err(IndexError::Empty) => return Ok(None),
        Err(e) => return Err(e),
    };
    let new = LocalShard::open(&dir.join(&name), &name)?;
    // Own windows, measured against the earlier segments too.
    let opened;
    let earlier: Vec<&LocalShard> = match current {
        Some(ix) if ix.state() == old.state() => ix.segments.iter().map(|s| s.as_ref()).collect(),
        _ => {
            opened = open_segments(&dir, &old, &[])?;
            opened.iter().map(|s| s.as_ref()).collect()
        }
    };
    let own_windows = own_windows_against(&new, &earlier);
    let mut manifest = old.clone();
    manifest.generation = generation;
    manifest.ledger_size = ledger_size;
    manifest.segments.push(seg.entry.clone());
    segments::write_manifest(&dir, &manifest)?;
    let started = std::time::Instant::now();
    let mut all = earlier.clone();
    all.push(&new);
    let paraphrase_info = paraphrase_catch_up(&paraphrase_dir(data_dir, dataset_id), &all)?;
    let paraphrase_seconds = started.elapsed().as_secs_f64();
    Ok(Some(report(
        dataset_id,
        &dir,
        &seg,
        manifest.segments.len(),
        ledger_size,
        &own_windows,
        paraphrase_info.passage_count,
        paraphrase_seconds,
    )))
}

/// Per document of `new`: windows it owns in its segment that no earlier segment holds.
fn own_windows_against(new: &LocalShard, earlier: &[&LocalShard]) -> Vec<u64> {
    let w = new.window_bytes();
    (0..new.index.doc_count())
        .map(|d| {
            let owners = new.index.doc_window_owners(d);
            let norm = new.index.normalised(d).unwrap_or_default();
            let mut held = vec![false; owners.len()];
            for shard in earlier {
                // Pieces of at most MAX_OUTPUT_BYTES overlapping by a window less one byte, so
                // every window lies whole in one piece.
                let mut at = 0usize;
                while at < owners.len() {
                    let end = (at + MAX_OUTPUT_BYTES).min(norm.len());
                    let piece = &norm[at..end];
                    let mut budget = Budget::for_output(piece.len());
                    let Ok(matches) = shard.index.longest_matches_within(piece, &mut budget) else {
                        break;
                    };
                    for (k, m) in matches.iter().enumerate() {
                        if m.len >= w && at + k < held.len() {
                            held[at + k] = true;
                        }
                    }
                    at = end + 1 - w.min(end + 1);
                    if end == norm.len() {
                        break;
                    }
                }
            }
            owners
                .iter()
                .zip(&held)
                .filter(|(o, h)| **o == Some(d) && !**h)
                .count() as u64
        })
        .collect()
}

/// Open the segments `m` lists, reusing those of `reuse` with the same directory.
fn open_segments(
    dir: &Path,
    m: &Manifest,
    reuse: &[Arc<LocalShard>],
) -> Result<Vec<Arc<LocalShard>>, IndexError> {
    m.segments
        .iter()
        .map(|e| match reuse.iter().find(|s| s.dir == e.dir) {
            Some(s) => Ok(Arc::clone(s)),
            None => Ok(Arc::new(LocalShard::open(&dir.join(&e.dir), &e.dir)?)),
        })
        .collect()
}

/// Merge segments of `dataset_id` into one ([`crate::segments::merge_plan`]; with `force`,
/// all of them): build one segment over their documents (read back from their originals), then
/// swap the manifest. The build runs without the [`WriterLock`] (appends go on meanwhile); the
/// swap takes it and is dropped when the segments merged are no longer all listed. Merges of
/// one dataset run one at a time (a second lock file). `Ok(None)`: nothing to merge, or
/// another merge is running and `wait` is false.
pub fn merge(
    data_dir: &Path,
    dataset_id: &str,
    force: bool,
    wait: bool,
) -> Result<Option<MergeReport>, IndexError> {
    let _merging = if wait {
        MergeLock::acquire(data_dir, dataset_id)?
    } else {
        match MergeLock::try_acquire(data_dir, dataset_id)? {
            Some(l) => l,
            None => return Ok(None),
        }
    };
    let dir = index_dir(data_dir, dataset_id);
    let Some(m) = segments::read_manifest(&dir)? else {
        return Ok(None);
    };
    let range = if force {
        (m.segments.len() >= 2).then_some(0..m.segments.len())
    } else {
        segments::merge_plan(&m.segments)
    };
    let Some(range) = range else {
        return Ok(None);
    };
    let started = std::time::Instant::now();
    let picked = m.segments[range.clone()].to_vec();
    let (from, to) = (picked[0].from, picked[picked.len() - 1].to);
    let name = format!(
        "{}-m{}",
        segments::segment_name(from, to, m.generation + 1),
        crate::index::unique_suffix()
    );
    let shards = open_segments(
        &dir,
        &Manifest {
            segments: picked.clone(),
            ..m.clone()
        },
        &[],
    );
    let shards = shards?;
    let docs = shards.iter().flat_map(|s| {
        (0..s.index.doc_count()).map(move |d| {
            Ok(BuildDoc {
                contribution: s.index.contribution(d).unwrap_or_default(),
                contributor: s.meta.contributions[d as usize].contributor.clone(),
                bytes: s.index.original(d).unwrap_or_default().to_vec(),
            })
        })
    });
    let seg = build_segment(&dir, &name, dataset_id, (from, to), docs, &mut |_| {})?;
    drop(shards);
    let _lock = WriterLock::acquire(data_dir, dataset_id)?;
    let Some(mut now) = segments::read_manifest(&dir)? else {
        let _ = std::fs::remove_dir_all(dir.join(&name));
        return Ok(None);
    };
    let Some(at) = now.segments.iter().position(|s| *s == picked[0]) else {
        let _ = std::fs::remove_dir_all(dir.join(&name));
        return Ok(None);
    };
    if now.segments.get(at..at + picked.len()) != Some(&picked[..]) {
        let _ = std::fs::remove_dir_all(dir.join(&name));
        return Ok(None);
    }
    segments::collect_garbage(&dir, &now, &[&name])?;
    now.segments
        .splice(at..at + picked.len(), [seg.entry.clone()]);
    now.generation += 1;
    segments::write_manifest(&dir, &now)?;
    Ok(Some(MergeReport {
        dataset_id: dataset_id.to_string(),
        merged: picked.iter().map(|s| s.dir.clone()).collect(),
        into: name,
        from_ledger_size: from,
        to_ledger_size: to,
        documents: seg.entry.documents,
        tokens: seg.entry.tokens,
        segments: now.segments.len(),
        seconds: started.elapsed().as_secs_f64(),
    }))
}

/// Open the index of `dataset_id` in `dir` as it stood at `state` (a receipt's), building it
/// there when `dir` does not hold exactly that state: one segment per range of `state`, each
/// from `docs_for_range(from, to)` (the dataset's contributions with log index in `[from, to)`,
/// in log order, e.g. from a content store), and the paraphrase index over all of them.
/// Segments are deterministic functions of their documents, so the index files of each
/// segment are byte-identical to the original's and the reports equal. `dir` plays the role
/// of a data directory (use a temporary one).
pub fn build_state<I>(
    dir: &Path,
    dataset_id: &str,
    state: &IndexState,
    docs_for_range: impl Fn(u64, u64) -> I,
) -> Result<DatasetIndex, IndexError>
where
    I: Iterator<Item = Result<BuildDoc, IndexError>>,
{
    if let Ok(ix) = DatasetIndex::open(dir, dataset_id) {
        if ix.state() == *state {
            return Ok(ix);
        }
    }
    let bad = |why: &str| Err(IndexError::Corrupt(format!("index state: {why}")));
    if state.segments.is_empty() || state.segments.last() != Some(&state.ledger_size) {
        return bad("the last segment must end at the ledger size");
    }
    let _lock = WriterLock::acquire(dir, dataset_id)?;
    let idir = index_dir(dir, dataset_id);
    let generation = segments::read_manifest(&idir)
        .ok()
        .flatten()
        .map_or(0, |m| m.generation)
        + 1;
    let mut entries = Vec::new();
    let mut from = 0u64;
    for &to in &state.segments {
        if to <= from {
            return bad("segment ends must ascend");
        }
        let name = segments::segment_name(from, to, generation);
        let seg = build_segment(
            &idir,
            &name,
            dataset_id,
            (from, to),
            docs_for_range(from, to),
            &mut |_| {},
        )?;
        entries.push(seg.entry);
        from = to;
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        dataset_id: dataset_id.to_string(),
        generation,
        ledger_size: state.ledger_size,
        segments: entries,
    };
    segments::write_manifest(&idir, &manifest)?;
    let shards = open_segments(&idir, &manifest, &[])?;
    crate::paraphrase::build(
        &paraphrase_dir(dir, dataset_id),
        shards
            .iter()
            .flat_map(|s| (0..s.index.doc_count()).map(|d| Ok(original_doc(&s.index, d)))),
    )?;
    drop(shards);
    DatasetIndex::open(dir, dataset_id)
}

/// Bring the passage index in `paraphrase` up to the segments `shards` (in manifest order):
/// append every document above the highest contribution it holds. The manifest is swapped
/// before the passages are appended, so a crash between the two leaves the passage index
/// behind; this catches it up on the next append instead of losing those documents for good.
/// A passage index that is missing or unreadable is rebuilt from the segments.
fn paraphrase_catch_up(
    paraphrase: &Path,
    shards: &[&LocalShard],
) -> Result<crate::paraphrase::ParaphraseInfo, IndexError> {
    let after = match crate::paraphrase::ParaphraseIndex::open(paraphrase) {
        Ok(p) if p.info().doc_count > 0 => Some(p.info().max_contribution),
        Ok(_) => None,
        Err(IndexError::Io { .. }) => {
            return Err(IndexError::Corrupt(format!(
                "{}: cannot be opened for an append; rebuild with `shoulders index build`",
                paraphrase.display()
            )))
        }
        Err(_) => {
            return crate::paraphrase::build(
                paraphrase,
                shards
                    .iter()
                    .flat_map(|s| (0..s.index.doc_count()).map(|d| Ok(original_doc(&s.index, d)))),
            )
        }
    };
    crate::paraphrase::append(
        paraphrase,
        shards.iter().flat_map(|s| {
            (0..s.index.doc_count())
                .filter(move |&d| {
                    after.is_none_or(|a| s.index.contribution(d).is_some_and(|c| c > a))
                })
                .map(|d| Ok(original_doc(&s.index, d)))
        }),
    )
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), IndexError> {
    use std::io::Write;
    let io = |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("json.partial");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Tuning of [`DatasetIndex::attribute`]: what is shown, and which contributions may earn.
#[derive(Debug, Clone)]
pub struct AttributeOptions {
    /// Show at most this many spans, the rarest and longest first (the shares do not depend
    /// on it).
    pub max_spans: usize,
    /// Contributions (ids, as in `attribution.json`) that earn nothing: taken down after a
    /// dispute, or pending or rejected in a reviewed dataset. A window one of them owns goes
    /// to the earliest contribution not listed that holds it, so a takedown takes effect with
    /// the next query, without a rebuild. Ids the index does not hold are ignored.
    pub excluded: BTreeSet<u64>,
}

impl Default for AttributeOptions {
    fn default() -> Self {
        AttributeOptions {
            max_spans: 64,
            excluded: BTreeSet::new(),
        }
    }
}

impl AttributionReport {
    /// Every contribution the report names: credited, or shown as an occurrence of a span.
    pub fn contributions_named(&self) -> impl Iterator<Item = u64> + '_ {
        self.shares
            .contributions_ppm
            .keys()
            .copied()
            .chain(self.spans.iter().flat_map(|s| {
                s.credited
                    .iter()
                    .copied()
                    .chain(s.contributions.iter().map(|c| c.contribution))
            }))
    }
}

/// The attribution of one text: the report every front end shows.
#[derive(Debug, Clone, Serialize)]
pub struct AttributionReport {
    pub dataset_id: String,
    pub tokenizer: String,
    pub normalization: &'static str,
    pub window_bytes: usize,
    /// Bytes of the text as given.
    pub text_tokens: usize,
    pub index_ledger_size: u64,
    /// Maximal spans of the text found in the index (at least a window long), by start.
    pub spans: Vec<ReportSpan>,
    /// When the text quotes nothing: passages it paraphrases above the confidence threshold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paraphrases: Vec<ParaphraseCredit>,
    pub shares: Shares,
    /// Excluded contributions ([`AttributeOptions::excluded`]) that the copy map names as the
    /// owner of a credited window (or of a credited paraphrase's windows): without the list
    /// they would have been credited, so a reader sees that a takedown took effect.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<u64>,
}

/// A passage the text paraphrases ([`crate::paraphrase`]).
#[derive(Debug, Clone, Serialize)]
pub struct ParaphraseCredit {
    /// Where the passage is (original byte range in its contribution).
    pub contribution: u64,
    pub start: u64,
    pub end: u64,
    pub confidence_ppm: u32,
    /// Who is credited for it: the first contributors of its content (the copy map), with
    /// the ppm of the confidence each receives.
    pub credited: BTreeMap<u64, u64>,
}

/// One span of the text found in the dataset.
#[derive(Debug, Clone, Serialize)]
pub struct ReportSpan {
    /// The span as it appears in the text.
    pub text: String,
    /// Byte range in the text as given.
    pub start: usize,
    pub end: usize,
    /// Occurrences of its normalised form in the index.
    pub occurrences: u64,
    /// Contributions credited for its windows (their first contributors).
    pub credited: Vec<u64>,
    /// Up to [`MAX_SOURCES_PER_SPAN`] occurrences, in the original documents.
    pub contributions: Vec<SpanSource>,
}

/// Where a span occurs.
#[derive(Debug, Clone, Serialize)]
pub struct SpanSource {
    pub contribution: u64,
    pub contributor: Option<String>,
    /// Byte offset and length in the original document.
    pub offset: u64,
    pub length: u64,
    /// The contribution credited for this occurrence's content (itself, or the earlier
    /// contribution it copies; never an excluded one).
    pub owner: Option<u64>,
    /// This occurrence's contribution is excluded ([`AttributeOptions::excluded`]): shown, but
    /// it earns nothing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub excluded: bool,
}

/// An opened dataset index: its segments (see [`crate::segments`]) with their contributor
/// metadata. Attribution fans out over the segments and merges their answers into the report
/// one index over all documents would give.
pub struct DatasetIndex {
    /// All segments' metadata together: every contribution in log order, the ledger size
    /// reached.
    pub meta: Attribution,
    segments: Vec<Arc<LocalShard>>,
    state: IndexState,
    window: usize,
    contributor: BTreeMap<u64, String>,
    /// Segment of each contribution.
    segment_of: BTreeMap<u64, usize>,
    /// The paraphrase index, when built (indexes from before it have none).
    paraphrase: Option<crate::paraphrase::ParaphraseIndex>,
}

/// How many times [`DatasetIndex::open`] re-reads the manifest when a segment it lists was
/// replaced (and collected) while it was opening them.
const OPEN_ATTEMPTS: usize = 3;

/// Per output start: the longest match over all segments and its occurrences in all of them.
#[derive(Clone, Copy)]
struct Global {
    len: usize,
    occurrences: u64,
}

impl DatasetIndex {
    /// Open `D/indexes/<dataset>/`: the segments its manifest lists, or an index built before
    /// segments (one directory, no manifest) as a single segment. Missing, unreadable or
    /// old-format files are `E_INDEX_CORRUPT` (rebuild).
    pub fn open(data_dir: &Path, dataset_id: &str) -> Result<Self, IndexError> {
        Self::open_reusing(data_dir, dataset_id, None)
    }

    /// [`DatasetIndex::open`], sharing the segments `previous` already holds open (segments
    /// never change once written): what a server does when the manifest changes.
    pub fn open_reusing(
        data_dir: &Path,
        dataset_id: &str,
        previous: Option<&DatasetIndex>,
    ) -> Result<Self, IndexError> {
        let dir = index_dir(data_dir, dataset_id);
        let reuse = previous.map_or(&[][..], |p| p.segments.as_slice());
        let mut attempt = 0;
        let (segments, state) = loop {
            attempt += 1;
            match segments::read_manifest(&dir)? {
                None => {
                    // Built before segments: the directory itself is the one segment.
                    let meta = read_attribution(&dir)?;
                    let index = Index::open(&dir)?;
                    let state = IndexState {
                        ledger_size: meta.ledger_size,
                        segments: vec![meta.ledger_size],
                    };
                    break (
                        vec![Arc::new(LocalShard::new(String::new(), index, meta)?)],
                        state,
                    );
                }
                Some(m) => match open_segments(&dir, &m, reuse) {
                    Ok(s) => break (s, m.state()),
                    Err(e) if attempt < OPEN_ATTEMPTS => {
                        let _ = e;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            }
        };
        let mut ix = Self::from_segments(segments, state)?;
        let para = paraphrase_dir(data_dir, dataset_id);
        if para.exists() {
            ix.paraphrase = Some(crate::paraphrase::ParaphraseIndex::open(&para)?);
        }
        Ok(ix)
    }

    /// Wrap one index and its metadata (they must describe the same documents).
    pub fn new(index: Index, meta: Attribution) -> Result<Self, IndexError> {
        let state = IndexState {
            ledger_size: meta.ledger_size,
            segments: vec![meta.ledger_size],
        };
        Self::from_segments(
            vec![Arc::new(LocalShard::new(String::new(), index, meta)?)],
            state,
        )
    }

    fn from_segments(
        segments: Vec<Arc<LocalShard>>,
        state: IndexState,
    ) -> Result<Self, IndexError> {
        let first = segments
            .first()
            .ok_or_else(|| IndexError::Corrupt("an index with no segment".into()))?;
        let window = first.window_bytes();
        let mut meta = Attribution {
            contributions: Vec::new(),
            ledger_size: state.ledger_size,
            ..first.meta.clone()
        };
        let mut segment_of = BTreeMap::new();
        let mut last: Option<u64> = None;
        for (i, s) in segments.iter().enumerate() {
            if s.window_bytes() != window || s.meta.dataset_id != meta.dataset_id {
                return Err(IndexError::Corrupt(format!(
                    "segment {} of {} does not match the others; rebuild",
                    s.dir, meta.dataset_id
                )));
            }
            for c in &s.meta.contributions {
                if last.is_some_and(|l| l >= c.contribution) {
                    return Err(IndexError::Corrupt(format!(
                        "segments of {} are not in log order; rebuild",
                        meta.dataset_id
                    )));
                }
                last = Some(c.contribution);
                segment_of.insert(c.contribution, i);
                meta.contributions.push(c.clone());
            }
        }
        let contributor = meta
            .contributions
            .iter()
            .map(|c| (c.contribution, c.contributor.clone()))
            .collect();
        Ok(DatasetIndex {
            meta,
            segments,
            state,
            window,
            contributor,
            segment_of,
            paraphrase: None,
        })
    }

    /// Where the index stands (what a receipt records; see [`build_state`]).
    pub fn state(&self) -> IndexState {
        self.state.clone()
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> impl Iterator<Item = &LocalShard> {
        self.segments.iter().map(|s| s.as_ref())
    }

    /// The largest segment's index: what ∞-gram generation ([`crate::generate`]) samples from
    /// (after a full merge, the whole dataset).
    pub fn generation_index(&self) -> &Index {
        &self
            .segments
            .iter()
            .max_by_key(|s| s.index.info().token_count)
            .expect("at least one segment")
            .index
    }

    /// The contributor of an indexed contribution.
    pub fn contributor(&self, contribution: u64) -> Option<&str> {
        self.contributor.get(&contribution).map(String::as_str)
    }

    fn shards(&self) -> Vec<&LocalShard> {
        self.segments.iter().map(|s| s.as_ref()).collect()
    }

    /// Attribute `text`: credited windows, shares, and the spans to show (see
    /// [`crate::shares`] for the rules).
    pub fn attribute(
        &self,
        text: &str,
        opts: &AttributeOptions,
    ) -> Result<AttributionReport, IndexError> {
        self.attribute_within(text, opts, &mut Budget::for_output(text.len()))
    }

    /// [`DatasetIndex::attribute`] within `budget`: the span search stops with
    /// `E_ATTRIBUTION_BUDGET` when it has spent its steps and `E_ATTRIBUTION_TIMEOUT` at the
    /// budget's deadline or cancellation (the server passes its request deadline). Over
    /// several segments each segment's search gets the whole budget (they run in parallel).
    pub fn attribute_within(
        &self,
        text: &str,
        opts: &AttributeOptions,
        budget: &mut Budget,
    ) -> Result<AttributionReport, IndexError> {
        if text.len() > MAX_OUTPUT_BYTES {
            return Err(IndexError::QueryTooLarge {
                len: text.len(),
                limit: MAX_OUTPUT_BYTES,
            });
        }
        let window = self.window;
        let norm = normalize(text);
        let out = norm.bytes.as_slice();
        let per = self.matching(out, budget)?;
        let global = Self::global(&per);
        let excluded = self.excluded_held(&opts.excluded);
        let mut skipped = BTreeSet::new();
        let owners = self.first_owners(&per, &global);
        let windows =
            self.credit_windows(out, &per, &global, &owners, &excluded, &mut skipped, budget)?;
        let mut owner_at: Vec<Option<u64>> = vec![None; out.len()];
        for w in &windows {
            owner_at[w.start] = Some(w.owner);
        }
        let (weights, evidence_bytes) = byte_credit(&windows, window, out);
        let name = |c: u64| {
            self.contributor(c)
                .map_or_else(|| format!("contribution-{c}"), str::to_string)
        };
        let mut shares = Shares::from_weights(Rule::Spans, evidence_bytes, &weights, name);
        let mut paraphrases = Vec::new();
        if shares.rule == Rule::NoEvidence {
            if let Some(p) = &self.paraphrase {
                paraphrases = self.paraphrased(p, text, &excluded, &mut skipped, budget)?;
                let mut weights: BTreeMap<u64, u128> = BTreeMap::new();
                for m in &paraphrases {
                    for (&c, &ppm) in &m.credited {
                        *weights.entry(c).or_insert(0) += u128::from(ppm);
                    }
                }
                shares = Shares::from_weights(Rule::Paraphrase, 0, &weights, name);
            }
        }
        let spans = self.spans(
            text, &norm, &per, &global, &owners, &owner_at, opts, &excluded, budget,
        )?;
        Ok(AttributionReport {
            dataset_id: self.meta.dataset_id.clone(),
            tokenizer: self.meta.tokenizer.clone(),
            normalization: NORMALIZATION,
            window_bytes: window,
            text_tokens: text.len(),
            index_ledger_size: self.meta.ledger_size,
            spans,
            paraphrases,
            shares,
            excluded: skipped.into_iter().collect(),
        })
    }

    /// The credited windows of the normalised text `text` (sorted by start): every start whose
    /// match is at least a window long and whose window is informative, owned by the copy
    /// map's owner, or, when `opts.excluded` names that owner, by the earliest contribution
    /// not excluded that holds the window (not credited when there is none). What
    /// [`DatasetIndex::attribute_within`] turns into byte credit and shares.
    pub fn credited_windows_within(
        &self,
        text: &str,
        opts: &AttributeOptions,
        budget: &mut Budget,
    ) -> Result<Vec<WindowCredit>, IndexError> {
        if text.len() > MAX_OUTPUT_BYTES {
            return Err(IndexError::QueryTooLarge {
                len: text.len(),
                limit: MAX_OUTPUT_BYTES,
            });
        }
        let out = normalize(text).bytes;
        let per = self.matching(&out, budget)?;
        let global = Self::global(&per);
        let owners = self.first_owners(&per, &global);
        let excluded = self.excluded_held(&opts.excluded);
        self.credit_windows(
            &out,
            &per,
            &global,
            &owners,
            &excluded,
            &mut BTreeSet::new(),
            budget,
        )
    }

    /// Matching statistics of `out` against every segment, in parallel.
    fn matching(&self, out: &[u8], budget: &mut Budget) -> Result<Vec<Vec<Match>>, IndexError> {
        segments::fan_out(&self.shards(), budget, |s, b| s.matching(out, b))
    }

    /// Per start: the longest match over the segments, and the occurrences of that match
    /// (the sum over the segments whose own longest match has that length).
    fn global(per: &[Vec<Match>]) -> Vec<Global> {
        let n = per.first().map_or(0, Vec::len);
        (0..n)
            .map(|i| {
                let len = per.iter().map(|m| m[i].len).max().unwrap_or(0);
                let occurrences = if len == 0 {
                    0
                } else {
                    per.iter()
                        .filter(|m| m[i].len == len)
                        .map(|m| m[i].hi - m[i].lo)
                        .sum()
                };
                Global { len, occurrences }
            })
            .collect()
    }

    /// Per start whose match is at least a window long: the copy-map owner of its window,
    /// i.e. the owner in the first segment that holds the window (earlier segments hold
    /// earlier documents). One batched call per segment.
    fn first_owners(&self, per: &[Vec<Match>], global: &[Global]) -> Vec<Option<u64>> {
        let w = self.window;
        let mut asks: Vec<Vec<usize>> = vec![Vec::new(); per.len()];
        for (i, g) in global.iter().enumerate() {
            if g.len < w {
                continue;
            }
            if let Some(s) = per.iter().position(|m| m[i].len >= w) {
                asks[s].push(i);
            }
        }
        let mut owners = vec![None; global.len()];
        for (s, starts) in asks.iter().enumerate() {
            if starts.is_empty() {
                continue;
            }
            let matches: Vec<Match> = starts.iter().map(|&i| per[s][i]).collect();
            for (&i, o) in starts.iter().zip(self.segments[s].owners(&matches)) {
                owners[i] = o;
            }
        }
        owners
    }

    /// The earliest holder of the window at `i` that `excluded` does not name: the segments
    /// holding it, in order, each asked for its earliest such holder.
    fn earliest_not_excluded(
        &self,
        per: &[Vec<Match>],
        i: usize,
        window: &[u8],
        excluded: &BTreeSet<u64>,
        budget: &mut Budget,
    ) -> Result<Option<u64>, IndexError> {
        for (s, m) in per.iter().enumerate() {
            if m[i].len < self.window {
                continue;
            }
            if let Some(c) = self.segments[s].earliest_holders(&[window], excluded, budget)?[0] {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// The excluded contributions this index holds.
    fn excluded_held(&self, excluded: &BTreeSet<u64>) -> BTreeSet<u64> {
        excluded
            .iter()
            .filter(|c| self.segment_of.contains_key(c))
            .copied()
            .collect()
    }

    /// See [`DatasetIndex::credited_windows_within`]; excluded owners that lost a window are
    /// added to `skipped`. Only windows whose owner is excluded search the segments again (one
    /// binary search and one step per occurrence of the window), so with nothing excluded
    /// this is the copy maps alone.
    #[allow(clippy::too_many_arguments)]
    fn credit_windows(
        &self,
        out: &[u8],
        per: &[Vec<Match>],
        global: &[Global],
        owners: &[Option<u64>],
        excluded: &BTreeSet<u64>,
        skipped: &mut BTreeSet<u64>,
        budget: &mut Budget,
    ) -> Result<Vec<WindowCredit>, IndexError> {
        let window = self.window;
        let mut windows = Vec::new();
        for (i, g) in global.iter().enumerate() {
            if g.len < window || !informative(&out[i..i + window]) {
                continue;
            }
            let Some(mut owner) = owners[i] else {
                continue;
            };
            if excluded.contains(&owner) {
                skipped.insert(owner);
                match self.earliest_not_excluded(per, i, &out[i..i + window], excluded, budget)? {
                    Some(c) => owner = c,
                    None => continue,
                }
            }
            windows.push(WindowCredit { start: i, owner });
        }
        Ok(windows)
    }

    /// Passages `text` paraphrases, each credited to the first contributors of its content:
    /// a passage of a chunked, edited or padded copy is credited to the original, in
    /// proportion to the windows each owns; a passage too short for a window, to the earliest
    /// holder of its normalised bytes ([`DatasetIndex::passage_holder`]). Excluded
    /// contributions earn nothing here either: their windows go to the earliest holder not
    /// excluded, and a passage nobody may be credited for is dropped.
    /// A window's owner is its owner in the first segment holding it: the passage's own
    /// segment answers for itself, the earlier ones are asked whether they hold the window.
    fn paraphrased(
        &self,
        p: &crate::paraphrase::ParaphraseIndex,
        text: &str,
        excluded: &BTreeSet<u64>,
        skipped: &mut BTreeSet<u64>,
        budget: &mut Budget,
    ) -> Result<Vec<ParaphraseCredit>, IndexError> {
        let mut out = Vec::new();
        for m in p.query(text, &crate::paraphrase::ParaphraseOptions::default())? {
            let Some(&seg) = self.segment_of.get(&m.contribution) else {
                continue;
            };
            let wins = self.segments[seg].windows_in(m.contribution, m.start, m.end);
            let has_window = !wins.is_empty();
            let bytes: Vec<&[u8]> = wins.iter().map(|(w, _)| w.as_slice()).collect();
            let mut owner: Vec<Option<u64>> = wins.iter().map(|(_, o)| *o).collect();
            let mut unresolved: Vec<usize> = (0..wins.len()).collect();
            for earlier in &self.segments[..seg] {
                if unresolved.is_empty() {
                    break;
                }
                let ask: Vec<&[u8]> = unresolved.iter().map(|&k| bytes[k]).collect();
                let got = earlier.window_owners(&ask, budget)?;
                let mut still = Vec::new();
                for (&k, o) in unresolved.iter().zip(got) {
                    match o {
                        Some(c) => owner[k] = Some(c),
                        None => still.push(k),
                    }
                }
                unresolved = still;
            }
            let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
            for (k, o) in owner.iter().enumerate() {
                let Some(mut c) = *o else { continue };
                if excluded.contains(&c) {
                    skipped.insert(c);
                    let mut found = None;
                    for s in &self.segments {
                        if let Some(h) = s.earliest_holders(&[bytes[k]], excluded, budget)?[0] {
                            found = Some(h);
                            break;
                        }
                    }
                    match found {
                        Some(h) => c = h,
                        None => continue,
                    }
                }
                *counts.entry(c).or_insert(0) += 1;
            }
            let mut weights: BTreeMap<u64, u128> =
                counts.iter().map(|(&c, &n)| (c, u128::from(n))).collect();
            if !has_window {
                if let Some(c) = self.passage_holder(seg, &m, excluded, skipped, budget)? {
                    weights.insert(c, 1);
                }
            }
            if weights.is_empty() {
                continue;
            }
            let credited = crate::shares::largest_remainder(&weights, u64::from(m.confidence_ppm));
            out.push(ParaphraseCredit {
                contribution: m.contribution,
                start: m.start,
                end: m.end,
                confidence_ppm: m.confidence_ppm,
                credited,
            });
        }
        Ok(out)
    }

    /// Who is credited for passage `m` (of a contribution in segment `seg`) that is too short
    /// for a window: the earliest contribution holding its exact normalised content, so the
    /// short tail of a chunked or edited copy goes to the original, not to the copier. When
    /// that holder is excluded, the earliest holder not excluded. Nobody, when the content
    /// occurs more than [`MAX_PASSAGE_HOLDERS`] times in a segment (common text: bounded work,
    /// and repeating a passage can only take its credit away, never earn it).
    fn passage_holder(
        &self,
        seg: usize,
        m: &crate::paraphrase::ParaphraseMatch,
        excluded: &BTreeSet<u64>,
        skipped: &mut BTreeSet<u64>,
        budget: &mut Budget,
    ) -> Result<Option<u64>, IndexError> {
        let Some(bytes) = self.segments[seg].normalised_in(m.contribution, m.start, m.end) else {
            return Ok(None);
        };
        // Segments are in log order: the first segment with a holder has the earliest one.
        // Content too common in a segment is credited to nobody, not to a later segment.
        let earliest = |excluded: &BTreeSet<u64>, budget: &mut Budget| {
            for s in &self.segments {
                match s.earliest_holder_of(&bytes, excluded, MAX_PASSAGE_HOLDERS, budget)? {
                    Holder::Earliest(c) => return Ok(Some(c)),
                    Holder::TooCommon => return Ok(None),
                    Holder::None => {}
                }
            }
            Ok::<_, IndexError>(None)
        };
        let first = earliest(&BTreeSet::new(), budget)?;
        match first {
            Some(c) if excluded.contains(&c) => {
                skipped.insert(c);
                earliest(excluded, budget)
            }
            other => Ok(other),
        }
    }

    /// The maximal spans at least a window long, mapped back to the text as given. Sources:
    /// each segment holding the whole span gives its first [`MAX_SOURCES_PER_SPAN`]
    /// occurrences by rank; together they are sorted by (contribution, offset) and cut to
    /// [`MAX_SOURCES_PER_SPAN`]. With at most that many occurrences in all, these are all of
    /// them, as with one index; with more, only this display sample may differ from one
    /// index's (a segment's rank order is not the merged rank order).
    #[allow(clippy::too_many_arguments)]
    fn spans(
        &self,
        text: &str,
        norm: &crate::normalize::Normalized,
        per: &[Vec<Match>],
        global: &[Global],
        owners: &[Option<u64>],
        owner_at: &[Option<u64>],
        opts: &AttributeOptions,
        excluded: &BTreeSet<u64>,
        budget: &mut Budget,
    ) -> Result<Vec<ReportSpan>, IndexError> {
        let window = self.window;
        let out = norm.bytes.as_slice();
        let mut found = Vec::new();
        let mut prev_end = 0usize;
        for (i, g) in global.iter().enumerate() {
            let end = i + g.len;
            if g.len >= window && end > prev_end {
                found.push((i, *g));
            }
            prev_end = prev_end.max(end);
        }
        // Most informative first: rarest, then longest, then earliest.
        found.sort_by(|a, b| {
            a.1.occurrences
                .cmp(&b.1.occurrences)
                .then(b.1.len.cmp(&a.1.len))
                .then(a.0.cmp(&b.0))
        });
        found.truncate(opts.max_spans);
        found.sort_by_key(|f| f.0);
        // Source samples: one batched call per segment.
        let mut samples: Vec<Vec<crate::segments::Occurrence>> = vec![Vec::new(); found.len()];
        for (s, m) in per.iter().enumerate() {
            let (idx, asks): (Vec<usize>, Vec<Match>) = found
                .iter()
                .enumerate()
                .filter(|(_, (i, g))| m[*i].len == g.len)
                .map(|(k, (i, _))| (k, m[*i]))
                .unzip();
            if asks.is_empty() {
                continue;
            }
            for (k, occ) in idx
                .into_iter()
                .zip(self.segments[s].sources(&asks, MAX_SOURCES_PER_SPAN))
            {
                samples[k].extend(occ);
            }
        }
        let boundary = |mut x: usize, forward: bool| {
            while x > 0 && x < out.len() && (out[x] & 0xC0) == 0x80 {
                if forward {
                    x += 1;
                } else {
                    x -= 1;
                }
            }
            x
        };
        let mut spans = Vec::with_capacity(found.len());
        for ((i, g), mut sample) in found.into_iter().zip(samples) {
            let (s, e) = (boundary(i, true), boundary(i + g.len, false));
            let (os, oe) = norm.orig_range(s as u64, e.max(s) as u64);
            let credited: BTreeSet<u64> = owner_at[i..=(i + g.len - window)]
                .iter()
                .flatten()
                .copied()
                .collect();
            // Every occurrence starts with the span's first window, so all share its owner; an
            // excluded owner's window was passed on already if it is a credited one.
            let owner = match owners[i] {
                Some(c) if excluded.contains(&c) => {
                    if informative(&out[i..i + window]) {
                        owner_at[i]
                    } else {
                        self.earliest_not_excluded(per, i, &out[i..i + window], excluded, budget)?
                    }
                }
                c => c,
            };
            sample.sort_by_key(|o| (o.contribution, o.offset));
            sample.truncate(MAX_SOURCES_PER_SPAN);
            let contributions = sample
                .into_iter()
                .map(|o| SpanSource {
                    contribution: o.contribution,
                    contributor: self.contributor(o.contribution).map(str::to_string),
                    offset: o.offset,
                    length: o.length,
                    owner,
                    excluded: excluded.contains(&o.contribution),
                })
                .collect();
            spans.push(ReportSpan {
                text: text
                    .get(os as usize..oe as usize)
                    .unwrap_or_default()
                    .to_string(),
                start: os as usize,
                end: oe as usize,
                occurrences: g.occurrences,
                credited: credited.into_iter().collect(),
                contributions,
            });
        }
        Ok(spans)
    }
}
