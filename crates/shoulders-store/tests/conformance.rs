//! The store conformance suite against SQLite (the same suite is meant for every backend).

use shoulders_store::{conformance, SqliteStore, Store};
use std::cell::RefCell;
use std::path::PathBuf;

#[test]
fn sqlite_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let counter = RefCell::new(0u32);
    let last: RefCell<Option<PathBuf>> = RefCell::new(None);
    let mut fresh = || -> Box<dyn Store> {
        *counter.borrow_mut() += 1;
        let path = dir
            .path()
            .join(format!("store-{}.sqlite", counter.borrow()));
        *last.borrow_mut() = Some(path.clone());
        Box::new(SqliteStore::create(&path).unwrap())
    };
    let reopen = || -> Box<dyn Store> {
        let path = last.borrow().clone().unwrap();
        Box::new(SqliteStore::open_read_only(&path).unwrap())
    };
    conformance::run_all(&mut fresh, &reopen);
}

#[test]
fn opening_a_missing_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(&dir.path().join("none.sqlite"))
        .err()
        .unwrap();
    assert_eq!(err.code(), "E_STORE_MISSING");
}

#[test]
fn sqlite_key_tables_pass_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.sqlite");
    drop(SqliteStore::create(&path).unwrap());
    conformance::api_keys(&|| Box::new(shoulders_store::SqliteKeys::open(&path).unwrap()));
    // A missing database is not created by opening its key tables.
    let err = shoulders_store::SqliteKeys::open(&dir.path().join("none.sqlite"))
        .err()
        .unwrap();
    assert_eq!(err.code(), "E_STORE_MISSING");
}
