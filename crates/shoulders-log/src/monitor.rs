//! What a log monitor checks between two checkpoints it fetched: the log only grows, and every
//! newer tree contains the older one (RFC 6962 consistency). Pure: fetching is the caller's.

use crate::{verify_consistency, CheckpointView, Hash};

/// A split view or rewrite of the log, seen by comparing two verified checkpoints.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Alert {
    #[error("rollback: the log shrank from {old_size} to {new_size} records")]
    Rollback { old_size: u64, new_size: u64 },
    #[error("fork: two different roots signed for size {size} ({old_root} and {new_root})")]
    Fork {
        size: u64,
        old_root: Hash,
        new_root: Hash,
    },
    #[error("fork: the tree of size {new_size} does not contain the tree of size {old_size} (consistency proof fails)")]
    Inconsistent { old_size: u64, new_size: u64 },
}

impl Alert {
    pub fn code(&self) -> &'static str {
        match self {
            Alert::Rollback { .. } => "E_WATCH_ROLLBACK",
            Alert::Fork { .. } | Alert::Inconsistent { .. } => "E_WATCH_FORK",
        }
    }
}

/// Check that `new` is a valid successor of `old`. `proof` is the consistency proof from
/// `old.size` to `new.size`; it is needed only when the log grew from a non-empty tree.
pub fn check_advance(
    old: &CheckpointView,
    new: &CheckpointView,
    proof: &[Hash],
) -> Result<(), Alert> {
    if new.size < old.size {
        return Err(Alert::Rollback {
            old_size: old.size,
            new_size: new.size,
        });
    }
    if new.size == old.size {
        if new.root != old.root {
            return Err(Alert::Fork {
                size: new.size,
                old_root: old.root,
                new_root: new.root,
            });
        }
        return Ok(());
    }
    if old.size == 0 {
        return Ok(());
    }
    verify_consistency(proof, old.size, old.root, new.size, new.root).map_err(|_| {
        Alert::Inconsistent {
            old_size: old.size,
            new_size: new.size,
        }
    })
}

/// Whether `new` needs a consistency proof from `old` before [`check_advance`].
pub fn needs_proof(old: &CheckpointView, new: &CheckpointView) -> bool {
    old.size > 0 && new.size > old.size
}
