//! Governance end to end through the binary: a contribution with a do-not-train mark refuses a
//! model registration, a dispute opened and upheld with `shoulders submit` redirects escrowed
//! and future credit, and `verify` recomputes all of it from the export.

mod common;

use common::{ok_json, shoulders, stderr, submit_out};
use serde_json::{json, Value};
use std::path::Path;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn submit(data: &Path, key: &Path, kind: &str, body: Value, dir: &Path) -> u64 {
    ok_json(submit_out(data, key, kind, body, dir))["index"]
        .as_u64()
        .unwrap()
}

fn contribute(data: &Path, key: &Path, text: &str, extra: &[&str], dir: &Path) -> u64 {
    let doc = dir.join(format!("doc-{}.txt", rand::random::<u64>()));
    std::fs::write(&doc, text).unwrap();
    let mut args = vec![
        "contribute",
        "--data-dir",
        p(data),
        "--key",
        p(key),
        "--dataset",
        "owner/d",
    ];
    args.extend_from_slice(extra);
    args.push(p(&doc));
    ok_json(shoulders(&args))["index"].as_u64().unwrap()
}

#[test]
fn do_not_train_and_a_dispute_through_the_binary() {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path();
    let data = dir.join("ledger");
    let out = shoulders(&["init", "--data-dir", p(&data), "--operator", "op"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let vkey = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let op_key = data.join("operator.key");
    let mut keys = std::collections::BTreeMap::new();
    for handle in ["owner", "copier", "author", "payer"] {
        let key = dir.join(format!("{handle}.key"));
        ok_json(shoulders(&["key", "new", "--out", p(&key)]));
        submit(
            &data,
            &key,
            "actor.register",
            json!({"handle": handle, "name": handle, "payout_address": format!("acct:{handle}")}),
            dir,
        );
        keys.insert(handle, key);
    }
    submit(
        &data,
        &keys["owner"],
        "license.define",
        json!({"license_id": "owner/l", "name": "L", "terms": {
            "commercial_use": true, "derivatives": "allowed", "attribution_required": false,
            "share_alike": false, "royalty_bps": 0, "data_share_bps": 5000, "currency": "USD",
            "price_per_call_micros": "1000", "price_per_1k_output_tokens_micros": "0",
            "registration_fee_micros": "0"}}),
        dir,
    );
    submit(
        &data,
        &keys["owner"],
        "dataset.create",
        json!({"dataset_id": "owner/d", "name": "D", "access": "open"}),
        dir,
    );
    let text = "a poem the author wrote, which the copier uploaded first";
    let copy = contribute(&data, &keys["copier"], text, &[], dir);
    let original = contribute(&data, &keys["author"], text, &[], dir);
    let reserved = contribute(
        &data,
        &keys["author"],
        "notes the author does not want mined",
        &["--tdm-reservation"],
        dir,
    );
    let model = json!({"model_id": "owner/m", "name": "M", "datasets": ["owner/d"],
                       "license_id": "owner/l"});
    let out = submit_out(&data, &keys["owner"], "model.register", model.clone(), dir);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("E_TDM_RESERVED") && err.contains(&format!("[{reserved}]")),
        "{err}"
    );

    // Attribution still finds reserved content, and says it is reserved.
    ok_json(shoulders(&[
        "index",
        "build",
        "--data-dir",
        p(&data),
        "owner/d",
    ]));
    let output = dir.join("output.txt");
    std::fs::write(
        &output,
        "the model said: notes the author does not want mined",
    )
    .unwrap();
    let report = ok_json(shoulders(&[
        "attribute",
        "--data-dir",
        p(&data),
        "--dataset",
        "owner/d",
        "--text",
        p(&output),
    ]));
    assert_eq!(report["tdm_reserved"], json!([reserved]), "{report}");
    assert!(report["shares"]["contributions_ppm"]
        .get(reserved.to_string())
        .is_some());

    // The reserved contribution is disputed and taken down, after which the model registers.
    let takedown = submit(
        &data,
        &keys["owner"],
        "dispute.open",
        json!({"contribution": reserved, "evidence": [format!("sha256:{}", "1".repeat(64))],
               "statement": "not meant for this dataset"}),
        dir,
    );
    submit(
        &data,
        &op_key,
        "dispute.rule",
        json!({"dispute": takedown, "verdict": "upheld", "reason": "withdrawn by agreement"}),
        dir,
    );
    submit(&data, &keys["owner"], "model.register", model, dir);

    // The author disputes the copy; a receipt while it is open is escrowed; the ruling pays it.
    let dispute = submit(
        &data,
        &keys["author"],
        "dispute.open",
        json!({"contribution": copy, "original": original,
               "evidence": [format!("sha256:{}", "2".repeat(64))],
               "statement": "my poem, uploaded by someone else first"}),
        dir,
    );
    submit(
        &data,
        &op_key,
        "funds.deposit",
        json!({"account": "payer", "currency": "USD", "amount_micros": "10000"}),
        dir,
    );
    let receipt = |n: u32| {
        json!({"usage_id": format!("u{n}"), "model_id": "owner/m", "payer": "payer",
               "use_category": "commercial", "input_tokens": 1, "output_tokens": 0,
               "output_hash": format!("sha256:{}", "3".repeat(64)),
               "attribution": [{"dataset_id": "owner/d", "contribution": copy, "ppm": 1_000_000}]})
    };
    submit(&data, &op_key, "usage.receipt", receipt(1), dir);
    let shown = ok_json(shoulders(&["statement", "--data-dir", p(&data), "copier"]));
    assert!(
        shown["statement"]["by_source"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["held_in_escrow"] == dispute),
        "{shown}"
    );
    submit(
        &data,
        &op_key,
        "dispute.rule",
        json!({"dispute": dispute, "verdict": "upheld", "reason": "same text, author's drafts older"}),
        dir,
    );
    submit(&data, &op_key, "usage.receipt", receipt(2), dir);
    let accounts = ok_json(shoulders(&["accounts", "--data-dir", p(&data)]));
    let balance = |who: &str| {
        accounts["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["account"] == who)
            .map_or(0, |a| {
                a["balance_micros"]
                    .as_str()
                    .unwrap()
                    .parse::<i64>()
                    .unwrap()
            })
    };
    assert_eq!(
        balance("author"),
        1000,
        "escrow (500) and the later receipt's pool (500)"
    );
    assert_eq!(balance("copier"), 0);
    assert_eq!(balance(&format!("@escrow/{dispute}")), 0);

    let export = dir.join("export.txt");
    ok_json(shoulders(&[
        "export",
        "--data-dir",
        p(&data),
        "--out",
        p(&export),
    ]));
    let report = ok_json(shoulders(&["verify", "--key", &vkey, p(&export)]));
    assert_eq!(report["receipts"], 2, "{report}");
}
