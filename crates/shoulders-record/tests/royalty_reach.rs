//! Royalty policies in records: `terms.royalty_reach`, `model.register.max_royalty_bps` and
//! `usage.receipt.max_royalty_bps` are optional and omitted when absent, so records written
//! before they existed keep their exact bytes (and signatures) and meaning.

use serde_json::{json, Value};
use shoulders_record::{
    sign_record, ActorKey, Body, Kind, LicenseDefine, RecordError, RoyaltyReach, SignedRecord,
};

fn terms() -> Value {
    json!({"commercial_use": true, "derivatives": "allowed", "attribution_required": true,
           "share_alike": false, "royalty_bps": 500, "data_share_bps": 2000, "currency": "USD",
           "price_per_call_micros": "1000", "price_per_1k_output_tokens_micros": "20000",
           "registration_fee_micros": "0", "royalty_floor_per_call_micros": "5000"})
}

fn signed(kind: Kind, body: Value) -> String {
    let body = Body::from_value(kind, body).unwrap();
    let rec = sign_record(
        &ActorKey::from_seed([7; 32]),
        "golden.example/log",
        "golden-reach",
        1_767_225_600_000,
        body,
    )
    .unwrap();
    String::from_utf8(rec.bytes().to_vec()).unwrap()
}

/// The exact bytes these records had before the royalty policy fields existed (captured from
/// the encoder of that time): a licence without `royalty_reach`, a receipt and a registration
/// without `max_royalty_bps`.
const BEFORE: [(&str, &str); 3] = [
    (
        "license.define",
        r#"{"body":{"license_id":"alice/base-lic","name":"Base","terms":{"attribution_required":true,"commercial_use":true,"currency":"USD","data_share_bps":2000,"derivatives":"allowed","price_per_1k_output_tokens_micros":"20000","price_per_call_micros":"1000","registration_fee_micros":"0","royalty_bps":500,"royalty_floor_per_call_micros":"5000","share_alike":false}},"id":"golden-reach","kind":"license.define","log":"golden.example/log","sig":"FzExCTSQcx1CeEvUxhFCSCBAglI9RWWcM7U5lgEUw0K9lI68FzAyCo8xGvdZuq26CfHiBlCdQRInKGLsML3fDg==","signer":"6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw=","ts_ms":1767225600000,"v":2}"#,
    ),
    (
        "usage.receipt",
        r#"{"body":{"input_tokens":5,"model_id":"alice/m","output_hash":"sha256:1111111111111111111111111111111111111111111111111111111111111111","output_tokens":7,"payer":"bob","usage_id":"u-1","use_category":"chat"},"id":"golden-reach","kind":"usage.receipt","log":"golden.example/log","sig":"dC3iZMKdlrcFddT5p2965mtLN6DhS5LlbzvSosYYjIiAlwaTnvPb6prqojzEGcyEDy85c8oY78qVSdYpfgSlDQ==","signer":"6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw=","ts_ms":1767225600000,"v":2}"#,
    ),
    (
        "model.register",
        r#"{"body":{"license_id":"bob/lic","model_id":"bob/child","name":"Child","parents":[{"model_id":"alice/base","relation":"finetune"}]},"id":"golden-reach","kind":"model.register","log":"golden.example/log","sig":"uLvnbeGn0bblbx2iIBEoNktcq56LleywVKP85eMkKe4MqAbyNXgd7/AfjRiD/Wir4JzOdSwN4vOqVQkpu6NKBw==","signer":"6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw=","ts_ms":1767225600000,"v":2}"#,
    ),
];

#[test]
fn records_without_the_new_fields_keep_their_bytes() {
    let bodies = [
        json!({"license_id": "alice/base-lic", "name": "Base", "terms": terms()}),
        json!({"usage_id": "u-1", "model_id": "alice/m", "payer": "bob", "use_category": "chat", "input_tokens": 5, "output_tokens": 7, "output_hash": format!("sha256:{}", "1".repeat(64))}),
        json!({"model_id": "bob/child", "name": "Child", "parents": [{"model_id": "alice/base", "relation": "finetune"}], "license_id": "bob/lic"}),
    ];
    for ((kind, before), body) in BEFORE.into_iter().zip(bodies) {
        let kind = Kind::parse(kind).unwrap();
        assert_eq!(signed(kind, body), before, "{kind}");
        // The old bytes still decode, verify and mean "no policy".
        let rec = SignedRecord::from_bytes(before.as_bytes().to_vec()).unwrap();
        match &rec.record().body {
            Body::LicenseDefine(b) => assert_eq!(b.terms.royalty_reach, None),
            Body::UsageReceipt(b) => assert_eq!(b.max_royalty_bps, None),
            Body::ModelRegister(b) => assert_eq!(b.max_royalty_bps, None),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn the_new_fields_round_trip_in_snake_case() {
    for (reach, text) in [
        (RoyaltyReach::AllAncestors, "all_ancestors"),
        (RoyaltyReach::DirectParent, "direct_parent"),
    ] {
        let mut t = terms();
        t["royalty_reach"] = json!(text);
        let value = json!({"license_id": "a/l", "name": "L", "terms": t});
        let body = Body::from_value(Kind::LicenseDefine, value.clone()).unwrap();
        let Body::LicenseDefine(LicenseDefine { terms, .. }) = &body else {
            unreachable!()
        };
        assert_eq!(terms.royalty_reach, Some(reach));
        assert_eq!(body.to_value(), value);
        assert_eq!(reach.as_str(), text);
        assert_eq!(text.parse::<RoyaltyReach>(), Ok(reach));
    }
    assert_eq!(RoyaltyReach::default(), RoyaltyReach::AllAncestors);
    for max in [0u32, 2500, 10_000] {
        let value = json!({"model_id": "a/m", "name": "M", "max_royalty_bps": max});
        let body = Body::from_value(Kind::ModelRegister, value.clone()).unwrap();
        assert_eq!(body.to_value(), value);
        let value = json!({"usage_id": "u-1", "model_id": "a/m", "payer": "b", "use_category": "chat", "input_tokens": 1, "output_tokens": 1, "output_hash": format!("sha256:{}", "1".repeat(64)), "max_royalty_bps": max});
        let body = Body::from_value(Kind::UsageReceipt, value.clone()).unwrap();
        assert_eq!(body.to_value(), value);
    }
}

#[test]
fn bad_values_are_refused_with_codes() {
    let mut t = terms();
    t["royalty_reach"] = json!("grandparents");
    let err = Body::from_value(
        Kind::LicenseDefine,
        json!({"license_id": "a/l", "name": "L", "terms": t}),
    )
    .unwrap_err();
    assert_eq!(err.code(), "E_RECORD_SCHEMA", "{err}");
    assert!("grandparents".parse::<RoyaltyReach>().is_err());
    let over = [
        (
            Kind::ModelRegister,
            json!({"model_id": "a/m", "name": "M", "max_royalty_bps": 10_001}),
        ),
        (
            Kind::UsageReceipt,
            json!({"usage_id": "u-1", "model_id": "a/m", "payer": "b", "use_category": "chat", "input_tokens": 1, "output_tokens": 1, "output_hash": format!("sha256:{}", "1".repeat(64)), "max_royalty_bps": 10_001}),
        ),
    ];
    for (kind, value) in over {
        match Body::from_value(kind, value).unwrap_err() {
            RecordError::InvalidField { field, .. } => assert_eq!(field, "max_royalty_bps"),
            other => panic!("{kind}: {other:?}"),
        }
    }
}
