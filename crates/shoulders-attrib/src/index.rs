//! A byte-level suffix-array index over contributed documents, laid out exactly like a
//! single-shard [infini-gram](https://github.com/liujch1998/infini-gram) index built with
//! `--token_dtype u8` (so infini-gram's engine, `InfiniGramEngine(..., token_dtype='u8')`, can
//! open the same directory).
//!
//! # Tokens
//!
//! The tokenizer is byte-level: a document's tokens are its UTF-8 bytes (tokenizer name
//! `"bytes-utf8"`). The document separator is the byte `0xFF`, which never occurs in UTF-8, so
//! documents must be valid UTF-8 and no match can cross a document boundary.
//!
//! # Files (in the index directory)
//!
//! | file | content | infini-gram source |
//! |---|---|---|
//! | `tokenized.0` | for each document: `0xFF` then its bytes | `pkg/infini_gram/indexing.py`, `tokenize()`: `content = args.doc_sep + byte_arr` with `doc_sep = b'\xff'` for `u8` |
//! | `table.0` | suffix array: one pointer per byte of `tokenized.0` (every position, separators included), sorted by the suffix starting there (plain byte order, a proper prefix first), each pointer little-endian in `w` bytes | `pkg/src/main.rs` (`to_bytes(.., size_width)`, `ratio = ceil(log2(ds_size)/8)` in `build_sa()`); the engine derives `ptr_size = sa_size / tok_cnt` (`pkg/infini_gram/cpp_engine.h`, `Engine` constructor) |
//! | `offset.0` | `u64` little-endian start of each document (its separator) in `tokenized.0` | `tokenize()`: `od_fouts[j].write(np.array([ods[j]], dtype=np.uint64)...)` |
//! | `shoulders-index.json` | our metadata ([`IndexInfo`]): format version, tokenizer, pointer width, counts, each document's contribution id | (ours; its name avoids the substrings infini-gram's engine scans for) |
//!
//! The pointer width `w` is the smallest number of bytes that holds every position
//! (`0 ..= len(tokenized.0) - 1`), at least 1. For files of 2 bytes or more this equals
//! infini-gram's `ceil(log2(ds_size) / 8)`; for a 1-byte file (a single empty document)
//! infini-gram would compute 0, we write 1.
//!
//! # Memory
//!
//! * **Build**: the token array (1 byte per token) plus the suffix array as `i32` (4 bytes per
//!   token) while the token array has at most `i32::MAX` bytes, `i64` (8 bytes per token) above:
//!   peak ≈ **5 bytes per token** (9 above 2 GiB), plus 8 bytes per document for the contribution
//!   ids and transient growth of the token buffer while documents stream in (`Vec` doubling can
//!   briefly hold up to 2× the token array). The table is written in `w`-byte pointers straight
//!   from the suffix array, with no second copy.
//! * **Reading**: [`Index::open`] memory-maps every file read-only ([`shoulders_mmap`], the
//!   one crate allowed `unsafe`; index files are immutable once renamed into place) and reads
//!   only the metadata and the per-document offsets. What an opened index holds in anonymous
//!   memory is **`O(documents)`**: the parsed `shoulders-index.json` (8 bytes per document of
//!   contribution ids, 16 more for an attribution index's window counts). Everything else
//!   (`1 + w` bytes per token, plus the originals and run files of an attribution index) is
//!   page cache: shared between processes, evicted under memory pressure, and made resident
//!   only where touched. A count touches `O(|query| · log N)` pages of `table.0` and
//!   `tokenized.0`; the files are advised `MADV_RANDOM` so no read-ahead inflates that. An
//!   index need not fit in RAM, only its hot pages.
//! * **Checking**: [`Index::open`] is `O(documents + metadata)`; the `O(tokens)` checks are
//!   [`Index::verify_full`] (`shoulders index verify`). Queries treat the mapped bytes as
//!   untrusted: an out-of-range pointer, offset or run gives `E_INDEX_CORRUPT` or is skipped.
//!
//! # Query semantics
//!
//! [`Index::count`] follows infini-gram's count: the number of positions of the token array at
//! which the query occurs. Queries come from UTF-8, so a match never spans a separator; a
//! query containing `0xFF` (or an empty query) counts 0 and finds nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shoulders_mmap::{Access, MapError, MappedFile};

use crate::budget::{Budget, STEP_BYTES};
use crate::copymap::{self, OwnerRun};
use crate::normalize::{MapRun, Normalizer, NORMALIZATION};

/// Document separator in the token array (infini-gram's `doc_sep` for `u8` tokens).
pub const DOC_SEP: u8 = 0xFF;
/// Largest accepted document, in bytes (1 GiB).
pub const MAX_DOC_BYTES: u64 = 1 << 30;
/// Largest accepted token array (`tokenized.0`, separators included), in bytes (2^40).
pub const MAX_TOTAL_BYTES: u64 = 1 << 40;
/// Largest accepted query for [`Index::count`] and [`Index::find`] (1 MiB).
pub const MAX_QUERY_BYTES: usize = 1 << 20;
/// Largest accepted output for [`Index::maximal_spans`] (1 MiB).
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;
/// Largest accepted `shoulders-index.json`, in bytes.
const MAX_META_BYTES: u64 = 1 << 34;

/// `format` value of `shoulders-index.json`.
pub const FORMAT: &str = "shoulders-attrib-index";
/// Current `version` of `shoulders-index.json`.
pub const FORMAT_VERSION: u32 = 1;
/// Tokenizer name recorded in the metadata.
pub const TOKENIZER: &str = "bytes-utf8";

/// Token array file name (infini-gram single shard).
pub const TOKENIZED_FILE: &str = "tokenized.0";
/// Suffix array file name (infini-gram single shard).
pub const TABLE_FILE: &str = "table.0";
/// Document offsets file name (infini-gram single shard).
pub const OFFSET_FILE: &str = "offset.0";
/// Our metadata file name.
pub const META_FILE: &str = "shoulders-index.json";

/// Errors of this module; [`IndexError::code`] gives a stable code.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// Reading or writing a file failed.
    #[error("index i/o error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file is missing, has the wrong size or inconsistent content.
    #[error("corrupt index: {0}")]
    Corrupt(String),
    /// A document or the whole index is over its limit.
    #[error("index too large: {0}")]
    TooLarge(String),
    /// A query or output is over its limit.
    #[error("query too large: {len} bytes (limit {limit})")]
    QueryTooLarge { len: usize, limit: usize },
    /// The build saw no documents.
    #[error("no documents to index")]
    Empty,
    /// A document is not valid UTF-8 (and so could contain the separator byte).
    #[error("document {doc} is not valid UTF-8 (byte offset {offset})")]
    InvalidDocument { doc: u64, offset: usize },
    /// An incremental append got a document whose contribution is not later than every
    /// document already indexed (appends must follow log order; earlier ones need a rebuild).
    #[error("contribution {contribution} is not later than contribution {indexed}, already indexed; appends must follow log order (rebuild to insert earlier documents)")]
    OutOfOrder { contribution: u64, indexed: u64 },
    /// A span search used up its step budget ([`crate::budget::Budget`]).
    #[error("attribution needs more than {limit} steps (the budget for this text); the text repeats the index too many ways to attribute it")]
    BudgetExceeded { limit: u64 },
    /// A span search passed its deadline or was cancelled.
    #[error("attribution stopped after {steps} steps: {reason}")]
    Cancelled { steps: u64, reason: &'static str },
}

impl IndexError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            IndexError::Io { .. } => "E_INDEX_IO",
            IndexError::Corrupt(_) => "E_INDEX_CORRUPT",
            IndexError::TooLarge(_) => "E_INDEX_TOO_LARGE",
            IndexError::QueryTooLarge { .. } => "E_QUERY_TOO_LARGE",
            IndexError::Empty => "E_INDEX_EMPTY",
            IndexError::InvalidDocument { .. } => "E_INDEX_INPUT",
            IndexError::OutOfOrder { .. } => "E_INDEX_ORDER",
            IndexError::BudgetExceeded { .. } => "E_ATTRIBUTION_BUDGET",
            IndexError::Cancelled { .. } => "E_ATTRIBUTION_TIMEOUT",
        }
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One contributed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocInput {
    /// Contribution id (log index of its `data.contribute` record).
    pub contribution: u64,
    /// The document's UTF-8 bytes.
    pub bytes: Vec<u8>,
}

/// What `shoulders-index.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexInfo {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`FORMAT_VERSION`] for indexes this code writes.
    pub version: u32,
    /// Always [`TOKENIZER`].
    pub tokenizer: String,
    /// Bytes per suffix-array pointer in `table.0` (1..=8).
    pub pointer_width: u8,
    /// Number of documents.
    pub doc_count: u64,
    /// Tokens in `tokenized.0`, separators included (infini-gram's `tok_cnt`); document bytes
    /// are `token_count - doc_count`.
    pub token_count: u64,
    /// Contribution id of each document, in document order.
    pub contributions: Vec<u64>,
    /// Present for an attribution index ([`BuildMode::Attribution`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentLayout>,
}

/// What an attribution index adds to the infini-gram layout: `tokenized.0` holds the
/// *normalised* documents ([`crate::normalize`]), and four more files hold the original
/// documents, the map from normalised to original offsets and the copy map
/// ([`crate::copymap`]). Their names avoid the words infini-gram's engine looks for, so its
/// engine still opens the directory (and counts normalised n-grams).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentLayout {
    /// Always [`crate::normalize::NORMALIZATION`].
    pub normalization: String,
    /// Window of the copy map, in normalised bytes.
    pub window_bytes: u32,
    /// Bytes of [`RAW_FILE`] (each original document preceded by `0xFF`).
    pub raw_bytes: u64,
    /// Runs in [`MAP_FILE`] (16 bytes each).
    pub map_runs: u64,
    /// Runs in [`OWNERS_FILE`] (12 bytes each).
    pub owner_runs: u64,
    /// Per document: windows starting in it.
    pub windows: Vec<u64>,
    /// Per document: of those, windows it was first to contribute (the rest copy earlier
    /// documents).
    pub own_windows: Vec<u64>,
}

/// Original documents, each preceded by `0xFF` (as in `tokenized.0`).
pub const RAW_FILE: &str = "shoulders-raw.bin";
/// `u64` LE position of each original document's `0xFF` in [`RAW_FILE`].
pub const RAW_STARTS_FILE: &str = "shoulders-rawstarts.bin";
/// The normalised → original offset map: per run `u64` LE normalised position in
/// `tokenized.0`, `u64` LE original position in [`RAW_FILE`] with bit 63 set for a clamped run.
pub const MAP_FILE: &str = "shoulders-normmap.bin";
/// The copy map: per run `u64` LE position in `tokenized.0`, `u32` LE owner document ordinal.
pub const OWNERS_FILE: &str = "shoulders-owners.bin";
/// Default copy-map window, in normalised bytes: the shortest match that earns credit.
///
/// Fixed, not derived from the corpus size: a threshold that grew with the corpus would let
/// anyone push other people's evidence below it by adding bytes. 32 normalised bytes (about
/// six words of prose) are long enough that chance matches between unrelated texts are rare at
/// any corpus size an index supports, and short enough to catch a quoted clause.
pub const DEFAULT_WINDOW_BYTES: usize = 32;
/// Largest accepted window.
pub const MAX_WINDOW_BYTES: usize = 4096;

/// What [`build_with`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildMode {
    /// The infini-gram layout over the documents' bytes, nothing else.
    Plain,
    /// Normalised documents, the original documents, the offset map and the copy map.
    Attribution { window_bytes: usize },
}

/// One occurrence of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hit {
    /// Contribution of the document.
    pub contribution: u64,
    /// Document ordinal (position in build order).
    pub doc: u32,
    /// Byte offset of the match inside the document.
    pub offset: u64,
}

/// A maximal span of an output found in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    /// Start byte in the output.
    pub start: usize,
    /// End byte (exclusive) in the output.
    pub end: usize,
    /// Occurrences of `output[start..end]` in the index.
    pub occurrences: u64,
}

/// Smallest number of bytes (at least 1) that holds every position of a token array of
/// `token_count` bytes.
pub fn pointer_width(token_count: u64) -> u8 {
    let max = token_count.saturating_sub(1);
    let bits = 64 - max.leading_zeros();
    bits.div_ceil(8).max(1) as u8
}

/// The `width`-byte little-endian pointer at rank `r` of a suffix-array table (0 for `r`
/// outside it). Every search step reads one: an unaligned 8-byte load masked to the width (no
/// copy of a variable length, which cost a `memcpy` call per step), but for the last entries
/// of the table, which are copied byte by byte.
fn pointer_at(table: &[u8], width: usize, r: u64) -> u64 {
    debug_assert!((1..=8).contains(&width), "pointer width checked at open");
    let Some(at) = usize::try_from(r).ok().and_then(|r| r.checked_mul(width)) else {
        return 0;
    };
    if let Some(word) = at.checked_add(8).and_then(|end| table.get(at..end)) {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        return word & (u64::MAX >> (64 - 8 * width));
    }
    let mut b = [0u8; 8];
    if let Some(src) = at.checked_add(width).and_then(|end| table.get(at..end)) {
        b[..width].copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

/// Length of the common prefix of two slices (up to the shorter one's length).
///
/// Most comparisons of a suffix-array search stop within a few bytes, so the first 64 bytes
/// are compared 8 at a time as `u64` words (the first differing byte is the lowest set byte of
/// their XOR, little-endian), without a call; a longer common prefix (a copied passage) goes
/// on in 64-byte blocks with slice equality (`memcmp`), then words again for the rest.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const WORD: usize = 8;
    const BLOCK: usize = 64;
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    // The common prefix within `a[from..]` and `b[from..]` in words, then bytes; `Err` with
    // the position of the first difference, `Ok` with how far the words went when they ran out
    // or after `max_words` equal words.
    let words = |from: usize, max_words: usize| -> Result<usize, usize> {
        let mut k = from;
        for (x, y) in a[from..]
            .chunks_exact(WORD)
            .zip(b[from..].chunks_exact(WORD))
            .take(max_words)
        {
            let x = u64::from_le_bytes(x.try_into().expect("chunks are 8 bytes"));
            let y = u64::from_le_bytes(y.try_into().expect("chunks are 8 bytes"));
            let diff = x ^ y;
            if diff != 0 {
                return Err(k + (diff.trailing_zeros() / 8) as usize);
            }
            k += WORD;
        }
        Ok(k)
    };
    let mut k = match words(0, BLOCK / WORD) {
        Err(at) => return at,
        Ok(k) => k,
    };
    while k + BLOCK <= len && a[k..k + BLOCK] == b[k..k + BLOCK] {
        k += BLOCK;
    }
    let k = match words(k, usize::MAX) {
        Err(at) => return at,
        Ok(k) => k,
    };
    k + a[k..]
        .iter()
        .zip(&b[k..])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Removes the temporary directory unless disarmed.
pub(crate) struct TempDir(pub(crate) Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}

pub(crate) fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{}", std::process::id(), nanos)
}

/// Builds a plain index of `docs` in `dir` ([`BuildMode::Plain`]); see [`build_with`].
pub fn build(
    dir: &Path,
    docs: impl Iterator<Item = Result<DocInput, IndexError>>,
    progress: &mut dyn FnMut(u64),
) -> Result<IndexInfo, IndexError> {
    build_with(dir, docs, BuildMode::Plain, progress)
}

/// Builds an index of `docs` in `dir`, replacing any index there.
///
/// Documents are numbered in iteration order. Every file is written (and synced) in a
/// sibling temporary directory `.<name>.tmp-*`, which then replaces `dir`: an existing `dir`
/// is first renamed to `.<name>.old-*`, the new one renamed into place, the old one removed.
/// Readers therefore see the old index or the new one, never a mix (between the two renames
/// `dir` briefly does not exist and [`Index::open`] fails with `E_INDEX_CORRUPT`).
///
/// `progress` is called with the number of token bytes taken in so far (after each document,
/// then once more with the total after the suffix array is written).
///
/// Memory: about 5 bytes per token up to 2 GiB of tokens, 9 above (see the module docs); an
/// attribution build keeps the PLCP array too (9 bytes per token, 17 above 2 GiB) and streams
/// the original documents to disk. The suffix array and the PLCP array are built on every core
/// (libsais with OpenMP).
pub fn build_with(
    dir: &Path,
    docs: impl Iterator<Item = Result<DocInput, IndexError>>,
    mode: BuildMode,
    progress: &mut dyn FnMut(u64),
) -> Result<IndexInfo, IndexError> {
    let name = dir
        .file_name()
        .ok_or_else(|| IndexError::Io {
            path: dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "index path has no final component",
            ),
        })?
        .to_string_lossy()
        .into_owned();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let window = match mode {
        BuildMode::Plain => None,
        BuildMode::Attribution { window_bytes } => {
            if window_bytes == 0 || window_bytes > MAX_WINDOW_BYTES {
                return Err(IndexError::TooLarge(format!(
                    "window of {window_bytes} bytes (1 to {MAX_WINDOW_BYTES})"
                )));
            }
            Some(window_bytes)
        }
    };

    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let tmp_path = parent.join(format!(".{name}.tmp-{}", unique_suffix()));
    fs::create_dir(&tmp_path).map_err(io_err(&tmp_path))?;
    let mut guard = TempDir(Some(tmp_path.clone()));

    // Take in the documents (the originals stream to disk in attribution mode).
    let mut text: Vec<u8> = Vec::new();
    let mut offsets: Vec<u64> = Vec::new();
    let mut contributions: Vec<u64> = Vec::new();
    let mut raw = match window {
        Some(_) => Some(RawWriter::create(&tmp_path)?),
        None => None,
    };
    let mut map: Vec<MapRun> = Vec::new();
    for doc in docs {
        let doc = doc?;
        let ordinal = contributions.len() as u64;
        if doc.bytes.len() as u64 > MAX_DOC_BYTES {
            return Err(IndexError::TooLarge(format!(
                "document {ordinal} has {} bytes (limit {MAX_DOC_BYTES})",
                doc.bytes.len()
            )));
        }
        let utf8 = std::str::from_utf8(&doc.bytes).map_err(|e| IndexError::InvalidDocument {
            doc: ordinal,
            offset: e.valid_up_to(),
        })?;
        let max_docs = if window.is_some() {
            copymap::MAX_DOCS as u64
        } else {
            u64::from(u32::MAX)
        };
        if ordinal >= max_docs {
            return Err(IndexError::TooLarge(format!(
                "more than {max_docs} documents"
            )));
        }
        offsets.push(text.len() as u64);
        contributions.push(doc.contribution);
        text.push(DOC_SEP);
        match raw.as_mut() {
            None => text.extend_from_slice(&doc.bytes),
            Some(raw) => {
                let at = raw.push(&doc.bytes)?;
                Normalizer {
                    out: &mut text,
                    runs: &mut map,
                }
                .push(utf8, at);
            }
        }
        if text.len() as u64 > MAX_TOTAL_BYTES {
            return Err(IndexError::TooLarge(format!(
                "token array would reach {} bytes (limit {MAX_TOTAL_BYTES})",
                text.len()
            )));
        }
        progress(text.len() as u64);
    }
    if contributions.is_empty() {
        return Err(IndexError::Empty);
    }

    let token_count = text.len() as u64;
    let width = pointer_width(token_count);
    let mut info = IndexInfo {
        format: FORMAT.to_string(),
        version: FORMAT_VERSION,
        tokenizer: TOKENIZER.to_string(),
        pointer_width: width,
        doc_count: contributions.len() as u64,
        token_count,
        contributions,
        content: None,
    };

    write_file(&tmp_path.join(TOKENIZED_FILE), |w| w.write_all(&text))?;
    write_file(&tmp_path.join(OFFSET_FILE), |w| {
        for o in &offsets {
            w.write_all(&o.to_le_bytes())?;
        }
        Ok(())
    })?;

    let table_path = tmp_path.join(TABLE_FILE);
    let sa_err = |e| IndexError::TooLarge(format!("suffix array construction: {e:?}"));
    let copies = if text.len() <= i32::MAX as usize {
        let sa = libsais::SuffixArrayConstruction::for_text(text.as_slice())
            .in_owned_buffer32()
            .multi_threaded(sa_threads())
            .run()
            .map_err(sa_err)?;
        match window {
            None => {
                write_table(&table_path, &sa.into_vec(), text.len(), width)?;
                None
            }
            Some(w) => {
                let (sa, mut plcp, _) = sa
                    .plcp_construction()
                    .multi_threaded(sa_threads())
                    .run()
                    .map_err(sa_err)?
                    .into_parts();
                Some(table_and_copy_map(
                    &table_path,
                    &text,
                    &sa,
                    &mut plcp,
                    &offsets,
                    width,
                    w,
                )?)
            }
        }
    } else {
        let sa = libsais::SuffixArrayConstruction::for_text(text.as_slice())
            .in_owned_buffer64()
            .multi_threaded(sa_threads())
            .run()
            .map_err(sa_err)?;
        match window {
            None => {
                write_table(&table_path, &sa.into_vec(), text.len(), width)?;
                None
            }
            Some(w) => {
                let (sa, mut plcp, _) = sa
                    .plcp_construction()
                    .multi_threaded(sa_threads())
                    .run()
                    .map_err(sa_err)?
                    .into_parts();
                Some(table_and_copy_map(
                    &table_path,
                    &text,
                    &sa,
                    &mut plcp,
                    &offsets,
                    width,
                    w,
                )?)
            }
        }
    };
    drop(text);

    if let (Some(raw), Some(copies), Some(w)) = (raw, copies, window) {
        let (raw_bytes, raw_starts) = raw.finish()?;
        write_file(&tmp_path.join(RAW_STARTS_FILE), |out| {
            for o in &raw_starts {
                out.write_all(&o.to_le_bytes())?;
            }
            Ok(())
        })?;
        write_file(&tmp_path.join(MAP_FILE), |out| {
            for r in &map {
                out.write_all(&r.norm.to_le_bytes())?;
                let flag = if r.linear { 0 } else { CLAMP_BIT };
                out.write_all(&(r.orig | flag).to_le_bytes())?;
            }
            Ok(())
        })?;
        write_file(&tmp_path.join(OWNERS_FILE), |out| {
            for r in &copies.runs {
                out.write_all(&r.pos.to_le_bytes())?;
                out.write_all(&r.doc.to_le_bytes())?;
            }
            Ok(())
        })?;
        info.content = Some(ContentLayout {
            normalization: NORMALIZATION.to_string(),
            window_bytes: w as u32,
            raw_bytes,
            map_runs: map.len() as u64,
            owner_runs: copies.runs.len() as u64,
            windows: copies.docs.iter().map(|d| d.windows).collect(),
            own_windows: copies.docs.iter().map(|d| d.own).collect(),
        });
    }

    let meta = serde_json::to_vec(&info)
        .map_err(|e| IndexError::Corrupt(format!("cannot encode metadata: {e}")))?;
    write_file(&tmp_path.join(META_FILE), |w| w.write_all(&meta))?;
    sync_dir(&tmp_path)?;

    // Swap into place.
    let mut old_guard = TempDir(None);
    if fs::symlink_metadata(dir).is_ok() {
        let old = parent.join(format!(".{name}.old-{}", unique_suffix()));
        fs::rename(dir, &old).map_err(io_err(dir))?;
        old_guard.0 = Some(old);
    }
    if let Err(e) = fs::rename(&tmp_path, dir) {
        // Put the old index back.
        if let Some(old) = old_guard.0.take() {
            let _ = fs::rename(&old, dir);
        }
        return Err(io_err(dir)(e));
    }
    guard.0 = None;
    sync_dir(&parent)?;
    drop(old_guard);
    progress(token_count);
    Ok(info)
}

/// Write `table.0` on one thread while the copy map is computed on another: both only read
/// the suffix array, and the table is mostly I/O while the copy map is mostly memory.
#[allow(clippy::too_many_arguments)]
fn table_and_copy_map<O: copymap::SaWord + Copy + TryInto<u64> + Sync>(
    table_path: &Path,
    text: &[u8],
    sa: &[O],
    plcp: &mut [O],
    offsets: &[u64],
    width: u8,
    window: usize,
) -> Result<copymap::CopyMap, IndexError> {
    std::thread::scope(|scope| {
        let table = scope.spawn(|| write_table(table_path, sa, text.len(), width));
        let copies = copymap::compute(text, sa, plcp, offsets, window);
        table
            .join()
            .map_err(|_| IndexError::Corrupt("the table writer panicked".into()))??;
        Ok(copies)
    })
}

/// Threads for libsais (OpenMP): every core the process may use, at most 64. Given explicitly,
/// because OpenMP's own default comes out as one thread under some container limits.
fn sa_threads() -> libsais::ThreadCount {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get().min(64));
    libsais::ThreadCount::fixed(n as u16)
}

/// Bit 63 of a map run's original position: the run is clamped.
const CLAMP_BIT: u64 = 1 << 63;

/// Streams the original documents into [`RAW_FILE`].
struct RawWriter {
    path: PathBuf,
    file: BufWriter<File>,
    len: u64,
    starts: Vec<u64>,
}

impl RawWriter {
    fn create(dir: &Path) -> Result<Self, IndexError> {
        let path = dir.join(RAW_FILE);
        let file = File::create(&path).map_err(io_err(&path))?;
        Ok(RawWriter {
            file: BufWriter::with_capacity(1 << 20, file),
            path,
            len: 0,
            starts: Vec::new(),
        })
    }

    /// Append a document; returns the position of its first byte.
    fn push(&mut self, bytes: &[u8]) -> Result<u64, IndexError> {
        self.starts.push(self.len);
        self.file
            .write_all(&[DOC_SEP])
            .and_then(|()| self.file.write_all(bytes))
            .map_err(io_err(&self.path))?;
        self.len += 1 + bytes.len() as u64;
        Ok(self.len - bytes.len() as u64)
    }

    fn finish(self) -> Result<(u64, Vec<u64>), IndexError> {
        let file = self
            .file
            .into_inner()
            .map_err(|e| io_err(&self.path)(e.into_error()))?;
        file.sync_all().map_err(io_err(&self.path))?;
        Ok((self.len, self.starts))
    }
}

fn write_file(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<&File>) -> std::io::Result<()>,
) -> Result<(), IndexError> {
    let file = File::create(path).map_err(io_err(path))?;
    let mut w = BufWriter::with_capacity(1 << 20, &file);
    body(&mut w).map_err(io_err(path))?;
    w.flush().map_err(io_err(path))?;
    drop(w);
    file.sync_all().map_err(io_err(path))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), IndexError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn write_table<O: Copy + TryInto<u64>>(
    path: &Path,
    sa: &[O],
    n: usize,
    width: u8,
) -> Result<(), IndexError> {
    let width = usize::from(width);
    write_file(path, |w| {
        for &p in sa.iter().take(n) {
            let p: u64 = p.try_into().map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "negative suffix pointer")
            })?;
            w.write_all(&p.to_le_bytes()[..width])?;
        }
        Ok(())
    })
}

/// An opened index: its files memory-mapped ([`shoulders_mmap`]), its metadata in memory (see
/// the module docs for the cost).
#[derive(Debug)]
pub struct Index {
    info: IndexInfo,
    /// `tokenized.0`.
    text: MappedFile,
    /// `table.0`: `n` pointers of `width` bytes.
    table: MappedFile,
    /// `offset.0`: `doc_count` `u64` LE, checked at open (increasing, first 0, all `< n`).
    offsets: MappedFile,
    width: usize,
    content: Option<Content>,
}

/// The attribution parts of an index ([`ContentLayout`]), mapped.
#[derive(Debug)]
struct Content {
    window: usize,
    /// [`RAW_FILE`].
    raw: MappedFile,
    /// [`RAW_STARTS_FILE`]: `doc_count` `u64` LE, checked at open like the offsets.
    raw_starts: MappedFile,
    /// [`MAP_FILE`]: [`MAP_RUN_BYTES`]-byte runs, not checked at open.
    map: MappedFile,
    /// [`OWNERS_FILE`]: [`OWNER_RUN_BYTES`]-byte runs, not checked at open.
    owners: MappedFile,
}

/// Bytes of one run of [`MAP_FILE`].
const MAP_RUN_BYTES: usize = 16;
/// Bytes of one run of [`OWNERS_FILE`].
const OWNER_RUN_BYTES: usize = 12;

fn le_u64(c: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&c[..8]);
    u64::from_le_bytes(b)
}

/// The `i`-th little-endian `u64` of `bytes` (`None` past the end).
fn u64_at(bytes: &[u8], i: usize) -> Option<u64> {
    let at = i.checked_mul(8)?;
    bytes.get(at..at.checked_add(8)?).map(le_u64)
}

/// Fixed-width records in a mapped file, decoded on access; the binary searches over them
/// touch `O(log runs)` pages. Nothing here assumes the records are sorted or in range: on a
/// corrupt file a search returns some index in `0..=len`, never panics.
#[derive(Clone, Copy)]
struct Records<'a> {
    bytes: &'a [u8],
    width: usize,
}

impl<'a> Records<'a> {
    fn len(&self) -> usize {
        self.bytes.len() / self.width
    }

    fn get(&self, i: usize) -> Option<&'a [u8]> {
        let at = i.checked_mul(self.width)?;
        self.bytes.get(at..at.checked_add(self.width)?)
    }

    /// First `i` where `pred` fails on record `i` (records where it holds come first).
    fn partition_point(&self, pred: impl Fn(&'a [u8]) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid) {
                Some(r) if pred(r) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }
}

fn map_run(r: &[u8]) -> MapRun {
    let orig = le_u64(&r[8..]);
    MapRun {
        norm: le_u64(r),
        orig: orig & !CLAMP_BIT,
        linear: orig & CLAMP_BIT == 0,
    }
}

fn owner_run(r: &[u8]) -> OwnerRun {
    OwnerRun {
        pos: le_u64(r),
        doc: u32::from_le_bytes([r[8], r[9], r[10], r[11]]),
    }
}

impl Content {
    fn map_runs(&self) -> Records<'_> {
        Records {
            bytes: &self.map,
            width: MAP_RUN_BYTES,
        }
    }

    fn owner_runs(&self) -> Records<'_> {
        Records {
            bytes: &self.owners,
            width: OWNER_RUN_BYTES,
        }
    }

    /// The original offset of normalised offset `x` ([`crate::normalize::orig_in`] over the
    /// mapped runs; saturating, so a corrupt run gives a wrong offset, not an overflow).
    fn orig_in(&self, x: u64) -> u64 {
        let runs = self.map_runs();
        let i = runs.partition_point(|r| le_u64(r) <= x);
        match i.checked_sub(1).and_then(|i| runs.get(i)).map(map_run) {
            Some(r) if r.linear => r.orig.saturating_add(x.saturating_sub(r.norm)),
            Some(r) => r.orig,
            None => x,
        }
    }

    /// [`crate::normalize::orig_range`] over the mapped runs.
    fn orig_range(&self, start: u64, end: u64, norm_len: u64, orig_end: u64) -> (u64, u64) {
        let s = self.orig_in(start);
        let e = if end >= norm_len {
            orig_end
        } else {
            self.orig_in(end)
        };
        (s, e.max(s))
    }

    /// The owner of the window starting at `pos` ([`copymap::owner_at`] over the mapped runs);
    /// `None` also for a run naming a document the index does not have.
    fn owner_at(&self, pos: u64, doc_count: u64) -> Option<u32> {
        let runs = self.owner_runs();
        let i = runs.partition_point(|r| le_u64(r) <= pos);
        let doc = owner_run(runs.get(i.checked_sub(1)?)?).doc;
        (u64::from(doc) < doc_count).then_some(doc)
    }

    /// Map and check the attribution files against the index they extend: sizes and the
    /// per-document starts (`O(documents)`); the runs are checked by [`Index::verify_full`].
    fn open(dir: &Path, info: &IndexInfo) -> Result<Option<Content>, IndexError> {
        let Some(layout) = &info.content else {
            return Ok(None);
        };
        let bad = |what: String| Err(IndexError::Corrupt(what));
        if layout.normalization != NORMALIZATION {
            return bad(format!(
                "{META_FILE}: normalisation {:?}, this build uses {NORMALIZATION:?}; rebuild",
                layout.normalization
            ));
        }
        let window = layout.window_bytes as usize;
        if window == 0 || window > MAX_WINDOW_BYTES {
            return bad(format!("{META_FILE}: window {window}"));
        }
        if layout.windows.len() as u64 != info.doc_count
            || layout.own_windows.len() as u64 != info.doc_count
            || layout
                .windows
                .iter()
                .zip(&layout.own_windows)
                .any(|(w, o)| o > w)
        {
            return bad(format!("{META_FILE}: per-document window counts"));
        }
        let raw_limit =
            MAX_TOTAL_BYTES.saturating_add(info.doc_count.saturating_mul(MAX_DOC_BYTES));
        if layout.raw_bytes > raw_limit || layout.raw_bytes < info.doc_count {
            return bad(format!("{META_FILE}: raw size {}", layout.raw_bytes));
        }
        let n = info.token_count;
        let runs_limit = |what: &str, runs: u64| {
            if runs > n {
                Err(IndexError::Corrupt(format!(
                    "{META_FILE}: {runs} {what} runs for {n} tokens"
                )))
            } else {
                Ok(())
            }
        };
        runs_limit("map", layout.map_runs)?;
        runs_limit("owner", layout.owner_runs)?;
        let raw = map_file(dir, RAW_FILE, layout.raw_bytes, Access::Random)?;
        let raw_starts = map_file(dir, RAW_STARTS_FILE, info.doc_count * 8, Access::Normal)?;
        check_starts(&raw_starts, layout.raw_bytes, RAW_STARTS_FILE)?;
        let map = map_file(
            dir,
            MAP_FILE,
            layout.map_runs * MAP_RUN_BYTES as u64,
            Access::Random,
        )?;
        let owners = map_file(
            dir,
            OWNERS_FILE,
            layout.owner_runs * OWNER_RUN_BYTES as u64,
            Access::Random,
        )?;
        Ok(Some(Content {
            window,
            raw,
            raw_starts,
            map,
            owners,
        }))
    }

    /// The `O(raw bytes + runs)` checks [`Content::open`] leaves out: the raw starts are the
    /// separators of the originals; map runs are sorted, in range, and map a position of a
    /// document to a position of the same original document; owner runs are sorted, in
    /// range, and name a document no later than the one they are in (the owner is the
    /// earliest holder). `offsets` are the checked document offsets of the token array.
    fn verify_full(&self, n: u64, offsets: &[u8]) -> Result<(), IndexError> {
        let doc_count = (offsets.len() / 8) as u64;
        let doc_of = |starts: &[u8], pos: u64| {
            Records {
                bytes: starts,
                width: 8,
            }
            .partition_point(|o| le_u64(o) <= pos)
            .checked_sub(1)
        };
        let bad = |what: String| Err(IndexError::Corrupt(what));
        let _ = self.raw.advise(Access::Sequential);
        check_separators(&self.raw, &self.raw_starts, RAW_FILE, RAW_STARTS_FILE)?;
        let raw_bytes = self.raw.len() as u64;
        let runs = self.map_runs();
        let mut last: Option<u64> = None;
        for i in 0..runs.len() {
            let Some(run) = runs.get(i).map(map_run) else {
                return bad(format!("{MAP_FILE}: run {i} unreadable"));
            };
            if run.norm >= n
                || run.orig >= raw_bytes
                || last.is_some_and(|l| l >= run.norm)
                || doc_of(offsets, run.norm) != doc_of(&self.raw_starts, run.orig)
            {
                return bad(format!("{MAP_FILE}: run {i} out of order or range"));
            }
            last = Some(run.norm);
        }
        let runs = self.owner_runs();
        let mut last: Option<u64> = None;
        for i in 0..runs.len() {
            let Some(run) = runs.get(i).map(owner_run) else {
                return bad(format!("{OWNERS_FILE}: run {i} unreadable"));
            };
            if run.pos >= n
                || u64::from(run.doc) >= doc_count
                || last.is_some_and(|l| l >= run.pos)
                || doc_of(offsets, run.pos).is_none_or(|d| run.doc as usize > d)
            {
                return bad(format!("{OWNERS_FILE}: run {i} out of order or range"));
            }
            last = Some(run.pos);
        }
        let _ = self.raw.advise(Access::Random);
        Ok(())
    }
}

/// Maps `dir/name`, which must be a regular file of `len` bytes (missing or wrongly sized:
/// `E_INDEX_CORRUPT`).
fn map_file(dir: &Path, name: &str, len: u64, access: Access) -> Result<MappedFile, IndexError> {
    let path = dir.join(name);
    let file = MappedFile::open(&path, len).map_err(|e| match e {
        MapError::Io { path, source } => IndexError::Io { path, source },
        MapError::TooLarge { .. } => IndexError::TooLarge(e.to_string()),
        other => IndexError::Corrupt(other.to_string()),
    })?;
    // Advice only tunes read-ahead; a kernel that refuses it serves the same bytes.
    let _ = file.advise(access);
    Ok(file)
}

/// Checks per-document starts (`u64` LE each) without reading the file they point into:
/// the first is 0, each is greater than the one before, all are `< len`. `O(documents)`.
fn check_starts(starts: &[u8], len: u64, name: &str) -> Result<(), IndexError> {
    let mut prev: Option<u64> = None;
    for (d, c) in starts.chunks_exact(8).enumerate() {
        let o = le_u64(c);
        let ok = match prev {
            None => o == 0,
            Some(p) => o > p,
        };
        if !ok || o >= len {
            return Err(IndexError::Corrupt(format!(
                "{name}: document {d} start {o} out of order or range"
            )));
        }
        prev = Some(o);
    }
    Ok(())
}

/// Checks that the separators of `text` are exactly at `starts` (`O(len(text))`).
fn check_separators(
    text: &[u8],
    starts: &[u8],
    text_name: &str,
    starts_name: &str,
) -> Result<(), IndexError> {
    let mut seps = text
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == DOC_SEP)
        .map(|(i, _)| i as u64);
    for (d, c) in starts.chunks_exact(8).enumerate() {
        let o = le_u64(c);
        if seps.next() != Some(o) || (d == 0 && o != 0) {
            return Err(IndexError::Corrupt(format!(
                "{starts_name}: document {d} start {o} is not a separator position"
            )));
        }
    }
    if seps.next().is_some() {
        return Err(IndexError::Corrupt(format!(
            "{text_name}: more separators than documents"
        )));
    }
    Ok(())
}

/// Suffix comparisons [`Index::verify_full`] makes per adjacent pair of ranks, in bytes: the
/// order check is exact for suffixes that differ within this many bytes, and bounded on text
/// that repeats itself at length.
const VERIFY_ORDER_BYTES: usize = 64;

impl Index {
    /// Opens the index in `dir` by mapping its files ([`shoulders_mmap`]): checks the
    /// metadata, every file's size against it, the pointer width, and the document offsets
    /// (increasing, the first 0, all inside the token array). `O(documents + metadata)`: no
    /// per-token byte is read, so opening is fast whatever the index's size and makes none of
    /// the token array or suffix array resident. Anything wrong or missing is
    /// `E_INDEX_CORRUPT`.
    ///
    /// The per-token checks (offsets against the separators, every suffix-array pointer, the
    /// run files) are [`Index::verify_full`]'s. Queries do not rely on them: a pointer, offset
    /// or run out of range makes a query fail with `E_INDEX_CORRUPT` or skips that entry; it
    /// never panics or reads outside a file.
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        let meta_path = dir.join(META_FILE);
        let meta_bytes = {
            let file = File::open(&meta_path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    IndexError::Corrupt(format!("missing {}", meta_path.display()))
                } else {
                    io_err(&meta_path)(e)
                }
            })?;
            let mut buf = Vec::new();
            (&file)
                .take(MAX_META_BYTES)
                .read_to_end(&mut buf)
                .map_err(io_err(&meta_path))?;
            buf
        };
        let info: IndexInfo = serde_json::from_slice(&meta_bytes)
            .map_err(|e| IndexError::Corrupt(format!("{META_FILE}: {e}")))?;
        drop(meta_bytes);
        if info.format != FORMAT || info.version != FORMAT_VERSION || info.tokenizer != TOKENIZER {
            return Err(IndexError::Corrupt(format!(
                "{META_FILE}: unsupported format {:?} version {} tokenizer {:?}",
                info.format, info.version, info.tokenizer
            )));
        }
        if info.doc_count == 0 {
            return Err(IndexError::Corrupt(format!("{META_FILE}: no documents")));
        }
        if info.contributions.len() as u64 != info.doc_count {
            return Err(IndexError::Corrupt(format!(
                "{META_FILE}: {} contributions for {} documents",
                info.contributions.len(),
                info.doc_count
            )));
        }
        if info.token_count < info.doc_count || info.token_count > MAX_TOTAL_BYTES {
            return Err(IndexError::Corrupt(format!(
                "{META_FILE}: token count {} impossible for {} documents",
                info.token_count, info.doc_count
            )));
        }
        if info.pointer_width != pointer_width(info.token_count) {
            return Err(IndexError::Corrupt(format!(
                "{META_FILE}: pointer width {} for {} tokens, expected {}",
                info.pointer_width,
                info.token_count,
                pointer_width(info.token_count)
            )));
        }
        let width = usize::from(info.pointer_width);
        let n = info.token_count;

        let text = map_file(dir, TOKENIZED_FILE, n, Access::Random)?;
        let offsets = map_file(dir, OFFSET_FILE, info.doc_count * 8, Access::Normal)?;
        check_starts(&offsets, n, OFFSET_FILE)?;
        let table = map_file(dir, TABLE_FILE, n * width as u64, Access::Random)?;
        let content = Content::open(dir, &info)?;
        Ok(Index {
            info,
            text,
            table,
            offsets,
            width,
            content,
        })
    }

    /// The `O(tokens)` checks [`Index::open`] leaves out: the document offsets are exactly
    /// the separators of `tokenized.0`; every suffix-array pointer is in range, and each
    /// occurs once (a bitmap of `tokens / 8` bytes); adjacent ranks are in suffix order on
    /// their first [`VERIFY_ORDER_BYTES`] bytes; for an attribution index, the original
    /// documents' starts are their separators and the offset-map and copy-map runs are sorted
    /// and in range. Reads every byte of every file (sequentially where it can).
    pub fn verify_full(&self) -> Result<(), IndexError> {
        let n = self.n();
        let _ = self.text.advise(Access::Sequential);
        check_separators(&self.text, &self.offsets, TOKENIZED_FILE, OFFSET_FILE)?;
        let _ = self.text.advise(Access::Random);
        let _ = self.table.advise(Access::Sequential);
        let mut seen = vec![0u64; usize::try_from(n.div_ceil(64)).unwrap_or(usize::MAX)];
        let mut prev: Option<&[u8]> = None;
        for r in 0..n {
            let p = self.sa(r);
            let (word, bit) = ((p / 64) as usize, 1u64 << (p % 64));
            if p >= n || seen[word] & bit != 0 {
                return Err(IndexError::Corrupt(format!(
                    "{TABLE_FILE}: pointer {p} at rank {r} is out of range or repeated"
                )));
            }
            seen[word] |= bit;
            let end = (p as usize)
                .saturating_add(VERIFY_ORDER_BYTES)
                .min(n as usize);
            let suffix = &self.text[p as usize..end];
            if prev.is_some_and(|q| q > suffix) {
                return Err(IndexError::Corrupt(format!(
                    "{TABLE_FILE}: ranks {} and {r} are out of order",
                    r - 1
                )));
            }
            prev = Some(suffix);
        }
        let _ = self.table.advise(Access::Random);
        if let Some(c) = &self.content {
            c.verify_full(n, &self.offsets)?;
        }
        Ok(())
    }

    /// The metadata.
    pub fn info(&self) -> &IndexInfo {
        &self.info
    }

    /// Pointer stored at suffix-array rank `r` (0 for `r` outside the table). Not checked
    /// against the token count: callers that use it as a position check it (see
    /// [`Index::checked_sa`]).
    fn sa(&self, r: u64) -> u64 {
        pointer_at(&self.table, self.width, r)
    }

    /// [`Index::sa`], `E_INDEX_CORRUPT` when the pointer is outside the token array.
    fn checked_sa(&self, r: u64) -> Result<u64, IndexError> {
        let p = self.sa(r);
        if p >= self.n() {
            return Err(IndexError::Corrupt(format!(
                "{TABLE_FILE}: pointer at rank {r} is out of range"
            )));
        }
        Ok(p)
    }

    /// The document offset of `doc` (`None` past the last document).
    fn offset(&self, doc: usize) -> Option<u64> {
        u64_at(&self.offsets, doc)
    }

    fn n(&self) -> u64 {
        self.text.len() as u64
    }

    /// One search step: [`Index::compare_from`], charged to the search's budget (one step plus
    /// one per [`STEP_BYTES`] compared), so every search pays for its comparisons alike.
    fn probe(
        &self,
        pos: u64,
        p: &[u8],
        known: usize,
        search: &mut Search<'_>,
    ) -> Result<(usize, std::cmp::Ordering), IndexError> {
        let (lcp, ord) = self.compare_from(pos, p, known);
        search
            .budget
            .charge(1 + (lcp.saturating_sub(known) / STEP_BYTES) as u64)?;
        Ok((lcp, ord))
    }

    /// Compares the suffix at `pos`, cut to `p.len()` bytes, with `p`, knowing the first
    /// `known` bytes are equal. Returns the common prefix length and the ordering.
    fn compare_from(&self, pos: u64, p: &[u8], known: usize) -> (usize, std::cmp::Ordering) {
        use std::cmp::Ordering;
        let s = self.text.get(pos as usize..).unwrap_or(&[]);
        let max = s.len().min(p.len());
        let k = known.min(max);
        let k = k + common_prefix(&s[k..max], &p[k..max]);
        if k == p.len() {
            (k, Ordering::Equal)
        } else if k == s.len() {
            (k, Ordering::Less)
        } else {
            (k, s[k].cmp(&p[k]))
        }
    }

    /// First rank in `[lo, hi)` whose suffix (cut to `p.len()`) is `>= p` (`upper == false`) or
    /// `> p` (`upper == true`); the suffixes just outside the range (or all of it) share
    /// `llcp` and `rlcp` bytes with `p`. Binary search keeping the common prefix with both
    /// ends (Manber–Myers), so a step compares only from `min(llcp, rlcp)` on.
    fn bound(
        &self,
        p: &[u8],
        (mut lo, mut hi): (u64, u64),
        upper: bool,
        (mut llcp, mut rlcp): (usize, usize),
        search: &mut Search<'_>,
    ) -> Result<u64, IndexError> {
        use std::cmp::Ordering;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let pos = self.checked_sa(mid)?;
            let from = search.known_at(pos).max(llcp.min(rlcp));
            let (lcp, ord) = self.probe(pos, p, from, search)?;
            let right = if upper {
                ord != Ordering::Greater
            } else {
                ord == Ordering::Less
            };
            if right {
                lo = mid + 1;
                llcp = lcp;
            } else {
                hi = mid;
                rlcp = lcp;
            }
        }
        Ok(lo)
    }

    /// Suffix-array rank range of suffixes starting with `p` within `[lo, hi)`, whose suffixes
    /// all share `known` bytes with `p`.
    ///
    /// One search for both ends: until a probe lands inside the range, the lower and the upper
    /// bound take the same path (for a pattern with few occurrences, nearly all of it), so it
    /// is walked once; then each end is searched in its half. Same result as two searches.
    fn range_in(
        &self,
        p: &[u8],
        (mut lo, mut hi): (u64, u64),
        known: usize,
        search: &mut Search<'_>,
    ) -> Result<(u64, u64), IndexError> {
        use std::cmp::Ordering;
        let (mut llcp, mut rlcp) = (known, known);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let pos = self.checked_sa(mid)?;
            let from = search.known_at(pos).max(llcp.min(rlcp));
            let (lcp, ord) = self.probe(pos, p, from, search)?;
            match ord {
                Ordering::Less => (lo, llcp) = (mid + 1, lcp),
                Ordering::Greater => (hi, rlcp) = (mid, lcp),
                Ordering::Equal => {
                    let start = self.bound(p, (lo, mid), false, (llcp, p.len()), search)?;
                    let end = self.bound(p, (mid + 1, hi), true, (p.len(), rlcp), search)?;
                    return Ok((start, end));
                }
            }
        }
        Ok((lo, lo))
    }

    /// [`Index::range_in`] as two separate binary searches (before issue 21): the reference
    /// the property tests compare it with.
    #[cfg(test)]
    fn range_in_reference(
        &self,
        p: &[u8],
        (lo, hi): (u64, u64),
        known: usize,
        search: &mut Search<'_>,
    ) -> Result<(u64, u64), IndexError> {
        let start = self.bound(p, (lo, hi), false, (known, known), search)?;
        let end = self.bound(p, (start, hi), true, (known, known), search)?;
        Ok((start, end))
    }

    /// [`Index::range_in`] over the whole suffix array without a budget (one query: its cost
    /// is bounded by `O(|p| · log N)`); `E_INDEX_CORRUPT` on a pointer out of range.
    fn range_of(&self, p: &[u8]) -> Result<(u64, u64), IndexError> {
        let mut budget = Budget::unlimited();
        let mut search = Search::new(&mut budget);
        self.range_in(p, (0, self.n()), 0, &mut search)
    }

    fn check_query(query: &[u8], limit: usize) -> Result<bool, IndexError> {
        if query.len() > limit {
            return Err(IndexError::QueryTooLarge {
                len: query.len(),
                limit,
            });
        }
        Ok(!query.is_empty() && !query.contains(&DOC_SEP))
    }

    /// Number of occurrences of `query` (infini-gram count). Empty queries and queries
    /// containing `0xFF` count 0. `O(|query| · log N)` worst case.
    pub fn count(&self, query: &[u8]) -> Result<u64, IndexError> {
        if !Self::check_query(query, MAX_QUERY_BYTES)? {
            return Ok(0);
        }
        let (lo, hi) = self.range_of(query)?;
        Ok(hi - lo)
    }

    /// Up to `limit` occurrences of `query`: those with the lowest suffix-array ranks
    /// (deterministic for a given index), returned sorted by `(doc, offset)`.
    pub fn find(&self, query: &[u8], limit: usize) -> Result<Vec<Hit>, IndexError> {
        if !Self::check_query(query, MAX_QUERY_BYTES)? {
            return Ok(Vec::new());
        }
        let (lo, hi) = self.range_of(query)?;
        let take = (hi - lo).min(limit as u64);
        let mut hits: Vec<Hit> = (lo..lo + take)
            .filter_map(|r| self.locate(self.sa(r)))
            .collect();
        hits.sort_unstable_by_key(|h| (h.doc, h.offset));
        Ok(hits)
    }

    /// Suffix-array rank range of every suffix starting with `p` (empty `p`: everything).
    /// Unlike [`Index::count`] this accepts any bytes; callers keep `p` short. Empty on a
    /// corrupt table.
    pub(crate) fn rank_range(&self, p: &[u8]) -> (u64, u64) {
        if p.is_empty() {
            return (0, self.n());
        }
        self.range_of(p).unwrap_or((0, 0))
    }

    /// Token-array position stored at rank `r` (`r < token_count`); not checked against the
    /// token count (see [`Index::verify_full`]): callers check it before using it.
    pub(crate) fn position(&self, r: u64) -> u64 {
        self.sa(r)
    }

    /// The token array (`0xFF` before each document).
    pub(crate) fn tokens(&self) -> &[u8] {
        &self.text
    }

    /// Maps a token-array position to its contribution and offset (`None` on a separator).
    pub fn locate_position(&self, pos: u64) -> Option<Hit> {
        if self.text.get(pos as usize) == Some(&DOC_SEP) {
            return None;
        }
        self.locate(pos)
    }

    /// Maps a token-array position inside a document to its hit (`None` outside the token
    /// array: a corrupt pointer is skipped).
    fn locate(&self, pos: u64) -> Option<Hit> {
        if pos >= self.n() {
            return None;
        }
        let offsets = Records {
            bytes: &self.offsets,
            width: 8,
        };
        let doc = offsets
            .partition_point(|o| le_u64(o) <= pos)
            .checked_sub(1)?;
        let start = self.offset(doc)? + 1;
        Some(Hit {
            contribution: *self.info.contributions.get(doc)?,
            doc: u32::try_from(doc).ok()?,
            offset: pos.checked_sub(start)?,
        })
    }

    /// For every start `i` of `output`, the longest prefix of `output[i..]` that occurs in the
    /// index (a `0xFF` byte never matches) and the suffix-array rank range of its occurrences:
    /// the matching statistics of `output` against the index. Spends at most the default
    /// budget for `output` ([`Budget::for_output`]); see [`Index::longest_matches_within`].
    pub fn longest_matches(&self, output: &[u8]) -> Result<Vec<Match>, IndexError> {
        self.longest_matches_within(output, &mut Budget::for_output(output.len()))
    }

    /// [`Index::longest_matches`] within `budget` (steps, deadline, cancellation).
    ///
    /// Matching statistics: the match at `i` is at least the match at `i - 1` minus its first
    /// byte, so the search at `i` starts from that carried match and extends it in one go
    /// (issue 21): one binary search inside the current range for the rest of the output,
    /// whose neighbours there give the longest extension, then one range search for it. The
    /// comparisons start from the carried length, and the extensions sum to at most
    /// `|output|` bytes, so extending is `O(|output| · log N)` in all (byte by byte, it was two
    /// binary searches per extended byte).
    ///
    /// Re-finding the carried match is one binary search over the whole suffix array, and a
    /// plain one would compare the whole carried match (up to `|output|` bytes) at every
    /// start: a 1 MiB copy of an indexed document cost ~10^12 byte comparisons (issue 15).
    /// Here the occurrences of the match at `i - 1`, each moved on by one byte, are known to
    /// start with the carried match (*anchors*, up to [`MAX_ANCHORS`]), so comparing one of
    /// them costs nothing; the other suffixes the search touches share only what the text
    /// shares with its neighbours. Re-finding is then `O(log N)` comparisons of short common
    /// prefixes, and the whole search `O(|output| · log N)` on text that does not repeat
    /// itself at length. Text that does (a long run of one byte, or many long copies of one
    /// passage) can still make comparisons long: the [`Budget`] counts every comparison and
    /// every [`STEP_BYTES`] bytes compared, and stops the search with `E_ATTRIBUTION_BUDGET`
    /// (or `E_ATTRIBUTION_TIMEOUT` at its deadline) instead of running on.
    pub fn longest_matches_within(
        &self,
        output: &[u8],
        budget: &mut Budget,
    ) -> Result<Vec<Match>, IndexError> {
        if output.len() > MAX_OUTPUT_BYTES {
            return Err(IndexError::QueryTooLarge {
                len: output.len(),
                limit: MAX_OUTPUT_BYTES,
            });
        }
        let n = self.n();
        let mut search = Search::new(budget);
        let mut out: Vec<Match> = Vec::with_capacity(output.len());
        let mut prev_end = 0usize;
        // The first separator at or after `i + len` (or the end).
        let mut stop = output
            .iter()
            .position(|&b| b == DOC_SEP)
            .unwrap_or(output.len());
        for i in 0..output.len() {
            let carried = prev_end.saturating_sub(i);
            search.anchors.clear();
            if carried > 0 {
                if let Some(prev) = out.last() {
                    // The previous match is `carried + 1` bytes long exactly when it set
                    // `prev_end`; its occurrences, one byte on, start with the carried match.
                    if prev.len == carried + 1 {
                        search.set_anchors(self, prev.lo, prev.hi, carried);
                    }
                }
            }
            let (mut lo, mut hi) = if carried > 0 {
                self.range_in(&output[i..i + carried], (0, n), 0, &mut search)?
            } else {
                (0, n)
            };
            search.anchors.clear();
            let mut len = carried;
            if lo >= hi {
                // Only possible on an inconsistent table: start over from nothing.
                (lo, hi, len) = (0, n, 0);
            }
            // Extend the carried match as far as it goes in one search rather than one range
            // search per byte: the longest prefix of `output[i..stop]` (no separator) that a
            // suffix in `[lo, hi)` starts with is shared with a neighbour of its insertion
            // point, and the occurrences of that prefix are then one range search.
            // `i + len` never decreases, so the next separator is looked for again only past
            // one, not at every start (a 1 MiB output without one would be quadratic).
            if stop < i + len {
                stop = output[i + len..]
                    .iter()
                    .position(|&b| b == DOC_SEP)
                    .map_or(output.len(), |k| i + len + k);
            }
            if i + len < stop {
                let p = &output[i..stop];
                let at = self.bound(p, (lo, hi), false, (len, len), &mut search)?;
                let mut longest = len;
                for r in [
                    at.checked_sub(1).filter(|&r| r >= lo),
                    Some(at).filter(|&r| r < hi),
                ]
                .into_iter()
                .flatten()
                {
                    let (lcp, _) = self.probe(self.checked_sa(r)?, p, len, &mut search)?;
                    longest = longest.max(lcp);
                }
                if longest > len {
                    (lo, hi) =
                        self.range_in(&output[i..i + longest], (lo, hi), len, &mut search)?;
                    len = longest;
                }
            }
            if len == 0 {
                (lo, hi) = (0, 0);
            }
            out.push(Match { len, lo, hi });
            prev_end = prev_end.max(i + len);
            search.budget.charge(1)?;
        }
        Ok(out)
    }

    /// The matching statistics as they were computed before issue 15: every carried match
    /// re-found by a plain binary search. Quadratic on long matches; kept as the reference the
    /// property tests compare [`Index::longest_matches`] with.
    #[cfg(test)]
    pub(crate) fn longest_matches_reference(&self, output: &[u8]) -> Vec<Match> {
        let n = self.n();
        let mut budget = Budget::unlimited();
        let mut search = Search::new(&mut budget);
        let mut out = Vec::with_capacity(output.len());
        let mut prev_end = 0usize;
        for i in 0..output.len() {
            let carried = prev_end.saturating_sub(i);
            let (mut lo, mut hi) = if carried > 0 {
                self.range_in_reference(&output[i..i + carried], (0, n), 0, &mut search)
                    .unwrap()
            } else {
                (0, n)
            };
            let mut len = carried;
            if lo >= hi {
                (lo, hi, len) = (0, n, 0);
            }
            while i + len < output.len() && output[i + len] != DOC_SEP {
                let p = &output[i..i + len + 1];
                let (l2, h2) = self
                    .range_in_reference(p, (lo, hi), len, &mut search)
                    .unwrap();
                if l2 >= h2 {
                    break;
                }
                (lo, hi) = (l2, h2);
                len += 1;
            }
            if len == 0 {
                (lo, hi) = (0, 0);
            }
            out.push(Match { len, lo, hi });
            prev_end = prev_end.max(i + len);
        }
        out
    }

    /// OLMoTrace-style maximal matching spans of `output`.
    ///
    /// For every start `i`, let `e(i)` be the end of the longest prefix of `output[i..]` that
    /// occurs in the index ([`Index::longest_matches`]). Span `[i, e(i))` is reported when
    /// `e(i) - i >= max(min_len, 1)`, `e(i) > e(i-1)` (it is not inside the span found for
    /// `i - 1`), and it occurs at most `max_occurrences` times. Spans come out by `start`.
    pub fn maximal_spans(
        &self,
        output: &[u8],
        min_len: usize,
        max_occurrences: u64,
    ) -> Result<Vec<Span>, IndexError> {
        self.maximal_spans_within(
            output,
            min_len,
            max_occurrences,
            &mut Budget::for_output(output.len()),
        )
    }

    /// [`Index::maximal_spans`] within `budget`.
    pub fn maximal_spans_within(
        &self,
        output: &[u8],
        min_len: usize,
        max_occurrences: u64,
        budget: &mut Budget,
    ) -> Result<Vec<Span>, IndexError> {
        let min_len = min_len.max(1);
        let mut spans = Vec::new();
        let mut prev_end = 0usize;
        for (i, m) in self
            .longest_matches_within(output, budget)?
            .into_iter()
            .enumerate()
        {
            let end = i + m.len;
            if m.len >= min_len && end > prev_end && m.hi - m.lo <= max_occurrences {
                spans.push(Span {
                    start: i,
                    end,
                    occurrences: m.hi - m.lo,
                });
            }
            prev_end = prev_end.max(end);
        }
        Ok(spans)
    }

    /// The copy-map window of an attribution index (`None` for a plain index).
    pub fn window(&self) -> Option<usize> {
        self.content.as_ref().map(|c| c.window)
    }

    /// The owner (earliest document holding it, as a document ordinal) of the window that
    /// starts every suffix in rank range `[lo, hi)`, when those suffixes share at least a
    /// window's bytes (all of them then share one owner). `None` for a plain index.
    pub fn window_owner(&self, lo: u64) -> Option<u32> {
        let c = self.content.as_ref()?;
        c.owner_at(self.sa(lo), self.info.doc_count)
    }

    /// Contribution id of document `doc`.
    pub fn contribution(&self, doc: u32) -> Option<u64> {
        self.info.contributions.get(doc as usize).copied()
    }

    /// Number of documents.
    pub fn doc_count(&self) -> u32 {
        self.info.doc_count as u32
    }

    /// The original bytes of document `doc` (attribution indexes; `None` otherwise).
    pub fn original(&self, doc: u32) -> Option<&[u8]> {
        let c = self.content.as_ref()?;
        let start = usize::try_from(u64_at(&c.raw_starts, doc as usize)?.checked_add(1)?).ok()?;
        let end = u64_at(&c.raw_starts, doc as usize + 1)
            .map_or(Some(c.raw.len()), |e| usize::try_from(e).ok())?;
        c.raw.get(start..end)
    }

    /// The normalised bytes of document `doc`.
    pub fn normalised(&self, doc: u32) -> Option<&[u8]> {
        let start = usize::try_from(self.offset(doc as usize)?.checked_add(1)?).ok()?;
        let end = self
            .offset(doc as usize + 1)
            .map_or(Some(self.text.len()), |e| usize::try_from(e).ok())?;
        self.text.get(start..end)
    }

    /// Where normalised token-array bytes `[pos, pos + len)` come from in the original
    /// document: a hit whose `offset` is the original start, and the original length. For a
    /// plain index, the bytes themselves.
    pub fn locate_original(&self, pos: u64, len: u64) -> Option<(Hit, u64)> {
        let hit = self.locate_position(pos)?;
        let Some(c) = self.content.as_ref() else {
            return Some((hit, len));
        };
        let (s, e) = self.original_global(c, hit.doc, pos, pos.saturating_add(len));
        let doc_start = u64_at(&c.raw_starts, hit.doc as usize)? + 1;
        Some((
            Hit {
                offset: s.checked_sub(doc_start)?,
                ..hit
            },
            e - s,
        ))
    }

    /// Global original range of normalised `[pos, end)` inside document `doc`.
    fn original_global(&self, c: &Content, doc: u32, pos: u64, end: u64) -> (u64, u64) {
        let doc_end = self.offset(doc as usize + 1).unwrap_or(self.n());
        let raw_end = u64_at(&c.raw_starts, doc as usize + 1).unwrap_or(c.raw.len() as u64);
        c.orig_range(pos, end, doc_end, raw_end)
    }

    /// Owners of the windows that start inside the original byte range `[start, end)` of
    /// document `doc`, with how many windows each owns (attribution indexes; empty otherwise,
    /// and for a range too short to hold a window).
    pub fn window_owners_in(&self, doc: u32, start: u64, end: u64) -> BTreeMap<u32, u64> {
        let mut out = BTreeMap::new();
        let (Some(c), Some((a, last))) = (
            self.content.as_ref(),
            self.window_starts_in(doc, start, end),
        ) else {
            return out;
        };
        // Window starts in [a, last]: walk the owner runs overlapping that range (on a
        // corrupt file, a run naming no document is skipped).
        let runs = c.owner_runs();
        let mut i = runs.partition_point(|r| le_u64(r) <= a).saturating_sub(1);
        while let Some(run) = runs.get(i).map(owner_run) {
            if run.pos > last {
                break;
            }
            let from = run.pos.max(a);
            let to = runs
                .get(i + 1)
                .map_or(last + 1, |n| le_u64(n).min(last + 1));
            if to > from && u64::from(run.doc) < self.info.doc_count {
                *out.entry(run.doc).or_insert(0) += to - from;
            }
            i += 1;
        }
        out
    }

    /// [`Index::window_owners_in`] when the documents `skip` names may not own anything: each
    /// window whose owner is skipped goes to [`Index::earliest_holder_within`] (or to nobody),
    /// and each skipped owner is added to `skipped`. With nothing skipped it is
    /// `window_owners_in` and spends no steps.
    pub fn window_owners_in_excluding(
        &self,
        doc: u32,
        start: u64,
        end: u64,
        skip: &dyn Fn(u32) -> bool,
        skipped: &mut BTreeSet<u32>,
        budget: &mut Budget,
    ) -> Result<BTreeMap<u32, u64>, IndexError> {
        let mut out = self.window_owners_in(doc, start, end);
        let moved: Vec<u32> = out.keys().copied().filter(|&d| skip(d)).collect();
        if moved.is_empty() {
            return Ok(out);
        }
        for d in &moved {
            out.remove(d);
            skipped.insert(*d);
        }
        let (Some(c), Some((a, last))) = (
            self.content.as_ref(),
            self.window_starts_in(doc, start, end),
        ) else {
            return Ok(out);
        };
        let w = c.window as u64;
        for p in a..=last {
            let owner = c.owner_at(p, self.info.doc_count);
            if !owner.is_some_and(|o| moved.contains(&o)) {
                continue;
            }
            let Some(window) = self.text.get(p as usize..(p + w) as usize) else {
                continue;
            };
            if let Some(h) = self.earliest_holder_within(window, skip, budget)? {
                *out.entry(h).or_insert(0) += 1;
            }
        }
        Ok(out)
    }

    /// The first and last normalised token-array positions where a full window starts inside
    /// the original byte range `[start, end)` of document `doc` (`None`: no window fits).
    fn window_starts_in(&self, doc: u32, start: u64, end: u64) -> Option<(u64, u64)> {
        let (a, b) = self.normalised_range(doc, start, end)?;
        let w = self.content.as_ref()?.window as u64;
        if b < a + w {
            return None;
        }
        Some((a, b - w))
    }

    /// The normalised bytes of the original byte range `[start, end)` of document `doc`
    /// (attribution indexes; `None` for a plain index or an empty document).
    pub(crate) fn normalised_in(&self, doc: u32, start: u64, end: u64) -> Option<&[u8]> {
        let (a, b) = self.normalised_range(doc, start, end)?;
        self.text
            .get(usize::try_from(a).ok()?..usize::try_from(b).ok()?)
    }

    /// Token-array positions `[a, b)` of the original byte range `[start, end)` of `doc`.
    fn normalised_range(&self, doc: u32, start: u64, end: u64) -> Option<(u64, u64)> {
        let c = self.content.as_ref()?;
        let (raw_start, norm_start) = (
            u64_at(&c.raw_starts, doc as usize)?,
            self.offset(doc as usize)?,
        );
        let norm_end = self.offset(doc as usize + 1).unwrap_or(self.n());
        // Offsets are increasing (checked at open), so the clamp below has min <= max.
        if norm_start >= norm_end {
            return None;
        }
        // Original → normalised: the map is monotone, so invert it run by run (saturating:
        // a corrupt run gives a wrong position inside the document, not an overflow).
        let runs = c.map_runs();
        let to_norm = |o: u64| -> u64 {
            let i = runs.partition_point(|r| map_run(r).orig <= o);
            let x = match i
                .checked_sub(1)
                .and_then(|i| Some((i, map_run(runs.get(i)?))))
            {
                Some((i, r)) if r.linear => {
                    let next = runs.get(i + 1).map_or(u64::MAX, le_u64);
                    r.norm.saturating_add(o.saturating_sub(r.orig)).min(next)
                }
                Some((_, r)) => r.norm,
                None => 0,
            };
            x.clamp(norm_start + 1, norm_end)
        };
        let (a, b) = (
            to_norm(raw_start.saturating_add(1).saturating_add(start)),
            to_norm(raw_start.saturating_add(1).saturating_add(end)),
        );
        Some((a, b.max(a)))
    }

    /// The earliest document (lowest ordinal, so lowest contribution id) holding the exact
    /// normalised bytes `window` that `skip` does not name; `None` when every holder is
    /// skipped (or none exists). This is the copy map's rule with some documents removed, for
    /// the windows whose owner was taken down or is pending review, without a rebuild: the
    /// window's occurrences are one suffix-array range, found by binary search and then
    /// scanned, every occurrence one step of `budget` (so a window copied a million times
    /// costs a million steps, and a text full of them ends in `E_ATTRIBUTION_BUDGET`).
    pub fn earliest_holder_within(
        &self,
        window: &[u8],
        skip: &dyn Fn(u32) -> bool,
        budget: &mut Budget,
    ) -> Result<Option<u32>, IndexError> {
        match self.earliest_holder_of(window, skip, u64::MAX, budget)? {
            Holder::Earliest(d) => Ok(Some(d)),
            Holder::None | Holder::TooCommon => Ok(None),
        }
    }

    /// [`Index::earliest_holder_within`] for bytes of any length, scanning at most
    /// `max_occurrences` ([`Holder::TooCommon`] when they occur more often: common text, and
    /// no scan an adversary can make as long as it likes).
    pub fn earliest_holder_of(
        &self,
        window: &[u8],
        skip: &dyn Fn(u32) -> bool,
        max_occurrences: u64,
        budget: &mut Budget,
    ) -> Result<Holder<u32>, IndexError> {
        if window.is_empty() || window.contains(&DOC_SEP) {
            return Ok(Holder::None);
        }
        let mut search = Search::new(budget);
        let (lo, hi) = self.range_in(window, (0, self.n()), 0, &mut search)?;
        if hi - lo > max_occurrences {
            return Ok(Holder::TooCommon);
        }
        let mut best: Option<u32> = None;
        for r in lo..hi {
            search.budget.charge(1)?;
            let Some(hit) = self.locate(self.sa(r)) else {
                continue;
            };
            if best.is_none_or(|b| hit.doc < b) && !skip(hit.doc) {
                best = Some(hit.doc);
            }
        }
        Ok(best.map_or(Holder::None, Holder::Earliest))
    }

    /// The original bytes that produced the normalised bytes `[pos, pos + len)` of the token
    /// array (for a plain index, those bytes). Used by the ∞-gram model to write the original
    /// text while it matches normalised context.
    pub(crate) fn original_bytes(&self, pos: u64, len: u64) -> &[u8] {
        let Some(c) = self.content.as_ref() else {
            return self
                .text
                .get(pos as usize..pos.saturating_add(len) as usize)
                .unwrap_or_default();
        };
        let Some(hit) = self.locate_position(pos) else {
            return &[];
        };
        let (s, e) = self.original_global(c, hit.doc, pos, pos.saturating_add(len));
        c.raw.get(s as usize..e as usize).unwrap_or_default()
    }
}

/// The earliest holder of some bytes ([`Index::earliest_holder_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder<T> {
    /// No document holds them (or every holder is skipped).
    None,
    /// They occur more often than the scan allows.
    TooCommon,
    /// The earliest holder not skipped (a document ordinal, or a contribution id).
    Earliest(T),
}

/// The longest match at one start of an output ([`Index::longest_matches`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// Bytes matched (0: not even the first byte occurs).
    pub len: usize,
    /// Suffix-array rank range of the occurrences (empty when `len == 0`).
    pub lo: u64,
    pub hi: u64,
}

/// Most anchors kept between two starts of [`Index::longest_matches_within`]: the first and
/// last `MAX_ANCHORS / 2` occurrences of the previous match. Those near the ends of the rank
/// range are the ones a binary search for its bounds touches.
pub const MAX_ANCHORS: usize = 64;

/// One search's state: its budget, and the anchors (token-array positions known to start
/// with the pattern's first `anchor_len` bytes, sorted).
pub(crate) struct Search<'b> {
    budget: &'b mut Budget,
    anchors: Vec<u64>,
    anchor_len: usize,
}

impl<'b> Search<'b> {
    fn new(budget: &'b mut Budget) -> Self {
        Search {
            budget,
            anchors: Vec::with_capacity(MAX_ANCHORS),
            anchor_len: 0,
        }
    }

    /// Anchors from the occurrences `[lo, hi)` of a match, each moved on by one byte: they
    /// start with that match's last `len` bytes.
    fn set_anchors(&mut self, index: &Index, lo: u64, hi: u64, len: usize) {
        let half = (MAX_ANCHORS / 2) as u64;
        let ranks = if hi - lo <= MAX_ANCHORS as u64 {
            (lo..hi).chain(0..0)
        } else {
            (lo..lo + half).chain(hi - half..hi)
        };
        self.anchors
            .extend(ranks.map(|r| index.sa(r).saturating_add(1)));
        self.anchors.sort_unstable();
        self.anchor_len = len;
    }

    /// Bytes known to match the pattern at token-array position `pos`.
    fn known_at(&self, pos: u64) -> usize {
        if !self.anchors.is_empty() && self.anchors.binary_search(&pos).is_ok() {
            self.anchor_len
        } else {
            0
        }
    }
}

/// Queries a segmented dataset ([`crate::segments`]) needs from each segment, beside the
/// public API; they read nothing but what the public queries read.
impl Index {
    /// The copy-map owner (document ordinal) of each full window of document `doc`, by
    /// normalised offset in the document (window `k` is `normalised(doc)[k..k + window]`).
    pub(crate) fn doc_window_owners(&self, doc: u32) -> Vec<Option<u32>> {
        let (Some(c), Some(norm)) = (self.content.as_ref(), self.normalised(doc)) else {
            return Vec::new();
        };
        let Some(start) = self.offset(doc as usize).map(|o| o.saturating_add(1)) else {
            return Vec::new();
        };
        let count = (norm.len() + 1).saturating_sub(c.window);
        (0..count as u64)
            .map(|k| c.owner_at(start.saturating_add(k), self.info.doc_count))
            .collect()
    }

    /// The full windows starting inside the original byte range `[start, end)` of document
    /// `doc`: each window's normalised bytes with its copy-map owner (empty when no window
    /// fits, or for a plain index).
    pub(crate) fn windows_in(&self, doc: u32, start: u64, end: u64) -> Vec<(&[u8], Option<u32>)> {
        let (Some(c), Some((a, last))) = (
            self.content.as_ref(),
            self.window_starts_in(doc, start, end),
        ) else {
            return Vec::new();
        };
        let w = c.window as u64;
        (a..=last)
            .filter_map(|p| {
                let bytes = self.text.get(p as usize..p.saturating_add(w) as usize)?;
                Some((bytes, c.owner_at(p, self.info.doc_count)))
            })
            .collect()
    }

    /// The copy-map owner of the exact normalised `window` when this index holds it (`None`:
    /// not held, or not a window of this index's length). One binary search, one step.
    pub(crate) fn owner_of_window(
        &self,
        window: &[u8],
        budget: &mut Budget,
    ) -> Result<Option<u32>, IndexError> {
        if Some(window.len()) != self.window() || window.contains(&DOC_SEP) {
            return Ok(None);
        }
        budget.charge(1)?;
        let (lo, hi) = self.range_of(window)?;
        Ok(if lo < hi { self.window_owner(lo) } else { None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    fn open_docs(docs: &[Vec<u8>]) -> (tempfile::TempDir, Index) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        build(
            &dir,
            docs.iter().enumerate().map(|(d, b)| {
                Ok(DocInput {
                    contribution: d as u64,
                    bytes: b.clone(),
                })
            }),
            &mut |_| {},
        )
        .unwrap();
        let index = Index::open(&dir).unwrap();
        (tmp, index)
    }

    /// Pseudo-random words (xorshift): prose-like text that does not repeat itself at length.
    fn prose(len: usize, seed: u64) -> Vec<u8> {
        const WORDS: [&str; 16] = [
            "the", "river", "of", "stone", "carried", "a", "quiet", "lamp", "under", "broken",
            "sky", "while", "seven", "orchards", "slept", "and",
        ];
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(WORDS[(x % 16) as usize].as_bytes());
            out.push(b' ');
        }
        out.truncate(len);
        out
    }

    proptest! {
        /// The anchored search returns exactly what the plain one did (lengths and rank
        /// ranges), on small alphabets where matches are long and repeat many ways.
        #[test]
        fn longest_matches_equal_reference(
            docs in prop::collection::vec(
                prop::collection::vec(prop_oneof![8 => (0u8..3).prop_map(|b| b'a' + b), 1 => Just(b'z')], 0..60),
                1..6),
            outputs in prop::collection::vec(
                prop::collection::vec(prop_oneof![
                    20 => (0u8..3).prop_map(|b| b'a' + b),
                    1 => Just(b'y'),
                    1 => Just(0xFFu8),
                ], 0..80),
                1..4),
            copy in any::<prop::sample::Index>(),
        ) {
            let (_tmp, index) = open_docs(&docs);
            let mut outputs = outputs;
            // A verbatim copy of a document (with a tail) too: the long carried matches.
            let d = &docs[copy.index(docs.len())];
            let mut copied = d.clone();
            copied.extend_from_slice(d);
            copied.push(b'a');
            outputs.push(copied);
            for out in &outputs {
                let got = index.longest_matches(out).unwrap();
                prop_assert_eq!(got, index.longest_matches_reference(out), "output {:?}", out);
            }
        }
    }

    proptest! {
        /// A pointer read with one masked 8-byte load is the byte-wise little-endian value, for
        /// every width, at every rank (the table's last entries too) and past the table's end.
        #[test]
        fn pointer_at_equals_bytewise(
            width in 1usize..=8,
            table in prop::collection::vec(any::<u8>(), 0..80),
        ) {
            let entries = (table.len() / width) as u64;
            for r in 0..entries + 3 {
                let at = r as usize * width;
                let want = table.get(at..at + width).map_or(0, |b| {
                    b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x))
                });
                prop_assert_eq!(pointer_at(&table, width, r), want, "width {} rank {}", width, r);
            }
            prop_assert_eq!(pointer_at(&table, width, u64::MAX), 0);
        }
    }

    proptest! {
        /// The word-at-a-time common prefix is the byte-by-byte one, for prefixes that end
        /// inside the first word, at and around word and 64-byte block boundaries, past
        /// several blocks, and at the end of either slice.
        #[test]
        fn common_prefix_equals_bytewise(
            shared in 0usize..300,
            tail_a in prop::collection::vec(any::<u8>(), 0..20),
            tail_b in prop::collection::vec(any::<u8>(), 0..20),
            seed in any::<u8>(),
        ) {
            let prefix: Vec<u8> = (0..shared).map(|i| seed.wrapping_add(i as u8)).collect();
            let a = [&prefix[..], &tail_a[..]].concat();
            let b = [&prefix[..], &tail_b[..]].concat();
            let want = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            prop_assert_eq!(common_prefix(&a, &b), want);
            prop_assert_eq!(common_prefix(&b, &a), want);
            prop_assert_eq!(common_prefix(&a, &a), a.len());
        }
    }

    proptest! {
        /// Issue 21: the one-pass range search finds exactly the ranks two separate binary
        /// searches did, for patterns that occur many times, once, or not at all.
        #[test]
        fn range_in_equals_two_searches(
            docs in prop::collection::vec(
                prop::collection::vec((0u8..3).prop_map(|b| b'a' + b), 0..80), 1..6),
            patterns in prop::collection::vec(
                prop::collection::vec(prop_oneof![
                    20 => (0u8..3).prop_map(|b| b'a' + b),
                    1 => Just(b'y'),
                ], 1..12),
                1..20),
        ) {
            let (_tmp, index) = open_docs(&docs);
            for p in &patterns {
                let mut budget = Budget::unlimited();
                let mut search = Search::new(&mut budget);
                let whole = (0, index.n());
                let got = index.range_in(p, whole, 0, &mut search).unwrap();
                let want = index.range_in_reference(p, whole, 0, &mut search).unwrap();
                prop_assert_eq!(got, want, "pattern {:?}", p);
            }
        }

        /// Issue 21: on prose-like text (long unique matches, as in the server benchmark) the
        /// one-search extension gives what the byte-by-byte one did, for outputs pieced
        /// together from the documents, with noise and separators between the pieces.
        #[test]
        fn longest_matches_on_prose_equal_reference(
            seeds in prop::collection::vec(1u64..1_000_000, 1..5),
            pieces in prop::collection::vec((0usize..5, 0usize..2000, 0usize..120, prop_oneof![
                Just(Vec::new()),
                prop::collection::vec(any::<u8>(), 1..4),
            ]), 1..8),
        ) {
            let docs: Vec<Vec<u8>> = seeds.iter().map(|&s| prose(2000, s)).collect();
            let (_tmp, index) = open_docs(&docs);
            let mut out = Vec::new();
            for (d, at, len, noise) in &pieces {
                let doc = &docs[d % docs.len()];
                let at = (*at).min(doc.len());
                out.extend_from_slice(&doc[at..(at + len).min(doc.len())]);
                out.extend_from_slice(noise);
            }
            let got = index.longest_matches(&out).unwrap();
            prop_assert_eq!(got, index.longest_matches_reference(&out));
        }
    }

    /// Issue 15: a 1 MiB copy of an indexed document. The plain search compared the whole
    /// carried match at every start (~10^12 byte comparisons, 94 s of CPU); the anchored one
    /// takes a few hundred steps per byte at most, far under its budget.
    #[test]
    fn megabyte_copy_is_linear_in_steps() {
        let doc = prose(MAX_OUTPUT_BYTES + 4096, 7);
        let other = prose(64 * 1024, 99);
        let (_tmp, index) = open_docs(&[other, doc.clone()]);
        let out = &doc[1000..1000 + MAX_OUTPUT_BYTES];
        let mut budget = Budget::for_output(out.len());
        let matches = index.longest_matches_within(out, &mut budget).unwrap();
        assert_eq!(matches[0].len, out.len());
        assert_eq!(matches[out.len() - 1].len, 1);
        let per_byte = budget.used() / out.len() as u64;
        assert!(
            per_byte < 200,
            "{per_byte} steps per byte (budget {})",
            crate::budget::STEPS_PER_OUTPUT_BYTE
        );
    }

    /// The first holder of bytes of any length: the lowest document not skipped, nobody when
    /// absent or all skipped, and `TooCommon` (no scan) past the occurrence limit.
    #[test]
    fn earliest_holder_of_any_length_with_a_limit() {
        let docs = [&b"xx abc yy"[..], b"abc", b"zz abc", b"q"].map(<[u8]>::to_vec);
        let (_tmp, index) = open_docs(&docs);
        let mut budget = Budget::for_output(1024);
        let mut holder = |bytes: &[u8], skip: &dyn Fn(u32) -> bool, max: u64| {
            index
                .earliest_holder_of(bytes, skip, max, &mut budget)
                .unwrap()
        };
        let none = |_: u32| false;
        assert_eq!(holder(b"abc", &none, 3), Holder::Earliest(0));
        assert_eq!(holder(b"abc", &|d| d == 0, 3), Holder::Earliest(1));
        assert_eq!(holder(b"abc", &|d| d < 3, 3), Holder::None);
        assert_eq!(holder(b"abc", &none, 2), Holder::TooCommon);
        assert_eq!(holder(b"c y", &none, 1), Holder::Earliest(0));
        assert_eq!(holder(b"abd", &none, 3), Holder::None);
        assert_eq!(holder(b"", &none, 3), Holder::None);
    }

    /// Text that repeats the index every way (a long run of one byte against a long run of
    /// it) still makes long comparisons: the budget stops it, and nothing runs on.
    #[test]
    fn repetitive_text_is_stopped_by_the_budget() {
        let (_tmp, index) = open_docs(&[vec![b'a'; 200_000]]);
        let mut out = vec![b'a'; 100_000];
        out.push(b'b');
        let mut budget = Budget::for_output(out.len());
        let err = index.longest_matches_within(&out, &mut budget).unwrap_err();
        assert_eq!(err.code(), "E_ATTRIBUTION_BUDGET");
        assert!(budget.used() <= budget.limit() + 64 * 1024);
    }

    /// A passed deadline or a set cancellation flag stops the search at its next check, and
    /// the progress counter stops growing.
    #[test]
    fn deadline_and_cancel_stop_the_search() {
        let (_tmp, index) = open_docs(&[vec![b'a'; 200_000]]);
        let mut out = vec![b'a'; 100_000];
        out.push(b'b');
        let progress = Arc::new(AtomicU64::new(0));
        let mut budget = Budget::unlimited()
            .with_deadline(std::time::Instant::now())
            .with_progress(Arc::clone(&progress));
        let err = index.longest_matches_within(&out, &mut budget).unwrap_err();
        assert_eq!(err.code(), "E_ATTRIBUTION_TIMEOUT");
        assert!(budget.used() <= 2 * crate::budget::CHECK_EVERY_STEPS + 64 * 1024);

        let cancel = Arc::new(AtomicBool::new(false));
        let progress = Arc::new(AtomicU64::new(0));
        let worker = {
            let (cancel, progress) = (Arc::clone(&cancel), Arc::clone(&progress));
            let index = Arc::new(index);
            std::thread::spawn(move || {
                let mut budget = Budget::unlimited()
                    .with_cancel(cancel)
                    .with_progress(progress);
                index.longest_matches_within(&out, &mut budget)
            })
        };
        while progress.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        cancel.store(true, Ordering::Relaxed);
        let err = worker.join().unwrap().unwrap_err();
        assert_eq!(err.code(), "E_ATTRIBUTION_TIMEOUT");
        let stopped_at = progress.load(Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(progress.load(Ordering::Relaxed), stopped_at);
    }
}
