//! One dataset's attribution index as `shoulders index build` leaves it in a data directory
//! (`D/indexes/<owner>__<name>/`: the suffix-array index plus `attribution.json`), and the
//! attribution of a text against it: maximal spans, their sources and contributor shares.
//! Shared by the CLI (`shoulders attribute`) and the server (the API and the gateway).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::index::{Index, IndexError};
use crate::shares::{shares, SpanEvidence};

/// `attribution.json` file name inside an index directory.
pub const ATTRIBUTION_FILE: &str = "attribution.json";
/// `format` of `attribution.json`.
pub const ATTRIBUTION_FORMAT: &str = "shoulders-attribution/v1";
/// Spans occurring more often than this (copies included) are not looked up.
pub const MAX_RAW_OCCURRENCES: u64 = 1000;
/// Largest `attribution.json` read, in bytes.
const MAX_ATTRIBUTION_FILE_BYTES: u64 = 1 << 32;

/// What `index build` records beside the index: who contributed each document and its cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attribution {
    pub format: String,
    pub dataset_id: String,
    /// Ledger size when the index was built (contributions after it are not indexed yet).
    pub ledger_size: u64,
    pub tokenizer: String,
    pub contributions: Vec<ContributionInfo>,
}

/// One indexed contribution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContributionInfo {
    pub contribution: u64,
    pub contributor: String,
    pub tokens: u64,
    /// The earliest contribution of its duplicate cluster.
    pub cluster: u64,
}

/// The index directory of `dataset_id` under a data directory.
pub fn index_dir(data_dir: &Path, dataset_id: &str) -> PathBuf {
    data_dir.join("indexes").join(dataset_id.replace('/', "__"))
}

/// Whether `data_dir` holds a built index for `dataset_id`.
pub fn index_exists(data_dir: &Path, dataset_id: &str) -> bool {
    index_dir(data_dir, dataset_id)
        .join(ATTRIBUTION_FILE)
        .exists()
}

/// Tuning of [`DatasetIndex::attribute`].
#[derive(Debug, Clone, Copy)]
pub struct AttributeOptions {
    /// Shortest span reported, in bytes.
    pub min_len: usize,
    /// Spans found in more independent sources (duplicate clusters) than this are too common.
    pub max_occurrences: u64,
    /// Keep at most this many spans, the rarest and longest first.
    pub max_spans: usize,
}

impl Default for AttributeOptions {
    fn default() -> Self {
        AttributeOptions {
            min_len: 16,
            max_occurrences: 10,
            max_spans: 64,
        }
    }
}

/// An opened dataset index with its contributor metadata.
pub struct DatasetIndex {
    pub index: Index,
    pub meta: Attribution,
    contributor: BTreeMap<u64, String>,
    cluster_of: BTreeMap<u64, u64>,
    tokens_of: BTreeMap<u64, u64>,
}

impl DatasetIndex {
    /// Open `D/indexes/<dataset>/` (missing or unreadable files are `E_INDEX_CORRUPT`).
    pub fn open(data_dir: &Path, dataset_id: &str) -> Result<Self, IndexError> {
        let dir = index_dir(data_dir, dataset_id);
        let index = Index::open(&dir)?;
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
                "{} is not readable ({e}); rebuild the index",
                path.display()
            ))
        })?;
        Ok(Self::new(index, meta))
    }

    /// Wrap an index and its metadata.
    pub fn new(index: Index, meta: Attribution) -> Self {
        let contributor = meta
            .contributions
            .iter()
            .map(|c| (c.contribution, c.contributor.clone()))
            .collect();
        let cluster_of = meta
            .contributions
            .iter()
            .map(|c| (c.contribution, c.cluster))
            .collect();
        let tokens_of = meta
            .contributions
            .iter()
            .map(|c| (c.contribution, c.tokens))
            .collect();
        DatasetIndex {
            index,
            meta,
            contributor,
            cluster_of,
            tokens_of,
        }
    }

    /// The contributor of an indexed contribution.
    pub fn contributor(&self, contribution: u64) -> Option<&str> {
        self.contributor.get(&contribution).map(String::as_str)
    }

    /// Spans of `text` found in the dataset (each with its contributions, contributors and
    /// offsets) and contributor shares in ppm: what `shoulders attribute` prints.
    ///
    /// Occurrences are judged per duplicate cluster, not per copy: a span found in one document
    /// and its ten copies is as rare, and as informative, as a span found once. Spans with more
    /// than [`MAX_RAW_OCCURRENCES`] raw occurrences are too common to look up.
    pub fn attribute(&self, text: &str, opts: &AttributeOptions) -> Result<Value, IndexError> {
        let bytes = text.as_bytes();
        let spans = self
            .index
            .maximal_spans(bytes, opts.min_len, MAX_RAW_OCCURRENCES)?;
        let mut found = Vec::with_capacity(spans.len());
        for s in spans {
            let hits = self
                .index
                .find(&bytes[s.start..s.end], MAX_RAW_OCCURRENCES as usize)?;
            let clusters: BTreeSet<u64> = hits
                .iter()
                .filter_map(|h| self.cluster_of.get(&h.contribution).copied())
                .collect();
            if clusters.is_empty() || clusters.len() as u64 > opts.max_occurrences {
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
        found.truncate(opts.max_spans);
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
                    "contributor": self.contributor.get(&h.contribution),
                    "cluster": self.cluster_of.get(&h.contribution),
                })).collect::<Vec<_>>(),
            }));
            evidence.push(SpanEvidence {
                len: (s.end - s.start) as u64,
                contributions: hits.iter().map(|h| h.contribution).collect(),
            });
        }
        let shares = shares(
            &evidence,
            &self.cluster_of,
            &self.contributor,
            &self.tokens_of,
        )
        .ok_or(IndexError::Empty)?;
        Ok(json!({
            "dataset_id": self.meta.dataset_id,
            "tokenizer": self.meta.tokenizer,
            "text_tokens": bytes.len(),
            "index_ledger_size": self.meta.ledger_size,
            "spans": shown,
            "shares": shares,
        }))
    }
}
