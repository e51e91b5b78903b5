//! Durable storage behind the ledger.
//!
//! The [`Store`] trait is deliberately narrow: append a batch of records with the Merkle hashes
//! they add — and the fold's results for them ([`StateWrites`]) — in one durable transaction;
//! read records, stored hashes, the stored state and history pages back. It knows nothing of
//! record kinds: state rows are opaque, history rows plain data. Any backend (SQLite,
//! PostgreSQL) implements it and the same conformance tests apply. [`StoreLocation`] picks the
//! backend at run time.

pub mod conformance;
mod keys;
mod leg_set;
mod location;
mod pg;
mod sqlite;
mod state;

pub use keys::pg::PostgresKeys;
pub use keys::sqlite::SqliteKeys;
pub use keys::{KeyRow, KeyStore, PendingSpend, MAX_KEY_PAGE_ROWS};
pub use location::StoreLocation;
pub use pg::{redact_url, PostgresStore, SCHEMA_VERSION, WRITER_LOCK_KEY};
pub use shoulders_log::Hash;
pub use sqlite::{SqliteStore, SQLITE_SCHEMA};
pub use state::{
    LegQuery, LegRow, ReceiptQuery, ReceiptRow, SeenRow, StateRow, StateWrites, MAX_PAGE_ROWS,
};

/// Most records one append batch may carry.
pub const MAX_BATCH_RECORDS: usize = 100_000;

/// Storage failures. None of them leaves a partial batch behind.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("the store is corrupt: {0}")]
    Corrupt(String),
    #[error(
        "append at index {got} but the log has {expected} records; another writer may be running"
    )]
    Conflict { expected: u64, got: u64 },
    #[error("no store at {0}; run `shoulders init` first")]
    Missing(String),
    #[error("another shoulders writer holds the writer lock on {0}; this process may only read (stop the other writer, or run read-only commands)")]
    WriterLocked(String),
    #[error("database schema: {0}")]
    Schema(String),
    #[error("{0}")]
    BadLocation(String),
}

impl StoreError {
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Database(_) => "E_STORAGE",
            StoreError::Corrupt(_) => "E_STORE_CORRUPT",
            StoreError::Conflict { .. } => "E_STORE_CONFLICT",
            StoreError::Missing(_) => "E_STORE_MISSING",
            StoreError::WriterLocked(_) => "E_WRITER_LOCKED",
            StoreError::Schema(_) => "E_STORE_SCHEMA",
            StoreError::BadLocation(_) => "E_DATABASE_URL",
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// One durable append: records `first_index..first_index + records.len()` and the stored
/// hashes they add, which start at `stored_hash_index(0, first_index)`.
pub struct AppendBatch<'a> {
    pub first_index: u64,
    pub records: Vec<&'a [u8]>,
    pub hashes: Vec<Hash>,
    /// The fold's results for these records, written in the same transaction (absent for a
    /// store that does not keep state, e.g. while a migration copies records).
    pub state: Option<&'a StateWrites>,
}

/// Callback for [`Store::scan`]: receives each record's index and exact bytes.
pub type Visit<'a> = dyn FnMut(u64, &[u8]) -> Result<(), StoreError> + 'a;

/// `meta` key holding the log size the stored state reflects (written with every batch).
pub const STATE_SIZE_KEY: &str = "state_size";

/// Where a `(signer, client id)` was first used: its log index and leaf hash.
pub type SeenAt = (u64, [u8; 32]);

/// A log store. `append` must be atomic and durable when it returns `Ok`.
pub trait Store: Send {
    /// Number of records stored (as of open or the last `append`/`refresh`).
    fn size(&self) -> Result<u64, StoreError>;
    /// Re-read the size from the database: read-only handles follow a writer this way, and a
    /// writer re-syncs after a failed transaction.
    fn refresh(&mut self) -> Result<u64, StoreError>;
    /// Append one batch atomically and durably (fsync / committed transaction).
    fn append(&mut self, batch: &AppendBatch<'_>) -> Result<(), StoreError>;
    /// The exact bytes of record `index`.
    fn record(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Visit records `from..to` in order.
    fn scan(&self, from: u64, to: u64, visit: &mut Visit<'_>) -> Result<(), StoreError>;
    /// Stored Merkle hashes by `stored_hash_index`.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError>;
    /// A metadata value (origin, verifier key, format version).
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Set a metadata value durably.
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError>;

    /// The log size the stored state reflects (`None`: no state was ever stored, e.g. a
    /// ledger made before state was persisted).
    fn state_size(&self) -> Result<Option<u64>, StoreError> {
        self.meta(STATE_SIZE_KEY)?
            .map(|v| {
                v.parse()
                    .map_err(|_| StoreError::Corrupt(format!("{STATE_SIZE_KEY} is {v:?}")))
            })
            .transpose()
    }
    /// Visit every stored state row.
    fn load_state(&self, visit: &mut StateVisit<'_>) -> Result<(), StoreError>;
    /// Replace the whole stored state and history with `writes` in one transaction (a
    /// migration that rebuilt them by replaying the log).
    fn replace_state(&mut self, writes: &StateWrites) -> Result<(), StoreError>;
    /// Where each `(signer, client id)` was first used, if it was.
    fn seen_many(&self, keys: &[([u8; 32], String)]) -> Result<Vec<Option<SeenAt>>, StoreError>;
    /// The receipt index that charged each usage id, if one did.
    fn usage_many(&self, usage_ids: &[String]) -> Result<Vec<Option<u64>>, StoreError>;
    /// A page of one holder's legs (log order, after the cursor).
    fn legs_of_holder(&self, q: &LegQuery) -> Result<Vec<LegRow>, StoreError>;
    /// Every leg a record posted, in order.
    fn legs_of_record(&self, index: u64) -> Result<Vec<LegRow>, StoreError>;
    /// The receipt settled at `index`.
    fn receipt(&self, index: u64) -> Result<Option<ReceiptRow>, StoreError>;
    /// The receipts settled at any of `indexes` (at most [`MAX_PAGE_ROWS`]), in index order, in
    /// one round trip: a page that names many receipts must not cost one query each.
    fn receipts_at(&self, indexes: &[u64]) -> Result<Vec<ReceiptRow>, StoreError>;
    /// A page of receipts (newest first, before the cursor), optionally of one model or payer.
    fn receipts(&self, q: &ReceiptQuery) -> Result<Vec<ReceiptRow>, StoreError>;
}

/// Callback for [`Store::load_state`]: receives each row's kind, key and value.
pub type StateVisit<'a> = dyn FnMut(String, String, Vec<u8>) -> Result<(), StoreError> + 'a;

/// Adapts any [`Store`] to the log crate's hash reader.
pub struct StoreHashes<'a, S: Store + ?Sized>(pub &'a S);

impl<S: Store + ?Sized> shoulders_log::HashReader for StoreHashes<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, shoulders_log::TlogError> {
        self.0
            .read_hashes(indexes)
            .map_err(|e| shoulders_log::TlogError::InvalidInput(e.to_string()))
    }
}
