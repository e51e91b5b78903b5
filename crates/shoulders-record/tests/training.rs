//! `model.register.training`: optional, omitted when absent (so earlier registrations keep
//! their bytes and signatures), and fully checked when present.

use serde_json::{json, Value};
use shoulders_record::{sign_record, ActorKey, Body, CreditRole, Kind, SignedRecord, MAX_CREDITS};

fn full_training() -> Value {
    json!({
        "config_hash": format!("sha256:{}", "ab".repeat(32)),
        "code": {"repository": "https://git.example.org/dave/verse-instruct",
                 "commit": "0123456789abcdef0123456789abcdef01234567"},
        "framework": {"name": "PyTorch", "version": "2.4.0+cu121"},
        "credits": [{"actor": "carol-lab", "role": "framework_author"},
                    {"actor": "dave", "role": "trainer"},
                    {"actor": "dave", "role": "data_engineer"},
                    {"actor": "alice", "role": "evaluator"}],
        "compute": {"hardware": "1x NVIDIA A100 80GB", "accelerator_hours": 6,
                    "energy_wh": 2400, "region": "eu-west-1"}
    })
}

fn signed(body: Value) -> SignedRecord {
    let body = Body::from_value(Kind::ModelRegister, body).unwrap();
    sign_record(
        &ActorKey::from_seed([9; 32]),
        "golden.example/log",
        "run-1",
        1_767_225_600_000,
        body,
    )
    .unwrap()
}

#[test]
fn a_full_training_run_round_trips_through_signed_bytes() {
    let rec = signed(json!({"model_id": "dave/m", "name": "M", "training": full_training()}));
    let back = SignedRecord::from_bytes(rec.bytes().to_vec()).unwrap();
    let Body::ModelRegister(b) = &back.record().body else {
        panic!("not a model.register")
    };
    let t = b.training.as_ref().expect("training kept");
    assert_eq!(t.credits.len(), 4);
    assert_eq!(t.credits[0].role, CreditRole::FrameworkAuthor);
    assert_eq!(t.compute.as_ref().unwrap().energy_wh, Some(2400));
    assert_eq!(t.code.as_ref().unwrap().commit.len(), 40);
    // A 64-digit (SHA-256 repository) commit is accepted too.
    let mut sha256_repo = full_training();
    sha256_repo["code"]["commit"] = json!("f".repeat(64));
    signed(json!({"model_id": "dave/m", "name": "M", "training": sha256_repo}));
}

#[test]
fn parts_of_a_training_run_may_be_left_out() {
    for training in [
        json!({"framework": {"name": "JAX", "version": "0.4.30"}}),
        json!({"credits": [{"actor": "alice", "role": "evaluator"}]}),
        json!({"compute": {"energy_wh": 0}}),
        json!({"config_hash": format!("sha256:{}", "0".repeat(64))}),
    ] {
        let rec = signed(json!({"model_id": "dave/m", "name": "M", "training": training}));
        // Absent parts are omitted from the canonical bytes, never written as null or [].
        let text = String::from_utf8(rec.bytes().to_vec()).unwrap();
        assert!(!text.contains("null") && !text.contains("[]"), "{text}");
    }
}

#[test]
fn without_training_the_bytes_do_not_mention_it() {
    let rec = signed(json!({"model_id": "dave/m", "name": "M"}));
    assert!(!String::from_utf8_lossy(rec.bytes()).contains("training"));
}

#[test]
fn credits_up_to_the_limit_are_accepted() {
    let credits: Vec<Value> = (0..MAX_CREDITS)
        .map(|i| json!({"actor": format!("a{i}"), "role": "evaluator"}))
        .collect();
    signed(json!({"model_id": "dave/m", "name": "M", "training": {"credits": credits}}));
    // The same actor in different roles is two credits.
    let roles: Vec<Value> = CreditRole::ALL
        .iter()
        .map(|r| json!({"actor": "dave", "role": r.as_str()}))
        .collect();
    signed(json!({"model_id": "dave/m", "name": "M", "training": {"credits": roles}}));
    assert_eq!("trainer".parse::<CreditRole>(), Ok(CreditRole::Trainer));
    assert!("investor".parse::<CreditRole>().is_err());
}
