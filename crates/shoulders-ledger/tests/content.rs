//! Content first: a `data.contribute` counts only for content the ledger holds, intact, with
//! measured sizes. Each refusal leaves the log exactly as it was; resubmissions stay
//! duplicates; replay never re-reads content; `contribute` stores then submits; and
//! `verify_content` checks an export against a content directory.

mod common;

use common::*;
use serde_json::json;
use shoulders_ledger::{content_ref, verify_content, verify_export, ContentStore, DataDir, Ledger};

/// A ledger with alice's open dataset `alice/d`.
fn ledger_with_dataset(dir: &std::path::Path) -> (DataDir, Ledger, String) {
    let (data, ledger, vkey) = new_ledger(dir);
    let alice = key(1);
    ledger
        .submit(rec(
            &alice,
            "actor.register",
            json!({"handle": "alice", "name": "A"}),
        ))
        .unwrap();
    ledger
        .submit(rec(
            &alice,
            "dataset.create",
            json!({"dataset_id": "alice/d", "name": "D", "access": "open"}),
        ))
        .unwrap();
    (data, ledger, vkey)
}

fn body(text: &str, byte_size: u64, token_count: u64) -> serde_json::Value {
    json!({"dataset_id": "alice/d", "content_hash": content_ref(text.as_bytes()),
           "byte_size": byte_size, "token_count": token_count})
}

fn blob_path(ledger: &Ledger, text: &str) -> std::path::PathBuf {
    let r = content_ref(text.as_bytes());
    ledger.content().root().join(&r["sha256:".len()..])
}

/// Submit `record` and expect `code`, with the checkpoint (size and root) unchanged.
fn refused(ledger: &Ledger, record: Vec<u8>, code: &str) -> String {
    let before = ledger.checkpoint().unwrap();
    let err = ledger.submit(record).unwrap_err();
    assert_eq!(err.code(), code, "{err}");
    assert_eq!(
        ledger.checkpoint().unwrap(),
        before,
        "a refusal changes nothing"
    );
    err.to_string()
}

#[test]
fn a_contribution_whose_content_was_never_received_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, ledger, _) = ledger_with_dataset(tmp.path());
    let text = "a public text whose hash anyone can publish";
    let message = refused(
        &ledger,
        rec(
            &key(1),
            "data.contribute",
            body(text, text.len() as u64, text.len() as u64),
        ),
        "E_CONTENT_MISSING",
    );
    assert!(message.contains(&content_ref(text.as_bytes())), "{message}");
    assert!(message.contains("POST /api/contributions"), "{message}");
    assert_eq!(ledger.with_state(|s| s.contributions().count()), 0);
}

#[test]
fn declared_sizes_must_be_the_measured_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, ledger, _) = ledger_with_dataset(tmp.path());
    let text = "five!";
    ledger.content().put(text.as_bytes()).unwrap();
    // The attack of the issue: 2^40 declared bytes would take every fallback attribution.
    let message = refused(
        &ledger,
        rec(&key(1), "data.contribute", body(text, 1 << 40, 5)),
        "E_CONTENT_SIZE_MISMATCH",
    );
    assert!(
        message.contains("1099511627776") && message.contains("5 bytes"),
        "{message}"
    );
    refused(
        &ledger,
        rec(&key(1), "data.contribute", body(text, 5, 1 << 40)),
        "E_CONTENT_SIZE_MISMATCH",
    );
    refused(
        &ledger,
        rec(&key(1), "data.contribute", body(text, 4, 4)),
        "E_CONTENT_SIZE_MISMATCH",
    );
    let ok = ledger
        .submit(rec(&key(1), "data.contribute", body(text, 5, 5)))
        .unwrap();
    let c = ledger.with_state(|s| s.contribution(ok.index).cloned().unwrap());
    assert_eq!((c.byte_size, c.token_count), (5, 5));
}

#[test]
fn a_corrupted_or_non_utf8_blob_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, ledger, _) = ledger_with_dataset(tmp.path());
    let text = "intact text";
    ledger.content().put(text.as_bytes()).unwrap();
    std::fs::write(blob_path(&ledger, text), "intact texT").unwrap();
    refused(
        &ledger,
        rec(&key(1), "data.contribute", body(text, 11, 11)),
        "E_CONTENT_CORRUPT",
    );
    // Raw bytes put in the store are not a document either: the index reads UTF-8 only.
    let bytes = b"caf\xe9";
    let r = ledger.content().put(bytes).unwrap();
    refused(
        &ledger,
        rec(
            &key(1),
            "data.contribute",
            json!({"dataset_id": "alice/d", "content_hash": r, "byte_size": 4, "token_count": 4}),
        ),
        "E_CONTENT_NOT_UTF8",
    );
}

#[test]
fn a_resubmission_stays_a_duplicate_after_its_blob_is_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, ledger, _) = ledger_with_dataset(tmp.path());
    let text = "kept for a while";
    let record = rec(&key(1), "data.contribute", stored(&ledger, "alice/d", text));
    let first = ledger.submit(record.clone()).unwrap();
    assert!(!first.duplicate);
    std::fs::remove_file(blob_path(&ledger, text)).unwrap();
    let again = ledger.submit(record.clone()).unwrap();
    assert_eq!((again.index, again.duplicate), (first.index, true));
    // In a batch too.
    let batch = ledger.submit_batch(vec![record]);
    assert!(batch[0].as_ref().unwrap().duplicate);
    // A new record naming the deleted content is refused.
    refused(
        &ledger,
        rec(
            &key(1),
            "data.contribute",
            body(text, text.len() as u64, text.len() as u64),
        ),
        "E_CONTENT_MISSING",
    );
}

#[test]
fn submit_batch_refuses_just_the_bad_contribution() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, ledger, _) = ledger_with_dataset(tmp.path());
    let size = ledger.size();
    let batch = vec![
        rec(
            &key(1),
            "data.contribute",
            stored(&ledger, "alice/d", "one"),
        ),
        rec(&key(1), "data.contribute", body("never uploaded", 14, 14)),
        rec(
            &key(1),
            "data.contribute",
            stored(&ledger, "alice/d", "three"),
        ),
    ];
    let results = ledger.submit_batch(batch);
    assert_eq!(results[0].as_ref().unwrap().index, size);
    assert_eq!(results[1].as_ref().unwrap_err().code(), "E_CONTENT_MISSING");
    assert_eq!(results[2].as_ref().unwrap().index, size + 1);
    assert_eq!(ledger.size(), size + 2);
}

#[test]
fn replay_on_open_does_not_reread_content() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, _) = ledger_with_dataset(tmp.path());
    ledger
        .submit(rec(
            &key(1),
            "data.contribute",
            stored(&ledger, "alice/d", "doc"),
        ))
        .unwrap();
    let before = ledger.checkpoint().unwrap();
    let root = ledger.content().root().to_path_buf();
    drop(ledger);
    std::fs::remove_dir_all(root).unwrap();
    let again = Ledger::open(&data).unwrap();
    assert_eq!(again.checkpoint().unwrap(), before);
    assert_eq!(again.with_state(|s| s.contributions().count()), 1);
}

#[test]
fn contribute_stores_the_content_then_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, ledger, _) = ledger_with_dataset(tmp.path());
    let text = "my own poem";
    let record = rec(&key(1), "data.contribute", body(text, 11, 11));
    let done = ledger.contribute(record.clone(), text.as_bytes()).unwrap();
    assert_eq!(done.content_hash, content_ref(text.as_bytes()));
    assert!(!done.appended.duplicate);
    assert_eq!(
        ledger.content().get(&done.content_hash).unwrap(),
        text.as_bytes()
    );
    let again = ledger.contribute(record, text.as_bytes()).unwrap();
    assert_eq!(
        (again.appended.index, again.appended.duplicate),
        (done.appended.index, true)
    );
}

#[test]
fn contribute_refusals_store_and_append_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, ledger, _) = ledger_with_dataset(tmp.path());
    let text = "the real document";
    let n = text.len() as u64;
    let cases: Vec<(&str, Vec<u8>, &[u8])> = vec![
        (
            "E_CONTENT_HASH_MISMATCH",
            rec(&key(1), "data.contribute", body("another document", n, n)),
            text.as_bytes(),
        ),
        (
            "E_CONTENT_SIZE_MISMATCH",
            rec(&key(1), "data.contribute", body(text, 1 << 40, n)),
            text.as_bytes(),
        ),
        (
            "E_CONTENT_NOT_UTF8",
            rec(
                &key(1),
                "data.contribute",
                json!({"dataset_id": "alice/d", "content_hash": content_ref(b"\xff\xfe"),
                       "byte_size": 2, "token_count": 2}),
            ),
            b"\xff\xfe",
        ),
        (
            "E_NOT_A_CONTRIBUTION",
            rec(
                &key(1),
                "dataset.create",
                json!({"dataset_id": "alice/e", "name": "E", "access": "open"}),
            ),
            text.as_bytes(),
        ),
        (
            "E_DATASET_UNKNOWN",
            rec(
                &key(1),
                "data.contribute",
                json!({"dataset_id": "alice/none", "content_hash": content_ref(text.as_bytes()),
                       "byte_size": n, "token_count": n}),
            ),
            text.as_bytes(),
        ),
        (
            "E_SIGNER_UNKNOWN",
            rec(&key(9), "data.contribute", body(text, n, n)),
            text.as_bytes(),
        ),
        (
            "E_RECORD_MALFORMED",
            b"{not a record".to_vec(),
            text.as_bytes(),
        ),
    ];
    let before = ledger.checkpoint().unwrap();
    for (code, record, content) in cases {
        let err = ledger.contribute(record, content).unwrap_err();
        assert_eq!(err.code(), code, "{err}");
        assert!(
            !ledger.content().root().exists()
                || std::fs::read_dir(ledger.content().root()).unwrap().count() == 0,
            "{code}: nothing is stored"
        );
    }
    assert_eq!(ledger.checkpoint().unwrap(), before);
}

#[test]
fn verify_content_checks_an_export_against_a_content_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, ledger, vkey) = ledger_with_dataset(tmp.path());
    let texts = ["first document", "second document", "third"];
    let mut indexes = Vec::new();
    for t in texts {
        let b = stored(&ledger, "alice/d", t);
        indexes.push(
            ledger
                .submit(rec(&key(1), "data.contribute", b))
                .unwrap()
                .index,
        );
    }
    let mut export = Vec::new();
    ledger.export(&mut export).unwrap();
    let (_, state) = verify_export(&export, &vkey).unwrap();
    // Either the data directory, its content/ or its content/sha256/.
    for dir in [
        data.root().to_path_buf(),
        data.root().join("content"),
        ledger.content().root().to_path_buf(),
    ] {
        let report = verify_content(&state, &ContentStore::at(&dir)).unwrap();
        assert_eq!(report.contributions_checked, 3);
        assert_eq!(
            report.content_bytes,
            texts.iter().map(|t| t.len() as u64).sum::<u64>()
        );
    }
    let store = ContentStore::at(data.root());
    std::fs::write(blob_path(&ledger, texts[1]), "second documenT").unwrap();
    let failure = verify_content(&state, &store).unwrap_err();
    assert_eq!(
        (failure.code, failure.index),
        ("E_CONTENT_CORRUPT", Some(indexes[1]))
    );
    std::fs::remove_file(blob_path(&ledger, texts[1])).unwrap();
    let failure = verify_content(&state, &store).unwrap_err();
    assert_eq!(
        (failure.code, failure.index),
        ("E_CONTENT_MISSING", Some(indexes[1]))
    );
}
