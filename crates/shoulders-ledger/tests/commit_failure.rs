//! Group commit under concurrent submitters: a failed commit must leave nothing of its batch,
//! or of any later batch that would sit on top of it, acknowledged or visible, and batches
//! decided concurrently must publish exactly the replayed state.
mod common;

use common::*;
use serde_json::json;
use shoulders_ledger::{verify_export, Appended, Ledger, LedgerError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Records on disk, as a separate connection sees them.
fn durable_records(path: &std::path::Path) -> u64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT COUNT(*) FROM records", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64
}

#[test]
fn a_failed_commit_acknowledges_nothing_of_it_or_of_the_batches_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, vkey) = new_ledger(tmp.path());
    let alice = key(1);
    ledger
        .submit(rec(
            &alice,
            "actor.register",
            json!({"handle": "alice", "name": "Alice"}),
        ))
        .unwrap();
    let limit = ledger.size() + 150;
    // The fault: inside the writer's transaction, inserting any record at `limit` or later
    // fails, so the batch that crosses it fails to commit (and every later attempt too).
    let conn = rusqlite::Connection::open(data.database()).unwrap();
    conn.execute_batch(&format!(
        "CREATE TRIGGER fail_commit BEFORE INSERT ON records WHEN NEW.idx >= {limit}
         BEGIN SELECT RAISE(ABORT, 'injected commit failure'); END;"
    ))
    .unwrap();

    // Readers never see more than is on disk.
    let ledger = Arc::new(ledger);
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (ledger, done, db) = (Arc::clone(&ledger), Arc::clone(&done), data.database());
        std::thread::spawn(move || {
            let mut looks = 0u64;
            while !done.load(Ordering::SeqCst) {
                let seen = ledger.size().max(ledger.with_state(|s| s.size()));
                assert!(seen <= limit, "a reader saw {seen} records past {limit}");
                assert!(
                    seen <= durable_records(&db),
                    "a reader saw an undurable record"
                );
                looks += 1;
            }
            looks
        })
    };
    // Four submitters, batches of 40 (with a resubmission of the previous batch's first
    // record, answered as a duplicate only once that record is durable): many small batches,
    // so many commits fail while later batches queue behind them.
    let submitters: Vec<_> = (0..4)
        .map(|t| {
            let ledger = Arc::clone(&ledger);
            std::thread::spawn(move || {
                let alice = key(1);
                let mut results: Vec<(Vec<u8>, Result<Appended, LedgerError>)> = Vec::new();
                let mut previous: Option<Vec<u8>> = None;
                for b in 0..6 {
                    let mut batch: Vec<Vec<u8>> = (0..40)
                        .map(|i| {
                            rec(
                                &alice,
                                "dataset.create",
                                json!({"dataset_id": format!("alice/d{t}-{b}-{i}"),
                                       "name": "D", "access": "open"}),
                            )
                        })
                        .collect();
                    batch.extend(previous.take());
                    previous = Some(batch[0].clone());
                    let outcomes = ledger.submit_batch(batch.clone());
                    results.extend(batch.into_iter().zip(outcomes));
                }
                results
            })
        })
        .collect();
    let results: Vec<_> = submitters
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    done.store(true, Ordering::SeqCst);
    assert!(watcher.join().unwrap() > 0);

    let mut acked: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut failed = 0;
    for (bytes, outcome) in &results {
        match outcome {
            Ok(a) => {
                assert!(
                    a.index < limit,
                    "record {} acknowledged past the fault",
                    a.index
                );
                if let Some(earlier) = acked.insert(a.index, bytes.clone()) {
                    assert_eq!(&earlier, bytes, "two records acknowledged at {}", a.index);
                }
            }
            Err(e) => {
                assert_eq!(e.code(), "E_STORAGE", "{e}");
                failed += 1;
            }
        }
    }
    assert!(failed > 0, "the fault was never hit");
    let size = ledger.size();
    assert!(size <= limit);
    assert_eq!(size, durable_records(&data.database()));
    assert_eq!(ledger.with_state(|s| s.size()), size);
    // Every acknowledged record is in the log, at its index, byte for byte.
    for (index, bytes) in &acked {
        assert_eq!(ledger.record(*index).unwrap().as_ref(), Some(bytes));
    }

    // Without the fault the ledger goes on from what is durable.
    conn.execute_batch("DROP TRIGGER fail_commit").unwrap();
    let next = ledger
        .submit(rec(
            &alice,
            "dataset.create",
            json!({"dataset_id": "alice/after", "name": "After", "access": "open"}),
        ))
        .unwrap();
    assert_eq!(next.index, size);
    let rows = ledger.with_state(|s| s.all_entity_rows());
    let ledger = Arc::try_unwrap(ledger).ok().unwrap();
    drop(ledger);

    // A reopen loads the same state, and the log verifies and replays to it.
    let ledger = Ledger::open(&data).unwrap();
    assert_eq!(ledger.size(), size + 1);
    assert!(ledger.with_state(|s| s.all_entity_rows()) == rows);
    let mut export = Vec::new();
    ledger.export(&mut export).unwrap();
    let (_, replayed) = verify_export(&export, &vkey).unwrap();
    assert!(replayed.all_entity_rows() == rows);
}

#[test]
fn concurrent_batches_publish_exactly_the_replayed_state() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, vkey) = new_ledger(tmp.path());
    populate(&ledger);
    let ledger = Arc::new(ledger);
    // Concurrent submitters, each resubmitting records of the others (duplicates and id
    // conflicts decided against batches still committing).
    let shared: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            rec(
                &key(1),
                "dataset.create",
                json!({"dataset_id": format!("alice/s{i}"), "name": "S", "access": "open"}),
            )
        })
        .collect();
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let (ledger, shared) = (Arc::clone(&ledger), shared.clone());
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                for chunk in shared.chunks(20 + t * 7) {
                    outcomes.extend(ledger.submit_batch(chunk.to_vec()));
                }
                outcomes
            })
        })
        .collect();
    let mut first: BTreeMap<u64, u32> = BTreeMap::new();
    for t in threads {
        for outcome in t.join().unwrap() {
            let a = outcome.unwrap();
            *first.entry(a.index).or_default() += u32::from(!a.duplicate);
        }
    }
    // Each record was appended exactly once, and its other submissions were duplicates of it.
    assert_eq!(first.len(), shared.len());
    assert!(first.values().all(|n| *n == 1));
    let rows = ledger.with_state(|s| s.all_entity_rows());
    let mut export = Vec::new();
    ledger.export(&mut export).unwrap();
    let (_, replayed) = verify_export(&export, &vkey).unwrap();
    assert!(replayed.all_entity_rows() == rows);
    drop(Arc::try_unwrap(ledger).ok().unwrap());
    let reopened = Ledger::open(&data).unwrap();
    assert!(reopened.with_state(|s| s.all_entity_rows()) == rows);
}
