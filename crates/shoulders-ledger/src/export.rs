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
use shoulders_log::{leaf_hash, Frontier, LogVerifier};
use shoulders_record::{PublicKey, SignedRecord, MAX_RECORD_BYTES};
use shoulders_state::{HistoryRead, Seen, State};
use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::ops::ControlFlow;

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

/// Replay an export from scratch and check it against its signed checkpoint (see
/// [`verify_export_from`]).
pub fn verify_export(
    export: &[u8],
    verifier_key: &str,
) -> Result<(VerifyReport, State), VerifyFailure> {
    verify_export_from(export, verifier_key)
}

/// History as the verifier keeps it: a keyed 8-byte digest per `(signer, client id)` and per usage
/// id, with where it was first used — enough for the fold's duplicate checks, and about 40
/// bytes per record however many legs each receipt posts.
struct VerifyHistory {
    seen: HashMap<u64, u64, Prehashed>,
    usage: HashMap<u64, u64, Prehashed>,
    /// Keyed anew for every verification, so nobody can craft ids whose digests collide.
    key: std::collections::hash_map::RandomState,
}

impl Default for VerifyHistory {
    fn default() -> Self {
        VerifyHistory {
            seen: HashMap::default(),
            usage: HashMap::default(),
            key: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl VerifyHistory {
    /// A 64-bit keyed digest (SipHash with this run's random key) of an id: 16 bytes per entry
    /// with its index, so 10M receipts fit in well under 1 GB. Two distinct ids share a digest
    /// with probability about n²/2^65 per run (3·10^-6 at 10M records); a false
    /// `E_DUPLICATE_ID` would not repeat on a second run, which draws a new key.
    fn digest(&self, kind: u8, parts: &[&[u8]]) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = self.key.build_hasher();
        h.write_u8(kind);
        for p in parts {
            h.write_u64(p.len() as u64);
            h.write(p);
        }
        h.finish()
    }
}

/// The map keys are digests already: hash them as they are.
#[derive(Clone, Copy, Default)]
struct Prehashed;

impl std::hash::BuildHasher for Prehashed {
    type Hasher = PrehashedHasher;
    fn build_hasher(&self) -> PrehashedHasher {
        PrehashedHasher(0)
    }
}

#[derive(Default)]
struct PrehashedHasher(u64);

impl std::hash::Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl HistoryRead for VerifyHistory {
    fn seen(&self, signer: &PublicKey, client_id: &str) -> Option<Seen> {
        self.seen
            .get(&self.digest(0, &[&signer.0, client_id.as_bytes()]))
            .map(|&index| Seen {
                index,
                leaf_hash: [0; 32],
            })
    }
    fn usage(&self, usage_id: &str) -> Option<u64> {
        self.usage
            .get(&self.digest(1, &[usage_id.as_bytes()]))
            .copied()
    }
}

/// Replay an export read from `input`, in log order, and check it against its signed
/// checkpoint: every record's encoding and signature, the whole state refolded (money
/// included), the Merkle root. Memory stays bounded whatever the history: the state keeps
/// entities and balances, not legs; the tree keeps its right edge; history keeps a digest per
/// record; a few chunks of records are in flight. Signatures are checked in batches on every
/// core while this thread folds.
pub fn verify_export_from(
    input: impl std::io::Read,
    verifier_key: &str,
) -> Result<(VerifyReport, State), VerifyFailure> {
    let verifier =
        LogVerifier::new(verifier_key).map_err(|e| fail(e.code(), None, e.to_string()))?;
    let mut input = std::io::BufReader::with_capacity(1 << 20, input);
    let max_line = MAX_RECORD_BYTES.div_ceil(3) * 4;
    let mut line = Vec::with_capacity(4096);
    let read_line = |input: &mut std::io::BufReader<_>, line: &mut Vec<u8>, index: Option<u64>| {
        line.clear();
        let n = std::io::Read::take(&mut *input, max_line as u64 + 2)
            .read_until(b'\n', line)
            .map_err(|e| fail("E_IO", index, format!("cannot read the export: {e}")))?;
        if n > 0 && line.last() != Some(&b'\n') && line.len() > max_line {
            return Err(fail(
                "E_RECORD_TOO_LARGE",
                index,
                "record line exceeds the record size limit",
            ));
        }
        Ok(n)
    };
    read_line(&mut input, &mut line, None)?;
    if line != format!("{EXPORT_MAGIC}\n").as_bytes() {
        return Err(fail(
            "E_EXPORT_MALFORMED",
            None,
            format!("the first line must be {EXPORT_MAGIC}"),
        ));
    }
    // Lines are read here in chunks; workers base64-decode, decode and verify each chunk's
    // signatures in one batch; this thread folds the results in log order.
    let (state, tree) = {
        let mut next_index = 0u64;
        let mut stopped = false;
        let chunks = std::iter::from_fn(|| {
            if stopped {
                return None;
            }
            let mut chunk = LineChunk {
                first_index: next_index,
                lines: Vec::new(),
                stop: None,
                encoded: true,
            };
            let mut bytes = 0usize;
            while chunk.lines.len() < VERIFY_CHUNK_RECORDS && bytes < VERIFY_CHUNK_BYTES {
                let index = next_index;
                match read_line(&mut input, &mut line, Some(index)) {
                    Err(e) => chunk.stop = Some(Err(e)),
                    Ok(0) => {
                        chunk.stop = Some(Err(fail(
                            "E_EXPORT_MALFORMED",
                            None,
                            "no empty line before the checkpoint",
                        )))
                    }
                    Ok(_) if line == b"\n" => chunk.stop = Some(Ok(())),
                    Ok(_) if line.last() != Some(&b'\n') => {
                        chunk.stop = Some(Err(fail(
                            "E_EXPORT_MALFORMED",
                            Some(index),
                            "the export ends inside a record line (no empty line before the checkpoint)",
                        )))
                    }
                    Ok(_) => {
                        bytes += line.len();
                        line.pop();
                        chunk.lines.push(std::mem::take(&mut line));
                        next_index += 1;
                        continue;
                    }
                }
                stopped = true;
                break;
            }
            Some(chunk)
        });
        fold_chunks(chunks, &verifier)?
    };
    let mut note = Vec::new();
    std::io::Read::take(&mut input, MAX_NOTE_BYTES + 1)
        .read_to_end(&mut note)
        .map_err(|e| fail("E_IO", None, format!("cannot read the export: {e}")))?;
    let checkpoint = verifier
        .open(&note)
        .map_err(|e| fail(e.code(), None, e.to_string()))?;
    finish(state, tree, checkpoint)
}

/// Replay a log's entries, read in chunks of consecutive records from index 0 (e.g. from
/// C2SP tiles), and check them against `checkpoint_note`: exactly what [`verify_export_from`]
/// checks of an export, with the same codes. The note is checked first, so a chunk source can
/// be built over its tree; memory stays bounded by a few chunks in flight. A chunk source stops
/// the verification by yielding an error.
pub fn verify_entries(
    checkpoint_note: &[u8],
    verifier_key: &str,
    chunks: impl Iterator<Item = Result<Vec<Vec<u8>>, VerifyFailure>>,
) -> Result<(VerifyReport, State), VerifyFailure> {
    let verifier =
        LogVerifier::new(verifier_key).map_err(|e| fail(e.code(), None, e.to_string()))?;
    let checkpoint = verifier
        .open(checkpoint_note)
        .map_err(|e| fail(e.code(), None, e.to_string()))?;
    let mut chunks = chunks.fuse();
    let mut next_index = 0u64;
    let mut stopped = false;
    let line_chunks = std::iter::from_fn(|| {
        if stopped {
            return None;
        }
        let first_index = next_index;
        let (lines, stop) = match chunks.next() {
            Some(Ok(records)) => {
                next_index += records.len() as u64;
                (records, None)
            }
            Some(Err(e)) => (Vec::new(), Some(Err(e))),
            None => (Vec::new(), Some(Ok(()))),
        };
        stopped = stop.is_some();
        Some(LineChunk {
            first_index,
            lines,
            stop,
            encoded: false,
        })
    });
    let (state, tree) = fold_chunks(line_chunks, &verifier)?;
    finish(state, tree, checkpoint)
}

/// Decode, check and fold `chunks` in log order (decoding and signatures on worker threads),
/// until one ends the records or fails.
fn fold_chunks(
    chunks: impl Iterator<Item = LineChunk>,
    verifier: &LogVerifier,
) -> Result<(State, Frontier), VerifyFailure> {
    let mut state = State::without_history();
    let mut history = VerifyHistory::default();
    let mut tree = Frontier::new();
    let mut failure: Option<VerifyFailure> = None;
    let mut end_seen = false;
    {
        let threads = crate::pipeline::worker_threads();
        crate::pipeline::ordered_map(
            chunks,
            threads,
            threads * 2,
            decode_chunk,
            |(first_index, records, stop)| {
                for (offset, record) in records.into_iter().enumerate() {
                    let index = first_index + offset as u64;
                    let folded = record.and_then(|record| {
                        fold_verified(
                            &mut state,
                            &mut history,
                            &mut tree,
                            index,
                            &record,
                            verifier,
                        )
                    });
                    if let Err(e) = folded {
                        failure = Some(e);
                        return ControlFlow::Break(());
                    }
                }
                match stop {
                    Some(Ok(())) => end_seen = true,
                    Some(Err(e)) => failure = Some(e),
                    None => return ControlFlow::Continue(()),
                }
                ControlFlow::Break(())
            },
        );
    }
    if let Some(e) = failure {
        return Err(e);
    }
    debug_assert!(
        end_seen,
        "the pipeline ends with the records' end or a failure"
    );
    Ok((state, tree))
}

/// The checks after the last record: size and root against the checkpoint, conserved money.
fn finish(
    state: State,
    tree: Frontier,
    checkpoint: shoulders_log::CheckpointView,
) -> Result<(VerifyReport, State), VerifyFailure> {
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
    let receipts = state.receipts_count();
    let report = VerifyReport {
        origin: checkpoint.origin,
        tree_size: size,
        root_hash: root.to_string(),
        actors: state.actors().count(),
        datasets: state.datasets().count(),
        models: state.models().count(),
        contributions: state.datasets().map(|d| d.contributions.len()).sum(),
        receipts: receipts as usize,
        legs: state.legs_count() as usize,
    };
    Ok((report, state))
}

/// Most records, and about the most bytes of record lines, `verify` hands a worker at once.
const VERIFY_CHUNK_RECORDS: usize = 256;
const VERIFY_CHUNK_BYTES: usize = 4 << 20;

/// Record lines read from an export, and what ended the chunk: the records' end (`Ok`), a
/// failure of the reading itself (`Err`), or nothing (more records follow).
struct LineChunk {
    first_index: u64,
    lines: Vec<Vec<u8>>,
    stop: Option<Result<(), VerifyFailure>>,
    /// Lines of an export (base64), or records' exact bytes.
    encoded: bool,
}

type DecodedChunk = (
    u64,
    Vec<Result<SignedRecord, VerifyFailure>>,
    Option<Result<(), VerifyFailure>>,
);

/// A worker's part of `verify`: base64, record decoding and the chunk's signatures in one
/// batch equation.
fn decode_chunk(chunk: LineChunk) -> DecodedChunk {
    let LineChunk {
        first_index,
        lines,
        stop,
        encoded,
    } = chunk;
    let mut out: Vec<Option<Result<SignedRecord, VerifyFailure>>> = Vec::new();
    let mut bytes = Vec::new();
    let mut slots = Vec::new();
    for (offset, text) in lines.into_iter().enumerate() {
        let index = first_index + offset as u64;
        let decoded = if encoded { B64.decode(&text) } else { Ok(text) };
        match decoded {
            Ok(b) => {
                bytes.push(b);
                slots.push(offset);
                out.push(None);
            }
            Err(e) => out.push(Some(Err(fail(
                "E_EXPORT_MALFORMED",
                Some(index),
                format!("record line is not base64: {e}"),
            )))),
        }
    }
    for (offset, record) in slots.into_iter().zip(SignedRecord::from_bytes_batch(bytes)) {
        let index = first_index + offset as u64;
        out[offset] = Some(record.map_err(|e| fail(e.code(), Some(index), e.to_string())));
    }
    let records = out
        .into_iter()
        .map(|r| r.expect("every line has an outcome"))
        .collect();
    (first_index, records, stop)
}

/// Fold one verified record of an export at `index`.
fn fold_verified(
    state: &mut State,
    history: &mut VerifyHistory,
    tree: &mut Frontier,
    index: u64,
    record: &SignedRecord,
    verifier: &LogVerifier,
) -> Result<(), VerifyFailure> {
    if let Some(e) = crate::writer::wrong_ledger(verifier.origin(), record.record()) {
        return Err(fail(e.code(), Some(index), e.to_string()));
    }
    let leaf = leaf_hash(record.bytes());
    let (_, effects) = state
        .apply_with(index, leaf.0, record, &*history)
        .map_err(|e| fail(e.code(), Some(index), e.to_string()))?;
    if let Some((signer, client_id, _)) = &effects.seen {
        let d = history.digest(0, &[&signer.0, client_id.as_bytes()]);
        history.seen.insert(d, index);
    }
    if let Some(r) = &effects.receipt {
        let d = history.digest(1, &[r.usage_id.as_bytes()]);
        history.usage.insert(d, index);
    }
    tree.append(leaf);
    Ok(())
}

/// Largest checkpoint note read after the records (the `signed_note` limit).
const MAX_NOTE_BYTES: u64 = 1 << 20;

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
