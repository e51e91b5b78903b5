//! Crash safety: a child process appends in a loop (several threads, group commit) and is
//! killed with SIGKILL at random moments. After every kill the log must reopen, replay, hold
//! every record the child acknowledged (same index, same leaf hash), and verify from an export.

mod common;

use common::*;
use rand::{Rng, SeedableRng};
use serde_json::json;
use shoulders_ledger::{verify_export, DataDir, Ledger};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "SHOULDERS_CRASH_CHILD_DIR";
const KILLS: usize = 24;

/// The child side: only runs when re-executed by the parent test with `CHILD_ENV` set.
#[test]
#[ignore = "runs only as the child of sigkill_loses_no_acknowledged_record"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var("SHOULDERS_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let ledger = Ledger::open(&DataDir::new(dir)).unwrap();
    let alice = key(1);
    ledger
        .submit(rec_id(
            &alice,
            "actor",
            "actor.register",
            json!({"handle": "alice", "name": "A"}),
        ))
        .unwrap();
    ledger
        .submit(rec_id(
            &alice,
            "dataset",
            "dataset.create",
            json!({"dataset_id": "alice/d", "name": "D", "access": "open"}),
        ))
        .unwrap();
    // libtest may print "test crash_child ... " on the same line first.
    println!("\nCRASH-CHILD-READY");
    let out = std::sync::Mutex::new(std::io::stdout());
    let report = |a: &shoulders_ledger::Appended| {
        let mut o = out.lock().unwrap();
        writeln!(o, "ack {} {} end", a.index, a.leaf_hash).unwrap();
        o.flush().unwrap();
    };
    // Content first; one stored document keeps the appends as fast as the group commit (copies
    // are admitted, they just earn nothing).
    let document = stored(&ledger, "alice/d", "the crash test's document");
    let contribution = |id: String| rec_id(&alice, &id, "data.contribute", document.clone());
    std::thread::scope(|s| {
        for t in 0..4 {
            let (ledger, report, contribution) = (&ledger, &report, &contribution);
            s.spawn(move || {
                for i in 0..100_000 {
                    if t == 0 && i % 10 == 0 {
                        let batch = (0..25)
                            .map(|j| contribution(format!("r{round}-b{i}-{j}")))
                            .collect();
                        for a in ledger.submit_batch(batch) {
                            report(&a.unwrap());
                        }
                    } else {
                        report(
                            &ledger
                                .submit(contribution(format!("r{round}-t{t}-{i}")))
                                .unwrap(),
                        );
                    }
                }
            });
        }
    });
}

#[test]
fn sigkill_loses_no_acknowledged_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, vkey) = new_ledger(tmp.path());
    drop(ledger);
    kill_rounds(&data, &vkey, KILLS, Kill::Writer);
}

/// The same on PostgreSQL: the writer process dies mid-batch, its session (and writer lock)
/// goes with it, and the next writer finds every acknowledged record.
#[test]
fn sigkill_loses_no_acknowledged_record_on_postgres() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, vkey) = new_pg_ledger(tmp.path());
    drop(ledger);
    kill_rounds(&data, &vkey, KILLS / 2, Kill::Writer);
}

/// The database server itself crashes (`pg_ctl stop -m immediate`, no shutdown checkpoint)
/// while the writer is appending: what the writer acknowledged was committed with
/// `synchronous_commit = on`, so it is there after WAL recovery. Uses a private server.
#[test]
fn postgres_server_crash_loses_no_acknowledged_record() {
    let server = shoulders_pgtest::PgServer::start().expect("start a private PostgreSQL server");
    let url = shoulders_pgtest::create_database(&server.admin_url()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let location = shoulders_ledger::StoreLocation::parse(&url).unwrap();
    let (data, ledger, vkey) =
        new_ledger_in(DataDir::new(tmp.path().join("ledger")).with_database(location));
    drop(ledger);
    kill_rounds(&data, &vkey, 4, Kill::DatabaseServer(&server));
}

/// What dies in each round.
#[derive(Clone, Copy)]
enum Kill<'a> {
    /// SIGKILL the writer process.
    Writer,
    /// Crash and restart the database server, then stop the (now failing) writer.
    DatabaseServer(&'a shoulders_pgtest::PgServer),
}

/// Records a waiting round lets the child acknowledge before it kills (see `kill_rounds`).
const MIN_ACKS_BEFORE_KILL: usize = 60;

fn kill_rounds(data: &DataDir, vkey: &str, kills: usize, what: Kill<'_>) {
    let seed: u64 = std::env::var("SHOULDERS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("crash test seed {seed} (set SHOULDERS_CRASH_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut killed_while_writing = 0;
    let mut previous = None;
    for round in 0..kills {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, data.root())
            .env("SHOULDERS_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let pump = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Half the rounds kill at a random moment after start (possibly during start-up replay),
        // half wait until the child is appending and then kill at a random moment. A database
        // crash always waits, so that it lands while records are being acknowledged.
        let wait_ready = round % 2 == 1 || matches!(what, Kill::DatabaseServer(_));
        let start = Instant::now();
        if wait_ready {
            loop {
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(line) if line.ends_with("CRASH-CHILD-READY") => break,
                    Ok(line) => drop(record_ack(&line, &mut acked)),
                    Err(_) => panic!("child did not start"),
                }
            }
            // And until it has acknowledged a few dozen records this round, however slow the
            // machine: the kill then lands in a stream of acknowledged appends.
            let before = acked.len();
            while acked.len() < before + MIN_ACKS_BEFORE_KILL {
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(line) => drop(record_ack(&line, &mut acked)),
                    Err(_) => panic!("child stopped acknowledging records"),
                }
            }
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..250)));
        let still_running = child.try_wait().unwrap().is_none();
        if let Kill::DatabaseServer(server) = what {
            server
                .crash_and_restart()
                .expect("crash and restart PostgreSQL");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        pump.join().unwrap();
        let mut lines_this_round = 0;
        for line in rx.try_iter() {
            lines_this_round += record_ack(&line, &mut acked) as usize;
        }
        if still_running && lines_this_round > 0 {
            killed_while_writing += 1;
        }

        // Recovery: the lock is free again, the log replays (Ledger::open refolds every record
        // and checks the stored Merkle hashes), and every acknowledged record is there.
        let ledger = Ledger::open(data).expect("the ledger reopens after SIGKILL");
        let size = ledger.size();
        let mut present = BTreeMap::new();
        shoulders_ledger::Reader::open(data)
            .unwrap()
            .scan(0, size, &mut |i, bytes| {
                present.insert(i, shoulders_log::leaf_hash(bytes).to_string());
                Ok(())
            })
            .unwrap();
        for (index, leaf) in &acked {
            assert_eq!(
                present.get(index),
                Some(leaf),
                "acknowledged record {index} lost or changed"
            );
        }
        // History is never rewritten: the new checkpoint is consistent with the previous one.
        let verifier = shoulders_log::LogVerifier::new(vkey).unwrap();
        let now = verifier.open(&ledger.checkpoint().unwrap()).unwrap();
        if let Some(prev) = &previous {
            let prev: &shoulders_log::CheckpointView = prev;
            if prev.size > 0 {
                let proof = ledger.consistency_proof(prev.size, None).unwrap();
                let hashes: Vec<_> = proof
                    .hashes
                    .iter()
                    .map(|h| shoulders_log::Hash::parse_hash(h).unwrap())
                    .collect();
                shoulders_log::verify_consistency(
                    &hashes, prev.size, prev.root, now.size, now.root,
                )
                .expect("checkpoints before and after a crash are consistent");
            }
        }
        // A full from-scratch verification (every signature) every few rounds and at the end.
        if round % 6 == 5 || round + 1 == kills {
            let mut export = Vec::new();
            ledger.export(&mut export).unwrap();
            let (report, _) = verify_export(&export, vkey).expect("the log verifies after a crash");
            assert_eq!(report.tree_size, size);
        }
        eprintln!(
            "round {round}: killed after {:?}, log size {size}, {} acknowledged so far",
            start.elapsed(),
            acked.len()
        );
        previous = Some(now);
    }
    println!(
        "{kills} kills, {killed_while_writing} while appending, {} acknowledged records, 0 lost",
        acked.len()
    );
    assert!(
        killed_while_writing >= kills / 3,
        "too few kills landed while the child was appending"
    );
    assert!(
        acked.len() >= 200,
        "the child acknowledged too few records to mean anything"
    );
}

/// Parse `ack <index> <leaf> end`; a torn last line (no `end`) was not an acknowledgement.
fn record_ack(line: &str, acked: &mut BTreeMap<u64, String>) -> bool {
    let parts: Vec<&str> = line.split(' ').collect();
    if let ["ack", index, leaf, "end"] = parts[..] {
        let index: u64 = index.parse().unwrap();
        if let Some(prev) = acked.insert(index, leaf.to_string()) {
            assert_eq!(
                prev, leaf,
                "two different records acknowledged at index {index}"
            );
        }
        return true;
    }
    false
}
