//! Hostile clients and upstreams against the metering gateway (issue 15, items 1, 2 and 10):
//! every charge is bounded by what was delivered and what was asked for, every call is
//! pre-authorised before a model runs, and upstream answers are read with a byte cap and a
//! timeout. Each test runs the attack against a stub upstream on loopback, then checks that
//! nothing was appended or charged wrongly and that the exported ledger still verifies with
//! conserved books.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shoulders_record::Kind;
use shoulders_server::ServerConfig;

const MODEL: &str = "alice/verse-metered";
/// 1000 micro-units per output token, nothing per call: a per-token-priced model.
const PER_1K_MICROS: u128 = 1_000_000;
const PER_TOKEN_MICROS: u128 = PER_1K_MICROS / 1000;

async fn json_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, v)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

/// What the stub upstream answers.
#[derive(Clone)]
enum Reply {
    /// A completion with this text, claiming this many completion tokens in `usage`.
    Text { text: String, claimed_tokens: u64 },
    /// A chunked body of this many bytes, made as it is sent (never held whole).
    Huge { bytes: u64 },
    /// Headers, then one byte every 100 ms for a minute.
    Trickle,
}

/// A stub OpenAI-compatible upstream: counts requests, keeps the last request body, and holds
/// every request until `gate` has a permit (tests open it when they are ready).
struct Stub {
    reply: Mutex<Reply>,
    hits: AtomicUsize,
    last_request: Mutex<Option<Value>>,
    gate: tokio::sync::Semaphore,
    /// Bytes of a `Huge` body generated so far.
    sent: Arc<AtomicU64>,
}

impl Stub {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    fn open(&self) {
        self.gate.add_permits(1000);
    }
    fn answer(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }
}

async fn stub_answer(State(stub): State<Arc<Stub>>, body: Bytes) -> Response {
    stub.hits.fetch_add(1, Ordering::SeqCst);
    *stub.last_request.lock().unwrap() = serde_json::from_slice(&body).ok();
    stub.gate.acquire().await.unwrap().forget();
    let reply = stub.reply.lock().unwrap().clone();
    match reply {
        Reply::Text {
            text,
            claimed_tokens,
        } => axum::Json(json!({
            "id": "cmpl-stub", "object": "text_completion", "model": "stub",
            "choices": [{"index": 0, "text": text, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": claimed_tokens,
                      "total_tokens": claimed_tokens + 3},
        }))
        .into_response(),
        Reply::Huge { bytes } => {
            static CHUNK: [u8; 64 << 10] = [b'a'; 64 << 10];
            let sent = Arc::clone(&stub.sent);
            let head = Bytes::from_static(br#"{"choices":[{"index":0,"text":""#);
            let chunks = (0..bytes / CHUNK.len() as u64).map(move |_| {
                sent.fetch_add(CHUNK.len() as u64, Ordering::SeqCst);
                Ok::<_, Infallible>(Bytes::from_static(&CHUNK))
            });
            let stream = tokio_stream::iter(std::iter::once(Ok(head)).chain(chunks));
            Body::from_stream(stream).into_response()
        }
        Reply::Trickle => {
            let stream = tokio_stream::StreamExt::throttle(
                tokio_stream::iter((0..600).map(|_| Ok::<_, Infallible>(Bytes::from_static(b" ")))),
                Duration::from_millis(100),
            );
            Body::from_stream(stream).into_response()
        }
    }
}

/// Start a stub upstream; returns it and its base URL (`http://127.0.0.1:PORT/v1`).
async fn stub(reply: Reply, open: bool) -> (Arc<Stub>, String) {
    let stub = Arc::new(Stub {
        reply: Mutex::new(reply),
        hits: AtomicUsize::new(0),
        last_request: Mutex::new(None),
        gate: tokio::sync::Semaphore::new(0),
        sent: Arc::new(AtomicU64::new(0)),
    });
    if open {
        stub.open();
    }
    let app = axum::Router::new()
        .route("/v1/completions", axum::routing::post(stub_answer))
        .route("/v1/chat/completions", axum::routing::post(stub_answer))
        .with_state(Arc::clone(&stub));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (stub, base)
}

/// The fixture plus an operator (1% fee), `MODEL` priced per output token only, `deposit`
/// micro-units for bob and bob's API key; the server's config forwards the model to `upstream`.
fn metered(deposit: u128, upstream: &str) -> (Fixture, ServerConfig, String) {
    Metered {
        model: MODEL,
        license_id: "alice/per-token",
        price_per_call_micros: 0,
        price_per_1k_output_tokens_micros: PER_1K_MICROS,
        forbidden_uses: &[],
        deposit_micros: deposit,
        upstream: Some(upstream),
    }
    .build()
}

async fn call(s: &Running, token: &str, max_tokens: u64) -> (StatusCode, Value) {
    json_of(
        s.client
            .post(s.url("/v1/completions"))
            .bearer_auth(token)
            .json(&json!({"model": MODEL, "prompt": "Shall I", "max_tokens": max_tokens}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn balance(s: &Running, actor: &str) -> i128 {
    let (_, st) = json_of(
        s.client
            .get(s.url(&format!("/api/statements/{actor}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    st["totals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["currency"] == "USD")
        .map_or(0, |t| {
            t["balance_micros"].as_str().unwrap().parse().unwrap()
        })
}

/// Attack (issue 15, item 1): an upstream claims 50 000 output tokens for "ok" on a call with
/// `max_tokens` 10. Trusted, that charged the payer 50 USD. The gateway counts the delivered
/// bytes instead (2), never more than `max_tokens`, and forwards `max_tokens` upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_token_claims_do_not_drive_the_charge() {
    let (stub, url) = stub(
        Reply::Text {
            text: "ok".into(),
            claimed_tokens: 50_000,
        },
        true,
    )
    .await;
    let deposit = 100_000_000; // 100 USD: enough for the claimed 50 USD, had it been believed.
    let (f, c, token) = metered(deposit, &url);
    let s = start(c).await;
    let size = s.size().await;
    let (status, v) = call(&s, &token, 10).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(stub.hits(), 1);
    assert_eq!(
        stub.last_request.lock().unwrap().as_ref().unwrap()["max_tokens"],
        10,
        "the upstream is asked for no more than the payer authorised"
    );
    assert_eq!(v["usage"]["completion_tokens"], 2, "{v}");
    assert_eq!(
        v["shoulders"]["upstream_usage"]["completion_tokens"], 50_000,
        "the claim is reported for information"
    );
    assert_eq!(
        v["shoulders"]["preauthorised_micros"],
        (10 * PER_TOKEN_MICROS).to_string()
    );
    let charged = 2 * PER_TOKEN_MICROS;
    assert_eq!(
        v["shoulders"]["receipt"]["charge_micros"],
        charged.to_string(),
        "{v}"
    );
    assert_eq!(s.size().await, size + 1, "one receipt");
    let (_, r) = json_of(
        s.client
            .get(s.url(&format!("/api/records/{size}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        r["body"]["output_tokens"], 2,
        "the receipt records the count"
    );
    assert_eq!(balance(&s, "bob").await, deposit as i128 - charged as i128);
    s.stop().await;
    assert_eq!(verify_clean(&f), deposit as i128 - charged as i128);
}

/// A long answer to a short request is charged for `max_tokens` at most, whatever its length
/// or the upstream's claim; and a chat call is counted the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_upstream_answer_is_charged_max_tokens_at_most() {
    let (stub, url) = stub(
        Reply::Text {
            text: "word ".repeat(1000),
            claimed_tokens: 1000,
        },
        true,
    )
    .await;
    let deposit = 1_000_000;
    let (f, c, token) = metered(deposit, &url);
    let s = start(c).await;
    let (status, v) = call(&s, &token, 10).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 10, "{v}");
    assert_eq!(
        v["shoulders"]["receipt"]["charge_micros"],
        (10 * PER_TOKEN_MICROS).to_string()
    );
    let (status, v) = json_of(
        s.client
            .post(s.url("/v1/chat/completions"))
            .bearer_auth(&token)
            .json(&json!({"model": MODEL, "max_completion_tokens": 7,
                          "messages": [{"role": "user", "content": "Shall I"}]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 7, "{v}");
    assert_eq!(stub.hits(), 2);
    let expected = deposit as i128 - 17 * PER_TOKEN_MICROS as i128;
    assert_eq!(balance(&s, "bob").await, expected);
    s.stop().await;
    assert_eq!(verify_clean(&f), expected);
}

/// A payer's maximum royalty (`max_royalty_bps` in the request): a model whose royalty stack
/// totals more is refused with 403 `E_LICENSE_DENIED` before any model runs, and nothing is
/// appended or charged; within it the call runs, the field is not sent upstream, and the signed
/// receipt carries the maximum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_its_maximum_royalty_is_refused_before_generation() {
    const CHILD: &str = "alice/roy-child";
    let (stub, url) = stub(
        Reply::Text {
            text: "ok".into(),
            claimed_tokens: 2,
        },
        true,
    )
    .await;
    let deposit = 1_000_000;
    let (f, mut c, token) = metered(deposit, &url);
    // alice's base asks 20% of every descendant's charge; her child of it is priced per token.
    {
        let ledger =
            shoulders_ledger::Ledger::open(&shoulders_ledger::DataDir::new(f.data_dir())).unwrap();
        let submit = |id: &str, kind, body| {
            ledger
                .submit(record(&f.alice, id, f.ts_ms, kind, body))
                .unwrap()
        };
        let (name, spdx, terms) = shoulders_license::preset("apache-2.0").unwrap();
        let mut terms = serde_json::to_value(terms).unwrap();
        terms["royalty_bps"] = json!(2000);
        terms["price_per_1k_output_tokens_micros"] = json!(PER_1K_MICROS.to_string());
        submit(
            "lic-r20",
            Kind::LicenseDefine,
            json!({"license_id": "alice/r20", "name": name, "spdx_id": spdx, "terms": terms}),
        );
        submit(
            "m-roy-base",
            Kind::ModelRegister,
            json!({"model_id": "alice/roy-base", "name": "base", "license_id": "alice/r20"}),
        );
        submit(
            "m-roy-child",
            Kind::ModelRegister,
            json!({"model_id": CHILD, "name": "child", "license_id": "alice/per-token",
                   "parents": [{"model_id": "alice/roy-base", "relation": "finetune"}]}),
        );
    }
    c.upstreams.insert(CHILD.into(), url.clone());
    let s = start(c).await;
    let size = s.size().await;
    let post = |path: &'static str, max: Value| {
        let mut body = json!({"model": CHILD, "max_tokens": 10, "max_royalty_bps": max});
        if path.ends_with("chat/completions") {
            body["messages"] = json!([{"role": "user", "content": "Shall I"}]);
        } else {
            body["prompt"] = json!("Shall I");
        }
        s.client
            .post(s.url(path))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    for path in ["/v1/completions", "/v1/chat/completions"] {
        let (status, v) = json_of(post(path, json!(1999)).await.unwrap()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
        assert_eq!(code(&v), "E_LICENSE_DENIED");
        let message = v["error"]["message"].as_str().unwrap();
        for part in [
            "maximum of 1999 bps",
            "alice/roy-base 2000 bps (licence alice/r20)",
        ] {
            assert!(message.contains(part), "{message} should name {part}");
        }
    }
    let (status, v) = json_of(post("/v1/completions", json!(10_001)).await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "E_GENERATE_PARAMS");
    assert_eq!(stub.hits(), 0, "the upstream never ran");
    assert_eq!(s.size().await, size, "nothing appended");
    assert_eq!(balance(&s, "bob").await, deposit as i128);

    // At the maximum the call runs; the receipt it signs carries the maximum.
    let (status, v) = json_of(post("/v1/completions", json!(2000)).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(stub.hits(), 1);
    assert!(
        stub.last_request.lock().unwrap().as_ref().unwrap()["max_royalty_bps"].is_null(),
        "the gateway's own field is not sent upstream"
    );
    assert_eq!(v["shoulders"]["max_royalty_bps"], 2000);
    assert_eq!(s.size().await, size + 1, "one receipt");
    let (_, r) = json_of(
        s.client
            .get(s.url(&format!("/api/records/{size}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r["kind"], "usage.receipt");
    assert_eq!(r["body"]["max_royalty_bps"], 2000, "{r}");
    let charged = 2 * PER_TOKEN_MICROS;
    assert_eq!(balance(&s, "bob").await, deposit as i128 - charged as i128);
    s.stop().await;
    assert_eq!(verify_clean(&f), deposit as i128 - charged as i128);
}

/// Attack (issue 15, item 2): a payer with nothing makes 10 calls to a per-token-priced model.
/// The old check covered only the per-call price (0 here), so each call reached the upstream
/// and the model's work was given away. Now each is refused with 402 before the upstream is
/// called, and nothing is appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payer_without_funds_never_reaches_the_upstream() {
    let (stub, url) = stub(
        Reply::Text {
            text: "ok".into(),
            claimed_tokens: 1,
        },
        true,
    )
    .await;
    let (f, c, token) = metered(0, &url);
    let s = start(c).await;
    let size = s.size().await;
    for _ in 0..10 {
        let (status, v) = call(&s, &token, 10).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{v}");
        assert_eq!(code(&v), "E_INSUFFICIENT_FUNDS");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("may cost up to 10000"), "{message}");
    }
    // Even a call asking for a single token needs its price.
    let (status, _) = call(&s, &token, 1).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(stub.hits(), 0, "the upstream never ran");
    assert_eq!(s.size().await, size, "nothing appended");
    s.stop().await;
    assert_eq!(verify_clean(&f), 0);
}

/// Concurrent calls by one payer cannot together spend more than it holds: with the balance
/// for three calls' maximum, ten calls at once get three reservations; the other seven are
/// refused before reaching the upstream (which holds the three until the test opens it). Once
/// the three are settled their holds are released: a call needing exactly what is left works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_cannot_overspend_and_holds_are_released() {
    let (stub, url) = stub(
        Reply::Text {
            text: "ok".into(),
            claimed_tokens: 2,
        },
        false,
    )
    .await;
    let max = 10 * PER_TOKEN_MICROS; // max_tokens 10
    let deposit = 3 * max;
    let (f, c, token) = metered(deposit, &url);
    let s = Arc::new(start(c).await);
    let size = s.size().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (s, token, tx) = (Arc::clone(&s), token.clone(), tx.clone());
        tasks.push(tokio::spawn(async move {
            let _ = tx.send(call(&s, &token, 10).await);
        }));
    }
    drop(tx);
    let mut answers = Vec::new();
    // The refusals come back while the upstream still holds the reserved calls.
    for _ in 0..7 {
        let answer = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("seven calls must be refused while three are held")
            .unwrap();
        answers.push(answer);
    }
    assert!(
        answers
            .iter()
            .all(|(st, v)| *st == StatusCode::PAYMENT_REQUIRED && code(v) == "E_INSUFFICIENT_FUNDS"),
        "{answers:?}"
    );
    // The three reserved calls reach the upstream (each in its own time); no other can.
    tokio::time::timeout(Duration::from_secs(60), async {
        while stub.hits() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the three reserved calls reach the upstream");
    assert_eq!(
        stub.hits(),
        3,
        "only the three reserved calls reached the upstream"
    );
    assert_eq!(s.size().await, size);
    stub.open();
    while let Some(answer) = rx.recv().await {
        answers.push(answer);
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ok: Vec<&Value> = answers
        .iter()
        .filter(|(st, _)| *st == StatusCode::OK)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(ok.len(), 3, "{answers:?}");
    let charged: u128 = ok
        .iter()
        .map(|v| {
            v["shoulders"]["receipt"]["charge_micros"]
                .as_str()
                .unwrap()
                .parse::<u128>()
                .unwrap()
        })
        .sum();
    assert_eq!(charged, 3 * 2 * PER_TOKEN_MICROS);
    assert!(charged <= deposit);
    assert_eq!(s.size().await, size + 3);
    let left = deposit - charged;
    assert_eq!(balance(&s, "bob").await, left as i128);
    // Every hold is released: a call whose maximum is exactly the balance left is accepted.
    let max_tokens = (left / PER_TOKEN_MICROS) as u64;
    let (status, v) = call(&s, &token, max_tokens).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = call(&s, &token, max_tokens).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::PAYMENT_REQUIRED, "E_INSUFFICIENT_FUNDS"),
        "the balance went down by the charge: {v}"
    );
    let s = Arc::into_inner(s).unwrap();
    s.stop().await;
    assert_eq!(
        verify_clean(&f),
        (left - 2 * PER_TOKEN_MICROS) as i128,
        "four calls charged 2 tokens each"
    );
}

/// A call cancelled mid-way (here by the server's request timeout while the upstream holds it)
/// releases its reservation and charges nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_releases_its_hold() {
    let (stub, url) = stub(
        Reply::Text {
            text: "ok".into(),
            claimed_tokens: 2,
        },
        false,
    )
    .await;
    let deposit = 10 * PER_TOKEN_MICROS;
    let (f, mut c, token) = metered(deposit, &url);
    c.request_timeout_ms = 500;
    let s = start(c).await;
    let size = s.size().await;
    let (status, v) = call(&s, &token, 10).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::SERVICE_UNAVAILABLE, "E_TIMEOUT")
    );
    assert_eq!(stub.hits(), 1);
    assert_eq!(s.size().await, size, "nothing charged");
    // The whole balance is available again.
    stub.open();
    let (status, v) = call(&s, &token, 10).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(s.size().await, size + 1);
    s.stop().await;
    assert_eq!(verify_clean(&f), (deposit - 2 * PER_TOKEN_MICROS) as i128);
}

/// Attack (issue 15, item 10): an upstream answers 256 MiB. The gateway reads it as a stream
/// and stops at the default cap (8 MiB): 502 `E_UPSTREAM_TOO_LARGE`, nothing charged, the hold
/// released. It never holds the body: the stub generated only about the cap plus what socket
/// buffers take before the gateway hung up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_upstream_answer_is_cut_off_and_not_charged() {
    let total: u64 = 256 << 20;
    let (stub, url) = stub(Reply::Huge { bytes: total }, true).await;
    let deposit = 10 * PER_TOKEN_MICROS;
    let (f, c, token) = metered(deposit, &url);
    assert_eq!(
        c.max_upstream_body_bytes,
        shoulders_server::DEFAULT_MAX_UPSTREAM_BODY_BYTES
    );
    let s = start(c).await;
    let size = s.size().await;
    let (status, v) = call(&s, &token, 10).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::BAD_GATEWAY, "E_UPSTREAM_TOO_LARGE"),
        "{v}"
    );
    assert_eq!(s.size().await, size, "nothing appended");
    // Give the stub a moment to notice the closed connection, then count what it made.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = stub.sent.load(Ordering::SeqCst);
    let cap = shoulders_server::DEFAULT_MAX_UPSTREAM_BODY_BYTES as u64;
    assert!(
        sent < cap + (64 << 20) && sent < total / 2,
        "the upstream body was read past the cap: {sent} bytes generated"
    );
    assert_eq!(balance(&s, "bob").await, deposit as i128);
    s.stop().await;
    assert_eq!(verify_clean(&f), deposit as i128);
}

/// A lowered cap holds for a body that declares its length, and a failed call releases its
/// hold: the same payer's next call, needing the whole balance, is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_is_configurable_and_a_failed_call_releases_its_hold() {
    let (stub, url) = stub(
        Reply::Text {
            text: "x".repeat(4096),
            claimed_tokens: 1,
        },
        true,
    )
    .await;
    let deposit = 10 * PER_TOKEN_MICROS;
    let (f, mut c, token) = metered(deposit, &url);
    c.max_upstream_body_bytes = 1024;
    let s = start(c).await;
    let size = s.size().await;
    let (status, v) = call(&s, &token, 10).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::BAD_GATEWAY, "E_UPSTREAM_TOO_LARGE"),
        "{v}"
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("1024 bytes"));
    assert_eq!(s.size().await, size);
    stub.answer(Reply::Text {
        text: "ok".into(),
        claimed_tokens: 1,
    });
    let (status, v) = call(&s, &token, 10).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(s.size().await, size + 1);
    s.stop().await;
    assert_eq!(verify_clean(&f), (deposit - 2 * PER_TOKEN_MICROS) as i128);
}

/// An upstream that trickles its answer forever is cut off at the upstream timeout (which
/// covers the body, not only the headers): 502, nothing charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_upstream_is_cut_off_at_the_upstream_timeout() {
    let (stub, url) = stub(Reply::Trickle, true).await;
    let deposit = 10 * PER_TOKEN_MICROS;
    let (f, mut c, token) = metered(deposit, &url);
    c.upstream_timeout_ms = 500;
    let s = start(c).await;
    let size = s.size().await;
    let started = std::time::Instant::now();
    let (status, v) = call(&s, &token, 10).await;
    assert_eq!(
        (status, code(&v)),
        (StatusCode::BAD_GATEWAY, "E_UPSTREAM"),
        "{v}"
    );
    // The trickle lasts a minute; a generous bound for a loaded machine.
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(stub.hits(), 1);
    assert_eq!(s.size().await, size);
    s.stop().await;
    assert_eq!(verify_clean(&f), deposit as i128);
}
