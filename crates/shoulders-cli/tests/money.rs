//! Money end to end through the binary: an operated ledger, deposits, batch settlement (twice:
//! idempotent), statements whose every line is proven against the checkpoint, accounts that
//! balance, and an export that verifies with its receipts and legs recomputed.

mod common;

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use common::{ok_json, shoulders, stderr, submit_out};
use serde_json::{json, Value};
use shoulders_log::{verify_inclusion, Hash, LogVerifier};
use std::io::Write;
use std::path::Path;

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn submit(data: &Path, key: &Path, kind: &str, body: Value, dir: &Path) -> Value {
    ok_json(submit_out(data, key, kind, body, dir))
}

fn hash_of(b64: &str) -> Hash {
    Hash(B64.decode(b64).unwrap().try_into().unwrap())
}

#[test]
fn settle_statements_accounts_and_verify() {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path();
    let data = dir.join("ledger");
    let out = shoulders(&[
        "init",
        "--data-dir",
        p(&data),
        "--operator",
        "op",
        "--protocol-fee-bps",
        "100",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let vkey = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let mut keys = std::collections::BTreeMap::new();
    for (handle, payout) in [
        ("base", true),
        ("tuner", true),
        ("alice", true),
        ("bob", false),
        ("payer", false),
    ] {
        let key = dir.join(format!("{handle}.key"));
        ok_json(shoulders(&["key", "new", "--out", p(&key)]));
        let mut body = json!({"handle": handle, "name": handle});
        if payout {
            body["payout_address"] = json!(format!("acct:{handle}"));
        }
        submit(&data, &key, "actor.register", body, dir);
        keys.insert(handle, key);
    }
    let terms = |royalty: u32, data_share: u32, per_call: &str| {
        json!({
        "commercial_use": true, "derivatives": "allowed", "attribution_required": true,
        "share_alike": false, "royalty_bps": royalty, "data_share_bps": data_share, "currency": "USD",
        "price_per_call_micros": per_call, "price_per_1k_output_tokens_micros": "1000",
        "registration_fee_micros": "0"})
    };
    submit(
        &data,
        &keys["base"],
        "license.define",
        json!({"license_id": "base/l", "name": "L", "terms": terms(1000, 0, "10")}),
        dir,
    );
    submit(
        &data,
        &keys["base"],
        "model.register",
        json!({"model_id": "base/m", "name": "Base", "license_id": "base/l"}),
        dir,
    );
    submit(
        &data,
        &keys["alice"],
        "dataset.create",
        json!({"dataset_id": "alice/d", "name": "D", "access": "open"}),
        dir,
    );
    let mut contributions = Vec::new();
    for (who, text) in [
        ("alice", "the first poem, by alice"),
        ("bob", "a second poem, by bob"),
    ] {
        let doc = dir.join(format!("{who}.txt"));
        std::fs::write(&doc, text).unwrap();
        let v = ok_json(shoulders(&[
            "contribute",
            "--data-dir",
            p(&data),
            "--key",
            p(&keys[who]),
            "--dataset",
            "alice/d",
            p(&doc),
        ]));
        contributions.push(v["index"].as_u64().unwrap());
    }
    submit(
        &data,
        &keys["tuner"],
        "license.define",
        json!({"license_id": "tuner/l", "name": "L", "terms": terms(0, 5000, "1000000")}),
        dir,
    );
    submit(
        &data,
        &keys["tuner"],
        "model.register",
        json!({"model_id": "tuner/m", "name": "Tuned",
        "parents": [{"model_id": "base/m", "relation": "finetune"}], "datasets": ["alice/d"], "license_id": "tuner/l"}),
        dir,
    );
    ok_json(shoulders(&[
        "deposit",
        "--data-dir",
        p(&data),
        "--account",
        "payer",
        "--amount-micros",
        "500000000",
        "--id",
        "dep-1",
    ]));

    // 300 receipts, each 1,000,000 + 1 (100 output tokens at 1,000 per 1k) = 1,000,100.
    let receipts = dir.join("receipts.jsonl");
    let mut f = std::fs::File::create(&receipts).unwrap();
    for i in 0..300 {
        let body = json!({"usage_id": format!("call-{i}"), "model_id": "tuner/m", "payer": "payer",
            "use_category": "chat", "input_tokens": 10, "output_tokens": 100,
            "output_hash": format!("sha256:{:064x}", i),
            "attribution": [{"dataset_id": "alice/d", "contribution": contributions[0], "ppm": 750000},
                            {"dataset_id": "alice/d", "contribution": contributions[1], "ppm": 250000}]});
        writeln!(
            f,
            "{}",
            json!({"ts_ms": 1_800_000_000_000u64 + i, "body": body})
        )
        .unwrap();
    }
    drop(f);
    let first = ok_json(shoulders(&["settle", "--data-dir", p(&data), p(&receipts)]));
    assert_eq!(
        (first["settled"].as_u64(), first["already_settled"].as_u64()),
        (Some(300), Some(0)),
        "{first}"
    );
    let accounts_before = ok_json(shoulders(&["accounts", "--data-dir", p(&data)]));
    // Settling the same file again charges nothing twice.
    let again = ok_json(shoulders(&["settle", "--data-dir", p(&data), p(&receipts)]));
    assert_eq!(
        (again["settled"].as_u64(), again["already_settled"].as_u64()),
        (Some(0), Some(300)),
        "{again}"
    );
    let accounts = ok_json(shoulders(&["accounts", "--data-dir", p(&data)]));
    assert_eq!(accounts["accounts"], accounts_before["accounts"]);
    assert_eq!(accounts["conserved"], json!(true));
    let balance = |who: &str| -> i128 {
        accounts["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["account"] == who)
            .map_or(0, |a| {
                a["balance_micros"].as_str().unwrap().parse().unwrap()
            })
    };
    // Per call: fee 1% = 10,001; royalty 10% of the rest = 99,009.9; level 891,089.1.
    // Summed over 300 calls the split is exact to the unit and conserved.
    assert_eq!(balance("payer"), 500_000_000 - 300 * 1_000_100);
    let credited: i128 = [
        "@protocol",
        "base",
        "tuner",
        "alice",
        "@unclaimed",
        "@rounding",
    ]
    .iter()
    .map(|a| balance(a))
    .sum();
    assert_eq!(credited, 300 * 1_000_100);
    assert_eq!(balance("@protocol"), 300 * 10_001);
    assert!(
        balance("@unclaimed") > 0,
        "bob has no payout address: his share is held"
    );
    assert_eq!(balance("bob"), 0);

    // alice's statement: every line's receipt is proven against the printed checkpoint.
    let st = ok_json(shoulders(&[
        "statement",
        "--data-dir",
        p(&data),
        "alice",
        "--proofs",
        "--limit",
        "1000",
    ]));
    let cp = LogVerifier::new(&vkey)
        .unwrap()
        .open(st["checkpoint"].as_str().unwrap().as_bytes())
        .unwrap();
    assert_eq!(cp.size, st["tree_size"].as_u64().unwrap());
    let lines = st["statement"]["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 300);
    for line in lines {
        let index = line["index"].as_u64().unwrap();
        let proof = &st["proofs"][index.to_string()];
        let hashes: Vec<Hash> = proof["proof"]["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| hash_of(h.as_str().unwrap()))
            .collect();
        verify_inclusion(
            &hashes,
            index,
            cp.size,
            hash_of(proof["leaf_hash"].as_str().unwrap()),
            cp.root,
        )
        .unwrap();
        assert!(line["usage_id"].as_str().unwrap().starts_with("call-"));
    }
    let source = &st["statement"]["by_source"][0];
    assert_eq!(
        (
            source["role"].as_str(),
            source["contribution"].as_u64(),
            source["count"].as_u64()
        ),
        (Some("data_share"), Some(contributions[0]), Some(300))
    );
    // A period filter keeps only the lines inside it.
    let part = ok_json(shoulders(&[
        "statement",
        "--data-dir",
        p(&data),
        "alice",
        "--from",
        "1800000000100",
        "--to",
        "1800000000200",
    ]));
    assert_eq!(part["statement"]["lines"].as_array().unwrap().len(), 100);
    // Pages: 120 lines at a time, each page's `next` cursor giving the following one, every
    // line exactly once; by source and totals are the same on every page.
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let mut args = vec![
            "statement",
            "--data-dir",
            p(&data),
            "alice",
            "--limit",
            "120",
        ];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        let page = ok_json(shoulders(&args));
        let lines = page["statement"]["lines"].as_array().unwrap();
        assert!(lines.len() <= 120);
        assert_eq!(page["statement"]["by_source"], st["statement"]["by_source"]);
        seen.extend(lines.iter().map(|l| l["index"].as_u64().unwrap()));
        match page["statement"]["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let all: Vec<u64> = lines.iter().map(|l| l["index"].as_u64().unwrap()).collect();
    assert_eq!(seen, all);
    for (args, code) in [
        (vec!["--limit", "1001"], "E_PAGE_TOO_LARGE"),
        (vec!["--limit", "0"], "E_PAGE_TOO_LARGE"),
        (vec!["--cursor", "nonsense"], "E_CURSOR_INVALID"),
    ] {
        let mut a = vec!["statement", "--data-dir", p(&data), "alice"];
        a.extend(args);
        let out = shoulders(&a);
        assert!(
            stderr(&out).starts_with(&format!("error[{code}]")),
            "{}",
            stderr(&out)
        );
    }

    // bob claims by setting a payout address; then withdraws part of it.
    let held = balance("@unclaimed");
    submit(
        &data,
        &keys["bob"],
        "actor.update",
        json!({"payout_address": "acct:bob"}),
        dir,
    );
    let acc = ok_json(shoulders(&["accounts", "--data-dir", p(&data)]));
    let bal = |who: &str| -> i128 {
        acc["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["account"] == who)
            .map_or(0, |a| {
                a["balance_micros"].as_str().unwrap().parse().unwrap()
            })
    };
    assert_eq!((bal("bob"), bal("@unclaimed")), (held, 0));
    ok_json(shoulders(&[
        "withdraw",
        "--data-dir",
        p(&data),
        "--key",
        p(&keys["bob"]),
        "--amount-micros",
        "1000",
    ]));
    let out = shoulders(&[
        "withdraw",
        "--data-dir",
        p(&data),
        "--key",
        p(&keys["payer"]),
        "--amount-micros",
        "999999999999",
        "--payout-address",
        "bank",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error[E_INSUFFICIENT_FUNDS]"),
        "{}",
        stderr(&out)
    );
    // A receipt for a payer who cannot pay is refused and charges nothing.
    let broke = dir.join("broke.key");
    ok_json(shoulders(&["key", "new", "--out", p(&broke)]));
    submit(
        &data,
        &broke,
        "actor.register",
        json!({"handle": "broke", "name": "Broke"}),
        dir,
    );
    let poor = dir.join("poor.jsonl");
    std::fs::write(&poor, json!({"usage_id": "poor-1", "model_id": "tuner/m", "payer": "broke", "use_category": "chat",
        "input_tokens": 1, "output_tokens": 1, "output_hash": format!("sha256:{:064x}", 1)}).to_string() + "\n").unwrap();
    let alice_before = bal("alice");
    let refused = ok_json(shoulders(&["settle", "--data-dir", p(&data), p(&poor)]));
    assert_eq!(
        refused["refused"],
        json!({"E_INSUFFICIENT_FUNDS": 1}),
        "{refused}"
    );

    // The export verifies from scratch, receipts and legs recomputed.
    let export = dir.join("export.txt");
    ok_json(shoulders(&[
        "export",
        "--data-dir",
        p(&data),
        "--out",
        p(&export),
    ]));
    let report = ok_json(shoulders(&[
        "verify",
        "--key",
        &vkey,
        p(&export),
        "--timing",
    ]));
    assert_eq!(report["receipts"], json!(300));
    assert!(report["legs"].as_u64().unwrap() >= 300 * 6);
    assert!(report["timing"]["receipts_per_s"].as_f64().unwrap() > 0.0);
    let acc = ok_json(shoulders(&["accounts", "--data-dir", p(&data)]));
    assert_eq!(acc["conserved"], json!(true));
    assert_eq!(
        acc["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["account"] == "alice")
            .unwrap()["balance_micros"],
        json!(alice_before.to_string())
    );
}

#[test]
fn money_commands_explain_missing_operator() {
    let tmp = tempfile::TempDir::new().unwrap();
    let data = tmp.path().join("ledger");
    ok_json_status(shoulders(&["init", "--data-dir", p(&data)]));
    let out = shoulders(&[
        "deposit",
        "--data-dir",
        p(&data),
        "--account",
        "x",
        "--amount-micros",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error[E_KEY_FILE]") && stderr(&out).contains("--operator"),
        "{}",
        stderr(&out)
    );
    let out = shoulders(&[
        "init",
        "--data-dir",
        p(&tmp.path().join("x")),
        "--protocol-fee-bps",
        "5",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a fee without an operator is a usage error"
    );
}

fn ok_json_status(out: std::process::Output) {
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Royalty floors end to end: a base licence with a 5% royalty and a floor of 1000 per call +
/// 200 per 1k output tokens; a free adapter (own licence priced 0) is refused; an adapter
/// without a licence is charged the floors at each use, and the base's owner's statement shows
/// them.
#[test]
fn settle_charges_the_royalty_floors_of_a_free_adapter() {
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path();
    let data = dir.join("ledger");
    let out = shoulders(&[
        "init",
        "--data-dir",
        p(&data),
        "--operator",
        "op",
        "--protocol-fee-bps",
        "100",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let vkey = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut keys = std::collections::BTreeMap::new();
    for (handle, payout) in [
        ("acme", true),
        ("ada", true),
        ("ann", false),
        ("payer", false),
    ] {
        let key = dir.join(format!("{handle}.key"));
        ok_json(shoulders(&["key", "new", "--out", p(&key)]));
        let mut body = json!({"handle": handle, "name": handle});
        if payout {
            body["payout_address"] = json!(format!("acct:{handle}"));
        }
        submit(&data, &key, "actor.register", body, dir);
        keys.insert(handle, key);
    }
    let terms = |royalty: u32, data_share: u32, per_call: &str, per_1k: &str| {
        json!({
        "commercial_use": true, "derivatives": "allowed", "attribution_required": true,
        "share_alike": false, "royalty_bps": royalty, "data_share_bps": data_share, "currency": "USD",
        "price_per_call_micros": per_call, "price_per_1k_output_tokens_micros": per_1k,
        "registration_fee_micros": "0"})
    };
    let mut base_terms = terms(500, 2000, "10000", "1000");
    base_terms["royalty_floor_per_call_micros"] = json!("1000");
    base_terms["royalty_floor_per_1k_output_tokens_micros"] = json!("200");
    submit(
        &data,
        &keys["acme"],
        "license.define",
        json!({"license_id": "acme/base-lic", "name": "Base", "terms": base_terms}),
        dir,
    );
    submit(
        &data,
        &keys["acme"],
        "dataset.create",
        json!({"dataset_id": "acme/ds", "name": "D", "access": "open"}),
        dir,
    );
    let doc = dir.join("ann.txt");
    std::fs::write(&doc, "a poem by ann, used by the base").unwrap();
    let ann = ok_json(shoulders(&[
        "contribute",
        "--data-dir",
        p(&data),
        "--key",
        p(&keys["ann"]),
        "--dataset",
        "acme/ds",
        p(&doc),
    ]))["index"]
        .as_u64()
        .unwrap();
    submit(
        &data,
        &keys["acme"],
        "model.register",
        json!({"model_id": "acme/base", "name": "Base", "datasets": ["acme/ds"], "license_id": "acme/base-lic"}),
        dir,
    );

    // A free adapter would pay the base 5% of nothing: refused at registration.
    submit(
        &data,
        &keys["ada"],
        "license.define",
        json!({"license_id": "ada/free", "name": "Free", "terms": terms(0, 0, "0", "0")}),
        dir,
    );
    let body = dir.join("free-adapter.json");
    std::fs::write(
        &body,
        json!({"model_id": "ada/free-adapter", "name": "Free",
               "parents": [{"model_id": "acme/base", "relation": "adapter"}], "license_id": "ada/free"})
        .to_string(),
    )
    .unwrap();
    let out = shoulders(&[
        "submit",
        "--data-dir",
        p(&data),
        "--key",
        p(&keys["ada"]),
        "--kind",
        "model.register",
        "--body",
        p(&body),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error[E_LICENSE_BELOW_ROYALTY_FLOOR]: ancestor acme/base (licence acme/base-lic) is owed at least 1000 micro-units USD per call"),
        "{}",
        stderr(&out)
    );
    // Without a licence of its own it registers, and `license check` shows the floor owed.
    submit(
        &data,
        &keys["ada"],
        "model.register",
        json!({"model_id": "ada/adapter", "name": "Adapter",
               "parents": [{"model_id": "acme/base", "relation": "adapter"}]}),
        dir,
    );
    let check = ok_json(shoulders(&[
        "license",
        "check",
        "--data-dir",
        p(&data),
        "ada/adapter",
        "--use",
        "chat",
    ]));
    assert_eq!(
        check["royalties"][0]["floor"],
        json!({"currency": "USD", "per_call_micros": 1000, "per_1k_output_tokens_micros": 200}),
        "{check}"
    );
    ok_json(shoulders(&[
        "deposit",
        "--data-dir",
        p(&data),
        "--account",
        "payer",
        "--amount-micros",
        "1000000",
    ]));

    // 20 calls of 500 output tokens: floor 1000 + 100 = 1100 each, charged 1112 (the least
    // charge that pays the floor after the 1% fee, rounded up). Ten name ann's contribution (the base's
    // level: 880 to acme, 220 to ann), ten name nothing (1100 to acme).
    let receipts = dir.join("receipts.jsonl");
    let mut f = std::fs::File::create(&receipts).unwrap();
    for i in 0..20 {
        let mut body = json!({"usage_id": format!("call-{i}"), "model_id": "ada/adapter", "payer": "payer",
            "use_category": "chat", "input_tokens": 10, "output_tokens": 500,
            "output_hash": format!("sha256:{:064x}", i)});
        if i < 10 {
            body["attribution"] =
                json!([{"dataset_id": "acme/ds", "contribution": ann, "ppm": 1000000}]);
        }
        writeln!(
            f,
            "{}",
            json!({"ts_ms": 1_800_000_000_000u64 + i, "body": body})
        )
        .unwrap();
    }
    drop(f);
    let settled = ok_json(shoulders(&["settle", "--data-dir", p(&data), p(&receipts)]));
    assert_eq!(settled["settled"], json!(20), "{settled}");

    let st = ok_json(shoulders(&["statement", "--data-dir", p(&data), "acme"]));
    let royalty = st["statement"]["by_source"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == "royalty")
        .unwrap_or_else(|| panic!("{st}"));
    assert_eq!(
        (
            royalty["model_id"].as_str(),
            royalty["count"].as_u64(),
            royalty["amount_micros"].as_str()
        ),
        (Some("acme/base"), Some(20), Some("19800")),
        "{st}"
    );
    for line in st["statement"]["lines"].as_array().unwrap() {
        let amount: u64 = line["amount_micros"].as_str().unwrap().parse().unwrap();
        assert!(amount == 880 || amount == 1100, "{line}");
    }
    let st = ok_json(shoulders(&["statement", "--data-dir", p(&data), "ann"]));
    assert_eq!(
        st["statement"]["totals"][0]["unclaimed_micros"], "2200",
        "{st}"
    );
    let st = ok_json(shoulders(&["statement", "--data-dir", p(&data), "payer"]));
    assert_eq!(
        st["statement"]["totals"][0]["balance_micros"],
        (1_000_000 - 20 * 1112).to_string(),
        "{st}"
    );
    let st = ok_json(shoulders(&["statement", "--data-dir", p(&data), "ada"]));
    assert!(
        st["statement"]["lines"].as_array().unwrap().is_empty(),
        "the free adapter earns nothing: {st}"
    );

    // The export verifies: receipts and their floors recomputed from scratch.
    let export = dir.join("export.txt");
    ok_json(shoulders(&[
        "export",
        "--data-dir",
        p(&data),
        "--out",
        p(&export),
    ]));
    let report = ok_json(shoulders(&["verify", "--key", &vkey, p(&export)]));
    assert_eq!(report["receipts"], json!(20));
}
