//! A read-only node's ledger: it opens the log without the writer lock, loads the state the
//! writer stored next to the log (bounded, no replay), and then follows the writer by folding
//! the records it commits.
//!
//! Following is the writer's own fold, done incrementally: the follower keeps the tree's right
//! edge (`Frontier`) of what it has folded, and before it folds a batch it checks that the
//! batch's records, appended to that edge, give the root the stored hashes give at the batch's
//! end. Only then does it fold the batch, holding its [`View`] exclusively, so readers see the
//! view before the batch or after it, never in between. The history the fold consults (client
//! ids and usage ids already used) is read from the store as of the batch's first record: the
//! writer has already stored the batch's own history, which must not count against it.

use crate::stored::{read_state, BatchHistory};
use crate::{load_signer, DataDir, LedgerError, Reader, View};
use shoulders_log::{leaf_hash, tree_root, Hash};
use shoulders_record::SignedRecord;
use shoulders_store::{Store, StoreError, StoreHashes};
use std::sync::Mutex;

/// Most records one catch-up step reads, checks and folds before readers see them.
pub const MAX_FOLLOW_BATCH_RECORDS: u64 = 4096;
/// Most record bytes one catch-up step holds (a step ends after the chunk that passes it; a
/// record is at most 64 KiB, so a step holds under this plus `FOLLOW_SCAN_RECORDS` × 64 KiB).
pub const MAX_FOLLOW_BATCH_BYTES: usize = 32 << 20;
/// Records read per storage round trip while catching up.
const FOLLOW_SCAN_RECORDS: u64 = 64;

/// A ledger opened read-only that follows its writer. Any number of them may run on one
/// database (PostgreSQL, or SQLite in WAL mode) next to the one writer, which need not be
/// running: a follower serves what is committed.
pub struct Follower {
    view: View,
    /// The follow loop's own read-only handle, so catching up and serving proofs never wait
    /// for each other's storage reads.
    source: Mutex<Box<dyn Store>>,
    verifier_key: String,
}

impl Follower {
    /// Open the data directory's log read-only (no writer lock is taken or needed) and load
    /// the stored state, checked to reflect exactly the stored tree, as on the writer's start.
    /// A ledger made before its state was stored is refused until a writer has migrated it.
    pub fn open(dir: &DataDir) -> Result<Self, LedgerError> {
        dir.require()?;
        let location = dir.store_location()?;
        let mut source = location.open_read_only()?;
        let (signer, verifier_key) = load_signer(dir, &*source)?;
        let (state, frontier) = read_state(&mut *source)?;
        let reader = Reader::from_parts(location.open_read_only()?, signer, verifier_key.clone());
        Ok(Follower {
            view: View::new(state, frontier, reader),
            source: Mutex::new(source),
            verifier_key,
        })
    }

    /// What this node serves: the state folded from the first `size` records, their tree head,
    /// records and proofs.
    pub fn view(&self) -> &View {
        &self.view
    }

    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    /// Fold every record committed since the last call into the view, in steps of at most
    /// [`MAX_FOLLOW_BATCH_RECORDS`] records and [`MAX_FOLLOW_BATCH_BYTES`] bytes; returns how
    /// many were folded. Each step is read, decoded and checked against the stored tree before
    /// the view changes, then folded while readers wait.
    ///
    /// A storage failure (a lost connection, a busy database) changes nothing and is worth
    /// retrying. `E_STORE_CORRUPT` is not: the log shrank, its records do not hash to the
    /// stored tree, or the fold refuses a stored record (the view then ends just before it).
    pub fn catch_up(&self) -> Result<u64, LedgerError> {
        let mut source = self.source.lock().unwrap_or_else(|p| p.into_inner());
        let stored = source.refresh()?;
        let mut folded = 0;
        loop {
            // Only this function extends a follower's view, under the `source` lock, so the
            // view cannot move between this copy and the fold below.
            let mut frontier = self.view.frontier();
            let from = frontier.size();
            if stored < from {
                return Err(LedgerError::Corrupt {
                    index: stored,
                    reason: format!(
                        "the log holds {stored} records, fewer than the {from} this node has verified; it was rolled back or replaced"
                    ),
                });
            }
            if stored == from {
                return Ok(folded);
            }
            let batch = read_batch(&**source, from, stored)?;
            for (leaf, _) in &batch {
                frontier.append(*leaf);
            }
            let to = frontier.size();
            if tree_root(to, &StoreHashes(&**source))? != frontier.root() {
                return Err(LedgerError::Corrupt {
                    index: to,
                    reason: format!(
                        "records {from}..{to} do not hash to the stored Merkle tree (size {to})"
                    ),
                });
            }
            let history = BatchHistory::prefetch_before(
                &**source,
                batch.iter().map(|(_, record)| record),
                from,
            )?;
            self.fold(from, &batch, history)?;
            folded += to - from;
        }
    }

    /// Apply a checked batch that starts at `from`, holding the view exclusively.
    fn fold(
        &self,
        from: u64,
        batch: &[(Hash, SignedRecord)],
        mut history: BatchHistory,
    ) -> Result<(), LedgerError> {
        let mut committed = self.view.extend();
        assert_eq!(
            committed.frontier.size(),
            from,
            "only catch_up extends a follower's view"
        );
        for (index, (leaf, record)) in (from..).zip(batch) {
            let (_, effects) = committed
                .state
                .apply_with(index, leaf.0, record, &history)
                .map_err(|e| LedgerError::Corrupt {
                    index,
                    reason: e.to_string(),
                })?;
            history.record(&effects);
            committed.frontier.append(*leaf);
        }
        Ok(())
    }
}

/// Records `from..` (at most up to `stored`, within the step's limits), decoded, with their
/// leaf hashes.
fn read_batch(
    store: &dyn Store,
    from: u64,
    stored: u64,
) -> Result<Vec<(Hash, SignedRecord)>, LedgerError> {
    let end = stored.min(from.saturating_add(MAX_FOLLOW_BATCH_RECORDS));
    let mut batch = Vec::new();
    let mut bytes_held = 0usize;
    let mut next = from;
    while next < end && bytes_held < MAX_FOLLOW_BATCH_BYTES {
        let chunk_end = end.min(next + FOLLOW_SCAN_RECORDS);
        let mut failure: Option<LedgerError> = None;
        store
            .scan(next, chunk_end, &mut |index, bytes| {
                bytes_held += bytes.len();
                match SignedRecord::decode(bytes.to_vec()) {
                    Ok(record) => {
                        batch.push((leaf_hash(bytes), record));
                        Ok(())
                    }
                    Err(e) => {
                        failure = Some(LedgerError::Corrupt {
                            index,
                            reason: e.to_string(),
                        });
                        Err(StoreError::Corrupt("follow stopped".into()))
                    }
                }
            })
            .map_err(|e| failure.take().unwrap_or(LedgerError::Store(e)))?;
        let read = from + batch.len() as u64;
        if read != chunk_end {
            return Err(LedgerError::Corrupt {
                index: read,
                reason: "the record is missing from the store".into(),
            });
        }
        next = chunk_end;
    }
    Ok(batch)
}
