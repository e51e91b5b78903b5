//! SQLite store: one database file in WAL mode with `synchronous=FULL`, so a committed
//! transaction is on disk (WAL fsynced) before `append` returns.

use crate::{AppendBatch, Hash, Store, StoreError, Visit, MAX_BATCH_RECORDS};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use shoulders_log::{stored_hash_count, stored_hash_index};
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (idx INTEGER PRIMARY KEY, bytes BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS hashes (id INTEGER PRIMARY KEY, hash BLOB NOT NULL);
";

pub struct SqliteStore {
    conn: Connection,
    size: u64,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).expect("log indexes stay below 2^63")
}

impl SqliteStore {
    /// Create the database (or open an existing one) for writing.
    pub fn create(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        Self::configure(&conn)?;
        conn.execute_batch(SCHEMA)?;
        Self::finish_open(conn)
    }

    /// Open an existing database for writing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        Self::configure(&conn)?;
        Self::finish_open(conn)
    }

    /// Open an existing database for reading only (concurrent with a writer).
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        Self::set_mmap(&conn);
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
        Self::set_mmap(conn);
        Ok(())
    }

    fn finish_open(conn: Connection) -> Result<Self, StoreError> {
        let mut store = SqliteStore { conn, size: 0 };
        store.size = store.read_size()?;
        let hashes: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM hashes", [], |r| r.get(0))?;
        if u64::try_from(hashes).ok() != Some(stored_hash_count(store.size)) {
            return Err(StoreError::Corrupt(format!(
                "{} records but {hashes} stored hashes (expected {})",
                store.size,
                stored_hash_count(store.size)
            )));
        }
        Ok(store)
    }

    fn read_size(&self) -> Result<u64, StoreError> {
        let (count, max): (i64, Option<i64>) =
            self.conn
                .query_row("SELECT COUNT(*), MAX(idx) FROM records", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
        let size =
            u64::try_from(count).map_err(|_| StoreError::Corrupt("negative count".into()))?;
        if max.map(|m| m + 1).unwrap_or(0) != count {
            return Err(StoreError::Corrupt(format!(
                "record indexes have gaps ({count} records, max index {max:?})"
            )));
        }
        Ok(size)
    }

    /// Size from the highest index: O(log n), unlike `COUNT(*)`. Gaps are ruled out at open.
    fn read_size_fast(conn: &Connection) -> Result<u64, StoreError> {
        let max: Option<i64> = conn.query_row("SELECT MAX(idx) FROM records", [], |r| r.get(0))?;
        Ok(max.map(|m| m as u64 + 1).unwrap_or(0))
    }
}

impl Store for SqliteStore {
    fn size(&self) -> Result<u64, StoreError> {
        Ok(self.size)
    }

    fn refresh(&mut self) -> Result<u64, StoreError> {
        self.size = Self::read_size_fast(&self.conn)?;
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
            let mut ins = tx.prepare_cached("INSERT INTO records (idx, bytes) VALUES (?1, ?2)")?;
            for (i, bytes) in batch.records.iter().enumerate() {
                ins.execute(params![to_i64(batch.first_index + i as u64), bytes])?;
            }
            let mut insh = tx.prepare_cached("INSERT INTO hashes (id, hash) VALUES (?1, ?2)")?;
            for (i, h) in batch.hashes.iter().enumerate() {
                insh.execute(params![to_i64(first_hash + i as u64), &h.0[..]])?;
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
}

impl SqliteStore {
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
