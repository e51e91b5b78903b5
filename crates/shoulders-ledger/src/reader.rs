use crate::{load_signer, DataDir, LedgerError};
use serde::Serialize;
use shoulders_log::tiles::{encode_bundle, hash_tile_bytes, TileCoord};
use shoulders_log::{consistency_proof, inclusion_proof, tree_root, Hash, LogError, LogSigner};
use shoulders_state::State;
use shoulders_store::{Store, StoreHashes};

/// An inclusion proof as printed by `shoulders proof inclusion` (hashes in base64).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct InclusionProof {
    pub tree_size: u64,
    pub leaf_index: u64,
    pub hashes: Vec<String>,
}

/// A consistency proof as printed by `shoulders proof consistency` (hashes in base64).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    pub hashes: Vec<String>,
}

fn b64(hashes: Vec<Hash>) -> Vec<String> {
    hashes.iter().map(|h| h.to_string()).collect()
}

/// Read-only access to a ledger directory. Works while a writer is running (SQLite WAL, or any
/// number of PostgreSQL sessions), so read commands and read-only nodes never need the writer
/// lock.
pub struct Reader {
    store: Box<dyn Store>,
    signer: LogSigner,
    verifier_key: String,
}

impl Reader {
    pub fn open(dir: &DataDir) -> Result<Self, LedgerError> {
        dir.require()?;
        let store = dir.store_location()?.open_read_only()?;
        let (signer, verifier_key) = load_signer(dir, &*store)?;
        Ok(Reader {
            store,
            signer,
            verifier_key,
        })
    }

    pub(crate) fn from_parts(
        store: Box<dyn Store>,
        signer: LogSigner,
        verifier_key: String,
    ) -> Self {
        Reader {
            store,
            signer,
            verifier_key,
        }
    }

    /// Pick up records appended by a writer since this reader was opened.
    pub fn refresh(&mut self) -> Result<u64, LedgerError> {
        Ok(self.store.refresh()?)
    }

    pub fn size(&self) -> u64 {
        self.store
            .size()
            .expect("every store caches its size (refreshed by `refresh`)")
    }

    pub fn verifier_key(&self) -> &str {
        &self.verifier_key
    }

    pub(crate) fn signer(&self) -> &LogSigner {
        &self.signer
    }

    pub fn origin(&self) -> &str {
        self.signer.origin()
    }

    pub fn root(&self, size: u64) -> Result<Hash, LedgerError> {
        self.check_size(size)?;
        Ok(tree_root(size, &StoreHashes(&*self.store))?)
    }

    fn check_size(&self, size: u64) -> Result<(), LedgerError> {
        if size > self.size() {
            return Err(LogError::SizeBeyondLog {
                requested: size,
                current: self.size(),
            }
            .into());
        }
        Ok(())
    }

    /// The signed checkpoint for the first `size` records.
    pub fn checkpoint_at(&self, size: u64) -> Result<Vec<u8>, LedgerError> {
        let root = self.root(size)?;
        Ok(self.signer.sign(size, root)?)
    }

    pub fn checkpoint(&self) -> Result<Vec<u8>, LedgerError> {
        self.checkpoint_at(self.size())
    }

    pub fn record(&self, index: u64) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.store.record(index)?)
    }

    pub fn leaf_hash(&self, index: u64) -> Result<Hash, LedgerError> {
        if index >= self.size() {
            return Err(LogError::IndexOutOfRange {
                index,
                size: self.size(),
            }
            .into());
        }
        let h = self
            .store
            .read_hashes(&[shoulders_log::stored_hash_index(0, index)])?;
        Ok(h[0])
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<InclusionProof, LedgerError> {
        self.check_size(size)?;
        let hashes = inclusion_proof(index, size, &StoreHashes(&*self.store))?;
        Ok(InclusionProof {
            tree_size: size,
            leaf_index: index,
            hashes: b64(hashes),
        })
    }

    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<ConsistencyProof, LedgerError> {
        self.check_size(new)?;
        let hashes = consistency_proof(old, new, &StoreHashes(&*self.store))?;
        Ok(ConsistencyProof {
            old_size: old,
            new_size: new,
            hashes: b64(hashes),
        })
    }

    /// The C2SP tile `coord` of the tree of the first `size` records: a hash tile read from the
    /// stored hashes, or an entry bundle framing the (at most 256) records' exact bytes. Bounded
    /// work: at most 256 stored hashes or 256 records, whatever the log's size.
    pub fn tile(&self, coord: &TileCoord, size: u64) -> Result<Vec<u8>, LedgerError> {
        self.check_size(size)?;
        if !coord.exists_in(size) {
            return Err(LogError::TileNotInTree(coord.path()).into());
        }
        if coord.level.is_some() {
            return Ok(hash_tile_bytes(coord, size, &StoreHashes(&*self.store))?);
        }
        let range = coord.entry_range();
        let mut entries = Vec::with_capacity(coord.width as usize);
        self.scan(range.start, range.end, &mut |_, bytes| {
            entries.push(bytes.to_vec());
            Ok(())
        })?;
        if entries.len() as u64 != range.end - range.start {
            return Err(LedgerError::Corrupt {
                index: range.start + entries.len() as u64,
                reason: "a record of the committed tree is missing from the store".into(),
            });
        }
        Ok(encode_bundle(entries.iter().map(Vec::as_slice))?)
    }

    /// Visit records `from..to` in order.
    pub fn scan(
        &self,
        from: u64,
        to: u64,
        visit: &mut shoulders_store::Visit<'_>,
    ) -> Result<(), LedgerError> {
        Ok(self.store.scan(from, to, visit)?)
    }

    /// The stored state (bounded: entities, balances, counters), read without replaying the
    /// log; it reflects the log's current size.
    pub fn state(&mut self) -> Result<State, LedgerError> {
        Ok(crate::stored::read_state(&mut *self.store)?.0)
    }

    /// The store, for the query layer ([`crate::query`]).
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Where `(signer, client id)` was first used, if it was.
    pub fn seen(
        &self,
        signer: &shoulders_record::PublicKey,
        client_id: &str,
    ) -> Result<Option<shoulders_state::Seen>, LedgerError> {
        Ok(self
            .store
            .seen_many(&[(signer.0, client_id.to_string())])?
            .pop()
            .flatten()
            .map(|(index, leaf_hash)| shoulders_state::Seen { index, leaf_hash }))
    }

    /// Write the first `size` records and their checkpoint in the export format.
    pub fn export(&self, size: u64, out: &mut dyn std::io::Write) -> Result<(), LedgerError> {
        let checkpoint = self.checkpoint_at(size)?;
        crate::export::write_export(self, size, &checkpoint, out)
    }
}
