//! C2SP tiles read from the ledger: every tile of a tree, on the writer, on a read-only reader
//! and on PostgreSQL, holds exactly the stored hashes and the records' exact bytes, and a client
//! reading only those tiles computes the ledger's own proofs. A record must fit one bundle entry.

mod common;

use common::*;
use serde_json::json;
use shoulders_ledger::{Ledger, Reader};
use shoulders_log::tiles::{
    decode_bundle, new_tiles, TileCoord, TileFetch, TiledTree, MAX_ENTRY_BYTES,
};
use shoulders_log::{leaf_hash, LogError};

/// The record limit is the tile entry limit: every record the ledger accepts can be served in
/// an entry bundle.
#[test]
fn the_record_limit_is_the_tile_entry_limit() {
    assert_eq!(shoulders_record::MAX_RECORD_BYTES, MAX_ENTRY_BYTES);
    let tmp = tempfile::tempdir().unwrap();
    let (_, ledger, _) = new_ledger(tmp.path());
    let err = ledger.submit(vec![b'{'; MAX_ENTRY_BYTES + 1]).unwrap_err();
    assert_eq!(err.code(), "E_RECORD_TOO_LARGE");
    // One byte less is read (and refused for what it is, not for its size).
    let err = ledger.submit(vec![b'{'; MAX_ENTRY_BYTES]).unwrap_err();
    assert_ne!(err.code(), "E_RECORD_TOO_LARGE");
    assert_eq!(ledger.size(), 0);
}

/// `n` records: an actor and `n - 1` datasets.
fn grow(ledger: &Ledger, n: usize) {
    let owner = key(1);
    let mut batch = vec![rec(
        &owner,
        "actor.register",
        json!({"handle": "alice", "name": "Alice"}),
    )];
    for i in 1..n {
        batch.push(rec(
            &owner,
            "dataset.create",
            json!({"dataset_id": format!("alice/d{i}"), "name": "D", "access": "open"}),
        ));
    }
    for r in ledger.submit_batch(batch) {
        r.unwrap();
    }
}

struct FromReader<'a>(&'a Reader, u64);

impl TileFetch for FromReader<'_> {
    fn fetch(&self, tiles: &[TileCoord]) -> Result<Vec<Vec<u8>>, LogError> {
        tiles
            .iter()
            .map(|t| match self.0.tile(t, self.1) {
                Ok(data) => Ok(data),
                Err(shoulders_ledger::LedgerError::Log(e)) => Err(e),
                Err(e) => Err(LogError::TileFetch(e.to_string())),
            })
            .collect()
    }
}

fn check_tiles(data: &shoulders_ledger::DataDir, ledger: &Ledger) {
    let size = ledger.size();
    let reader = Reader::open(data).unwrap();
    let tiles = new_tiles(0, size);
    assert!(tiles.contains(&TileCoord::hash(0, 0, 256)));
    assert!(tiles.contains(&TileCoord::entries(1, (size - 256) as u32)));
    for t in &tiles {
        let bytes = ledger.tile(t).unwrap();
        assert_eq!(reader.tile(t, size).unwrap(), bytes, "{}", t.path());
        match t.level {
            None => {
                let entries = decode_bundle(&bytes, t.width).unwrap();
                for (i, e) in t.entry_range().zip(entries) {
                    assert_eq!(ledger.record(i).unwrap().unwrap(), e, "record {i}");
                }
            }
            Some(0) => {
                assert_eq!(bytes.len(), 32 * t.width as usize);
                let first = t.index * 256;
                for (k, h) in bytes.chunks(32).enumerate() {
                    let i = first + k as u64;
                    let record = ledger.record(i).unwrap().unwrap();
                    assert_eq!(h, leaf_hash(&record).0, "leaf {i}");
                }
            }
            Some(_) => assert_eq!(bytes.len(), 32 * t.width as usize),
        }
    }
    // A tile the tree does not hold yet, at the writer and at an older size.
    for (t, at) in [
        (TileCoord::entries(1, (size - 255) as u32), size),
        (TileCoord::hash(0, 2, 1), size),
        (TileCoord::hash(0, 0, 256), 255),
    ] {
        let err = reader.tile(&t, at).unwrap_err();
        assert_eq!(err.code(), "E_TILE_NOT_FOUND", "{}", t.path());
    }
    // A client holding only tiles and the checkpoint gets the ledger's own proofs and records.
    let fetch = FromReader(&reader, size);
    let root = reader.root(size).unwrap();
    let tree = TiledTree::new(size, root, &fetch);
    for (index, at) in [(0, size), (size - 1, size), (200, 257)] {
        let want = ledger.inclusion_proof(index, Some(at)).unwrap().hashes;
        let got: Vec<String> = shoulders_log::inclusion_proof(index, at, &tree)
            .unwrap()
            .iter()
            .map(|h| h.to_string())
            .collect();
        assert_eq!(got, want, "inclusion of {index} in {at}");
    }
    let want = ledger.consistency_proof(100, None).unwrap().hashes;
    let got: Vec<String> = shoulders_log::consistency_proof(100, size, &tree)
        .unwrap()
        .iter()
        .map(|h| h.to_string())
        .collect();
    assert_eq!(got, want);
    let entries = tree.entries(250..size).unwrap();
    assert_eq!(entries[0], ledger.record(250).unwrap().unwrap());
}

#[test]
fn tiles_hold_the_ledgers_hashes_and_records() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, _) = new_ledger(tmp.path());
    grow(&ledger, 300);
    check_tiles(&data, &ledger);
}

#[test]
fn tiles_hold_the_ledgers_hashes_and_records_on_postgres() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, _) = new_pg_ledger(tmp.path());
    grow(&ledger, 300);
    check_tiles(&data, &ledger);
}
