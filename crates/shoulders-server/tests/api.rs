//! The REST API and the gateway against a running server on an ephemeral port: reads, signed
//! writes, bad input on every write route (nothing appended), proofs checked against the
//! checkpoint, the OpenAPI document against the routes, the gateway with the embedded model,
//! and graceful shutdown.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shoulders_record::Kind;
use shoulders_server::Metering;

async fn json_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, v)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_writes_reads_and_proofs() {
    let f = fixture();
    let token = issue_key(&f.data_dir(), "bob");
    let s = start(config(&f, Metering::Off)).await;
    let size = s.size().await;

    // A valid signed record is appended (201), then recognised as a duplicate (200).
    let rec = record(
        &f.bob,
        "ds-bob",
        f.ts_ms,
        Kind::DatasetCreate,
        json!({"dataset_id": "bob/notes", "name": "Notes", "access": "owner"}),
    );
    let r = s
        .client
        .post(s.url("/api/records"))
        .body(rec.clone())
        .send()
        .await
        .unwrap();
    let (status, v) = json_of(r).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["index"], size);
    assert_eq!(v["duplicate"], false);
    let (status, v2) = json_of(
        s.client
            .post(s.url("/api/records"))
            .body(rec.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, &v2["index"], &v2["duplicate"]),
        (StatusCode::OK, &v["index"], &json!(true))
    );
    assert_eq!(s.size().await, size + 1);

    // The stored bytes are exactly the submitted ones.
    let got = s
        .client
        .get(s.url(&format!("/api/records/{size}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.unwrap().to_vec(), rec);

    // Inclusion proof of that record verifies against the signed checkpoint.
    let verifier_key = std::fs::read_to_string(f.data_dir().join("log.pub")).unwrap();
    let verifier = shoulders_log::LogVerifier::new(verifier_key.trim()).unwrap();
    let note = s
        .client
        .get(s.url("/api/checkpoint"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let cp = verifier.open(&note).unwrap();
    assert_eq!(cp.size, size + 1);
    let (status, proof) = json_of(
        s.client
            .get(s.url(&format!("/api/proofs/inclusion?index={size}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let hashes: Vec<shoulders_log::Hash> = proof["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            use base64::Engine as _;
            let b = base64::engine::general_purpose::STANDARD
                .decode(h.as_str().unwrap())
                .unwrap();
            shoulders_log::Hash(b.try_into().unwrap())
        })
        .collect();
    shoulders_log::verify_inclusion(
        &hashes,
        size,
        cp.size,
        shoulders_log::leaf_hash(&rec),
        cp.root,
    )
    .unwrap();
    let (status, proof) = json_of(
        s.client
            .get(s.url("/api/proofs/consistency?old=3"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, &proof["old_size"], &proof["new_size"]),
        (StatusCode::OK, &json!(3), &json!(cp.size))
    );

    // Bad proof requests.
    for (path, want) in [
        (
            "/api/proofs/inclusion?index=999",
            "E_PROOF_INDEX_OUT_OF_RANGE",
        ),
        ("/api/proofs/inclusion?index=x", "E_QUERY_INVALID"),
        ("/api/proofs/consistency?old=0", "E_PROOF_BAD_RANGE"),
        (
            "/api/proofs/inclusion?index=0&size=999",
            "E_PROOF_SIZE_BEYOND_LOG",
        ),
    ] {
        let (status, v) = json_of(s.client.get(s.url(path)).send().await.unwrap()).await;
        assert_eq!(
            (status, code(&v)),
            (StatusCode::BAD_REQUEST, want),
            "{path}: {v}"
        );
    }

    // State reads.
    let (_, actors) = json_of(s.client.get(s.url("/api/actors")).send().await.unwrap()).await;
    let handles: Vec<&str> = actors["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["handle"].as_str().unwrap())
        .collect();
    assert_eq!(handles, ["alice", "bob"]);
    let (status, a) = json_of(
        s.client
            .get(s.url("/api/actors/alice"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, a["name"].as_str()),
        (StatusCode::OK, Some("Alice"))
    );
    let (_, ds) = json_of(
        s.client
            .get(s.url("/api/datasets/alice/verse"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(ds["contribution_records"].as_array().unwrap().len(), 3);
    let first = ds["contributions"][0].as_u64().unwrap();
    let (status, c) = json_of(
        s.client
            .get(s.url(&format!("/api/contributions/{first}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, c["contributor"].as_str()),
        (StatusCode::OK, Some("alice"))
    );
    let (_, models) = json_of(s.client.get(s.url("/api/models")).send().await.unwrap()).await;
    assert_eq!(models["items"].as_array().unwrap().len(), 2);
    assert_eq!(models["total"], 2);

    // Every list is paged: one item per page, cursors chain to the end, totals from counters.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => s.url(&format!("/api/actors?limit=1&cursor={c}")),
            None => s.url("/api/actors?limit=1"),
        };
        let (status, page) = json_of(s.client.get(url).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["items"].as_array().unwrap().len(), 1);
        assert_eq!(page["total"].as_u64(), Some(handles.len() as u64));
        seen.push(page["items"][0]["handle"].as_str().unwrap().to_string());
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, handles);
    for (url, code) in [
        ("/api/actors?limit=1001", "E_PAGE_TOO_LARGE"),
        ("/api/models?limit=0", "E_PAGE_TOO_LARGE"),
        ("/api/datasets?cursor=zzz", "E_CURSOR_INVALID"),
        ("/api/records?limit=5000", "E_PAGE_TOO_LARGE"),
        (
            "/api/models/alice/verse-base/receipts?cursor=l1.2",
            "E_CURSOR_INVALID",
        ),
        ("/api/actors/alice/receipts?limit=2000", "E_PAGE_TOO_LARGE"),
    ] {
        let (status, body) = json_of(s.client.get(s.url(url)).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {body}");
        assert_eq!(body["error"]["code"], code, "{url}: {body}");
    }
    let (status, body) = json_of(
        s.client
            .get(s.url("/api/actors/nobody/receipts"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, datasets) = json_of(
        s.client
            .get(s.url("/api/datasets?limit=1"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let first = datasets["items"][0]["dataset_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, contributions) = json_of(
        s.client
            .get(s.url(&format!("/api/datasets/{first}/contributions?limit=1")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{contributions}");
    assert!(contributions["total"].as_u64().is_some(), "{contributions}");
    let (_, lineage) = json_of(
        s.client
            .get(s.url("/api/models/bob/tuned/lineage"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(lineage["ancestors"][0]["model_id"], "alice/verse-base");
    let dot = s
        .client
        .get(s.url("/api/models/bob/tuned/lineage?format=dot"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        dot.starts_with("digraph") && dot.contains("alice/verse-base"),
        "{dot}"
    );
    let mermaid = s
        .client
        .get(s.url("/api/models/bob/tuned/lineage?format=mermaid"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(mermaid.contains("flowchart"), "{mermaid}");
    // The parameter diff against the first parent; neither fixture model lists tensors.
    let (status, diff) = json_of(
        s.client
            .get(s.url("/api/models/bob/tuned/diff"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{diff}");
    assert_eq!(
        (&diff["parent"], &diff["relation"], &diff["comparable"]),
        (
            &json!("alice/verse-base"),
            &json!("finetune"),
            &json!(false)
        ),
        "{diff}"
    );
    assert_eq!(
        diff["summary"],
        "finetune · no tensor hashes recorded for either model"
    );
    // Any model may be named as the one to compare with.
    let (status, diff) = json_of(
        s.client
            .get(s.url("/api/models/alice/verse-base/diff?parent=bob/tuned"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, &diff["relation"]),
        (StatusCode::OK, &Value::Null),
        "{diff}"
    );
    let (status, check) = json_of(
        s.client
            .get(s.url("/api/models/bob/tuned/license-check?use=research"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, &check["allowed"]),
        (StatusCode::OK, &json!(true)),
        "{check}"
    );
    // bob/tuned owes no royalty upstream, so any maximum royalty accepts it.
    let (status, check) = json_of(
        s.client
            .get(s.url("/api/models/bob/tuned/license-check?use=research&max_royalty_bps=0"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{check}");
    assert_eq!(
        (&check["allowed"], &check["max_royalty_bps"]),
        (&json!(true), &json!(0)),
        "{check}"
    );
    let (status, v) = json_of(s.client.post(s.url("/api/attribute")).bearer_auth(&token).json(&json!({"dataset_id": "alice/verse", "text": "and now: The woods are lovely, dark and deep, indeed"})).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // Matching is on normalised text: the doc's "deep,\n" matches the output's "deep, ".
    assert_eq!(
        v["spans"][0]["text"],
        "The woods are lovely, dark and deep, "
    );
    assert_eq!(v["shares"]["contributors_ppm"]["alice"], 1_000_000);

    for (path, want) in [
        ("/api/actors/nobody", "E_NOT_FOUND"),
        ("/api/records/999", "E_NOT_FOUND"),
        ("/api/records/x", "E_PATH_PARAM_INVALID"),
        ("/api/models/bob/none/lineage", "E_NOT_FOUND"),
        ("/api/models/bob/none/diff", "E_NOT_FOUND"),
        ("/api/models/alice/verse-base/diff", "E_NOT_FOUND"),
        (
            "/api/models/bob/tuned/diff?parent=alice/none",
            "E_NOT_FOUND",
        ),
        (
            "/api/models/bob/tuned/lineage?format=png",
            "E_QUERY_INVALID",
        ),
        ("/api/models/bob/tuned/license-check", "E_QUERY_INVALID"),
        (
            "/api/models/bob/tuned/license-check?use=chat&max_royalty_bps=10001",
            "E_QUERY_INVALID",
        ),
        ("/api/nothing-here", "E_ROUTE_NOT_FOUND"),
    ] {
        let (status, v) = json_of(s.client.get(s.url(path)).send().await.unwrap()).await;
        assert!(status.is_client_error(), "{path}: {status}");
        assert_eq!(code(&v), want, "{path}: {v}");
    }
    let (status, v) = json_of(
        s.client
            .delete(s.url("/api/checkpoint"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::METHOD_NOT_ALLOWED, "E_METHOD_NOT_ALLOWED")
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_every_write_route_appends_nothing() {
    let f = fixture();
    let token = issue_key(&f.data_dir(), "bob");
    let s = start(config(&f, Metering::Off)).await;
    let size = s.size().await;
    let good = record(
        &f.bob,
        "ds-2",
        f.ts_ms,
        Kind::DatasetCreate,
        json!({"dataset_id": "bob/more", "name": "More", "access": "open"}),
    );
    let mut bad_sig = good.clone();
    // Flip one base64 character of the signature: still canonical JSON, no longer valid.
    let text = String::from_utf8(bad_sig.clone()).unwrap();
    let at = text.find("\"sig\":\"").unwrap() + 7;
    bad_sig[at] = if bad_sig[at] == b'A' { b'B' } else { b'A' };
    let unknown_ref = record(
        &f.bob,
        "c-x",
        f.ts_ms,
        Kind::DataContribute,
        json!({"dataset_id": "bob/missing", "content_hash": format!("sha256:{}", "ab".repeat(32)),
               "byte_size": 5, "token_count": 5}),
    );
    let unknown_parent = record(
        &f.bob,
        "m-x",
        f.ts_ms,
        Kind::ModelRegister,
        json!({"model_id": "bob/orphan", "name": "Orphan",
               "parents": [{"model_id": "carol/none", "relation": "finetune"}]}),
    );
    let huge = vec![b' '; 100 * 1024];
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "/api/records",
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "E_RECORD_MALFORMED",
        ),
        (
            "/api/records",
            bad_sig,
            StatusCode::BAD_REQUEST,
            "E_SIG_INVALID",
        ),
        (
            "/api/records",
            huge.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "E_BODY_TOO_LARGE",
        ),
        (
            "/api/records",
            unknown_ref,
            StatusCode::UNPROCESSABLE_ENTITY,
            "E_DATASET_UNKNOWN",
        ),
        (
            "/api/records",
            unknown_parent,
            StatusCode::UNPROCESSABLE_ENTITY,
            "E_MODEL_UNKNOWN",
        ),
        (
            "/api/attribute",
            b"{\"dataset_id\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "E_JSON_INVALID",
        ),
        (
            "/api/attribute",
            huge.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "E_BODY_TOO_LARGE",
        ),
        (
            "/api/attribute",
            br#"{"dataset_id":"bob/none","text":"x"}"#.to_vec(),
            StatusCode::NOT_FOUND,
            "E_NOT_FOUND",
        ),
        (
            "/v1/chat/completions",
            b"[1,".to_vec(),
            StatusCode::BAD_REQUEST,
            "E_JSON_INVALID",
        ),
        (
            "/v1/chat/completions",
            huge.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "E_BODY_TOO_LARGE",
        ),
        (
            "/v1/chat/completions",
            br#"{"model":"nobody/none","messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
            StatusCode::NOT_FOUND,
            "E_NOT_FOUND",
        ),
        (
            "/v1/completions",
            br#"{"model":"alice/verse-base"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "E_JSON_INVALID",
        ),
        (
            "/v1/completions",
            br#"{"model":"alice/verse-base","prompt":"x","max_tokens":100000}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "E_GENERATE_PARAMS",
        ),
        (
            "/v1/completions",
            huge,
            StatusCode::PAYLOAD_TOO_LARGE,
            "E_BODY_TOO_LARGE",
        ),
    ];
    for (route, body, want_status, want_code) in cases {
        let r = s
            .client
            .post(s.url(route))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, v) = json_of(r).await;
        assert_eq!((status, code(&v)), (want_status, want_code), "{route}: {v}");
        assert_eq!(
            s.size().await,
            size,
            "{route} {want_code} appended something"
        );
    }
    // The gateway without a key, or with a wrong one.
    for auth in [None, Some("sk-shoulders-wrong")] {
        let mut req = s
            .client
            .post(s.url("/v1/completions"))
            .json(&json!({"model": "alice/verse-base", "prompt": "x"}));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        let (status, v) = json_of(req.send().await.unwrap()).await;
        assert_eq!(
            (status, code(&v)),
            (StatusCode::UNAUTHORIZED, "E_UNAUTHORIZED")
        );
    }
    assert_eq!(s.size().await, size);
    s.stop().await;
}

/// Files in the fixture's content store.
fn stored_blobs(f: &Fixture) -> usize {
    std::fs::read_dir(f.data_dir().join("content/sha256"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn contribution_body(text: &[u8]) -> Value {
    json!({"dataset_id": "alice/verse", "content_hash": shoulders_ledger::content_ref(text),
           "byte_size": text.len(), "token_count": text.len()})
}

/// `{"record": <record bytes as a JSON string>, "content": <content>}`, byte for byte, so
/// the content may be anything (even bytes that are not UTF-8).
fn upload(record: &[u8], content: &[u8]) -> Vec<u8> {
    let record = serde_json::to_string(std::str::from_utf8(record).unwrap()).unwrap();
    let mut body = format!("{{\"record\":{record},\"content\":\"").into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(b"\"}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contributions_upload_the_content_with_the_record() {
    let f = fixture();
    let mut c = config(&f, Metering::Off);
    c.max_content_bytes = 128 * 1024;
    let s = start(c).await;
    let size = s.size().await;
    let blobs = stored_blobs(&f);
    let post = |route: &'static str, body: Vec<u8>| {
        let req = s.client.post(s.url(route)).body(body);
        async move { json_of(req.send().await.unwrap()).await }
    };

    // Larger than the server-wide --max-body-bytes (64 KiB here): the route has its own limit.
    let text = "A line of my own verse, stored with its record.\n".repeat(2000);
    let rec = record(
        &f.alice,
        "up-1",
        f.ts_ms,
        Kind::DataContribute,
        contribution_body(text.as_bytes()),
    );
    let body = serde_json::to_vec(
        &json!({"record": String::from_utf8(rec.clone()).unwrap(), "content": text}),
    )
    .unwrap();
    assert!(body.len() > 64 * 1024);
    let (status, v) = post("/api/contributions", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let hash = shoulders_ledger::content_ref(text.as_bytes());
    assert_eq!(
        v,
        json!({"index": size, "leaf_hash": v["leaf_hash"], "duplicate": false, "content_hash": hash})
    );
    let blob = f
        .data_dir()
        .join("content/sha256")
        .join(&hash["sha256:".len()..]);
    assert_eq!(std::fs::read(&blob).unwrap(), text.as_bytes());
    let (status, c) = json_of(
        s.client
            .get(s.url(&format!("/api/contributions/{size}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, &c["byte_size"]),
        (StatusCode::OK, &json!(text.len()))
    );
    // The same upload again is a duplicate.
    let (status, again) = post("/api/contributions", body).await;
    assert_eq!(
        (status, &again["index"], &again["duplicate"]),
        (StatusCode::OK, &json!(size), &json!(true))
    );
    assert_eq!(s.size().await, size + 1);
    let size = size + 1;
    let blobs = blobs + 1;
    assert_eq!(stored_blobs(&f), blobs);

    let doc = b"another poem";
    let n = doc.len();
    let non_utf8 = b"caf\xe9 au lait";
    let sized = |bytes: u64, tokens: u64| {
        let mut b = contribution_body(doc);
        b["byte_size"] = json!(bytes);
        b["token_count"] = json!(tokens);
        record(&f.alice, "up-2", f.ts_ms, Kind::DataContribute, b)
    };
    let good = record(
        &f.alice,
        "up-2",
        f.ts_ms,
        Kind::DataContribute,
        contribution_body(doc),
    );
    // One byte over the route's body limit (just over, so the server reads it all before it
    // answers and the connection closes cleanly).
    let limit = 128 * 1024 + shoulders_server::api::CONTRIBUTION_ENVELOPE_BYTES;
    let overhead = upload(&good, b"").len();
    let over_limit = upload(&good, &vec![b'a'; limit + 1 - overhead]);
    assert_eq!(over_limit.len(), limit + 1);
    let cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (
            upload(&good, b"another poem!"),
            StatusCode::BAD_REQUEST,
            "E_CONTENT_HASH_MISMATCH",
        ),
        (
            upload(
                &record(
                    &f.alice,
                    "up-3",
                    f.ts_ms,
                    Kind::DataContribute,
                    contribution_body(non_utf8),
                ),
                non_utf8,
            ),
            StatusCode::BAD_REQUEST,
            "E_CONTENT_NOT_UTF8",
        ),
        (
            upload(&sized(1 << 40, n as u64), doc),
            StatusCode::UNPROCESSABLE_ENTITY,
            "E_CONTENT_SIZE_MISMATCH",
        ),
        (
            upload(&sized(n as u64, 1), doc),
            StatusCode::UNPROCESSABLE_ENTITY,
            "E_CONTENT_SIZE_MISMATCH",
        ),
        (
            upload(
                &record(
                    &f.bob,
                    "up-4",
                    f.ts_ms,
                    Kind::DatasetCreate,
                    json!({"dataset_id": "bob/x", "name": "X", "access": "open"}),
                ),
                doc,
            ),
            StatusCode::BAD_REQUEST,
            "E_NOT_A_CONTRIBUTION",
        ),
        (
            upload(
                &record(&f.alice, "up-5", f.ts_ms, Kind::DataContribute, {
                    let mut b = contribution_body(doc);
                    b["dataset_id"] = json!("alice/none");
                    b
                }),
                doc,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "E_DATASET_UNKNOWN",
        ),
        (
            upload(b"{\"not\":\"a record\"}", doc),
            StatusCode::BAD_REQUEST,
            "E_RECORD_SCHEMA",
        ),
        (
            b"{\"record\": 1}".to_vec(),
            StatusCode::BAD_REQUEST,
            "E_JSON_INVALID",
        ),
        // A document over --max-content-bytes, and a body over that plus the record's room.
        (
            upload(&good, &vec![b'a'; 128 * 1024 + 1]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "E_BODY_TOO_LARGE",
        ),
        (
            over_limit,
            StatusCode::PAYLOAD_TOO_LARGE,
            "E_BODY_TOO_LARGE",
        ),
    ];
    for (body, want_status, want_code) in cases {
        let (status, v) = post("/api/contributions", body).await;
        assert_eq!((status, code(&v)), (want_status, want_code), "{v}");
        assert_eq!(s.size().await, size, "{want_code} appended something");
        assert_eq!(stored_blobs(&f), blobs, "{want_code} stored something");
    }

    // POST /api/records with a contribution whose content was never uploaded.
    let (status, v) = post("/api/records", good.clone()).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "E_CONTENT_MISSING"),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("POST /api/contributions"),
        "{v}"
    );
    assert_eq!(s.size().await, size);
    // Uploaded with its content, the same record is appended; then /api/records knows it.
    let (status, v) = post("/api/contributions", upload(&good, doc)).await;
    assert_eq!(
        (status, &v["index"]),
        (StatusCode::CREATED, &json!(size)),
        "{v}"
    );
    let (status, v) = post("/api/records", good).await;
    assert_eq!(
        (status, &v["duplicate"]),
        (StatusCode::OK, &json!(true)),
        "{v}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_routes() {
    let f = fixture();
    let s = start(config(&f, Metering::Off)).await;
    let (status, doc) = json_of(s.client.get(s.url("/openapi.json")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    documented.sort();
    // Every route the server answers (the router is built from the same annotated handlers,
    // so this list is what a reviewer checks against ARCHITECTURE.md).
    let mut expected = vec![
        "DELETE /api/admin/keys/{id}",
        "GET /api/accounts",
        "GET /api/actors",
        "GET /api/admin/keys",
        "POST /api/admin/keys",
        "GET /api/actors/{handle}",
        "GET /api/actors/{handle}/receipts",
        "GET /api/checkpoint",
        "GET /api/contributions/{index}",
        "GET /api/datasets",
        "GET /api/datasets/{owner}/{name}",
        "GET /api/datasets/{owner}/{name}/contributions",
        "GET /api/disputes",
        "GET /api/disputes/{id}",
        "GET /api/licenses/{owner}/{name}",
        "GET /api/models",
        "GET /api/models/{owner}/{name}",
        "GET /api/models/{owner}/{name}/diff",
        "GET /api/models/{owner}/{name}/license-check",
        "GET /api/models/{owner}/{name}/lineage",
        "GET /api/models/{owner}/{name}/receipts",
        "GET /api/models/{owner}/{name}/training",
        "GET /api/proofs/consistency",
        "GET /api/proofs/inclusion",
        "GET /api/receipts/{index}/output",
        "GET /api/records",
        "GET /api/records/{index}",
        "GET /api/statements/{holder}",
        "GET /api/witnesses",
        "POST /api/attribute",
        "POST /api/contributions",
        "POST /api/receipts/{index}/audit",
        "POST /api/records",
        "GET /log/checkpoint",
        "GET /log/tile/{path}",
        "GET /v1/models",
        "POST /v1/chat/completions",
        "POST /v1/completions",
    ];
    expected.sort();
    assert_eq!(documented, expected);
    // Every documented route is served: none falls through to the unknown-route or
    // wrong-method answers.
    for route in &documented {
        let (method, path) = route.split_once(' ').unwrap();
        let concrete = path
            .replace("{handle}", "alice")
            .replace("{index}", "0")
            .replace("{owner}", "alice")
            .replace("{name}", "verse-base")
            .replace("{id}", "0123456789abcdef")
            .replace("{path}", "entries/000.p/1");
        let req = match method {
            "GET" => s.client.get(s.url(&concrete)),
            "DELETE" => s.client.delete(s.url(&concrete)),
            _ => s.client.post(s.url(&concrete)).body("{}"),
        };
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{route}");
        assert!(!text.contains("E_ROUTE_NOT_FOUND"), "{route}: {text}");
    }
    // And an undocumented one is not.
    let (status, v) = json_of(s.client.get(s.url("/api/secret")).send().await.unwrap()).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::NOT_FOUND, "E_ROUTE_NOT_FOUND")
    );
    s.stop().await;
}

/// A read-only node over the same ledger: every write route is refused with `E_READ_ONLY`
/// (403, documented for exactly those routes) and appends nothing; reads, `GET /v1/models` and
/// attribution answer. (Following the writer is tested with real processes in the CLI's
/// `serve` tests.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_node_refuses_every_write_route() {
    let f = fixture();
    let token = issue_key(&f.data_dir(), "bob");
    let mut c = config(&f, Metering::On);
    c.read_only = true;
    let s = start(c).await;
    let size = s.size().await;
    let (_, doc) = json_of(s.client.get(s.url("/openapi.json")).send().await.unwrap()).await;
    let writes = [
        "POST /api/contributions",
        "POST /api/records",
        "POST /v1/chat/completions",
        "POST /v1/completions",
    ];
    let mut refused = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let route = format!("{} {path}", method.to_uppercase());
            if !writes.contains(&route.as_str()) {
                continue;
            }
            assert!(
                op["responses"]["403"].is_object(),
                "{route}: 403 undocumented"
            );
            let rec = record(
                &f.bob,
                "ds-ro",
                f.ts_ms,
                Kind::DatasetCreate,
                json!({"dataset_id": "bob/ro", "name": "RO", "access": "owner"}),
            );
            let (status, v) = json_of(
                s.client
                    .post(s.url(path))
                    .bearer_auth(&token)
                    .body(rec)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(
                (status, code(&v)),
                (StatusCode::FORBIDDEN, "E_READ_ONLY"),
                "{route}"
            );
            refused.push(route);
        }
    }
    refused.sort();
    assert_eq!(refused, writes);
    assert_eq!(s.size().await, size, "nothing appended");
    let (status, models) = json_of(s.client.get(s.url("/v1/models")).send().await.unwrap()).await;
    assert_eq!(
        (status, models["data"].as_array().unwrap().len()),
        (StatusCode::OK, 2)
    );
    let (status, v) = json_of(
        s.client
            .post(s.url("/api/attribute"))
            .bearer_auth(&token)
            .json(&json!({"dataset_id": "alice/verse", "text": "The woods are lovely, dark and deep"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    s.stop().await;
}

async fn sse_events(resp: reqwest::Response) -> Vec<String> {
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = resp.text().await.unwrap();
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: ").map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_embedded_model_with_attribution() {
    let f = fixture();
    let token = issue_key(&f.data_dir(), "bob");
    let s = start(config(&f, Metering::Off)).await;
    let size = s.size().await;
    let (_, models) = json_of(s.client.get(s.url("/v1/models")).send().await.unwrap()).await;
    assert_eq!(models["data"].as_array().unwrap().len(), 2);

    // The fine-tune has no dataset of its own: it answers from its parent's index.
    let req = json!({"model": "bob/tuned", "messages": [{"role": "user", "content": "The woods are"}],
                     "max_tokens": 200, "seed": 1});
    let (status, v) = json_of(
        s.client
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(&token)
            .json(&req)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        content,
        " lovely, dark and deep,\nBut I have promises to keep.\n"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], content.len());
    let sh = &v["shoulders"];
    assert_eq!(
        (sh["payer"].as_str(), sh["metering"].as_str()),
        (Some("bob"), Some("off"))
    );
    assert_eq!(sh["receipt"], Value::Null);
    assert_eq!(sh["attribution"]["dataset_id"], "alice/verse");
    assert_eq!(
        sh["attribution"]["spans"][0]["text"].as_str().unwrap(),
        content
    );
    assert_eq!(
        sh["attribution"]["shares"]["contributors_ppm"]["alice"],
        1_000_000
    );

    // Streaming gives the same text (same seed), then [DONE]; the last chunk carries the rest.
    let mut stream_req = req.clone();
    stream_req["stream"] = json!(true);
    let events = sse_events(
        s.client
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(&token)
            .json(&stream_req)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, content);
    assert!(chunks.len() > 2, "streamed in several chunks");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        last["shoulders"]["attribution"]["dataset_id"],
        "alice/verse"
    );

    // Legacy completions, streamed.
    let events = sse_events(s.client.post(s.url("/v1/completions")).bearer_auth(&token)
        .json(&json!({"model": "alice/verse-base", "prompt": "Because I could not stop", "stream": true, "max_tokens": 12, "seed": 5}))
        .send().await.unwrap()).await;
    let text: String = events[..events.len() - 1]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(text, " for Death,\n");
    // Metering off: nothing was appended.
    assert_eq!(s.size().await, size);
    s.stop().await;
}

/// Metering on: the gateway signs a `usage.receipt` with `D/operator.key` and appends it before
/// answering; the receipt names the payer, the output's hash and its attribution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_metering_on_signs_and_submits_a_receipt() {
    let f = fixture();
    let operator = write_operator_key(&f.data_dir());
    // Name the operator in the ledger's configuration (what `shoulders init --operator` does).
    let ledger =
        shoulders_ledger::Ledger::open(&shoulders_ledger::DataDir::new(f.data_dir())).unwrap();
    let submit =
        |key, id: &str, kind, body| ledger.submit(record(key, id, f.ts_ms, kind, body)).unwrap();
    submit(
        &operator,
        "config",
        Kind::LedgerConfig,
        json!({"operator": "operator", "protocol_fee_bps": 250}),
    );
    // Only a priced model is metered: alice prices a model on her verse, bob deposits.
    let (name, spdx, terms) = shoulders_license::preset("apache-2.0").unwrap();
    let mut terms = serde_json::to_value(terms).unwrap();
    terms["price_per_call_micros"] = json!("1000");
    submit(
        &f.alice,
        "lic",
        Kind::LicenseDefine,
        json!({"license_id": "alice/priced", "name": name, "spdx_id": spdx, "terms": terms}),
    );
    submit(
        &f.alice,
        "m-priced",
        Kind::ModelRegister,
        json!({"model_id": "alice/verse-priced", "name": "Verse, priced",
               "datasets": ["alice/verse"], "license_id": "alice/priced"}),
    );
    submit(
        &operator,
        "dep",
        Kind::FundsDeposit,
        json!({"account": "bob", "currency": "USD", "amount_micros": "5000"}),
    );
    drop(ledger);
    let token = issue_key(&f.data_dir(), "bob");
    let s = start(config(&f, Metering::On)).await;
    let size = s.size().await;
    let (status, v) = json_of(
        s.client
            .post(s.url("/v1/completions"))
            .bearer_auth(&token)
            .json(&json!({"model": "alice/verse-priced", "prompt": "Shall I", "max_tokens": 60}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["shoulders"]["metering"], "on");
    let receipt = &v["shoulders"]["receipt"];
    assert_eq!(receipt["index"], size, "{v}");
    assert_eq!(s.size().await, size + 1);
    let (status, r) = json_of(
        s.client
            .get(s.url(&format!("/api/records/{size}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["kind"], "usage.receipt");
    let body = &r["body"];
    assert_eq!(body["payer"], "bob");
    assert_eq!(body["model_id"], "alice/verse-priced");
    assert_eq!(body["usage_id"], receipt["usage_id"]);
    let text = v["choices"][0]["text"].as_str().unwrap();
    use sha2::Digest;
    assert_eq!(
        body["output_hash"],
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(text.as_bytes()))
        )
    );
    let shares = body["attribution"].as_array().unwrap();
    assert!(
        !shares.is_empty(),
        "the continuation quotes the sonnet: {v}"
    );
    assert!(shares.iter().all(|a| a["dataset_id"] == "alice/verse"));
    assert_eq!(
        shares
            .iter()
            .map(|a| a["ppm"].as_u64().unwrap())
            .sum::<u64>(),
        1_000_000
    );
    // Bob paid the price of one call.
    let (_, st) = json_of(
        s.client
            .get(s.url("/api/statements/bob"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st["totals"][0]["balance_micros"], "4000", "{st}");
    s.stop().await;
}

/// A free derivative of a model with royalty floors is charged the floors: the gateway refuses
/// with 402, before generating, a payer who cannot cover them (it asks the fold's own
/// `charge_for`, not the derivative's price).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_refuses_a_free_derivative_when_the_payer_cannot_cover_the_floors() {
    let f = fixture();
    let operator = write_operator_key(&f.data_dir());
    let ledger =
        shoulders_ledger::Ledger::open(&shoulders_ledger::DataDir::new(f.data_dir())).unwrap();
    let submit =
        |key, id: &str, kind, body| ledger.submit(record(key, id, f.ts_ms, kind, body)).unwrap();
    submit(
        &operator,
        "config",
        Kind::LedgerConfig,
        json!({"operator": "operator", "protocol_fee_bps": 100}),
    );
    let (name, spdx, terms) = shoulders_license::preset("apache-2.0").unwrap();
    let mut terms = serde_json::to_value(terms).unwrap();
    terms["royalty_bps"] = json!(500);
    terms["price_per_call_micros"] = json!("10000");
    terms["royalty_floor_per_call_micros"] = json!("1000");
    submit(
        &f.alice,
        "lic",
        Kind::LicenseDefine,
        json!({"license_id": "alice/floored", "name": name, "spdx_id": spdx, "terms": terms}),
    );
    submit(
        &f.alice,
        "m-floored",
        Kind::ModelRegister,
        json!({"model_id": "alice/verse-floored", "name": "Verse, floored",
               "datasets": ["alice/verse"], "license_id": "alice/floored"}),
    );
    // bob's adapter has no licence, hence no price of its own.
    submit(
        &f.bob,
        "m-free",
        Kind::ModelRegister,
        json!({"model_id": "bob/free-adapter", "name": "Free adapter",
               "parents": [{"model_id": "alice/verse-floored", "relation": "adapter"}]}),
    );
    // One call with no output costs 1011: the 1000 floor plus the 1% fee on the charge
    // (rounded up).
    submit(
        &operator,
        "dep",
        Kind::FundsDeposit,
        json!({"account": "bob", "currency": "USD", "amount_micros": "1010"}),
    );
    drop(ledger);
    let token = issue_key(&f.data_dir(), "bob");
    let s = start(config(&f, Metering::On)).await;
    let size = s.size().await;
    let (status, v) = json_of(
        s.client
            .post(s.url("/v1/completions"))
            .bearer_auth(&token)
            .json(&json!({"model": "bob/free-adapter", "prompt": "Shall I", "max_tokens": 20}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{v}");
    assert_eq!(code(&v), "E_INSUFFICIENT_FUNDS");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may cost up to 1011"),
        "{v}"
    );
    assert_eq!(s.size().await, size, "nothing generated, nothing appended");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_keeps_every_acknowledged_write() {
    let f = fixture();
    let s = start(config(&f, Metering::Off)).await;
    let base = s.size().await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let rec = record(
            &f.alice,
            &format!("many-{i}"),
            f.ts_ms,
            Kind::DatasetCreate,
            json!({"dataset_id": format!("alice/d{i}"), "name": "D", "access": "open"}),
        );
        let client = s.client.clone();
        let url = s.url("/api/records");
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).body(rec).send().await.ok()?;
            (r.status() == StatusCode::CREATED).then_some(())?;
            let v: Value = r.json().await.ok()?;
            v["index"].as_u64()
        }));
    }
    // Shut down while writes are in flight: once the first has been acknowledged.
    while s.size().await == base {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let dir = f.data_dir();
    s.stop().await;
    let mut acked = Vec::new();
    for t in tasks {
        if let Some(i) = t.await.unwrap() {
            acked.push(i);
        }
    }
    assert!(!acked.is_empty());
    // The server is gone and the ledger closed: a fresh reader sees every acknowledged write.
    let reader = shoulders_ledger::Reader::open(&shoulders_ledger::DataDir::new(&dir)).unwrap();
    for i in &acked {
        assert!(*i >= base && *i < reader.size(), "acknowledged {i} missing");
        assert!(reader.record(*i).unwrap().is_some());
    }
    // The writer lock is released: the ledger opens for writing again. The last connection
    // task may drop its handle on the state a moment after `serve` returned, so the new writer
    // waits for the lock a while (a lock that is never released still fails here).
    drop(reader);
    let patient = shoulders_ledger::LedgerConfig {
        writer_lock_wait_ms: 30_000,
        ..Default::default()
    };
    shoulders_ledger::Ledger::open_with(&shoulders_ledger::DataDir::new(&dir), patient).unwrap();
}

/// A new record signed outside the admission window is refused and appends nothing; an
/// identical resubmission of a record already in the log is still answered as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_signer_timestamps_are_refused() {
    let f = fixture();
    let window = shoulders_server::DEFAULT_ADMISSION_WINDOW_MS;
    // A record signed long ago, appended by a local tool (no window there).
    let old = record(
        &f.bob,
        "imported",
        f.ts_ms - 10 * window,
        Kind::DatasetCreate,
        json!({"dataset_id": "bob/imported", "name": "Imported", "access": "owner"}),
    );
    {
        let ledger =
            shoulders_ledger::Ledger::open(&shoulders_ledger::DataDir::new(f.data_dir())).unwrap();
        ledger.submit(old.clone()).unwrap();
    }
    let s = start(config(&f, Metering::Off)).await;
    let size = s.size().await;
    for ts in [f.ts_ms - window - 60_000, f.ts_ms + window + 60_000] {
        let rec = record(
            &f.bob,
            &format!("stale-{ts}"),
            ts,
            Kind::DatasetCreate,
            json!({"dataset_id": format!("bob/stale-{ts}"), "name": "Old", "access": "owner"}),
        );
        let (status, v) = json_of(
            s.client
                .post(s.url("/api/records"))
                .body(rec)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(code(&v), "E_TIMESTAMP_OUTSIDE_WINDOW");
    }
    assert_eq!(s.size().await, size, "nothing appended");
    // Resubmitting the identical old record is answered as a duplicate: the window applies to
    // new records only, so retries stay idempotent.
    let (status, v) = json_of(
        s.client
            .post(s.url("/api/records"))
            .body(old)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, &v["duplicate"]),
        (StatusCode::OK, &json!(true)),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_timeout_gets_a_json_error() {
    let f = fixture();
    let token = issue_key(&f.data_dir(), "bob");
    // An upstream that accepts connections and never answers: the gateway call must be
    // abandoned at the server's request timeout with a JSON error, not hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}/v1", silent.local_addr().unwrap());
    let mut c = config(&f, Metering::Off);
    c.request_timeout_ms = 300;
    c.upstreams.insert("bob/tuned".into(), upstream);
    let s = start(c).await;
    let started = std::time::Instant::now();
    let req = json!({"model": "bob/tuned", "prompt": "The woods are", "max_tokens": 5});
    let (status, v) = json_of(
        s.client
            .post(s.url("/v1/completions"))
            .bearer_auth(&token)
            .json(&req)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "E_TIMEOUT"),
        "{v}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    drop(silent);
    s.stop().await;
}

/// A client over its request rate gets 429 E_RATE_LIMITED with Retry-After; others are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_their_rate_are_refused() {
    let f = fixture();
    let mut c = config(&f, Metering::Off);
    c.rate_limit = Some(shoulders_server::ratelimit::RateLimit {
        per_second: 1,
        burst: 3,
        limit_loopback: true,
    });
    let s = start(c).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = s.client.get(s.url("/api/checkpoint")).send().await.unwrap();
        let retry = r.headers().get("retry-after").is_some();
        let status = r.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let (_, v) = json_of(r).await;
            assert_eq!(code(&v), "E_RATE_LIMITED");
            assert!(retry, "429 carries Retry-After");
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..3], &[StatusCode::OK; 3], "the burst is served");
    assert!(
        statuses[3..].contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    s.stop().await;
}
