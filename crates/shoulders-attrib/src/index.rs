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
//! * **Reading**: [`Index::open`] loads `tokenized.0`, `table.0` and `offset.0` into memory
//!   (no `mmap`: the workspace forbids `unsafe`): **`1 + w` bytes per token** plus 16 bytes per
//!   document (offsets and contribution ids). An index must therefore fit in RAM.
//!
//! # Query semantics
//!
//! [`Index::count`] follows infini-gram's count: the number of positions of the token array at
//! which the query occurs. Queries come from UTF-8, so a match never spans a separator; a
//! query containing `0xFF` (or an empty query) counts 0 and finds nothing.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

/// Length of the common prefix of two equally long slices; compares 64-byte blocks with
/// slice equality (`memcmp`) first, so long matches are cheap to verify.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 64;
    let len = a.len().min(b.len());
    let mut k = 0;
    while k + BLOCK <= len && a[k..k + BLOCK] == b[k..k + BLOCK] {
        k += BLOCK;
    }
    k + a[k..len]
        .iter()
        .zip(&b[k..len])
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
/// Memory: about 5 bytes per token up to 2 GiB of tokens, 9 above (see the module docs).
pub fn build(
    dir: &Path,
    docs: impl Iterator<Item = Result<DocInput, IndexError>>,
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

    // Take in the documents.
    let mut text: Vec<u8> = Vec::new();
    let mut offsets: Vec<u64> = Vec::new();
    let mut contributions: Vec<u64> = Vec::new();
    for doc in docs {
        let doc = doc?;
        let ordinal = contributions.len() as u64;
        if doc.bytes.len() as u64 > MAX_DOC_BYTES {
            return Err(IndexError::TooLarge(format!(
                "document {ordinal} has {} bytes (limit {MAX_DOC_BYTES})",
                doc.bytes.len()
            )));
        }
        if let Err(e) = std::str::from_utf8(&doc.bytes) {
            return Err(IndexError::InvalidDocument {
                doc: ordinal,
                offset: e.valid_up_to(),
            });
        }
        let new_len = text.len() as u64 + 1 + doc.bytes.len() as u64;
        if new_len > MAX_TOTAL_BYTES {
            return Err(IndexError::TooLarge(format!(
                "token array would reach {new_len} bytes (limit {MAX_TOTAL_BYTES})"
            )));
        }
        if ordinal >= u64::from(u32::MAX) {
            return Err(IndexError::TooLarge(format!(
                "more than {} documents",
                u32::MAX
            )));
        }
        offsets.push(text.len() as u64);
        contributions.push(doc.contribution);
        text.push(DOC_SEP);
        text.extend_from_slice(&doc.bytes);
        progress(text.len() as u64);
    }
    if contributions.is_empty() {
        return Err(IndexError::Empty);
    }

    let token_count = text.len() as u64;
    let width = pointer_width(token_count);
    let info = IndexInfo {
        format: FORMAT.to_string(),
        version: FORMAT_VERSION,
        tokenizer: TOKENIZER.to_string(),
        pointer_width: width,
        doc_count: contributions.len() as u64,
        token_count,
        contributions,
    };

    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let tmp_path = parent.join(format!(".{name}.tmp-{}", unique_suffix()));
    fs::create_dir(&tmp_path).map_err(io_err(&tmp_path))?;
    let mut guard = TempDir(Some(tmp_path.clone()));

    write_file(&tmp_path.join(TOKENIZED_FILE), |w| w.write_all(&text))?;
    write_file(&tmp_path.join(OFFSET_FILE), |w| {
        for o in &offsets {
            w.write_all(&o.to_le_bytes())?;
        }
        Ok(())
    })?;
    drop(offsets);

    let table_path = tmp_path.join(TABLE_FILE);
    if text.len() <= i32::MAX as usize {
        let sa = libsais::SuffixArrayConstruction::for_text(text.as_slice())
            .in_owned_buffer32()
            .single_threaded()
            .run()
            .map_err(|e| IndexError::TooLarge(format!("suffix array construction: {e:?}")))?
            .into_vec();
        write_table(&table_path, &sa, text.len(), width)?;
    } else {
        let sa = libsais::SuffixArrayConstruction::for_text(text.as_slice())
            .in_owned_buffer64()
            .single_threaded()
            .run()
            .map_err(|e| IndexError::TooLarge(format!("suffix array construction: {e:?}")))?
            .into_vec();
        write_table(&table_path, &sa, text.len(), width)?;
    }
    drop(text);

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

/// An opened index, held in memory (see the module docs for the cost).
#[derive(Debug)]
pub struct Index {
    info: IndexInfo,
    text: Vec<u8>,
    table: Vec<u8>,
    offsets: Vec<u64>,
    width: usize,
}

fn read_all(path: &Path, expected: u64) -> Result<Vec<u8>, IndexError> {
    let file = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            IndexError::Corrupt(format!("missing {}", path.display()))
        } else {
            io_err(path)(e)
        }
    })?;
    let meta = file.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(IndexError::Corrupt(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let len = meta.len();
    if len != expected {
        return Err(IndexError::Corrupt(format!(
            "{} has {len} bytes, expected {expected}",
            path.display()
        )));
    }
    let cap = usize::try_from(expected)
        .map_err(|_| IndexError::TooLarge(format!("{} does not fit in memory", path.display())))?;
    let mut buf = Vec::with_capacity(cap);
    (&file)
        .take(expected)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    if buf.len() != cap {
        return Err(IndexError::Corrupt(format!(
            "{} changed size while reading",
            path.display()
        )));
    }
    Ok(buf)
}

impl Index {
    /// Opens and validates the index in `dir`: file sizes against the metadata, the pointer
    /// width, every document offset against the separators in `tokenized.0`, and every
    /// suffix-array pointer against the token count (`O(tokens)`; the sort order itself is
    /// not re-checked). Anything wrong or missing is `E_INDEX_CORRUPT`.
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

        let text = read_all(&dir.join(TOKENIZED_FILE), n)?;
        let offset_bytes = read_all(&dir.join(OFFSET_FILE), info.doc_count * 8)?;
        let offsets: Vec<u64> = offset_bytes
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect();
        drop(offset_bytes);
        // Offsets must be exactly the separator positions, the first at 0.
        let mut seps = text
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == DOC_SEP)
            .map(|(i, _)| i as u64);
        for (d, &o) in offsets.iter().enumerate() {
            if seps.next() != Some(o) || (d == 0 && o != 0) {
                return Err(IndexError::Corrupt(format!(
                    "{OFFSET_FILE}: document {d} offset {o} is not a separator position"
                )));
            }
        }
        if seps.next().is_some() {
            return Err(IndexError::Corrupt(format!(
                "{TOKENIZED_FILE}: more separators than documents"
            )));
        }

        let table = read_all(&dir.join(TABLE_FILE), n * width as u64)?;
        let index = Index {
            info,
            text,
            table,
            offsets,
            width,
        };
        if let Some(bad) = (0..n).find(|&r| index.sa(r) >= n) {
            return Err(IndexError::Corrupt(format!(
                "{TABLE_FILE}: pointer at rank {bad} is out of range"
            )));
        }
        Ok(index)
    }

    /// The metadata.
    pub fn info(&self) -> &IndexInfo {
        &self.info
    }

    /// Pointer stored at suffix-array rank `r` (caller keeps `r < token_count`).
    fn sa(&self, r: u64) -> u64 {
        let at = r as usize * self.width;
        let mut b = [0u8; 8];
        if let Some(src) = self.table.get(at..at + self.width) {
            b[..self.width].copy_from_slice(src);
        }
        u64::from_le_bytes(b)
    }

    fn n(&self) -> u64 {
        self.text.len() as u64
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
    /// `> p` (`upper == true`); all suffixes in the range share `known` bytes with `p`.
    /// Binary search keeping the common prefix with both ends (Manber–Myers), so a step
    /// compares only from `min(lcp_lo, lcp_hi)` on.
    fn bound(&self, p: &[u8], mut lo: u64, mut hi: u64, upper: bool, known: usize) -> u64 {
        use std::cmp::Ordering;
        let (mut llcp, mut rlcp) = (known, known);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let (lcp, ord) = self.compare_from(self.sa(mid), p, llcp.min(rlcp));
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
        lo
    }

    /// Suffix-array rank range of suffixes starting with `p` within `[lo, hi)`, whose suffixes
    /// all share `known` bytes with `p`.
    fn range_in(&self, p: &[u8], lo: u64, hi: u64, known: usize) -> (u64, u64) {
        let start = self.bound(p, lo, hi, false, known);
        let end = self.bound(p, start, hi, true, known);
        (start, end)
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
        let (lo, hi) = self.range_in(query, 0, self.n(), 0);
        Ok(hi - lo)
    }

    /// Up to `limit` occurrences of `query`: those with the lowest suffix-array ranks
    /// (deterministic for a given index), returned sorted by `(doc, offset)`.
    pub fn find(&self, query: &[u8], limit: usize) -> Result<Vec<Hit>, IndexError> {
        if !Self::check_query(query, MAX_QUERY_BYTES)? {
            return Ok(Vec::new());
        }
        let (lo, hi) = self.range_in(query, 0, self.n(), 0);
        let take = (hi - lo).min(limit as u64);
        let mut hits: Vec<Hit> = (lo..lo + take)
            .filter_map(|r| self.locate(self.sa(r)))
            .collect();
        hits.sort_unstable_by_key(|h| (h.doc, h.offset));
        Ok(hits)
    }

    /// Suffix-array rank range of every suffix starting with `p` (empty `p`: everything).
    /// Unlike [`Index::count`] this accepts any bytes; callers keep `p` short.
    pub(crate) fn rank_range(&self, p: &[u8]) -> (u64, u64) {
        if p.is_empty() {
            return (0, self.n());
        }
        self.range_in(p, 0, self.n(), 0)
    }

    /// Token-array position stored at rank `r` (`r < token_count`).
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

    /// Maps a token-array position inside a document to its hit.
    fn locate(&self, pos: u64) -> Option<Hit> {
        let doc = self.offsets.partition_point(|&o| o <= pos).checked_sub(1)?;
        let start = self.offsets[doc] + 1;
        Some(Hit {
            contribution: *self.info.contributions.get(doc)?,
            doc: u32::try_from(doc).ok()?,
            offset: pos.checked_sub(start)?,
        })
    }

    /// OLMoTrace-style maximal matching spans of `output`.
    ///
    /// For every start `i`, let `e(i)` be the end of the longest prefix of `output[i..]` that
    /// occurs in the index (a `0xFF` byte never matches). Span `[i, e(i))` is reported when
    /// `e(i) - i >= max(min_len, 1)`, `e(i) > e(i-1)` (it is not inside the span found for
    /// `i - 1`), and it occurs at most `max_occurrences` times. Spans come out by `start`.
    ///
    /// Since `e(i) >= e(i-1)`, the search at `i` starts from the known match
    /// `output[i..e(i-1)]` (one binary search over the whole suffix array, comparing from the
    /// common prefix with both ends) and then extends byte by byte, each step a binary search
    /// of one byte inside the current range. Extension steps total `O(|output|)`, so the cost
    /// is `O(|output| · log N)` for extensions plus, per start, one search for the carried-over
    /// match: `O(|output| · match_len · log N)` worst case, near `O(|output| · (match_len +
    /// log N))` in practice.
    pub fn maximal_spans(
        &self,
        output: &[u8],
        min_len: usize,
        max_occurrences: u64,
    ) -> Result<Vec<Span>, IndexError> {
        if output.len() > MAX_OUTPUT_BYTES {
            return Err(IndexError::QueryTooLarge {
                len: output.len(),
                limit: MAX_OUTPUT_BYTES,
            });
        }
        let min_len = min_len.max(1);
        let n = self.n();
        let mut spans = Vec::new();
        let mut prev_end = 0usize;
        for i in 0..output.len() {
            let carried = prev_end.saturating_sub(i);
            let (mut lo, mut hi) = if carried > 0 {
                self.range_in(&output[i..i + carried], 0, n, 0)
            } else {
                (0, n)
            };
            let mut len = carried;
            if lo >= hi {
                // Only possible on an inconsistent table: start over from nothing.
                (lo, hi, len) = (0, n, 0);
            }
            while i + len < output.len() && output[i + len] != DOC_SEP {
                let p = &output[i..i + len + 1];
                let (l2, h2) = self.range_in(p, lo, hi, len);
                if l2 >= h2 {
                    break;
                }
                (lo, hi) = (l2, h2);
                len += 1;
            }
            let end = i + len;
            if len >= min_len && end > prev_end && hi - lo <= max_occurrences {
                spans.push(Span {
                    start: i,
                    end,
                    occurrences: hi - lo,
                });
            }
            prev_end = prev_end.max(end);
        }
        Ok(spans)
    }
}
