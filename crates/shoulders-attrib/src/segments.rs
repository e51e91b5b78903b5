//! Segmented attribution indexes: a dataset's index is a list of **segments**, each an ordinary
//! index directory ([`crate::dataset`]'s single-index layout) over the contributions whose log
//! index lies in a range `[from, to)` of ledger sizes. Segments are disjoint and consecutive in
//! log order, so the global document order is segment order, then document order inside a
//! segment, and contribution ids increase along it.
//!
//! * **Manifest.** `D/indexes/<name>/segments.json` ([`Manifest`]) lists the segments; it is the
//!   single source of truth, replaced atomically (temporary file, fsync, rename, fsync of the
//!   directory). Segment directories (`seg-<from>-<to>-g<generation>`) are immutable once
//!   renamed into place; those the manifest does not list are garbage, removed by the writer
//!   on its next update ([`collect_garbage`]), never by readers. A crash at any point leaves
//!   the previous manifest or the new one, each listing complete segments.
//! * **Writers** (`index build`, `index update`, `index merge`, the server's follow loop) take
//!   the dataset's lock file ([`WriterLock`]); readers never lock.
//! * **Queries** fan out over the segments through the [`Shard`] trait (one local segment is
//!   [`LocalShard`]; a remote index node would answer the same calls over HTTP) and merge the
//!   answers so that the report equals that of one index over all documents
//!   ([`crate::dataset::DatasetIndex::attribute_within`]).
//! * **Merges** ([`merge_plan`]) keep the number of segments logarithmic in the corpus size.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::budget::Budget;
use crate::dataset::{Attribution, ContributionInfo};
use crate::index::{io_err, Holder, Index, IndexError, Match};

/// The manifest's file name inside `D/indexes/<name>/`.
pub const MANIFEST_FILE: &str = "segments.json";
/// `format` of the manifest.
pub const MANIFEST_FORMAT: &str = "shoulders-segments/v1";
/// Largest manifest read, in bytes.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// Most segments a manifest may list; an append beyond it fails with `E_INDEX_TOO_LARGE`
/// (merge first). The merge policy keeps far fewer ([`merge_plan`]).
pub const MAX_SEGMENTS: usize = 64;
/// Size ratio of the merge policy: a segment is merged with all newer ones while it holds at
/// most this many times their tokens.
pub const MERGE_FACTOR: u64 = 10;
/// Prefix of segment directory names.
const SEGMENT_PREFIX: &str = "seg-";

/// What `segments.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: String,
    pub dataset_id: String,
    /// Bumped by every manifest write; part of new segment directory names, so a directory
    /// name is never reused.
    pub generation: u64,
    /// Ledger size reached: every contribution below it is in a segment.
    pub ledger_size: u64,
    /// In log order; `segments[0].from == 0`, each `from` the previous `to`, the last `to`
    /// equal to `ledger_size`.
    pub segments: Vec<SegmentEntry>,
}

/// One segment of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentEntry {
    /// Directory name under `D/indexes/<name>/`.
    pub dir: String,
    /// Ledger range `[from, to)` of its contributions.
    pub from: u64,
    pub to: u64,
    pub documents: u64,
    /// Normalised tokens (what the merge policy weighs).
    pub tokens: u64,
}

/// Where a dataset's index stands, for receipts: the ledger size reached and the ascending end
/// bounds of its segments (segment `i` covers `[segments[i-1], segments[i])`, the first from
/// 0; the last equals `ledger_size`). Segments are deterministic functions of their documents,
/// so [`crate::dataset::build_state`] rebuilds the same index from the same state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexState {
    pub ledger_size: u64,
    pub segments: Vec<u64>,
}

impl Manifest {
    /// Check the invariants a reader relies on.
    pub fn validate(&self) -> Result<(), IndexError> {
        let bad = |why: String| {
            Err(IndexError::Corrupt(format!(
                "{MANIFEST_FILE} of {}: {why}",
                self.dataset_id
            )))
        };
        if self.format != MANIFEST_FORMAT {
            return bad(format!("format {:?}", self.format));
        }
        if self.segments.is_empty() || self.segments.len() > MAX_SEGMENTS {
            return bad(format!(
                "{} segments (1 to {MAX_SEGMENTS})",
                self.segments.len()
            ));
        }
        let mut at = 0;
        for s in &self.segments {
            if s.from != at || s.to <= s.from {
                return bad(format!("segment {} covers [{}, {})", s.dir, s.from, s.to));
            }
            if !valid_segment_name(&s.dir) {
                return bad(format!("segment directory name {:?}", s.dir));
            }
            at = s.to;
        }
        if at != self.ledger_size {
            return bad(format!(
                "segments end at {at}, ledger size {}",
                self.ledger_size
            ));
        }
        Ok(())
    }

    /// The state receipts record.
    pub fn state(&self) -> IndexState {
        IndexState {
            ledger_size: self.ledger_size,
            segments: self.segments.iter().map(|s| s.to).collect(),
        }
    }
}

/// A segment directory name this code writes: `seg-` then `[0-9a-z-]`.
fn valid_segment_name(name: &str) -> bool {
    name.strip_prefix(SEGMENT_PREFIX).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-')
    })
}

/// The directory name of a new segment over `[from, to)` written at `generation`.
pub fn segment_name(from: u64, to: u64, generation: u64) -> String {
    format!("{SEGMENT_PREFIX}{from}-{to}-g{generation}")
}

/// Read the manifest in `index_dir`; `Ok(None)` when there is none (no index, or one built
/// before segments: see [`crate::dataset::DatasetIndex::open`]).
pub fn read_manifest(index_dir: &Path) -> Result<Option<Manifest>, IndexError> {
    let path = index_dir.join(MANIFEST_FILE);
    let len = match fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    if len > MAX_MANIFEST_BYTES {
        return Err(IndexError::Corrupt(format!(
            "{} is too large",
            path.display()
        )));
    }
    let bytes = fs::read(&path).map_err(io_err(&path))?;
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        IndexError::Corrupt(format!(
            "{} is not readable ({e}); rebuild the index with `shoulders index build`",
            path.display()
        ))
    })?;
    m.validate()?;
    Ok(Some(m))
}

/// Replace the manifest atomically: write a temporary file, fsync it, rename it over the old
/// one, fsync the directory. A crash leaves the old manifest or the new one.
pub fn write_manifest(index_dir: &Path, m: &Manifest) -> Result<(), IndexError> {
    m.validate()?;
    let path = index_dir.join(MANIFEST_FILE);
    let tmp = index_dir.join(format!("{MANIFEST_FILE}.partial"));
    let json = serde_json::to_vec_pretty(m)
        .map_err(|e| IndexError::Corrupt(format!("cannot encode {MANIFEST_FILE}: {e}")))?;
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&json).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(index_dir)
}

fn sync_dir(dir: &Path) -> Result<(), IndexError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Files of the single-directory layout of indexes built before segments.
const LEGACY_FILES: &[&str] = &[
    crate::index::TOKENIZED_FILE,
    crate::index::TABLE_FILE,
    crate::index::OFFSET_FILE,
    crate::index::META_FILE,
    crate::index::RAW_FILE,
    crate::index::RAW_STARTS_FILE,
    crate::index::MAP_FILE,
    crate::index::OWNERS_FILE,
    crate::dataset::ATTRIBUTION_FILE,
];

/// Remove what the manifest `m` (and `also_keep`) does not reference: segment directories, leftovers of
/// interrupted builds (`.seg-*`), and the files of a pre-segment index. Only a writer holding
/// the [`WriterLock`] calls it, and only for a manifest written on an earlier update (readers
/// that opened an older manifest have had a whole update interval to open its segments; an
/// opened segment stays readable after its files are removed).
pub fn collect_garbage(
    index_dir: &Path,
    m: &Manifest,
    also_keep: &[&str],
) -> Result<(), IndexError> {
    let mut keep: BTreeSet<&str> = m.segments.iter().map(|s| s.dir.as_str()).collect();
    keep.extend(also_keep);
    let entries = match fs::read_dir(index_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(index_dir)(e)),
    };
    for e in entries {
        let e = e.map_err(io_err(index_dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let garbage_dir = (valid_segment_name(&name) && !keep.contains(name.as_str()))
            || name.starts_with(&format!(".{SEGMENT_PREFIX}"));
        if garbage_dir {
            fs::remove_dir_all(&path).map_err(io_err(&path))?;
        } else if LEGACY_FILES.contains(&name.as_str()) {
            fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

/// The merge policy: the newest segments to merge into one, if any. Starting from the newest,
/// an older segment joins while its tokens are at most [`MERGE_FACTOR`] times those of all
/// the newer segments together; two or more segments found so are merged. Once merges catch
/// up, every segment holds more than `MERGE_FACTOR` times the tokens of all newer ones, so a
/// corpus of `T` tokens has at most `1 + log10(T / t)` segments (`t`: the smallest segment's
/// tokens), e.g. at most 10 at a billion tokens; an append merges only small segments, and
/// each token is merged again about once per tenfold growth.
pub fn merge_plan(segments: &[SegmentEntry]) -> Option<std::ops::Range<usize>> {
    let k = segments.len();
    if k < 2 {
        return None;
    }
    let mut i = k - 1;
    let mut newer: u64 = segments[i].tokens;
    while i > 0 && segments[i - 1].tokens <= newer.saturating_mul(MERGE_FACTOR) {
        i -= 1;
        newer = newer.saturating_add(segments[i].tokens);
    }
    (k - i >= 2).then_some(i..k)
}

/// An exclusive lock file held with `File::lock`; released when dropped or when the process
/// ends (a crashed holder leaves no stale lock).
struct LockFile {
    _file: File,
}

impl LockFile {
    fn path(data_dir: &Path, dataset_id: &str, suffix: &str) -> PathBuf {
        data_dir.join("indexes").join(format!(
            "{}.{suffix}",
            crate::dataset::index_name(dataset_id)
        ))
    }

    fn open(path: &Path) -> Result<File, IndexError> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err(path))
    }

    fn acquire(path: &Path) -> Result<LockFile, IndexError> {
        let file = Self::open(path)?;
        file.lock().map_err(io_err(path))?;
        Ok(LockFile { _file: file })
    }

    fn try_acquire(path: &Path) -> Result<Option<LockFile>, IndexError> {
        let file = Self::open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(LockFile { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(path)(e)),
        }
    }
}

/// Exclusive writer lock of one dataset's index (`D/indexes/<name>.lock`): `index build`,
/// `index update`, the swap of `index merge` and the server's follow loop take it, so manifest
/// writes never interleave. Readers never take it. Not reentrant: one holder per process and
/// dataset at a time.
pub struct WriterLock {
    _lock: LockFile,
}

impl WriterLock {
    /// Wait for the lock.
    pub fn acquire(data_dir: &Path, dataset_id: &str) -> Result<WriterLock, IndexError> {
        let path = LockFile::path(data_dir, dataset_id, "lock");
        Ok(WriterLock {
            _lock: LockFile::acquire(&path)?,
        })
    }

    /// Take the lock if nobody holds it (`None`: another writer does).
    pub fn try_acquire(
        data_dir: &Path,
        dataset_id: &str,
    ) -> Result<Option<WriterLock>, IndexError> {
        let path = LockFile::path(data_dir, dataset_id, "lock");
        Ok(LockFile::try_acquire(&path)?.map(|l| WriterLock { _lock: l }))
    }
}

/// Held by a merge for its whole run (`D/indexes/<name>.merge.lock`): merges of one dataset
/// run one at a time, and garbage collection waits while a merge builds a segment the
/// manifest does not list yet.
pub struct MergeLock {
    _lock: LockFile,
}

impl MergeLock {
    /// Wait for the lock.
    pub fn acquire(data_dir: &Path, dataset_id: &str) -> Result<MergeLock, IndexError> {
        let path = LockFile::path(data_dir, dataset_id, "merge.lock");
        Ok(MergeLock {
            _lock: LockFile::acquire(&path)?,
        })
    }

    /// Take the lock if no merge holds it.
    pub fn try_acquire(data_dir: &Path, dataset_id: &str) -> Result<Option<MergeLock>, IndexError> {
        let path = LockFile::path(data_dir, dataset_id, "merge.lock");
        Ok(LockFile::try_acquire(&path)?.map(|l| MergeLock { _lock: l }))
    }
}

/// One occurrence of a match, located in its original document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    pub contribution: u64,
    /// Byte offset and length in the original document.
    pub offset: u64,
    pub length: u64,
}

/// The per-segment work of an attribution, batched so that a remote index node answers one
/// attribution in four round trips (matching statistics; owners; source samples; and, only
/// with exclusions, earliest holders). Contributions are named by id: ids increase in log
/// order, so "earliest" means the smallest id in every shard and across shards. A [`Match`]
/// handed back to a shard is one that shard returned from [`Shard::matching`] for the same
/// output (its rank range is the shard's own).
pub trait Shard: Send + Sync {
    /// Window of the copy map, in normalised bytes.
    fn window_bytes(&self) -> usize;
    /// The indexed contributions, in log order.
    fn contributions(&self) -> &[ContributionInfo];
    /// Matching statistics of the normalised output `out` against this shard.
    fn matching(&self, out: &[u8], budget: &mut Budget) -> Result<Vec<Match>, IndexError>;
    /// The copy-map owner of the window that starts each match (each at least a window long).
    fn owners(&self, matches: &[Match]) -> Vec<Option<u64>>;
    /// For each window (normalised bytes), the earliest contribution of this shard holding it
    /// that `excluded` does not name.
    fn earliest_holders(
        &self,
        windows: &[&[u8]],
        excluded: &BTreeSet<u64>,
        budget: &mut Budget,
    ) -> Result<Vec<Option<u64>>, IndexError>;
    /// The occurrences of each match with the `limit` lowest suffix-array ranks.
    fn sources(&self, matches: &[Match], limit: usize) -> Vec<Vec<Occurrence>>;
    /// For each window (normalised bytes), its copy-map owner here when this shard holds it.
    fn window_owners(
        &self,
        windows: &[&[u8]],
        budget: &mut Budget,
    ) -> Result<Vec<Option<u64>>, IndexError>;
    /// The windows inside the original byte range `[start, end)` of `contribution` (held by
    /// this shard), each with its owner here.
    fn windows_in(&self, contribution: u64, start: u64, end: u64) -> Vec<(Vec<u8>, Option<u64>)>;
    /// The normalised bytes of the original byte range `[start, end)` of `contribution` (held
    /// by this shard; `None` when it is not).
    fn normalised_in(&self, contribution: u64, start: u64, end: u64) -> Option<Vec<u8>>;
    /// The earliest contribution of this shard holding the normalised `bytes` (any length)
    /// that `excluded` does not name, scanning at most `max_occurrences`.
    fn earliest_holder_of(
        &self,
        bytes: &[u8],
        excluded: &BTreeSet<u64>,
        max_occurrences: u64,
        budget: &mut Budget,
    ) -> Result<Holder<u64>, IndexError>;
}

/// A segment on this machine: its index and `attribution.json`.
pub struct LocalShard {
    /// Directory name (`seg-…`), or empty for a pre-segment index.
    pub dir: String,
    pub index: Index,
    pub meta: Attribution,
    doc_of: BTreeMap<u64, u32>,
}

impl LocalShard {
    /// Open the index in `dir`, named `name` in the manifest.
    pub fn open(dir: &Path, name: &str) -> Result<LocalShard, IndexError> {
        let meta = crate::dataset::read_attribution(dir)?;
        let index = Index::open(dir)?;
        Self::new(name.to_string(), index, meta)
    }

    /// Wrap an index and its metadata (they must describe the same documents).
    pub fn new(dir: String, index: Index, meta: Attribution) -> Result<LocalShard, IndexError> {
        if meta.format != crate::dataset::ATTRIBUTION_FORMAT || index.window().is_none() {
            return Err(IndexError::Corrupt(format!(
                "index of {} is from an older version (no copy map); rebuild it with `shoulders index build`",
                meta.dataset_id
            )));
        }
        let ids: Vec<u64> = meta.contributions.iter().map(|c| c.contribution).collect();
        if ids != index.info().contributions {
            return Err(IndexError::Corrupt(format!(
                "{} of {} does not list the indexed documents; rebuild",
                crate::dataset::ATTRIBUTION_FILE,
                meta.dataset_id
            )));
        }
        let doc_of = ids
            .iter()
            .enumerate()
            .map(|(d, &c)| (c, d as u32))
            .collect();
        Ok(LocalShard {
            dir,
            index,
            meta,
            doc_of,
        })
    }

    fn contribution(&self, doc: Option<u32>) -> Option<u64> {
        doc.and_then(|d| self.index.contribution(d))
    }
}

impl Shard for LocalShard {
    fn window_bytes(&self) -> usize {
        self.index.window().unwrap_or(0)
    }

    fn contributions(&self) -> &[ContributionInfo] {
        &self.meta.contributions
    }

    fn matching(&self, out: &[u8], budget: &mut Budget) -> Result<Vec<Match>, IndexError> {
        self.index.longest_matches_within(out, budget)
    }

    fn owners(&self, matches: &[Match]) -> Vec<Option<u64>> {
        matches
            .iter()
            .map(|m| self.contribution(self.index.window_owner(m.lo)))
            .collect()
    }

    fn earliest_holders(
        &self,
        windows: &[&[u8]],
        excluded: &BTreeSet<u64>,
        budget: &mut Budget,
    ) -> Result<Vec<Option<u64>>, IndexError> {
        let skip = |d: u32| {
            self.index
                .contribution(d)
                .is_some_and(|c| excluded.contains(&c))
        };
        windows
            .iter()
            .map(|w| {
                let d = self.index.earliest_holder_within(w, &skip, budget)?;
                Ok(self.contribution(d))
            })
            .collect()
    }

    fn sources(&self, matches: &[Match], limit: usize) -> Vec<Vec<Occurrence>> {
        matches
            .iter()
            .map(|m| {
                let take = (m.hi - m.lo).min(limit as u64);
                (m.lo..m.lo + take)
                    .filter_map(|r| {
                        let pos = self.index.position(r);
                        let (hit, length) = self.index.locate_original(pos, m.len as u64)?;
                        Some(Occurrence {
                            contribution: hit.contribution,
                            offset: hit.offset,
                            length,
                        })
                    })
                    .collect()
            })
            .collect()
    }

    fn window_owners(
        &self,
        windows: &[&[u8]],
        budget: &mut Budget,
    ) -> Result<Vec<Option<u64>>, IndexError> {
        windows
            .iter()
            .map(|w| {
                let d = self.index.owner_of_window(w, budget)?;
                Ok(self.contribution(d))
            })
            .collect()
    }

    fn windows_in(&self, contribution: u64, start: u64, end: u64) -> Vec<(Vec<u8>, Option<u64>)> {
        let Some(&doc) = self.doc_of.get(&contribution) else {
            return Vec::new();
        };
        self.index
            .windows_in(doc, start, end)
            .into_iter()
            .map(|(w, d)| (w.to_vec(), self.contribution(d)))
            .collect()
    }

    fn normalised_in(&self, contribution: u64, start: u64, end: u64) -> Option<Vec<u8>> {
        let doc = *self.doc_of.get(&contribution)?;
        Some(self.index.normalised_in(doc, start, end)?.to_vec())
    }

    fn earliest_holder_of(
        &self,
        bytes: &[u8],
        excluded: &BTreeSet<u64>,
        max_occurrences: u64,
        budget: &mut Budget,
    ) -> Result<Holder<u64>, IndexError> {
        let skip = |d: u32| {
            self.index
                .contribution(d)
                .is_some_and(|c| excluded.contains(&c))
        };
        Ok(
            match self
                .index
                .earliest_holder_of(bytes, &skip, max_occurrences, budget)?
            {
                Holder::Earliest(d) => self
                    .index
                    .contribution(d)
                    .map_or(Holder::None, Holder::Earliest),
                Holder::None => Holder::None,
                Holder::TooCommon => Holder::TooCommon,
            },
        )
    }
}

/// Run `f` on every shard in parallel (scoped threads; one shard runs inline), each with its
/// own copy of `budget`, and charge `budget` with the most steps any shard spent: the budget
/// bounds each shard's work, not the sum (a deadline or cancellation stops them all).
pub fn fan_out<S: Shard + ?Sized, T: Send>(
    shards: &[&S],
    budget: &mut Budget,
    f: impl Fn(&S, &mut Budget) -> Result<T, IndexError> + Sync,
) -> Result<Vec<T>, IndexError> {
    let before = budget.used();
    let run = |s: &S| {
        let mut b = budget.clone();
        let r = f(s, &mut b);
        (r, b.used().saturating_sub(before))
    };
    let results: Vec<(Result<T, IndexError>, u64)> = if shards.len() <= 1 {
        shards.iter().map(|s| run(s)).collect()
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = shards
                .iter()
                .map(|s| {
                    let run = &run;
                    scope.spawn(move || run(s))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(r) => r,
                    Err(_) => (
                        Err(IndexError::Corrupt("a shard's query panicked".into())),
                        0,
                    ),
                })
                .collect()
        })
    };
    let spent = results.iter().map(|r| r.1).max().unwrap_or(0);
    budget.charge(spent)?;
    results.into_iter().map(|r| r.0).collect()
}
