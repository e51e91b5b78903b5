//! SQLite store: one database file in WAL mode with `synchronous=FULL`, so a committed
//! transaction is on disk (WAL fsynced) before `append` returns.

use crate::leg_set::LegAt;
use crate::STATE_SIZE_KEY;
use crate::{
    AppendBatch, Hash, LegQuery, LegRow, ReceiptQuery, ReceiptRow, SeenAt, StateVisit, StateWrites,
    Store, StoreError, Visit, MAX_BATCH_RECORDS, MAX_PAGE_ROWS,
};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use shoulders_log::{stored_hash_count, stored_hash_index};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// The log (records, hashes, metadata) and, since schema 2, the fold's results: the bounded
/// state as rows and history in indexed tables. `CREATE ... IF NOT EXISTS` makes opening an
/// older database add the new tables (empty: the ledger then rebuilds the state once).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (idx INTEGER PRIMARY KEY, bytes BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS hashes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS state_rows (kind TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (kind, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen (signer BLOB NOT NULL, client_id TEXT NOT NULL,
    idx INTEGER NOT NULL, leaf BLOB NOT NULL, PRIMARY KEY (signer, client_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS receipts (idx INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL,
    usage_id TEXT NOT NULL UNIQUE, model_id TEXT NOT NULL, payer TEXT NOT NULL,
    use_category TEXT NOT NULL, currency TEXT NOT NULL, charge TEXT NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, unattributed INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS receipts_by_model ON receipts (model_id, idx);
CREATE INDEX IF NOT EXISTS receipts_by_payer ON receipts (payer, idx);
CREATE TABLE IF NOT EXISTS leg_sets (idx INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL,
    legs BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS leg_runs (holder TEXT NOT NULL, last_idx INTEGER NOT NULL,
    last_seq INTEGER NOT NULL, positions BLOB NOT NULL,
    PRIMARY KEY (holder, last_idx, last_seq)) WITHOUT ROWID;
";

/// Schema 2 kept one wide row per leg in `legs`, each with an entry in a holder index: a
/// receipt's ~8 legs were ~16 b-tree inserts, most at scattered places in the holder index,
/// and a third of the settlement writer's time. Schema 3 keeps a record's legs as one value in
/// `leg_sets` and each holder's positions of one batch as runs in `leg_runs`, keyed by the
/// holder and the run's last position (see [`crate::leg_set`]): one append per record plus
/// one index entry per holder and batch. A database written before keeps its `legs` rows and
/// is read across both layouts (every legacy leg precedes every new one in log order), so
/// upgrading copies nothing; rebuilding the state drops the old table.
const LEGACY_LEGS: &str = "legs";

/// The SQLite layout this version writes, kept in `meta.schema`. A database marked with a newer
/// one is refused (`E_STORE_SCHEMA`) rather than written in a layout it does not know; one
/// marked with an older one (or none: schema 2 had no mark) is upgraded in place by a writer.
pub const SQLITE_SCHEMA: u32 = 3;
const SCHEMA_KEY: &str = "schema";

/// Page cache of a read-write connection (see `configure`).
pub const WRITER_CACHE_BYTES: usize = 64 << 20;
/// WAL size at which a read-write connection checkpoints (see `configure`).
pub const WAL_CHECKPOINT_BYTES: usize = 64 << 20;

pub struct SqliteStore {
    conn: Connection,
    size: u64,
    legs: LegLayout,
    /// Read-write stores copy the WAL back into the database on this thread, so the writer's
    /// commits do not wait for checkpoints (see [`Checkpointer`]).
    _checkpointer: Option<Checkpointer>,
}

/// A thread with its own connection that runs a `PASSIVE` checkpoint every
/// [`CHECKPOINT_EVERY_MS`]: it copies committed WAL frames into the database file and syncs it
/// while the writer goes on appending (a passive checkpoint never blocks a writer or a
/// reader). Durability does not depend on it (a commit is durable once its WAL frames are
/// synced); the writer's own automatic checkpoint at [`WAL_CHECKPOINT_BYTES`] bounds the WAL if
/// this thread falls behind. Stopped and joined when the store is dropped.
struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A connection is used by one thread at a time (`rusqlite::Connection` is `Send`, not
/// `Sync`), so SQLite's per-call mutex (taken by `open_with_flags` without this flag; every
/// bind, step and reset locked and unlocked it) protects nothing.
const NO_MUTEX: OpenFlags = OpenFlags::SQLITE_OPEN_NO_MUTEX;

/// Prepared statements a connection keeps.
const STATEMENT_CACHE: usize = 64;

/// How often the background checkpointer runs.
pub const CHECKPOINT_EVERY_MS: u64 = 200;

impl Checkpointer {
    fn start(path: &Path) -> Option<Self> {
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | NO_MUTEX).ok()?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("shoulders-checkpoint".into())
            .spawn(move || {
                let every = std::time::Duration::from_millis(CHECKPOINT_EVERY_MS);
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    // Best effort: a busy or failed checkpoint is retried on the next tick.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .ok()?;
        Some(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).expect("log indexes stay below 2^63")
}

impl SqliteStore {
    /// Create the database (or open an existing one) for writing.
    pub fn create(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        Self::configure(&conn)?;
        Self::check_schema(&conn, false)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(crate::keys::SQLITE_KEY_SCHEMA)?;
        Self::check_schema(&conn, true)?;
        let mut store = Self::finish_open(conn)?;
        store._checkpointer = Checkpointer::start(path);
        Ok(store)
    }

    /// Open an existing database for writing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | NO_MUTEX)?;
        Self::configure(&conn)?;
        // Schema 2's tables, and the API keys', for a database made before them.
        Self::check_schema(&conn, false)?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(crate::keys::SQLITE_KEY_SCHEMA)?;
        Self::check_schema(&conn, true)?;
        let mut store = Self::finish_open(conn)?;
        store._checkpointer = Checkpointer::start(path);
        Ok(store)
    }

    /// Open an existing database for reading only (concurrent with a writer).
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | NO_MUTEX)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Self::set_mmap(&conn);
        Self::check_schema(&conn, false)?;
        Self::finish_open(conn)
    }

    /// Memory-map up to 1 GiB of the database so proof look-ups read pages without a `pread`
    /// each. Best effort: SQLite silently caps or ignores it where mmap is unavailable.
    fn set_mmap(conn: &Connection) {
        let _ = conn.query_row("PRAGMA mmap_size=1073741824", [], |r| r.get::<_, i64>(0));
    }

    fn configure(conn: &Connection) -> Result<(), StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Database(format!(
                "could not enable WAL mode (got {mode})"
            )));
        }
        // FULL: the WAL is fsynced at every commit, so a committed batch survives power loss.
        conn.execute_batch("PRAGMA synchronous=FULL;")?;
        // The writer's page cache: 64 MiB keeps the index pages its inserts touch (leg runs by
        // holder, receipts, seen ids) in memory as the history grows, instead of SQLite's
        // default 2 MiB. A stated cap: the cache never grows past it.
        conn.execute_batch(&format!(
            "PRAGMA cache_size=-{};",
            WRITER_CACHE_BYTES / 1024
        ))?;
        // Checkpoint (copy the WAL back into the database file, with its own fsync) every
        // 64 MiB of WAL rather than SQLite's default 4 MiB: at millions of receipts a batch
        // dirties thousands of index pages, so the default checkpointed after every commit
        // and paid a second fsync each time. The WAL file is cut back to the same size.
        conn.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint={}; PRAGMA journal_size_limit={};",
            WAL_CHECKPOINT_BYTES / 4096,
            WAL_CHECKPOINT_BYTES
        ))?;
        Self::set_mmap(conn);
        Ok(())
    }

    /// Refuse a database written in a newer layout; on a writable connection, mark it with
    /// this version's (after `SCHEMA` ran, so the mark never names tables that are missing).
    fn check_schema(conn: &Connection, writable: bool) -> Result<(), StoreError> {
        let has_meta = conn
            .query_row(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                [],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        let found: Option<String> = if has_meta {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [SCHEMA_KEY], |r| {
                r.get(0)
            })
            .optional()?
        } else {
            None
        };
        let found: u32 = match found {
            None => 2,
            Some(v) => v
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("meta.schema is {v:?}")))?,
        };
        if found > SQLITE_SCHEMA {
            return Err(StoreError::Schema(format!(
                "the database has SQLite schema {found}, newer than this shoulders knows \
                 ({SQLITE_SCHEMA}); run a newer shoulders"
            )));
        }
        if writable && found < SQLITE_SCHEMA {
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![SCHEMA_KEY, SQLITE_SCHEMA.to_string()],
            )?;
        }
        Ok(())
    }

    /// Open checks that cost `O(log n)`, not `O(n)`: the highest record index gives the size,
    /// and the highest stored-hash id must match it (a gap would show up as a missing record or
    /// hash on the first read that needs it, reported as `E_STORE_CORRUPT`).
    fn finish_open(conn: Connection) -> Result<Self, StoreError> {
        // Room for every statement the writer and the history queries prepare (rusqlite's
        // default is 16), so a batch never re-prepares one.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut store = SqliteStore {
            conn,
            size: 0,
            legs: LegLayout::default(),
            _checkpointer: None,
        };
        store.size = Self::read_size_fast(&store.conn)?;
        store.legs = LegLayout::read(&store.conn)?;
        let hashes: Option<i64> = store
            .conn
            .query_row("SELECT MAX(id) FROM hashes", [], |r| r.get(0))?;
        let hashes = hashes.map_or(0, |m| m as u64 + 1);
        if hashes != stored_hash_count(store.size) {
            return Err(StoreError::Corrupt(format!(
                "{} records but {hashes} stored hashes (expected {})",
                store.size,
                stored_hash_count(store.size)
            )));
        }
        Ok(store)
    }

    /// Size from the highest index: O(log n), unlike `COUNT(*)`. Gaps are ruled out at open.
    /// Cached: it runs at every append and every refresh, and parsing it each time cost the
    /// writer more than executing it.
    fn read_size_fast(conn: &Connection) -> Result<u64, StoreError> {
        let max: Option<i64> = conn
            .prepare_cached("SELECT MAX(idx) FROM records")?
            .query_row([], |r| r.get(0))?;
        Ok(max.map(|m| m as u64 + 1).unwrap_or(0))
    }
}

impl Store for SqliteStore {
    fn size(&self) -> Result<u64, StoreError> {
        Ok(self.size)
    }

    fn refresh(&mut self) -> Result<u64, StoreError> {
        self.size = Self::read_size_fast(&self.conn)?;
        if !self.legs.sets || self.legs.legacy {
            // A read-only store opened before a newer writer added the schema 3 tables, or
            // before a writer's state rebuild dropped the old one.
            self.legs = LegLayout::read(&self.conn)?;
        }
        Ok(self.size)
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
        let count = batch.records.len() as u64;
        let end = batch.first_index + count;
        let first_hash = stored_hash_index(0, batch.first_index);
        assert_eq!(
            first_hash + batch.hashes.len() as u64,
            stored_hash_count(end),
            "hashes must cover exactly the new records"
        );
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            // Re-check under the write lock: another process may have appended.
            let on_disk = Self::read_size_fast(&tx)?;
            if on_disk != self.size {
                return Err(StoreError::Conflict {
                    expected: on_disk,
                    got: batch.first_index,
                });
            }
            let records: Vec<(u64, &[u8])> = (batch.first_index..)
                .zip(batch.records.iter().copied())
                .collect();
            insert_rows(
                &tx,
                "records (idx, bytes)",
                2,
                &records,
                |st, o, (i, bytes)| {
                    st.raw_bind_parameter(o + 1, to_i64(*i))?;
                    st.raw_bind_parameter(o + 2, *bytes)
                },
            )?;
            let hashes: Vec<(u64, &Hash)> = (first_hash..).zip(&batch.hashes).collect();
            insert_rows(&tx, "hashes (id, hash)", 2, &hashes, |st, o, (i, h)| {
                st.raw_bind_parameter(o + 1, to_i64(*i))?;
                st.raw_bind_parameter(o + 2, &h.0[..])
            })?;
            if let Some(state) = batch.state {
                assert_eq!(
                    state.size, end,
                    "state must reflect exactly the new log size"
                );
                write_state(&tx, state)?;
            }
        }
        tx.commit()?;
        self.size = end;
        Ok(())
    }

    fn record(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if index >= self.size {
            return Ok(None);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT bytes FROM records WHERE idx = ?1")?;
        Ok(stmt.query_row([to_i64(index)], |r| r.get(0)).optional()?)
    }

    fn scan(&self, from: u64, to: u64, visit: &mut Visit<'_>) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT idx, bytes FROM records WHERE idx >= ?1 AND idx < ?2 ORDER BY idx",
        )?;
        let mut rows = stmt.query([to_i64(from), to_i64(to)])?;
        let mut expected = from;
        while let Some(row) = rows.next()? {
            let idx: i64 = row.get(0)?;
            if idx != to_i64(expected) {
                return Err(StoreError::Corrupt(format!("record {expected} is missing")));
            }
            let bytes = row
                .get_ref(1)?
                .as_blob()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            visit(expected, bytes)?;
            expected += 1;
        }
        if expected < to.min(self.size) {
            return Err(StoreError::Corrupt(format!("record {expected} is missing")));
        }
        Ok(())
    }

    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        // One read transaction for all look-ups: a proof reads ~2·log2(n) hashes, and taking
        // the WAL read lock once instead of once per statement halves the proof time.
        if !self.conn.is_autocommit() {
            return self.read_hashes_in_tx(indexes);
        }
        self.conn.execute_batch("BEGIN DEFERRED")?;
        let out = self.read_hashes_in_tx(indexes);
        self.conn.execute_batch("COMMIT")?;
        out
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?;
        Ok(stmt.query_row([key], |r| r.get(0)).optional()?)
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    fn load_state(&self, visit: &mut StateVisit<'_>) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind, key, value FROM state_rows ORDER BY kind, key")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            visit(row.get(0)?, row.get(1)?, row.get(2)?)?;
        }
        Ok(())
    }

    fn replace_state(&mut self, writes: &StateWrites) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(&format!(
            "DELETE FROM state_rows; DELETE FROM seen; DELETE FROM receipts;
             DELETE FROM leg_sets; DELETE FROM leg_runs; DROP TABLE IF EXISTS {LEGACY_LEGS};"
        ))?;
        write_state(&tx, writes)?;
        tx.commit()?;
        self.legs.legacy = false;
        Ok(())
    }

    fn seen_many(&self, keys: &[([u8; 32], String)]) -> Result<Vec<Option<SeenAt>>, StoreError> {
        // One statement per signer and chunk of ids instead of one per key: a batch's records
        // come from few signers, and a point SELECT costs more in statement overhead (reset,
        // bind, step, row copy) than in its b-tree seek.
        let mut out: Vec<Option<SeenAt>> = vec![None; keys.len()];
        let mut by_signer: HashMap<&[u8; 32], Vec<usize>> = HashMap::new();
        for (i, (signer, _)) in keys.iter().enumerate() {
            by_signer.entry(signer).or_default().push(i);
        }
        for (signer, positions) in by_signer {
            for chunk in positions.chunks(LOOKUP_CHUNK) {
                let mut wanted: HashMap<&str, Vec<usize>> = HashMap::with_capacity(chunk.len());
                for &i in chunk {
                    wanted.entry(keys[i].1.as_str()).or_default().push(i);
                }
                let width = lookup_width(chunk.len());
                let mut stmt = self.conn.prepare_cached(&format!(
                    "SELECT client_id, idx, leaf FROM seen WHERE signer = ?1 AND client_id IN ({})",
                    placeholders(2, width)
                ))?;
                stmt.raw_bind_parameter(1, &signer[..])?;
                // Unused places repeat the chunk's last id (an `IN` list ignores repeats).
                for n in 0..width {
                    let id = &keys[chunk[n.min(chunk.len() - 1)]].1;
                    stmt.raw_bind_parameter(n + 2, id.as_str())?;
                }
                let mut rows = stmt.raw_query();
                while let Some(row) = rows.next()? {
                    let id = row.get_ref(0)?.as_str().map_err(corrupt)?;
                    let idx: i64 = row.get(1)?;
                    let leaf: [u8; 32] = row
                        .get_ref(2)?
                        .as_blob()
                        .map_err(corrupt)?
                        .try_into()
                        .map_err(|_| {
                            StoreError::Corrupt("a stored leaf hash is not 32 bytes".into())
                        })?;
                    for &i in wanted.get(id).into_iter().flatten() {
                        out[i] = Some((idx as u64, leaf));
                    }
                }
            }
        }
        Ok(out)
    }

    fn usage_many(&self, usage_ids: &[String]) -> Result<Vec<Option<u64>>, StoreError> {
        let mut out: Vec<Option<u64>> = vec![None; usage_ids.len()];
        lookup_many(
            &self.conn,
            "SELECT usage_id, idx FROM receipts WHERE usage_id IN",
            usage_ids,
            |row| Ok(row.get(0)?),
            |row, at| {
                let idx: i64 = row.get(1)?;
                for &i in at {
                    out[i] = Some(idx as u64);
                }
                Ok(())
            },
        )?;
        Ok(out)
    }

    fn legs_of_holder(&self, q: &LegQuery) -> Result<Vec<LegRow>, StoreError> {
        let limit = q.limit.min(MAX_PAGE_ROWS);
        // Every legacy leg precedes every schema 3 leg in log order, so a page is the legacy
        // part and then the new part (oldest first), or the reverse (newest first).
        let mut legs = Vec::new();
        if self.legs.legacy && !q.newest_first {
            legs = self.legacy_legs_of_holder(q, limit)?;
        }
        if self.legs.sets && legs.len() < limit {
            let rest = self.set_legs_of_holder(q, limit - legs.len())?;
            legs.extend(rest);
        }
        if self.legs.legacy && q.newest_first && legs.len() < limit {
            let rest = self.legacy_legs_of_holder(q, limit - legs.len())?;
            legs.extend(rest);
        }
        Ok(legs)
    }

    fn legs_of_record(&self, index: u64) -> Result<Vec<LegRow>, StoreError> {
        if self.legs.sets {
            if let Some(legs) = self.leg_set(index)? {
                return Ok(legs);
            }
        }
        if !self.legs.legacy {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT idx, seq, ts_ms, holder, account, currency, amount, role, model_id, dataset_id,
                    contribution, beneficiary
             FROM {LEGACY_LEGS} WHERE idx = ?1 ORDER BY seq"
        ))?;
        let rows = stmt.query_map([to_i64(index)], leg_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn receipt(&self, index: u64) -> Result<Option<ReceiptRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {RECEIPT_COLUMNS} FROM receipts WHERE idx = ?1"
        ))?;
        Ok(stmt.query_row([to_i64(index)], receipt_row).optional()?)
    }

    fn receipts_at(&self, indexes: &[u64]) -> Result<Vec<ReceiptRow>, StoreError> {
        // In-process: point look-ups are as cheap as one query.
        let mut indexes: Vec<u64> = indexes.iter().copied().take(MAX_PAGE_ROWS).collect();
        indexes.sort_unstable();
        indexes.dedup();
        let mut out = Vec::with_capacity(indexes.len());
        for i in indexes {
            out.extend(self.receipt(i)?);
        }
        Ok(out)
    }

    fn receipts(&self, q: &ReceiptQuery) -> Result<Vec<ReceiptRow>, StoreError> {
        let (filter, limit_param) = q.where_sql(|n| format!("?{n}"));
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {RECEIPT_COLUMNS} FROM receipts {filter} ORDER BY idx DESC LIMIT ?{limit_param}"
        ))?;
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        args.extend(q.model_id.clone().map(Into::into));
        args.extend(q.payer.clone().map(Into::into));
        args.extend(q.before.map(|b| to_i64(b).into()));
        args.push((q.limit.min(MAX_PAGE_ROWS) as i64).into());
        let rows = stmt.query_map(rusqlite::params_from_iter(args), receipt_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Keys per batched look-up statement (`seen_many`, `usage_many`): far below SQLite's limit
/// on bound parameters (32,766), large enough that statement overhead is spread thin.
const LOOKUP_CHUNK: usize = 128;

/// The `IN` list length for `n` keys: one of a few widths (so a handful of cached statements
/// serve every batch), the smallest that holds them, so that a signer with one record in the
/// batch binds one id, not 128.
fn lookup_width(n: usize) -> usize {
    [1, 8, 32, LOOKUP_CHUNK]
        .into_iter()
        .find(|&w| w >= n)
        .unwrap_or(LOOKUP_CHUNK)
}

/// `?first, ?first+1, …` (`count` of them).
/// Look `keys` up [`LOOKUP_CHUNK`] to a statement: `select_in` is a query ending in `IN`, whose
/// list of [`lookup_width`] places this fills (unused places repeat a key, so a few cached
/// statements serve every size). `key_of` reads a returned row's key; `each` gets the row and
/// the positions in `keys` it answers (a key may repeat).
fn lookup_many<K: std::hash::Hash + Eq + rusqlite::ToSql>(
    conn: &Connection,
    select_in: &str,
    keys: &[K],
    key_of: impl Fn(&rusqlite::Row<'_>) -> Result<K, StoreError>,
    mut each: impl FnMut(&rusqlite::Row<'_>, &[usize]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let positions: Vec<usize> = (0..keys.len()).collect();
    for chunk in positions.chunks(LOOKUP_CHUNK) {
        let mut wanted: HashMap<&K, Vec<usize>> = HashMap::with_capacity(chunk.len());
        for &i in chunk {
            wanted.entry(&keys[i]).or_default().push(i);
        }
        let width = lookup_width(chunk.len());
        let mut stmt = conn.prepare_cached(&format!("{select_in} ({})", placeholders(1, width)))?;
        for n in 0..width {
            stmt.raw_bind_parameter(n + 1, &keys[chunk[n.min(chunk.len() - 1)]])?;
        }
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next()? {
            if let Some(at) = wanted.get(&key_of(row)?) {
                each(row, at)?;
            }
        }
    }
    Ok(())
}

fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("?{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn corrupt(e: rusqlite::types::FromSqlError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

const RECEIPT_COLUMNS: &str = "idx, ts_ms, usage_id, model_id, payer, use_category, currency, \
    charge, input_tokens, output_tokens, unattributed";

fn receipt_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReceiptRow> {
    Ok(ReceiptRow {
        index: r.get::<_, i64>(0)? as u64,
        ts_ms: r.get::<_, i64>(1)? as u64,
        usage_id: r.get(2)?,
        model_id: r.get(3)?,
        payer: r.get(4)?,
        use_category: r.get(5)?,
        currency: r.get(6)?,
        charge_micros: r.get(7)?,
        input_tokens: r.get::<_, i64>(8)? as u64,
        output_tokens: r.get::<_, i64>(9)? as u64,
        unattributed: r.get::<_, i64>(10)? != 0,
    })
}

/// The comparison, sort order and open cursor of a leg page.
fn leg_page_order(q: &LegQuery) -> (&'static str, &'static str, (i64, i64)) {
    if q.newest_first {
        ("<", "DESC", (i64::MAX, i64::MAX))
    } else {
        (">", "ASC", (-1, -1))
    }
}

fn leg_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LegRow> {
    Ok(LegRow {
        index: r.get::<_, i64>(0)? as u64,
        seq: r.get::<_, i64>(1)? as u32,
        ts_ms: r.get::<_, i64>(2)? as u64,
        holder: r.get(3)?,
        account: r.get(4)?,
        currency: r.get(5)?,
        amount_micros: r.get(6)?,
        role: Cow::Owned(r.get(7)?),
        model_id: r.get(8)?,
        dataset_id: r.get(9)?,
        contribution: r.get::<_, Option<i64>>(10)?.map(|c| c as u64),
        beneficiary: r.get(11)?,
    })
}

/// Rows per multi-row `INSERT` of the append path (at most 12 parameters a row here, far
/// below SQLite's limit of 32,766 per statement).
const ROWS_PER_INSERT: usize = 32;

/// Insert `rows` into `into` (`"table (col, …)"`, `columns` of them), [`ROWS_PER_INSERT`] to
/// a statement: a receipt adds about 11 rows, and one statement per row paid its fixed cost
/// (reset, program start, cursor opens) each time. `bind` binds one row's columns at parameters
/// `offset + 1 ..= offset + columns`.
///
/// `OR ROLLBACK`: a constraint failure ends the whole transaction (as the caller would anyway:
/// nothing of a failed batch is kept). A plain multi-row `INSERT` must be able to undo just
/// itself, so SQLite wrote a statement journal of every page it touched, which cost more than
/// the statements it saved.
fn insert_rows<T>(
    tx: &rusqlite::Transaction<'_>,
    into: &str,
    columns: usize,
    rows: &[T],
    bind: impl Fn(&mut rusqlite::CachedStatement<'_>, usize, &T) -> rusqlite::Result<()>,
) -> Result<(), StoreError> {
    let sql = |n: usize| {
        let values: Vec<String> = (0..n)
            .map(|r| format!("({})", placeholders(r * columns + 1, columns)))
            .collect();
        format!(
            "INSERT OR ROLLBACK INTO {into} VALUES {}",
            values.join(", ")
        )
    };
    let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
    if rows.len() >= ROWS_PER_INSERT {
        let mut many = tx.prepare_cached(&sql(ROWS_PER_INSERT))?;
        for chunk in chunks.by_ref() {
            for (i, row) in chunk.iter().enumerate() {
                bind(&mut many, i * columns, row)?;
            }
            many.raw_execute()?;
        }
    }
    if !chunks.remainder().is_empty() {
        let mut one = tx.prepare_cached(&sql(1))?;
        for row in chunks.remainder() {
            bind(&mut one, 0, row)?;
            one.raw_execute()?;
        }
    }
    Ok(())
}

/// Write one batch's state inside an open transaction.
fn write_state(tx: &rusqlite::Transaction<'_>, w: &StateWrites) -> Result<(), StoreError> {
    let mut rows = tx.prepare_cached(
        "INSERT INTO state_rows (kind, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT(kind, key) DO UPDATE SET value = excluded.value",
    )?;
    for r in &w.rows {
        rows.execute(params![r.kind, r.key, r.value])?;
    }
    insert_rows(
        tx,
        "seen (signer, client_id, idx, leaf)",
        4,
        &w.seen,
        |st, o, s| {
            st.raw_bind_parameter(o + 1, &s.signer[..])?;
            st.raw_bind_parameter(o + 2, s.client_id.as_str())?;
            st.raw_bind_parameter(o + 3, to_i64(s.index))?;
            st.raw_bind_parameter(o + 4, &s.leaf_hash[..])
        },
    )?;
    insert_rows(
        tx,
        &format!("receipts ({RECEIPT_COLUMNS})"),
        11,
        &w.receipts,
        |st, o, r| {
            st.raw_bind_parameter(o + 1, to_i64(r.index))?;
            st.raw_bind_parameter(o + 2, to_i64(r.ts_ms))?;
            st.raw_bind_parameter(o + 3, r.usage_id.as_str())?;
            st.raw_bind_parameter(o + 4, r.model_id.as_str())?;
            st.raw_bind_parameter(o + 5, r.payer.as_str())?;
            st.raw_bind_parameter(o + 6, r.use_category.as_str())?;
            st.raw_bind_parameter(o + 7, r.currency.as_str())?;
            st.raw_bind_parameter(o + 8, r.charge_micros.as_str())?;
            st.raw_bind_parameter(o + 9, to_i64(r.input_tokens))?;
            st.raw_bind_parameter(o + 10, to_i64(r.output_tokens))?;
            st.raw_bind_parameter(o + 11, i64::from(r.unattributed))
        },
    )?;
    // One leg-set row per record (legs arrive grouped by record, in log order).
    let mut sets: Vec<(u64, u64, Vec<u8>)> = Vec::new();
    for group in w.legs.chunk_by(|a, b| a.index == b.index) {
        assert!(
            sets.last().is_none_or(|(i, _, _)| *i < group[0].index),
            "legs must come grouped by record, in log order"
        );
        let mut bytes = Vec::with_capacity(64 * group.len());
        crate::leg_set::encode(group, &mut bytes);
        sets.push((group[0].index, group[0].ts_ms, bytes));
    }
    insert_rows(
        tx,
        "leg_sets (idx, ts_ms, legs)",
        3,
        &sets,
        |st, o, (index, ts_ms, bytes)| {
            st.raw_bind_parameter(o + 1, to_i64(*index))?;
            st.raw_bind_parameter(o + 2, to_i64(*ts_ms))?;
            st.raw_bind_parameter(o + 3, &bytes[..])
        },
    )?;
    // Each holder's legs of the batch, in log order, as runs.
    let mut by_holder: HashMap<&str, Vec<&LegRow>> = HashMap::new();
    let mut holders: Vec<&str> = Vec::new();
    for leg in &w.legs {
        by_holder
            .entry(&leg.holder)
            .or_insert_with(|| {
                holders.push(&leg.holder);
                Vec::new()
            })
            .push(leg);
    }
    let mut runs: Vec<(&str, &LegRow, Vec<u8>)> = Vec::new();
    for holder in holders {
        for run in by_holder[holder].chunks(crate::leg_set::MAX_RUN_LEGS) {
            let mut bytes = Vec::with_capacity(8 * run.len());
            crate::leg_set::encode_run(run, &mut bytes);
            runs.push((holder, run[run.len() - 1], bytes));
        }
    }
    insert_rows(
        tx,
        "leg_runs (holder, last_idx, last_seq, positions)",
        4,
        &runs,
        |st, o, (holder, last, bytes)| {
            st.raw_bind_parameter(o + 1, *holder)?;
            st.raw_bind_parameter(o + 2, to_i64(last.index))?;
            st.raw_bind_parameter(o + 3, i64::from(last.seq))?;
            st.raw_bind_parameter(o + 4, &bytes[..])
        },
    )?;
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![STATE_SIZE_KEY, w.size.to_string()])?;
    Ok(())
}

/// Which leg tables a database has (see [`LEGACY_LEGS`]).
#[derive(Clone, Copy, Debug, Default)]
struct LegLayout {
    /// `leg_sets` and `leg_runs` exist (always, once a schema 3 writer has opened it).
    sets: bool,
    /// A schema 2 `legs` table with rows in it.
    legacy: bool,
}

impl LegLayout {
    /// Two catalogue look-ups and at most one row read: `O(1)` in the history's size.
    fn read(conn: &Connection) -> Result<Self, StoreError> {
        let exists = |name: &str| -> Result<bool, StoreError> {
            Ok(conn
                .prepare_cached("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
                .query_row([name], |_| Ok(()))
                .optional()?
                .is_some())
        };
        let legacy = exists(LEGACY_LEGS)?
            && conn
                .query_row(&format!("SELECT 1 FROM {LEGACY_LEGS} LIMIT 1"), [], |_| {
                    Ok(())
                })
                .optional()?
                .is_some();
        Ok(LegLayout {
            sets: exists("leg_sets")?,
            legacy,
        })
    }
}

impl SqliteStore {
    /// The legs of record `index` in the schema 3 layout, if it has any there.
    fn leg_set(&self, index: u64) -> Result<Option<Vec<LegRow>>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT ts_ms, legs FROM leg_sets WHERE idx = ?1")?;
        let mut rows = stmt.query([to_i64(index)])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        let ts_ms: i64 = row.get(0)?;
        let bytes = row.get_ref(1)?.as_blob().map_err(corrupt)?;
        crate::leg_set::decode(index, ts_ms as u64, bytes).map(Some)
    }

    /// A page of `q.holder`'s legs from the schema 3 layout: the holder's runs from the one
    /// holding the cursor on, each position filtered, then the wanted leg of each record's set.
    fn set_legs_of_holder(&self, q: &LegQuery, limit: usize) -> Result<Vec<LegRow>, StoreError> {
        let mut at: Vec<LegAt> = Vec::new();
        let mut take = |bytes: &[u8]| -> Result<bool, StoreError> {
            let mut run = crate::leg_set::decode_run(&q.holder, bytes)?;
            if q.newest_first {
                run.reverse();
            }
            for p in run {
                let pos = (p.index, p.seq);
                let past_cursor =
                    q.after
                        .is_none_or(|c| if q.newest_first { pos < c } else { pos > c });
                if past_cursor
                    && q.from_ms.is_none_or(|f| p.ts_ms >= f)
                    && q.to_ms.is_none_or(|t| p.ts_ms < t)
                    && q.role.as_deref().is_none_or(|r| *p.role == *r)
                {
                    at.push(p);
                    if at.len() == limit {
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        };
        let (c_idx, c_seq) = q.after.map_or((-1, -1), |(i, s)| (to_i64(i), i64::from(s)));
        if q.newest_first {
            // The run holding the cursor (its last position is at or past it), then every run
            // before it, newest first.
            let mut stmt = self.conn.prepare_cached(
                "SELECT positions FROM leg_runs WHERE holder = ?1 AND (last_idx, last_seq) >= (?2, ?3)
                 ORDER BY last_idx, last_seq LIMIT 1",
            )?;
            let (c_idx, c_seq) = q.after.map_or((i64::MAX, i64::MAX), |_| (c_idx, c_seq));
            let mut rows = stmt.query(params![q.holder, c_idx, c_seq])?;
            let mut full = false;
            if let Some(row) = rows.next()? {
                full = take(row.get_ref(0)?.as_blob().map_err(corrupt)?)?;
            }
            if !full {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT positions FROM leg_runs WHERE holder = ?1 AND (last_idx, last_seq) < (?2, ?3)
                     ORDER BY last_idx DESC, last_seq DESC",
                )?;
                let mut rows = stmt.query(params![q.holder, c_idx, c_seq])?;
                while let Some(row) = rows.next()? {
                    if take(row.get_ref(0)?.as_blob().map_err(corrupt)?)? {
                        break;
                    }
                }
            }
        } else {
            // Runs from the one holding the cursor on: SQLite steps lazily, so only the runs
            // the page needs are read.
            let mut stmt = self.conn.prepare_cached(
                "SELECT positions FROM leg_runs WHERE holder = ?1 AND (last_idx, last_seq) > (?2, ?3)
                 ORDER BY last_idx, last_seq",
            )?;
            let mut rows = stmt.query(params![q.holder, c_idx, c_seq])?;
            while let Some(row) = rows.next()? {
                if take(row.get_ref(0)?.as_blob().map_err(corrupt)?)? {
                    break;
                }
            }
        }
        // A holder's legs are in different records (a page of 1,000 reads 1,000 sets): the
        // sets are read a chunk of indexes per statement, and only the wanted leg of each is
        // built.
        let mut out: Vec<Option<LegRow>> = vec![None; at.len()];
        let indexes: Vec<i64> = at.iter().map(|p| to_i64(p.index)).collect();
        lookup_many(
            &self.conn,
            "SELECT idx, ts_ms, legs FROM leg_sets WHERE idx IN",
            &indexes,
            |row| Ok(row.get(0)?),
            |row, wanted| {
                let index = row.get::<_, i64>(0)? as u64;
                let ts_ms = row.get::<_, i64>(1)? as u64;
                let bytes = row.get_ref(2)?.as_blob().map_err(corrupt)?;
                for &i in wanted {
                    out[i] = crate::leg_set::decode_one(index, ts_ms, bytes, at[i].seq)?
                        .filter(|l| *l.holder == *q.holder);
                }
                Ok(())
            },
        )?;
        out.into_iter()
            .zip(&at)
            .map(|(leg, p)| {
                leg.ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "leg {} of record {} is indexed but missing",
                        p.seq, p.index
                    ))
                })
            })
            .collect()
    }

    /// A page of `q.holder`'s legs from a schema 2 `legs` table.
    fn legacy_legs_of_holder(&self, q: &LegQuery, limit: usize) -> Result<Vec<LegRow>, StoreError> {
        let (cmp, order, none) = leg_page_order(q);
        let (at_idx, at_seq) = q.after.map_or(none, |(i, s)| (to_i64(i), i64::from(s)));
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT idx, seq, ts_ms, holder, account, currency, amount, role, model_id, dataset_id,
                    contribution, beneficiary
             FROM {LEGACY_LEGS}
             WHERE holder = ?1 AND (idx, seq) {cmp} (?2, ?3)
               AND (?4 IS NULL OR ts_ms >= ?4) AND (?5 IS NULL OR ts_ms < ?5)
               AND (?6 IS NULL OR role = ?6)
             ORDER BY idx {order}, seq {order} LIMIT ?7"
        ))?;
        let rows = stmt.query_map(
            params![
                q.holder,
                at_idx,
                at_seq,
                q.from_ms.map(to_i64),
                q.to_ms.map(to_i64),
                q.role,
                limit as i64
            ],
            leg_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn read_hashes_in_tx(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT hash FROM hashes WHERE id = ?1")?;
        let mut out = Vec::with_capacity(indexes.len());
        for &i in indexes {
            let blob: Option<Vec<u8>> = stmt.query_row([to_i64(i)], |r| r.get(0)).optional()?;
            let blob =
                blob.ok_or_else(|| StoreError::Corrupt(format!("stored hash {i} is missing")))?;
            let arr: [u8; 32] = blob
                .try_into()
                .map_err(|_| StoreError::Corrupt(format!("stored hash {i} is not 32 bytes")))?;
            out.push(Hash(arr));
        }
        Ok(out)
    }
}
