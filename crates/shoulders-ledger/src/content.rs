//! Content-addressed storage of contributed documents.
//!
//! The ledger holds only a document's `sha256:<hex>`; the bytes live in
//! `D/content/sha256/<hex>` so anyone with the directory can re-derive an attribution index.
//! A blob is written to a temporary file, fsynced, renamed into place and its directory
//! fsynced, so a record that names it is appended only after the content is durable. Reads
//! re-check the hash: a corrupted blob is reported, never served.

use crate::{DataDir, LedgerError};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

/// Largest document kept, in bytes (the record format allows larger sizes; attribution indexes
/// are built from documents this size at most).
pub const MAX_CONTENT_BYTES: u64 = 1 << 30;

/// The `sha256:<hex>` reference of `bytes`.
pub fn content_ref(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Content-addressed blobs under a data directory.
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    pub fn new(dir: &DataDir) -> Self {
        ContentStore {
            root: dir.root().join("content").join("sha256"),
        }
    }

    fn path(&self, content_ref: &str) -> Result<PathBuf, LedgerError> {
        let hex = content_ref
            .strip_prefix("sha256:")
            .filter(|h| {
                h.len() == 64
                    && h.bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            })
            .ok_or_else(|| {
                LedgerError::NotFound(format!("{content_ref:?} is not a sha256:<hex> reference"))
            })?;
        Ok(self.root.join(hex))
    }

    /// Store `bytes` durably; returns its reference. Storing the same bytes twice is a no-op.
    pub fn put(&self, bytes: &[u8]) -> Result<String, LedgerError> {
        if bytes.len() as u64 > MAX_CONTENT_BYTES {
            return Err(LedgerError::ContentTooLarge {
                size_bytes: bytes.len() as u64,
                limit_bytes: MAX_CONTENT_BYTES,
            });
        }
        let reference = content_ref(bytes);
        let path = self.path(&reference)?;
        if path.exists() {
            return Ok(reference);
        }
        std::fs::create_dir_all(&self.root).map_err(|e| LedgerError::io(&self.root, e))?;
        let tmp = self.root.join(format!(".{}.partial", &reference[7..]));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| LedgerError::io(&tmp, e))?;
        file.write_all(bytes)
            .map_err(|e| LedgerError::io(&tmp, e))?;
        file.sync_all().map_err(|e| LedgerError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| LedgerError::io(&path, e))?;
        File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(|e| LedgerError::io(&self.root, e))?;
        Ok(reference)
    }

    /// The bytes of `content_ref`, checked against the hash.
    pub fn get(&self, content_ref: &str) -> Result<Vec<u8>, LedgerError> {
        let path = self.path(content_ref)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LedgerError::NotFound(format!(
                    "content {content_ref} is not stored in {}; add it with `shoulders contribute` or copy the file in",
                    self.root.display()
                )))
            }
            Err(e) => return Err(LedgerError::io(&path, e)),
        };
        if self::content_ref(&bytes) != content_ref {
            return Err(LedgerError::ContentCorrupt(content_ref.to_string()));
        }
        Ok(bytes)
    }

    pub fn contains(&self, content_ref: &str) -> bool {
        self.path(content_ref).map(|p| p.exists()).unwrap_or(false)
    }
}
