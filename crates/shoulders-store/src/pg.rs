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

use crate::STATE_SIZE_KEY;
use crate::{
    AppendBatch, Hash, LegQuery, LegRow, ReceiptQuery, ReceiptRow, SeenAt, StateVisit, StateWrites,
    Store, StoreError, Visit, MAX_BATCH_RECORDS, MAX_PAGE_ROWS,
};
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use shoulders_log::{stored_hash_count, stored_hash_index};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Advisory lock key held by the writer's session ("shoulder" in ASCII).
pub const WRITER_LOCK_KEY: i64 = 0x7368_6f75_6c64_6572;
/// Transaction-level advisory lock serialising schema migrations of concurrent openers.
const MIGRATION_LOCK_KEY: i64 = 0x7368_6f75_6c64_6d69;
/// Records fetched per round trip by `scan`, bounding its memory.
const SCAN_CHUNK_RECORDS: u64 = 1_000;

/// Versioned schema: each entry is applied once, in order, in one transaction with its
/// `schema_version` row. Never edit a released entry; add a new one.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         CREATE TABLE records (idx BIGINT PRIMARY KEY CHECK (idx >= 0), bytes BYTEA NOT NULL);
         CREATE TABLE hashes (id BIGINT PRIMARY KEY CHECK (id >= 0),
                              hash BYTEA NOT NULL CHECK (octet_length(hash) = 32));",
    ),
    // The fold's results next to the log: the bounded state as rows, history in indexed
    // tables. Empty after the migration: the ledger rebuilds them once from the log.
    (
        2,
        "CREATE TABLE state_rows (kind TEXT NOT NULL, key TEXT NOT NULL, value BYTEA NOT NULL,
                                  PRIMARY KEY (kind, key));
         CREATE TABLE seen (signer BYTEA NOT NULL, client_id TEXT NOT NULL, idx BIGINT NOT NULL,
                            leaf BYTEA NOT NULL, PRIMARY KEY (signer, client_id));
         CREATE TABLE receipts (idx BIGINT PRIMARY KEY, ts_ms BIGINT NOT NULL,
                                usage_id TEXT NOT NULL UNIQUE, model_id TEXT NOT NULL,
                                payer TEXT NOT NULL, use_category TEXT NOT NULL,
                                currency TEXT NOT NULL, charge TEXT NOT NULL,
                                input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL,
                                unattributed BOOLEAN NOT NULL);
         CREATE INDEX receipts_by_model ON receipts (model_id, idx);
         CREATE INDEX receipts_by_payer ON receipts (payer, idx);
         CREATE TABLE legs (idx BIGINT NOT NULL, seq INTEGER NOT NULL, ts_ms BIGINT NOT NULL,
                            holder TEXT NOT NULL, account TEXT NOT NULL, currency TEXT NOT NULL,
                            amount TEXT NOT NULL, role TEXT NOT NULL, model_id TEXT,
                            dataset_id TEXT, contribution BIGINT, beneficiary TEXT,
                            PRIMARY KEY (idx, seq));
         CREATE INDEX legs_by_holder ON legs (holder, idx, seq);",
    ),
    // The gateway's API keys, their budgets' spend and the admin token (see `keys`).
    (3, crate::keys::PG_KEY_SCHEMA),
];

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

pub(crate) fn pg_err(e: postgres::Error) -> StoreError {
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

    pub(crate) fn connect(url: &str, application: &str) -> Result<Client, StoreError> {
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
    pub(crate) fn schema_version(client: &mut Client) -> Result<Option<i32>, StoreError> {
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

    pub(crate) fn migrate(client: &mut Client) -> Result<(), StoreError> {
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
        // O(log n) checks, not O(n) counts: the highest record index gives the size, and the
        // highest stored-hash id must match it.
        let (max, max_hash): (Option<i64>, Option<i64>) = {
            let mut c = store.client()?;
            let row = c
                .query_one(
                    "SELECT (SELECT MAX(idx) FROM records), (SELECT MAX(id) FROM hashes)",
                    &[],
                )
                .map_err(pg_err)?;
            (row.get(0), row.get(1))
        };
        store.size = max.map_or(0, |m| m as u64 + 1);
        let hashes = max_hash.map_or(0, |m| m as u64 + 1);
        if hashes != stored_hash_count(store.size) {
            return Err(StoreError::Corrupt(format!(
                "{} records but {hashes} stored hashes (expected {})",
                store.size,
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
        if let Some(state) = batch.state {
            assert_eq!(
                state.size, end,
                "state must reflect exactly the new log size"
            );
            write_state(&mut tx, state)?;
        }
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

    fn load_state(&self, visit: &mut StateVisit<'_>) -> Result<(), StoreError> {
        // In pages, so a large state never sits whole in the client's buffers.
        let mut after: Option<(String, String)> = None;
        loop {
            let rows = self.read(|c| match &after {
                None => c.query(
                    "SELECT kind, key, value FROM state_rows ORDER BY kind, key LIMIT 10000",
                    &[],
                ),
                Some((k, key)) => c.query(
                    "SELECT kind, key, value FROM state_rows WHERE (kind, key) > ($1, $2)
                     ORDER BY kind, key LIMIT 10000",
                    &[k, key],
                ),
            })?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in &rows {
                visit(row.get(0), row.get(1), row.get(2))?;
            }
            let last = rows.last().expect("not empty");
            after = Some((last.get(0), last.get(1)));
        }
    }

    fn replace_state(&mut self, writes: &StateWrites) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().map_err(pg_err)?;
        tx.batch_execute(
            "DELETE FROM state_rows; DELETE FROM seen; DELETE FROM receipts; DELETE FROM legs;",
        )
        .map_err(pg_err)?;
        write_state(&mut tx, writes)?;
        tx.commit().map_err(pg_err)
    }

    fn seen_many(&self, keys: &[([u8; 32], String)]) -> Result<Vec<Option<SeenAt>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // One round trip for the whole batch.
        let signers: Vec<&[u8]> = keys.iter().map(|(s, _)| &s[..]).collect();
        let ids: Vec<&str> = keys.iter().map(|(_, i)| i.as_str()).collect();
        let rows = self.read(|c| {
            c.query(
                "SELECT k.signer, k.client_id, s.idx, s.leaf
                   FROM unnest($1::BYTEA[], $2::TEXT[]) AS k(signer, client_id)
                   JOIN seen s ON s.signer = k.signer AND s.client_id = k.client_id",
                &[&signers, &ids],
            )
        })?;
        let mut found: HashMap<(Vec<u8>, String), (u64, [u8; 32])> = HashMap::new();
        for row in rows {
            let leaf: &[u8] = row.get(3);
            let leaf: [u8; 32] = leaf
                .try_into()
                .map_err(|_| StoreError::Corrupt("a stored leaf hash is not 32 bytes".into()))?;
            found.insert(
                (row.get::<_, Vec<u8>>(0), row.get(1)),
                (row.get::<_, i64>(2) as u64, leaf),
            );
        }
        Ok(keys
            .iter()
            .map(|(s, i)| found.get(&(s.to_vec(), i.clone())).copied())
            .collect())
    }

    fn usage_many(&self, usage_ids: &[String]) -> Result<Vec<Option<u64>>, StoreError> {
        if usage_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.read(|c| {
            c.query(
                "SELECT usage_id, idx FROM receipts WHERE usage_id = ANY($1)",
                &[&usage_ids],
            )
        })?;
        let found: HashMap<String, u64> = rows
            .into_iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect();
        Ok(usage_ids.iter().map(|u| found.get(u).copied()).collect())
    }

    fn legs_of_holder(&self, q: &LegQuery) -> Result<Vec<LegRow>, StoreError> {
        let (cmp, order, none) = if q.newest_first {
            ("<", "DESC", (i64::MAX, i32::MAX))
        } else {
            (">", "ASC", (-1i64, -1i32))
        };
        let (at_idx, at_seq) = q.after.map_or(none, |(i, s)| (to_i64(i), s as i32));
        let from = q.from_ms.map(to_i64);
        let to = q.to_ms.map(to_i64);
        let limit = q.limit.min(MAX_PAGE_ROWS) as i64;
        let rows = self.read(|c| {
            c.query(
                &format!(
                    "SELECT {LEG_COLUMNS} FROM legs
                      WHERE holder = $1 AND (idx, seq) {cmp} ($2, $3)
                        AND ($4::BIGINT IS NULL OR ts_ms >= $4)
                        AND ($5::BIGINT IS NULL OR ts_ms < $5)
                        AND ($6::TEXT IS NULL OR role = $6)
                      ORDER BY idx {order}, seq {order} LIMIT $7"
                ),
                &[&q.holder, &at_idx, &at_seq, &from, &to, &q.role, &limit],
            )
        })?;
        Ok(rows.iter().map(leg_row).collect())
    }

    fn legs_of_record(&self, index: u64) -> Result<Vec<LegRow>, StoreError> {
        let rows = self.read(|c| {
            c.query(
                &format!("SELECT {LEG_COLUMNS} FROM legs WHERE idx = $1 ORDER BY seq"),
                &[&to_i64(index)],
            )
        })?;
        Ok(rows.iter().map(leg_row).collect())
    }

    fn receipt(&self, index: u64) -> Result<Option<ReceiptRow>, StoreError> {
        Ok(self
            .read(|c| {
                c.query_opt(
                    &format!("SELECT {RECEIPT_COLUMNS} FROM receipts WHERE idx = $1"),
                    &[&to_i64(index)],
                )
            })?
            .as_ref()
            .map(receipt_row))
    }

    fn receipts_at(&self, indexes: &[u64]) -> Result<Vec<ReceiptRow>, StoreError> {
        let indexes: Vec<i64> = indexes
            .iter()
            .take(MAX_PAGE_ROWS)
            .map(|&i| to_i64(i))
            .collect();
        let rows = self.read(|c| {
            c.query(
                &format!("SELECT {RECEIPT_COLUMNS} FROM receipts WHERE idx = ANY($1) ORDER BY idx"),
                &[&indexes],
            )
        })?;
        Ok(rows.iter().map(receipt_row).collect())
    }

    fn receipts(&self, q: &ReceiptQuery) -> Result<Vec<ReceiptRow>, StoreError> {
        let before = q.before.map(to_i64);
        let limit = q.limit.min(MAX_PAGE_ROWS) as i64;
        let (filter, limit_param) = q.where_sql(|n| format!("${n}"));
        let sql = format!(
            "SELECT {RECEIPT_COLUMNS} FROM receipts {filter} ORDER BY idx DESC LIMIT ${limit_param}"
        );
        let mut args: Vec<&(dyn postgres::types::ToSql + Sync)> = Vec::new();
        if let Some(m) = &q.model_id {
            args.push(m);
        }
        if let Some(p) = &q.payer {
            args.push(p);
        }
        if let Some(b) = &before {
            args.push(b);
        }
        args.push(&limit);
        let rows = self.read(|c| c.query(&sql, &args))?;
        Ok(rows.iter().map(receipt_row).collect())
    }
}

const RECEIPT_COLUMNS: &str = "idx, ts_ms, usage_id, model_id, payer, use_category, currency, \
    charge, input_tokens, output_tokens, unattributed";
const LEG_COLUMNS: &str = "idx, seq, ts_ms, holder, account, currency, amount, role, model_id, \
    dataset_id, contribution, beneficiary";

fn receipt_row(r: &postgres::Row) -> ReceiptRow {
    ReceiptRow {
        index: r.get::<_, i64>(0) as u64,
        ts_ms: r.get::<_, i64>(1) as u64,
        usage_id: r.get(2),
        model_id: r.get(3),
        payer: r.get(4),
        use_category: r.get(5),
        currency: r.get(6),
        charge_micros: r.get(7),
        input_tokens: r.get::<_, i64>(8) as u64,
        output_tokens: r.get::<_, i64>(9) as u64,
        unattributed: r.get(10),
    }
}

fn leg_row(r: &postgres::Row) -> LegRow {
    LegRow {
        index: r.get::<_, i64>(0) as u64,
        seq: r.get::<_, i32>(1) as u32,
        ts_ms: r.get::<_, i64>(2) as u64,
        holder: r.get::<_, &str>(3).into(),
        account: r.get::<_, &str>(4).into(),
        currency: r.get::<_, &str>(5).into(),
        amount_micros: r.get(6),
        role: Cow::Owned(r.get(7)),
        model_id: r.get::<_, Option<&str>>(8).map(Arc::from),
        dataset_id: r.get::<_, Option<&str>>(9).map(Arc::from),
        contribution: r.get::<_, Option<i64>>(10).map(|c| c as u64),
        beneficiary: r.get::<_, Option<&str>>(11).map(Arc::from),
    }
}

/// Write one batch's state inside an open transaction: one statement per table, arrays as
/// parameters (one round trip each).
fn write_state(tx: &mut postgres::Transaction<'_>, w: &StateWrites) -> Result<(), StoreError> {
    if !w.rows.is_empty() {
        let kinds: Vec<&str> = w.rows.iter().map(|r| r.kind.as_str()).collect();
        let keys: Vec<&str> = w.rows.iter().map(|r| r.key.as_str()).collect();
        let values: Vec<&[u8]> = w.rows.iter().map(|r| &r.value[..]).collect();
        tx.execute(
            "INSERT INTO state_rows (kind, key, value)
             SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::BYTEA[])
             ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
            &[&kinds, &keys, &values],
        )
        .map_err(pg_err)?;
    }
    if !w.seen.is_empty() {
        let signers: Vec<&[u8]> = w.seen.iter().map(|s| &s.signer[..]).collect();
        let ids: Vec<&str> = w.seen.iter().map(|s| s.client_id.as_str()).collect();
        let idx: Vec<i64> = w.seen.iter().map(|s| to_i64(s.index)).collect();
        let leaves: Vec<&[u8]> = w.seen.iter().map(|s| &s.leaf_hash[..]).collect();
        tx.execute(
            "INSERT INTO seen (signer, client_id, idx, leaf)
             SELECT * FROM unnest($1::BYTEA[], $2::TEXT[], $3::BIGINT[], $4::BYTEA[])",
            &[&signers, &ids, &idx, &leaves],
        )
        .map_err(pg_err)?;
    }
    if !w.receipts.is_empty() {
        let r = &w.receipts;
        let idx: Vec<i64> = r.iter().map(|x| to_i64(x.index)).collect();
        let ts: Vec<i64> = r.iter().map(|x| to_i64(x.ts_ms)).collect();
        let usage: Vec<&str> = r.iter().map(|x| x.usage_id.as_str()).collect();
        let model: Vec<&str> = r.iter().map(|x| x.model_id.as_str()).collect();
        let payer: Vec<&str> = r.iter().map(|x| x.payer.as_str()).collect();
        let use_category: Vec<&str> = r.iter().map(|x| x.use_category.as_str()).collect();
        let currency: Vec<&str> = r.iter().map(|x| x.currency.as_str()).collect();
        let charge: Vec<&str> = r.iter().map(|x| x.charge_micros.as_str()).collect();
        let input: Vec<i64> = r.iter().map(|x| to_i64(x.input_tokens)).collect();
        let output: Vec<i64> = r.iter().map(|x| to_i64(x.output_tokens)).collect();
        let unattributed: Vec<bool> = r.iter().map(|x| x.unattributed).collect();
        tx.execute(
            &format!(
                "INSERT INTO receipts ({RECEIPT_COLUMNS})
                 SELECT * FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[],
                     $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::BIGINT[], $10::BIGINT[],
                     $11::BOOLEAN[])"
            ),
            &[
                &idx,
                &ts,
                &usage,
                &model,
                &payer,
                &use_category,
                &currency,
                &charge,
                &input,
                &output,
                &unattributed,
            ],
        )
        .map_err(pg_err)?;
    }
    if !w.legs.is_empty() {
        let l = &w.legs;
        let idx: Vec<i64> = l.iter().map(|x| to_i64(x.index)).collect();
        let seq: Vec<i32> = l.iter().map(|x| x.seq as i32).collect();
        let ts: Vec<i64> = l.iter().map(|x| to_i64(x.ts_ms)).collect();
        let holder: Vec<&str> = l.iter().map(|x| &*x.holder).collect();
        let account: Vec<&str> = l.iter().map(|x| &*x.account).collect();
        let currency: Vec<&str> = l.iter().map(|x| &*x.currency).collect();
        let amount: Vec<&str> = l.iter().map(|x| x.amount_micros.as_str()).collect();
        let role: Vec<&str> = l.iter().map(|x| &*x.role).collect();
        let model: Vec<Option<&str>> = l.iter().map(|x| x.model_id.as_deref()).collect();
        let dataset: Vec<Option<&str>> = l.iter().map(|x| x.dataset_id.as_deref()).collect();
        let contribution: Vec<Option<i64>> = l.iter().map(|x| x.contribution.map(to_i64)).collect();
        let beneficiary: Vec<Option<&str>> = l.iter().map(|x| x.beneficiary.as_deref()).collect();
        tx.execute(
            &format!(
                "INSERT INTO legs ({LEG_COLUMNS})
                 SELECT * FROM unnest($1::BIGINT[], $2::INTEGER[], $3::BIGINT[], $4::TEXT[],
                     $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], $10::TEXT[],
                     $11::BIGINT[], $12::TEXT[])"
            ),
            &[
                &idx,
                &seq,
                &ts,
                &holder,
                &account,
                &currency,
                &amount,
                &role,
                &model,
                &dataset,
                &contribution,
                &beneficiary,
            ],
        )
        .map_err(pg_err)?;
    }
    let size = w.size.to_string();
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&STATE_SIZE_KEY, &size],
    )
    .map_err(pg_err)?;
    Ok(())
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
