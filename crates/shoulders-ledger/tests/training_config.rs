//! A `model.register` naming a training configuration is admitted only when the configuration
//! is in the content store, intact and a JSON object, so the configuration of every admitted
//! run can be shown. Registrations without one, and resubmissions, are unaffected.

mod common;

use common::*;
use serde_json::{json, Value};
use shoulders_ledger::{content_ref, Ledger};

fn ledger_with_actor(dir: &std::path::Path) -> Ledger {
    let (_, ledger, _) = new_ledger(dir);
    ledger
        .submit(rec(
            &key(1),
            "actor.register",
            json!({"handle": "dave", "name": "D"}),
        ))
        .unwrap();
    ledger
}

fn register(name: &str, config_hash: &str) -> Value {
    json!({"model_id": format!("dave/{name}"), "name": name,
           "training": {"config_hash": config_hash,
                        "credits": [{"actor": "dave", "role": "trainer"}]}})
}

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
fn a_registration_naming_a_config_the_ledger_never_received_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = ledger_with_actor(tmp.path());
    let config = br#"{"learning_rate": 0.0002}"#;
    let hash = content_ref(config);
    let message = refused(
        &ledger,
        rec(&key(1), "model.register", register("m", &hash)),
        "E_CONTENT_MISSING",
    );
    assert!(
        message.contains(&hash) && message.contains("--training-config"),
        "{message}"
    );
    // Stored first, the same registration is admitted and the model carries the hash.
    assert_eq!(ledger.content().put_training_config(config).unwrap(), hash);
    let record = rec(&key(1), "model.register", register("m", &hash));
    let appended = ledger.submit(record.clone()).unwrap();
    let shown = ledger.with_state(|s| s.model("dave/m").unwrap().training.clone().unwrap());
    assert_eq!(shown.config_hash.as_deref(), Some(hash.as_str()));
    assert_eq!(
        ledger.content().training_config(&hash).unwrap()["learning_rate"],
        0.0002
    );
    // A resubmission stays a duplicate even after the blob is gone (admitted history).
    std::fs::remove_file(ledger.content().root().join(&hash["sha256:".len()..])).unwrap();
    let again = ledger.submit(record).unwrap();
    assert!(again.duplicate && again.index == appended.index);
}

#[test]
fn a_stored_document_that_is_not_a_json_object_or_is_corrupt_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = ledger_with_actor(tmp.path());
    // Content stored another way (as a contribution would be) is not a configuration.
    let list = ledger.content().put(b"[1, 2, 3]").unwrap();
    refused(
        &ledger,
        rec(&key(1), "model.register", register("list", &list)),
        "E_TRAINING_CONFIG_INVALID",
    );
    let good = ledger
        .content()
        .put_training_config(b"{\"epochs\": 3}")
        .unwrap();
    std::fs::write(
        ledger.content().root().join(&good["sha256:".len()..]),
        b"{\"epochs\": 30}",
    )
    .unwrap();
    refused(
        &ledger,
        rec(&key(1), "model.register", register("corrupt", &good)),
        "E_CONTENT_CORRUPT",
    );
}

#[test]
fn the_fold_answers_first_and_runs_without_a_config_need_nothing_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = ledger_with_actor(tmp.path());
    // Missing config *and* an unknown credited actor: the fold's reason is the answer (no
    // upload could make the record acceptable).
    let missing = content_ref(b"{}");
    let body = json!({"model_id": "dave/x", "name": "x",
                      "training": {"config_hash": missing,
                                   "credits": [{"actor": "nobody", "role": "trainer"}]}});
    refused(
        &ledger,
        rec(&key(1), "model.register", body),
        "E_ACTOR_UNKNOWN",
    );
    // No configuration named: nothing to check in the content store.
    ledger
        .submit(rec(
            &key(1),
            "model.register",
            json!({"model_id": "dave/y", "name": "y",
                   "training": {"framework": {"name": "PyTorch", "version": "2.4"}}}),
        ))
        .unwrap();
}
