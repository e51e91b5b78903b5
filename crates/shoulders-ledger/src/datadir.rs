//! The on-disk layout of a ledger directory.
//!
//! ```text
//! D/ledger.sqlite   the log (records + stored Merkle hashes + metadata), WAL mode
//! D/database.url    instead of ledger.sqlite: where the log lives (`postgres://...` or
//!                   `sqlite:PATH`), written by `init --database`, mode 0600
//! D/log.key         the log's signed-note signer key, mode 0600
//! D/log.pub         the verifier key `<origin>+<hash>+<base64>`, public
//! D/LOCK            advisory lock held by the single writer
//! D/operator.key    the operator actor's signing key (0600), when `init` named an operator
//! D/cosigned-checkpoint  with `serve --witness-policy`: the latest checkpoint a quorum of
//!                   witnesses cosigned (written by the server, atomically; served at once
//!                   after a restart)
//! ```

use crate::LedgerError;
use shoulders_store::StoreLocation;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Longest `database.url` file read, in bytes.
const MAX_LOCATION_FILE_BYTES: u64 = 4096;

#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
    /// Overrides where the log lives (`--database`); otherwise `database.url`, else SQLite.
    database: Option<StoreLocation>,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir {
            root: root.into(),
            database: None,
        }
    }

    /// Keep the log at `location` instead of what the directory records. `init` records it.
    pub fn with_database(mut self, location: StoreLocation) -> Self {
        self.database = Some(location);
        self
    }

    /// The file that records a non-default store location.
    pub fn database_location_file(&self) -> PathBuf {
        self.root.join("database.url")
    }

    /// Where the log lives: the override, else `database.url`, else `ledger.sqlite`.
    pub fn store_location(&self) -> Result<StoreLocation, LedgerError> {
        if let Some(location) = &self.database {
            return Ok(location.clone());
        }
        let file = self.database_location_file();
        if !file.exists() {
            return Ok(StoreLocation::Sqlite(self.database()));
        }
        let size = std::fs::metadata(&file)
            .map_err(|e| LedgerError::io(&file, e))?
            .len();
        if size > MAX_LOCATION_FILE_BYTES {
            return Err(LedgerError::Store(
                shoulders_store::StoreError::BadLocation(format!(
                    "{} is {size} bytes; the limit is {MAX_LOCATION_FILE_BYTES}",
                    file.display()
                )),
            ));
        }
        Ok(StoreLocation::parse(&self.read_text(&file)?)?)
    }

    /// The override given with [`DataDir::with_database`], if any.
    pub(crate) fn database_override(&self) -> Option<&StoreLocation> {
        self.database.as_ref()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn database(&self) -> PathBuf {
        self.root.join("ledger.sqlite")
    }

    pub fn signer_key(&self) -> PathBuf {
        self.root.join("log.key")
    }

    pub fn verifier_key(&self) -> PathBuf {
        self.root.join("log.pub")
    }

    /// The operator's actor key: signs `ledger.config`, deposits and usage receipts.
    pub fn operator_key(&self) -> PathBuf {
        self.root.join("operator.key")
    }

    fn lock_file(&self) -> PathBuf {
        self.root.join("LOCK")
    }

    pub fn exists(&self) -> bool {
        self.database().exists() || self.database_location_file().exists()
    }

    pub(crate) fn require(&self) -> Result<(), LedgerError> {
        if self.exists() {
            Ok(())
        } else {
            Err(LedgerError::NotInitialised(self.root.display().to_string()))
        }
    }

    /// Take the single-writer lock; released when the returned file is dropped (or the process
    /// dies, which is what makes it safe after SIGKILL).
    pub(crate) fn lock(&self) -> Result<File, LedgerError> {
        let path = self.lock_file();
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| LedgerError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(LedgerError::Locked(self.root.display().to_string()))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(LedgerError::io(&path, e)),
        }
    }

    pub(crate) fn read_text(&self, path: &Path) -> Result<String, LedgerError> {
        std::fs::read_to_string(path).map_err(|e| LedgerError::io(path, e))
    }
}

/// Write `text` to a new file with mode `mode`, fsync it and its directory. Refuses to overwrite.
pub fn write_new_file(path: &Path, text: &[u8], mode: u32) -> Result<(), LedgerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| LedgerError::io(path, e))?;
    file.write_all(text).map_err(|e| LedgerError::io(path, e))?;
    file.sync_all().map_err(|e| LedgerError::io(path, e))?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| LedgerError::io(dir, e))?;
    }
    Ok(())
}
