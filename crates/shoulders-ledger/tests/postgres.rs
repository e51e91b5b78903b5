//! The ledger engine on a real PostgreSQL server: the same writer, group commit, proofs and
//! export as on SQLite; one writer per database however many processes race for it; read-only
//! nodes beside the writer; and migration from SQLite and back preserving the root.

mod common;

use common::*;
use serde_json::json;
use shoulders_ledger::{migrate, verify_export, DataDir, Ledger, Reader, StoreLocation};
use std::sync::{Arc, Barrier};

/// Refuse a held writer lock after a short wait (the default waits 3 s for a dead writer's
/// session to go away).
fn quick_refusal() -> shoulders_ledger::LedgerConfig {
    shoulders_ledger::LedgerConfig {
        writer_lock_wait_ms: 200,
        ..Default::default()
    }
}

#[test]
fn the_ledger_runs_on_postgres() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, vkey) = new_pg_ledger(tmp.path());
    assert!(
        !data.database().exists(),
        "no SQLite file for a PostgreSQL ledger"
    );
    let recorded = std::fs::read_to_string(data.database_location_file()).unwrap();
    assert!(recorded.starts_with("postgres://"), "{recorded}");
    populate(&ledger);
    let size = ledger.size();
    assert_eq!(size, 11);
    // A resubmission is recognised through the replayed state.
    let dora = key(9);
    let r = rec_id(
        &dora,
        "x",
        "actor.register",
        json!({"handle": "dora", "name": "D"}),
    );
    let first = ledger.submit(r.clone()).unwrap();
    assert!(ledger.submit(r).unwrap().duplicate);
    // A read-only node (same data dir, its own session) sees what the writer committed.
    let reader = Reader::open(&data).unwrap();
    assert_eq!(reader.size(), size + 1);
    assert_eq!(reader.checkpoint().unwrap(), ledger.checkpoint().unwrap());
    let verifier = shoulders_log::LogVerifier::new(&vkey).unwrap();
    let cp = verifier.open(&reader.checkpoint().unwrap()).unwrap();
    let proof = reader.inclusion_proof(first.index, cp.size).unwrap();
    let hashes: Vec<_> = proof
        .hashes
        .iter()
        .map(|h| shoulders_log::Hash::parse_hash(h).unwrap())
        .collect();
    shoulders_log::verify_inclusion(&hashes, first.index, cp.size, first.leaf_hash, cp.root)
        .unwrap();
    let mut export = Vec::new();
    ledger.export(&mut export).unwrap();
    let (report, state) = verify_export(&export, &vkey).unwrap();
    assert_eq!(report.tree_size, size + 1);
    assert!(state.model("bob/tuned").is_some());
    // Restart: the log replays from PostgreSQL to the same state and root.
    let before = ledger.checkpoint().unwrap();
    drop(ledger);
    let again = Ledger::open(&data).unwrap();
    assert_eq!(again.checkpoint().unwrap(), before);
    assert!(again.with_state(|s| s.actor("dora").is_some()));
}

/// Several server processes (here: threads, each with its own data directory copy and
/// database session) start at once against one database: exactly one becomes the writer, the
/// rest are refused with E_WRITER_LOCKED and can still serve reads, and the log never forks.
#[test]
fn racing_writers_exactly_one_wins_and_the_log_does_not_fork() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, vkey) = new_pg_ledger(tmp.path());
    populate(&ledger);
    drop(ledger);
    const RACERS: usize = 4;
    let dirs: Vec<DataDir> = (0..RACERS)
        .map(|i| copy_data_dir(&data, &tmp.path().join(format!("node{i}"))))
        .collect();
    for round in 0..3 {
        let barrier = Arc::new(Barrier::new(RACERS));
        // Everyone has tried to open before the winner appends and closes: a late starter must
        // not find the lock already released.
        let attempted = Arc::new(Barrier::new(RACERS));
        let outcomes: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = dirs
                .iter()
                .enumerate()
                .map(|(i, dir)| {
                    let (barrier, attempted) = (Arc::clone(&barrier), Arc::clone(&attempted));
                    s.spawn(move || {
                        barrier.wait();
                        let opened = Ledger::open_with(dir, quick_refusal());
                        attempted.wait();
                        let ledger = opened?;
                        let carol = key(3);
                        // Content first, into this node's own content store.
                        let body = stored(&ledger, "alice/open", "a racing document");
                        for j in 0..20 {
                            ledger.submit(rec_id(
                                &carol,
                                &format!("race-{round}-{i}-{j}"),
                                "data.contribute",
                                body.clone(),
                            ))?;
                        }
                        Ok::<_, shoulders_ledger::LedgerError>(ledger.size())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<_> = outcomes.iter().filter(|o| o.is_ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {outcomes:?}");
        for loser in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            assert_eq!(loser.code(), "E_WRITER_LOCKED", "{loser}");
            assert!(loser.to_string().contains("only read"), "{loser}");
        }
        // Losers serve reads: every node's reader agrees on one log.
        let checkpoints: Vec<_> = dirs
            .iter()
            .map(|d| Reader::open(d).unwrap().checkpoint().unwrap())
            .collect();
        assert!(checkpoints.windows(2).all(|w| w[0] == w[1]));
        let reader = Reader::open(&data).unwrap();
        assert_eq!(reader.size(), 11 + 20 * (round + 1) as u64);
        let mut export = Vec::new();
        reader.export(reader.size(), &mut export).unwrap();
        verify_export(&export, &vkey).expect("one unforked, verifiable log");
    }
}

/// A writer and a refused second writer at the same time; the writer lock is released when the
/// first writer closes, and the next one continues the same log.
#[test]
fn the_writer_lock_passes_on_when_the_writer_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, _) = new_pg_ledger(tmp.path());
    let other = copy_data_dir(&data, &tmp.path().join("other"));
    let err = Ledger::open_with(&other, quick_refusal()).err().unwrap();
    assert_eq!(err.code(), "E_WRITER_LOCKED");
    assert!(
        err.to_string().contains("shoulders-writer"),
        "names the holder: {err}"
    );
    populate(&ledger);
    let checkpoint = ledger.checkpoint().unwrap();
    drop(ledger);
    let next = Ledger::open(&other).unwrap();
    assert_eq!(next.checkpoint().unwrap(), checkpoint);
}

#[test]
fn init_refuses_a_database_that_holds_a_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, _) = new_pg_ledger(tmp.path());
    drop(ledger);
    let location = shoulders_ledger::DataDir::new(data.root())
        .store_location()
        .unwrap();
    let again = DataDir::new(tmp.path().join("second")).with_database(location);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let err = shoulders_ledger::init(&again, "other.example/log", &mut rng).unwrap_err();
    assert_eq!(err.code(), "E_DATABASE_NOT_EMPTY");
    assert!(
        !again.root().exists(),
        "a failed init leaves nothing behind"
    );
}

use rand::SeedableRng;

#[test]
fn migration_round_trip_preserves_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, vkey) = new_ledger(tmp.path());
    populate(&ledger);
    // Enough records for several copy batches.
    let carol = key(3);
    let body = stored(&ledger, "alice/open", "a migrated document");
    let batch: Vec<_> = (0..6_000)
        .map(|i| rec_id(&carol, &format!("m{i}"), "data.contribute", body.clone()))
        .collect();
    for r in ledger.submit_batch(batch) {
        r.unwrap();
    }
    let checkpoint = ledger.checkpoint().unwrap();
    let size = ledger.size();
    drop(ledger);

    let sqlite = StoreLocation::Sqlite(data.database());
    let pg = StoreLocation::parse(&shoulders_pgtest::fresh_database_url()).unwrap();
    let report = migrate(&sqlite, &pg).unwrap();
    assert_eq!(report.records, size);
    // The same data dir (same key) on the PostgreSQL copy signs the identical checkpoint, and
    // keeps appending.
    let on_pg = DataDir::new(data.root()).with_database(pg.clone());
    let ledger = Ledger::open(&on_pg).unwrap();
    assert_eq!(ledger.checkpoint().unwrap(), checkpoint);
    let verifier = shoulders_log::LogVerifier::new(&vkey).unwrap();
    assert_eq!(
        verifier.open(&checkpoint).unwrap().root.to_string(),
        report.root
    );
    drop(ledger);

    // And back to a new SQLite file: still the same log.
    let back = StoreLocation::Sqlite(tmp.path().join("back.sqlite"));
    let report_back = migrate(&pg, &back).unwrap();
    assert_eq!(report_back.root, report.root);
    let ledger = Ledger::open(&DataDir::new(data.root()).with_database(back.clone())).unwrap();
    assert_eq!(ledger.checkpoint().unwrap(), checkpoint);
    drop(ledger);

    // Non-empty targets are refused and left as they were.
    for target in [&pg, &back] {
        let err = migrate(&sqlite, target).unwrap_err();
        assert_eq!(err.code(), "E_DATABASE_NOT_EMPTY");
    }
    let ledger = Ledger::open(&on_pg).unwrap();
    assert_eq!(ledger.checkpoint().unwrap(), checkpoint);
}

/// A source whose stored hashes do not match its records is reported, never copied as if
/// sound: tamper with the stored hashes of a PostgreSQL log and migrate it to SQLite.
#[test]
fn migration_detects_a_corrupt_source() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, _) = new_pg_ledger(tmp.path());
    populate(&ledger);
    drop(ledger);
    let source = data.store_location().unwrap();
    let StoreLocation::Postgres(url) = &source else {
        panic!("expected a PostgreSQL ledger")
    };
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let changed = client
        .execute("UPDATE hashes SET hash = sha256(hash)", &[])
        .unwrap();
    assert!(changed > 0);
    let target = StoreLocation::Sqlite(tmp.path().join("copy.sqlite"));
    let err = migrate(&source, &target).unwrap_err();
    assert_eq!(err.code(), "E_MIGRATE_MISMATCH", "{err}");
    // Metadata is written last, so the partial copy is not a usable ledger.
    let err = Ledger::open(&DataDir::new(data.root()).with_database(target))
        .err()
        .unwrap();
    assert_eq!(err.code(), "E_KEY_FILE", "{err}");
}
