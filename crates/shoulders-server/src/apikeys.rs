//! API keys for the gateway: an admin-issued table in `D/api-keys.json` mapping the SHA-256 of
//! each bearer token to the actor handle that pays for its calls.
//!
//! Only hashes are stored, so reading the file does not reveal usable tokens. A presented token
//! is hashed and compared with every entry in constant time (`subtle`), so response timing says
//! nothing about how much of a token matched. `shoulders apikey new --data-dir D --actor H`
//! appends an entry and prints the token once; `shoulders apikey revoke` removes entries.
//!
//! A running server sees revocations without a restart: [`KeyTable`] looks at the file's
//! identity (inode, length, modification time) at most once per [`RELOAD_CHECK_INTERVAL_MS`]
//! and reloads it when it changed. Writers replace the file whole (temporary file, fsync,
//! rename) under a lock file, so a reader never sees it half-written and two admin commands
//! cannot lose each other's change.

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use subtle::ConstantTimeEq;

/// File name in the data directory.
pub const API_KEYS_FILE: &str = "api-keys.json";
/// Most keys in the table.
pub const MAX_API_KEYS: usize = 100_000;
/// Longest accepted bearer token, in bytes.
pub const MAX_TOKEN_BYTES: usize = 256;
/// Token prefix, so a leaked token is recognisable.
pub const TOKEN_PREFIX: &str = "sk-shoulders-";
/// Lock file serialising the commands that rewrite the table (`apikey new`, `apikey revoke`).
pub const API_KEYS_LOCK_FILE: &str = ".api-keys.lock";
/// How often, at most, a running server checks whether `api-keys.json` changed: a revoked
/// key stops working at most this long after the file is replaced.
pub const RELOAD_CHECK_INTERVAL_MS: u64 = 1000;
/// Shortest key id prefix `apikey revoke` accepts (hex digits of the token's SHA-256).
pub const MIN_KEY_ID_PREFIX: usize = 8;
/// Hex digits of the SHA-256 shown as a key's id.
pub const KEY_ID_LEN: usize = 16;

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

impl ApiKeyEntry {
    /// The key's public id: the first [`KEY_ID_LEN`] hex digits of its token's SHA-256.
    pub fn id(&self) -> &str {
        self.token_sha256
            .get(..KEY_ID_LEN)
            .unwrap_or(&self.token_sha256)
    }
}

/// Problems with the key file.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("no API key matches {0:?}; `shoulders apikey list` shows the key ids")]
    Unknown(String),
    #[error("{0:?} matches more than one API key; give more of the key id")]
    Ambiguous(String),
}

impl ApiKeyError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiKeyError::File { .. } => "E_API_KEYS_FILE",
            ApiKeyError::Unknown(_) => "E_API_KEY_UNKNOWN",
            ApiKeyError::Ambiguous(_) => "E_API_KEY_AMBIGUOUS",
        }
    }
}

/// Which keys `apikey revoke` removes.
#[derive(Debug, Clone)]
pub enum Revoke {
    /// The key whose token this is, or whose id (hex SHA-256) starts with this (at least
    /// [`MIN_KEY_ID_PREFIX`] digits, matching one key).
    Key(String),
    /// Every key paying as this actor.
    Actor(String),
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

    /// Issue a new token for `actor`: append its hash to the file (replaced whole, under the
    /// lock file: see [`ApiKeys::store`]) and return the token.
    pub fn issue<R: CryptoRngCore + ?Sized>(
        data_dir: &Path,
        actor: &str,
        now_ms: u64,
        rng: &mut R,
    ) -> Result<String, ApiKeyError> {
        let _lock = lock(data_dir)?;
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
        keys.store(data_dir)?;
        Ok(token)
    }

    /// Remove the keys `which` names; returns the removed entries (`E_API_KEY_UNKNOWN` when
    /// none matches, `E_API_KEY_AMBIGUOUS` for an id prefix matching several). A running
    /// server stops accepting them within [`RELOAD_CHECK_INTERVAL_MS`].
    pub fn revoke(data_dir: &Path, which: &Revoke) -> Result<Vec<ApiKeyEntry>, ApiKeyError> {
        let _lock = lock(data_dir)?;
        let mut keys = Self::load(data_dir)?;
        let matches: Vec<bool> = match which {
            Revoke::Actor(actor) => keys.keys.iter().map(|k| &k.actor == actor).collect(),
            Revoke::Key(key) => {
                let digest = hex::encode(Sha256::digest(key.as_bytes()));
                let id = key.to_ascii_lowercase();
                let by_id =
                    id.len() >= MIN_KEY_ID_PREFIX && id.bytes().all(|b| b.is_ascii_hexdigit());
                let m: Vec<bool> = keys
                    .keys
                    .iter()
                    .map(|k| k.token_sha256 == digest || (by_id && k.token_sha256.starts_with(&id)))
                    .collect();
                if m.iter().filter(|&&b| b).count() > 1 {
                    return Err(ApiKeyError::Ambiguous(key.clone()));
                }
                m
            }
        };
        if !matches.contains(&true) {
            return Err(ApiKeyError::Unknown(match which {
                Revoke::Key(k) if k.starts_with(TOKEN_PREFIX) => format!("{TOKEN_PREFIX}…"),
                Revoke::Key(k) => k.clone(),
                Revoke::Actor(a) => format!("actor {a}"),
            }));
        }
        let mut removed = Vec::new();
        let mut kept = Vec::new();
        for (entry, m) in keys.keys.into_iter().zip(matches) {
            if m {
                removed.push(entry);
            } else {
                kept.push(entry);
            }
        }
        keys.keys = kept;
        keys.store(data_dir)?;
        Ok(removed)
    }

    /// Replace the file whole: a temporary file (0600) written and fsynced, renamed over it,
    /// the directory fsynced. A reader sees the old table or the new one, never a mix.
    fn store(&self, data_dir: &Path) -> Result<(), ApiKeyError> {
        let p = path(data_dir);
        let tmp = data_dir.join(format!(".{API_KEYS_FILE}.tmp"));
        let text = serde_json::to_vec_pretty(self).map_err(|e| file_err(&p, e))?;
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
        Ok(())
    }
}

/// Take the table's lock file (blocking until another admin command has finished); released
/// when the returned file is dropped or the process dies.
fn lock(data_dir: &Path) -> Result<std::fs::File, ApiKeyError> {
    let p = data_dir.join(API_KEYS_LOCK_FILE);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| file_err(&p, e))?;
    f.lock().map_err(|e| file_err(&p, e))?;
    Ok(f)
}

/// What identifies one version of the file: a rename gives a new inode, a rewrite in place a
/// new length or modification time. `None`: no file.
type Stamp = Option<(u64, u64, Option<SystemTime>)>;

fn stamp(p: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(p) {
        Ok(m) => Ok(Some((m.ino(), m.len(), m.modified().ok()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The server's key table, reloaded when `api-keys.json` changes (checked at most once per
/// [`RELOAD_CHECK_INTERVAL_MS`], on lookup). A file that cannot be read or parsed any more
/// fails closed: no key is accepted until it is fixed (a revocation must never be undone by
/// a broken edit), and the problem is reported on stderr once.
pub struct KeyTable {
    data_dir: PathBuf,
    check_every: Duration,
    inner: Mutex<Loaded>,
}

struct Loaded {
    keys: ApiKeys,
    stamp: Stamp,
    checked: Instant,
    failing: bool,
}

impl KeyTable {
    /// Load the table now (a broken file is an error at start-up).
    pub fn open(data_dir: &Path) -> Result<Self, ApiKeyError> {
        let p = path(data_dir);
        let before = stamp(&p).map_err(|e| file_err(&p, e))?;
        let keys = ApiKeys::load(data_dir)?;
        Ok(KeyTable {
            data_dir: data_dir.to_path_buf(),
            check_every: Duration::from_millis(RELOAD_CHECK_INTERVAL_MS),
            inner: Mutex::new(Loaded {
                keys,
                stamp: before,
                checked: Instant::now(),
                failing: false,
            }),
        })
    }

    /// Check the file at most once per `every` instead (tests).
    pub fn with_check_interval(mut self, every: Duration) -> Self {
        self.check_every = every;
        self
    }

    /// The payer for `token` (see [`ApiKeys::lookup`]), after reloading the file if it
    /// changed. Blocking only for a `stat` once per interval, and a read when it changed.
    pub fn lookup(&self, token: &str) -> Option<String> {
        let mut loaded = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.checked.elapsed() >= self.check_every {
            self.refresh(&mut loaded);
        }
        loaded.keys.lookup(token).map(str::to_string)
    }

    fn refresh(&self, loaded: &mut Loaded) {
        loaded.checked = Instant::now();
        let p = path(&self.data_dir);
        let result = stamp(&p).map_err(|e| file_err(&p, e)).and_then(|now| {
            if now == loaded.stamp && !loaded.failing {
                return Ok(None);
            }
            ApiKeys::load(&self.data_dir).map(|keys| Some((now, keys)))
        });
        match result {
            Ok(None) => {}
            Ok(Some((now, keys))) => {
                if loaded.failing {
                    eprintln!("shoulders serve: {} readable again", p.display());
                }
                loaded.keys = keys;
                loaded.stamp = now;
                loaded.failing = false;
            }
            Err(e) => {
                if !loaded.failing {
                    eprintln!(
                        "shoulders serve: error[{}]: {e}; refusing every API key until it is fixed",
                        e.code()
                    );
                }
                loaded.keys = ApiKeys::default();
                loaded.failing = true;
            }
        }
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

    #[test]
    fn revoke_by_token_id_or_actor() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let mut rng = rand_core::OsRng;
        let a = ApiKeys::issue(d, "alice", 1, &mut rng).unwrap();
        let a2 = ApiKeys::issue(d, "alice", 2, &mut rng).unwrap();
        let b = ApiKeys::issue(d, "bob", 3, &mut rng).unwrap();
        let c = ApiKeys::issue(d, "carol", 4, &mut rng).unwrap();
        // By the token itself.
        let gone = ApiKeys::revoke(d, &Revoke::Key(a.clone())).unwrap();
        assert_eq!(gone.len(), 1);
        let keys = ApiKeys::load(d).unwrap();
        assert_eq!(keys.lookup(&a), None);
        assert_eq!(keys.lookup(&a2), Some("alice"));
        // By id (a prefix of the hash, upper case accepted); too short a prefix matches nothing.
        let id = keys
            .keys
            .iter()
            .find(|k| k.actor == "bob")
            .unwrap()
            .id()
            .to_string();
        assert_eq!(id.len(), KEY_ID_LEN);
        let err = ApiKeys::revoke(d, &Revoke::Key(id[..MIN_KEY_ID_PREFIX - 1].into())).unwrap_err();
        assert_eq!(err.code(), "E_API_KEY_UNKNOWN");
        ApiKeys::revoke(d, &Revoke::Key(id[..MIN_KEY_ID_PREFIX].to_uppercase())).unwrap();
        assert_eq!(ApiKeys::load(d).unwrap().lookup(&b), None);
        // By actor: every key of theirs, nobody else's.
        let gone = ApiKeys::revoke(d, &Revoke::Actor("alice".into())).unwrap();
        assert_eq!(gone.len(), 1);
        let keys = ApiKeys::load(d).unwrap();
        assert_eq!((keys.lookup(&a2), keys.lookup(&c)), (None, Some("carol")));
        // Nothing left to match.
        for which in [Revoke::Key(a), Revoke::Actor("alice".into())] {
            assert_eq!(
                ApiKeys::revoke(d, &which).unwrap_err().code(),
                "E_API_KEY_UNKNOWN"
            );
        }
        assert_eq!(ApiKeys::load(d).unwrap().keys.len(), 1);
    }

    #[test]
    fn an_id_prefix_matching_two_keys_is_ambiguous() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let entry = |h: &str, actor: &str| ApiKeyEntry {
            token_sha256: h.to_string(),
            actor: actor.into(),
            created_ms: 0,
        };
        ApiKeys {
            keys: vec![
                entry(&format!("abcdef01{}", "0".repeat(56)), "a"),
                entry(&format!("abcdef01{}", "1".repeat(56)), "b"),
            ],
        }
        .store(d)
        .unwrap();
        let err = ApiKeys::revoke(d, &Revoke::Key("abcdef01".into())).unwrap_err();
        assert_eq!(err.code(), "E_API_KEY_AMBIGUOUS");
        assert_eq!(ApiKeys::load(d).unwrap().keys.len(), 2);
        ApiKeys::revoke(d, &Revoke::Key("abcdef010".into())).unwrap();
        assert_eq!(ApiKeys::load(d).unwrap().keys[0].actor, "b");
    }

    #[test]
    fn the_table_reloads_a_changed_file_and_fails_closed_on_a_broken_one() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let mut rng = rand_core::OsRng;
        let a = ApiKeys::issue(d, "alice", 1, &mut rng).unwrap();
        // Checked on every lookup, for the test.
        let table = KeyTable::open(d)
            .unwrap()
            .with_check_interval(Duration::ZERO);
        assert_eq!(table.lookup(&a).as_deref(), Some("alice"));
        let b = ApiKeys::issue(d, "bob", 2, &mut rng).unwrap();
        assert_eq!(table.lookup(&b).as_deref(), Some("bob"));
        ApiKeys::revoke(d, &Revoke::Key(a.clone())).unwrap();
        assert_eq!(table.lookup(&a), None);
        assert_eq!(table.lookup(&b).as_deref(), Some("bob"));
        // A broken file: no key works (not the last good table) until it is fixed.
        std::fs::write(path(d), b"{\"keys\": [").unwrap();
        assert_eq!(table.lookup(&b), None);
        let c = ApiKeys::issue(d, "carol", 3, &mut rng);
        assert!(
            c.is_err(),
            "issuing onto a broken file must fail, not overwrite it"
        );
        std::fs::remove_file(path(d)).unwrap();
        let c = ApiKeys::issue(d, "carol", 3, &mut rng).unwrap();
        assert_eq!(table.lookup(&c).as_deref(), Some("carol"));
        assert_eq!(table.lookup(&b), None);
    }
}
