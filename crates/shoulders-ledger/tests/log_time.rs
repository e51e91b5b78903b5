//! Log time (issue 15, attack 4): a record back-dated to just before a licence's expiry, sent
//! after it, was accepted because licence rules used the signer's timestamp. The writer now
//! puts a `ledger.clock` record (the operator's, with its own clock) before any record a time
//! rule applies to when the log's clock is stale, and the fold judges such records at the
//! later of the two times: the back-dated use and derivation are refused, the clock is in the
//! log, and the export verifies.

use serde_json::{json, Value};
use shoulders_ledger::{init_with, verify_export, DataDir, Ledger, OperatorInit};
use shoulders_record::{sign_record, ActorKey, Body, Kind, SignedRecord};

const LOG: &str = "time.example/log";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn sign(key: &ActorKey, id: &str, ts_ms: u64, kind: Kind, body: Value) -> Vec<u8> {
    sign_record(key, LOG, id, ts_ms, Body::from_value(kind, body).unwrap())
        .unwrap()
        .bytes()
        .to_vec()
}

fn kinds(ledger: &Ledger) -> Vec<String> {
    let mut out = Vec::new();
    ledger.export(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let body = text.split_once('\n').unwrap().1;
    let records = body.split_once("\n\n").unwrap().0;
    records
        .lines()
        .map(|l| {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD.decode(l).unwrap();
            SignedRecord::decode(bytes)
                .unwrap()
                .record()
                .kind
                .to_string()
        })
        .collect()
}

#[test]
fn a_back_dated_record_cannot_dodge_an_expiry_the_log_has_passed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("ledger"));
    let t0 = now_ms();
    let op = OperatorInit {
        handle: "op".into(),
        name: "Op".into(),
        protocol_fee_bps: 100,
        ts_ms: t0,
    };
    init_with(&data, LOG, Some(&op), &mut rand_core::OsRng).unwrap();
    let ledger = Ledger::open(&data).unwrap();
    let op_key =
        ActorKey::from_file_text(&std::fs::read_to_string(data.operator_key()).unwrap()).unwrap();
    let acme = ActorKey::from_seed([1; 32]);
    let pay = ActorKey::from_seed([2; 32]);
    let expires_at_ms = t0 + 1500;
    let submit = |key: &ActorKey, id: &str, ts: u64, kind: Kind, body: Value| {
        ledger.submit(sign(key, id, ts, kind, body))
    };
    submit(
        &acme,
        "a",
        t0,
        Kind::ActorRegister,
        json!({"handle": "acme", "name": "Acme"}),
    )
    .unwrap();
    submit(
        &pay,
        "p",
        t0,
        Kind::ActorRegister,
        json!({"handle": "pay", "name": "Pay"}),
    )
    .unwrap();
    submit(
        &acme,
        "l",
        t0,
        Kind::LicenseDefine,
        json!({"license_id": "acme/lic", "name": "lic", "terms": {
        "commercial_use": true, "derivatives": "allowed", "attribution_required": false,
        "share_alike": false, "royalty_bps": 0, "data_share_bps": 0, "currency": "USD",
        "price_per_call_micros": "1000", "price_per_1k_output_tokens_micros": "0",
        "registration_fee_micros": "0", "expires_at_ms": expires_at_ms}}),
    )
    .unwrap();
    submit(
        &acme,
        "m",
        t0,
        Kind::ModelRegister,
        json!({"model_id": "acme/m", "name": "m", "license_id": "acme/lic"}),
    )
    .unwrap();
    submit(
        &op_key,
        "d",
        t0,
        Kind::FundsDeposit,
        json!({"account": "pay", "currency": "USD", "amount_micros": "100000"}),
    )
    .unwrap();
    let receipt = |usage_id: &str| {
        json!({"usage_id": usage_id, "model_id": "acme/m", "payer": "pay",
        "use_category": "chat", "input_tokens": 1, "output_tokens": 1,
        "output_hash": format!("sha256:{:064x}", 9), "attribution": []})
    };
    // Before the expiry, a use is charged (and the log's clock is set on the way).
    let u1 = sign(&op_key, "u1", now_ms(), Kind::UsageReceipt, receipt("u1"));
    let appended = ledger.submit(u1.clone()).unwrap();
    let charged = ledger.with_state(|s| s.balance("pay", "USD"));
    assert_eq!(charged, 99_000);
    // The append reports what the fold charged, exactly as the store holds it.
    let c = appended
        .charged
        .clone()
        .expect("a receipt reports its charge");
    let (row, legs) = ledger
        .with_history(|_, store| {
            Ok((
                store.receipt(appended.index)?.unwrap(),
                store.legs_of_record(appended.index)?.len(),
            ))
        })
        .unwrap();
    assert_eq!(c.charge_micros.to_string(), row.charge_micros);
    assert_eq!(c.charge_micros, 1_000);
    assert_eq!(&*c.currency, row.currency);
    assert_eq!(c.legs, legs);
    assert!(legs > 0);
    let again = ledger.submit(u1).unwrap();
    assert!(again.duplicate && again.charged.is_none());

    // Wait until the expiry is more than a clock tick behind.
    while now_ms() < expires_at_ms + 1000 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let size = ledger.size();
    // The attack: signed as if 1 s before the expiry, sent after it.
    let back_dated = expires_at_ms - 1000;
    let err = submit(&op_key, "u2", back_dated, Kind::UsageReceipt, receipt("u2")).unwrap_err();
    assert_eq!(err.code(), "E_USE_DENIED", "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
    let err = submit(&acme, "m2", back_dated, Kind::ModelRegister,
        json!({"model_id": "acme/m2", "name": "m2", "parents": [{"model_id": "acme/m", "relation": "finetune"}]}))
    .unwrap_err();
    assert_eq!(err.code(), "E_LICENSE_EXPIRED", "{err}");
    // Nothing was charged; only the log's clock was appended, once (it is fresh for the
    // second refusal).
    assert_eq!(ledger.with_state(|s| s.balance("pay", "USD")), charged);
    assert_eq!(ledger.size(), size + 1);
    let kinds = kinds(&ledger);
    assert_eq!(kinds.last().unwrap(), "ledger.clock");
    assert_eq!(
        kinds.iter().filter(|k| *k == "ledger.clock").count(),
        2,
        "{kinds:?}"
    );
    let log_time = ledger.with_state(|s| s.log_time_ms());
    assert!(log_time >= expires_at_ms + 1000, "{log_time}");

    // Records no time rule applies to do not move the clock.
    submit(
        &pay,
        "x",
        now_ms(),
        Kind::DatasetCreate,
        json!({"dataset_id": "pay/d", "name": "d", "access": "open"}),
    )
    .unwrap();
    assert_eq!(ledger.size(), size + 2);

    // Only the operator keeps the log's time, and it never goes back.
    let err = submit(
        &acme,
        "c1",
        now_ms(),
        Kind::LedgerClock,
        json!({"now_ms": now_ms()}),
    )
    .unwrap_err();
    assert_eq!(err.code(), "E_NOT_OPERATOR");
    let err = submit(
        &op_key,
        "c2",
        now_ms(),
        Kind::LedgerClock,
        json!({"now_ms": log_time - 1}),
    )
    .unwrap_err();
    assert_eq!(err.code(), "E_CLOCK_BACKWARDS");

    // The clock survives a reopen (stored state), and the whole log verifies.
    drop(ledger);
    let ledger = Ledger::open(&data).unwrap();
    assert_eq!(ledger.with_state(|s| s.log_time_ms()), log_time);
    let mut export = Vec::new();
    ledger.export(&mut export).unwrap();
    let (_, state) = verify_export(&export, ledger.verifier_key()).unwrap();
    assert_eq!(state.log_time_ms(), log_time);
    assert_eq!(state.balance("pay", "USD"), charged);
}
