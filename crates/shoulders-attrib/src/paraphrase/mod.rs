//! Paraphrase attribution: a passage-level inverted index (tantivy, BM25) over the same
//! contributed documents as the suffix-array index, crediting the sources of outputs that
//! reword a passage instead of copying it (which exact span matching cannot see).
//!
//! # Passages
//!
//! [`split_passages`] cuts a document at blank lines (a line of whitespace only) into
//! paragraphs, packs runs of short paragraphs (each under [`MIN_PASSAGE_BYTES`], e.g. a heading
//! and the options of a manual page) together until a passage reaches that size (never past
//! [`MAX_PASSAGE_BYTES`]), and cuts a longer paragraph into about equal pieces within the cap,
//! at whitespace, preferably at the end of a sentence. Every passage is a byte range
//! `[start, end)` of the ORIGINAL document, trimmed of surrounding whitespace, on UTF-8
//! boundaries.
//!
//! # Analyser
//!
//! [`analyse`] is tantivy's `SimpleTokenizer` (runs of alphanumeric characters), terms over
//! [`MAX_TERM_BYTES`] dropped, lower-cased, Lucene's English stop words ([`STOP_WORDS`])
//! removed, then the English Snowball stemmer. The index and the queries use the same chain.
//!
//! # Credit: floats rank, integers decide
//!
//! BM25 (tantivy's, `f32`, over the [`MAX_RETRIEVAL_TERMS`] rarest query terms: common terms
//! barely move BM25 but dominate its cost) only picks the [`MAX_CANDIDATES`] candidate passages
//! (every matching passage is scored; ties broken by contribution, then start). Whether a
//! candidate earns credit is decided by [`confidence_ppm`], computed with integer operations
//! only, from document frequencies and every query term:
//!
//! * `idf(t) = log2(N + 1) − log2(max(df(t), 1))` in fixed point with [`IDF_FRAC_BITS`]
//!   fractional bits ([`idf_fp`], [`log2_fp`]), `N` the number of indexed passages, `df(t)` the
//!   passages containing `t`. A query term found nowhere weighs as much as a term found once.
//! * `overlap = 2 · Σ idf(t), t ∈ Q ∩ P / (Σ idf(t), t ∈ Q + Σ idf(t), t ∈ P)`: the
//!   idf-weighted Dice coefficient of the output's distinct terms `Q` (at most
//!   [`MAX_QUERY_TERMS`]) and the passage's `P`, i.e. the harmonic mean of "how much of the
//!   output is in the passage" and "how much of the passage is in the output".
//! * `order = shared adjacent term pairs / adjacent term pairs of the output` (pairs of
//!   consecutive analysed terms): rewording keeps some local phrases, a bag of words does not.
//! * `confidence = (OVERLAP_WEIGHT · overlap + ORDER_WEIGHT · order) / 100` (80/20), in parts
//!   per million (see [`confidence_ppm`]).
//!
//! A candidate is credited when its confidence is at least
//! [`ParaphraseOptions::min_confidence_ppm`] (default [`DEFAULT_MIN_CONFIDENCE_PPM`], chosen
//! from the evaluation set in `tests/data/paraphrase/`; ARCHITECTURE.md, *Attribution*, has
//! the figures). On that set the word-order term separates paraphrases from the closest
//! negatives better than the term overlap alone: with the threshold 15% above each formula's
//! best negative, 52 of 54 paraphrases reach their source with 80/20 and 51 with 100/0; and a
//! bag of words (no shared pairs) loses a fifth of its score.
//!
//! # Copies earn nothing
//!
//! Passages whose term sets have a Jaccard similarity of at least [`DUPLICATE_JACCARD_PPM`] are
//! the same content, credited once to the earliest (lowest contribution id, then lowest start):
//!
//! * at build time a passage whose term set equals that of a passage already indexed from an
//!   earlier-or-equal contribution (a copy, a case change, a bag-of-words shuffle) is not
//!   indexed at all (counted in [`ParaphraseInfo::duplicate_passages`]), so it neither competes
//!   for a candidate slot nor dilutes the original's idf;
//! * at query time every candidate above the threshold is replaced by the earliest near
//!   duplicate in the whole index (a second BM25 search, over its [`MAX_DUPLICATE_SEARCH_TERMS`]
//!   rarest terms, among contributions up to its own only, so later contributions cannot crowd
//!   the original out), which is credited only if its OWN confidence reaches the threshold;
//!   credited passages that are near duplicates of each other keep only the earliest.
//!
//! # Limits and memory
//!
//! Queries up to [`MAX_QUERY_BYTES`] (`E_QUERY_TOO_LARGE`), of which the first
//! [`MAX_QUERY_TERMS`] distinct terms are used; documents as [`crate::index::build`] limits
//! them (size, UTF-8, total) and at most [`MAX_PASSAGES`] passages. The build holds one
//! document, the tantivy writer's heap ([`WRITER_HEAP_BYTES`]) and 16 bytes of term-set digest
//! plus a contribution id per indexed passage (about 40 bytes with the hash map). The index
//! stores each passage's text (lz4) to recompute its term set at query time; it is read through
//! tantivy's memory-mapped directory.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, FAST, STORED,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{DocAddress, IndexReader, ReloadPolicy, Score, TantivyDocument, Term};

mod collector;
mod passages;
mod score;

use collector::TopCandidates;
pub use passages::split_passages;
pub use score::{confidence_ppm, idf_fp, jaccard_ppm, log2_fp, ratio_ppm};

use crate::index::{
    io_err, sync_dir, unique_suffix, DocInput, IndexError, TempDir, MAX_DOC_BYTES, MAX_TOTAL_BYTES,
};

/// Heap of the tantivy writer during a build (one indexing thread), in bytes.
pub const WRITER_HEAP_BYTES: usize = 64 << 20;
/// Largest passage, in bytes (a longer paragraph is cut at whitespace).
pub const MAX_PASSAGE_BYTES: usize = 600;
/// Consecutive paragraphs are packed into one passage while it is shorter than this.
pub const MIN_PASSAGE_BYTES: usize = 200;
/// Most passages in one index (tantivy numbers documents with `u32`, below `2^31`).
pub const MAX_PASSAGES: u64 = (1 << 31) - 1;
/// Terms longer than this (in bytes) are dropped by the analyser.
pub const MAX_TERM_BYTES: usize = 40;
/// Largest accepted query, in bytes (1 MiB).
pub const MAX_QUERY_BYTES: usize = 1 << 20;
/// Distinct query terms used (the first ones, in text order).
pub const MAX_QUERY_TERMS: usize = 256;
/// BM25 candidates examined per query (and per duplicate search).
pub const MAX_CANDIDATES: usize = 20;
/// Terms a BM25 search uses: the rarest (highest idf, then smallest) of the query's. Common
/// terms barely move BM25 but their posting lists dominate its cost; the confidence still
/// weighs every query term.
pub const MAX_RETRIEVAL_TERMS: usize = 32;
/// Terms of a candidate's duplicate search (its rarest): a near duplicate (Jaccard ≥ 80%)
/// holds most of them, so it ranks at the top among earlier contributions.
pub const MAX_DUPLICATE_SEARCH_TERMS: usize = 12;
/// Fractional bits of the fixed-point `log2` and idf.
pub const IDF_FRAC_BITS: u32 = 16;
/// Term-set Jaccard similarity (ppm) at or above which two passages are the same content.
pub const DUPLICATE_JACCARD_PPM: u32 = 800_000;
/// Weight (percent) of the idf-weighted term overlap (Dice) in the confidence.
pub const OVERLAP_WEIGHT: u64 = 80;
/// Weight (percent) of the shared adjacent term pairs in the confidence.
pub const ORDER_WEIGHT: u64 = 20;
/// Default [`ParaphraseOptions::min_confidence_ppm`]: on the evaluation set the highest
/// confidence of any negative is about 374 000 and 53 of 54 paraphrases reach their source
/// at 420 000 or more (see ARCHITECTURE.md, *Attribution*).
pub const DEFAULT_MIN_CONFIDENCE_PPM: u32 = 420_000;
/// Default [`ParaphraseOptions::max_matches`].
pub const DEFAULT_MAX_MATCHES: usize = 3;
/// Parts per million.
pub const PPM: u32 = 1_000_000;

/// Lucene's English stop words (`EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`), fixed here so the
/// analyser (part of the index format) does not change with a dependency.
pub const STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// `format` of `shoulders-paraphrase.json`.
pub const FORMAT: &str = "shoulders-paraphrase-index";
/// Current `version` of `shoulders-paraphrase.json`.
pub const FORMAT_VERSION: u32 = 1;
/// Analyser name, registered with tantivy and recorded in the metadata.
pub const ANALYZER: &str = "shoulders-en-stem-stop-v1";
/// Our metadata file (next to tantivy's files).
pub const META_FILE: &str = "shoulders-paraphrase.json";
/// Largest accepted metadata file, in bytes.
const MAX_META_BYTES: u64 = 1 << 20;

const F_TEXT: &str = "text";
const F_CONTRIBUTION: &str = "contribution";
const F_START: &str = "start";
const F_END: &str = "end";

/// What `shoulders-paraphrase.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParaphraseInfo {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`FORMAT_VERSION`] for indexes this code writes.
    pub version: u32,
    /// Always [`ANALYZER`].
    pub analyzer: String,
    /// [`MAX_PASSAGE_BYTES`] at build time.
    pub max_passage_bytes: u64,
    /// Documents taken in.
    pub doc_count: u64,
    /// Their bytes.
    pub doc_bytes: u64,
    /// Passages indexed.
    pub passage_count: u64,
    /// Passages not indexed: same term set as a passage of an earlier-or-equal contribution.
    pub duplicate_passages: u64,
    /// Passages not indexed: no term at all (punctuation, stop words).
    pub empty_passages: u64,
}

/// Options of [`ParaphraseIndex::query`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParaphraseOptions {
    /// Least confidence that earns credit, ppm.
    pub min_confidence_ppm: u32,
    /// Most matches returned.
    pub max_matches: usize,
}

impl Default for ParaphraseOptions {
    fn default() -> Self {
        ParaphraseOptions {
            min_confidence_ppm: DEFAULT_MIN_CONFIDENCE_PPM,
            max_matches: DEFAULT_MAX_MATCHES,
        }
    }
}

/// A credited passage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ParaphraseMatch {
    /// Contribution of the document.
    pub contribution: u64,
    /// Start byte of the passage in the document.
    pub start: u64,
    /// End byte (exclusive) of the passage in the document.
    pub end: u64,
    /// [`confidence_ppm`] of the passage for the query: what decides credit.
    pub confidence_ppm: u32,
    /// BM25 score of the passage (display only; decides nothing but candidate order).
    pub bm25: f32,
}

/// The integer evidence behind a confidence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlap {
    /// Σ idf over the distinct query terms used (fixed point, [`IDF_FRAC_BITS`]).
    pub query_weight: u64,
    /// Σ idf over those of them that occur in the passage.
    pub matched_weight: u64,
    /// Σ idf over the passage's distinct terms.
    pub passage_weight: u64,
    /// Distinct adjacent term pairs of the query.
    pub query_pairs: u32,
    /// Of those, the pairs that are also adjacent in the passage.
    pub shared_pairs: u32,
}

/// A BM25 candidate with its evidence (diagnostics: [`ParaphraseIndex::candidates`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The passage, its confidence and BM25 score.
    pub passage: ParaphraseMatch,
    /// The evidence of its confidence.
    pub overlap: Overlap,
}

/// The analyser of the index and of the queries (see the module docs).
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TERM_BYTES))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(
            STOP_WORDS.iter().map(|w| (*w).to_string()),
        ))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The analysed terms of `text`, in text order (repeats kept).
pub fn analyse(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while let Some(token) = stream.next() {
        out.push(token.text.clone());
    }
    out
}

fn term_set(terms: &[String]) -> Vec<String> {
    let mut set = terms.to_vec();
    set.sort_unstable();
    set.dedup();
    set
}

fn pairs(terms: &[String]) -> HashSet<(&str, &str)> {
    terms
        .windows(2)
        .map(|w| (w[0].as_str(), w[1].as_str()))
        .collect()
}

/// The `limit` rarest of distinct weighted terms: highest idf first, ties by the term.
fn rarest<'a>(terms: impl Iterator<Item = (&'a str, u32)>, limit: usize) -> Vec<String> {
    let mut v: Vec<(&str, u32)> = terms.collect();
    v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.into_iter()
        .take(limit)
        .map(|(t, _)| t.to_string())
        .collect()
}

fn tantivy_err(path: &Path) -> impl FnOnce(tantivy::TantivyError) -> IndexError + '_ {
    move |e| match e {
        tantivy::TantivyError::IoError(io) => IndexError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(io.kind(), io.to_string()),
        },
        other => IndexError::Corrupt(format!("{}: {other}", path.display())),
    }
}

struct Fields {
    text: Field,
    contribution: Field,
    start: Field,
    end: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = b.add_text_field(
        F_TEXT,
        TextOptions::default().set_stored().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(IndexRecordOption::WithFreqs),
        ),
    );
    let contribution = b.add_u64_field(F_CONTRIBUTION, FAST | STORED);
    let start = b.add_u64_field(F_START, FAST | STORED);
    let end = b.add_u64_field(F_END, STORED);
    (
        b.build(),
        Fields {
            text,
            contribution,
            start,
            end,
        },
    )
}

fn fields_of(schema: &Schema) -> Result<Fields, IndexError> {
    let get = |name: &str| {
        schema
            .get_field(name)
            .map_err(|_| IndexError::Corrupt(format!("paraphrase index lacks field {name:?}")))
    };
    Ok(Fields {
        text: get(F_TEXT)?,
        contribution: get(F_CONTRIBUTION)?,
        start: get(F_START)?,
        end: get(F_END)?,
    })
}

/// `dir`'s parent (`.` when none) and final component.
fn parent_and_name(dir: &Path) -> Result<(PathBuf, String), IndexError> {
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
    Ok((parent, name))
}

/// Takes in the documents: checks them as [`crate::index::build`] does, splits, analyses,
/// drops term-set copies and adds the passages to `writer`.
fn add_documents(
    writer: &mut tantivy::IndexWriter,
    f: &Fields,
    docs: impl Iterator<Item = Result<DocInput, IndexError>>,
    info: &mut ParaphraseInfo,
) -> Result<(), IndexError> {
    let mut analyzer = analyzer();
    // Term-set digest -> lowest contribution indexed with that term set.
    let mut seen: HashMap<[u8; 16], u64> = HashMap::new();
    let mut total: u64 = 0;
    for doc in docs {
        let doc = doc?;
        let ordinal = info.doc_count;
        if doc.bytes.len() as u64 > MAX_DOC_BYTES {
            return Err(IndexError::TooLarge(format!(
                "document {ordinal} has {} bytes (limit {MAX_DOC_BYTES})",
                doc.bytes.len()
            )));
        }
        let text = std::str::from_utf8(&doc.bytes).map_err(|e| IndexError::InvalidDocument {
            doc: ordinal,
            offset: e.valid_up_to(),
        })?;
        total += 1 + doc.bytes.len() as u64;
        if total > MAX_TOTAL_BYTES {
            return Err(IndexError::TooLarge(format!(
                "documents reach {total} bytes (limit {MAX_TOTAL_BYTES})"
            )));
        }
        if ordinal >= u64::from(u32::MAX) {
            return Err(IndexError::TooLarge(format!(
                "more than {} documents",
                u32::MAX
            )));
        }
        info.doc_count += 1;
        info.doc_bytes += doc.bytes.len() as u64;
        for r in split_passages(text) {
            let passage = &text[r.clone()];
            let terms = term_set(&analyse(&mut analyzer, passage));
            if terms.is_empty() {
                info.empty_passages += 1;
                continue;
            }
            let mut h = Sha256::new();
            for t in &terms {
                h.update(t.as_bytes());
                h.update([0u8]);
            }
            let mut digest = [0u8; 16];
            digest.copy_from_slice(&h.finalize()[..16]);
            match seen.get(&digest) {
                Some(&c) if c <= doc.contribution => {
                    info.duplicate_passages += 1;
                    continue;
                }
                _ => {
                    seen.insert(digest, doc.contribution);
                }
            }
            if info.passage_count >= MAX_PASSAGES {
                return Err(IndexError::TooLarge(format!(
                    "more than {MAX_PASSAGES} passages"
                )));
            }
            let mut d = TantivyDocument::new();
            d.add_text(f.text, passage);
            d.add_u64(f.contribution, doc.contribution);
            d.add_u64(f.start, r.start as u64);
            d.add_u64(f.end, r.end as u64);
            writer
                .add_document(d)
                .map_err(|e| IndexError::Corrupt(format!("cannot add a passage: {e}")))?;
            info.passage_count += 1;
        }
    }
    if info.doc_count == 0 {
        return Err(IndexError::Empty);
    }
    Ok(())
}

/// Builds the passage index of `docs` in `dir`, replacing any index there.
///
/// Everything is written in a sibling temporary directory `.<name>.tmp-*` that then replaces
/// `dir` (the old one renamed aside first, removed after), as [`crate::index::build`] does:
/// readers see the old index or the new one, never a mix. The tantivy writer runs one thread
/// with a heap of [`WRITER_HEAP_BYTES`]; its segments are merged into one at the end (a
/// deterministic layout and one term dictionary per query term).
pub fn build(
    dir: &Path,
    docs: impl Iterator<Item = Result<DocInput, IndexError>>,
) -> Result<ParaphraseInfo, IndexError> {
    let (parent, name) = parent_and_name(dir)?;
    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let tmp_path = parent.join(format!(".{name}.tmp-{}", unique_suffix()));
    fs::create_dir(&tmp_path).map_err(io_err(&tmp_path))?;
    let mut guard = TempDir(Some(tmp_path.clone()));

    let (schema, f) = schema();
    let index = tantivy::Index::create_in_dir(&tmp_path, schema).map_err(tantivy_err(&tmp_path))?;
    index.tokenizers().register(ANALYZER, analyzer());
    let mut writer: tantivy::IndexWriter = index
        .writer_with_num_threads(1, WRITER_HEAP_BYTES)
        .map_err(tantivy_err(&tmp_path))?;
    let mut info = ParaphraseInfo {
        format: FORMAT.to_string(),
        version: FORMAT_VERSION,
        analyzer: ANALYZER.to_string(),
        max_passage_bytes: MAX_PASSAGE_BYTES as u64,
        doc_count: 0,
        doc_bytes: 0,
        passage_count: 0,
        duplicate_passages: 0,
        empty_passages: 0,
    };
    add_documents(&mut writer, &f, docs, &mut info)?;
    writer.commit().map_err(tantivy_err(&tmp_path))?;
    let segments = index
        .searchable_segment_ids()
        .map_err(tantivy_err(&tmp_path))?;
    if segments.len() > 1 {
        writer
            .merge(&segments)
            .wait()
            .map_err(tantivy_err(&tmp_path))?;
    }
    writer
        .wait_merging_threads()
        .map_err(tantivy_err(&tmp_path))?;

    let meta = serde_json::to_vec(&info)
        .map_err(|e| IndexError::Corrupt(format!("cannot encode metadata: {e}")))?;
    let meta_path = tmp_path.join(META_FILE);
    let file = File::create(&meta_path).map_err(io_err(&meta_path))?;
    (&file).write_all(&meta).map_err(io_err(&meta_path))?;
    file.sync_all().map_err(io_err(&meta_path))?;
    sync_dir(&tmp_path)?;

    // Swap into place.
    let mut old_guard = TempDir(None);
    if fs::symlink_metadata(dir).is_ok() {
        let old = parent.join(format!(".{name}.old-{}", unique_suffix()));
        fs::rename(dir, &old).map_err(io_err(dir))?;
        old_guard.0 = Some(old);
    }
    if let Err(e) = fs::rename(&tmp_path, dir) {
        if let Some(old) = old_guard.0.take() {
            let _ = fs::rename(&old, dir);
        }
        return Err(io_err(dir)(e));
    }
    guard.0 = None;
    sync_dir(&parent)?;
    drop(old_guard);
    Ok(info)
}

/// Add `docs` (contributions after every one indexed) to the passage index in `dir`.
///
/// LEAD: replace with the incremental append from branch i16-paraphrase. This stub rebuilds
/// the whole passage index from every document of the dataset's segmented index (`dir` is
/// `D/indexes/<name>.paraphrase`, the segments are in `D/indexes/<name>/`), so it must be
/// called after the manifest that lists `docs` is in place; `docs` is only drained.
pub fn append(
    dir: &Path,
    docs: impl Iterator<Item = Result<DocInput, IndexError>>,
) -> Result<ParaphraseInfo, IndexError> {
    for d in docs {
        d?;
    }
    let (parent, name) = parent_and_name(dir)?;
    let segments = parent.join(name.trim_end_matches(".paraphrase"));
    crate::dataset::rebuild_paraphrase(&segments, dir)
}

/// An opened passage index.
pub struct ParaphraseIndex {
    info: ParaphraseInfo,
    reader: IndexReader,
    fields: Fields,
    dir: PathBuf,
}

impl std::fmt::Debug for ParaphraseIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParaphraseIndex")
            .field("dir", &self.dir)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// A candidate passage read back from the index.
#[derive(Clone)]
struct Passage {
    contribution: u64,
    start: u64,
    end: u64,
    bm25: Score,
    terms: Vec<String>,
    set: Vec<String>,
}

/// Per-query state: the query terms, their idf and a cache of other terms' idf.
struct QueryTerms {
    /// The distinct terms used, sorted, with their idf.
    weighted: Vec<(String, u32)>,
    /// Σ idf over `weighted`.
    weight: u64,
    /// Distinct adjacent term pairs of `terms`.
    pairs: HashSet<(String, String)>,
    /// Passages in the index.
    n: u64,
    /// idf of terms looked up so far.
    idf: HashMap<String, u32>,
}

impl ParaphraseIndex {
    /// Builds the passage index of `docs` in `dir` (see [`build`]).
    pub fn build(
        dir: &Path,
        docs: impl Iterator<Item = Result<DocInput, IndexError>>,
    ) -> Result<ParaphraseInfo, IndexError> {
        build(dir, docs)
    }

    /// Opens the passage index in `dir`: our metadata (format, version, analyser) and tantivy's
    /// schema are checked against this code; anything wrong or missing is `E_INDEX_CORRUPT`.
    pub fn open(dir: &Path) -> Result<ParaphraseIndex, IndexError> {
        let meta_path = dir.join(META_FILE);
        let file = File::open(&meta_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                IndexError::Corrupt(format!("missing {}", meta_path.display()))
            } else {
                io_err(&meta_path)(e)
            }
        })?;
        let mut bytes = Vec::new();
        (&file)
            .take(MAX_META_BYTES)
            .read_to_end(&mut bytes)
            .map_err(io_err(&meta_path))?;
        let info: ParaphraseInfo = serde_json::from_slice(&bytes)
            .map_err(|e| IndexError::Corrupt(format!("{META_FILE}: {e}")))?;
        if info.format != FORMAT || info.version != FORMAT_VERSION || info.analyzer != ANALYZER {
            return Err(IndexError::Corrupt(format!(
                "{META_FILE}: unsupported format {:?} version {} analyzer {:?}",
                info.format, info.version, info.analyzer
            )));
        }
        let index = tantivy::Index::open_in_dir(dir).map_err(|e| match e {
            tantivy::TantivyError::IoError(_) => tantivy_err(dir)(e),
            other => IndexError::Corrupt(format!("{}: {other}", dir.display())),
        })?;
        let (expected, _) = schema();
        if index.schema() != expected {
            return Err(IndexError::Corrupt(format!(
                "{}: unexpected tantivy schema",
                dir.display()
            )));
        }
        let fields = fields_of(&index.schema())?;
        index.tokenizers().register(ANALYZER, analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(tantivy_err(dir))?;
        let searcher = reader.searcher();
        if searcher.num_docs() != info.passage_count {
            return Err(IndexError::Corrupt(format!(
                "{}: {} passages, metadata says {}",
                dir.display(),
                searcher.num_docs(),
                info.passage_count
            )));
        }
        Ok(ParaphraseIndex {
            info,
            reader,
            fields,
            dir: dir.to_path_buf(),
        })
    }

    /// The metadata.
    pub fn info(&self) -> &ParaphraseInfo {
        &self.info
    }

    /// Passages credited for `text`: candidates whose confidence reaches
    /// `opts.min_confidence_ppm`, each replaced by its earliest near duplicate (which must reach
    /// the threshold on its own), near duplicates credited once; by confidence (highest
    /// first), then contribution and start; at most `opts.max_matches`.
    pub fn query(
        &self,
        text: &str,
        opts: &ParaphraseOptions,
    ) -> Result<Vec<ParaphraseMatch>, IndexError> {
        let searcher = self.reader.searcher();
        let Some(mut q) = self.query_terms(&searcher, text)? else {
            return Ok(Vec::new());
        };
        let min = opts.min_confidence_ppm;
        let mut above: Vec<(u32, Passage)> = Vec::new();
        let terms = rarest(
            q.weighted.iter().map(|(t, w)| (t.as_str(), *w)),
            MAX_RETRIEVAL_TERMS,
        );
        for p in self.retrieve(&searcher, &terms, None)? {
            let c = confidence_ppm(&self.overlap(&searcher, &mut q, &p)?);
            if c >= min {
                above.push((c, p));
            }
        }
        // Each is replaced by its earliest near duplicate (in the index or among the
        // candidates), which must reach the threshold on its own.
        let mut credited: Vec<(u32, Passage)> = Vec::new();
        for (c, p) in &above {
            let mut canon = self.earliest_duplicate(&searcher, &mut q, p)?;
            for (_, other) in &above {
                if other.key() < canon.key()
                    && jaccard_ppm(&other.set, &p.set) >= DUPLICATE_JACCARD_PPM
                {
                    canon = other.clone();
                }
            }
            let c = if canon.key() == p.key() {
                *c
            } else {
                confidence_ppm(&self.overlap(&searcher, &mut q, &canon)?)
            };
            if c >= min {
                credited.push((c, canon));
            }
        }
        // Near duplicates among the credited: the earliest of each group stays.
        credited.sort_by_key(|(_, p)| p.key());
        let mut kept: Vec<(u32, Passage)> = Vec::new();
        for (c, p) in credited {
            if kept.iter().all(|(_, k)| {
                k.key() != p.key() && jaccard_ppm(&k.set, &p.set) < DUPLICATE_JACCARD_PPM
            }) {
                kept.push((c, p));
            }
        }
        kept.sort_by_key(|(c, p)| (std::cmp::Reverse(*c), p.key()));
        kept.truncate(opts.max_matches);
        Ok(kept.into_iter().map(|(c, p)| p.to_match(c)).collect())
    }

    /// Every BM25 candidate for `text` with its confidence and evidence, in BM25 order
    /// (diagnostics: no threshold, no duplicate rule).
    pub fn candidates(&self, text: &str) -> Result<Vec<Candidate>, IndexError> {
        let searcher = self.reader.searcher();
        let Some(mut q) = self.query_terms(&searcher, text)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let terms = rarest(
            q.weighted.iter().map(|(t, w)| (t.as_str(), *w)),
            MAX_RETRIEVAL_TERMS,
        );
        for p in self.retrieve(&searcher, &terms, None)? {
            let overlap = self.overlap(&searcher, &mut q, &p)?;
            out.push(Candidate {
                passage: p.to_match(confidence_ppm(&overlap)),
                overlap,
            });
        }
        Ok(out)
    }

    /// Checks the size, analyses the query and keeps its first [`MAX_QUERY_TERMS`] distinct
    /// terms (the term sequence, whose adjacent pairs count for `order`, stops before the first
    /// term past the cap). `None` when it has no term or the index no passage.
    fn query_terms(
        &self,
        searcher: &tantivy::Searcher,
        text: &str,
    ) -> Result<Option<QueryTerms>, IndexError> {
        if text.len() > MAX_QUERY_BYTES {
            return Err(IndexError::QueryTooLarge {
                len: text.len(),
                limit: MAX_QUERY_BYTES,
            });
        }
        let mut analyzer = analyzer();
        let mut stream = analyzer.token_stream(text);
        let mut set: HashSet<String> = HashSet::new();
        let mut terms: Vec<String> = Vec::new();
        while let Some(token) = stream.next() {
            let t = &token.text;
            if !set.contains(t) {
                if set.len() == MAX_QUERY_TERMS {
                    break;
                }
                set.insert(t.clone());
            }
            terms.push(t.clone());
        }
        drop(stream);
        let n = searcher.num_docs();
        if set.is_empty() || n == 0 {
            return Ok(None);
        }
        let mut q = QueryTerms {
            pairs: terms
                .windows(2)
                .map(|w| (w[0].clone(), w[1].clone()))
                .collect(),
            weighted: Vec::with_capacity(set.len()),
            weight: 0,
            n,
            idf: HashMap::new(),
        };
        let mut set: Vec<String> = set.into_iter().collect();
        set.sort_unstable();
        for t in set {
            let w = self.idf(searcher, &mut q, &t)?;
            q.weight += u64::from(w);
            q.weighted.push((t, w));
        }
        Ok(Some(q))
    }

    fn idf(
        &self,
        searcher: &tantivy::Searcher,
        q: &mut QueryTerms,
        term: &str,
    ) -> Result<u32, IndexError> {
        if let Some(&w) = q.idf.get(term) {
            return Ok(w);
        }
        let df = searcher
            .doc_freq(&Term::from_field_text(self.fields.text, term))
            .map_err(tantivy_err(&self.dir))?;
        let w = idf_fp(df, q.n);
        q.idf.insert(term.to_string(), w);
        Ok(w)
    }

    fn overlap(
        &self,
        searcher: &tantivy::Searcher,
        q: &mut QueryTerms,
        p: &Passage,
    ) -> Result<Overlap, IndexError> {
        let mut o = Overlap {
            query_weight: q.weight,
            query_pairs: q.pairs.len() as u32,
            ..Overlap::default()
        };
        for (t, w) in &q.weighted {
            if p.set.binary_search(t).is_ok() {
                o.matched_weight += u64::from(*w);
            }
        }
        for t in &p.set {
            o.passage_weight += u64::from(self.idf(searcher, q, t)?);
        }
        let pp = pairs(&p.terms);
        o.shared_pairs = q
            .pairs
            .iter()
            .filter(|(a, b)| pp.contains(&(a.as_str(), b.as_str())))
            .count() as u32;
        Ok(o)
    }

    /// Top [`MAX_CANDIDATES`] passages by BM25 for `terms` (any of them: distinct, at most
    /// [`MAX_RETRIEVAL_TERMS`]), ties by contribution then start; only contributions up to
    /// `max_contribution` when given.
    fn retrieve(
        &self,
        searcher: &tantivy::Searcher,
        terms: &[String],
        max_contribution: Option<u64>,
    ) -> Result<Vec<Passage>, IndexError> {
        let should: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .take(MAX_RETRIEVAL_TERMS)
            .map(|t| {
                let q: Box<dyn Query> = Box::new(TermQuery::new(
                    Term::from_field_text(self.fields.text, t),
                    IndexRecordOption::WithFreqs,
                ));
                (Occur::Should, q)
            })
            .collect();
        let query = BooleanQuery::new(should);
        let collector = TopCandidates {
            max_contribution: max_contribution.unwrap_or(u64::MAX),
        };
        let top = searcher
            .search(&query, &collector)
            .map_err(tantivy_err(&self.dir))?;
        let mut analyzer = analyzer();
        top.into_iter()
            .map(|r| self.passage(searcher, &mut analyzer, r.doc, r.score))
            .collect()
    }

    fn passage(
        &self,
        searcher: &tantivy::Searcher,
        analyzer: &mut TextAnalyzer,
        addr: DocAddress,
        bm25: Score,
    ) -> Result<Passage, IndexError> {
        let doc: TantivyDocument = searcher.doc(addr).map_err(tantivy_err(&self.dir))?;
        let corrupt = || IndexError::Corrupt(format!("{}: incomplete passage", self.dir.display()));
        let u = |f: Field| doc.get_first(f).and_then(|v| v.as_u64());
        let text = doc
            .get_first(self.fields.text)
            .and_then(|v| v.as_str())
            .ok_or_else(corrupt)?;
        let terms = analyse(analyzer, text);
        Ok(Passage {
            contribution: u(self.fields.contribution).ok_or_else(corrupt)?,
            start: u(self.fields.start).ok_or_else(corrupt)?,
            end: u(self.fields.end).ok_or_else(corrupt)?,
            bm25,
            set: term_set(&terms),
            terms,
        })
    }

    /// The earliest passage (contribution, then start) whose term set is a near duplicate of
    /// `p`'s, among the BM25 top of `p`'s own terms in contributions up to `p`'s; `p` itself
    /// when none is earlier.
    fn earliest_duplicate(
        &self,
        searcher: &tantivy::Searcher,
        q: &mut QueryTerms,
        p: &Passage,
    ) -> Result<Passage, IndexError> {
        let mut best = p.clone();
        let mut weighted = Vec::with_capacity(p.set.len());
        for t in &p.set {
            weighted.push((t.as_str(), self.idf(searcher, q, t)?));
        }
        for other in self.retrieve(
            searcher,
            &rarest(weighted.into_iter(), MAX_DUPLICATE_SEARCH_TERMS),
            Some(p.contribution),
        )? {
            if other.key() < best.key() && jaccard_ppm(&other.set, &p.set) >= DUPLICATE_JACCARD_PPM
            {
                best = other;
            }
        }
        Ok(best)
    }
}

impl Passage {
    /// Identity and seniority: contribution, then start.
    fn key(&self) -> (u64, u64) {
        (self.contribution, self.start)
    }

    fn to_match(&self, confidence_ppm: u32) -> ParaphraseMatch {
        ParaphraseMatch {
            contribution: self.contribution,
            start: self.start,
            end: self.end,
            confidence_ppm,
            bm25: self.bm25,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analyser_lowercases_stems_and_drops_stop_words() {
        let mut a = analyzer();
        assert_eq!(
            analyse(
                &mut a,
                "The Licenses are LICENSED to the licensee, and it is running."
            ),
            vec!["licens", "licens", "license", "run"]
        );
    }
}
