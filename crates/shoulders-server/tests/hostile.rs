//! Hostile clients against a running server (issue 15, items 8 and 9): half-sent requests
//! (slowloris) past the connection limit, silent connections, one actor flooding writes, and
//! lists of large records. Each attack is refused or bounded, and the server keeps serving
//! everyone else. Count-based: deadlines are generous, nothing asserts a duration.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shoulders_record::Kind;
use shoulders_server::Metering;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest any step may take before the test fails (the expected times are well under it).
const DEADLINE: Duration = Duration::from_secs(60);

async fn json_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, v)
}

fn addr(s: &Running) -> String {
    s.base.trim_start_matches("http://").to_string()
}

/// A connection that sent the start of a request and never its end.
async fn half_sent(s: &Running) -> TcpStream {
    let mut c = TcpStream::connect(addr(s)).await.unwrap();
    c.write_all(b"GET /api/checkpoint HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    c
}

/// Whether the server closed `c` (EOF or reset, after whatever it sent), within [`DEADLINE`].
async fn closed_by_server(mut c: TcpStream) -> bool {
    let mut buf = Vec::new();
    match tokio::time::timeout(DEADLINE, c.read_to_end(&mut buf)).await {
        Ok(Ok(_)) | Ok(Err(_)) => {
            // Whatever was sent is not a served checkpoint.
            assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
            true
        }
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_after_the_header_timeout() {
    let f = fixture();
    let mut c = config(&f, Metering::Off);
    c.connections.max_connections = 8;
    c.connections.header_timeout_ms = 300;
    let s = start(c).await;
    // Many more half-sent requests than the server takes connections.
    let mut slow = Vec::new();
    for _ in 0..40 {
        slow.push(half_sent(&s).await);
    }
    // A new client is still served: it waits in the accept queue while the header timeout
    // frees the slots.
    let client = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let r = client.get(s.url("/api/checkpoint")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Every half-sent request was closed by the server.
    let mut closed = 0;
    for c in slow {
        closed += usize::from(closed_by_server(c).await);
    }
    assert_eq!(closed, 40, "half-sent connections closed by the server");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_limit_new_clients_wait_for_a_free_slot() {
    let f = fixture();
    let mut c = config(&f, Metering::Off);
    c.connections.max_connections = 4;
    // Long enough that nothing times out during the test.
    c.connections.header_timeout_ms = 600_000;
    c.connections.idle_timeout_ms = 600_000;
    let s = start(c).await;
    let mut slow = Vec::new();
    for _ in 0..4 {
        slow.push(half_sent(&s).await);
    }
    // Every slot is held: a new request is not served (it waits, unaccepted)...
    let waiting = tokio::spawn({
        let url = s.url("/api/checkpoint");
        async move {
            let client = reqwest::Client::builder()
                .timeout(DEADLINE)
                .build()
                .unwrap();
            client.get(url).send().await.map(|r| r.status())
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "served past the connection limit");
    // ...until one of them goes away.
    drop(slow.pop());
    let status = tokio::time::timeout(DEADLINE, waiting)
        .await
        .expect("served once a slot freed")
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    drop(slow);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_after_the_idle_timeout() {
    let f = fixture();
    let mut c = config(&f, Metering::Off);
    c.connections.header_timeout_ms = 600_000;
    c.connections.idle_timeout_ms = 300;
    let s = start(c).await;
    // Connected and silent, or stalled mid-header: both closed, although the header timeout
    // is far away.
    let silent = TcpStream::connect(addr(&s)).await.unwrap();
    let stalled = half_sent(&s).await;
    assert!(closed_by_server(silent).await);
    assert!(closed_by_server(stalled).await);
    // A request that is answered is not cut.
    let r = s
        .client
        .get(s.url("/api/records?limit=5"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let started = Instant::now();
    let _ = r.bytes().await.unwrap();
    assert!(started.elapsed() < DEADLINE);
    s.stop().await;
}

fn dataset(key: &shoulders_record::ActorKey, owner: &str, i: usize, ts: u64) -> Vec<u8> {
    record(
        key,
        &format!("q{i}"),
        ts,
        Kind::DatasetCreate,
        json!({"dataset_id": format!("{owner}/q{i}"), "name": "Q", "access": "owner"}),
    )
}

async fn post(s: &Running, body: Vec<u8>) -> (StatusCode, Value, bool) {
    let r = s
        .client
        .post(s.url("/api/records"))
        .body(body)
        .send()
        .await
        .unwrap();
    let retry = r.headers().get("retry-after").is_some();
    let (status, v) = json_of(r).await;
    (status, v, retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_over_its_quota_is_refused_and_others_still_write() {
    let f = fixture();
    let mut c = config(&f, Metering::Off);
    c.write_quota = Some(shoulders_server::quota::WriteQuota {
        records: 3,
        bytes: 1 << 20,
        window_ms: 3_600_000,
    });
    let s = start(c).await;
    let size = s.size().await;

    // Garbage under bob's key (a broken signature) is refused and does not spend his quota.
    let mut forged = dataset(&f.bob, "bob", 99, f.ts_ms);
    let at = forged.len() - 10;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    for _ in 0..5 {
        let (status, v, _) = post(&s, forged.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    }

    // alice floods: three pass, the rest are refused with Retry-After.
    let mut refused = 0;
    for i in 0..6 {
        let (status, v, retry) = post(&s, dataset(&f.alice, "alice", i, f.ts_ms)).await;
        if i < 3 {
            assert_eq!(status, StatusCode::CREATED, "{v}");
        } else {
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
            assert_eq!(v["error"]["code"], "E_QUOTA_EXCEEDED");
            assert!(retry, "429 carries Retry-After");
            refused += 1;
        }
    }
    assert_eq!(refused, 3);
    // The contribution route counts against the same quota, before storing anything.
    let upload = json!({"record": String::from_utf8(record(
        &f.alice, "c9", f.ts_ms, Kind::DataContribute,
        json!({"dataset_id": "alice/verse", "content_hash": shoulders_ledger::content_ref(b"new"),
               "byte_size": 3, "token_count": 3}))).unwrap(), "content": "new"});
    let r = s
        .client
        .post(s.url("/api/contributions"))
        .json(&upload)
        .send()
        .await
        .unwrap();
    let (status, v) = json_of(r).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("E_QUOTA_EXCEEDED"))
    );
    // bob still writes his whole quota.
    for i in 0..3 {
        let (status, v, _) = post(&s, dataset(&f.bob, "bob", i, f.ts_ms)).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    let (status, _, _) = post(&s, dataset(&f.bob, "bob", 3, f.ts_ms)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Exactly the quotas were appended, and the books still balance.
    assert_eq!(s.size().await, size + 6);
    let (status, acc) = json_of(s.client.get(s.url("/api/accounts")).send().await.unwrap()).await;
    assert_eq!((status, &acc["conserved"]), (StatusCode::OK, &json!(true)));
    s.stop().await;
}

/// Walk `/api/records` forward from 0 with `next_from`; returns every index seen, checking each
/// page against the byte budget (a page over it holds exactly one record).
async fn walk_records(s: &Running, budget: usize) -> (Vec<u64>, usize) {
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut from = Some(0u64);
    while let Some(f) = from {
        let r = s
            .client
            .get(s.url(&format!("/api/records?from={f}&limit=1000")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body = r.bytes().await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let records = v["records"].as_array().unwrap();
        assert!(!records.is_empty(), "never an empty page");
        assert!(
            body.len() <= budget + 200 || records.len() == 1,
            "a page of {} bytes holds {} records",
            body.len(),
            records.len()
        );
        seen.extend(records.iter().map(|r| r["index"].as_u64().unwrap()));
        from = v["next_from"].as_u64();
        pages += 1;
        assert!(pages < 1000);
    }
    (seen, pages)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_end_early_at_the_byte_budget_and_their_cursors_walk_everything() {
    let f = fixture();
    // Larger records: datasets with long descriptions.
    let long = "x".repeat(3000);
    let ledger_records: Vec<Vec<u8>> = (0..8)
        .map(|i| {
            record(
                &f.bob,
                &format!("big{i}"),
                f.ts_ms,
                Kind::DatasetCreate,
                json!({"dataset_id": format!("bob/big{i}"), "name": "Big", "access": "owner",
                       "description": long}),
            )
        })
        .collect();
    let budget = 8000;
    let mut c = config(&f, Metering::Off);
    c.max_page_bytes = budget;
    let s = start(c).await;
    for rec in ledger_records {
        let (status, v, _) = post(&s, rec).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    let size = s.size().await;
    let (seen, pages) = walk_records(&s, budget).await;
    assert_eq!(
        seen,
        (0..size).collect::<Vec<_>>(),
        "every record exactly once"
    );
    assert!(pages >= 4, "{pages} pages: the budget cut them");

    // The default page (the newest that fit) ends at the tip and points back.
    let v: Value = s
        .client
        .get(s.url("/api/records?limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let records = v["records"].as_array().unwrap();
    assert!(!records.is_empty() && (records.len() as u64) < size);
    assert_eq!(records.last().unwrap()["index"], size - 1);
    assert_eq!(v["from"], size - records.len() as u64);
    assert!(v.get("next_from").is_none());

    // A budget smaller than one record still returns it, one per page.
    s.stop().await;
    let mut c = config(&f, Metering::Off);
    c.max_page_bytes = 10;
    let s = start(c).await;
    let (seen, pages) = walk_records(&s, 10).await;
    assert_eq!((seen.len() as u64, pages as u64), (size, size));
    // State lists too: one model a page, the cursor reaching both.
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => s.url(&format!("/api/models?limit=1000&cursor={c}")),
            None => s.url("/api/models?limit=1000"),
        };
        let v: Value = s
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = v["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{v}");
        ids.push(items[0]["model_id"].as_str().unwrap().to_string());
        match v["next"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    assert_eq!(ids, ["alice/verse-base", "bob/tuned"]);
    s.stop().await;
}
