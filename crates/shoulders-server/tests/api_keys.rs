//! API keys in the ledger's store (issue 18): the operator's admin API, revocation on the very
//! next request, per-key budgets (402 before the upstream is called, reset at the UTC period
//! boundary, durable across restarts, settled from receipts after a crash), per-key rate limits
//! (429 with Retry-After), and the one-time import of an old `api-keys.json`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shoulders_server::apikeys::{self, BudgetPeriod};
use shoulders_server::ServerConfig;
use shoulders_store::PendingSpend;

const MODEL: &str = "alice/verse-metered";
/// 1000 micro-units per output token, nothing per call.
const PER_1K_MICROS: u128 = 1_000_000;
/// The stub's answer: 2 output tokens, so every call is charged 2000 micro-units.
const REPLY: &str = "ok";
const CHARGE_MICROS: u128 = 2 * PER_1K_MICROS / 1000;
/// Every test call asks for 10 tokens: the most it may cost is 10 000 micro-units.
const MAX_TOKENS: u64 = 10;
const MAX_CHARGE_MICROS: u128 = MAX_TOKENS as u128 * PER_1K_MICROS / 1000;
/// 2026-03-10T12:00:00Z: the pinned clock budgets and rate limits read.
const T0_MS: u64 = 1_773_144_000_000;

/// A stub upstream answering [`REPLY`] and counting calls.
async fn stub() -> (Arc<AtomicUsize>, String) {
    async fn answer(State(hits): State<Arc<AtomicUsize>>) -> axum::Json<Value> {
        hits.fetch_add(1, Ordering::SeqCst);
        axum::Json(json!({
            "id": "cmpl-stub", "object": "text_completion", "model": "stub",
            "choices": [{"index": 0, "text": REPLY, "finish_reason": "stop"}],
        }))
    }
    let hits = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route("/v1/completions", axum::routing::post(answer))
        .with_state(Arc::clone(&hits));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (hits, base)
}

/// The fixture plus an operator, `MODEL` priced per output token and forwarded to `upstream`,
/// and 100 USD for bob.
fn metered(upstream: &str) -> (Fixture, ServerConfig) {
    Metered {
        model: MODEL,
        license_id: "alice/per-token",
        price_per_call_micros: 0,
        price_per_1k_output_tokens_micros: PER_1K_MICROS,
        forbidden_uses: &[],
        deposit_micros: 100_000_000,
        upstream: Some(upstream),
    }
    .ledger()
}

async fn json_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, v)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no code>")
}

async fn call_with(s: &Running, token: &str, max_tokens: u64) -> reqwest::Response {
    s.client
        .post(s.url("/v1/completions"))
        .bearer_auth(token)
        .json(&json!({"model": MODEL, "prompt": "Shall I", "max_tokens": max_tokens}))
        .send()
        .await
        .unwrap()
}

async fn call(s: &Running, token: &str) -> (StatusCode, Value) {
    json_of(call_with(s, token, MAX_TOKENS).await).await
}

/// Issue a key through the admin API.
async fn admin_new(s: &Running, admin: &str, body: Value) -> (StatusCode, Value) {
    json_of(
        s.client
            .post(s.url("/api/admin/keys"))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn admin_token(f: &Fixture) -> String {
    let mut store = apikeys::open_store(&f.data_dir(), None, false).unwrap();
    apikeys::set_admin_token(&mut *store, 1, &mut rand::rngs::OsRng).unwrap()
}

/// Admin API: refused without the operator's admin token (and with a wrong or replaced one),
/// changing nothing; with it, keys are issued with limits, listed by pages and revoked, and a
/// revoked key is refused on its very next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_issues_lists_and_revokes_keys() {
    let (hits, url) = stub().await;
    let (f, c) = metered(&url);
    let s = start(c).await;
    let body = json!({"actor": "bob"});
    // No admin token set yet: nothing gets in.
    let (status, v) = admin_new(&s, "sk-shoulders-admin-guess", body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(code(&v), "E_ADMIN_UNAUTHORIZED");
    let admin = admin_token(&f);
    for (token, what) in [(None, "no header"), (Some("wrong"), "a wrong token")] {
        for req in [
            s.client.post(s.url("/api/admin/keys")).json(&body),
            s.client.get(s.url("/api/admin/keys")),
            s.client.delete(s.url("/api/admin/keys/0123456789abcdef")),
        ] {
            let req = match token {
                Some(t) => req.bearer_auth(t),
                None => req,
            };
            let (status, v) = json_of(req.send().await.unwrap()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {v}");
            assert_eq!(code(&v), "E_ADMIN_UNAUTHORIZED");
        }
    }
    let store = apikeys::open_store(&f.data_dir(), None, false).unwrap();
    assert_eq!(
        store.count_keys().unwrap(),
        0,
        "refused requests changed nothing"
    );
    // Bad limits are refused and change nothing.
    for bad in [
        json!({"actor": "bob", "budget_micros": "100"}),
        json!({"actor": "bob", "budget_micros": "-1", "budget_period": "day"}),
        json!({"actor": "bob", "requests_per_minute": 0}),
        json!({"actor": "Bob!"}),
        json!({"actor": "bob", "surprise": 1}),
    ] {
        let (status, v) = admin_new(&s, &admin, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
    }
    let (status, v) = admin_new(&s, &admin, json!({"actor": "zed"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unregistered payer: {v}");
    assert_eq!(store.count_keys().unwrap(), 0);
    // Issue three keys; the token is shown once, the listing never shows it.
    let (status, made) = admin_new(
        &s,
        &admin,
        json!({"actor": "bob", "budget_micros": "5000000", "budget_period": "month",
               "requests_per_minute": 600, "tokens_per_minute": 100000}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let token = made["api_key"].as_str().unwrap().to_string();
    let id = made["key"]["key_id"].as_str().unwrap().to_string();
    assert_eq!(made["key"]["budget_currency"], "USD");
    assert_eq!(made["key"]["budget_period"], "month");
    for _ in 0..2 {
        let (status, _) = admin_new(&s, &admin, json!({"actor": "alice"})).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let list = |q: &'static str| {
        let req = s
            .client
            .get(s.url(&format!("/api/admin/keys{q}")))
            .bearer_auth(&admin);
        async move { json_of(req.send().await.unwrap()).await }
    };
    let (_, page1) = list("?limit=2").await;
    assert_eq!(page1["keys"].as_array().unwrap().len(), 2);
    let next = page1["next"].as_str().unwrap().to_string();
    let (_, page2) = json_of(
        s.client
            .get(s.url(&format!("/api/admin/keys?limit=2&after={next}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page2["keys"].as_array().unwrap().len(), 1);
    assert!(page2["next"].is_null());
    let (_, bobs) = list("?actor=bob").await;
    assert_eq!(bobs["keys"][0]["key_id"], id.as_str());
    assert!(
        !bobs.to_string().contains(&token),
        "tokens are never listed"
    );
    let (status, _) = list("?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The key works; revoked, it is refused on the very next request.
    let (status, v) = call(&s, &token).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = json_of(
        s.client
            .delete(s.url(&format!("/api/admin/keys/{}", &id[..8])))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["revoked"][0]["key_id"], id.as_str());
    assert!(v["revoked"][0]["revoked_ms"].is_u64());
    let (status, v) = call(&s, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let (status, v) = json_of(
        s.client
            .delete(s.url("/api/admin/keys/ffffffffffffffff"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(code(&v), "E_API_KEY_UNKNOWN");
    // A new admin token replaces the old one at once.
    let admin2 = admin_token(&f);
    let (status, _) = list("").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = admin_new(&s, &admin2, json!({"actor": "bob"})).await;
    assert_eq!(status, StatusCode::CREATED);
    s.stop().await;
}

/// A key revoked by another connection to the store (what `shoulders apikey revoke` does in
/// another process) is refused on the server's very next request, with no reload interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_elsewhere_is_refused_on_the_next_request() {
    let (_hits, url) = stub().await;
    let (f, c) = metered(&url);
    let token = issue_key(&f.data_dir(), "bob");
    let s = start(c).await;
    let (status, v) = call(&s, &token).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mut store = apikeys::open_store(&f.data_dir(), None, true).unwrap();
    apikeys::revoke(&mut *store, &apikeys::Revoke::Key(token.clone()), 5).unwrap();
    let (status, v) = call(&s, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(code(&v), "E_UNAUTHORIZED");
    s.stop().await;
}

/// A key's daily budget: calls are admitted while the spend so far plus the call's maximum
/// charge fits; then 402 `E_KEY_BUDGET_EXCEEDED` before the upstream is called. The spend is
/// what the receipts charged, it survives a restart, and the next UTC day starts from zero
/// (the clock is pinned, not waited for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_refuses_before_the_upstream_and_resets_next_period() {
    let (hits, url) = stub().await;
    let (f, c) = metered(&url);
    let budget = 3 * CHARGE_MICROS + MAX_CHARGE_MICROS - 1; // room for exactly three calls
    let (token, key) = issue_key_with(&f.data_dir(), "bob", &day_budget(budget));
    let (s, state) = start_with_state(c.clone()).await;
    state.api_keys.pin_clock_ms(Some(T0_MS));
    let mut charged = 0u128;
    for i in 0..3 {
        let (status, v) = call(&s, &token).await;
        assert_eq!(status, StatusCode::OK, "call {i}: {v}");
        charged += v["shoulders"]["receipt"]["charge_micros"]
            .as_str()
            .unwrap()
            .parse::<u128>()
            .unwrap();
    }
    assert_eq!(charged, 3 * CHARGE_MICROS);
    assert_eq!(
        key_spent(&f.data_dir(), &key.key_id, T0_MS),
        charged,
        "spend = receipts"
    );
    // A budgeted key's admission writes its pending spend durably: never on an async worker.
    let exposition = state.metrics.encode(0);
    assert!(
        exposition.contains("shoulders_gateway_admissions_total{on=\"pool\"} 3\n")
            && !exposition.contains("on=\"worker\""),
        "{exposition}"
    );
    let size = s.size().await;
    let (status, v) = call(&s, &token).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{v}");
    assert_eq!(code(&v), "E_KEY_BUDGET_EXCEEDED");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        3,
        "refused before the upstream"
    );
    assert_eq!(s.size().await, size, "nothing appended");
    // Midnight UTC: a new period.
    let (_, midnight) = BudgetPeriod::Day.bounds_ms(T0_MS);
    state.api_keys.pin_clock_ms(Some(midnight));
    let (status, v) = call(&s, &token).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(
        key_spent(&f.data_dir(), &key.key_id, midnight),
        CHARGE_MICROS
    );
    // Restart: the spend is in the store, not in memory.
    drop(state);
    s.stop().await;
    let (s, state) = start_with_state(c).await;
    state.api_keys.pin_clock_ms(Some(midnight - 1));
    let (status, v) = call(&s, &token).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{v}");
    assert_eq!(hits.load(Ordering::SeqCst), 4);
    assert_eq!(
        key_spent(&f.data_dir(), &key.key_id, T0_MS),
        3 * CHARGE_MICROS
    );
    drop(state);
    s.stop().await;
}

/// A crash between a receipt's commit and the key's settlement leaves a pending spend row; the
/// next start settles it from the receipt (counted once), and drops one whose call left no
/// receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_spend_is_settled_from_the_receipt_at_start() {
    let (_hits, url) = stub().await;
    let (f, c) = metered(&url);
    let plain = issue_key(&f.data_dir(), "bob");
    let mut store = apikeys::open_store(&f.data_dir(), None, false).unwrap();
    let limits = apikeys::KeyLimits {
        budget: Some(apikeys::Budget {
            amount_micros: 1_000_000,
            currency: "USD".into(),
            period: BudgetPeriod::Month,
        }),
        ..Default::default()
    };
    let (_, key) = apikeys::issue(&mut *store, "bob", &limits, 1, &mut rand::rngs::OsRng).unwrap();
    drop(store);
    let s = start(c.clone()).await;
    let (status, v) = call(&s, &plain).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let usage_id = v["shoulders"]["receipt"]["usage_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.stop().await;
    // As if the budgeted key had made that call and the process died before settling it.
    let period_start_ms = BudgetPeriod::Month.bounds_ms(T0_MS).0;
    let mut store = apikeys::open_store(&f.data_dir(), None, false).unwrap();
    for usage in [usage_id.as_str(), "shoulders-never-charged"] {
        store
            .begin_spend(&PendingSpend {
                usage_id: usage.into(),
                key_id: key.key_id.clone(),
                period_start_ms,
            })
            .unwrap();
    }
    drop(store);
    for _ in 0..2 {
        let s = start(c.clone()).await;
        s.stop().await;
        let store = apikeys::open_store(&f.data_dir(), None, false).unwrap();
        assert!(store.pending_spends(10).unwrap().is_empty());
        assert_eq!(
            store.spent(&key.key_id, period_start_ms).unwrap(),
            CHARGE_MICROS,
            "the receipt's charge, once"
        );
    }
}

/// Per-key rate limits: over `requests_per_minute` or `tokens_per_minute` a call gets 429
/// `E_KEY_RATE_LIMITED` with `Retry-After` before the upstream is called; the buckets refill
/// with (pinned) time; a call asking for more tokens than a whole minute allows is a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let (hits, url) = stub().await;
    let (f, c) = metered(&url);
    let mut store = apikeys::open_store(&f.data_dir(), None, false).unwrap();
    let issue = |store: &mut dyn shoulders_store::KeyStore, limits| {
        apikeys::issue(store, "bob", &limits, 1, &mut rand::rngs::OsRng)
            .unwrap()
            .0
    };
    let by_requests = issue(
        &mut *store,
        apikeys::KeyLimits {
            requests_per_minute: Some(2),
            ..Default::default()
        },
    );
    // Each call takes 7 (prompt) + 10 (max_tokens) tokens and gives back the 8 it did not use.
    let by_tokens = issue(
        &mut *store,
        apikeys::KeyLimits {
            tokens_per_minute: Some(30),
            ..Default::default()
        },
    );
    drop(store);
    let (s, state) = start_with_state(c).await;
    state.api_keys.pin_clock_ms(Some(T0_MS));
    for _ in 0..2 {
        assert_eq!(call(&s, &by_requests).await.0, StatusCode::OK);
    }
    let resp = call_with(&s, &by_requests, MAX_TOKENS).await;
    let retry = resp.headers()["retry-after"].to_str().unwrap().to_string();
    let (status, v) = json_of(resp).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(code(&v), "E_KEY_RATE_LIMITED");
    assert_eq!(retry, "30", "one request every 30 s");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "refused before the upstream"
    );
    state.api_keys.pin_clock_ms(Some(T0_MS + 30_000));
    assert_eq!(call(&s, &by_requests).await.0, StatusCode::OK);
    // Tokens: 30 -> 21 -> 12, then 17 are needed: 5 more, 10 s at 30 a minute.
    for _ in 0..2 {
        assert_eq!(call(&s, &by_tokens).await.0, StatusCode::OK);
    }
    let resp = call_with(&s, &by_tokens, MAX_TOKENS).await;
    assert_eq!(resp.headers()["retry-after"], "10");
    let (status, v) = json_of(resp).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(code(&v), "E_KEY_RATE_LIMITED");
    let (status, v) = json_of(call_with(&s, &by_tokens, 40).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "E_GENERATE_PARAMS");
    assert_eq!(hits.load(Ordering::SeqCst), 5);
    state.api_keys.pin_clock_ms(Some(T0_MS + 40_000));
    assert_eq!(call(&s, &by_tokens).await.0, StatusCode::OK);
    drop(state);
    s.stop().await;
}

/// An old `D/api-keys.json` is imported into the store once when the writer opens, then
/// renamed to `api-keys.json.imported`; its keys keep working across restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_key_file_is_imported_once() {
    let (_hits, url) = stub().await;
    let (f, c) = metered(&url);
    let token = "sk-shoulders-0123456789abcdef0123456789abcdef0123456789abcdef";
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
    let old = f.data_dir().join(apikeys::LEGACY_API_KEYS_FILE);
    std::fs::write(
        &old,
        json!({"keys": [{"token_sha256": digest, "actor": "bob", "created_ms": 5}]}).to_string(),
    )
    .unwrap();
    for _ in 0..2 {
        let s = start(c.clone()).await;
        let (status, v) = call(&s, token).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        s.stop().await;
        assert!(!old.exists());
        assert!(f.data_dir().join(apikeys::IMPORTED_API_KEYS_FILE).exists());
    }
    let store = apikeys::open_store(&f.data_dir(), None, false).unwrap();
    assert_eq!(store.count_keys().unwrap(), 1, "imported once");
    // A broken old file stops the writer's start (nothing half-imported) with its code.
    std::fs::write(&old, "{not json").unwrap();
    let err = shoulders_server::AppState::open(c).err().unwrap();
    assert_eq!(err.code(), "E_API_KEYS_FILE");
    assert_eq!(store.count_keys().unwrap(), 1);
}
