use crate::{hashes_for_append, leaf_hash, tree_root, Hash, HashReader, LogError};

/// Every stored hash of a tree, in memory, in `stored_hash_index` order.
///
/// Used by the stand-alone verifier (which replays an export with no database), by tests and
/// by benchmarks. About `2 × 32` bytes per leaf.
#[derive(Default, Clone)]
pub struct MemoryHashes {
    hashes: Vec<Hash>,
    size: u64,
}

impl MemoryHashes {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append a leaf's raw bytes; returns its leaf hash.
    pub fn append(&mut self, leaf_bytes: &[u8]) -> Hash {
        let leaf = leaf_hash(leaf_bytes);
        self.append_leaf_hash(leaf);
        leaf
    }

    /// Append an already computed leaf hash.
    pub fn append_leaf_hash(&mut self, leaf: Hash) {
        let new = hashes_for_append(self.size, leaf, self)
            .expect("in-memory store always holds the hashes an append needs");
        self.hashes.extend(new);
        self.size += 1;
    }

    /// Root of the current tree.
    pub fn root(&self) -> Hash {
        tree_root(self.size, self).expect("in-memory store always holds the root's hashes")
    }

    /// Leaf hash at `index`, if present.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        if index >= self.size {
            return None;
        }
        let at = crate::stored_hash_index(0, index);
        self.hashes.get(usize::try_from(at).ok()?).copied()
    }

    /// Every stored hash, for persisting.
    pub fn stored(&self) -> &[Hash] {
        &self.hashes
    }
}

impl HashReader for MemoryHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.hashes.get(i).copied())
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl MemoryHashes {
    /// Proof helper that keeps the error type of this crate.
    pub fn root_at(&self, size: u64) -> Result<Hash, LogError> {
        if size > self.size {
            return Err(LogError::SizeBeyondLog {
                requested: size,
                current: self.size,
            });
        }
        tree_root(size, self)
    }
}
