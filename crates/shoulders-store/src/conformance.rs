//! A backend-independent conformance suite for [`Store`] implementations.
//!
//! Each backend's tests call [`run_all`] with a factory that opens a fresh, empty store and a
//! re-opener that opens the same store again (to check durability across handles). The SQLite
//! store runs it in `tests/conformance.rs`; other backends (PostgreSQL) are meant to run the
//! same functions against a real server.

use crate::{AppendBatch, Hash, Store, StoreError};
use shoulders_log::{stored_hash_count, Frontier, MemoryHashes};

/// Leaf bytes used by the suite: distinct per index.
fn leaf(i: u64) -> Vec<u8> {
    format!("conformance record {i}").into_bytes()
}

/// Append records `first..first + count` (generated) through a frontier, returning the new
/// frontier.
fn append_range(
    store: &mut dyn Store,
    frontier: &mut Frontier,
    count: u64,
) -> Result<(), StoreError> {
    let first = frontier.size();
    let records: Vec<Vec<u8>> = (first..first + count).map(leaf).collect();
    let mut hashes = Vec::new();
    for r in &records {
        hashes.extend(frontier.append(shoulders_log::leaf_hash(r)));
    }
    store.append(&AppendBatch {
        first_index: first,
        records: records.iter().map(Vec::as_slice).collect(),
        hashes,
    })
}

/// Appends are visible, ordered, and their hashes give the same root as an in-memory tree.
pub fn append_and_read_back(store: &mut dyn Store) {
    assert_eq!(store.size().unwrap(), 0);
    let mut frontier = Frontier::new();
    let mut memory = MemoryHashes::new();
    for batch in [1u64, 2, 7, 64, 1, 300] {
        append_range(store, &mut frontier, batch).unwrap();
        while memory.size() < frontier.size() {
            memory.append(&leaf(memory.size()));
        }
        let size = store.size().unwrap();
        assert_eq!(size, frontier.size());
        let root = shoulders_log::tree_root(size, &crate::StoreHashes(&*store)).unwrap();
        assert_eq!(root, memory.root());
    }
    let size = store.size().unwrap();
    assert_eq!(store.record(0).unwrap(), Some(leaf(0)));
    assert_eq!(store.record(size - 1).unwrap(), Some(leaf(size - 1)));
    assert_eq!(store.record(size).unwrap(), None);
    let mut seen = Vec::new();
    store
        .scan(3, 10, &mut |i, bytes| {
            assert_eq!(bytes, leaf(i).as_slice());
            seen.push(i);
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, (3..10).collect::<Vec<_>>());
    let all: Vec<u64> = (0..stored_hash_count(size)).collect();
    assert_eq!(store.read_hashes(&all).unwrap(), memory.stored().to_vec());
}

/// An append at the wrong index is refused and changes nothing.
pub fn refuses_gaps_and_overlaps(store: &mut dyn Store) {
    let mut frontier = Frontier::new();
    append_range(store, &mut frontier, 5).unwrap();
    for wrong in [0u64, 4, 6] {
        let err = store
            .append(&AppendBatch {
                first_index: wrong,
                records: vec![b"x".as_slice()],
                hashes: vec![Hash([0; 32])],
            })
            .unwrap_err();
        assert_eq!(err.code(), "E_STORE_CONFLICT", "append at {wrong}");
        assert_eq!(store.size().unwrap(), 5);
    }
    append_range(store, &mut frontier, 1).unwrap();
    assert_eq!(store.size().unwrap(), 6);
}

/// Missing stored hashes are an error, never a made-up value.
pub fn missing_hashes_are_errors(store: &mut dyn Store) {
    let mut frontier = Frontier::new();
    append_range(store, &mut frontier, 3).unwrap();
    let beyond = stored_hash_count(3);
    assert!(store.read_hashes(&[beyond]).is_err());
}

/// Metadata round-trips and is overwritten in place.
pub fn metadata(store: &mut dyn Store) {
    assert_eq!(store.meta("origin").unwrap(), None);
    store.set_meta("origin", "a").unwrap();
    store.set_meta("origin", "b").unwrap();
    assert_eq!(store.meta("origin").unwrap().as_deref(), Some("b"));
}

/// What one handle committed, a newly opened handle sees; after `refresh` it also sees what
/// the first handle appended later (how read-only nodes follow the writer).
pub fn durable_across_handles(store: &mut dyn Store, reopen: &dyn Fn() -> Box<dyn Store>) {
    let mut frontier = Frontier::new();
    append_range(store, &mut frontier, 42).unwrap();
    let mut again = reopen();
    assert_eq!(again.size().unwrap(), 42);
    assert_eq!(again.record(41).unwrap(), Some(leaf(41)));
    let root = shoulders_log::tree_root(42, &crate::StoreHashes(&*again)).unwrap();
    assert_eq!(root, frontier.root());
    append_range(store, &mut frontier, 8).unwrap();
    assert_eq!(again.size().unwrap(), 42, "size is cached until refresh");
    assert_eq!(again.refresh().unwrap(), 50);
    assert_eq!(again.record(49).unwrap(), Some(leaf(49)));
    let root = shoulders_log::tree_root(50, &crate::StoreHashes(&*again)).unwrap();
    assert_eq!(root, frontier.root());
}

/// Run every check, each on a fresh store from `fresh`; `reopen_last` reopens the store most
/// recently returned by `fresh`.
pub fn run_all(
    fresh: &mut dyn FnMut() -> Box<dyn Store>,
    reopen_last: &dyn Fn() -> Box<dyn Store>,
) {
    append_and_read_back(&mut *fresh());
    refuses_gaps_and_overlaps(&mut *fresh());
    missing_hashes_are_errors(&mut *fresh());
    metadata(&mut *fresh());
    let mut store = fresh();
    durable_across_handles(&mut *store, reopen_last);
}
