//! One dataset's attribution index as `shoulders index build` leaves it in a data directory
//! (`D/indexes/<owner>%2F<name>/`, see [`index_name`]: the suffix-array index with its copy map, plus
//! `attribution.json`), and the attribution of a text against it: the spans found, who owns
//! them, and contributor shares. One use case for the CLI (`shoulders attribute`), the API and
//! the gateway: they all call [`DatasetIndex::attribute`] and get an [`AttributionReport`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::budget::Budget;
use crate::index::{
    build_with, BuildMode, DocInput, Index, IndexError, DEFAULT_WINDOW_BYTES, MAX_OUTPUT_BYTES,
};
use crate::normalize::{normalize, NORMALIZATION};
use crate::shares::{byte_credit, informative, Rule, Shares, WindowCredit};

/// `attribution.json` file name inside an index directory.
pub const ATTRIBUTION_FILE: &str = "attribution.json";
/// `format` of `attribution.json`.
pub const ATTRIBUTION_FORMAT: &str = "shoulders-attribution/v2";
/// Largest `attribution.json` read, in bytes.
const MAX_ATTRIBUTION_FILE_BYTES: u64 = 1 << 32;
/// Occurrences listed per span (the count is always exact).
pub const MAX_SOURCES_PER_SPAN: usize = 8;

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

/// Whether `data_dir` holds a built index for `dataset_id`.
pub fn index_exists(data_dir: &Path, dataset_id: &str) -> bool {
    index_dir(data_dir, dataset_id)
        .join(ATTRIBUTION_FILE)
        .exists()
}

/// One contribution as it goes into [`build`]: in log order.
pub struct BuildDoc {
    pub contribution: u64,
    pub contributor: String,
    pub bytes: Vec<u8>,
}

/// What [`build`] reports.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub dataset_id: String,
    pub index_dir: PathBuf,
    pub documents: u64,
    /// Original bytes indexed.
    pub bytes: u64,
    /// Normalised tokens (bytes, separators included).
    pub tokens: u64,
    pub window_bytes: u32,
    pub ledger_size: u64,
    /// Windows of new content (owned by the contribution that holds them).
    pub own_windows: u64,
    /// Windows that copy an earlier contribution.
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

/// (Re)build the attribution index of `dataset_id` under `data_dir` from its contributions in
/// log order (see [`crate::index::build_with`] for the files and the atomic swap; the
/// `attribution.json` is written beside them afterwards). `progress` gets the bytes taken in.
pub fn build(
    data_dir: &Path,
    dataset_id: &str,
    ledger_size: u64,
    docs: impl Iterator<Item = Result<BuildDoc, IndexError>>,
    progress: &mut dyn FnMut(u64),
) -> Result<BuildReport, IndexError> {
    let target = index_dir(data_dir, dataset_id);
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
    let index_seconds = started.elapsed().as_secs_f64();
    let layout = info.content.as_ref().expect("attribution build");
    let attribution = Attribution {
        format: ATTRIBUTION_FORMAT.into(),
        dataset_id: dataset_id.to_string(),
        ledger_size,
        tokenizer: info.tokenizer.clone(),
        normalization: NORMALIZATION.into(),
        window_bytes: layout.window_bytes,
        contributions,
    };
    let path = target.join(ATTRIBUTION_FILE);
    let json = serde_json::to_vec_pretty(&attribution)
        .map_err(|e| IndexError::Corrupt(format!("cannot encode {ATTRIBUTION_FILE}: {e}")))?;
    write_synced(&path, &json)?;
    // The paraphrase index, from the originals the suffix-array index now holds.
    let started = std::time::Instant::now();
    let built = Index::open(&target)?;
    let paraphrase_info = crate::paraphrase::build(
        &paraphrase_dir(data_dir, dataset_id),
        (0..built.doc_count()).map(|d| {
            Ok(DocInput {
                contribution: built.contribution(d).expect("document"),
                bytes: built.original(d).expect("attribution index").to_vec(),
            })
        }),
    )?;
    drop(built);
    let paraphrase_seconds = started.elapsed().as_secs_f64();
    let mut mostly_copied = Vec::new();
    for (i, c) in attribution.contributions.iter().enumerate() {
        let (w, own) = (layout.windows[i], layout.own_windows[i]);
        if w > 0 && (w - own) * 2 > w {
            mostly_copied.push(CopiedContribution {
                contribution: c.contribution,
                contributor: c.contributor.clone(),
                copied_ppm: (w - own) * 1_000_000 / w,
            });
        }
    }
    let own: u64 = layout.own_windows.iter().sum();
    let all: u64 = layout.windows.iter().sum();
    Ok(BuildReport {
        dataset_id: dataset_id.to_string(),
        index_dir: target,
        documents: info.doc_count,
        bytes,
        tokens: info.token_count,
        window_bytes: layout.window_bytes,
        ledger_size,
        own_windows: own,
        copied_windows: all - own,
        mostly_copied,
        paraphrase_passages: paraphrase_info.passage_count,
        index_seconds,
        paraphrase_seconds,
    })
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

/// An opened dataset index with its contributor metadata.
pub struct DatasetIndex {
    pub index: Index,
    pub meta: Attribution,
    contributor: BTreeMap<u64, String>,
    /// Document ordinal of each contribution.
    doc_of: BTreeMap<u64, u32>,
    /// The paraphrase index, when built (indexes from before it have none).
    paraphrase: Option<crate::paraphrase::ParaphraseIndex>,
}

impl DatasetIndex {
    /// Open `D/indexes/<dataset>/` (missing, unreadable or old-format files are
    /// `E_INDEX_CORRUPT`: rebuild).
    pub fn open(data_dir: &Path, dataset_id: &str) -> Result<Self, IndexError> {
        let dir = index_dir(data_dir, dataset_id);
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
        let meta: Attribution = serde_json::from_slice(&bytes).map_err(|e| {
            IndexError::Corrupt(format!(
                "{} is not readable ({e}); rebuild the index with `shoulders index build`",
                path.display()
            ))
        })?;
        let index = Index::open(&dir)?;
        let mut ix = Self::new(index, meta)?;
        let para = paraphrase_dir(data_dir, dataset_id);
        if para.exists() {
            ix.paraphrase = Some(crate::paraphrase::ParaphraseIndex::open(&para)?);
        }
        Ok(ix)
    }

    /// Wrap an index and its metadata (they must describe the same documents).
    pub fn new(index: Index, meta: Attribution) -> Result<Self, IndexError> {
        if meta.format != ATTRIBUTION_FORMAT || index.window().is_none() {
            return Err(IndexError::Corrupt(format!(
                "index of {} is from an older version (no copy map); rebuild it with `shoulders index build`",
                meta.dataset_id
            )));
        }
        let ids: Vec<u64> = meta.contributions.iter().map(|c| c.contribution).collect();
        if ids != index.info().contributions {
            return Err(IndexError::Corrupt(format!(
                "{ATTRIBUTION_FILE} of {} does not list the indexed documents; rebuild",
                meta.dataset_id
            )));
        }
        let contributor = meta
            .contributions
            .iter()
            .map(|c| (c.contribution, c.contributor.clone()))
            .collect();
        let doc_of = ids
            .iter()
            .enumerate()
            .map(|(d, &c)| (c, d as u32))
            .collect();
        Ok(DatasetIndex {
            index,
            meta,
            contributor,
            doc_of,
            paraphrase: None,
        })
    }

    /// The contributor of an indexed contribution.
    pub fn contributor(&self, contribution: u64) -> Option<&str> {
        self.contributor.get(&contribution).map(String::as_str)
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
    /// budget's deadline or cancellation (the server passes its request deadline).
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
        let window = self.index.window().expect("checked in new");
        let norm = normalize(text);
        let out = norm.bytes.as_slice();
        let matches = self.index.longest_matches_within(out, budget)?;
        let excluded = self.excluded_docs(&opts.excluded);
        let mut skipped = BTreeSet::new();
        let windows = self.credit_windows(out, &matches, &excluded, &mut skipped, budget)?;
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
        let spans = self.spans(text, &norm, &matches, &owner_at, opts, &excluded, budget)?;
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
            excluded: skipped
                .into_iter()
                .filter_map(|d| self.index.contribution(d))
                .collect(),
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
        let matches = self.index.longest_matches_within(&out, budget)?;
        let excluded = self.excluded_docs(&opts.excluded);
        self.credit_windows(&out, &matches, &excluded, &mut BTreeSet::new(), budget)
    }

    /// Document ordinals of the excluded contributions the index holds.
    fn excluded_docs(&self, excluded: &BTreeSet<u64>) -> BTreeSet<u32> {
        excluded
            .iter()
            .filter_map(|c| self.doc_of.get(c).copied())
            .collect()
    }

    /// See [`DatasetIndex::credited_windows_within`]; excluded owners that lost a window are
    /// added to `skipped`. Only windows whose owner is excluded search the index again (one
    /// binary search and one step per occurrence of the window), so with nothing excluded
    /// this is the copy map alone.
    fn credit_windows(
        &self,
        out: &[u8],
        matches: &[crate::index::Match],
        excluded: &BTreeSet<u32>,
        skipped: &mut BTreeSet<u32>,
        budget: &mut Budget,
    ) -> Result<Vec<WindowCredit>, IndexError> {
        let window = self.index.window().expect("checked in new");
        let skip = |d: u32| excluded.contains(&d);
        let mut windows = Vec::new();
        for (i, m) in matches.iter().enumerate() {
            if m.len < window || !informative(&out[i..i + window]) {
                continue;
            }
            let Some(mut doc) = self.index.window_owner(m.lo) else {
                continue;
            };
            if skip(doc) {
                skipped.insert(doc);
                match self
                    .index
                    .earliest_holder_within(&out[i..i + window], &skip, budget)?
                {
                    Some(d) => doc = d,
                    None => continue,
                }
            }
            let Some(owner) = self.index.contribution(doc) else {
                continue;
            };
            windows.push(WindowCredit { start: i, owner });
        }
        Ok(windows)
    }

    /// Passages `text` paraphrases, each credited to the first contributors of its content:
    /// a passage of a chunked, edited or padded copy is credited to the original, in
    /// proportion to the windows each owns; a passage too short for a window, to its own
    /// contribution. Excluded contributions earn nothing here either: their windows go to the
    /// earliest holder not excluded, and a passage nobody may be credited for is dropped.
    fn paraphrased(
        &self,
        p: &crate::paraphrase::ParaphraseIndex,
        text: &str,
        excluded: &BTreeSet<u32>,
        skipped: &mut BTreeSet<u32>,
        budget: &mut Budget,
    ) -> Result<Vec<ParaphraseCredit>, IndexError> {
        let skip = |d: u32| excluded.contains(&d);
        let mut out = Vec::new();
        for m in p.query(text, &crate::paraphrase::ParaphraseOptions::default())? {
            let Some(&doc) = self.doc_of.get(&m.contribution) else {
                continue;
            };
            let owners = self.index.window_owners_in(doc, m.start, m.end);
            let has_window = !owners.is_empty();
            let owners = if owners.keys().any(|&d| skip(d)) {
                self.index
                    .window_owners_in_excluding(doc, m.start, m.end, &skip, skipped, budget)?
            } else {
                owners
            };
            let mut weights: BTreeMap<u64, u128> = owners
                .iter()
                .filter_map(|(&d, &n)| Some((self.index.contribution(d)?, u128::from(n))))
                .collect();
            if !has_window {
                if skip(doc) {
                    skipped.insert(doc);
                } else {
                    weights.insert(m.contribution, 1);
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

    /// The maximal spans at least a window long, mapped back to the text as given.
    #[allow(clippy::too_many_arguments)]
    fn spans(
        &self,
        text: &str,
        norm: &crate::normalize::Normalized,
        matches: &[crate::index::Match],
        owner_at: &[Option<u64>],
        opts: &AttributeOptions,
        excluded: &BTreeSet<u32>,
        budget: &mut Budget,
    ) -> Result<Vec<ReportSpan>, IndexError> {
        let window = self.index.window().expect("checked in new");
        let out = norm.bytes.as_slice();
        let mut found = Vec::new();
        let mut prev_end = 0usize;
        for (i, m) in matches.iter().enumerate() {
            let end = i + m.len;
            if m.len >= window && end > prev_end {
                found.push((i, *m));
            }
            prev_end = prev_end.max(end);
        }
        // Most informative first: rarest, then longest, then earliest.
        found.sort_by(|a, b| {
            (a.1.hi - a.1.lo)
                .cmp(&(b.1.hi - b.1.lo))
                .then(b.1.len.cmp(&a.1.len))
                .then(a.0.cmp(&b.0))
        });
        found.truncate(opts.max_spans);
        found.sort_by_key(|f| f.0);
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
        for (i, m) in found {
            let (s, e) = (boundary(i, true), boundary(i + m.len, false));
            let (os, oe) = norm.orig_range(s as u64, e.max(s) as u64);
            let credited: BTreeSet<u64> = owner_at[i..=(i + m.len - window)]
                .iter()
                .flatten()
                .copied()
                .collect();
            // Every occurrence starts with the span's first window, so all share its owner; an
            // excluded owner's window was passed on already if it is a credited one.
            let owner = match self.index.window_owner(m.lo) {
                Some(d) if excluded.contains(&d) => {
                    if informative(&out[i..i + window]) {
                        owner_at[i]
                    } else {
                        self.index
                            .earliest_holder_within(
                                &out[i..i + window],
                                &|d| excluded.contains(&d),
                                budget,
                            )?
                            .and_then(|d| self.index.contribution(d))
                    }
                }
                d => d.and_then(|d| self.index.contribution(d)),
            };
            let take = (m.hi - m.lo).min(MAX_SOURCES_PER_SPAN as u64);
            let mut contributions: Vec<SpanSource> = (m.lo..m.lo + take)
                .filter_map(|r| {
                    let pos = self.index.position(r);
                    let (hit, length) = self.index.locate_original(pos, m.len as u64)?;
                    Some(SpanSource {
                        contribution: hit.contribution,
                        contributor: self.contributor(hit.contribution).map(str::to_string),
                        offset: hit.offset,
                        length,
                        owner,
                        excluded: excluded.contains(&hit.doc),
                    })
                })
                .collect();
            contributions.sort_by_key(|c| (c.contribution, c.offset));
            spans.push(ReportSpan {
                text: text
                    .get(os as usize..oe as usize)
                    .unwrap_or_default()
                    .to_string(),
                start: os as usize,
                end: oe as usize,
                occurrences: m.hi - m.lo,
                credited: credited.into_iter().collect(),
                contributions,
            });
        }
        Ok(spans)
    }
}
