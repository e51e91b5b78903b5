//! `POST /api/attribute` against a hostile client (issue 15, item 7): it needs an API key, is
//! rate-limited per key, and a search past its deadline answers `504 E_ATTRIBUTION_TIMEOUT`
//! and stops (its step counter stops growing). Nothing is appended either way.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shoulders_server::ratelimit::RateLimit;
use shoulders_server::{AppState, Metering};

async fn json_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, v)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

const QUOTE: &str = "The woods are lovely, dark and deep";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_needs_a_key_and_is_rate_limited_per_key() {
    let f = fixture();
    let token = issue_key(&f.data_dir(), "bob");
    let other = issue_key(&f.data_dir(), "alice");
    let mut c = config(&f, Metering::Off);
    c.attribute_rate_limit = Some(RateLimit {
        per_second: 1,
        burst: 3,
        limit_loopback: true,
    });
    let s = start(c).await;
    let size = s.size().await;
    let body = json!({"dataset_id": "alice/verse", "text": QUOTE});
    // No key, a wrong key: 401 before any work.
    for auth in [None, Some("sk-shoulders-wrong")] {
        let mut req = s.client.post(s.url("/api/attribute")).json(&body);
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        let (status, v) = json_of(req.send().await.unwrap()).await;
        assert_eq!(
            (status, code(&v)),
            (StatusCode::UNAUTHORIZED, "E_UNAUTHORIZED"),
            "{v}"
        );
    }
    // A burst beyond the key's bucket: the first three answer, then 429 (well under a second,
    // so at most one token comes back meanwhile: count, not time).
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let r = s
            .client
            .post(s.url("/api/attribute"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, v) = json_of(r).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(code(&v), "E_RATE_LIMITED");
        } else {
            assert_eq!(status, StatusCode::OK, "{v}");
        }
        statuses.push(status);
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert!((3..=5).contains(&ok), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
    // Another key has its own bucket.
    let r = s
        .client
        .post(s.url("/api/attribute"))
        .bearer_auth(&other)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(s.size().await, size, "nothing appended");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attribution_past_its_deadline_is_cancelled_and_stops() {
    let f = fixture();
    let token = issue_key(&f.data_dir(), "bob");
    let mut c = config(&f, Metering::Off);
    c.max_body_bytes = 2 << 20;
    c.attribute_timeout_ms = 0;
    let state = AppState::open(c).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(shoulders_server::serve(
        listener,
        Arc::clone(&state),
        async move {
            let _ = rx.await;
        },
    ));
    // Long enough that the search passes its first check (every few thousand steps).
    let text = format!("{QUOTE}, ").repeat(4000);
    let (status, v) = json_of(
        reqwest::Client::new()
            .post(format!("{base}/api/attribute"))
            .bearer_auth(&token)
            .json(&json!({"dataset_id": "alice/verse", "text": text}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::GATEWAY_TIMEOUT, "E_ATTRIBUTION_TIMEOUT"),
        "{v}"
    );
    let stopped_at = state.attribution_progress.load(Ordering::Relaxed);
    assert!(stopped_at > 0);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        state.attribution_progress.load(Ordering::Relaxed),
        stopped_at,
        "the search stopped"
    );
    let _ = tx.send(());
    server.await.unwrap().unwrap();
}
