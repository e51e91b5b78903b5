//! API keys for the gateway: an admin-issued table in `D/api-keys.json` mapping the SHA-256 of
//! each bearer token to the actor handle that pays for its calls.
//!
//! Only hashes are stored, so reading the file does not reveal usable tokens. A presented token
//! is hashed and compared with every entry in constant time (`subtle`), so response timing says
//! nothing about how much of a token matched. `shoulders apikey new --data-dir D --actor H`
//! appends an entry and prints the token once.

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// File name in the data directory.
pub const API_KEYS_FILE: &str = "api-keys.json";
/// Most keys in the table.
pub const MAX_API_KEYS: usize = 100_000;
/// Longest accepted bearer token, in bytes.
pub const MAX_TOKEN_BYTES: usize = 256;
/// Token prefix, so a leaked token is recognisable.
pub const TOKEN_PREFIX: &str = "sk-shoulders-";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeys {
    pub keys: Vec<ApiKeyEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyEntry {
    /// Hex SHA-256 of the token.
    pub token_sha256: String,
    /// The payer: an actor handle.
    pub actor: String,
    pub created_ms: u64,
}

/// Problems with the key file.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
}

impl ApiKeyError {
    pub fn code(&self) -> &'static str {
        "E_API_KEYS_FILE"
    }
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(API_KEYS_FILE)
}

fn file_err(path: &Path, message: impl std::fmt::Display) -> ApiKeyError {
    ApiKeyError::File {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

impl ApiKeys {
    /// Load the table; a missing file is an empty table.
    pub fn load(data_dir: &Path) -> Result<Self, ApiKeyError> {
        let p = path(data_dir);
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ApiKeys::default()),
            Err(e) => return Err(file_err(&p, e)),
        };
        let keys: ApiKeys = serde_json::from_slice(&bytes).map_err(|e| file_err(&p, e))?;
        if keys.keys.len() > MAX_API_KEYS {
            return Err(file_err(&p, format!("more than {MAX_API_KEYS} keys")));
        }
        Ok(keys)
    }

    /// The payer for `token`, comparing against every entry in constant time.
    pub fn lookup(&self, token: &str) -> Option<&str> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let digest = hex::encode(Sha256::digest(token.as_bytes()));
        let mut found = None;
        for entry in &self.keys {
            if bool::from(entry.token_sha256.as_bytes().ct_eq(digest.as_bytes())) {
                found = Some(entry.actor.as_str());
            }
        }
        found
    }

    /// Issue a new token for `actor`: append its hash to the file (written to a temporary file,
    /// fsynced and renamed) and return the token.
    pub fn issue<R: CryptoRngCore + ?Sized>(
        data_dir: &Path,
        actor: &str,
        now_ms: u64,
        rng: &mut R,
    ) -> Result<String, ApiKeyError> {
        let mut keys = Self::load(data_dir)?;
        if keys.keys.len() >= MAX_API_KEYS {
            return Err(file_err(
                &path(data_dir),
                format!("already {MAX_API_KEYS} keys"),
            ));
        }
        let mut secret = [0u8; 24];
        rng.fill_bytes(&mut secret);
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
        keys.keys.push(ApiKeyEntry {
            token_sha256: hex::encode(Sha256::digest(token.as_bytes())),
            actor: actor.to_string(),
            created_ms: now_ms,
        });
        let p = path(data_dir);
        let tmp = data_dir.join(format!(".{API_KEYS_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(&keys).map_err(|e| file_err(&p, e))?;
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| file_err(&tmp, e))?;
            f.write_all(&text).map_err(|e| file_err(&tmp, e))?;
            f.sync_all().map_err(|e| file_err(&tmp, e))?;
        }
        std::fs::rename(&tmp, &p).map_err(|e| file_err(&p, e))?;
        std::fs::File::open(data_dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| file_err(data_dir, e))?;
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_then_lookup() {
        let tmp = tempfile::tempdir().unwrap();
        let mut rng = rand_core::OsRng;
        let a = ApiKeys::issue(tmp.path(), "alice", 1, &mut rng).unwrap();
        let b = ApiKeys::issue(tmp.path(), "bob", 2, &mut rng).unwrap();
        let keys = ApiKeys::load(tmp.path()).unwrap();
        assert_eq!(keys.lookup(&a), Some("alice"));
        assert_eq!(keys.lookup(&b), Some("bob"));
        assert_eq!(keys.lookup("sk-shoulders-nope"), None);
        assert_eq!(keys.lookup(&a[..a.len() - 1]), None);
        // Only hashes are stored.
        let text = std::fs::read_to_string(path(tmp.path())).unwrap();
        assert!(!text.contains(&a) && text.contains("alice"));
    }
}
