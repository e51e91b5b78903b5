//! Load benchmark of `shoulders serve` over 127.0.0.1: requests/s and p50/p99 latency for
//! public reads, signed writes and gateway calls, and the gateway's added latency over calling
//! an upstream directly, measured in the same run against a trivial local OpenAI-compatible
//! stub (attribution excluded, then included). Metering is on, as in production: every gateway
//! call is checked against a priced licence, pre-authorised against the payer's funds, and
//! settled by a durable `usage.receipt` before it is answered.
//!
//! `cargo bench -p shoulders-bench --bench server` (or `bench/load.sh`). Each scenario runs for
//! `SHOULDERS_BENCH_SECONDS` (default 3) seconds. Throughput scenarios use
//! `SHOULDERS_BENCH_CONCURRENCY` (default 16) connections; the overhead comparison runs one
//! request at a time so that queueing does not hide the per-call cost, then times a whole
//! call to the embedded model (generation, attribution and receipt) the same way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Json;
use rand::rngs::OsRng;
use serde_json::{json, Value};
use shoulders_attrib::dataset::BuildDoc;
use shoulders_ledger::{init_with, ContentStore, DataDir, Ledger, OperatorInit};
use shoulders_record::{sign_record, ActorKey, Body, Kind};
use shoulders_server::{apikeys, AppState, Metering, ServerConfig};

const TS_MS: u64 = 1_767_225_600_000;

fn record(key: &ActorKey, id: &str, kind: Kind, body: Value) -> Vec<u8> {
    record_at(key, id, kind, body, TS_MS)
}

/// A record signed now: the server refuses signer timestamps outside its admission window.
fn record_now(key: &ActorKey, id: &str, kind: Kind, body: Value) -> Vec<u8> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    record_at(key, id, kind, body, now_ms)
}

fn record_at(key: &ActorKey, id: &str, kind: Kind, body: Value, ts_ms: u64) -> Vec<u8> {
    sign_record(
        key,
        shoulders_bench::BENCH_LOG,
        id,
        ts_ms,
        Body::from_value(kind, body).unwrap(),
    )
    .unwrap()
    .bytes()
    .to_vec()
}

/// Generated verse-like documents (deterministic).
fn documents(count: usize, words_each: usize) -> Vec<String> {
    const WORDS: [&str; 24] = [
        "the", "summer", "winter", "light", "river", "stone", "falls", "over", "and", "under",
        "quiet", "morning", "sings", "of", "a", "bird", "golden", "field", "wind", "through",
        "dark", "wood", "keeps", "promise",
    ];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            let mut doc = String::new();
            for w in 0..words_each {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                doc.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
                doc.push(if w % 9 == 8 { '\n' } else { ' ' });
            }
            doc
        })
        .collect()
}

struct Setup {
    _dir: tempfile::TempDir,
    data_dir: std::path::PathBuf,
    writer: ActorKey,
    upstream_text: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("ledger");
    let data = DataDir::new(&data_dir);
    // With an operator: the gateway signs a durable usage receipt for every call.
    let operator = OperatorInit {
        handle: "operator".into(),
        name: "Operator".into(),
        protocol_fee_bps: 250,
        ts_ms: TS_MS,
    };
    init_with(
        &data,
        shoulders_bench::BENCH_LOG,
        Some(&operator),
        &mut OsRng,
    )
    .unwrap();
    let alice = ActorKey::generate(&mut OsRng);
    let bob = ActorKey::generate(&mut OsRng);
    let ledger = Ledger::open(&data).unwrap();
    let submit = |b: Vec<u8>| ledger.submit(b).unwrap().index;
    submit(record(
        &alice,
        "a",
        Kind::ActorRegister,
        json!({"handle": "alice", "name": "A"}),
    ));
    submit(record(
        &bob,
        "b",
        Kind::ActorRegister,
        json!({"handle": "bob", "name": "B"}),
    ));
    submit(record(
        &alice,
        "ds",
        Kind::DatasetCreate,
        json!({"dataset_id": "alice/verse", "name": "Verse", "access": "open"}),
    ));
    let docs = documents(400, 300);
    let store = ContentStore::new(&data);
    let mut contributions = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        let hash = store.put(d.as_bytes()).unwrap();
        contributions.push(submit(record(
            &alice,
            &format!("c{i}"),
            Kind::DataContribute,
            json!({"dataset_id": "alice/verse", "content_hash": hash, "byte_size": d.len(), "token_count": d.len()}),
        )));
    }
    // Priced (1 micro-unit per call plus 1 per 1k output tokens), so every gateway call is
    // metered: checked against the licence, pre-authorised against bob's funds, settled.
    let (name, spdx, terms) = shoulders_license::preset("apache-2.0").unwrap();
    let mut terms = serde_json::to_value(terms).unwrap();
    terms["price_per_call_micros"] = json!("1");
    terms["price_per_1k_output_tokens_micros"] = json!("1");
    submit(record(
        &alice,
        "lic",
        Kind::LicenseDefine,
        json!({"license_id": "alice/metered", "name": name, "spdx_id": spdx, "terms": terms}),
    ));
    for (id, datasets) in [
        ("alice/embedded", json!(["alice/verse"])),
        ("alice/upstream", json!(["alice/verse"])),
        ("alice/upstream-plain", json!([])),
    ] {
        submit(record(
            &alice,
            id,
            Kind::ModelRegister,
            json!({"model_id": id, "name": "M", "datasets": datasets,
                   "license_id": "alice/metered"}),
        ));
    }
    let operator_key =
        ActorKey::from_file_text(&std::fs::read_to_string(data.operator_key()).unwrap()).unwrap();
    submit(record(
        &operator_key,
        "deposit",
        Kind::FundsDeposit,
        json!({"account": "bob", "currency": "USD", "amount_micros": "1000000000000"}),
    ));
    let size = ledger.size();
    drop(ledger);
    shoulders_attrib::dataset::build(
        &data_dir,
        "alice/verse",
        size,
        contributions.iter().zip(&docs).map(|(&c, d)| {
            Ok(BuildDoc {
                contribution: c,
                contributor: "alice".into(),
                bytes: d.as_bytes().to_vec(),
            })
        }),
        &mut |_| {},
    )
    .unwrap();
    // The upstream answers with 256 bytes of one document (so attribution finds a span).
    let upstream_text = docs[7][..256].to_string();
    Setup {
        _dir: dir,
        data_dir,
        writer: bob,
        upstream_text,
    }
}

/// A minimal OpenAI-compatible upstream: a fixed chat completion.
async fn start_upstream(text: String) -> String {
    let reply = Arc::new(json!({
        "id": "up-1", "object": "chat.completion", "created": 0, "model": "stub",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 256, "total_tokens": 264},
    }));
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |_body: axum::body::Bytes| {
            let reply = Arc::clone(&reply);
            async move { Json(reply.as_ref().clone()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

struct Stats {
    requests: usize,
    errors: usize,
    seconds: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
}

/// Run `make()` requests from `concurrency` workers for `seconds`.
async fn run<F, Fut>(concurrency: usize, seconds: f64, make: F) -> Stats
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let make = Arc::new(make);
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (make, counter) = (Arc::clone(&make), Arc::clone(&counter));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let ok = make(n).await;
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                if !ok {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        all.get(((all.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Stats {
        requests: all.len(),
        errors,
        seconds: elapsed,
        p50_ms: pct(0.5),
        p90_ms: pct(0.9),
        p99_ms: pct(0.99),
    }
}

fn row(name: &str, conc: usize, s: &Stats) {
    println!(
        "| {name:<44} | {conc:>4} | {:>9.0} | {:>8.3} | {:>8.3} | {:>6} |",
        s.requests as f64 / s.seconds,
        s.p50_ms,
        s.p99_ms,
        s.errors
    );
}

/// The attribution the gateway runs for each call, in process and without HTTP (less noisy
/// than the overhead rows below): median time per call of the upstream's 256-byte answer on the
/// synthetic corpus, and the search steps it spends (deterministic: compare before and after a
/// change of the search without timing noise).
fn attribution_in_process(setup: &Setup) {
    use shoulders_attrib::budget::Budget;
    use shoulders_attrib::dataset::{AttributeOptions, DatasetIndex};
    let ix = DatasetIndex::open(&setup.data_dir, "alice/verse").unwrap();
    let opts = AttributeOptions::default();
    let mut budget = Budget::unlimited();
    let report = ix
        .attribute_within(&setup.upstream_text, &opts, &mut budget)
        .unwrap();
    let steps = budget.used();
    // One search, timed in µs.
    let attribute_once = || {
        let t = Instant::now();
        let mut budget = Budget::unlimited();
        std::hint::black_box(
            ix.attribute_within(&setup.upstream_text, &opts, &mut budget)
                .unwrap(),
        );
        t.elapsed().as_secs_f64() * 1e6
    };
    let mut times: Vec<f64> = (0..300).map(|_| attribute_once()).collect();
    times.sort_by(f64::total_cmp);
    println!(
        "attribution of the gateway's {}-byte answer, in process: p50 {:.0} µs, p10 {:.0} µs, {} search steps, {} spans",
        setup.upstream_text.len(),
        times[times.len() / 2],
        times[times.len() / 10],
        steps,
        report.spans.len()
    );
    // The loop above runs with the index hot in the CPU caches. In the server each search
    // follows ~1 ms of other work (HTTP, SQLite, the fsync) that evicts it, and its probes of
    // the suffix array and the text then miss: the same search with 32 MiB written between
    // calls is what the server's attribution costs.
    let mut junk = vec![0u8; 32 << 20];
    let mut cold: Vec<f64> = (0..300u32)
        .map(|i| {
            for b in junk.iter_mut().step_by(64) {
                *b = b.wrapping_add(i as u8);
            }
            attribute_once()
        })
        .collect();
    cold.sort_by(f64::total_cmp);
    println!(
        "the same with the CPU caches cold (32 MiB written between calls, as the server's other work does): p50 {:.0} µs",
        cold[cold.len() / 2]
    );
}

fn main() {
    let seconds: f64 = std::env::var("SHOULDERS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let conc: usize = std::env::var("SHOULDERS_BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let setup = setup();
    attribution_in_process(&setup);
    let mut keys = apikeys::open_store(&setup.data_dir, None, false).unwrap();
    let token = apikeys::issue(&mut *keys, "bob", &Default::default(), 1, &mut OsRng)
        .unwrap()
        .0;
    drop(keys);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let upstream = start_upstream(setup.upstream_text.clone()).await;
        let mut config = ServerConfig::new(&setup.data_dir);
        config.metering = Metering::On;
        // Throughput of one writer key: no per-signer write quota.
        config.write_quota = None;
        config.upstreams.insert("alice/upstream".into(), upstream.clone());
        config.upstreams.insert("alice/upstream-plain".into(), upstream.clone());
        let state = AppState::open(config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(shoulders_server::serve(listener, state, async move {
            let _ = stop_rx.await;
        }));
        let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();

        println!("shoulders serve load benchmark, 127.0.0.1, {seconds} s per row, metering on (a durable usage receipt per gateway call)");
        println!("| scenario                                     | conc |  req/s    | p50 ms   | p99 ms   | errors |");
        println!("|----------------------------------------------|------|-----------|----------|----------|--------|");
        let size: u64 = client.get(format!("{base}/api/checkpoint")).send().await.unwrap()
            .text().await.unwrap().lines().nth(1).unwrap().parse().unwrap();

        let chat = |model: &str| json!({"model": model, "max_tokens": 256, "seed": 1,
            "messages": [{"role": "user", "content": "the quiet morning"}]});
        // `SHOULDERS_BENCH_ONLY=overhead`: only the one-at-a-time overhead rows below.
        let throughput = std::env::var("SHOULDERS_BENCH_ONLY").map_or(true, |o| o != "overhead");
        if throughput {
            let (c, b) = (client.clone(), base.clone());
            let s = run(conc, seconds, move |n| {
                let (c, url) = (c.clone(), format!("{b}/api/records/{}", n % size));
                async move { c.get(url).send().await.map(|r| r.status().is_success()).unwrap_or(false) }
            }).await;
            row("read: GET /api/records/{i}", conc, &s);

            let (c, b) = (client.clone(), base.clone());
            let s = run(conc, seconds, move |_| {
                let (c, url) = (c.clone(), format!("{b}/api/checkpoint"));
                async move { c.get(url).send().await.map(|r| r.status().is_success()).unwrap_or(false) }
            }).await;
            row("read: GET /api/checkpoint (signed)", conc, &s);

            let writer = Arc::new(setup.writer);
            let (c, b, w) = (client.clone(), base.clone(), Arc::clone(&writer));
            let s = run(conc, seconds, move |n| {
                let body = record_now(&w, &format!("w{n}"), Kind::DatasetCreate,
                    json!({"dataset_id": format!("bob/d{n}"), "name": "D", "access": "open"}));
                let (c, url) = (c.clone(), format!("{b}/api/records"));
                async move { c.post(url).body(body).send().await.map(|r| r.status().as_u16() == 201).unwrap_or(false) }
            }).await;
            row("signed write: POST /api/records (durable)", conc, &s);

            for (name, url, model, auth) in [
                ("gateway: embedded ∞-gram + attribution", format!("{base}/v1/chat/completions"), "alice/embedded", true),
                ("upstream stub, direct", format!("{upstream}/chat/completions"), "stub", false),
                ("gateway → upstream, no attribution", format!("{base}/v1/chat/completions"), "alice/upstream-plain", true),
                ("gateway → upstream + attribution", format!("{base}/v1/chat/completions"), "alice/upstream", true),
            ] {
                let body = Arc::new(chat(model));
                let (c, t) = (client.clone(), token.clone());
                let s = run(conc, seconds, move |_| {
                    let mut req = c.post(url.clone()).json(body.as_ref());
                    if auth {
                        req = req.bearer_auth(&t);
                    }
                    async move { req.send().await.map(|r| r.status().is_success()).unwrap_or(false) }
                }).await;
                row(name, conc, &s);
            }
        }

        for model in ["alice/upstream-plain", "alice/upstream"] {
            let r = client.post(format!("{base}/v1/chat/completions")).bearer_auth(&token)
                .json(&chat(model)).send().await.unwrap();
            let status = r.status();
            let text = r.text().await.unwrap();
            assert!(status.is_success(), "a metered gateway call failed: {status} {text}");
            let v: Value = serde_json::from_str(&text).unwrap();
            println!("one call to {model}: timing_ms {} (from the request's arrival), receipt legs {}",
                v["shoulders"]["timing_ms"], v["shoulders"]["receipt"]["legs"]);
        }
        println!("\ngateway overhead over a direct upstream call (one request at a time, same run):");
        println!("| path                                         | p50 ms   | p90 ms   | p99 ms   | p50 overhead ms | p90 overhead ms |");
        println!("|----------------------------------------------|----------|----------|----------|-----------------|-----------------|");
        let (mut direct_p50, mut direct_p90) = (0.0, 0.0);
        for (name, url, model, auth) in [
            ("direct to upstream stub", format!("{upstream}/chat/completions"), "stub", false),
            ("through gateway, attribution excluded", format!("{base}/v1/chat/completions"), "alice/upstream-plain", true),
            ("through gateway, attribution included", format!("{base}/v1/chat/completions"), "alice/upstream", true),
        ] {
            let body = Arc::new(chat(model));
            let (c, t) = (client.clone(), token.clone());
            let s = run(1, seconds, move |_| {
                let mut req = c.post(url.clone()).json(body.as_ref());
                if auth {
                    req = req.bearer_auth(&t);
                }
                async move { req.send().await.map(|r| r.status().is_success()).unwrap_or(false) }
            }).await;
            if !auth {
                (direct_p50, direct_p90) = (s.p50_ms, s.p90_ms);
            }
            println!(
                "| {name:<44} | {:>8.3} | {:>8.3} | {:>8.3} | {:>15.3} | {:>15.3} |",
                s.p50_ms, s.p90_ms, s.p99_ms, s.p50_ms - direct_p50, s.p90_ms - direct_p90
            );
            assert_eq!(s.errors, 0, "{name} had errors");
        }
        // The embedded model has no upstream to compare with: its whole call (generation,
        // attribution, durable receipt), one at a time.
        let body = Arc::new(chat("alice/embedded"));
        let (c, t, url) = (client.clone(), token.clone(), format!("{base}/v1/chat/completions"));
        let s = run(1, seconds, move |_| {
            let req = c.post(url.clone()).json(body.as_ref()).bearer_auth(&t);
            async move { req.send().await.map(|r| r.status().is_success()).unwrap_or(false) }
        }).await;
        println!(
            "| {:<44} | {:>8.3} | {:>8.3} | {:>8.3} | {:>15} | {:>15} |",
            "embedded ∞-gram + attribution (whole call)", s.p50_ms, s.p90_ms, s.p99_ms, "—", "—"
        );
        assert_eq!(s.errors, 0, "the embedded model's calls had errors");
        let _ = stop_tx.send(());
        server.await.unwrap().unwrap();
    });
}
