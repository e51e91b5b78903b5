//! What readers of a ledger see: the state folded from the first `size` records, the tree
//! head of exactly those records, and the records and proofs up to that size.
//!
//! Both the writer ([`crate::Ledger`]) and a read-only node ([`crate::Follower`]) keep one
//! [`View`]. Whoever extends it (the writer's commit, the follower's catch-up) holds its lock
//! exclusively from the first fold of a batch until the batch is complete, so a reader always
//! sees a state and a tree size that belong together: the fold of exactly the first `size`
//! records, never part of a batch.

use crate::reader::{ConsistencyProof, InclusionProof, Reader};
use crate::LedgerError;
use shoulders_log::tiles::TileCoord;
use shoulders_log::{Frontier, LogError, LogSigner};
use shoulders_record::PublicKey;
use shoulders_state::Seen;
use shoulders_state::State;
use shoulders_store::Store;
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The folded state and the right edge of the tree over the same records.
pub(crate) struct Committed {
    pub(crate) state: State,
    pub(crate) frontier: Frontier,
}

/// The committed state, tree head, records and proofs of a ledger, as its readers see them.
pub struct View {
    committed: RwLock<Committed>,
    /// Serves records and proofs; refreshed only when the view has grown past what it has seen.
    reader: Mutex<Reader>,
    signer: LogSigner,
}

impl View {
    pub(crate) fn new(state: State, frontier: Frontier, reader: Reader) -> Self {
        let signer = reader.signer().clone();
        View {
            committed: RwLock::new(Committed { state, frontier }),
            reader: Mutex::new(reader),
            signer,
        }
    }

    fn committed(&self) -> RwLockReadGuard<'_, Committed> {
        self.committed.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Exclusive access for whoever extends the view; readers wait until it is dropped.
    pub(crate) fn extend(&self) -> RwLockWriteGuard<'_, Committed> {
        self.committed.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of records in the view.
    pub fn size(&self) -> u64 {
        self.committed().frontier.size()
    }

    /// A copy of the tree's right edge (at most 64 hashes) and so its size and root.
    pub(crate) fn frontier(&self) -> Frontier {
        self.committed().frontier.clone()
    }

    /// Run `f` on the state folded from exactly the records of the view.
    pub fn with_state<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.committed().state)
    }

    /// Run `f` on the state and the store's history (legs, receipts, seen ids), while the view
    /// cannot change. On the writer the store holds exactly the view's records; on a read node
    /// it may hold records the node has not folded yet (at most one follow interval's worth),
    /// so history pages may run a little ahead of the state's counters there.
    pub fn with_history<T>(
        &self,
        f: impl FnOnce(&State, &dyn Store) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let committed = self.committed();
        let mut reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if reader.size() < committed.frontier.size() {
            reader.refresh()?;
        }
        f(&committed.state, reader.store())
    }

    /// Where `(signer, client id)` was first used in the view's records, if it was.
    pub fn seen(&self, signer: &PublicKey, client_id: &str) -> Result<Option<Seen>, LedgerError> {
        self.with_reader(|r, size| Ok(r.seen(signer, client_id)?.filter(|s| s.index < size)))
    }

    /// The signed checkpoint of the view's tree (no storage read).
    pub fn checkpoint(&self) -> Result<Vec<u8>, LedgerError> {
        let (size, root) = {
            let c = self.committed();
            (c.frontier.size(), c.frontier.root())
        };
        Ok(self.signer.sign(size, root)?)
    }

    pub fn origin(&self) -> &str {
        self.signer.origin()
    }

    /// Run `f` on a reader that sees at least the view's records, with the view's size.
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Reader, u64) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let size = self.size();
        let mut reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        if reader.size() < size {
            reader.refresh()?;
        }
        f(&reader, size)
    }

    fn check_size(requested: u64, size: u64) -> Result<(), LedgerError> {
        if requested > size {
            return Err(LogError::SizeBeyondLog {
                requested,
                current: size,
            }
            .into());
        }
        Ok(())
    }

    /// Inclusion proof of `index` in the tree of `size` (default: the view's size).
    pub fn inclusion_proof(
        &self,
        index: u64,
        size: Option<u64>,
    ) -> Result<InclusionProof, LedgerError> {
        self.with_reader(|r, current| {
            let size = size.unwrap_or(current);
            Self::check_size(size, current)?;
            r.inclusion_proof(index, size)
        })
    }

    /// Consistency proof from `old` to `new` (default: the view's size).
    pub fn consistency_proof(
        &self,
        old: u64,
        new: Option<u64>,
    ) -> Result<ConsistencyProof, LedgerError> {
        self.with_reader(|r, current| {
            let new = new.unwrap_or(current);
            Self::check_size(new, current)?;
            r.consistency_proof(old, new)
        })
    }

    /// The exact bytes of record `index`, if it is in the view.
    pub fn record(&self, index: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        self.with_reader(|r, current| {
            if index < current {
                r.record(index)
            } else {
                Ok(None)
            }
        })
    }

    /// The C2SP tile `coord` of the view's tree (`E_TILE_NOT_FOUND` if the tree does not hold
    /// it yet). Tiles of a committed tree never change, so any node serves the same bytes.
    pub fn tile(&self, coord: &TileCoord) -> Result<Vec<u8>, LedgerError> {
        self.with_reader(|r, current| r.tile(coord, current))
    }

    /// Export the view's records with their checkpoint.
    pub fn export(&self, out: &mut dyn std::io::Write) -> Result<(), LedgerError> {
        self.with_reader(|r, current| r.export(current, out))
    }
}
