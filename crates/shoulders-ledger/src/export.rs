//! The export format and the stand-alone verifier.
//!
//! ```text
//! shoulders-log-export/v1          magic line
//! <base64 of record 0's exact bytes>
//! ...                              one line per record, in log order
//! <base64 of record N-1's exact bytes>
//!                                  one empty line
//! <signed checkpoint note>         byte-exact C2SP signed note for tree size N
//! ```
//!
//! [`verify_export`] is pure: it needs only the export bytes and the log's verifier key. It
//! checks the checkpoint signature, every record's encoding and signature, refolds the whole
//! state, and recomputes the Merkle root.

use crate::content::check_sizes;
use crate::{ContentStore, LedgerError, Reader};
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use serde::Serialize;
use shoulders_log::{leaf_hash, LogVerifier, MemoryHashes};
use shoulders_record::{SignedRecord, MAX_RECORD_BYTES};
use shoulders_state::State;
use std::io::Write;

/// First line of every export.
pub const EXPORT_MAGIC: &str = "shoulders-log-export/v1";

pub(crate) fn write_export(
    reader: &Reader,
    size: u64,
    checkpoint: &[u8],
    out: &mut dyn Write,
) -> Result<(), LedgerError> {
    let io = |e: std::io::Error| LedgerError::Io {
        path: "export output".into(),
        message: e.to_string(),
    };
    writeln!(out, "{EXPORT_MAGIC}").map_err(io)?;
    let mut failure = None;
    reader
        .scan(0, size, &mut |_, bytes| {
            let mut line = B64.encode(bytes);
            line.push('\n');
            out.write_all(line.as_bytes()).map_err(|e| {
                failure = Some(io(e));
                shoulders_store::StoreError::Database("export write failed".into())
            })
        })
        .map_err(|e| failure.take().unwrap_or(e))?;
    out.write_all(b"\n").map_err(io)?;
    out.write_all(checkpoint).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(())
}

/// What a successful verification found.
#[derive(Debug, Serialize, PartialEq)]
pub struct VerifyReport {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: String,
    pub actors: usize,
    pub datasets: usize,
    pub models: usize,
    pub contributions: usize,
    /// Settled usage receipts, and the legs every verifier recomputed from them.
    pub receipts: usize,
    pub legs: usize,
}

/// Why verification failed: a stable code, the first offending record index when there is one,
/// and a message.
#[derive(Debug, Serialize, PartialEq, thiserror::Error)]
#[error("{code}{}: {message}", index.map(|i| format!(" at record {i}")).unwrap_or_default())]
pub struct VerifyFailure {
    pub code: &'static str,
    pub index: Option<u64>,
    pub message: String,
}

fn fail(code: &'static str, index: Option<u64>, message: impl Into<String>) -> VerifyFailure {
    VerifyFailure {
        code,
        index,
        message: message.into(),
    }
}

/// Replay an export from scratch and check it against its signed checkpoint.
pub fn verify_export(
    export: &[u8],
    verifier_key: &str,
) -> Result<(VerifyReport, State), VerifyFailure> {
    let verifier =
        LogVerifier::new(verifier_key).map_err(|e| fail(e.code(), None, e.to_string()))?;
    let magic = format!("{EXPORT_MAGIC}\n");
    let rest = export.strip_prefix(magic.as_bytes()).ok_or_else(|| {
        fail(
            "E_EXPORT_MALFORMED",
            None,
            format!("the first line must be {EXPORT_MAGIC}"),
        )
    })?;
    // Records end at the first empty line; the signed note follows.
    let split = find_blank_line(rest).ok_or_else(|| {
        fail(
            "E_EXPORT_MALFORMED",
            None,
            "no empty line before the checkpoint",
        )
    })?;
    // `split` is the `\n` of the empty line; the records end with the `\n` just before it.
    let records_part = if split == 0 {
        &rest[..0]
    } else {
        &rest[..split - 1]
    };
    let note = &rest[split + 1..];
    let checkpoint = verifier
        .open(note)
        .map_err(|e| fail(e.code(), None, e.to_string()))?;

    let mut state = State::new();
    let mut tree = MemoryHashes::new();
    let max_line = MAX_RECORD_BYTES.div_ceil(3) * 4;
    let lines = records_part
        .split(|&b| b == b'\n')
        .filter(|_| !records_part.is_empty());
    for (i, line) in lines.enumerate() {
        let index = i as u64;
        if line.len() > max_line {
            return Err(fail(
                "E_RECORD_TOO_LARGE",
                Some(index),
                "record line exceeds the record size limit",
            ));
        }
        let bytes = B64.decode(line).map_err(|e| {
            fail(
                "E_EXPORT_MALFORMED",
                Some(index),
                format!("record line is not base64: {e}"),
            )
        })?;
        let record = SignedRecord::from_bytes(bytes)
            .map_err(|e| fail(e.code(), Some(index), e.to_string()))?;
        let leaf = leaf_hash(record.bytes());
        state
            .apply(index, leaf.0, &record)
            .map_err(|e| fail(e.code(), Some(index), e.to_string()))?;
        tree.append_leaf_hash(leaf);
    }
    let size = tree.size();
    if size != checkpoint.size {
        let first_missing = size.min(checkpoint.size);
        return Err(fail(
            "E_SIZE_MISMATCH",
            Some(first_missing),
            format!(
                "the export holds {size} records but the checkpoint commits to {}",
                checkpoint.size
            ),
        ));
    }
    let root = tree.root();
    if root != checkpoint.root {
        return Err(fail(
            "E_ROOT_MISMATCH",
            None,
            format!("the records hash to root {root} but the checkpoint commits to {}: records were altered, dropped or reordered", checkpoint.root),
        ));
    }
    // Money is recomputed by the fold; it must balance exactly in every currency.
    if let Some(t) = state.totals().into_iter().find(|t| !t.conserved) {
        return Err(fail(
            "E_BOOKS_UNBALANCED",
            None,
            format!(
                "{} balances hold {} micro-units but deposits minus withdrawals are {}",
                t.currency,
                t.held_micros,
                t.deposits_micros - t.withdrawals_micros
            ),
        ));
    }
    let report = VerifyReport {
        origin: checkpoint.origin,
        tree_size: size,
        root_hash: root.to_string(),
        actors: state.actors().count(),
        datasets: state.datasets().count(),
        models: state.models().count(),
        contributions: state.datasets().map(|d| d.contributions.len()).sum(),
        receipts: state.receipts().count(),
        legs: state.legs().len(),
    };
    Ok((report, state))
}

/// What [`verify_content`] checked.
#[derive(Debug, Serialize, PartialEq)]
pub struct ContentReport {
    /// Contributions whose content was found intact with the declared sizes.
    pub contributions_checked: u64,
    /// Their bytes in total.
    pub content_bytes: u64,
}

/// Check that every contribution of a verified export (the `State` [`verify_export`] returned)
/// has its content in `store`: present (`E_CONTENT_MISSING`), hashing to its reference
/// (`E_CONTENT_CORRUPT`), UTF-8, with the record's sizes (`E_CONTENT_SIZE_MISMATCH`). One
/// document is read at a time, in bounded memory, in log order; the first failure names its
/// record index.
pub fn verify_content(state: &State, store: &ContentStore) -> Result<ContentReport, VerifyFailure> {
    let mut report = ContentReport {
        contributions_checked: 0,
        content_bytes: 0,
    };
    for c in state.contributions() {
        store
            .measure(&c.content_hash)
            .and_then(|m| {
                check_sizes(&c.content_hash, c.byte_size, c.token_count, m)?;
                Ok(m)
            })
            .map(|m| {
                report.contributions_checked += 1;
                report.content_bytes += m.byte_size;
            })
            .map_err(|e| {
                let message = match &e {
                    LedgerError::ContentMissing(r) => {
                        format!("content {r} is not in {}", store.root().display())
                    }
                    e => e.to_string(),
                };
                fail(e.code(), Some(c.index), message)
            })?;
    }
    Ok(report)
}

/// Offset of the `\n` that ends an empty line (the first `\n` at the start or after a `\n`).
fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    if bytes.first() == Some(&b'\n') {
        return Some(0);
    }
    bytes.windows(2).position(|w| w == b"\n\n").map(|p| p + 1)
}
