//! Receipt audits end to end (issue 16): a metered gateway call on a model whose outputs are
//! kept, its receipt's `index_state`, `POST /api/receipts/{index}/audit` and `shoulders audit
//! receipt` matching; a tampered output refused; a receipt forged with the operator key shown
//! with its differences; the index grown since and the old state rebuilt; outputs of other
//! models not kept; the fold refusing an index state beyond the receipt.

mod common;

use common::{now_ms, ok_json, p, record, respond, shoulders, stderr, Served};
use serde_json::{json, Value};
use shoulders_ledger::{init_with, ContentStore, DataDir, Ledger, OperatorInit};
use shoulders_record::{ActorKey, Kind};
use std::path::Path;

const DOCS: [&str; 2] = [
    "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate.\n",
    "The woods are lovely, dark and deep,\nBut I have promises to keep.\n",
];

fn token_for(dir: &Path, actor: &str) -> String {
    let out = ok_json(shoulders(&[
        "apikey",
        "new",
        "--data-dir",
        p(dir),
        "--actor",
        actor,
    ]));
    out["api_key"].as_str().unwrap().to_string()
}

fn audit(dir: &Path, receipt: &str, output: Option<&Path>) -> std::process::Output {
    let mut args = vec!["audit", "receipt", receipt, "--data-dir", p(dir), "--json"];
    if let Some(o) = output {
        args.extend(["--output", p(o)]);
    }
    shoulders(&args)
}

#[test]
fn receipts_are_audited_against_the_index_state_they_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("writer");
    let data = DataDir::new(&dir);
    let operator = OperatorInit {
        handle: "op".into(),
        name: "Operator".into(),
        protocol_fee_bps: 0,
        ts_ms: now_ms(),
    };
    init_with(
        &data,
        "test.shoulders.local/log",
        Some(&operator),
        &mut rand_core::OsRng,
    )
    .unwrap();
    let op = ActorKey::from_file_text(&std::fs::read_to_string(dir.join("operator.key")).unwrap())
        .unwrap();
    let alice = ActorKey::generate(&mut rand_core::OsRng);
    let bob = ActorKey::generate(&mut rand_core::OsRng);
    let ledger = Ledger::open(&data).unwrap();
    let submit = |ledger: &Ledger, key: &ActorKey, id: &str, kind: Kind, body: Value| {
        ledger.submit(record(key, id, kind, body)).unwrap().index
    };
    submit(
        &ledger,
        &alice,
        "a",
        Kind::ActorRegister,
        json!({"handle": "alice", "name": "Alice"}),
    );
    let carol = ActorKey::generate(&mut rand_core::OsRng);
    submit(
        &ledger,
        &carol,
        "c",
        Kind::ActorRegister,
        json!({"handle": "carol", "name": "Carol"}),
    );
    submit(
        &ledger,
        &bob,
        "b",
        Kind::ActorRegister,
        json!({"handle": "bob", "name": "Bob"}),
    );
    submit(
        &ledger,
        &alice,
        "ds",
        Kind::DatasetCreate,
        json!({"dataset_id": "alice/verse", "name": "Verse", "access": "open"}),
    );
    let content = ContentStore::new(&data);
    let mut contributions = Vec::new();
    for (i, doc) in DOCS.iter().enumerate() {
        let hash = content.put(doc.as_bytes()).unwrap();
        contributions.push(submit(
            &ledger,
            &alice,
            &format!("c{i}"),
            Kind::DataContribute,
            json!({"dataset_id": "alice/verse", "content_hash": hash,
                   "byte_size": doc.len(), "token_count": doc.len()}),
        ));
    }
    let (name, spdx, terms) = shoulders_license::preset("apache-2.0").unwrap();
    let mut terms = serde_json::to_value(terms).unwrap();
    terms["price_per_call_micros"] = json!("1000");
    submit(
        &ledger,
        &alice,
        "lic",
        Kind::LicenseDefine,
        json!({"license_id": "alice/priced", "name": name, "spdx_id": spdx, "terms": terms}),
    );
    for m in ["alice/kept", "alice/private"] {
        submit(
            &ledger,
            &alice,
            m,
            Kind::ModelRegister,
            json!({"model_id": m, "name": "Verse", "datasets": ["alice/verse"], "license_id": "alice/priced"}),
        );
    }
    submit(
        &ledger,
        &op,
        "dep",
        Kind::FundsDeposit,
        json!({"account": "bob", "currency": "USD", "amount_micros": "100000"}),
    );
    drop(ledger);
    ok_json(shoulders(&[
        "index",
        "build",
        "--data-dir",
        p(&dir),
        "alice/verse",
    ]));
    let bob_token = token_for(&dir, "bob");
    let (alice_token, carol_token) = (token_for(&dir, "alice"), token_for(&dir, "carol"));

    // ---- A metered call on a model whose outputs are kept.
    let served = Served::start(&dir, "writer", &["--keep-outputs", "alice/kept"]);
    let call = |model: &str, prompt: &str| {
        let body = json!({"model": model, "prompt": prompt, "max_tokens": 40}).to_string();
        let (status, v) = served.post("/v1/completions", body.as_bytes(), Some(&bob_token));
        assert_eq!(status, 200, "{v}");
        (
            v["shoulders"]["receipt"]["index"].as_u64().unwrap(),
            v["choices"][0]["text"].as_str().unwrap().to_string(),
        )
    };
    let (n, output) = call("alice/kept", "Shall I compare");
    let rec = served.get_json(&format!("/api/records/{n}"));
    let body = &rec["body"];
    assert!(!body["attribution"].as_array().unwrap().is_empty(), "{rec}");
    // The log size at `index build`: the last contribution, a licence, two models, a deposit.
    let size_at_build = contributions.last().unwrap() + 5;
    assert_eq!(
        body["index_state"],
        json!({"ledger_size": size_at_build, "segments": [size_at_build]}),
        "{rec}"
    );

    // Through the API: with the output, and from the kept copy (no body).
    let audit_path = format!("/api/receipts/{n}/audit");
    let (status, v) = served.post(
        &audit_path,
        json!({"output": output}).to_string().as_bytes(),
        Some(&bob_token),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["matches"].as_bool(), v["index_source"].as_str()),
        (Some(true), Some("live")),
        "{v}"
    );
    assert!(v["differences"].as_array().unwrap().is_empty());
    let (status, v) = served.post(&audit_path, b"", Some(&bob_token));
    assert_eq!((status, v["matches"].as_bool()), (200, Some(true)), "{v}");
    // The kept output, to the payer; nobody without a key.
    let get_output = |token: Option<&str>| {
        let mut req = ureq::get(&served.url(&format!("/api/receipts/{n}/output")));
        if let Some(t) = token {
            req = req.set("authorization", &format!("Bearer {t}"));
        }
        respond(req.call())
    };
    assert_eq!(
        get_output(Some(&bob_token)),
        (200, output.clone().into_bytes())
    );
    assert_eq!(get_output(None).0, 401);
    // ... to the credited contributor (and model owner), not to someone else.
    assert_eq!(get_output(Some(&alice_token)).0, 200);
    let (status, got) = get_output(Some(&carol_token));
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&got).contains("E_FORBIDDEN"));
    // A tampered output is not the receipt's.
    let (status, v) = served.post(
        &audit_path,
        json!({"output": format!("{output}!")})
            .to_string()
            .as_bytes(),
        Some(&bob_token),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (422, Some("E_AUDIT_OUTPUT_MISMATCH")),
        "{v}"
    );

    // ---- Another model's outputs are not kept (another prompt: outputs are stored by hash).
    let (m, _) = call("alice/private", "The woods are");
    let (status, got) = respond(
        ureq::get(&served.url(&format!("/api/receipts/{m}/output")))
            .set("authorization", &format!("Bearer {bob_token}"))
            .call(),
    );
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&got).contains("E_OUTPUT_NOT_KEPT"));
    let (status, v) = served.post(&format!("/api/receipts/{m}/audit"), b"", Some(&bob_token));
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("E_OUTPUT_NOT_KEPT")),
        "{v}"
    );
    served.stop();

    // ---- The CLI: the output from a file, and the kept one.
    let out_file = tmp.path().join("output.txt");
    std::fs::write(&out_file, &output).unwrap();
    let v = ok_json(audit(&dir, &n.to_string(), Some(&out_file)));
    assert_eq!(v["matches"], true, "{v}");
    let tampered = tmp.path().join("tampered.txt");
    std::fs::write(&tampered, format!("{output}!")).unwrap();
    let out = audit(&dir, &n.to_string(), Some(&tampered));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("E_AUDIT_OUTPUT_MISMATCH"),
        "{}",
        stderr(&out)
    );

    // ---- A receipt the operator forged: every ppm to a contribution the output is not from.
    let real = &body["attribution"];
    let credited: Vec<u64> = real
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["contribution"].as_u64().unwrap())
        .collect();
    let other = *contributions
        .iter()
        .find(|c| !credited.contains(c))
        .expect("an uncredited contribution");
    let mut forged = body.clone();
    forged["usage_id"] = json!("forged-1");
    forged["attribution"] =
        json!([{"dataset_id": "alice/verse", "contribution": other, "ppm": 1_000_000}]);
    let ledger = Ledger::open(&data).unwrap();
    let forged_at = submit(&ledger, &op, "forged-1", Kind::UsageReceipt, forged.clone());
    // The fold refuses an index state beyond the receipt's own position.
    let mut future = body.clone();
    future["usage_id"] = json!("future-1");
    let beyond = ledger.size() + 1;
    future["index_state"] = json!({"ledger_size": beyond, "segments": [beyond]});
    let err = ledger
        .submit(record(&op, "future-1", Kind::UsageReceipt, future))
        .unwrap_err();
    assert_eq!(err.code(), "E_INDEX_STATE_FUTURE", "{err}");
    drop(ledger);
    let out = audit(&dir, "forged-1", Some(&out_file));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("E_AUDIT_MISMATCH"),
        "{}",
        stderr(&out)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["index"], forged_at);
    assert_eq!(v["matches"], false);
    let diff = v["differences"].as_array().unwrap();
    assert!(
        diff.iter().any(|d| d["contribution"] == other
            && d["receipt_ppm"] == 1_000_000
            && d["derived_ppm"] == 0),
        "{v}"
    );
    assert!(
        diff.iter()
            .any(|d| credited.contains(&d["contribution"].as_u64().unwrap())
                && d["receipt_ppm"] == 0),
        "{v}"
    );

    // ---- The index grows (a new contribution, rebuilt): the old state is rebuilt to audit.
    let ledger = Ledger::open(&data).unwrap();
    // Long enough that the small segment appended below is not merged into it at once (the
    // merge policy joins an older segment holding at most 10x the tokens of the newer ones).
    let extra = "Two roads diverged in a yellow wood,\nAnd sorry I could not travel both\n\
        And be one traveler, long I stood\nAnd looked down one as far as I could\n\
        To where it bent in the undergrowth;\nThen took the other, as just as fair,\n\
        And having perhaps the better claim,\nBecause it was grassy and wanted wear;\n\
        Though as for that the passing there\nHad worn them really about the same,\n";
    let hash = content.put(extra.as_bytes()).unwrap();
    submit(
        &ledger,
        &alice,
        "c-new",
        Kind::DataContribute,
        json!({"dataset_id": "alice/verse", "content_hash": hash, "byte_size": extra.len(), "token_count": extra.len()}),
    );
    drop(ledger);
    ok_json(shoulders(&[
        "index",
        "build",
        "--data-dir",
        p(&dir),
        "alice/verse",
    ]));
    let v = ok_json(audit(&dir, &n.to_string(), None));
    assert_eq!(
        (v["matches"].as_bool(), v["index_source"].as_str()),
        (Some(true), Some("rebuilt")),
        "{v}"
    );
    // Nothing of the rebuild is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".audit-"))
        .collect();
    assert!(leftovers.is_empty());
    // The server will not rebuild for free: its live index is now of another state.
    let served = Served::start(&dir, "writer2", &[]);
    let (status, v) = served.post(
        &audit_path,
        json!({"output": output}).to_string().as_bytes(),
        Some(&bob_token),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("E_AUDIT_STATE_UNAVAILABLE")),
        "{v}"
    );

    // ---- Segments: a contribution over HTTP is appended as a second segment by the server's
    // follow loop; a receipt then records both, and after a merge the CLI rebuilds both.
    let more = "Whose woods these are I think I know.\n";
    let rec = record(
        &alice,
        "c-more",
        Kind::DataContribute,
        json!({"dataset_id": "alice/verse", "content_hash": shoulders_ledger::content_ref(more.as_bytes()),
               "byte_size": more.len(), "token_count": more.len()}),
    );
    let (status, v) = served.post(
        "/api/contributions",
        json!({"record": String::from_utf8(rec).unwrap(), "content": more})
            .to_string()
            .as_bytes(),
        None,
    );
    assert!(status < 300, "{status} {v}");
    let manifest = dir.join("indexes/alice%2Fverse/segments.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let segments = loop {
        let m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
        let n = m["segments"].as_array().unwrap().len();
        if n == 2 || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(segments, 2, "the follow loop appended a segment");
    let body =
        json!({"model": "alice/kept", "prompt": "Whose woods", "max_tokens": 40}).to_string();
    let (status, v) = served.post("/v1/completions", body.as_bytes(), Some(&bob_token));
    assert_eq!(status, 200, "{v}");
    let k = v["shoulders"]["receipt"]["index"].as_u64().unwrap();
    let output_k = v["choices"][0]["text"].as_str().unwrap().to_string();
    let rec = served.get_json(&format!("/api/records/{k}"));
    let state = &rec["body"]["index_state"];
    assert_eq!(state["segments"].as_array().map(Vec::len), Some(2), "{rec}");
    let (status, v) = served.post(
        &format!("/api/receipts/{k}/audit"),
        json!({"output": output_k}).to_string().as_bytes(),
        Some(&bob_token),
    );
    assert_eq!(
        (status, v["matches"].as_bool(), v["index_source"].as_str()),
        (200, Some(true), Some("live")),
        "{v}"
    );
    served.stop();
    ok_json(shoulders(&[
        "index",
        "merge",
        "--data-dir",
        p(&dir),
        "alice/verse",
    ]));
    let out_k = tmp.path().join("output-k.txt");
    std::fs::write(&out_k, &output_k).unwrap();
    let v = ok_json(audit(&dir, &k.to_string(), Some(&out_k)));
    assert_eq!(
        (v["matches"].as_bool(), v["index_source"].as_str()),
        (Some(true), Some("rebuilt")),
        "two segments rebuilt after the merge: {v}"
    );
}
