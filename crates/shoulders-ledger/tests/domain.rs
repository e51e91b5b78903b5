//! Domain separation (issue 15, attack 3): every record signs the origin of the one ledger it is
//! for. A record signed for another ledger (a `funds.withdraw` from a ledger where the same
//! actor also holds funds) is refused with `E_WRONG_LEDGER`, moves nothing, and an export that
//! contains one does not verify.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use serde_json::json;
use shoulders_ledger::{init_with, verify_export, DataDir, Ledger, OperatorInit, EXPORT_MAGIC};
use shoulders_log::{leaf_hash, Frontier, LogSigner};
use shoulders_record::{sign_record, ActorKey, Body, Kind};

const TS_MS: u64 = 1_767_225_600_000;

fn sign(key: &ActorKey, log: &str, id: &str, kind: Kind, body: serde_json::Value) -> Vec<u8> {
    sign_record(key, log, id, TS_MS, Body::from_value(kind, body).unwrap())
        .unwrap()
        .bytes()
        .to_vec()
}

/// A ledger named `origin` with an operator, and `zed` (the same key everywhere) holding
/// 1000 USD micro-units.
fn funded(root: &std::path::Path, origin: &str, zed: &ActorKey) -> (DataDir, Ledger) {
    let data = DataDir::new(root.join(origin.replace('/', "_")));
    let op = OperatorInit {
        handle: "op".into(),
        name: "Op".into(),
        protocol_fee_bps: 0,
        ts_ms: TS_MS,
    };
    init_with(&data, origin, Some(&op), &mut rand_core::OsRng).unwrap();
    let ledger = Ledger::open(&data).unwrap();
    let op_key =
        ActorKey::from_file_text(&std::fs::read_to_string(data.operator_key()).unwrap()).unwrap();
    let reg = json!({"handle": "zed", "name": "Zed"});
    ledger
        .submit(sign(zed, origin, "reg", Kind::ActorRegister, reg))
        .unwrap();
    let deposit = json!({"account": "zed", "currency": "USD", "amount_micros": "1000"});
    ledger
        .submit(sign(&op_key, origin, "dep", Kind::FundsDeposit, deposit))
        .unwrap();
    (data, ledger)
}

#[test]
fn a_record_signed_for_another_ledger_is_refused_and_moves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let zed = ActorKey::from_seed([5; 32]);
    let (_, a) = funded(tmp.path(), "a.example/log", &zed);
    let (_, b) = funded(tmp.path(), "b.example/log", &zed);
    let withdraw = json!({"currency": "USD", "amount_micros": "700",
                          "payout_address": "https://zed.example/pay"});
    let for_a = sign(&zed, "a.example/log", "w1", Kind::FundsWithdraw, withdraw);

    // The attack: replay zed's withdrawal from ledger A on ledger B.
    let size_before = b.size();
    let err = b.submit(for_a.clone()).unwrap_err();
    assert_eq!(err.code(), "E_WRONG_LEDGER", "{err}");
    assert!(err.to_string().contains("a.example/log"), "{err}");
    assert_eq!(b.size(), size_before, "nothing appended");
    assert_eq!(b.with_state(|s| s.balance("zed", "USD")), 1000);
    // The same attack in a batch, and through the content-first path's precheck.
    let outcomes = b.submit_batch(vec![for_a.clone()]);
    assert_eq!(outcomes[0].as_ref().unwrap_err().code(), "E_WRONG_LEDGER");
    assert_eq!(b.size(), size_before);

    // On the ledger it was signed for, it is an ordinary withdrawal.
    a.submit(for_a).unwrap();
    assert_eq!(a.with_state(|s| s.balance("zed", "USD")), 300);
    assert_eq!(b.with_state(|s| s.balance("zed", "USD")), 1000);
    // Both books still verify.
    for ledger in [&a, &b] {
        let mut export = Vec::new();
        ledger.export(&mut export).unwrap();
        let key = ledger.verifier_key().to_string();
        verify_export(&export, &key).unwrap();
    }
}

#[test]
fn verify_refuses_an_export_holding_a_record_of_another_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let zed = ActorKey::from_seed([6; 32]);
    let (data, a) = funded(tmp.path(), "a.example/log", &zed);
    let mut export = Vec::new();
    a.export(&mut export).unwrap();
    let key = a.verifier_key().to_string();
    drop(a);

    // A dishonest operator swaps in a record signed for another ledger (valid signature,
    // same meaning) and signs a checkpoint over the result with the log's own key.
    let text = String::from_utf8(export).unwrap();
    let body = text.strip_prefix(&format!("{EXPORT_MAGIC}\n")).unwrap();
    let (records, _) = body.split_once("\n\n").unwrap();
    let mut lines: Vec<String> = records.lines().map(String::from).collect();
    let last = lines.len() - 1;
    let op_key =
        ActorKey::from_file_text(&std::fs::read_to_string(data.operator_key()).unwrap()).unwrap();
    let deposit = json!({"account": "zed", "currency": "USD", "amount_micros": "1000"});
    lines[last] = B64.encode(sign(
        &op_key,
        "b.example/log",
        "dep",
        Kind::FundsDeposit,
        deposit,
    ));
    let mut tree = Frontier::new();
    for line in &lines {
        tree.append(leaf_hash(&B64.decode(line).unwrap()));
    }
    let signer =
        LogSigner::new(std::fs::read_to_string(data.signer_key()).unwrap().trim()).unwrap();
    let note = signer.sign(tree.size(), tree.root()).unwrap();
    let mut forged = format!("{EXPORT_MAGIC}\n{}\n\n", lines.join("\n")).into_bytes();
    forged.extend_from_slice(&note);

    let failure = verify_export(&forged, &key).unwrap_err();
    assert_eq!(failure.code, "E_WRONG_LEDGER", "{}", failure.message);
    assert_eq!(failure.index, Some(last as u64));
}
