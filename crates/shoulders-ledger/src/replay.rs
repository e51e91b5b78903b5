use crate::LedgerError;
use shoulders_log::{leaf_hash, tree_root, Frontier};
use shoulders_record::SignedRecord;
use shoulders_state::State;
use shoulders_store::{Store, StoreError, StoreHashes};

/// Rebuild state and the append frontier from a store, and check that the stored Merkle
/// hashes agree with the records (same root).
///
/// Signatures are not re-verified here: every stored record was verified before it was
/// appended, and `shoulders verify` re-checks all of them from an export.
pub fn replay(store: &dyn Store) -> Result<(State, Frontier), LedgerError> {
    let size = store.size()?;
    let origin = store.meta(crate::META_ORIGIN)?.unwrap_or_default();
    let mut state = State::new();
    let mut frontier = Frontier::new();
    let mut failure: Option<LedgerError> = None;
    store
        .scan(0, size, &mut |index, bytes| {
            let leaf = leaf_hash(bytes);
            let outcome = SignedRecord::decode(bytes.to_vec())
                .map_err(|e| e.to_string())
                .and_then(
                    |rec| match crate::writer::wrong_ledger(&origin, rec.record()) {
                        Some(e) => Err(e.to_string()),
                        None => Ok(rec),
                    },
                )
                .and_then(|rec| state.apply(index, leaf.0, &rec).map_err(|e| e.to_string()));
            match outcome {
                Ok(_) => {
                    frontier.append(leaf);
                    Ok(())
                }
                Err(reason) => {
                    failure = Some(LedgerError::Corrupt { index, reason });
                    Err(StoreError::Corrupt("replay stopped".into()))
                }
            }
        })
        .map_err(|e| failure.take().unwrap_or(LedgerError::Store(e)))?;
    let stored_root = tree_root(size, &StoreHashes(store))?;
    if stored_root != frontier.root() {
        return Err(LedgerError::Corrupt {
            index: size,
            reason: "stored Merkle hashes do not match the records".into(),
        });
    }
    Ok((state, frontier))
}
