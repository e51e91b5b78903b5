//! True streaming from an upstream (issue 18): the gateway relays an upstream's server-sent
//! events as they arrive, charges exactly the text it delivered, and never leaves a reservation
//! held. Each test drives a scripted stub upstream whose steps wait on gates the test opens, so
//! what the client has seen at each point is known without timing assumptions; every wait has
//! a generous watchdog that fails the test rather than hang it.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest;
use shoulders_server::{AppState, Metering, ServerConfig};

const MODEL: &str = "alice/verse-streamed";
/// 1000 micro-units per output token, nothing per call.
const PER_1K_MICROS: u128 = 1_000_000;
const PER_TOKEN_MICROS: u128 = PER_1K_MICROS / 1000;
const DEPOSIT: u128 = 1_000 * PER_TOKEN_MICROS;
/// The longest any single wait may take before the test is declared stuck.
const WATCHDOG: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WATCHDOG, fut)
        .await
        .unwrap_or_else(|_| panic!("stuck waiting for {what}"))
}

/// One step of the stub's answer.
#[derive(Clone)]
enum Step {
    /// Send these bytes as they are.
    Raw(String),
    /// Wait until the test opens the gate once more.
    Gate,
    /// Abort the response mid-body (the connection drops without the chunked terminator).
    Fail,
    /// Send nothing more, holding the connection until the gateway closes it.
    Stall,
}

/// A chunk event carrying `text` in the shape of `api` (`chat` or `completions`).
fn text_event(chat: bool, text: &str) -> Step {
    let choice = if chat {
        json!({"index": 0, "delta": {"content": text}, "finish_reason": null})
    } else {
        json!({"index": 0, "text": text, "finish_reason": null})
    };
    Step::Raw(format!(
        "data: {}\n\n",
        json!({"id": "up-1", "object": "chunk", "model": "up", "choices": [choice]})
    ))
}

/// The last chunk (with a `usage` claim the gateway must not charge) and `[DONE]`.
fn finish_events(chat: bool) -> Vec<Step> {
    let choice = if chat {
        json!({"index": 0, "delta": {}, "finish_reason": "stop"})
    } else {
        json!({"index": 0, "text": "", "finish_reason": "stop"})
    };
    vec![
        Step::Raw(format!(
            "data: {}\n\n",
            json!({"choices": [choice], "usage": {"completion_tokens": 50_000}})
        )),
        Step::Raw("data: [DONE]\n\n".into()),
    ]
}

/// A scripted SSE upstream.
struct Stub {
    script: Mutex<Vec<Step>>,
    /// `Step::Gate` takes one permit.
    gate: tokio::sync::Semaphore,
    hits: AtomicUsize,
    last_request: Mutex<Option<Value>>,
    /// The whole script was sent.
    finished: AtomicBool,
    /// The gateway closed the stream before its end (it stopped reading).
    abandoned: AtomicBool,
    /// Answer with this status and a JSON body instead of a stream.
    status: Mutex<Option<u16>>,
    /// Wait on the gate before sending any header.
    hold_headers: AtomicBool,
}

impl Stub {
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    fn open(&self) {
        self.gate.add_permits(1);
    }
}

async fn stub_answer(State(stub): State<Arc<Stub>>, body: Bytes) -> Response {
    stub.hits.fetch_add(1, Ordering::SeqCst);
    *stub.last_request.lock().unwrap() = serde_json::from_slice(&body).ok();
    if stub.hold_headers.load(Ordering::SeqCst) {
        stub.gate.acquire().await.unwrap().forget();
    }
    if let Some(status) = *stub.status.lock().unwrap() {
        let status = axum::http::StatusCode::from_u16(status).unwrap();
        return (
            status,
            axum::Json(json!({"error": {"message": "overloaded"}})),
        )
            .into_response();
    }
    let script = stub.script.lock().unwrap().clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let stub2 = Arc::clone(&stub);
    tokio::spawn(async move {
        for step in script {
            let alive = match step {
                Step::Raw(s) => tx.send(Ok(Bytes::from(s))).await.is_ok(),
                Step::Gate => tokio::select! {
                    permit = stub2.gate.acquire() => { permit.unwrap().forget(); true }
                    () = tx.closed() => false,
                },
                Step::Fail => {
                    let _ = tx.send(Err(std::io::Error::other("stub fails"))).await;
                    return;
                }
                Step::Stall => {
                    tx.closed().await;
                    false
                }
            };
            if !alive {
                stub2.abandoned.store(true, Ordering::SeqCst);
                return;
            }
        }
        stub2.finished.store(true, Ordering::SeqCst);
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    (
        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn stub(script: Vec<Step>) -> (Arc<Stub>, String) {
    let stub = Arc::new(Stub {
        script: Mutex::new(script),
        gate: tokio::sync::Semaphore::new(0),
        hits: AtomicUsize::new(0),
        last_request: Mutex::new(None),
        finished: AtomicBool::new(false),
        abandoned: AtomicBool::new(false),
        status: Mutex::new(None),
        hold_headers: AtomicBool::new(false),
    });
    let app = axum::Router::new()
        .route("/v1/completions", axum::routing::post(stub_answer))
        .route("/v1/chat/completions", axum::routing::post(stub_answer))
        .with_state(Arc::clone(&stub));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    // No Nagle delay on the stub's small writes, so a direct call is a fair baseline.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (stub, base)
}

/// The fixture plus an operator, `MODEL` priced per output token (its licence forbids the use
/// `surveillance`), `deposit` for bob, bob's API key, and the model forwarded to `upstream`.
fn metered(deposit: u128, upstream: &str) -> (Fixture, ServerConfig, String) {
    Metered {
        model: MODEL,
        license_id: "alice/streamed",
        price_per_call_micros: 0,
        price_per_1k_output_tokens_micros: PER_1K_MICROS,
        forbidden_uses: &["surveillance"],
        deposit_micros: deposit,
        upstream: Some(upstream),
    }
    .build()
}

/// A running server and its state (to read what calls in flight hold).
struct Served {
    run: Running,
    state: Arc<AppState>,
}

async fn serve(config: ServerConfig) -> Served {
    let (run, state) = start_with_state(config).await;
    Served { run, state }
}

/// `url`, `size` and `client` are [`Running`]'s.
impl std::ops::Deref for Served {
    type Target = Running;
    fn deref(&self) -> &Running {
        &self.run
    }
}

impl Served {
    /// Graceful shutdown; the state (and so the ledger) is closed with the last reference.
    async fn stop(self) {
        let Served { run, state } = self;
        run.stop().await;
        drop(state);
    }

    fn held(&self) -> u128 {
        self.state.reserved_micros("bob", "USD")
    }

    /// Wait until no call holds any of bob's money (a settlement released its hold).
    async fn until_released(&self) {
        within("the hold to be released", async {
            while self.held() != 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    async fn stream(&self, token: &str, chat: bool, extra: Value) -> reqwest::Response {
        let mut body = json!({"model": MODEL, "max_tokens": 100, "stream": true});
        let path = if chat {
            body["messages"] = json!([{"role": "user", "content": "Shall I"}]);
            "/v1/chat/completions"
        } else {
            body["prompt"] = json!("Shall I");
            "/v1/completions"
        };
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        within(
            "the gateway's answer",
            self.client
                .post(self.url(path))
                .bearer_auth(token)
                .json(&body)
                .send(),
        )
        .await
        .unwrap()
    }

    async fn record(&self, index: u64) -> Value {
        let resp = self
            .client
            .get(self.url(&format!("/api/records/{index}")))
            .send()
            .await
            .unwrap();
        serde_json::from_str(&resp.text().await.unwrap()).unwrap()
    }

    async fn balance(&self) -> i128 {
        let resp = self
            .client
            .get(self.url("/api/statements/bob"))
            .send()
            .await
            .unwrap();
        let st: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        st["totals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["currency"] == "USD")
            .map_or(0, |t| {
                t["balance_micros"].as_str().unwrap().parse().unwrap()
            })
    }
}

/// The client's side of a stream: event data, one event at a time, as it arrives.
struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    fn new(resp: reqwest::Response) -> Self {
        assert_eq!(resp.status(), StatusCode::OK);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Events {
            resp,
            buf: String::new(),
        }
    }

    /// The next event's data; `None` at the end of the stream.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
                    .collect();
                if data.is_empty() {
                    continue;
                }
                return Some(data.join("\n"));
            }
            let chunk = within("the next event", self.resp.chunk()).await.unwrap()?;
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Read events until `n` of them carried text; returns the text.
    async fn text_events(&mut self, chat: bool, n: usize) -> String {
        let mut text = String::new();
        let mut seen = 0;
        while seen < n {
            let data = self.next().await.expect("the stream ended early");
            if let Some(t) = chunk_text(chat, &data) {
                text.push_str(&t);
                seen += 1;
            }
        }
        text
    }

    /// Every remaining event, parsed (`[DONE]` as the string).
    async fn rest(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(data) = self.next().await {
            out.push(serde_json::from_str(&data).unwrap_or(Value::String(data)));
        }
        out
    }
}

/// The non-empty text a gateway chunk carries.
fn chunk_text(chat: bool, data: &str) -> Option<String> {
    let v: Value = serde_json::from_str(data).ok()?;
    let choice = &v["choices"][0];
    let t = if chat {
        choice["delta"]["content"].as_str()
    } else {
        choice["text"].as_str()
    }?;
    (!t.is_empty()).then(|| t.to_string())
}

fn sha256(text: &str) -> String {
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    )
}

/// The receipt at `index` charges exactly `text`: its token count, its hash, its charge.
async fn assert_receipt_for(s: &Served, index: u64, text: &str) {
    let r = s.record(index).await;
    assert_eq!(r["kind"], "usage.receipt", "{r}");
    let body = &r["body"];
    assert_eq!(body["payer"], "bob");
    assert_eq!(body["model_id"], MODEL);
    assert_eq!(body["output_tokens"], text.len() as u64, "{r}");
    assert_eq!(body["output_hash"], sha256(text));
}

/// The first chunk reaches the client while the upstream is still held before its second: the
/// gateway relays, it does not collect. The receipt charges the delivered text, counted by the
/// gateway (the upstream's `usage` claim of 50 000 tokens is not charged), and the last event
/// carries it before `[DONE]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_reach_the_client_before_the_upstream_has_sent_its_last() {
    for chat in [true, false] {
        let mut script = vec![text_event(chat, "Shall I "), Step::Gate];
        script.push(text_event(chat, "compare thee"));
        script.extend(finish_events(chat));
        let (stub, url) = stub(script).await;
        let (f, c, token) = metered(DEPOSIT, &url);
        let s = serve(c).await;
        let size = s.size().await;
        let mut events = Events::new(s.stream(&token, chat, json!({})).await);
        let first = events.text_events(chat, 1).await;
        assert_eq!(first, "Shall I ");
        assert!(
            !stub.finished.load(Ordering::SeqCst),
            "the upstream has not sent its last chunk yet"
        );
        assert!(s.held() > 0, "the call holds its maximum while it streams");
        stub.open();
        let rest = events.rest().await;
        let mut text = first;
        for e in &rest {
            if let Some(t) = chunk_text(chat, &e.to_string()) {
                text.push_str(&t);
            }
        }
        assert_eq!(text, "Shall I compare thee");
        assert_eq!(rest.last().unwrap(), "[DONE]");
        let last = &rest[rest.len() - 2];
        assert!(
            last["id"].as_str().unwrap().starts_with("shoulders-"),
            "{last}"
        );
        assert_eq!(last["model"], MODEL);
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(last["usage"]["completion_tokens"], text.len() as u64);
        let sh = &last["shoulders"];
        assert_eq!(sh["stream"], "relayed");
        assert_eq!(
            sh["attribution"]["dataset_id"], "alice/verse",
            "the delivered text is attributed: {sh}"
        );
        assert_eq!(sh["upstream_usage"]["completion_tokens"], 50_000);
        let receipt = &sh["receipt"];
        assert_eq!(receipt["index"], size, "{last}");
        let charge = (text.len() as u128 * PER_TOKEN_MICROS).to_string();
        assert_eq!(receipt["charge_micros"], charge);
        assert_eq!(
            sh["preauthorised_micros"],
            (100 * PER_TOKEN_MICROS).to_string()
        );
        assert_receipt_for(&s, size, &text).await;
        assert_eq!(s.held(), 0, "released before the last event was sent");
        assert_eq!(s.size().await, size + 1, "one receipt");
        let sent = stub.last_request.lock().unwrap().clone().unwrap();
        assert_eq!(sent["stream"], true, "the upstream is asked to stream");
        assert_eq!(sent["max_tokens"], 100);
        assert!(sent.get("use").is_none());
        let expected = (DEPOSIT - text.len() as u128 * PER_TOKEN_MICROS) as i128;
        assert_eq!(s.balance().await, expected);
        s.stop().await;
        assert_eq!(verify_clean(&f), expected);
    }
}

/// A client that hangs up after k chunks is charged for exactly those k: the gateway stops
/// reading the upstream, appends the receipt for the delivered text and releases the hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_pays_for_what_it_was_given() {
    for chat in [false, true] {
        let script = vec![
            text_event(chat, "Shall "),
            text_event(chat, "I "),
            text_event(chat, "compare"),
            Step::Stall,
        ];
        let (stub, url) = stub(script).await;
        let (f, c, token) = metered(DEPOSIT, &url);
        let s = serve(c).await;
        let size = s.size().await;
        let mut events = Events::new(s.stream(&token, chat, json!({})).await);
        let text = events.text_events(chat, 3).await;
        assert_eq!(text, "Shall I compare");
        drop(events);
        s.until_released().await;
        within("the gateway to stop reading the upstream", async {
            while !stub.abandoned.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert_eq!(s.size().await, size + 1, "one receipt");
        assert_receipt_for(&s, size, &text).await;
        let expected = (DEPOSIT - text.len() as u128 * PER_TOKEN_MICROS) as i128;
        s.stop().await;
        assert_eq!(verify_clean(&f), expected);
    }
}

/// A client that hangs up before any text was delivered pays nothing: no receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_before_any_text_pays_nothing() {
    let (stub, url) = stub(vec![Step::Stall]).await;
    let (f, c, token) = metered(DEPOSIT, &url);
    let s = serve(c).await;
    let size = s.size().await;
    let resp = s.stream(&token, false, json!({})).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(s.held() > 0);
    drop(resp);
    s.until_released().await;
    within("the gateway to stop reading the upstream", async {
        while !stub.abandoned.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(s.size().await, size, "nothing appended");
    s.stop().await;
    assert_eq!(verify_clean(&f), DEPOSIT as i128);
}

/// Every way an upstream can fail mid-stream ends the client's stream with an error event of
/// a stable code (and no `[DONE]`), charges exactly the text delivered before it (the error
/// event carries that receipt) and leaves nothing held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_failing_mid_stream_charges_only_what_was_delivered() {
    let cases: Vec<(&str, Vec<Step>, &str)> = vec![
        ("connection drop", vec![Step::Fail], "E_UPSTREAM"),
        (
            "malformed event",
            vec![Step::Raw("data: {oops\n\n".into())],
            "E_UPSTREAM_BAD_EVENT",
        ),
        (
            "an error event",
            vec![Step::Raw(
                "data: {\"error\":{\"message\":\"overloaded\"}}\n\n".into(),
            )],
            "E_UPSTREAM",
        ),
        (
            "an end without [DONE]",
            vec![Step::Raw(String::new())],
            "E_UPSTREAM",
        ),
        (
            "a stall past the timeout",
            vec![Step::Stall],
            "E_UPSTREAM_TIMEOUT",
        ),
        (
            "more bytes than the cap",
            (0..40).map(|_| text_event(false, "x")).collect(),
            "E_UPSTREAM_TOO_LARGE",
        ),
    ];
    for (what, tail, expected_code) in cases {
        let mut script = vec![text_event(false, "Shall I "), text_event(false, "compare")];
        script.extend(tail);
        let (_stub, url) = stub(script).await;
        let (f, mut c, token) = metered(DEPOSIT, &url);
        c.upstream_timeout_ms = 2_000;
        c.max_upstream_body_bytes = 2_000;
        let s = serve(c).await;
        let size = s.size().await;
        let mut events = Events::new(s.stream(&token, false, json!({})).await);
        let mut text = String::new();
        let rest = events.rest().await;
        for e in &rest {
            if let Some(t) = chunk_text(false, &e.to_string()) {
                text.push_str(&t);
            }
        }
        assert!(text.starts_with("Shall I compare"), "{what}: {text}");
        let last = rest.last().unwrap();
        assert_eq!(last["error"]["code"], expected_code, "{what}: {last}");
        assert!(
            !rest.iter().any(|e| e == "[DONE]"),
            "{what}: a failed stream does not end with [DONE]"
        );
        assert_eq!(
            last["shoulders"]["receipt"]["index"], size,
            "{what}: {last}"
        );
        assert_eq!(s.held(), 0, "{what}: settled before the error event");
        assert_eq!(s.size().await, size + 1, "{what}: one receipt");
        assert_receipt_for(&s, size, &text).await;
        let expected = (DEPOSIT - text.len() as u128 * PER_TOKEN_MICROS) as i128;
        s.stop().await;
        assert_eq!(verify_clean(&f), expected, "{what}");
    }
}

/// Every refusal of a non-streaming call refuses a streaming one before any byte is sent (a
/// JSON error, not an event stream), with the upstream never called; an upstream that fails
/// before its first byte is a JSON 502 with nothing charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_before_the_first_byte() {
    let mut script = vec![text_event(true, "ok")];
    script.extend(finish_events(true));
    let (stub, url) = stub(script).await;
    let (f, c, token) = metered(10 * PER_TOKEN_MICROS, &url);
    let s = serve(c).await;
    let size = s.size().await;
    let cases = [
        (
            json!({"use": "surveillance"}),
            StatusCode::FORBIDDEN,
            "E_LICENSE_DENIED",
        ),
        (
            json!({"max_tokens": 11}),
            StatusCode::PAYMENT_REQUIRED,
            "E_INSUFFICIENT_FUNDS",
        ),
    ];
    for (extra, status, expected_code) in cases {
        let resp = s.stream(&token, true, extra.clone()).await;
        assert_eq!(resp.status(), status, "{extra}");
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("application/json"), "{extra}: {ct}");
        let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert_eq!(v["error"]["code"], expected_code, "{v}");
    }
    let resp = s
        .client
        .post(s.url("/v1/chat/completions"))
        .bearer_auth("sk-shoulders-wrong")
        .json(&json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(stub.hits(), 0, "the upstream never ran");

    *stub.status.lock().unwrap() = Some(503);
    let resp = s.stream(&token, true, json!({"max_tokens": 10})).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "E_UPSTREAM", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("overloaded"));
    assert_eq!(stub.hits(), 1);
    assert_eq!(s.held(), 0);
    assert_eq!(s.size().await, size, "nothing appended");

    // An upstream that answers a completion instead of a stream: 502 before any byte.
    *stub.status.lock().unwrap() = Some(200);
    let resp = s.stream(&token, true, json!({"max_tokens": 10})).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "E_UPSTREAM", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("text/event-stream"));
    assert_eq!((s.held(), s.size().await), (0, size));

    // The same call within the balance streams and is charged.
    *stub.status.lock().unwrap() = None;
    let mut events = Events::new(s.stream(&token, true, json!({"max_tokens": 10})).await);
    let rest = events.rest().await;
    assert_eq!(rest.last().unwrap(), "[DONE]");
    assert_eq!(s.size().await, size + 1);
    s.stop().await;
    assert_eq!(verify_clean(&f), (8 * PER_TOKEN_MICROS) as i128);
}

/// Time to first text through the gateway against a direct call to the same stub (printed,
/// never asserted): `cargo test -p shoulders-server --release --test streaming -- --ignored
/// --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn time_to_first_text_overhead() {
    const CALLS: usize = 200;
    let mut script = vec![text_event(false, "Shall I "), text_event(false, "compare")];
    script.extend(finish_events(false));
    let (_stub, url) = stub(script).await;
    let (_f, c, token) = metered(DEPOSIT * 1000, &url);
    let s = serve(c).await;
    let body = json!({"model": MODEL, "prompt": "Shall I", "max_tokens": 16, "stream": true});
    let mut direct = Vec::new();
    let mut gateway = Vec::new();
    for _ in 0..CALLS {
        for (target, times) in [
            (format!("{url}/completions"), &mut direct),
            (s.url("/v1/completions"), &mut gateway),
        ] {
            let started = std::time::Instant::now();
            let resp = s
                .client
                .post(&target)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let mut events = Events::new(resp);
            events.text_events(false, 1).await;
            times.push(started.elapsed().as_secs_f64() * 1e3);
            events.rest().await;
        }
    }
    for times in [&mut direct, &mut gateway] {
        times.sort_by(f64::total_cmp);
    }
    let p = |t: &[f64], q: f64| t[((t.len() - 1) as f64 * q) as usize];
    println!(
        "time to first text over {CALLS} calls (ms): direct p50 {:.3} p99 {:.3}; \
         through the gateway p50 {:.3} p99 {:.3}; added p50 {:.3}",
        p(&direct, 0.5),
        p(&direct, 0.99),
        p(&gateway, 0.5),
        p(&gateway, 0.99),
        p(&gateway, 0.5) - p(&direct, 0.5)
    );
    s.stop().await;
}

/// An upstream that sends no header within `--upstream-timeout-ms` is a JSON 502
/// `E_UPSTREAM_TIMEOUT` with nothing charged; a completed stream without text is charged as a
/// non-streaming call without text (a receipt for 0 tokens: the price per call, here 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_times_out_and_an_empty_stream_is_a_receipt() {
    let (stub, url) = stub(finish_events(true)).await;
    let (f, mut c, token) = metered(DEPOSIT, &url);
    c.upstream_timeout_ms = 1_000;
    let s = serve(c).await;
    let size = s.size().await;
    stub.hold_headers.store(true, Ordering::SeqCst);
    let resp = s.stream(&token, true, json!({})).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "E_UPSTREAM_TIMEOUT", "{v}");
    assert_eq!(
        (s.held(), s.size().await),
        (0, size),
        "nothing held nor appended"
    );

    stub.hold_headers.store(false, Ordering::SeqCst);
    let mut events = Events::new(s.stream(&token, true, json!({})).await);
    let rest = events.rest().await;
    assert_eq!(rest.last().unwrap(), "[DONE]");
    let last = &rest[rest.len() - 2];
    assert_eq!(last["usage"]["completion_tokens"], 0);
    assert_eq!(last["shoulders"]["receipt"]["index"], size, "{last}");
    assert_receipt_for(&s, size, "").await;
    s.stop().await;
    assert_eq!(verify_clean(&f), DEPOSIT as i128);
}

/// A relayed stream longer than `max_tokens` is charged `max_tokens` at most (the gateway's
/// count, as for a non-streaming call); with metering off it is relayed without a receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_bounds_the_charge_and_metering_off_appends_nothing() {
    let mut script = vec![text_event(false, "Shall I "), text_event(false, "compare")];
    script.extend(finish_events(false));
    let (_stub, url) = stub(script).await;
    let (f, c, token) = metered(DEPOSIT, &url);
    let s = serve(c).await;
    let size = s.size().await;
    let mut events = Events::new(s.stream(&token, false, json!({"max_tokens": 5})).await);
    let rest = events.rest().await;
    let last = &rest[rest.len() - 2];
    assert_eq!(last["usage"]["completion_tokens"], 5, "{last}");
    let r = s.record(size).await;
    assert_eq!(r["body"]["output_tokens"], 5, "{r}");
    assert_eq!(r["body"]["output_hash"], sha256("Shall I compare"));
    s.stop().await;
    assert_eq!(verify_clean(&f), (DEPOSIT - 5 * PER_TOKEN_MICROS) as i128);

    let (_f, mut c, token) = metered(DEPOSIT, &url);
    c.metering = Metering::Off;
    let s = serve(c).await;
    let size = s.size().await;
    let mut events = Events::new(s.stream(&token, false, json!({})).await);
    let rest = events.rest().await;
    assert_eq!(rest.last().unwrap(), "[DONE]");
    let sh = &rest[rest.len() - 2]["shoulders"];
    assert_eq!(sh["metering"], "off", "{sh}");
    assert!(
        sh["receipt"].is_null() && sh["preauthorised_micros"].is_null(),
        "{sh}"
    );
    assert_eq!(s.size().await, size, "nothing appended");
    s.stop().await;
}

/// A streamed call counts against its API key's budget like any other: the delivered text's
/// charge joins the key's spend once the receipt is appended (also for a client that hangs up),
/// and once streams have spent the budget the next call is refused with 402 before the upstream
/// is asked for anything. (Without this a key could stream past its budget for ever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_calls_spend_the_api_key_budget() {
    let chat = true;
    let mut script = vec![text_event(chat, "Shall I compare thee")];
    script.extend(finish_events(chat));
    let (stub, url) = stub(script).await;
    let (f, c, _) = metered(DEPOSIT, &url);
    // Room for the hold of one call (max_tokens 100) plus one 20-token answer, less one
    // micro-unit: after one stream, the next call's hold no longer fits.
    let per_call = 20 * PER_TOKEN_MICROS;
    let budget = 100 * PER_TOKEN_MICROS + per_call - 1;
    let (token, key) = issue_key_with(&f.data_dir(), "bob", &day_budget(budget));
    let s = serve(c).await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let spent = || key_spent(&f.data_dir(), &key.key_id, now_ms);
    let mut events = Events::new(s.stream(&token, chat, json!({})).await);
    let rest = events.rest().await;
    assert_eq!(rest.last().unwrap(), "[DONE]");
    s.until_released().await;
    assert_eq!(spent(), per_call, "the stream's charge is the key's spend");
    // The second call no longer fits: its hold (100 tokens) plus the spend is over the budget.
    let size = s.size().await;
    let resp = s.stream(&token, chat, json!({})).await;
    assert_eq!(resp.status(), StatusCode::PAYMENT_REQUIRED);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "E_KEY_BUDGET_EXCEEDED", "{v}");
    assert_eq!(s.size().await, size, "nothing appended");
    assert_eq!(stub.hits(), 1, "the upstream was not asked");
    s.stop().await;
}
