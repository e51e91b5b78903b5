//! The gateway's API keys next to the log: one row per key (only the SHA-256 of its token),
//! the spend of each key's budget per period, the calls whose spend is not settled yet, and the
//! hash of the operator's admin token.
//!
//! A [`KeyStore`] is its own connection to the ledger's database, separate from the log's
//! writer: the CLI changes keys while a server runs (SQLite serialises the two writers with its
//! lock and busy timeout, PostgreSQL with row locks), and the server reads a key's row on every
//! request, so a change made anywhere applies to the very next call. It knows nothing of
//! periods, currencies or limits beyond storing them: the server decides (see
//! `shoulders_server::apikeys`).

use crate::StoreError;

/// SQLite tables (created by every read-write open; `IF NOT EXISTS` upgrades older files).
pub(crate) const SQLITE_KEY_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE,
    actor TEXT NOT NULL, created_ms INTEGER NOT NULL, revoked_ms INTEGER,
    budget_micros TEXT, budget_currency TEXT, budget_period TEXT,
    requests_per_minute INTEGER, tokens_per_minute INTEGER) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS api_keys_by_actor ON api_keys (actor, id);
CREATE TABLE IF NOT EXISTS api_key_spend (key_id TEXT NOT NULL, period_start_ms INTEGER NOT NULL,
    spent_micros TEXT NOT NULL, PRIMARY KEY (key_id, period_start_ms)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_key_pending (usage_id TEXT PRIMARY KEY, key_id TEXT NOT NULL,
    period_start_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_admin (id INTEGER PRIMARY KEY CHECK (id = 1),
    token_sha256 TEXT NOT NULL, set_ms INTEGER NOT NULL);
";

/// PostgreSQL migration 3: the same tables.
pub(crate) const PG_KEY_SCHEMA: &str = "
CREATE TABLE api_keys (id TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE,
    actor TEXT NOT NULL, created_ms BIGINT NOT NULL, revoked_ms BIGINT,
    budget_micros TEXT, budget_currency TEXT, budget_period TEXT,
    requests_per_minute BIGINT, tokens_per_minute BIGINT);
CREATE INDEX api_keys_by_actor ON api_keys (actor, id);
CREATE TABLE api_key_spend (key_id TEXT NOT NULL, period_start_ms BIGINT NOT NULL,
    spent_micros NUMERIC(39, 0) NOT NULL, PRIMARY KEY (key_id, period_start_ms));
CREATE TABLE api_key_pending (usage_id TEXT PRIMARY KEY, key_id TEXT NOT NULL,
    period_start_ms BIGINT NOT NULL);
CREATE TABLE api_admin (id INTEGER PRIMARY KEY CHECK (id = 1), token_sha256 TEXT NOT NULL,
    set_ms BIGINT NOT NULL);
";

/// Most rows one key list page returns.
pub const MAX_KEY_PAGE_ROWS: usize = 1_000;

/// One API key as stored. `id` is the first hex digits of `token_sha256` (unique).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub id: String,
    /// Lower-case hex SHA-256 of the bearer token; the token itself is never stored.
    pub token_sha256: String,
    /// The payer: an actor handle.
    pub actor: String,
    pub created_ms: u64,
    /// When it was revoked; a revoked key is kept (listed) but never accepted.
    pub revoked_ms: Option<u64>,
    /// Spend allowed per period, in micro-units of `budget_currency` (all three set or none).
    pub budget_micros: Option<u128>,
    pub budget_currency: Option<String>,
    /// `day` or `month` (the server gives it meaning).
    pub budget_period: Option<String>,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

/// A call whose spend was reserved durably but not settled yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSpend {
    pub usage_id: String,
    pub key_id: String,
    pub period_start_ms: u64,
}

/// API keys, their spend and the admin token, in the ledger's database.
pub trait KeyStore: Send {
    /// Add a key; `Err` when its id or hash is already there (nothing written).
    fn insert_key(&mut self, row: &KeyRow) -> Result<(), StoreError>;
    /// The key with this id, revoked or not.
    fn key(&self, id: &str) -> Result<Option<KeyRow>, StoreError>;
    /// A page of keys in id order after `after_id`, at most `limit` (capped at
    /// [`MAX_KEY_PAGE_ROWS`]), optionally of one actor.
    fn keys(
        &self,
        actor: Option<&str>,
        after_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<KeyRow>, StoreError>;
    /// How many keys are stored (revoked ones included).
    fn count_keys(&self) -> Result<u64, StoreError>;
    /// Mark these keys revoked at `now_ms` (those not revoked already); returns how many were.
    fn revoke(&mut self, ids: &[String], now_ms: u64) -> Result<u64, StoreError>;
    /// The admin token's hash, if one was set.
    fn admin_token_sha256(&self) -> Result<Option<String>, StoreError>;
    /// Replace the admin token's hash.
    fn set_admin_token_sha256(&mut self, sha256_hex: &str, now_ms: u64) -> Result<(), StoreError>;
    /// Settled spend of `key_id` in the period starting at `period_start_ms`.
    fn spent(&self, key_id: &str, period_start_ms: u64) -> Result<u128, StoreError>;
    /// Record, durably and before the call runs, that call `usage_id` spends from `key_id`'s
    /// budget for that period (so a crash before settling is repaired from the receipt).
    fn begin_spend(&mut self, pending: &PendingSpend) -> Result<(), StoreError>;
    /// In one transaction: remove `usage_id`'s pending row and add `charge_micros` to its key's
    /// spend for its period. `Ok(false)` (nothing changed) when no such row is pending, so a
    /// charge is never counted twice.
    fn settle_spend(&mut self, usage_id: &str, charge_micros: u128) -> Result<bool, StoreError>;
    /// Remove `usage_id`'s pending row without spending (the call charged nothing).
    fn cancel_spend(&mut self, usage_id: &str) -> Result<(), StoreError>;
    /// Up to `limit` pending rows (oldest usage ids first is not promised).
    fn pending_spends(&self, limit: usize) -> Result<Vec<PendingSpend>, StoreError>;
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Database(format!("{v} is over 2^63")))
}

fn parse_micros(text: &str, what: &str) -> Result<u128, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} is {text:?}, not micro-units")))
}

pub(crate) mod sqlite {
    use super::*;
    use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
    use std::path::Path;

    /// Key tables in an SQLite ledger, through a connection of their own.
    pub struct SqliteKeys {
        conn: Connection,
    }

    const COLUMNS: &str = "id, token_sha256, actor, created_ms, revoked_ms, budget_micros, \
        budget_currency, budget_period, requests_per_minute, tokens_per_minute";

    fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(KeyRow, Option<String>)> {
        Ok((
            KeyRow {
                id: r.get(0)?,
                token_sha256: r.get(1)?,
                actor: r.get(2)?,
                created_ms: r.get::<_, i64>(3)? as u64,
                revoked_ms: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                budget_micros: None,
                budget_currency: r.get(6)?,
                budget_period: r.get(7)?,
                requests_per_minute: r.get::<_, Option<i64>>(8)?.map(|v| v as u64),
                tokens_per_minute: r.get::<_, Option<i64>>(9)?.map(|v| v as u64),
            },
            r.get(5)?,
        ))
    }

    fn finish(raw: (KeyRow, Option<String>)) -> Result<KeyRow, StoreError> {
        let (mut k, budget) = raw;
        k.budget_micros = budget
            .map(|b| parse_micros(&b, "a key's budget"))
            .transpose()?;
        Ok(k)
    }

    impl SqliteKeys {
        /// Open the key tables of an existing ledger database (creating them if it predates
        /// them). Works while the log's writer runs in another process.
        pub fn open(path: &Path) -> Result<Self, StoreError> {
            if !path.exists() {
                return Err(StoreError::Missing(path.display().to_string()));
            }
            let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            conn.execute_batch("PRAGMA synchronous=FULL;")?;
            conn.execute_batch(SQLITE_KEY_SCHEMA)?;
            Ok(SqliteKeys { conn })
        }
    }

    impl KeyStore for SqliteKeys {
        fn insert_key(&mut self, k: &KeyRow) -> Result<(), StoreError> {
            self.conn.execute(
                &format!("INSERT INTO api_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    k.id,
                    k.token_sha256,
                    k.actor,
                    to_i64(k.created_ms)?,
                    k.revoked_ms.map(to_i64).transpose()?,
                    k.budget_micros.map(|b| b.to_string()),
                    k.budget_currency,
                    k.budget_period,
                    k.requests_per_minute.map(to_i64).transpose()?,
                    k.tokens_per_minute.map(to_i64).transpose()?,
                ],
            )?;
            Ok(())
        }

        fn key(&self, id: &str) -> Result<Option<KeyRow>, StoreError> {
            self.conn
                .prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1"))?
                .query_row([id], row)
                .optional()?
                .map(finish)
                .transpose()
        }

        fn keys(
            &self,
            actor: Option<&str>,
            after_id: Option<&str>,
            limit: usize,
        ) -> Result<Vec<KeyRow>, StoreError> {
            let limit = limit.min(MAX_KEY_PAGE_ROWS) as i64;
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM api_keys WHERE (?1 IS NULL OR actor = ?1) \
                 AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT ?3"
            ))?;
            let rows = stmt
                .query_map(params![actor, after_id, limit], row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(finish).collect()
        }

        fn count_keys(&self) -> Result<u64, StoreError> {
            let n: i64 = self
                .conn
                .query_row("SELECT COUNT(*) FROM api_keys", [], |r| r.get(0))?;
            Ok(n as u64)
        }

        fn revoke(&mut self, ids: &[String], now_ms: u64) -> Result<u64, StoreError> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut n = 0;
            {
                let mut up = tx.prepare_cached(
                    "UPDATE api_keys SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
                )?;
                for id in ids {
                    n += up.execute(params![id, to_i64(now_ms)?])? as u64;
                }
            }
            tx.commit()?;
            Ok(n)
        }

        fn admin_token_sha256(&self) -> Result<Option<String>, StoreError> {
            Ok(self
                .conn
                .query_row("SELECT token_sha256 FROM api_admin WHERE id = 1", [], |r| {
                    r.get(0)
                })
                .optional()?)
        }

        fn set_admin_token_sha256(
            &mut self,
            sha256_hex: &str,
            now_ms: u64,
        ) -> Result<(), StoreError> {
            self.conn.execute(
                "INSERT INTO api_admin (id, token_sha256, set_ms) VALUES (1, ?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET token_sha256 = excluded.token_sha256, \
                 set_ms = excluded.set_ms",
                params![sha256_hex, to_i64(now_ms)?],
            )?;
            Ok(())
        }

        fn spent(&self, key_id: &str, period_start_ms: u64) -> Result<u128, StoreError> {
            let text: Option<String> = self
                .conn
                .prepare_cached(
                    "SELECT spent_micros FROM api_key_spend WHERE key_id = ?1 AND period_start_ms = ?2",
                )?
                .query_row(params![key_id, to_i64(period_start_ms)?], |r| r.get(0))
                .optional()?;
            text.map_or(Ok(0), |t| parse_micros(&t, "a key's spend"))
        }

        fn begin_spend(&mut self, p: &PendingSpend) -> Result<(), StoreError> {
            self.conn.execute(
                "INSERT INTO api_key_pending (usage_id, key_id, period_start_ms) VALUES (?1, ?2, ?3)",
                params![p.usage_id, p.key_id, to_i64(p.period_start_ms)?],
            )?;
            Ok(())
        }

        fn settle_spend(
            &mut self,
            usage_id: &str,
            charge_micros: u128,
        ) -> Result<bool, StoreError> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let pending: Option<(String, i64)> = tx
                .query_row(
                    "SELECT key_id, period_start_ms FROM api_key_pending WHERE usage_id = ?1",
                    [usage_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((key_id, start)) = pending else {
                return Ok(false);
            };
            let before: Option<String> = tx
                .query_row(
                    "SELECT spent_micros FROM api_key_spend WHERE key_id = ?1 AND period_start_ms = ?2",
                    params![key_id, start],
                    |r| r.get(0),
                )
                .optional()?;
            let before = before.map_or(Ok(0), |t| parse_micros(&t, "a key's spend"))?;
            let after = before.saturating_add(charge_micros);
            tx.execute(
                "INSERT INTO api_key_spend (key_id, period_start_ms, spent_micros) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key_id, period_start_ms) DO UPDATE SET spent_micros = excluded.spent_micros",
                params![key_id, start, after.to_string()],
            )?;
            tx.execute(
                "DELETE FROM api_key_pending WHERE usage_id = ?1",
                [usage_id],
            )?;
            tx.commit()?;
            Ok(true)
        }

        fn cancel_spend(&mut self, usage_id: &str) -> Result<(), StoreError> {
            self.conn.execute(
                "DELETE FROM api_key_pending WHERE usage_id = ?1",
                [usage_id],
            )?;
            Ok(())
        }

        fn pending_spends(&self, limit: usize) -> Result<Vec<PendingSpend>, StoreError> {
            let mut stmt = self.conn.prepare_cached(
                "SELECT usage_id, key_id, period_start_ms FROM api_key_pending LIMIT ?1",
            )?;
            let rows = stmt
                .query_map([limit.min(MAX_KEY_PAGE_ROWS) as i64], |r| {
                    Ok(PendingSpend {
                        usage_id: r.get(0)?,
                        key_id: r.get(1)?,
                        period_start_ms: r.get::<_, i64>(2)? as u64,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        }
    }
}

pub(crate) mod pg {
    use super::*;
    use crate::pg::pg_err;
    use crate::PostgresStore;
    use postgres::Client;
    use std::cell::RefCell;

    /// Key tables in a PostgreSQL ledger, through a session of their own (no writer lock).
    pub struct PostgresKeys {
        client: RefCell<Client>,
    }

    const COLUMNS: &str = "id, token_sha256, actor, created_ms, revoked_ms, budget_micros, \
        budget_currency, budget_period, requests_per_minute, tokens_per_minute";

    fn row(r: &postgres::Row) -> Result<KeyRow, StoreError> {
        Ok(KeyRow {
            id: r.get(0),
            token_sha256: r.get(1),
            actor: r.get(2),
            created_ms: r.get::<_, i64>(3) as u64,
            revoked_ms: r.get::<_, Option<i64>>(4).map(|v| v as u64),
            budget_micros: r
                .get::<_, Option<String>>(5)
                .map(|b| parse_micros(&b, "a key's budget"))
                .transpose()?,
            budget_currency: r.get(6),
            budget_period: r.get(7),
            requests_per_minute: r.get::<_, Option<i64>>(8).map(|v| v as u64),
            tokens_per_minute: r.get::<_, Option<i64>>(9).map(|v| v as u64),
        })
    }

    impl PostgresKeys {
        /// Connect to an initialised database and bring its schema up to date (the key
        /// tables are migration 3). Works while the log's writer runs elsewhere.
        pub fn open(url: &str) -> Result<Self, StoreError> {
            let mut client = PostgresStore::connect(url, "shoulders-keys")?;
            if PostgresStore::schema_version(&mut client)?.is_none() {
                return Err(StoreError::Missing(crate::redact_url(url)));
            }
            PostgresStore::migrate(&mut client)?;
            Ok(PostgresKeys {
                client: RefCell::new(client),
            })
        }

        fn client(&self) -> Result<std::cell::RefMut<'_, Client>, StoreError> {
            self.client.try_borrow_mut().map_err(|_| {
                StoreError::Database(
                    "the PostgreSQL connection is already in use (re-entrant call)".into(),
                )
            })
        }
    }

    impl KeyStore for PostgresKeys {
        fn insert_key(&mut self, k: &KeyRow) -> Result<(), StoreError> {
            self.client()?
                .execute(
                    &format!("INSERT INTO api_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
                    &[
                        &k.id,
                        &k.token_sha256,
                        &k.actor,
                        &to_i64(k.created_ms)?,
                        &k.revoked_ms.map(to_i64).transpose()?,
                        &k.budget_micros.map(|b| b.to_string()),
                        &k.budget_currency,
                        &k.budget_period,
                        &k.requests_per_minute.map(to_i64).transpose()?,
                        &k.tokens_per_minute.map(to_i64).transpose()?,
                    ],
                )
                .map_err(pg_err)?;
            Ok(())
        }

        fn key(&self, id: &str) -> Result<Option<KeyRow>, StoreError> {
            self.client()?
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1"),
                    &[&id],
                )
                .map_err(pg_err)?
                .map(|r| row(&r))
                .transpose()
        }

        fn keys(
            &self,
            actor: Option<&str>,
            after_id: Option<&str>,
            limit: usize,
        ) -> Result<Vec<KeyRow>, StoreError> {
            let limit = limit.min(MAX_KEY_PAGE_ROWS) as i64;
            self.client()?
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM api_keys WHERE ($1::text IS NULL OR actor = $1) \
                         AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3"
                    ),
                    &[&actor, &after_id, &limit],
                )
                .map_err(pg_err)?
                .iter()
                .map(row)
                .collect()
        }

        fn count_keys(&self) -> Result<u64, StoreError> {
            let n: i64 = self
                .client()?
                .query_one("SELECT COUNT(*) FROM api_keys", &[])
                .map_err(pg_err)?
                .get(0);
            Ok(n as u64)
        }

        fn revoke(&mut self, ids: &[String], now_ms: u64) -> Result<u64, StoreError> {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            self.client()?
                .execute(
                    "UPDATE api_keys SET revoked_ms = $2 WHERE id = ANY($1) AND revoked_ms IS NULL",
                    &[&ids, &to_i64(now_ms)?],
                )
                .map_err(pg_err)
        }

        fn admin_token_sha256(&self) -> Result<Option<String>, StoreError> {
            Ok(self
                .client()?
                .query_opt("SELECT token_sha256 FROM api_admin WHERE id = 1", &[])
                .map_err(pg_err)?
                .map(|r| r.get(0)))
        }

        fn set_admin_token_sha256(
            &mut self,
            sha256_hex: &str,
            now_ms: u64,
        ) -> Result<(), StoreError> {
            self.client()?
                .execute(
                    "INSERT INTO api_admin (id, token_sha256, set_ms) VALUES (1, $1, $2) \
                     ON CONFLICT (id) DO UPDATE SET token_sha256 = EXCLUDED.token_sha256, \
                     set_ms = EXCLUDED.set_ms",
                    &[&sha256_hex, &to_i64(now_ms)?],
                )
                .map_err(pg_err)?;
            Ok(())
        }

        fn spent(&self, key_id: &str, period_start_ms: u64) -> Result<u128, StoreError> {
            let text: Option<String> = self
                .client()?
                .query_opt(
                    "SELECT spent_micros::text FROM api_key_spend WHERE key_id = $1 AND period_start_ms = $2",
                    &[&key_id, &to_i64(period_start_ms)?],
                )
                .map_err(pg_err)?
                .map(|r| r.get(0));
            text.map_or(Ok(0), |t| parse_micros(&t, "a key's spend"))
        }

        fn begin_spend(&mut self, p: &PendingSpend) -> Result<(), StoreError> {
            self.client()?
                .execute(
                    "INSERT INTO api_key_pending (usage_id, key_id, period_start_ms) VALUES ($1, $2, $3)",
                    &[&p.usage_id, &p.key_id, &to_i64(p.period_start_ms)?],
                )
                .map_err(pg_err)?;
            Ok(())
        }

        fn settle_spend(
            &mut self,
            usage_id: &str,
            charge_micros: u128,
        ) -> Result<bool, StoreError> {
            let mut client = self.client()?;
            let mut tx = client.transaction().map_err(pg_err)?;
            let Some(pending) = tx
                .query_opt(
                    "DELETE FROM api_key_pending WHERE usage_id = $1 RETURNING key_id, period_start_ms",
                    &[&usage_id],
                )
                .map_err(pg_err)?
            else {
                return Ok(false);
            };
            let (key_id, start): (String, i64) = (pending.get(0), pending.get(1));
            tx.execute(
                "INSERT INTO api_key_spend (key_id, period_start_ms, spent_micros) \
                 VALUES ($1, $2, $3::text::numeric) ON CONFLICT (key_id, period_start_ms) \
                 DO UPDATE SET spent_micros = api_key_spend.spent_micros + EXCLUDED.spent_micros",
                &[&key_id, &start, &charge_micros.to_string()],
            )
            .map_err(pg_err)?;
            tx.commit().map_err(pg_err)?;
            Ok(true)
        }

        fn cancel_spend(&mut self, usage_id: &str) -> Result<(), StoreError> {
            self.client()?
                .execute(
                    "DELETE FROM api_key_pending WHERE usage_id = $1",
                    &[&usage_id],
                )
                .map_err(pg_err)?;
            Ok(())
        }

        fn pending_spends(&self, limit: usize) -> Result<Vec<PendingSpend>, StoreError> {
            Ok(self
                .client()?
                .query(
                    "SELECT usage_id, key_id, period_start_ms FROM api_key_pending LIMIT $1",
                    &[&(limit.min(MAX_KEY_PAGE_ROWS) as i64)],
                )
                .map_err(pg_err)?
                .iter()
                .map(|r| PendingSpend {
                    usage_id: r.get(0),
                    key_id: r.get(1),
                    period_start_ms: r.get::<_, i64>(2) as u64,
                })
                .collect())
        }
    }
}
