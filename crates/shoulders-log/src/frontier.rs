use crate::{hashes_for_append, stored_hash_index, tree_root, Hash, HashReader, LogError};

/// The right edge of the tree: the root of each perfect subtree in the binary decomposition of
/// the current size (at most 64 hashes).
///
/// Appending a leaf and computing the root only ever read these hashes, so a writer holding a
/// `Frontier` extends the log without reading storage; it writes the new stored hashes it is
/// handed back. This keeps the append hot path free of database reads.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Frontier {
    size: u64,
    /// `(stored_hash_index, hash)`, sorted by index (left to right in the tree).
    nodes: Vec<(u64, Hash)>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stored-hash indexes a frontier for `size` holds, left to right.
    pub fn indexes_for(size: u64) -> Vec<u64> {
        let mut out = Vec::with_capacity(size.count_ones() as usize);
        for level in (0..64u8).rev() {
            if size & (1u64 << level) != 0 {
                // The subtree at this level ends just before the bits below it.
                let end = size >> level; // count of level-`level` nodes fully left of the cut
                out.push(stored_hash_index(level, end - 1));
            }
        }
        out
    }

    /// Rebuild the frontier for `size` from any hash storage (used at start-up).
    pub fn load<R: HashReader>(size: u64, reader: &R) -> Result<Self, LogError> {
        let indexes = Self::indexes_for(size);
        let hashes = reader
            .read_hashes(&indexes)
            .map_err(|e| LogError::Storage(e.to_string()))?;
        if hashes.len() != indexes.len() {
            return Err(LogError::Storage(
                "hash reader returned the wrong count".into(),
            ));
        }
        Ok(Self {
            size,
            nodes: indexes.into_iter().zip(hashes).collect(),
        })
    }

    /// Number of leaves covered.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append a leaf hash; returns the stored hashes to persist, starting at
    /// `stored_hash_index(0, old_size)`.
    pub fn append(&mut self, leaf: Hash) -> Vec<Hash> {
        let index = self.size;
        let new = hashes_for_append(index, leaf, self)
            .expect("a frontier always holds the hashes an append reads");
        let first = stored_hash_index(0, index);
        let size = index + 1;
        let wanted = Self::indexes_for(size);
        let mut nodes = Vec::with_capacity(wanted.len());
        for w in wanted {
            let hash = if w >= first {
                new[usize::try_from(w - first).expect("small offset")]
            } else {
                self.lookup(w)
                    .expect("the new frontier is the old frontier plus new nodes")
            };
            nodes.push((w, hash));
        }
        self.nodes = nodes;
        self.size = size;
        new
    }

    /// Root of the covered tree.
    pub fn root(&self) -> Hash {
        tree_root(self.size, self).expect("a frontier always holds the root's hashes")
    }

    fn lookup(&self, index: u64) -> Option<Hash> {
        self.nodes
            .binary_search_by_key(&index, |(i, _)| *i)
            .ok()
            .map(|at| self.nodes[at].1)
    }
}

impl HashReader for Frontier {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| self.lookup(i).ok_or(tlog_tiles::Error::IndexesNotInTree))
            .collect()
    }
}
