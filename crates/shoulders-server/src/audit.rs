//! Receipt audits: re-derive a `usage.receipt`'s attribution from the output and the
//! contributions, and say whether it matches (issue 16). No HTTP here: `shoulders audit receipt`
//! and `POST /api/receipts/{index}/audit` both call [`plan`], [`index_for_state`] and [`run`].
//!
//! A receipt records the index state it was attributed against ([`IndexState`]); the audit
//! obtains an index of exactly that state (the live one when it matches, else a rebuild in a
//! scratch directory from the content store), applies the exclusions in force when the receipt
//! was appended ([`shoulders_state::State::attribution_excluded_at`]), attributes the output
//! again and compares the shares per contribution and the report's hash.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use shoulders_attrib::dataset::{
    self, AttributeOptions, AttributionReport, BuildDoc, DatasetIndex,
};
use shoulders_attrib::index::{IndexError, MAX_OUTPUT_BYTES};
use shoulders_ledger::{ContentStore, LedgerError};
use shoulders_record::{AttributionShare, IndexState, UsageReceipt};
use shoulders_state::State;

/// Why a receipt could not be audited (a mismatch of the attribution is a [`Verdict`], not an
/// error). Each has a stable code.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("no usage.receipt at log index {0}")]
    NotAReceipt(u64),
    #[error("the receipt at {0} carries no attribution (the output had no evidence, or the model no index): nothing to audit")]
    NothingToAudit(u64),
    #[error("the receipt at {0} does not record the index state it was attributed against (it predates index_state); it cannot be re-derived exactly")]
    NoIndexState(u64),
    #[error("the output's hash {got} is not the receipt's output_hash {expected}: this is not the output the receipt was issued for")]
    OutputMismatch { expected: String, got: String },
    #[error("the output is {len} bytes; an audit takes at most {limit}")]
    OutputTooLarge { len: usize, limit: usize },
    #[error("the receipt names contributions of more than one dataset ({0}); the gateway attributes against one")]
    MixedDatasets(String),
    #[error("the live index of {dataset_id} is at {live:?}, the receipt was attributed against {want:?}; rebuilding it is left to `shoulders audit receipt` on the data directory")]
    StateUnavailable {
        dataset_id: String,
        want: IndexState,
        live: Option<IndexState>,
    },
    #[error("cannot make a scratch directory for the rebuild: {0}")]
    Scratch(String),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl AuditError {
    pub fn code(&self) -> &'static str {
        match self {
            AuditError::NotAReceipt(_) => "E_NOT_FOUND",
            AuditError::NothingToAudit(_) => "E_AUDIT_NOTHING",
            AuditError::NoIndexState(_) => "E_AUDIT_NO_INDEX_STATE",
            AuditError::OutputMismatch { .. } => "E_AUDIT_OUTPUT_MISMATCH",
            AuditError::OutputTooLarge { .. } => "E_TEXT_TOO_LARGE",
            AuditError::MixedDatasets(_) => "E_AUDIT_NOTHING",
            AuditError::StateUnavailable { .. } => "E_AUDIT_STATE_UNAVAILABLE",
            AuditError::Scratch(_) => "E_IO",
            AuditError::Index(e) => e.code(),
            AuditError::Ledger(e) => e.code(),
        }
    }
}

/// What an audit needs from the ledger state, taken at once so no lock is held while it runs.
#[derive(Debug, Clone)]
pub struct AuditPlan {
    /// The receipt's log index.
    pub index: u64,
    pub receipt: UsageReceipt,
    pub dataset_id: String,
    pub want: IndexState,
    /// Exclusions in force when the receipt was appended.
    pub excluded: BTreeSet<u64>,
    /// The contributions the wanted index holds, in log order: (index, contributor, content).
    pub docs: Vec<(u64, String, String)>,
}

/// The audit of the receipt at `index` (`receipt` is its body): which dataset and index state
/// it was attributed against, its exclusions and its documents.
pub fn plan(state: &State, index: u64, receipt: UsageReceipt) -> Result<AuditPlan, AuditError> {
    let Some(first) = receipt.attribution.first() else {
        return Err(AuditError::NothingToAudit(index));
    };
    let dataset_id = first.dataset_id.clone();
    if receipt
        .attribution
        .iter()
        .any(|a| a.dataset_id != dataset_id)
    {
        let names: BTreeSet<&str> = receipt
            .attribution
            .iter()
            .map(|a| a.dataset_id.as_str())
            .collect();
        return Err(AuditError::MixedDatasets(
            names.into_iter().collect::<Vec<_>>().join(", "),
        ));
    }
    let want = receipt
        .index_state
        .clone()
        .ok_or(AuditError::NoIndexState(index))?;
    let dataset = state.dataset(&dataset_id).ok_or_else(|| {
        LedgerError::NotFound(format!("no dataset {dataset_id:?} in this ledger"))
    })?;
    let docs = dataset
        .contributions
        .iter()
        .filter(|&&c| c < want.ledger_size)
        .filter_map(|&c| state.contribution(c))
        .map(|c| (c.index, c.contributor.clone(), c.content_hash.clone()))
        .collect();
    Ok(AuditPlan {
        index,
        excluded: state.attribution_excluded_at(&dataset_id, index),
        receipt,
        dataset_id,
        want,
        docs,
    })
}

/// The state of an opened index: its segments' end bounds, in the record's type.
pub fn index_state_of(ix: &DatasetIndex) -> IndexState {
    let s = ix.state();
    IndexState {
        ledger_size: s.ledger_size,
        segments: s.segments,
    }
}

/// An index of the wanted state, and whether it had to be rebuilt (its scratch directory is
/// removed when this is dropped).
pub struct AuditIndex {
    pub index: Arc<DatasetIndex>,
    pub rebuilt: bool,
    _scratch: Option<tempfile::TempDir>,
}

/// An index of exactly `plan.want`: `live` when its state is that one; otherwise, with a
/// `rebuild` (content store, scratch parent directory), one rebuilt in a temporary directory
/// under the scratch parent, segment by segment over the plan's documents with log index in
/// `[segments[i-1], segments[i])` (segments are deterministic functions of their documents, so
/// the rebuilt index answers as the one the gateway used); without one,
/// `E_AUDIT_STATE_UNAVAILABLE`.
pub fn index_for_state(
    plan: &AuditPlan,
    live: Option<Arc<DatasetIndex>>,
    rebuild: Option<(&ContentStore, &Path)>,
) -> Result<AuditIndex, AuditError> {
    let live_state = live.as_deref().map(index_state_of);
    if let Some(ix) = live.filter(|_| live_state.as_ref() == Some(&plan.want)) {
        return Ok(AuditIndex {
            index: ix,
            rebuilt: false,
            _scratch: None,
        });
    }
    let Some((store, scratch_parent)) = rebuild else {
        return Err(AuditError::StateUnavailable {
            dataset_id: plan.dataset_id.clone(),
            want: plan.want.clone(),
            live: live_state,
        });
    };
    std::fs::create_dir_all(scratch_parent)
        .map_err(|e| AuditError::Scratch(format!("{}: {e}", scratch_parent.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix(".audit-")
        .tempdir_in(scratch_parent)
        .map_err(|e| AuditError::Scratch(format!("{}: {e}", scratch_parent.display())))?;
    let want = shoulders_attrib::segments::IndexState {
        ledger_size: plan.want.ledger_size,
        segments: plan.want.segments.clone(),
    };
    let docs_for_range = |from: u64, to: u64| {
        plan.docs
            .iter()
            .filter(move |(index, _, _)| (from..to).contains(index))
            .map(|(index, who, hash)| {
                let bytes = store.get(hash).map_err(|e| IndexError::Io {
                    path: PathBuf::from(hash),
                    source: std::io::Error::other(e.to_string()),
                })?;
                Ok(BuildDoc {
                    contribution: *index,
                    contributor: who.clone(),
                    bytes,
                })
            })
    };
    let index = Arc::new(dataset::build_state(
        scratch.path(),
        &plan.dataset_id,
        &want,
        docs_for_range,
    )?);
    Ok(AuditIndex {
        index,
        rebuilt: true,
        _scratch: Some(scratch),
    })
}

/// One side of the comparison.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditSide {
    pub output_hash: String,
    pub index_state: IndexState,
    pub attribution: Vec<AttributionShare>,
    pub evidence_hash: Option<String>,
}

/// A contribution whose share differs (0 where one side does not name it).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditDifference {
    pub dataset_id: String,
    pub contribution: u64,
    pub receipt_ppm: u32,
    pub derived_ppm: u32,
}

/// The answer of an audit.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The shares and the report's hash both match.
    pub matches: bool,
    /// The receipt's log index.
    pub index: u64,
    pub usage_id: String,
    pub dataset_id: String,
    pub receipt: AuditSide,
    pub derived: AuditSide,
    pub differences: Vec<AuditDifference>,
    pub evidence_hash_matches: bool,
    /// Exclusions applied (those in force when the receipt was appended).
    pub excluded: Vec<u64>,
    /// `live` (the served index was of the receipt's state) or `rebuilt`.
    pub index_source: &'static str,
}

/// Check `output` against the receipt's `output_hash` (`E_AUDIT_OUTPUT_MISMATCH`).
pub fn check_output(receipt: &UsageReceipt, output: &str) -> Result<(), AuditError> {
    if output.len() > MAX_OUTPUT_BYTES {
        return Err(AuditError::OutputTooLarge {
            len: output.len(),
            limit: MAX_OUTPUT_BYTES,
        });
    }
    let got = crate::gateway::output_hash(output);
    if got != receipt.output_hash {
        return Err(AuditError::OutputMismatch {
            expected: receipt.output_hash.clone(),
            got,
        });
    }
    Ok(())
}

/// Re-derive the attribution of `output` (already checked with [`check_output`]) on `ix` and
/// compare it with the receipt.
pub fn run(plan: &AuditPlan, ix: &AuditIndex, output: &str) -> Result<Verdict, AuditError> {
    check_output(&plan.receipt, output)?;
    let opts = AttributeOptions {
        excluded: plan.excluded.clone(),
        ..Default::default()
    };
    let report: AttributionReport = ix.index.attribute(output, &opts)?;
    let pair = (plan.dataset_id.clone(), report);
    let derived_shares = crate::gateway::receipt_shares(Some(&pair));
    let derived_evidence = crate::gateway::evidence_hash(Some(&pair));
    let ppm = |shares: &[AttributionShare]| -> BTreeMap<(String, u64), u32> {
        shares
            .iter()
            .map(|a| ((a.dataset_id.clone(), a.contribution), a.ppm))
            .collect()
    };
    let (theirs, ours) = (ppm(&plan.receipt.attribution), ppm(&derived_shares));
    let keys: BTreeSet<&(String, u64)> = theirs.keys().chain(ours.keys()).collect();
    let differences: Vec<AuditDifference> = keys
        .into_iter()
        .filter_map(|k| {
            let (r, d) = (
                theirs.get(k).copied().unwrap_or(0),
                ours.get(k).copied().unwrap_or(0),
            );
            (r != d).then(|| AuditDifference {
                dataset_id: k.0.clone(),
                contribution: k.1,
                receipt_ppm: r,
                derived_ppm: d,
            })
        })
        .collect();
    let evidence_hash_matches = derived_evidence == plan.receipt.evidence_hash;
    Ok(Verdict {
        matches: differences.is_empty() && evidence_hash_matches,
        index: plan.index,
        usage_id: plan.receipt.usage_id.clone(),
        dataset_id: plan.dataset_id.clone(),
        receipt: AuditSide {
            output_hash: plan.receipt.output_hash.clone(),
            index_state: plan.want.clone(),
            attribution: plan.receipt.attribution.clone(),
            evidence_hash: plan.receipt.evidence_hash.clone(),
        },
        derived: AuditSide {
            output_hash: crate::gateway::output_hash(output),
            index_state: index_state_of(&ix.index),
            attribution: derived_shares,
            evidence_hash: derived_evidence,
        },
        differences,
        evidence_hash_matches,
        excluded: plan.excluded.iter().copied().collect(),
        index_source: if ix.rebuilt { "rebuilt" } else { "live" },
    })
}

/// The receipt body at `index` from its stored record bytes (`E_NOT_FOUND` when it is not a
/// `usage.receipt`).
pub fn receipt_at(index: u64, bytes: Option<Vec<u8>>) -> Result<UsageReceipt, AuditError> {
    let rec = bytes
        .and_then(|b| shoulders_record::SignedRecord::from_bytes(b).ok())
        .ok_or(AuditError::NotAReceipt(index))?;
    match &rec.record().body {
        shoulders_record::Body::UsageReceipt(r) => Ok(r.clone()),
        _ => Err(AuditError::NotAReceipt(index)),
    }
}
