//! API keys for the gateway, kept in the ledger's store ([`shoulders_store::KeyStore`]): each
//! key maps the SHA-256 of its bearer token to the actor handle that pays for its calls, and may
//! carry a spend budget per UTC day or month and per-minute request and token limits.
//!
//! This is the one use-case layer both front ends call: `shoulders apikey new|list|revoke|
//! admin-token` and the operator's `/api/admin/keys` routes. Only hashes are stored, so reading
//! the database does not reveal usable tokens. A presented token is hashed; the row is found by
//! the hash's first [`KEY_ID_LEN`] hex digits (its public id) and the whole hash compared in
//! constant time (`subtle`), so response timing says nothing about how much of a token matched.
//! The server reads the row on every request, so a key revoked by any process (the CLI while
//! the server runs, or the admin API) is refused on its very next request.
//!
//! Keys used to live in `D/api-keys.json`; [`import_legacy_file`] moves such a file into the
//! store once (renaming it to `api-keys.json.imported`), so upgraded data directories keep
//! their keys.

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shoulders_ledger::{DataDir, StoreLocation};
use shoulders_store::StoreError;
pub use shoulders_store::{KeyRow, KeyStore};
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// The old key file in the data directory, imported into the store once.
pub const LEGACY_API_KEYS_FILE: &str = "api-keys.json";
/// What the old file is renamed to once imported.
pub const IMPORTED_API_KEYS_FILE: &str = "api-keys.json.imported";
/// Most keys in the store (revoked ones included).
pub const MAX_API_KEYS: u64 = 100_000;
/// Longest accepted bearer token, in bytes.
pub const MAX_TOKEN_BYTES: usize = 256;
/// Token prefix, so a leaked token is recognisable.
pub const TOKEN_PREFIX: &str = "sk-shoulders-";
/// Admin token prefix (`shoulders apikey admin-token`).
pub const ADMIN_TOKEN_PREFIX: &str = "sk-shoulders-admin-";
/// Shortest key id prefix `apikey revoke` accepts (hex digits of the token's SHA-256).
pub const MIN_KEY_ID_PREFIX: usize = 8;
/// Hex digits of the SHA-256 shown as a key's id.
pub const KEY_ID_LEN: usize = 16;
/// Largest budget per period, in micro-units (10^12 whole units).
pub const MAX_BUDGET_MICROS: u128 = 1_000_000_000_000_000_000;
/// Largest per-minute request limit a key may carry.
pub const MAX_REQUESTS_PER_MINUTE: u64 = 1_000_000;
/// Largest per-minute token limit a key may carry.
pub const MAX_TOKENS_PER_MINUTE: u64 = 1_000_000_000;
/// Longest budget currency code, in bytes.
pub const MAX_CURRENCY_BYTES: usize = 16;
/// Keys one list page returns by default and at most.
pub const DEFAULT_LIST_LIMIT: usize = 100;
pub const MAX_LIST_LIMIT: usize = shoulders_store::MAX_KEY_PAGE_ROWS;

const DAY_MS: u64 = 86_400_000;

/// A UTC calendar period a budget covers; spend resets at its boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    Day,
    Month,
}

impl BudgetPeriod {
    pub fn parse(text: &str) -> Result<Self, ApiKeyError> {
        match text {
            "day" => Ok(BudgetPeriod::Day),
            "month" => Ok(BudgetPeriod::Month),
            other => Err(ApiKeyError::BadLimits(format!(
                "budget period {other:?} is not `day` or `month`"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Month => "month",
        }
    }

    /// Start and end (exclusive) of the period holding `now_ms`, in Unix milliseconds (UTC).
    pub fn bounds_ms(self, now_ms: u64) -> (u64, u64) {
        let day_start = now_ms - now_ms % DAY_MS;
        match self {
            BudgetPeriod::Day => (day_start, day_start + DAY_MS),
            BudgetPeriod::Month => {
                let date = time::OffsetDateTime::from_unix_timestamp((day_start / 1000) as i64)
                    .map(|t| t.date())
                    .unwrap_or(time::Date::MIN);
                let first = date.replace_day(1).unwrap_or(date);
                let next = match first.month() {
                    time::Month::December => {
                        time::Date::from_calendar_date(first.year() + 1, time::Month::January, 1)
                    }
                    m => time::Date::from_calendar_date(first.year(), m.next(), 1),
                }
                .unwrap_or(first);
                let ms = |d: time::Date| {
                    (d.midnight().assume_utc().unix_timestamp().max(0) as u64) * 1000
                };
                (ms(first), ms(next))
            }
        }
    }
}

/// A spend budget: at most `amount_micros` of `currency` per `period`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub amount_micros: u128,
    pub currency: String,
    pub period: BudgetPeriod,
}

/// What a key may do (every part optional: unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub budget: Option<Budget>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

impl KeyLimits {
    /// Check every limit is in range (`E_API_KEY_LIMITS` naming the one that is not).
    pub fn validate(&self) -> Result<(), ApiKeyError> {
        if let Some(b) = &self.budget {
            if b.amount_micros > MAX_BUDGET_MICROS {
                return Err(ApiKeyError::BadLimits(format!(
                    "budget {} micro-units is over the limit {MAX_BUDGET_MICROS}",
                    b.amount_micros
                )));
            }
            let ok = !b.currency.is_empty()
                && b.currency.len() <= MAX_CURRENCY_BYTES
                && b.currency
                    .bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
            if !ok {
                return Err(ApiKeyError::BadLimits(format!(
                    "budget currency {:?} must be 1-{MAX_CURRENCY_BYTES} characters of A-Z or 0-9 (e.g. USD)",
                    b.currency
                )));
            }
        }
        for (name, value, max) in [
            (
                "requests_per_minute",
                self.requests_per_minute,
                MAX_REQUESTS_PER_MINUTE,
            ),
            (
                "tokens_per_minute",
                self.tokens_per_minute,
                MAX_TOKENS_PER_MINUTE,
            ),
        ] {
            if let Some(v) = value.filter(|v| *v == 0 || *v > max) {
                return Err(ApiKeyError::BadLimits(format!(
                    "{name} {v} must be 1-{max}"
                )));
            }
        }
        Ok(())
    }
}

/// One key as the CLI and the admin API show it (never the token or its full hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKey {
    /// Public id: the first 16 hex digits of the token's SHA-256.
    pub key_id: String,
    /// The payer.
    pub actor: String,
    pub created_ms: u64,
    /// When it was revoked (`null`: active).
    pub revoked_ms: Option<u64>,
    /// Spend allowed per period, micro-units as a decimal string.
    pub budget_micros: Option<String>,
    pub budget_currency: Option<String>,
    pub budget_period: Option<BudgetPeriod>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

impl ApiKey {
    fn from_row(row: &KeyRow) -> Self {
        ApiKey {
            key_id: row.id.clone(),
            actor: row.actor.clone(),
            created_ms: row.created_ms,
            revoked_ms: row.revoked_ms,
            budget_micros: row.budget_micros.map(|b| b.to_string()),
            budget_currency: row.budget_currency.clone(),
            budget_period: row
                .budget_period
                .as_deref()
                .and_then(|p| BudgetPeriod::parse(p).ok()),
            requests_per_minute: row.requests_per_minute,
            tokens_per_minute: row.tokens_per_minute,
        }
    }
}

/// The limits a stored key carries (a budget only when all its three columns are set).
pub fn limits_of(row: &KeyRow) -> KeyLimits {
    let budget = match (&row.budget_micros, &row.budget_currency, &row.budget_period) {
        (Some(amount), Some(currency), Some(period)) => {
            BudgetPeriod::parse(period).ok().map(|period| Budget {
                amount_micros: *amount,
                currency: currency.clone(),
                period,
            })
        }
        _ => None,
    };
    KeyLimits {
        budget,
        requests_per_minute: row.requests_per_minute,
        tokens_per_minute: row.tokens_per_minute,
    }
}

/// Problems with keys.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("no API key matches {0:?}; `shoulders apikey list` shows the key ids")]
    Unknown(String),
    #[error("{0:?} matches more than one API key; give more of the key id")]
    Ambiguous(String),
    #[error("already {MAX_API_KEYS} API keys (revoked ones count); this is the limit")]
    TooMany,
    #[error("{0}")]
    BadLimits(String),
    #[error("{0}")]
    BadActor(String),
}

impl ApiKeyError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiKeyError::Store(e) => e.code(),
            ApiKeyError::File { .. } => "E_API_KEYS_FILE",
            ApiKeyError::Unknown(_) => "E_API_KEY_UNKNOWN",
            ApiKeyError::Ambiguous(_) => "E_API_KEY_AMBIGUOUS",
            ApiKeyError::TooMany => "E_API_KEY_LIMIT",
            ApiKeyError::BadLimits(_) | ApiKeyError::BadActor(_) => "E_API_KEY_LIMITS",
        }
    }
}

/// Which keys `apikey revoke` revokes.
#[derive(Debug, Clone)]
pub enum Revoke {
    /// The key whose token this is, or whose id (hex SHA-256) starts with this (at least
    /// [`MIN_KEY_ID_PREFIX`] digits, matching one key).
    Key(String),
    /// Every active key paying as this actor.
    Actor(String),
}

/// Open the key tables of the ledger in `data_dir` (or at `database`); with `import_legacy`
/// (the writer, the `apikey` commands), import an old `api-keys.json` if one is there.
pub fn open_store(
    data_dir: &Path,
    database: Option<&StoreLocation>,
    import_legacy: bool,
) -> Result<Box<dyn KeyStore>, ApiKeyError> {
    let mut dir = DataDir::new(data_dir);
    if let Some(db) = database {
        dir = dir.with_database(db.clone());
    }
    let location = dir.store_location().map_err(|e| ApiKeyError::File {
        path: data_dir.display().to_string(),
        message: e.to_string(),
    })?;
    let mut store = location.open_keys()?;
    if import_legacy {
        import_legacy_file(data_dir, &mut *store)?;
    }
    Ok(store)
}

fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The stored row of `token`'s key, revoked or not: found by its id, its whole hash compared
/// in constant time.
fn find_token(store: &dyn KeyStore, token: &str) -> Result<Option<KeyRow>, ApiKeyError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Ok(None);
    }
    let digest = sha256_hex(token);
    let row = store.key(&digest[..KEY_ID_LEN])?;
    Ok(row.filter(|r| bool::from(r.token_sha256.as_bytes().ct_eq(digest.as_bytes()))))
}

/// The active key `token` names (`None`: unknown or revoked).
pub fn lookup(store: &dyn KeyStore, token: &str) -> Result<Option<KeyRow>, ApiKeyError> {
    Ok(find_token(store, token)?.filter(|r| r.revoked_ms.is_none()))
}

/// Issue a new token for `actor` with `limits`; returns the token (shown once) and the key.
pub fn issue<R: CryptoRngCore + ?Sized>(
    store: &mut dyn KeyStore,
    actor: &str,
    limits: &KeyLimits,
    now_ms: u64,
    rng: &mut R,
) -> Result<(String, ApiKey), ApiKeyError> {
    shoulders_record::validate::handle("actor", actor)
        .map_err(|e| ApiKeyError::BadActor(e.to_string()))?;
    limits.validate()?;
    if store.count_keys()? >= MAX_API_KEYS {
        return Err(ApiKeyError::TooMany);
    }
    let mut secret = [0u8; 24];
    rng.fill_bytes(&mut secret);
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let digest = sha256_hex(&token);
    let row = KeyRow {
        id: digest[..KEY_ID_LEN].to_string(),
        token_sha256: digest,
        actor: actor.to_string(),
        created_ms: now_ms,
        revoked_ms: None,
        budget_micros: limits.budget.as_ref().map(|b| b.amount_micros),
        budget_currency: limits.budget.as_ref().map(|b| b.currency.clone()),
        budget_period: limits
            .budget
            .as_ref()
            .map(|b| b.period.as_str().to_string()),
        requests_per_minute: limits.requests_per_minute,
        tokens_per_minute: limits.tokens_per_minute,
    };
    store.insert_key(&row)?;
    Ok((token, ApiKey::from_row(&row)))
}

/// A page of keys in id order after `after_key_id`, optionally of one actor.
pub fn list(
    store: &dyn KeyStore,
    actor: Option<&str>,
    after_key_id: Option<&str>,
    limit: usize,
) -> Result<Vec<ApiKey>, ApiKeyError> {
    Ok(store
        .keys(actor, after_key_id, limit.clamp(1, MAX_LIST_LIMIT))?
        .iter()
        .map(ApiKey::from_row)
        .collect())
}

/// Revoke the keys `which` names; returns them as they are now (`E_API_KEY_UNKNOWN` when none
/// matches, `E_API_KEY_AMBIGUOUS` for an id prefix matching several). Revoking a revoked key
/// again changes nothing. A running server refuses them from its next request on.
pub fn revoke(
    store: &mut dyn KeyStore,
    which: &Revoke,
    now_ms: u64,
) -> Result<Vec<ApiKey>, ApiKeyError> {
    let rows = match which {
        Revoke::Actor(actor) => {
            let mut rows = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = store.keys(Some(actor), after.as_deref(), MAX_LIST_LIMIT)?;
                let Some(last) = page.last() else { break };
                after = Some(last.id.clone());
                rows.extend(page.into_iter().filter(|r| r.revoked_ms.is_none()));
            }
            rows
        }
        Revoke::Key(key) => match find_token(store, key)? {
            Some(row) => vec![row],
            None => find_by_id_prefix(store, key)?,
        },
    };
    if rows.is_empty() {
        return Err(ApiKeyError::Unknown(match which {
            Revoke::Key(k) if k.starts_with(TOKEN_PREFIX) => format!("{TOKEN_PREFIX}…"),
            Revoke::Key(k) => k.clone(),
            Revoke::Actor(a) => format!("actor {a}"),
        }));
    }
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    store.revoke(&ids, now_ms)?;
    ids.iter()
        .map(|id| {
            store
                .key(id)?
                .map(|r| ApiKey::from_row(&r))
                .ok_or_else(|| ApiKeyError::Unknown(id.clone()))
        })
        .collect()
}

/// The one key whose id starts with `prefix` (at least [`MIN_KEY_ID_PREFIX`] hex digits).
fn find_by_id_prefix(store: &dyn KeyStore, prefix: &str) -> Result<Vec<KeyRow>, ApiKeyError> {
    let id = prefix.to_ascii_lowercase();
    if id.len() < MIN_KEY_ID_PREFIX
        || id.len() > KEY_ID_LEN
        || !id.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Ok(Vec::new());
    }
    if let Some(row) = store.key(&id)? {
        return Ok(vec![row]);
    }
    // Ids starting with a shorter prefix sort right after it.
    let rows: Vec<KeyRow> = store
        .keys(None, Some(&id), 2)?
        .into_iter()
        .filter(|r| r.id.starts_with(&id))
        .collect();
    if rows.len() > 1 {
        return Err(ApiKeyError::Ambiguous(prefix.to_string()));
    }
    Ok(rows)
}

/// Make a new admin token for the `/api/admin/keys` routes (replacing any earlier one, which
/// stops working at once); returns it (shown once; only its hash is stored).
pub fn set_admin_token<R: CryptoRngCore + ?Sized>(
    store: &mut dyn KeyStore,
    now_ms: u64,
    rng: &mut R,
) -> Result<String, ApiKeyError> {
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let token = format!("{ADMIN_TOKEN_PREFIX}{}", hex::encode(secret));
    store.set_admin_token_sha256(&sha256_hex(&token), now_ms)?;
    Ok(token)
}

/// Whether `token` is the admin token (compared in constant time; `false` when none is set).
pub fn is_admin_token(store: &dyn KeyStore, token: &str) -> Result<bool, ApiKeyError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Ok(false);
    }
    let digest = sha256_hex(token);
    Ok(store
        .admin_token_sha256()?
        .is_some_and(|h| bool::from(h.as_bytes().ct_eq(digest.as_bytes()))))
}

/// The old file's format.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyKeys {
    keys: Vec<LegacyKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyKey {
    token_sha256: String,
    actor: String,
    created_ms: u64,
}

fn legacy_path(data_dir: &Path) -> PathBuf {
    data_dir.join(LEGACY_API_KEYS_FILE)
}

/// Import `D/api-keys.json` (the keys' old home) into the store, then rename it to
/// `api-keys.json.imported`; returns how many keys were added. Keys already in the store are
/// skipped, so an import interrupted before the rename is simply repeated. A file that cannot
/// be read or parsed is an error and imports nothing (`E_API_KEYS_FILE`).
pub fn import_legacy_file(data_dir: &Path, store: &mut dyn KeyStore) -> Result<usize, ApiKeyError> {
    let path = legacy_path(data_dir);
    let file_err = |m: String| ApiKeyError::File {
        path: path.display().to_string(),
        message: m,
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(file_err(e.to_string())),
    };
    let legacy: LegacyKeys = serde_json::from_slice(&bytes).map_err(|e| file_err(e.to_string()))?;
    if legacy.keys.len() as u64 > MAX_API_KEYS {
        return Err(file_err(format!("more than {MAX_API_KEYS} keys")));
    }
    for k in &legacy.keys {
        let ok = k.token_sha256.len() == 64
            && k.token_sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(file_err(format!(
                "{:?} is not a lower-case hex SHA-256",
                k.token_sha256
            )));
        }
    }
    let mut added = 0;
    for k in legacy.keys {
        let id = k.token_sha256[..KEY_ID_LEN].to_string();
        if store.key(&id)?.is_some() {
            continue;
        }
        if store.count_keys()? >= MAX_API_KEYS {
            return Err(ApiKeyError::TooMany);
        }
        store.insert_key(&KeyRow {
            id,
            token_sha256: k.token_sha256,
            actor: k.actor,
            created_ms: k.created_ms,
            revoked_ms: None,
            budget_micros: None,
            budget_currency: None,
            budget_period: None,
            requests_per_minute: None,
            tokens_per_minute: None,
        })?;
        added += 1;
    }
    std::fs::rename(&path, data_dir.join(IMPORTED_API_KEYS_FILE))
        .map_err(|e| file_err(e.to_string()))?;
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Box<dyn KeyStore>) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ledger.sqlite");
        drop(shoulders_store::SqliteStore::create(&path).unwrap());
        let s = StoreLocation::Sqlite(path).open_keys().unwrap();
        (tmp, s)
    }

    #[test]
    fn issue_then_lookup() {
        let (_tmp, mut s) = store();
        let mut rng = rand_core::OsRng;
        let none = KeyLimits::default();
        let (a, _) = issue(&mut *s, "alice", &none, 1, &mut rng).unwrap();
        let (b, key_b) = issue(&mut *s, "bob", &none, 2, &mut rng).unwrap();
        assert_eq!(lookup(&*s, &a).unwrap().unwrap().actor, "alice");
        assert_eq!(lookup(&*s, &b).unwrap().unwrap().id, key_b.key_id);
        assert!(lookup(&*s, "sk-shoulders-nope").unwrap().is_none());
        assert!(lookup(&*s, &a[..a.len() - 1]).unwrap().is_none());
        assert!(lookup(&*s, &"x".repeat(MAX_TOKEN_BYTES + 1))
            .unwrap()
            .is_none());
        // Bad input changes nothing.
        let err = issue(&mut *s, "Not A Handle", &none, 3, &mut rng).unwrap_err();
        assert_eq!(err.code(), "E_API_KEY_LIMITS");
        let zero = KeyLimits {
            requests_per_minute: Some(0),
            ..KeyLimits::default()
        };
        assert_eq!(
            issue(&mut *s, "bob", &zero, 3, &mut rng)
                .unwrap_err()
                .code(),
            "E_API_KEY_LIMITS"
        );
        let bad_currency = KeyLimits {
            budget: Some(Budget {
                amount_micros: 1,
                currency: "usd".into(),
                period: BudgetPeriod::Day,
            }),
            ..KeyLimits::default()
        };
        assert_eq!(
            issue(&mut *s, "bob", &bad_currency, 3, &mut rng)
                .unwrap_err()
                .code(),
            "E_API_KEY_LIMITS"
        );
        assert_eq!(s.count_keys().unwrap(), 2);
    }

    #[test]
    fn revoke_by_token_id_or_actor() {
        let (_tmp, mut s) = store();
        let mut rng = rand_core::OsRng;
        let none = KeyLimits::default();
        let (a, _) = issue(&mut *s, "alice", &none, 1, &mut rng).unwrap();
        let (a2, _) = issue(&mut *s, "alice", &none, 2, &mut rng).unwrap();
        let (_b, kb) = issue(&mut *s, "bob", &none, 3, &mut rng).unwrap();
        let (c, _) = issue(&mut *s, "carol", &none, 4, &mut rng).unwrap();
        let gone = revoke(&mut *s, &Revoke::Key(a.clone()), 10).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].revoked_ms, Some(10));
        assert!(lookup(&*s, &a).unwrap().is_none());
        assert!(lookup(&*s, &a2).unwrap().is_some());
        // By id prefix (upper case accepted); too short a prefix matches nothing.
        let err = revoke(
            &mut *s,
            &Revoke::Key(kb.key_id[..MIN_KEY_ID_PREFIX - 1].into()),
            11,
        )
        .unwrap_err();
        assert_eq!(err.code(), "E_API_KEY_UNKNOWN");
        let gone = revoke(
            &mut *s,
            &Revoke::Key(kb.key_id[..MIN_KEY_ID_PREFIX].to_ascii_uppercase()),
            11,
        )
        .unwrap();
        assert_eq!(gone[0].actor, "bob");
        // By actor: every active key of it.
        let gone = revoke(&mut *s, &Revoke::Actor("alice".into()), 12).unwrap();
        assert_eq!(gone.len(), 1, "the other alice key was revoked already");
        assert!(lookup(&*s, &a2).unwrap().is_none());
        assert_eq!(
            revoke(&mut *s, &Revoke::Actor("alice".into()), 13)
                .unwrap_err()
                .code(),
            "E_API_KEY_UNKNOWN"
        );
        assert!(lookup(&*s, &c).unwrap().is_some());
        // Revoked keys stay listed, with when.
        let all = list(&*s, None, None, 10).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all.iter().filter(|k| k.revoked_ms.is_some()).count(), 3);
    }

    #[test]
    fn admin_token_is_replaced_whole() {
        let (_tmp, mut s) = store();
        assert!(!is_admin_token(&*s, "anything").unwrap());
        let t1 = set_admin_token(&mut *s, 1, &mut rand_core::OsRng).unwrap();
        assert!(t1.starts_with(ADMIN_TOKEN_PREFIX));
        assert!(is_admin_token(&*s, &t1).unwrap());
        let t2 = set_admin_token(&mut *s, 2, &mut rand_core::OsRng).unwrap();
        assert!(!is_admin_token(&*s, &t1).unwrap());
        assert!(is_admin_token(&*s, &t2).unwrap());
        assert!(!is_admin_token(&*s, &t2[..t2.len() - 1]).unwrap());
    }

    #[test]
    fn periods_are_utc_calendar_days_and_months() {
        // 2026-02-28T23:59:59.999Z and the next millisecond.
        let last_feb = 1_772_323_199_999;
        assert_eq!(
            BudgetPeriod::Day.bounds_ms(last_feb),
            (1_772_236_800_000, 1_772_323_200_000)
        );
        assert_eq!(
            BudgetPeriod::Month.bounds_ms(last_feb),
            (1_769_904_000_000, 1_772_323_200_000)
        );
        assert_eq!(
            BudgetPeriod::Month.bounds_ms(last_feb + 1),
            (1_772_323_200_000, 1_775_001_600_000)
        );
        // December rolls into the next year.
        let dec = 1_798_675_200_000; // 2026-12-31T00:00:00Z
        assert_eq!(
            BudgetPeriod::Month.bounds_ms(dec),
            (1_796_083_200_000, 1_798_761_600_000)
        );
    }
}
