//! Content-addressed storage of contributed documents, and the admission rule that makes a
//! contribution count only for content the ledger holds.
//!
//! The ledger holds only a document's `sha256:<hex>`; the bytes live in
//! `D/content/sha256/<hex>` so anyone with the directory can re-derive an attribution index.
//! A blob is written to a temporary file, fsynced, renamed into place and its directory
//! fsynced, so a record that names it is appended only after the content is durable. Reads
//! re-check the hash: a corrupted blob is reported, never served.
//!
//! **Content first.** A new `data.contribute` is admitted only when its content is stored here,
//! hashes to `content_hash`, is UTF-8, and its `byte_size` and `token_count` equal what
//! [`ContentStore::measure`] measures (tokens are UTF-8 bytes). A declared size is a lever: one
//! record declaring 2^40 bytes for content nobody stored would take every fallback attribution
//! and make the dataset's index unbuildable. So sizes are measured, never declared.
//!
//! **Training configurations** live here too: a `model.register` whose `training.config_hash`
//! names one is admitted only when the document is stored, intact, at most
//! [`MAX_TRAINING_CONFIG_BYTES`] and a JSON object ([`ContentStore::training_config`]), so the
//! configuration of every registered run can always be shown.

use crate::{DataDir, LedgerError};
use sha2::{Digest, Sha256};
use shoulders_record::DataContribute;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest document kept, in bytes (the record format allows larger sizes; attribution indexes
/// are built from documents this size at most).
pub const MAX_CONTENT_BYTES: u64 = 1 << 30;

/// Largest training configuration (hyperparameters), in bytes: a configuration, not data.
pub const MAX_TRAINING_CONFIG_BYTES: u64 = 1 << 20;

/// Bytes read at a time while measuring a stored document (memory stays flat for any size; each
/// thread that measures keeps one such buffer).
const READ_BUFFER_BYTES: usize = 64 << 10;

/// The `sha256:<hex>` reference of `bytes`.
pub fn content_ref(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `bytes` as a training configuration: a JSON object of at most [`MAX_TRAINING_CONFIG_BYTES`]
/// (`E_TRAINING_CONFIG_INVALID` otherwise). Any JSON inside it is allowed (numbers with
/// fractions included: the document is shown, never folded).
pub fn parse_training_config(
    bytes: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, LedgerError> {
    if bytes.len() as u64 > MAX_TRAINING_CONFIG_BYTES {
        return Err(LedgerError::TrainingConfigInvalid(format!(
            "it is {} bytes; the limit is {MAX_TRAINING_CONFIG_BYTES}",
            bytes.len()
        )));
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(LedgerError::TrainingConfigInvalid(
            "it must be a JSON object of settings, e.g. {\"learning_rate\": 0.0002}".into(),
        )),
        Err(e) => Err(LedgerError::TrainingConfigInvalid(format!(
            "it is not JSON: {e}"
        ))),
    }
}

/// Byte-level tokens of a UTF-8 document of `byte_size` bytes: every byte is a token
/// (infini-gram's `u8` mode), so the count is the length.
pub fn token_count(byte_size: u64) -> u64 {
    byte_size
}

/// What [`ContentStore::measure`] found for a stored document whose hash checked out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measured {
    pub byte_size: u64,
    pub token_count: u64,
}

/// Content-addressed blobs under a data directory.
#[derive(Clone, Debug)]
pub struct ContentStore {
    root: PathBuf,
}

/// Distinguishes concurrent writers' temporary files within one process.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

impl ContentStore {
    pub fn new(dir: &DataDir) -> Self {
        ContentStore {
            root: dir.root().join("content").join("sha256"),
        }
    }

    /// The blobs of a copied content directory, for checking an export against it: `DIR` may
    /// be a data directory, its `content/`, or its `content/sha256/`.
    pub fn at(dir: &Path) -> Self {
        let root = [dir.join("content").join("sha256"), dir.join("sha256")]
            .into_iter()
            .find(|p| p.is_dir())
            .unwrap_or_else(|| dir.to_path_buf());
        ContentStore { root }
    }

    /// The directory holding the blobs (`.../content/sha256`).
    pub fn root(&self) -> &Path {
        &self.root
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

    /// Store `bytes` durably; returns its reference. Storing the same bytes twice is a no-op;
    /// a stored blob that no longer matches its hash is replaced by the good bytes.
    pub fn put(&self, bytes: &[u8]) -> Result<String, LedgerError> {
        if bytes.len() as u64 > MAX_CONTENT_BYTES {
            return Err(LedgerError::ContentTooLarge {
                size_bytes: bytes.len() as u64,
                limit_bytes: MAX_CONTENT_BYTES,
            });
        }
        let reference = content_ref(bytes);
        let path = self.path(&reference)?;
        if path.exists()
            && self
                .scan(&reference)?
                .is_some_and(|s| s.matches(&reference))
        {
            return Ok(reference);
        }
        std::fs::create_dir_all(&self.root).map_err(|e| LedgerError::io(&self.root, e))?;
        let tmp = self.root.join(format!(
            ".{}.{}-{}.partial",
            &reference[7..],
            std::process::id(),
            NEXT_TMP.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| LedgerError::io(&tmp, e))?;
            file.write_all(bytes)
                .map_err(|e| LedgerError::io(&tmp, e))?;
            file.sync_all().map_err(|e| LedgerError::io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| LedgerError::io(&path, e))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
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

    /// Check and store a training configuration ([`parse_training_config`]); returns its
    /// reference, the `training.config_hash` to sign.
    pub fn put_training_config(&self, bytes: &[u8]) -> Result<String, LedgerError> {
        parse_training_config(bytes)?;
        self.put(bytes)
    }

    /// The training configuration stored under `config_hash`, read in bounded memory (at most
    /// [`MAX_TRAINING_CONFIG_BYTES`] + 1 bytes): `E_CONTENT_MISSING` when it is not stored,
    /// `E_CONTENT_CORRUPT` when it does not hash to its reference, `E_TRAINING_CONFIG_INVALID`
    /// when it is too large or not a JSON object. The admission rule of a new `model.register`
    /// that names one, and what the API and explorer show.
    pub fn training_config(
        &self,
        config_hash: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, LedgerError> {
        let path = self.path(config_hash)?;
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(LedgerError::TrainingConfigMissing(config_hash.to_string()))
            }
            Err(e) => return Err(LedgerError::io(&path, e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_TRAINING_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| LedgerError::io(&path, e))?;
        if bytes.len() as u64 <= MAX_TRAINING_CONFIG_BYTES && content_ref(&bytes) != config_hash {
            return Err(LedgerError::ContentCorrupt(config_hash.to_string()));
        }
        parse_training_config(&bytes)
    }

    pub fn contains(&self, content_ref: &str) -> bool {
        self.path(content_ref).map(|p| p.exists()).unwrap_or(false)
    }

    /// Read the stored document of `content_ref` once, in bounded memory, and measure it:
    /// `E_CONTENT_MISSING` when it is not stored, `E_CONTENT_CORRUPT` when it does not hash to
    /// its reference, `E_CONTENT_TOO_LARGE` over [`MAX_CONTENT_BYTES`], `E_CONTENT_NOT_UTF8`
    /// when it is not UTF-8 text.
    pub fn measure(&self, content_ref: &str) -> Result<Measured, LedgerError> {
        let scan = self
            .scan(content_ref)?
            .ok_or_else(|| LedgerError::ContentMissing(content_ref.to_string()))?;
        if !scan.matches(content_ref) {
            return Err(LedgerError::ContentCorrupt(content_ref.to_string()));
        }
        if scan.byte_size > MAX_CONTENT_BYTES {
            return Err(LedgerError::ContentTooLarge {
                size_bytes: scan.byte_size,
                limit_bytes: MAX_CONTENT_BYTES,
            });
        }
        if !scan.utf8 {
            return Err(LedgerError::ContentNotUtf8(content_ref.to_string()));
        }
        Ok(Measured {
            byte_size: scan.byte_size,
            token_count: token_count(scan.byte_size),
        })
    }

    /// The admission rule of a new `data.contribute`: its content is stored and intact
    /// ([`ContentStore::measure`]) and the record's sizes are the measured ones
    /// (`E_CONTENT_SIZE_MISMATCH` otherwise).
    pub fn check_contribution(&self, body: &DataContribute) -> Result<Measured, LedgerError> {
        let measured = self.measure(&body.content_hash)?;
        check_sizes(
            &body.content_hash,
            body.byte_size,
            body.token_count,
            measured,
        )?;
        Ok(measured)
    }

    /// Hash, length and UTF-8 validity of a stored blob, read in [`READ_BUFFER_BYTES`] pieces
    /// into this thread's reused buffer; `None` when it is not stored. Read until end of file,
    /// never sized first: admitting a small contribution costs one open, two reads and a close
    /// (no `statx`, no fresh zeroed buffer), and a file that grows while it is read is still
    /// hashed whole.
    fn scan(&self, content_ref: &str) -> Result<Option<Scan>, LedgerError> {
        let path = self.path(content_ref)?;
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LedgerError::io(&path, e)),
        };
        SCAN_BUFFER
            .with(|cell| match cell.try_borrow_mut() {
                Ok(mut buf) => scan_file(&mut file, &mut buf, &path),
                // Only if a scan ever ran inside another on this thread: it gets its own buffer.
                Err(_) => scan_file(&mut file, &mut Vec::new(), &path),
            })
            .map(Some)
    }
}

thread_local! {
    /// Each thread's read buffer for [`ContentStore::scan`], allocated on its first scan.
    static SCAN_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Hash, length and UTF-8 validity of everything `file` yields until end of file, read into
/// `buf` (grown to [`READ_BUFFER_BYTES`] plus room for a character cut at the end of the
/// previous read, at most 3 bytes).
fn scan_file(file: &mut File, buf: &mut Vec<u8>, path: &Path) -> Result<Scan, LedgerError> {
    if buf.len() < READ_BUFFER_BYTES + 3 {
        buf.resize(READ_BUFFER_BYTES + 3, 0);
    }
    let mut hasher = Sha256::new();
    let (mut carry, mut byte_size, mut utf8) = (0usize, 0u64, true);
    loop {
        let n = match file.read(&mut buf[carry..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LedgerError::io(path, e)),
        };
        hasher.update(&buf[carry..carry + n]);
        byte_size += n as u64;
        if !utf8 {
            continue;
        }
        let end = carry + n;
        carry = match std::str::from_utf8(&buf[..end]) {
            Ok(_) => 0,
            // An incomplete character at the end: keep it for the next read.
            Err(e) if e.error_len().is_none() => {
                buf.copy_within(e.valid_up_to()..end, 0);
                end - e.valid_up_to()
            }
            Err(_) => {
                utf8 = false;
                0
            }
        };
    }
    Ok(Scan {
        hash: hasher.finalize().into(),
        byte_size,
        utf8: utf8 && carry == 0,
    })
}

/// A blob as read from disk.
struct Scan {
    /// Its SHA-256.
    hash: [u8; 32],
    byte_size: u64,
    utf8: bool,
}

impl Scan {
    /// Whether the blob hashes to `content_ref` (a `sha256:<hex>` reference), compared without
    /// formatting the digest.
    fn matches(&self, content_ref: &str) -> bool {
        let mut want = [0u8; 32];
        content_ref
            .strip_prefix("sha256:")
            .is_some_and(|h| hex::decode_to_slice(h, &mut want).is_ok())
            && want == self.hash
    }
}

/// A record's declared sizes must be the measured ones.
pub(crate) fn check_sizes(
    content_ref: &str,
    declared_bytes: u64,
    declared_tokens: u64,
    measured: Measured,
) -> Result<(), LedgerError> {
    if declared_bytes == measured.byte_size && declared_tokens == measured.token_count {
        return Ok(());
    }
    Err(LedgerError::ContentSizeMismatch {
        content_ref: content_ref.to_string(),
        declared_bytes,
        declared_tokens,
        measured_bytes: measured.byte_size,
        measured_tokens: measured.token_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let tmp = tempfile::tempdir().unwrap();
        let store = ContentStore::new(&DataDir::new(tmp.path()));
        (tmp, store)
    }

    #[test]
    fn measure_streams_utf8_across_read_boundaries() {
        let (_tmp, store) = store();
        // A 4-byte character straddles every read boundary once the prefix shifts it.
        for shift in 0..4 {
            let mut text = "a".repeat(READ_BUFFER_BYTES - shift);
            text.push_str(&"😀".repeat(1000));
            let r = store.put(text.as_bytes()).unwrap();
            let m = store.measure(&r).unwrap();
            assert_eq!(m.byte_size, text.len() as u64);
            assert_eq!(m.token_count, text.len() as u64);
        }
    }

    #[test]
    fn measure_refuses_invalid_or_truncated_utf8() {
        let (_tmp, store) = store();
        for bytes in [&b"abc\xff"[..], b"abc\xe2\x82", b"\xc3"] {
            let r = store.put(bytes).unwrap();
            assert_eq!(store.measure(&r).unwrap_err().code(), "E_CONTENT_NOT_UTF8");
        }
    }

    #[test]
    fn training_configs_are_json_objects_within_the_limit() {
        let (_tmp, store) = store();
        let r = store
            .put_training_config(br#"{"learning_rate": 0.0002, "epochs": 3}"#)
            .unwrap();
        let config = store.training_config(&r).unwrap();
        assert_eq!(config["epochs"], 3);
        for bad in [&b"[1, 2]"[..], b"7", b"{\"a\":", b"\xff"] {
            let err = store.put_training_config(bad).unwrap_err();
            assert_eq!(err.code(), "E_TRAINING_CONFIG_INVALID", "{bad:?}");
            // Stored some other way (a contribution), it is still refused as a configuration.
            let r = store.put(bad).unwrap();
            assert_eq!(
                store.training_config(&r).unwrap_err().code(),
                "E_TRAINING_CONFIG_INVALID"
            );
        }
        let big = format!(
            "{{\"pad\": \"{}\"}}",
            "x".repeat(MAX_TRAINING_CONFIG_BYTES as usize)
        );
        assert_eq!(
            store
                .put_training_config(big.as_bytes())
                .unwrap_err()
                .code(),
            "E_TRAINING_CONFIG_INVALID"
        );
        let r = store.put(big.as_bytes()).unwrap();
        assert_eq!(
            store.training_config(&r).unwrap_err().code(),
            "E_TRAINING_CONFIG_INVALID"
        );
        assert_eq!(
            store
                .training_config(&content_ref(b"{}"))
                .unwrap_err()
                .code(),
            "E_CONTENT_MISSING"
        );
        let r = store.put_training_config(b"{}").unwrap();
        std::fs::write(store.path(&r).unwrap(), b"{ }").unwrap();
        assert_eq!(
            store.training_config(&r).unwrap_err().code(),
            "E_CONTENT_CORRUPT"
        );
    }

    #[test]
    fn measure_reports_missing_and_corrupt_blobs() {
        let (_tmp, store) = store();
        let r = content_ref(b"gone");
        assert_eq!(store.measure(&r).unwrap_err().code(), "E_CONTENT_MISSING");
        let r = store.put(b"kept").unwrap();
        std::fs::write(store.path(&r).unwrap(), b"kepT").unwrap();
        assert_eq!(store.measure(&r).unwrap_err().code(), "E_CONTENT_CORRUPT");
        // Uploading the good bytes again repairs it.
        store.put(b"kept").unwrap();
        assert_eq!(store.measure(&r).unwrap().byte_size, 4);
    }
}
