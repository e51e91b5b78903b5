//! Observability of the server (issue 18): `/metrics` parses as Prometheus (OpenMetrics) text
//! and its counters move by exactly what the ledger's receipts say; route labels are templates
//! and refused input never becomes a label; `/healthz`; `/readyz` ready and not ready (an index
//! that is not built, a read node that has not followed yet); request ids echoed when sane and
//! replaced when not, on every answer.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shoulders_server::{Metering, ServerConfig};

const MODEL: &str = "alice/verse-metered";

/// One sample: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parse OpenMetrics / Prometheus text strictly enough to catch a malformed exposition: every
/// line is a `# HELP`, `# TYPE` or `# UNIT` comment, the final `# EOF`, or a sample
/// `name{k="v",...} value` whose family was declared by a `# TYPE` line before it.
fn parse(text: &str) -> Vec<Sample> {
    let mut families: HashSet<String> = HashSet::new();
    let mut samples = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"# EOF"),
        "the exposition ends with # EOF"
    );
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().expect("a metric name");
            match kind {
                "TYPE" => {
                    let t = parts.next().unwrap();
                    assert!(
                        [
                            "counter",
                            "gauge",
                            "histogram",
                            "summary",
                            "info",
                            "unknown"
                        ]
                        .contains(&t),
                        "{line}"
                    );
                    families.insert(name.to_string());
                }
                "HELP" | "UNIT" => {}
                _ => panic!("unexpected comment: {line}"),
            }
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => (&line[..i], &line[i..]),
            None => panic!("no value: {line}"),
        };
        assert!(
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
            "bad name in {line}"
        );
        let mut labels = BTreeMap::new();
        let rest = if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end;
            loop {
                let (i, c) = chars.next().expect("unterminated labels");
                if c == '}' {
                    end = i;
                    break;
                }
                if c == ',' {
                    continue;
                }
                let key_start = i;
                let mut key_end = i;
                for (j, k) in chars.by_ref() {
                    if k == '=' {
                        key_end = j;
                        break;
                    }
                }
                let key = &body[key_start..key_end];
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                let mut value = String::new();
                loop {
                    let (_, c) = chars.next().expect("unterminated label value");
                    match c {
                        '"' => break,
                        '\\' => value.push(chars.next().unwrap().1),
                        c => value.push(c),
                    }
                }
                labels.insert(key.to_string(), value);
            }
            &body[end + 1..]
        } else {
            rest
        };
        let value: f64 = rest
            .trim()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let family = ["_total", "_bucket", "_sum", "_count", "_created"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(*f)))
            .unwrap_or(name);
        assert!(families.contains(family), "no # TYPE for {name}");
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    samples
}

/// The sum of the samples named `name` whose labels include `want`.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(s: &Running) -> (String, Vec<Sample>) {
    let resp = s.client.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    let samples = parse(&text);
    (text, samples)
}

async fn json_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The fixture plus an operator, `MODEL` under a per-call and per-token licence (answered by
/// the embedded model over the verse index), 100 USD for bob and bob's API key; metering on.
fn metered() -> (Fixture, ServerConfig, String) {
    Metered {
        model: MODEL,
        license_id: "alice/per-token",
        price_per_call_micros: 7,
        price_per_1k_output_tokens_micros: 1_000_000,
        forbidden_uses: &[],
        deposit_micros: 100_000_000,
        upstream: None,
    }
    .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_metrics_move_by_exactly_what_the_receipts_say() {
    let (_f, c, token) = metered();
    let s = start(c).await;
    let (_, before) = scrape(&s).await;
    let model = [("gen_ai_request_model", MODEL)];
    let (_, listed) = json_of(
        s.client
            .get(s.url("/api/models/alice/verse-metered/receipts"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 0);

    // Two completions and two chats with different prompts and lengths.
    let calls = [
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "Shall I", "max_tokens": 20}),
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "The woods", "max_tokens": 9}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "max_tokens": 30,
            "messages": [{"role": "user", "content": "Because I"}]}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "max_tokens": 5, "stream": true,
            "messages": [{"role": "user", "content": "Thou art"}]}),
        ),
    ];
    for (path, body) in &calls {
        let resp = s
            .client
            .post(s.url(path))
            .bearer_auth(&token)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        resp.bytes().await.unwrap();
    }
    // Refused calls: an unknown model (never a label) and a known one without a key.
    let unknown = format!("mallory/{}", shoulders_server::metrics::new_request_id());
    let (status, _) = json_of(
        s.client
            .post(s.url("/v1/completions"))
            .bearer_auth(&token)
            .json(&json!({"model": unknown, "prompt": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = json_of(
        s.client
            .post(s.url("/v1/completions"))
            .json(&json!({"model": MODEL, "prompt": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // What the ledger says the four calls were.
    let (_, listed) = json_of(
        s.client
            .get(s.url("/api/models/alice/verse-metered/receipts"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let receipts = listed["items"].as_array().unwrap();
    assert_eq!(receipts.len(), calls.len());
    let sum = |field: &str| -> f64 {
        receipts
            .iter()
            .map(|r| match &r[field] {
                Value::String(s) => s.parse::<f64>().unwrap(),
                v => v.as_f64().unwrap(),
            })
            .sum()
    };
    let (output, input, charged) = (
        sum("output_tokens"),
        sum("input_tokens"),
        sum("charge_micros"),
    );
    assert!(output > 0.0 && charged > 0.0);

    let (text, after) = scrape(&s).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let tokens = |t: &'static str| [("gen_ai_request_model", MODEL), ("gen_ai_token_type", t)];
    assert_eq!(
        delta("gen_ai_client_token_usage_sum", &tokens("output")),
        output
    );
    assert_eq!(
        delta("gen_ai_client_token_usage_sum", &tokens("input")),
        input
    );
    assert_eq!(
        delta("gen_ai_client_token_usage_count", &tokens("output")),
        4.0
    );
    for op in ["chat", "text_completion"] {
        assert_eq!(
            delta(
                "gen_ai_client_token_usage_count",
                &[
                    ("gen_ai_request_model", MODEL),
                    ("gen_ai_token_type", "output"),
                    ("gen_ai_operation_name", op)
                ]
            ),
            2.0,
            "{op}"
        );
        assert_eq!(
            delta(
                "gen_ai_client_operation_duration_seconds_count",
                &[
                    ("gen_ai_request_model", MODEL),
                    ("gen_ai_operation_name", op)
                ]
            ),
            2.0
        );
    }
    assert_eq!(
        delta(
            "shoulders_gateway_charge_micros_total",
            &[("gen_ai_request_model", MODEL), ("currency", "USD")]
        ),
        charged
    );
    assert_eq!(delta("shoulders_receipts_appended_total", &[]), 4.0);
    // One call at a time, a key without a budget, nothing queued for the writer: every
    // admission (the four calls and the unknown model's) ran on the worker that received it.
    let admitted = |on| delta("shoulders_gateway_admissions_total", &[("on", on)]);
    assert_eq!((admitted("worker"), admitted("pool")), (5.0, 0.0));
    assert_eq!(
        delta(
            "shoulders_gateway_calls_total",
            &[model[0], ("outcome", "ok")]
        ),
        4.0
    );
    // The unauthenticated call was refused before the model was looked at.
    assert_eq!(
        delta(
            "shoulders_gateway_calls_total",
            &[model[0], ("outcome", "error")]
        ),
        0.0
    );
    let attributed = receipts.iter().filter(|r| r["output_tokens"] != 0).count() as f64;
    assert_eq!(
        delta(
            "shoulders_attribution_duration_seconds_count",
            &[("source", "gateway")]
        ),
        attributed
    );
    // One receipt per call, each its own commit (the calls ran one after the other).
    assert_eq!(
        delta("shoulders_writer_commit_duration_seconds_count", &[]),
        4.0
    );
    assert_eq!(value(&after, "shoulders_writer_queue_depth", &[]), 0.0);
    // HTTP counters by template and status.
    let http = |route: &str, status: &str| {
        delta(
            "shoulders_http_requests_total",
            &[("http_route", route), ("http_response_status_code", status)],
        )
    };
    assert_eq!(http("/v1/completions", "200"), 2.0);
    assert_eq!(http("/v1/chat/completions", "200"), 2.0);
    assert_eq!(http("/v1/completions", "404"), 1.0);
    assert_eq!(http("/v1/completions", "401"), 1.0);
    assert_eq!(
        delta(
            "http_server_request_duration_seconds_count",
            &[
                ("http_route", "/v1/completions"),
                ("http_request_method", "POST")
            ]
        ),
        4.0
    );
    // The refused model id is nowhere in the exposition.
    assert!(!text.contains(&unknown), "{text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_labels_are_templates_and_client_input_never_a_label() {
    let f = fixture();
    let s = start(config(&f, Metering::Off)).await;
    let junk = shoulders_server::metrics::new_request_id();
    for path in [
        "/api/models/alice/verse-base".to_string(),
        "/api/models/bob/tuned".to_string(),
        format!("/api/models/alice/{junk}"),
        format!("/no/such/{junk}"),
    ] {
        s.client.get(s.url(&path)).send().await.unwrap();
    }
    let odd = reqwest::Method::from_bytes(b"BREW").unwrap();
    let resp = s
        .client
        .request(odd, s.url("/api/checkpoint"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let (text, samples) = scrape(&s).await;
    let count = |route: &str, status: &str| {
        value(
            &samples,
            "shoulders_http_requests_total",
            &[("http_route", route), ("http_response_status_code", status)],
        )
    };
    assert_eq!(count("/api/models/{owner}/{name}", "200"), 2.0);
    assert_eq!(count("/api/models/{owner}/{name}", "404"), 1.0);
    assert_eq!(count("unmatched", "404"), 1.0);
    assert_eq!(
        value(
            &samples,
            "shoulders_http_requests_total",
            &[
                ("http_request_method", "other"),
                ("http_response_status_code", "405")
            ]
        ),
        1.0
    );
    for raw in ["alice/verse-base", "bob/tuned", junk.as_str(), "BREW"] {
        assert!(!text.contains(raw), "{raw} in\n{text}");
    }
    // Every route label is a template the router knows, or `unmatched`.
    let (_, doc) = shoulders_server::routes();
    let mut known: HashSet<String> = doc.paths.paths.keys().cloned().collect();
    known.extend(["unmatched", "/metrics", "/healthz", "/readyz"].map(String::from));
    let labels: HashSet<&String> = samples
        .iter()
        .filter_map(|s| s.labels.get("http_route"))
        .collect();
    assert!(labels.len() >= 3, "{labels:?}");
    for route in labels {
        assert!(known.contains(route), "{route} is not a route template");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_readyz_on_the_writer() {
    let f = fixture();
    let mut c = config(&f, Metering::Off);
    c.preload_indexes = vec!["alice/verse".into()];
    let s = start(c).await;
    let (status, body) = json_of(s.client.get(s.url("/healthz")).send().await.unwrap()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = json_of(s.client.get(s.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    for check in ["writer", "store", "index:alice/verse"] {
        assert_eq!(body["checks"][check]["ok"], true, "{check}: {body}");
    }
    s.stop().await;

    // Told to load an index that was never built: alive, but not ready, naming the check.
    let mut c = config(&f, Metering::Off);
    c.preload_indexes = vec!["alice/verse".into(), "alice/unbuilt".into()];
    let s = start(c).await;
    let (status, _) = json_of(s.client.get(s.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = json_of(s.client.get(s.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["error"]["code"], "E_NOT_READY");
    assert_eq!(body["failed"], json!(["index:alice/unbuilt"]));
    assert_eq!(body["checks"]["index:alice/verse"]["ok"], true);
    assert_eq!(body["checks"]["writer"]["ok"], true);
    assert!(body["checks"]["index:alice/unbuilt"]["message"]
        .as_str()
        .unwrap()
        .contains("shoulders index build"));
    s.stop().await;

    // More indexes than the server keeps open is refused at start.
    let mut c = config(&f, Metering::Off);
    c.preload_indexes = (0..=shoulders_server::MAX_OPEN_INDEXES)
        .map(|i| format!("alice/d{i}"))
        .collect();
    let err = shoulders_server::AppState::open(c).err().expect("refused");
    assert_eq!(err.code(), "E_PRELOAD_INDEXES");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_node_is_ready_once_it_has_followed_the_log() {
    let f = fixture();
    // A node whose first poll is an hour away has not caught up yet.
    let mut slow = config(&f, Metering::Off);
    slow.read_only = true;
    slow.follow_interval_ms = 3_600_000;
    let slow = start(slow).await;
    let (status, body) = json_of(slow.client.get(slow.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["failed"], json!(["follower"]));
    assert_eq!(body["checks"]["store"]["ok"], true);
    assert!(body["checks"].get("writer").is_none());

    let mut fast = config(&f, Metering::Off);
    fast.read_only = true;
    fast.follow_interval_ms = 10;
    let fast = start(fast).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) =
            json_of(fast.client.get(fast.url("/readyz")).send().await.unwrap()).await;
        if status == StatusCode::OK {
            assert_eq!(body["checks"]["follower"]["ok"], true);
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A read node has no writer queue.
    let (_, samples) = scrape(&fast).await;
    assert_eq!(value(&samples, "shoulders_writer_queue_depth", &[]), 0.0);
    slow.stop().await;
    fast.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_when_sane_and_replaced_when_not() {
    let f = fixture();
    let s = start(config(&f, Metering::Off)).await;
    let id_of = |resp: &reqwest::Response| {
        resp.headers()
            .get("x-request-id")
            .expect("x-request-id on every response")
            .to_str()
            .unwrap()
            .to_string()
    };
    let generated = |id: &str| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let sane = "a".repeat(64);
    for (path, sent, kept) in [
        ("/healthz", Some("req-1.A_b"), true),
        ("/api/models/alice/verse-base", Some(sane.as_str()), true),
        // Errors carry it too: unknown route, unknown entity.
        ("/no/such/route", Some("trace-404"), true),
        ("/api/models/alice/none", Some("trace-entity-404"), true),
        // Too long, bad characters, empty: replaced.
        ("/healthz", Some(&*"a".repeat(65)), false),
        ("/healthz", Some("has space"), false),
        ("/healthz", Some("semi;colon"), false),
        ("/healthz", Some(""), false),
        ("/healthz", None, false),
    ] {
        let mut req = s.client.get(s.url(path));
        if let Some(id) = sent {
            req = req.header("x-request-id", id);
        }
        let resp = req.send().await.unwrap();
        let got = id_of(&resp);
        if kept {
            assert_eq!(Some(got.as_str()), sent, "{path}");
        } else {
            assert!(generated(&got), "{path}: {sent:?} -> {got}");
            assert_ne!(Some(got.as_str()), sent);
        }
    }
    // A request over the body limit (413) and a wrong method (405) are answered with one too.
    let resp = s
        .client
        .post(s.url("/api/records"))
        .header("x-request-id", "big-body")
        .body(vec![b'x'; 80 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(id_of(&resp), "big-body");
    let resp = s
        .client
        .delete(s.url("/api/checkpoint"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(generated(&id_of(&resp)));
    // Generated ids differ.
    let a = id_of(&s.client.get(s.url("/healthz")).send().await.unwrap());
    let b = id_of(&s.client.get(s.url("/healthz")).send().await.unwrap());
    assert_ne!(a, b);
    s.stop().await;
}

#[test]
fn request_id_sanity_rule() {
    use shoulders_server::metrics::sane_request_id;
    assert!(sane_request_id("a"));
    assert!(sane_request_id(&"Z9._-".repeat(12)));
    assert!(!sane_request_id(&"x".repeat(65)));
    assert!(!sane_request_id(""));
    for bad in ["a b", "a/b", "é", "a\tb", "a\"b", "{x}"] {
        assert!(!sane_request_id(bad), "{bad}");
    }
}
