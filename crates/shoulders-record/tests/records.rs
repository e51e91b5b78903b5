//! Data-driven tests for the record envelope: golden bytes, bad bodies, envelope mutations.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use serde_json::{json, Value};
use shoulders_record::{
    canonical_bytes, sign_record, ActorKey, Body, Kind, RecordError, SignedRecord, MAX_RECORD_BYTES,
};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn key(byte: u8) -> ActorKey {
    ActorKey::from_seed([byte; 32])
}

fn sample() -> SignedRecord {
    let body = Body::from_value(
        Kind::ActorRegister,
        json!({"handle": "alice", "name": "Alice"}),
    )
    .unwrap();
    sign_record(&key(1), "test.example/log", "id-1", 1_700_000_000_000, body).unwrap()
}

/// Each golden case is signed with a fixed seed; the bytes must match exactly, so any change
/// to canonical encoding or signing is caught. Regenerate deliberately with
/// `UPDATE_GOLDEN=1 cargo test -p shoulders-record --test records`.
#[test]
fn golden_records_have_exact_bytes() {
    let path = data("golden_records.json");
    let mut cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for case in &mut cases {
        let seed = hex::decode(case["seed_hex"].as_str().unwrap()).unwrap();
        let key = ActorKey::from_seed(seed.try_into().unwrap());
        let kind = Kind::parse(case["kind"].as_str().unwrap()).unwrap();
        let body = Body::from_value(kind, case["body"].clone()).unwrap();
        let rec = sign_record(
            &key,
            case["log"].as_str().unwrap(),
            case["client_id"].as_str().unwrap(),
            case["ts_ms"].as_u64().unwrap(),
            body,
        )
        .unwrap();
        let text = String::from_utf8(rec.bytes().to_vec()).unwrap();
        if update {
            case["bytes"] = Value::String(text.clone());
        }
        assert_eq!(
            case["bytes"].as_str(),
            Some(text.as_str()),
            "golden bytes changed for {}",
            case["kind"]
        );
        // The golden bytes decode, verify, and decode to the same record.
        let back = SignedRecord::from_bytes(text.into_bytes()).unwrap();
        assert_eq!(back, rec);
    }
    if update {
        std::fs::write(&path, serde_json::to_string_pretty(&cases).unwrap() + "\n").unwrap();
    }
}

#[test]
fn bad_bodies_get_their_codes() {
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(data("bad_bodies.json")).unwrap()).unwrap();
    assert!(cases.len() >= 30);
    for case in cases {
        let name = case["case"].as_str().unwrap();
        let kind = Kind::parse(case["kind"].as_str().unwrap()).unwrap();
        let err = Body::from_value(kind, case["body"].clone()).expect_err(name);
        assert_eq!(err.code(), case["code"].as_str().unwrap(), "{name}: {err}");
        if let Some(field) = case["field"].as_str() {
            match &err {
                RecordError::InvalidField { field: f, .. } => assert_eq!(f, field, "{name}"),
                other => panic!("{name}: expected a field error, got {other:?}"),
            }
        }
    }
}

fn mutate(rec: &SignedRecord, f: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(rec.bytes()).unwrap();
    f(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn code_of(bytes: Vec<u8>) -> &'static str {
    SignedRecord::from_bytes(bytes)
        .map(|_| ())
        .unwrap_err()
        .code()
}

#[test]
fn envelope_mutations_are_refused_with_stable_codes() {
    let rec = sample();
    assert!(SignedRecord::from_bytes(rec.bytes().to_vec()).is_ok());

    // Whitespace or reordered keys: same meaning, different bytes.
    let spaced = String::from_utf8(rec.bytes().to_vec())
        .unwrap()
        .replacen(",", ", ", 1);
    assert_eq!(code_of(spaced.into_bytes()), "E_RECORD_NOT_CANONICAL");
    let pretty =
        serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(rec.bytes()).unwrap()).unwrap();
    assert_eq!(code_of(pretty), "E_RECORD_NOT_CANONICAL");
    // An explicit null for an absent optional field is not canonical either.
    assert_eq!(
        code_of(mutate(&rec, |v| v["body"]["url"] = Value::Null)),
        "E_RECORD_NOT_CANONICAL"
    );

    assert_eq!(
        code_of(mutate(&rec, |v| v["v"] = json!(3))),
        "E_RECORD_VERSION"
    );
    // Version 1 records (before the ledger origin was signed) are no longer read.
    assert_eq!(
        code_of(mutate(&rec, |v| {
            v.as_object_mut().unwrap().remove("log");
            v["v"] = json!(1);
        })),
        "E_RECORD_VERSION"
    );
    assert_eq!(
        code_of(mutate(&rec, |v| {
            v.as_object_mut().unwrap().remove("log");
        })),
        "E_RECORD_SCHEMA"
    );
    assert_eq!(
        code_of(mutate(&rec, |v| v["log"] = json!("two words"))),
        "E_FIELD_INVALID"
    );
    assert_eq!(
        code_of(mutate(&rec, |v| v["kind"] = json!("actor.delete"))),
        "E_KIND_UNKNOWN"
    );
    assert_eq!(
        code_of(mutate(&rec, |v| v["ts_ms"] = json!(1.5))),
        "E_RECORD_BAD_NUMBER"
    );
    assert_eq!(
        code_of(mutate(&rec, |v| v["extra"] = json!(1))),
        "E_RECORD_SCHEMA"
    );
    assert_eq!(
        code_of(mutate(&rec, |v| {
            v.as_object_mut().unwrap().remove("sig");
        })),
        "E_RECORD_SCHEMA"
    );
    assert_eq!(
        code_of(mutate(&rec, |v| v["id"] = json!("has space"))),
        "E_FIELD_INVALID"
    );
    assert_eq!(
        code_of(mutate(&rec, |v| v["signer"] = json!("AAAA"))),
        "E_KEY_INVALID"
    );
    // Changing any signed field breaks the signature.
    assert_eq!(
        code_of(mutate(&rec, |v| v["ts_ms"] = json!(1_700_000_000_001u64))),
        "E_SIG_INVALID"
    );
    assert_eq!(
        code_of(mutate(&rec, |v| v["body"]["name"] = json!("Mallory"))),
        "E_SIG_INVALID"
    );
    // The ledger origin is signed: moving a record to another ledger breaks the signature.
    assert_eq!(
        code_of(mutate(&rec, |v| v["log"] = json!("other.example/log"))),
        "E_SIG_INVALID"
    );
    assert_eq!(
        code_of(mutate(&rec, |v| v["signer"] = json!(key(2).public().to_base64()))),
        "E_SIG_INVALID"
    );
    assert_eq!(
        code_of(mutate(&rec, |v| v["sig"] = json!(B64.encode([0u8; 64])))),
        "E_SIG_INVALID"
    );
    assert_eq!(
        code_of(mutate(&rec, |v| v["sig"] = json!("not base64!"))),
        "E_SIG_INVALID"
    );

    assert_eq!(code_of(b"{\"a\":".to_vec()), "E_RECORD_MALFORMED");
    assert_eq!(code_of(vec![0xff, 0xfe, b'{']), "E_RECORD_NOT_UTF8");
    assert_eq!(
        code_of(vec![b' '; MAX_RECORD_BYTES + 1]),
        "E_RECORD_TOO_LARGE"
    );
    assert_eq!(code_of(b"[]".to_vec()), "E_RECORD_SCHEMA");
    // A body given as an array (which serde would map onto struct fields) is refused.
    assert_eq!(
        Body::from_value(Kind::ActorRegister, json!(["alice", "Alice"]))
            .unwrap_err()
            .code(),
        "E_RECORD_SCHEMA"
    );
}

#[test]
fn signatures_do_not_verify_across_kinds_or_signers() {
    // A signature from one record pasted onto another record is refused.
    let a = sample();
    let body =
        Body::from_value(Kind::ActorRegister, json!({"handle": "bob", "name": "Bob"})).unwrap();
    let b = sign_record(&key(1), "test.example/log", "id-2", 1_700_000_000_000, body).unwrap();
    let a_sig: Value = serde_json::from_slice::<Value>(a.bytes()).unwrap()["sig"].clone();
    assert_eq!(code_of(mutate(&b, |v| v["sig"] = a_sig)), "E_SIG_INVALID");
}

#[test]
fn key_files_round_trip_and_reject_mismatches() {
    let k = key(9);
    let text = k.to_file_text();
    assert_eq!(
        ActorKey::from_file_text(&text).unwrap().public(),
        k.public()
    );
    assert!(
        !format!("{k:?}").contains(&B64.encode(k.seed())),
        "Debug must not print the secret"
    );
    let other = key(8).public().to_base64();
    let forged = text.replace(&k.public().to_base64(), &other);
    assert!(ActorKey::from_file_text(&forged).is_err());
    assert!(ActorKey::from_file_text("{}").is_err());
}

#[test]
fn every_kind_round_trips() {
    let bodies = [
        (
            Kind::ActorRegister,
            json!({"handle": "a", "name": "A", "payout_address": "IBAN DE00", "url": "https://a.example"}),
        ),
        (
            Kind::DatasetCreate,
            json!({"dataset_id": "a/d", "name": "D", "access": "allowlist", "allowlist": ["b", "c"]}),
        ),
        (
            Kind::DataContribute,
            json!({"dataset_id": "a/d", "content_hash": format!("sha256:{}", "0".repeat(64)), "byte_size": 10, "token_count": 3}),
        ),
        (
            Kind::ModelRegister,
            json!({"model_id": "a/m", "name": "M", "parents": [{"model_id": "a/p", "relation": "merge"}, {"model_id": "b/q", "relation": "merge"}]}),
        ),
        (
            Kind::LicenseDefine,
            json!({"license_id": "a/l", "name": "L", "spdx_id": "Apache-2.0", "terms": {"commercial_use": true, "derivatives": "approval_required", "attribution_required": true, "share_alike": false, "royalty_bps": 500, "data_share_bps": 2000, "currency": "USD", "price_per_call_micros": "1000", "price_per_1k_output_tokens_micros": "20000", "registration_fee_micros": "0", "royalty_floor_per_call_micros": "5000", "royalty_floor_per_1k_output_tokens_micros": "200", "forbidden_uses": ["surveillance"]}}),
        ),
        (
            Kind::LicenseGrant,
            json!({"license_id": "a/l", "model_id": "a/m", "grantee": "b", "uses": ["commercial"]}),
        ),
        (
            Kind::UsageReceipt,
            json!({"usage_id": "u-1", "model_id": "a/m", "payer": "b", "use_category": "research", "input_tokens": 5, "output_tokens": 7, "output_hash": format!("sha256:{}", "1".repeat(64)), "attribution": [{"dataset_id": "a/d", "contribution": 4, "ppm": 600000}, {"dataset_id": "a/d", "contribution": 5, "ppm": 400000}]}),
        ),
        (
            Kind::FundsDeposit,
            json!({"account": "b", "currency": "USD", "amount_micros": "1000000000000000000"}),
        ),
        (
            Kind::FundsWithdraw,
            json!({"currency": "USD", "amount_micros": "5"}),
        ),
        (
            Kind::LedgerConfig,
            json!({"operator": "op", "protocol_fee_bps": 250}),
        ),
        (
            Kind::ActorUpdate,
            json!({"payout_address": "IBAN DE00 0000"}),
        ),
        (Kind::LedgerClock, json!({"now_ms": 1_767_225_600_000u64})),
        (
            Kind::DisputeOpen,
            json!({"contribution": 4, "original": 2, "evidence": [format!("sha256:{}", "2".repeat(64))], "statement": "copies contribution 2", "bond": {"currency": "USD", "amount_micros": "500"}}),
        ),
        (
            Kind::DisputeRule,
            json!({"dispute": 9, "verdict": "upheld", "reason": "same text, later"}),
        ),
        (
            Kind::ContributionReview,
            json!({"contribution": 4, "decision": "accept", "quality": 80, "note": "clean"}),
        ),
    ];
    assert_eq!(bodies.len(), Kind::ALL.len());
    let extended = [
        (
            Kind::DatasetCreate,
            json!({"dataset_id": "a/r", "name": "R", "access": "open", "review": true, "quota": {"window_ms": 86_400_000u64, "max_bytes": 1_000_000u64, "max_count": 10}, "disputes": {"arbiter": "owner", "bond": {"currency": "USD", "amount_micros": "100"}}}),
        ),
        (
            Kind::DataContribute,
            json!({"dataset_id": "a/d", "content_hash": format!("sha256:{}", "0".repeat(64)), "byte_size": 10, "token_count": 3, "tdm_reservation": true}),
        ),
        (
            Kind::LedgerConfig,
            json!({"operator": "op", "protocol_fee_bps": 250, "dispute_bond": {"currency": "USD", "amount_micros": "100"}}),
        ),
        (
            Kind::DisputeOpen,
            json!({"model_id": "a/m", "evidence": [format!("sha256:{}", "2".repeat(64))], "statement": "my weights"}),
        ),
    ];
    for (kind, value) in bodies.into_iter().chain(extended) {
        let body = Body::from_value(kind, value.clone()).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(body.to_value(), value, "{kind}");
        let rec = sign_record(&key(3), "test.example/log", "x", 1, body).unwrap();
        assert_eq!(SignedRecord::from_bytes(rec.bytes().to_vec()).unwrap(), rec);
        // The fast composed encoding equals generic canonical JSON of the whole envelope.
        let (payload, full) = rec.record().encode();
        assert_eq!(
            full,
            canonical_bytes(&rec.record().envelope(true)),
            "{kind}"
        );
        let mut expected = shoulders_record::SIGNING_DOMAIN.to_vec();
        expected.extend(canonical_bytes(&rec.record().envelope(false)));
        assert_eq!(payload, expected, "{kind}");
    }
}

/// A receipt's `index_state` is optional: absent, the body's bytes are those of a receipt from
/// before it existed (so old receipts keep verifying); present, it round-trips canonically.
#[test]
fn receipt_index_state_is_omitted_when_absent_and_round_trips() {
    let base = json!({"usage_id": "u1", "model_id": "a/m", "payer": "bob", "use_category": "chat",
        "input_tokens": 1, "output_tokens": 2,
        "output_hash": "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "attribution": [{"dataset_id": "a/d", "contribution": 3, "ppm": 1_000_000}]});
    let old = Body::from_value(Kind::UsageReceipt, base.clone()).unwrap();
    let Body::UsageReceipt(r) = &old else {
        panic!("not a receipt")
    };
    assert_eq!(r.index_state, None);
    assert_eq!(old.to_value(), base, "no index_state key is written");
    let mut with = base.clone();
    with["index_state"] = json!({"ledger_size": 9, "segments": [4, 9]});
    let body = Body::from_value(Kind::UsageReceipt, with.clone()).unwrap();
    assert_eq!(body.to_value(), with);
    let rec = sign_record(&key(7), "test.example/log", "r1", 1, body).unwrap();
    let again = SignedRecord::from_bytes(rec.bytes().to_vec()).unwrap();
    assert_eq!(again.record().body, rec.record().body);
}
