use shoulders_log::LogError;
use shoulders_record::RecordError;
use shoulders_state::Reject;
use shoulders_store::StoreError;

/// Everything the engine can refuse or fail with. Each variant has a stable code.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Rejected(#[from] Reject),
    #[error("client id {client_id:?} was already used by this signer for a different record (index {index}); choose a new id")]
    IdConflict { client_id: String, index: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{0} already holds a ledger; use a new directory")]
    AlreadyInitialised(String),
    #[error("{0} already holds a ledger or other records; use an empty database")]
    DatabaseNotEmpty(String),
    #[error("migration check failed: {0}")]
    MigrateMismatch(String),
    #[error("{0} is not empty; `init` needs a new or empty directory")]
    DirNotEmpty(String),
    #[error("{0} holds no ledger; run `shoulders init --data-dir {0}` first")]
    NotInitialised(String),
    #[error("another shoulders process is writing to {0}; stop it or use read-only commands")]
    Locked(String),
    #[error("key file problem: {0}")]
    KeyFile(String),
    #[error("I/O error on {path}: {message}")]
    Io { path: String, message: String },
    #[error("the stored log does not replay: record {index}: {reason}")]
    Corrupt { index: u64, reason: String },
    #[error("the ledger writer has stopped after a storage failure it could not recover from; restart the process")]
    WriterStopped,
    #[error("{0}")]
    NotFound(String),
    #[error("page size {limit} is out of range: 1 to {max}")]
    PageSize { limit: usize, max: usize },
    #[error("bad cursor: {0}")]
    Cursor(String),
    #[error("the period holds more than {limit} legs of this holder; ask for a shorter period")]
    PeriodTooLarge { limit: usize },
    #[error("content is {size_bytes} bytes; the limit is {limit_bytes}")]
    ContentTooLarge { size_bytes: u64, limit_bytes: u64 },
    #[error("stored content {0} does not match its hash; restore it from another copy")]
    ContentCorrupt(String),
    #[error("the ledger has not received the content of {0}; upload it with the record: `shoulders contribute` or `POST /api/contributions`")]
    ContentMissing(String),
    #[error("the data.contribute for {content_ref} declares byte_size {declared_bytes} and token_count {declared_tokens}, but the content measures {measured_bytes} bytes and {measured_tokens} tokens (a token is a UTF-8 byte); sign the measured sizes")]
    ContentSizeMismatch {
        content_ref: String,
        declared_bytes: u64,
        declared_tokens: u64,
        measured_bytes: u64,
        measured_tokens: u64,
    },
    #[error("the content of {0} is not UTF-8 text; contributions are indexed as UTF-8 bytes")]
    ContentNotUtf8(String),
    #[error("the record names content {declared} but the uploaded content hashes to {actual}")]
    ContentHashMismatch { declared: String, actual: String },
    #[error("the ledger has not received the training configuration {0}; `shoulders model import --training-config FILE` stores it with the registration")]
    TrainingConfigMissing(String),
    #[error("the training configuration is not usable: {0}")]
    TrainingConfigInvalid(String),
    #[error("this route takes a data.contribute record, not {0}; submit other records with `POST /api/records` or `shoulders submit`")]
    NotAContribution(String),
    #[error("too many records in one batch ({count}); the limit is {limit}")]
    BatchTooLarge { count: usize, limit: usize },
    #[error("the record is signed for the ledger {record_log:?}, not this one ({origin:?}); sign it again for this ledger (`shoulders sign --log {origin}`)")]
    WrongLedger { record_log: String, origin: String },
    #[error("the record's signer timestamp {ts_ms} ms is more than {window_ms} ms from this server's clock ({now_ms} ms); sign it again with the current time")]
    TimestampOutsideWindow {
        ts_ms: u64,
        now_ms: u64,
        window_ms: u64,
    },
}

impl LedgerError {
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::Rejected(r) => r.code(),
            LedgerError::IdConflict { .. } => "E_ID_CONFLICT",
            LedgerError::TimestampOutsideWindow { .. } => "E_TIMESTAMP_OUTSIDE_WINDOW",
            LedgerError::WrongLedger { .. } => "E_WRONG_LEDGER",
            LedgerError::Store(e) => e.code(),
            LedgerError::Log(e) => e.code(),
            LedgerError::AlreadyInitialised(_) => "E_ALREADY_INITIALISED",
            LedgerError::NotInitialised(_) => "E_NOT_INITIALISED",
            LedgerError::DirNotEmpty(_) => "E_DIR_NOT_EMPTY",
            LedgerError::DatabaseNotEmpty(_) => "E_DATABASE_NOT_EMPTY",
            LedgerError::MigrateMismatch(_) => "E_MIGRATE_MISMATCH",
            LedgerError::Locked(_) => "E_LOCKED",
            LedgerError::KeyFile(_) => "E_KEY_FILE",
            LedgerError::Io { .. } => "E_IO",
            LedgerError::Corrupt { .. } => "E_STORE_CORRUPT",
            LedgerError::WriterStopped => "E_WRITER_STOPPED",
            LedgerError::BatchTooLarge { .. } => "E_BATCH_TOO_LARGE",
            LedgerError::NotFound(_) => "E_NOT_FOUND",
            LedgerError::PageSize { .. } => "E_PAGE_TOO_LARGE",
            LedgerError::Cursor(_) => "E_CURSOR_INVALID",
            LedgerError::PeriodTooLarge { .. } => "E_PERIOD_TOO_LARGE",
            LedgerError::ContentTooLarge { .. } => "E_CONTENT_TOO_LARGE",
            LedgerError::ContentCorrupt(_) => "E_CONTENT_CORRUPT",
            LedgerError::ContentMissing(_) => "E_CONTENT_MISSING",
            LedgerError::ContentSizeMismatch { .. } => "E_CONTENT_SIZE_MISMATCH",
            LedgerError::ContentNotUtf8(_) => "E_CONTENT_NOT_UTF8",
            LedgerError::ContentHashMismatch { .. } => "E_CONTENT_HASH_MISMATCH",
            LedgerError::NotAContribution(_) => "E_NOT_A_CONTRIBUTION",
            LedgerError::TrainingConfigMissing(_) => "E_CONTENT_MISSING",
            LedgerError::TrainingConfigInvalid(_) => "E_TRAINING_CONFIG_INVALID",
        }
    }

    pub(crate) fn io(path: &std::path::Path, e: std::io::Error) -> Self {
        LedgerError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}

impl From<RecordError> for LedgerError {
    fn from(e: RecordError) -> Self {
        LedgerError::Rejected(Reject::Record(e))
    }
}
