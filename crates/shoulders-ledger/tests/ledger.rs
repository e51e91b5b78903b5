//! Engine behaviour: every reject code leaves the log unchanged, idempotency, restart replay,
//! group commit under concurrency, the single-writer lock, proofs against checkpoints.

mod common;

use common::*;
use serde_json::json;
use shoulders_ledger::{verify_export, DataDir, Ledger, Reader};
use shoulders_log::{leaf_hash, verify_consistency, verify_inclusion, Hash, LogVerifier};

#[test]
fn every_reject_code_leaves_the_log_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, ledger, _) = new_ledger(tmp.path());
    populate(&ledger);
    let (alice, bob, carol, stranger) = (key(1), key(2), key(3), key(99));
    // Content first: the refusals below are the fold's, not the content store's.
    let h = ledger.content().put(b"x").unwrap();
    let taken_id = "reused-id";
    ledger
        .submit(rec_id(
            &bob,
            taken_id,
            "dataset.create",
            json!({"dataset_id": "bob/d", "name": "D", "access": "open"}),
        ))
        .unwrap();
    let license_terms = json!({"commercial_use": true, "derivatives": "allowed", "attribution_required": false, "share_alike": false, "royalty_bps": 0, "data_share_bps": 0, "currency": "USD", "price_per_call_micros": "0", "price_per_1k_output_tokens_micros": "0", "registration_fee_micros": "0"});
    let valid = rec(
        &alice,
        "actor.register",
        json!({"handle": "zed", "name": "Z"}),
    );
    let bad_sig = with_field(
        &valid,
        "sig",
        field_of(
            &rec(
                &alice,
                "actor.register",
                json!({"handle": "zed2", "name": "Z"}),
            ),
            "sig",
        ),
    );

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "E_SIGNER_UNKNOWN",
            rec(
                &stranger,
                "dataset.create",
                json!({"dataset_id": "x/d", "name": "D", "access": "open"}),
            ),
        ),
        (
            "E_ACTOR_KEY_EXISTS",
            rec(
                &alice,
                "actor.register",
                json!({"handle": "alice2", "name": "A"}),
            ),
        ),
        (
            "E_HANDLE_TAKEN",
            rec(
                &stranger,
                "actor.register",
                json!({"handle": "alice", "name": "A"}),
            ),
        ),
        (
            "E_ACTOR_UNKNOWN",
            rec(
                &alice,
                "dataset.create",
                json!({"dataset_id": "alice/x", "name": "X", "access": "allowlist", "allowlist": ["nobody"]}),
            ),
        ),
        (
            "E_NAMESPACE_MISMATCH",
            rec(
                &bob,
                "dataset.create",
                json!({"dataset_id": "alice/x", "name": "X", "access": "open"}),
            ),
        ),
        (
            "E_NAMESPACE_MISMATCH",
            rec(
                &bob,
                "model.register",
                json!({"model_id": "alice/m", "name": "M"}),
            ),
        ),
        (
            "E_DATASET_EXISTS",
            rec(
                &alice,
                "dataset.create",
                json!({"dataset_id": "alice/open", "name": "Again", "access": "open"}),
            ),
        ),
        (
            "E_DATASET_UNKNOWN",
            rec(
                &bob,
                "data.contribute",
                json!({"dataset_id": "alice/none", "content_hash": h, "byte_size": 1, "token_count": 1}),
            ),
        ),
        (
            "E_DATASET_UNKNOWN",
            rec(
                &bob,
                "model.register",
                json!({"model_id": "bob/m", "name": "M", "datasets": ["alice/none"]}),
            ),
        ),
        (
            "E_CONTRIBUTION_FORBIDDEN",
            rec(
                &bob,
                "data.contribute",
                json!({"dataset_id": "alice/private", "content_hash": h, "byte_size": 1, "token_count": 1}),
            ),
        ),
        (
            "E_CONTRIBUTION_FORBIDDEN",
            rec(
                &bob,
                "data.contribute",
                json!({"dataset_id": "alice/allow", "content_hash": h, "byte_size": 1, "token_count": 1}),
            ),
        ),
        (
            "E_MODEL_EXISTS",
            rec(
                &alice,
                "model.register",
                json!({"model_id": "alice/base", "name": "Again"}),
            ),
        ),
        (
            "E_MODEL_UNKNOWN",
            rec(
                &bob,
                "model.register",
                json!({"model_id": "bob/m", "name": "M", "parents": [{"model_id": "alice/none", "relation": "finetune"}]}),
            ),
        ),
        (
            "E_LINEAGE_CYCLE",
            rec(
                &bob,
                "model.register",
                json!({"model_id": "bob/loop", "name": "L", "parents": [{"model_id": "bob/loop", "relation": "finetune"}]}),
            ),
        ),
        (
            "E_LICENSE_UNKNOWN",
            rec(
                &bob,
                "model.register",
                json!({"model_id": "bob/m", "name": "M", "license_id": "bob/l"}),
            ),
        ),
        (
            "E_NAMESPACE_MISMATCH",
            rec(
                &alice,
                "license.define",
                json!({"license_id": "bob/l", "name": "L", "terms": license_terms}),
            ),
        ),
        (
            "E_LICENSE_UNKNOWN",
            rec(
                &alice,
                "license.grant",
                json!({"license_id": "alice/l", "model_id": "alice/base", "grantee": "bob"}),
            ),
        ),
        (
            "E_NO_OPERATOR",
            rec(
                &alice,
                "usage.receipt",
                json!({"usage_id": "u", "model_id": "alice/base", "payer": "bob", "use_category": "research", "input_tokens": 1, "output_tokens": 1, "output_hash": h}),
            ),
        ),
        (
            "E_NO_OPERATOR",
            rec(
                &alice,
                "funds.deposit",
                json!({"account": "bob", "currency": "USD", "amount_micros": "5"}),
            ),
        ),
        (
            "E_NO_PAYOUT_ADDRESS",
            rec(
                &bob,
                "funds.withdraw",
                json!({"currency": "USD", "amount_micros": "5"}),
            ),
        ),
        (
            "E_ID_CONFLICT",
            rec_id(
                &bob,
                taken_id,
                "dataset.create",
                json!({"dataset_id": "bob/other", "name": "D", "access": "open"}),
            ),
        ),
        ("E_SIG_INVALID", bad_sig),
        ("E_RECORD_NOT_CANONICAL", {
            let mut v = valid.clone();
            v.push(b' ');
            v
        }),
        ("E_RECORD_MALFORMED", b"{not json".to_vec()),
        (
            "E_RECORD_TOO_LARGE",
            vec![b'{'; shoulders_record::MAX_RECORD_BYTES + 1],
        ),
    ];
    // carol may contribute to the allowlisted dataset (control for the forbidden case above).
    let before_size = ledger.size();
    let before_checkpoint = ledger.checkpoint().unwrap();
    let before_state = ledger.with_state(|s| s.clone());
    let mut seen_codes = std::collections::BTreeSet::new();
    for (code, bytes) in cases {
        let err = ledger.submit(bytes.clone()).expect_err(code);
        assert_eq!(err.code(), code, "{err}");
        assert!(!err.to_string().is_empty());
        assert_eq!(ledger.size(), before_size, "{code} appended something");
        assert_eq!(
            ledger.checkpoint().unwrap(),
            before_checkpoint,
            "{code} changed the checkpoint"
        );
        // The same refusal comes back through the batch path.
        let batch = ledger.submit_batch(vec![bytes]);
        assert_eq!(batch[0].as_ref().unwrap_err().code(), code);
        seen_codes.insert(code);
    }
    assert!(
        ledger.with_state(|s| s == &before_state),
        "a refused record changed the state"
    );
    assert_eq!(seen_codes.len(), 19);
    // Controls: the allowed versions of refused records go through.
    ledger.submit(rec(&carol, "data.contribute", json!({"dataset_id": "alice/allow", "content_hash": h, "byte_size": 1, "token_count": 1}))).unwrap();
    // The record whose signature was swapped is itself fine apart from alice's key being taken.
    assert_eq!(
        ledger.submit(valid).unwrap_err().code(),
        "E_ACTOR_KEY_EXISTS"
    );
}

#[test]
fn resubmission_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, ledger, _) = new_ledger(tmp.path());
    let alice = key(1);
    let r = rec(
        &alice,
        "actor.register",
        json!({"handle": "alice", "name": "Alice"}),
    );
    let first = ledger.submit(r.clone()).unwrap();
    assert!(!first.duplicate);
    let second = ledger.submit(r.clone()).unwrap();
    assert_eq!(
        (second.index, second.leaf_hash, second.duplicate),
        (first.index, first.leaf_hash, true)
    );
    assert_eq!(ledger.size(), 1);
    // Twice in one batch: the second copy points at the first.
    let d = rec(
        &alice,
        "dataset.create",
        json!({"dataset_id": "alice/d", "name": "D", "access": "open"}),
    );
    let out = ledger.submit_batch(vec![d.clone(), d.clone(), r]);
    let out: Vec<_> = out.into_iter().map(Result::unwrap).collect();
    assert_eq!((out[0].index, out[0].duplicate), (1, false));
    assert_eq!((out[1].index, out[1].duplicate), (1, true));
    assert_eq!((out[2].index, out[2].duplicate), (0, true));
    assert_eq!(ledger.size(), 2);
}

#[test]
fn restart_recovers_the_exact_state_and_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, _) = new_ledger(tmp.path());
    populate(&ledger);
    let state = ledger.with_state(|s| s.clone());
    let checkpoint = ledger.checkpoint().unwrap();
    drop(ledger);
    let reopened = Ledger::open(&data).unwrap();
    assert_eq!(reopened.checkpoint().unwrap(), checkpoint);
    assert!(reopened.with_state(|s| s == &state));
    // A read-only reader computes the same.
    let mut reader = Reader::open(&data).unwrap();
    assert_eq!(reader.checkpoint().unwrap(), checkpoint);
    assert_eq!(reader.state().unwrap(), state);
    // The model's lineage survives.
    assert_eq!(state.ancestors("bob/tuned"), vec!["alice/base".to_string()]);
    assert_eq!(
        state.model("alice/base").unwrap().children,
        vec!["bob/tuned".to_string()]
    );
}

#[test]
fn only_one_writer_per_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, _) = new_ledger(tmp.path());
    let err = Ledger::open(&data)
        .err()
        .expect("second writer must be refused");
    assert_eq!(err.code(), "E_LOCKED");
    // Readers are fine while the writer runs.
    Reader::open(&data).unwrap();
    drop(ledger);
    Ledger::open(&data).unwrap();
    // Opening a directory that holds no ledger says so.
    let err = Ledger::open(&DataDir::new(tmp.path().join("nothing")))
        .err()
        .unwrap();
    assert_eq!(err.code(), "E_NOT_INITIALISED");
}

#[test]
fn concurrent_submitters_are_group_committed_densely() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, ledger, vkey) = new_ledger(tmp.path());
    let alice = alice_with_dataset(&ledger);
    contribute_concurrently(&ledger, &vkey, &alice, 8, 60);
}

/// Alice, registered, with her open dataset `alice/d`: the log's first two records.
fn alice_with_dataset(ledger: &Ledger) -> shoulders_record::ActorKey {
    let alice = key(1);
    for (kind, body) in [
        ("actor.register", json!({"handle": "alice", "name": "A"})),
        (
            "dataset.create",
            json!({"dataset_id": "alice/d", "name": "D", "access": "open"}),
        ),
    ] {
        ledger.submit(rec(&alice, kind, body)).unwrap();
    }
    alice
}

/// `threads` submitters at once, each contributing `per_thread` documents to `alice/d` (after
/// [`alice_with_dataset`]): every one is appended, the log stays dense, and its export verifies.
fn contribute_concurrently(
    ledger: &Ledger,
    vkey: &str,
    alice: &shoulders_record::ActorKey,
    threads: usize,
    per_thread: usize,
) {
    let indexes: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (0..per_thread)
                        .map(|i| {
                            let body = stored(ledger, "alice/d", &format!("doc {t} {i}"));
                            ledger
                                .submit(rec(alice, "data.contribute", body))
                                .unwrap()
                                .index
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut sorted = indexes;
    sorted.sort();
    assert_eq!(
        sorted,
        (2..2 + (threads * per_thread) as u64).collect::<Vec<_>>()
    );
    let mut export = Vec::new();
    ledger.export(&mut export).unwrap();
    let (report, _) = verify_export(&export, vkey).unwrap();
    assert_eq!(report.tree_size, ledger.size());
    assert_eq!(report.contributions, threads * per_thread);
}

#[test]
fn proofs_verify_against_signed_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, ledger, vkey) = new_ledger(tmp.path());
    populate(&ledger);
    let verifier = LogVerifier::new(&vkey).unwrap();
    let old = verifier.open(&ledger.checkpoint().unwrap()).unwrap();
    ledger
        .submit(rec(
            &key(4),
            "actor.register",
            json!({"handle": "dan", "name": "D"}),
        ))
        .unwrap();
    let new = verifier.open(&ledger.checkpoint().unwrap()).unwrap();
    assert_eq!(new.size, old.size + 1);
    for index in 0..new.size {
        let bytes = ledger.record(index).unwrap().unwrap();
        let proof = ledger.inclusion_proof(index, None).unwrap();
        let hashes: Vec<Hash> = proof
            .hashes
            .iter()
            .map(|h| Hash::parse_hash(h).unwrap())
            .collect();
        verify_inclusion(&hashes, index, new.size, leaf_hash(&bytes), new.root).unwrap();
        assert!(verify_inclusion(&hashes, index, new.size, leaf_hash(b"other"), new.root).is_err());
    }
    let proof = ledger.consistency_proof(old.size, None).unwrap();
    let hashes: Vec<Hash> = proof
        .hashes
        .iter()
        .map(|h| Hash::parse_hash(h).unwrap())
        .collect();
    verify_consistency(&hashes, old.size, old.root, new.size, new.root).unwrap();
    assert_eq!(
        ledger.inclusion_proof(new.size, None).unwrap_err().code(),
        "E_PROOF_INDEX_OUT_OF_RANGE"
    );
    assert_eq!(
        ledger
            .inclusion_proof(0, Some(new.size + 1))
            .unwrap_err()
            .code(),
        "E_PROOF_SIZE_BEYOND_LOG"
    );
    assert_eq!(
        ledger.consistency_proof(0, None).unwrap_err().code(),
        "E_PROOF_BAD_RANGE"
    );
}

/// A ledger made before its state was stored (no state rows) is migrated once by a writer: it
/// then opens with exactly the state a fresh fold of its log gives. Until then a reader says
/// what to do instead of replaying.
#[test]
fn a_ledger_without_stored_state_is_migrated_by_its_writer() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, _) = new_ledger(tmp.path());
    populate(&ledger);
    let expected = ledger.with_state(|s| s.all_entity_rows());
    drop(ledger);
    // What an older shoulders left: the log, no state.
    let conn = rusqlite::Connection::open(data.database()).unwrap();
    conn.execute_batch(
        "DELETE FROM state_rows; DELETE FROM seen; DELETE FROM receipts; DELETE FROM leg_sets;
         DELETE FROM leg_runs;
         DELETE FROM meta WHERE key = 'state_size';",
    )
    .unwrap();
    drop(conn);
    let err = Reader::open(&data).unwrap().state().unwrap_err();
    assert_eq!(err.code(), "E_STORE_SCHEMA", "{err}");
    let ledger = Ledger::open(&data).unwrap();
    assert!(ledger.with_state(|s| s.all_entity_rows()) == expected);
    // Idempotency still holds across the migration (client ids were rebuilt).
    drop(ledger);
    let state = Reader::open(&data).unwrap().state().unwrap();
    assert!(state.all_entity_rows() == expected);
}

/// Issue 21: signatures are checked in batches, one batch equation per chunk of 256. A chunk
/// holding bad signatures falls back to one-by-one checks, so each bad record gets its own
/// code and every other record of the batch, in that chunk or another, is appended in order.
/// A small-order signer key is refused at decode (`E_KEY_INVALID`). Then `verify` of the
/// export (batched too) accepts exactly what was appended.
#[test]
fn a_batch_with_bad_signatures_refuses_just_those() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, ledger, vkey) = new_ledger(tmp.path());
    let alice = key(1);
    ledger
        .submit(rec(
            &alice,
            "actor.register",
            json!({"handle": "alice", "name": "A"}),
        ))
        .unwrap();
    let dataset = |i: usize| {
        rec_id(
            &alice,
            &format!("batch-{i}"),
            "dataset.create",
            json!({"dataset_id": format!("alice/b{i}"), "name": "D", "access": "open"}),
        )
    };
    let mut batch: Vec<Vec<u8>> = (0..700).map(dataset).collect();
    let mut expected: Vec<Option<&str>> = vec![None; batch.len()];
    // Signatures moved between records: valid signatures, wrong messages.
    for (at, from) in [(3, 4), (255, 0), (256, 300), (511, 10), (699, 698)] {
        batch[at] = with_field(&batch[at], "sig", field_of(&batch[from], "sig"));
        expected[at] = Some("E_SIG_INVALID");
    }
    // A small-order signer (the identity point's encoding): refused whatever its signature.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    use base64::Engine as _;
    let identity = base64::engine::general_purpose::STANDARD.encode(identity);
    batch[400] = with_field(&batch[400], "signer", json!(identity));
    expected[400] = Some("E_KEY_INVALID");
    let before = ledger.size();
    let out = ledger.submit_batch(batch);
    let mut next = before;
    for (i, (got, want)) in out.iter().zip(&expected).enumerate() {
        match (got, want) {
            (Err(e), Some(code)) => assert_eq!(e.code(), *code, "record {i}"),
            (Ok(a), None) => {
                assert_eq!((a.index, a.duplicate), (next, false), "record {i}");
                next += 1;
            }
            other => panic!("record {i}: {other:?}"),
        }
    }
    assert_eq!(ledger.size(), before + 694);
    // Resubmitting a refused record alone gives the same code (the single path).
    let lone = with_field(&dataset(5), "sig", field_of(&dataset(6), "sig"));
    assert_eq!(ledger.submit(lone).unwrap_err().code(), "E_SIG_INVALID");
    let mut export = Vec::new();
    ledger.export(&mut export).unwrap();
    let (report, _) = verify_export(&export, &vkey).unwrap();
    assert_eq!(report.tree_size, ledger.size());
}

/// What the server's metrics read from the writer: every batch is reported to the commit
/// observer (one call per sequential submit, counting its records, refused ones included), only
/// one observer is kept, nothing stays queued once submits have returned, and the writer runs
/// until the ledger is dropped.
#[test]
fn the_writer_reports_its_commits_and_queue() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let (_, ledger, _) = new_ledger(tmp.path());
    let (calls, records) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, r) = (Arc::clone(&calls), Arc::clone(&records));
    assert!(ledger.observe_commits(Box::new(move |_, n| {
        c.fetch_add(1, Ordering::SeqCst);
        r.fetch_add(n, Ordering::SeqCst);
    })));
    assert!(!ledger.observe_commits(Box::new(|_, _| panic!("a second observer is not kept"))));
    assert!(ledger.is_running());
    assert_eq!(ledger.queued_records(), 0);
    for i in 0..3u8 {
        let handle = format!("u{i}");
        ledger
            .submit(rec(
                &key(10 + i),
                "actor.register",
                json!({"handle": handle, "name": "U"}),
            ))
            .unwrap();
    }
    // Refused by the fold (the handle is taken): still a batch the writer folded.
    assert!(ledger
        .submit(rec(
            &key(20),
            "actor.register",
            json!({"handle": "u0", "name": "U"})
        ))
        .is_err());
    // A batch of two in one job.
    let results = ledger.submit_batch(vec![
        rec(
            &key(21),
            "actor.register",
            json!({"handle": "v1", "name": "V"}),
        ),
        rec(
            &key(22),
            "actor.register",
            json!({"handle": "v2", "name": "V"}),
        ),
    ]);
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(records.load(Ordering::SeqCst), 6);
    assert_eq!(ledger.queued_records(), 0);
    assert!(ledger.is_running());
}

/// One record at a time with nothing queued is committed on the submitter's own thread (no
/// hand-off to the writer and back); a burst of concurrent submitters still reaches the
/// writer thread and shares its group commits, and the log stays dense and verifiable.
#[test]
fn an_uncontended_submit_commits_on_its_own_thread_and_a_burst_still_groups() {
    use std::sync::{Arc, Mutex};
    let tmp = tempfile::tempdir().unwrap();
    let (_, ledger, vkey) = new_ledger(tmp.path());
    let commits: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let seen = Arc::clone(&commits);
    assert!(ledger.observe_commits(Box::new(move |_, n| {
        let thread = std::thread::current().name().unwrap_or("").to_string();
        seen.lock().unwrap().push((thread, n));
    })));
    let alice = alice_with_dataset(&ledger);
    let me = std::thread::current().name().unwrap_or("").to_string();
    assert_ne!(me, "shoulders-writer");
    assert_eq!(
        *commits.lock().unwrap(),
        vec![(me.clone(), 1), (me, 1)],
        "committed here, one record each"
    );
    commits.lock().unwrap().clear();

    let (threads, per_thread) = (8, 40);
    contribute_concurrently(&ledger, &vkey, &alice, threads, per_thread);
    let commits = commits.lock().unwrap();
    assert_eq!(
        commits.iter().map(|(_, n)| n).sum::<usize>(),
        threads * per_thread
    );
    assert!(
        commits
            .iter()
            .any(|(t, n)| t == "shoulders-writer" && *n > 1),
        "the writer group-committed part of the burst: {commits:?}"
    );
}
