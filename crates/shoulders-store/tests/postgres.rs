//! The store conformance suite against a real PostgreSQL server (never skipped: without
//! `SHOULDERS_TEST_PG_URL` a throwaway server is started from the installed binaries), plus
//! the PostgreSQL-only guarantees: one writer per database, no fork from an interleaving
//! writer, versioned schema.

use shoulders_log::{stored_hash_count, Frontier};
use shoulders_pgtest::fresh_database_url;
use shoulders_store::{conformance, AppendBatch, PostgresStore, Store, SCHEMA_VERSION};
use std::cell::RefCell;
use std::time::Duration;

#[test]
fn postgres_passes_the_conformance_suite() {
    let last: RefCell<Option<String>> = RefCell::new(None);
    let mut fresh = || -> Box<dyn Store> {
        let url = fresh_database_url();
        *last.borrow_mut() = Some(url.clone());
        Box::new(PostgresStore::create(&url).unwrap())
    };
    let reopen = || -> Box<dyn Store> {
        let url = last.borrow().clone().unwrap();
        Box::new(PostgresStore::open_read_only(&url).unwrap())
    };
    conformance::run_all(&mut fresh, &reopen);
}

#[test]
fn postgres_key_tables_pass_the_conformance_suite() {
    let url = fresh_database_url();
    // A database shoulders never initialised has no key tables to open.
    let err = shoulders_store::PostgresKeys::open(&url).err().unwrap();
    assert_eq!(err.code(), "E_STORE_MISSING");
    let writer = PostgresStore::create(&url).unwrap();
    // Key connections take no writer lock: they work while the writer runs.
    conformance::api_keys(&|| Box::new(shoulders_store::PostgresKeys::open(&url).unwrap()));
    drop(writer);
}

/// Append `count` generated records through `frontier`.
fn append(store: &mut PostgresStore, frontier: &mut Frontier, count: u64) {
    let first = frontier.size();
    let records: Vec<Vec<u8>> = (first..first + count)
        .map(|i| format!("pg record {i}").into_bytes())
        .collect();
    let mut hashes = Vec::new();
    for r in &records {
        hashes.extend(frontier.append(shoulders_log::leaf_hash(r)));
    }
    store
        .append(&AppendBatch {
            state: None,
            first_index: first,
            records: records.iter().map(Vec::as_slice).collect(),
            hashes,
        })
        .unwrap();
}

#[test]
fn a_second_writer_is_refused_and_may_read() {
    let url = fresh_database_url();
    let mut first = PostgresStore::create(&url).unwrap();
    let mut frontier = Frontier::new();
    append(&mut first, &mut frontier, 3);
    for attempt in [PostgresStore::open(&url), PostgresStore::create(&url)] {
        let err = attempt.err().expect("a second writer must be refused");
        assert_eq!(err.code(), "E_WRITER_LOCKED");
        assert!(err.to_string().contains("writer lock"), "{err}");
    }
    let reader = PostgresStore::open_read_only(&url).unwrap();
    assert_eq!(reader.size().unwrap(), 3);
    // Read-only sessions cannot write even by mistake.
    let mut reader = reader;
    assert_eq!(reader.set_meta("k", "v").unwrap_err().code(), "E_STORAGE");
    // The lock belongs to the session: once the first writer is gone, another may write.
    drop(first);
    let mut second = PostgresStore::open(&url).unwrap();
    append(&mut second, &mut frontier, 2);
    assert_eq!(second.size().unwrap(), 5);
}

/// A writer that bypasses the lock (here: raw SQL) and races an append at the same index makes
/// the append fail with a conflict; the log never holds two records at one index.
#[test]
fn an_interleaving_writer_cannot_fork_the_log() {
    let url = fresh_database_url();
    let mut store = PostgresStore::create(&url).unwrap();
    let mut frontier = Frontier::new();
    append(&mut store, &mut frontier, 3);

    let mut rogue = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut tx = rogue.transaction().unwrap();
    tx.execute(
        "INSERT INTO records (idx, bytes) VALUES (3, 'rogue'::bytea)",
        &[],
    )
    .unwrap();
    // Our append reads size 3 (the rogue row is uncommitted), then blocks on the primary key
    // until the rogue transaction commits, and must then fail instead of writing index 3.
    let racing = std::thread::spawn(move || {
        let mut f = frontier.clone();
        let leaf = shoulders_log::leaf_hash(b"ours");
        let hashes = f.append(leaf);
        let result = store.append(&AppendBatch {
            state: None,
            first_index: 3,
            records: vec![b"ours".as_slice()],
            hashes,
        });
        (store, result)
    });
    std::thread::sleep(Duration::from_millis(300));
    tx.commit().unwrap();
    let (mut store, result) = racing.join().unwrap();
    assert_eq!(result.unwrap_err().code(), "E_STORE_CONFLICT");
    let rows = rogue
        .query("SELECT bytes FROM records WHERE idx = 3", &[])
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, &[u8]>(0), b"rogue");
    // After a refresh the store agrees with the database and refuses the stale index.
    assert_eq!(store.refresh().unwrap(), 4);
    let err = store
        .append(&AppendBatch {
            state: None,
            first_index: 3,
            records: vec![b"again".as_slice()],
            hashes: vec![],
        })
        .unwrap_err();
    assert_eq!(err.code(), "E_STORE_CONFLICT");
    assert_eq!(stored_hash_count(3), {
        let n: i64 = rogue
            .query_one("SELECT COUNT(*) FROM hashes", &[])
            .unwrap()
            .get(0);
        n as u64
    });
}

#[test]
fn schema_is_versioned() {
    let url = fresh_database_url();
    assert_eq!(
        PostgresStore::open_read_only(&url).err().unwrap().code(),
        "E_STORE_MISSING"
    );
    assert_eq!(
        PostgresStore::open(&url).err().unwrap().code(),
        "E_STORE_MISSING"
    );
    drop(PostgresStore::create(&url).unwrap());
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let version: i32 = client
        .query_one("SELECT MAX(version) FROM schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(version, SCHEMA_VERSION);
    // Opening again applies nothing twice.
    drop(PostgresStore::open(&url).unwrap());
    let rows: i64 = client
        .query_one("SELECT COUNT(*) FROM schema_version", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, i64::from(SCHEMA_VERSION));
    // A database from a newer shoulders is refused, not misread.
    client
        .execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&(SCHEMA_VERSION + 1)],
        )
        .unwrap();
    assert_eq!(
        PostgresStore::open(&url).err().unwrap().code(),
        "E_STORE_SCHEMA"
    );
    assert_eq!(
        PostgresStore::open_read_only(&url).err().unwrap().code(),
        "E_STORE_SCHEMA"
    );
}

/// End every session this test's stores opened with `application_name`.
fn terminate(url: &str, application: &str) -> i64 {
    let mut admin = postgres::Client::connect(url, postgres::NoTls).unwrap();
    admin
        .query_one(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = $1",
            &[&application],
        )
        .unwrap()
        .get(0)
}

/// A read-only node survives a lost connection (server restart, failover); a writer does not
/// reconnect, because its writer lock went with the session.
#[test]
fn readers_reconnect_and_writers_do_not() {
    let url = fresh_database_url();
    let mut writer = PostgresStore::create(&url).unwrap();
    let mut frontier = Frontier::new();
    append(&mut writer, &mut frontier, 5);
    let mut reader = PostgresStore::open_read_only(&url).unwrap();
    assert_eq!(reader.record(4).unwrap(), Some(b"pg record 4".to_vec()));

    assert_eq!(terminate(&url, "shoulders-reader"), 1);
    assert_eq!(reader.record(4).unwrap(), Some(b"pg record 4".to_vec()));
    assert_eq!(reader.refresh().unwrap(), 5);

    assert_eq!(terminate(&url, "shoulders-writer"), 1);
    let leaf = shoulders_log::leaf_hash(b"after");
    let mut f = frontier.clone();
    let err = writer
        .append(&AppendBatch {
            state: None,
            first_index: 5,
            records: vec![b"after".as_slice()],
            hashes: f.append(leaf),
        })
        .unwrap_err();
    assert_eq!(err.code(), "E_STORAGE");
    assert!(writer.refresh().is_err(), "the writer stays disconnected");
    // The lock went with the session: a new writer may start and continue the log.
    let mut next = PostgresStore::open(&url).unwrap();
    append(&mut next, &mut frontier, 1);
    assert_eq!(reader.refresh().unwrap(), 6);
}
