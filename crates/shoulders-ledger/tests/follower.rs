//! A read-only `Follower` beside the writer, on SQLite (same data directory) and PostgreSQL:
//! it folds what the writer commits in whole steps, needs no writer lock, serves the same
//! checkpoints and proofs, keeps serving when the writer is gone, and refuses a log that no
//! longer hashes to what it verified.

mod common;

use common::*;
use serde_json::json;
use shoulders_ledger::{Follower, Ledger, MAX_FOLLOW_BATCH_RECORDS};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn actors(from: u64, count: u64) -> Vec<Vec<u8>> {
    (from..from + count)
        .map(|i| {
            let k = shoulders_record::ActorKey::from_seed(seed(i));
            rec(
                &k,
                "actor.register",
                json!({"handle": format!("a{i}"), "name": "A"}),
            )
        })
        .collect()
}

fn seed(i: u64) -> [u8; 32] {
    let mut s = [0x5a; 32];
    s[..8].copy_from_slice(&i.to_le_bytes());
    s
}

fn submit_all(ledger: &Ledger, batch: Vec<Vec<u8>>) {
    for r in ledger.submit_batch(batch) {
        assert!(!r.unwrap().duplicate);
    }
}

/// The follower's view equals the writer's: size, checkpoint bytes, state, a proof.
fn assert_same(follower: &Follower, ledger: &Ledger) {
    let view = follower.view();
    assert_eq!(view.size(), ledger.size());
    assert_eq!(view.checkpoint().unwrap(), ledger.checkpoint().unwrap());
    // The whole bounded state: entities, balances and counters, not only a summary.
    let whole = |s: &shoulders_state::State| s.clone();
    assert!(view.with_state(whole) == ledger.with_state(whole));
    let last = ledger.size() - 1;
    assert_eq!(
        view.inclusion_proof(last, None).unwrap(),
        ledger.inclusion_proof(last, None).unwrap()
    );
    assert_eq!(view.record(last).unwrap(), ledger.record(last).unwrap());
}

#[test]
fn a_follower_folds_what_a_sqlite_writer_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, _) = new_ledger(tmp.path());
    populate(&ledger);
    // No writer lock is needed: the writer holds it, and the follower opens anyway.
    let follower = Follower::open(&data).unwrap();
    assert_same(&follower, &ledger);
    assert_eq!(follower.catch_up().unwrap(), 0);

    submit_all(&ledger, actors(0, 10));
    // Not yet folded: the view is what it verified, and records past it are not served.
    let before = follower.view().size();
    assert_eq!(before + 10, ledger.size());
    assert_eq!(follower.view().record(before).unwrap(), None);
    assert_eq!(
        follower
            .view()
            .inclusion_proof(0, Some(ledger.size()))
            .unwrap_err()
            .code(),
        "E_PROOF_SIZE_BEYOND_LOG"
    );
    assert_eq!(follower.catch_up().unwrap(), 10);
    assert_same(&follower, &ledger);

    // More than one step's worth of records arrives in whole steps.
    let many = MAX_FOLLOW_BATCH_RECORDS + 300;
    for chunk in actors(100, many).chunks(5_000) {
        submit_all(&ledger, chunk.to_vec());
    }
    assert_eq!(follower.catch_up().unwrap(), many);
    assert_same(&follower, &ledger);

    // With the writer gone, a follower still serves what is committed, and a new one opens.
    let size = ledger.size();
    drop(ledger);
    assert_eq!(follower.catch_up().unwrap(), 0);
    let late = Follower::open(&data).unwrap();
    assert_eq!(late.view().size(), size);
    assert_eq!(
        late.view().checkpoint().unwrap(),
        follower.view().checkpoint().unwrap()
    );
    // And a writer can start while followers run: they never held its lock.
    let ledger = Ledger::open(&data).unwrap();
    submit_all(&ledger, actors(10_000, 3));
    assert_eq!(follower.catch_up().unwrap(), 3);
    assert_same(&follower, &ledger);
}

/// Readers of a follower see the view before or after a step, never inside one: with the
/// writer committing batches of 100 (each one step for the follower), every state a reader
/// sees has folded a whole number of batches.
#[test]
fn readers_never_see_part_of_a_step() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, _) = new_ledger(tmp.path());
    let follower = Arc::new(Follower::open(&data).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (follower, done) = (Arc::clone(&follower), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut seen = 0u64;
            loop {
                // One more look after the last step, then stop.
                let last = done.load(Ordering::SeqCst);
                let (size, actors) = follower
                    .view()
                    .with_state(|s| (s.size(), s.actors().count() as u64));
                assert_eq!(size % 100, 0, "a reader saw part of a step: size {size}");
                assert_eq!(actors, size);
                seen = seen.max(size);
                if last {
                    break seen;
                }
            }
        })
    };
    for batch in 0..20 {
        submit_all(&ledger, actors(batch * 100, 100));
        follower.catch_up().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    assert_eq!(watcher.join().unwrap(), 2_000);
}

#[test]
fn a_follower_follows_postgres_and_refuses_a_rewritten_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, _) = new_pg_ledger(tmp.path());
    populate(&ledger);
    // A read node has its own data directory: the keys and the database location.
    let node = copy_data_dir(&data, &tmp.path().join("read-node"));
    let follower = Follower::open(&node).unwrap();
    assert_same(&follower, &ledger);
    submit_all(&ledger, actors(0, 5));
    assert_eq!(follower.catch_up().unwrap(), 5);
    assert_same(&follower, &ledger);

    // Someone with database access rewrites a new record: its bytes no longer hash to the
    // stored tree, so the follower refuses it and keeps what it verified.
    let verified = follower.view().size();
    let checkpoint = follower.view().checkpoint().unwrap();
    submit_all(&ledger, actors(5, 2));
    let other = ledger.record(0).unwrap().unwrap();
    drop(ledger);
    let url = std::fs::read_to_string(data.database_location_file()).unwrap();
    let mut db = postgres::Client::connect(url.trim(), postgres::NoTls).unwrap();
    db.execute(
        "UPDATE records SET bytes = $1 WHERE idx = $2",
        &[&other, &(verified as i64 + 1)],
    )
    .unwrap();
    let err = follower.catch_up().unwrap_err();
    assert_eq!(err.code(), "E_STORE_CORRUPT", "{err}");
    assert!(err.to_string().contains("do not hash"), "{err}");
    assert_eq!(follower.view().size(), verified);
    assert_eq!(follower.view().checkpoint().unwrap(), checkpoint);
    assert_eq!(follower.view().with_state(|s| s.size()), verified);

    // A log rolled back below what the follower verified is refused too.
    db.execute(
        "DELETE FROM records WHERE idx >= $1",
        &[&(verified as i64 - 1)],
    )
    .unwrap();
    let err = follower.catch_up().unwrap_err();
    assert_eq!(err.code(), "E_STORE_CORRUPT", "{err}");
    assert!(err.to_string().contains("rolled back"), "{err}");
    assert_eq!(follower.view().size(), verified);
}
