//! PostgreSQL store for operators who outgrow one machine's file: one writer process, any number
//! of read-only processes on other machines, and the database server's own replicas and backups.
//!
//! Durability: the session runs with `synchronous_commit = on`, so `COMMIT` returns only after
//! the server has flushed the WAL; `append` returns `Ok` only after that commit.
//!
//! Single writer: a writer holds a session-level advisory lock ([`WRITER_LOCK_KEY`]) for as long
//! as its connection lives; a second writer is refused with `E_WRITER_LOCKED`. As a second line
//! of defence every append re-reads the log size inside its transaction and inserts rows keyed
//! by their index, so an interleaving writer fails with `E_STORE_CONFLICT` instead of forking.

use crate::{AppendBatch, Hash, Store, StoreError, Visit, MAX_BATCH_RECORDS};
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use shoulders_log::{stored_hash_count, stored_hash_index};
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Advisory lock key held by the writer's session ("shoulder" in ASCII).
pub const WRITER_LOCK_KEY: i64 = 0x7368_6f75_6c64_6572;
/// Transaction-level advisory lock serialising schema migrations of concurrent openers.
const MIGRATION_LOCK_KEY: i64 = 0x7368_6f75_6c64_6d69;
/// Records fetched per round trip by `scan`, bounding its memory.
const SCAN_CHUNK_RECORDS: u64 = 1_000;

/// Versioned schema: each entry is applied once, in order, in one transaction with its
/// `schema_version` row. Never edit a released entry; add a new one.
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE records (idx BIGINT PRIMARY KEY CHECK (idx >= 0), bytes BYTEA NOT NULL);
     CREATE TABLE hashes (id BIGINT PRIMARY KEY CHECK (id >= 0),
                          hash BYTEA NOT NULL CHECK (octet_length(hash) = 32));",
)];

/// The schema version this code reads and writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// A store in a PostgreSQL database. Reads go through `&self`, so the connection sits in a
/// `RefCell`; a re-entrant use (from inside a `scan` callback) is an error, not a panic.
pub struct PostgresStore {
    client: RefCell<Client>,
    size: u64,
    url: String,
    /// Read-only handles only: the full URL to reconnect with after a lost connection.
    reconnect_url: Option<String>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).expect("log indexes stay below 2^63")
}

fn pg_err(e: postgres::Error) -> StoreError {
    StoreError::Database(match e.as_db_error() {
        Some(db) => format!("PostgreSQL {}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    })
}

/// `url` without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            ),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl PostgresStore {
    /// Connect, create or upgrade the schema, and take the writer lock. For `init` and
    /// migration targets: an empty database is fine.
    pub fn create(url: &str) -> Result<Self, StoreError> {
        let mut client = Self::connect(url, "shoulders-writer")?;
        Self::take_writer_lock(&mut client, url, Duration::ZERO)?;
        Self::migrate(&mut client)?;
        Self::finish_open(client, url)
    }

    /// Open an initialised database for writing: takes the writer lock (refusing with
    /// `E_WRITER_LOCKED` while another writer holds it) and applies pending migrations.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_waiting(url, Duration::ZERO)
    }

    /// Like [`PostgresStore::open`], but keeps trying for the lock for up to `lock_wait`: the
    /// session of a writer that just died holds it until its server backend notices the closed
    /// connection (usually milliseconds; the keepalive settings bound it when a machine
    /// vanishes).
    pub fn open_waiting(url: &str, lock_wait: Duration) -> Result<Self, StoreError> {
        let mut client = Self::connect(url, "shoulders-writer")?;
        if Self::schema_version(&mut client)?.is_none() {
            return Err(StoreError::Missing(redact_url(url)));
        }
        Self::take_writer_lock(&mut client, url, lock_wait)?;
        Self::migrate(&mut client)?;
        Self::finish_open(client, url)
    }

    /// Open for reading only; needs no lock and works while a writer runs elsewhere.
    pub fn open_read_only(url: &str) -> Result<Self, StoreError> {
        let mut client = Self::connect(url, "shoulders-reader")?;
        match Self::schema_version(&mut client)? {
            None => return Err(StoreError::Missing(redact_url(url))),
            Some(v) if v != SCHEMA_VERSION => {
                return Err(StoreError::Schema(format!(
                    "{} has schema version {v}, this shoulders reads version {SCHEMA_VERSION}; {}",
                    redact_url(url),
                    if v < SCHEMA_VERSION {
                        "start the writer (it migrates the schema) first"
                    } else {
                        "upgrade shoulders"
                    }
                )))
            }
            Some(_) => {}
        }
        client
            .batch_execute("SET default_transaction_read_only = on")
            .map_err(pg_err)?;
        let mut store = Self::finish_open(client, url)?;
        store.reconnect_url = Some(url.to_string());
        Ok(store)
    }

    fn connect_read_only(url: &str) -> Result<Client, StoreError> {
        let mut client = Self::connect(url, "shoulders-reader")?;
        client
            .batch_execute("SET default_transaction_read_only = on")
            .map_err(pg_err)?;
        Ok(client)
    }

    /// Run one read. A read-only handle whose connection was lost (server restart, failover to
    /// a replica, idle timeout) reconnects once and retries, so read nodes heal by themselves.
    /// A writer never reconnects: its writer lock lived in the lost session, so it fails (the
    /// ledger then stops with `E_WRITER_STOPPED`) and a restart takes the lock again.
    fn read<T>(
        &self,
        op: impl Fn(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let mut client = self.client()?;
        match op(&mut client) {
            Ok(v) => Ok(v),
            Err(e) => match &self.reconnect_url {
                Some(url) if client.is_closed() => {
                    *client = Self::connect_read_only(url)?;
                    op(&mut client).map_err(pg_err)
                }
                _ => Err(pg_err(e)),
            },
        }
    }

    fn connect(url: &str, application: &str) -> Result<Client, StoreError> {
        let mut client = Client::connect(url, NoTls).map_err(|e| {
            StoreError::Database(format!(
                "cannot connect to {}: {}",
                redact_url(url),
                pg_err(e)
            ))
        })?;
        // Acknowledge only what the server has flushed, whatever the server's default is.
        // Server-side keepalives: if this machine vanishes, the server drops the session (and
        // with it the writer lock) after about 10 + 3 * 5 seconds instead of hours.
        client
            .batch_execute(
                "SET synchronous_commit = on; SET tcp_keepalives_idle = 10;
                 SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3",
            )
            .map_err(pg_err)?;
        client
            .execute(
                "SELECT set_config('application_name', $1, false)",
                &[&application],
            )
            .map_err(pg_err)?;
        Ok(client)
    }

    fn take_writer_lock(
        client: &mut Client,
        url: &str,
        lock_wait: Duration,
    ) -> Result<(), StoreError> {
        let deadline = Instant::now() + lock_wait;
        loop {
            let got: bool = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&WRITER_LOCK_KEY])
                .map_err(pg_err)?
                .get(0);
            if got {
                return Ok(());
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Name the holder so an operator can find (or `pg_terminate_backend`) it. Advisory
        // locks are per database, and one server may hold many ledgers: match this database.
        let holder = client
            .query_opt(
                "SELECT l.pid, COALESCE(a.client_addr::text, 'local'), COALESCE(a.application_name, '')
                   FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
                  WHERE l.locktype = 'advisory' AND l.granted
                    AND l.classid::bigint = $1 AND l.objid::bigint = $2
                    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                  LIMIT 1",
                &[&(WRITER_LOCK_KEY >> 32), &(WRITER_LOCK_KEY & 0xffff_ffff)],
            )
            .ok()
            .flatten()
            .map(|row| {
                format!(
                    " (held by server backend pid {}, client {}, {})",
                    row.get::<_, i32>(0),
                    row.get::<_, String>(1),
                    row.get::<_, String>(2)
                )
            })
            .unwrap_or_default();
        Err(StoreError::WriterLocked(format!(
            "{}{holder}",
            redact_url(url)
        )))
    }

    /// The applied schema version, `None` for a database shoulders never initialised.
    fn schema_version(client: &mut Client) -> Result<Option<i32>, StoreError> {
        let exists: bool = client
            .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
            .map_err(pg_err)?
            .get(0);
        if !exists {
            return Ok(None);
        }
        Ok(client
            .query_one("SELECT MAX(version) FROM schema_version", &[])
            .map_err(pg_err)?
            .get(0))
    }

    fn migrate(client: &mut Client) -> Result<(), StoreError> {
        let mut tx = client.transaction().map_err(pg_err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
            .map_err(pg_err)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_version (
                 version INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .map_err(pg_err)?;
        let current: i32 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .map_err(pg_err)?
            .get(0);
        if current > SCHEMA_VERSION {
            return Err(StoreError::Schema(format!(
                "the database has schema version {current}, newer than this shoulders ({SCHEMA_VERSION}); upgrade shoulders"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(sql).map_err(pg_err)?;
            tx.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[version],
            )
            .map_err(pg_err)?;
        }
        tx.commit().map_err(pg_err)
    }

    fn finish_open(client: Client, url: &str) -> Result<Self, StoreError> {
        let mut store = PostgresStore {
            client: RefCell::new(client),
            size: 0,
            url: redact_url(url),
            reconnect_url: None,
        };
        let (count, max, hashes): (i64, Option<i64>, i64) = {
            let mut c = store.client()?;
            let row = c
                .query_one(
                    "SELECT (SELECT COUNT(*) FROM records), (SELECT MAX(idx) FROM records),
                            (SELECT COUNT(*) FROM hashes)",
                    &[],
                )
                .map_err(pg_err)?;
            (row.get(0), row.get(1), row.get(2))
        };
        if max.map(|m| m + 1).unwrap_or(0) != count {
            return Err(StoreError::Corrupt(format!(
                "record indexes have gaps ({count} records, max index {max:?})"
            )));
        }
        store.size = count as u64;
        if hashes as u64 != stored_hash_count(store.size) {
            return Err(StoreError::Corrupt(format!(
                "{count} records but {hashes} stored hashes (expected {})",
                stored_hash_count(store.size)
            )));
        }
        Ok(store)
    }

    fn client(&self) -> Result<std::cell::RefMut<'_, Client>, StoreError> {
        self.client.try_borrow_mut().map_err(|_| {
            StoreError::Database(
                "the PostgreSQL connection is already in use (re-entrant call)".into(),
            )
        })
    }

    fn read_size(client: &mut impl postgres::GenericClient) -> Result<u64, postgres::Error> {
        let max: Option<i64> = client
            .query_one("SELECT MAX(idx) FROM records", &[])?
            .get(0);
        Ok(max.map(|m| m as u64 + 1).unwrap_or(0))
    }

    /// The database this store is connected to, password removed.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Store for PostgresStore {
    fn size(&self) -> Result<u64, StoreError> {
        Ok(self.size)
    }

    fn refresh(&mut self) -> Result<u64, StoreError> {
        let size = self.read(Self::read_size)?;
        self.size = size;
        Ok(size)
    }

    fn append(&mut self, batch: &AppendBatch<'_>) -> Result<(), StoreError> {
        assert!(
            batch.records.len() <= MAX_BATCH_RECORDS,
            "batch over the limit"
        );
        if batch.first_index != self.size {
            return Err(StoreError::Conflict {
                expected: self.size,
                got: batch.first_index,
            });
        }
        let end = batch.first_index + batch.records.len() as u64;
        let first_hash = stored_hash_index(0, batch.first_index);
        assert_eq!(
            first_hash + batch.hashes.len() as u64,
            stored_hash_count(end),
            "hashes must cover exactly the new records"
        );
        let indexes: Vec<i64> = (batch.first_index..end).map(to_i64).collect();
        let hash_ids: Vec<i64> = (first_hash..first_hash + batch.hashes.len() as u64)
            .map(to_i64)
            .collect();
        let hashes: Vec<&[u8]> = batch.hashes.iter().map(|h| &h.0[..]).collect();
        let conflict = |e: postgres::Error, expected: u64| {
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                StoreError::Conflict {
                    expected,
                    got: batch.first_index,
                }
            } else {
                pg_err(e)
            }
        };
        let mut client = self.client()?;
        let mut tx = client.transaction().map_err(pg_err)?;
        // Re-check inside the transaction: another process may have appended.
        let on_disk = Self::read_size(&mut tx).map_err(pg_err)?;
        if on_disk != self.size {
            return Err(StoreError::Conflict {
                expected: on_disk,
                got: batch.first_index,
            });
        }
        // One statement per table: arrays travel as parameters, one round trip each.
        tx.execute(
            "INSERT INTO records (idx, bytes) SELECT * FROM unnest($1::BIGINT[], $2::BYTEA[])",
            &[&indexes, &batch.records],
        )
        .map_err(|e| conflict(e, on_disk))?;
        tx.execute(
            "INSERT INTO hashes (id, hash) SELECT * FROM unnest($1::BIGINT[], $2::BYTEA[])",
            &[&hash_ids, &hashes],
        )
        .map_err(|e| conflict(e, on_disk))?;
        // With synchronous_commit = on this returns after the WAL flush.
        tx.commit().map_err(pg_err)?;
        drop(client);
        self.size = end;
        Ok(())
    }

    fn record(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if index >= self.size {
            return Ok(None);
        }
        Ok(self
            .read(|c| {
                c.query_opt(
                    "SELECT bytes FROM records WHERE idx = $1",
                    &[&to_i64(index)],
                )
            })?
            .map(|row| row.get(0)))
    }

    fn scan(&self, from: u64, to: u64, visit: &mut Visit<'_>) -> Result<(), StoreError> {
        let mut expected = from;
        while expected < to {
            let chunk_end = to.min(expected.saturating_add(SCAN_CHUNK_RECORDS));
            // The borrow ends before `visit` runs, so a callback may read the store again.
            let rows = self.read(|c| {
                c.query(
                    "SELECT idx, bytes FROM records WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                    &[&to_i64(expected), &to_i64(chunk_end)],
                )
            })?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let idx: i64 = row.get(0);
                if idx != to_i64(expected) {
                    return Err(StoreError::Corrupt(format!("record {expected} is missing")));
                }
                visit(expected, row.get::<_, &[u8]>(1))?;
                expected += 1;
            }
            if expected < chunk_end {
                break;
            }
        }
        if expected < to.min(self.size) {
            return Err(StoreError::Corrupt(format!("record {expected} is missing")));
        }
        Ok(())
    }

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        // One round trip for a whole proof's worth of hashes.
        let ids: Vec<i64> = indexes.iter().copied().map(to_i64).collect();
        let rows =
            self.read(|c| c.query("SELECT id, hash FROM hashes WHERE id = ANY($1)", &[&ids]))?;
        let mut found: HashMap<i64, [u8; 32]> = HashMap::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.get(0);
            let bytes: &[u8] = row.get(1);
            let arr: [u8; 32] = bytes
                .try_into()
                .map_err(|_| StoreError::Corrupt(format!("stored hash {id} is not 32 bytes")))?;
            found.insert(id, arr);
        }
        ids.iter()
            .map(|id| {
                found
                    .get(id)
                    .map(|h| Hash(*h))
                    .ok_or_else(|| StoreError::Corrupt(format!("stored hash {id} is missing")))
            })
            .collect()
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .read(|c| c.query_opt("SELECT value FROM meta WHERE key = $1", &[&key]))?
            .map(|row| row.get(0)))
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.client()?
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .map_err(pg_err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5/db"),
            "postgres://u:***@h:5/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
    }
}
