//! A log with three witnesses and quorum 2, all in-process over real HTTP: the served
//! `/log/checkpoint` carries a quorum of valid cosignatures; with one witness down the quorum
//! is still reached; with two down no new cosigned checkpoint appears (the old one stays); a
//! restart serves the saved one at once; and a second log with the same key but another history
//! is refused by the witnesses that cosigned the first, so it never gets a quorum.

mod common;

use common::record;
use serde_json::{json, Value};
use shoulders_ledger::{init, DataDir, Ledger};
use shoulders_log::{LogVerifier, WitnessPolicy};
use shoulders_record::{ActorKey, Kind};
use shoulders_server::{Metering, ServerConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ORIGIN: &str = "test.shoulders.local/log";

struct RunningWitness {
    url: String,
    vkey: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningWitness {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

async fn start_witness(dir: &Path, name: &str, log_vkey: &str) -> RunningWitness {
    let vkey = shoulders_witness::init(dir, name, &mut rand_core::OsRng).unwrap();
    let witness = Arc::new(shoulders_witness::Witness::open(dir, &[log_vkey.to_string()]).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, shoulders_witness::router(witness))
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    RunningWitness {
        url,
        vkey,
        stop: Some(tx),
        task,
    }
}

fn now_ms() -> u64 {
    shoulders_server::now_ms()
}

/// A ledger in `dir` with `who` registered and `n - 1` datasets; returns its verifier key.
fn ledger(dir: &DataDir, who: &str, n: usize) {
    let ledger = Ledger::open(dir).unwrap();
    let key = ActorKey::from_seed([who.as_bytes()[0]; 32]);
    let ts = now_ms();
    ledger
        .submit(record(
            &key,
            who,
            ts,
            Kind::ActorRegister,
            json!({"handle": who, "name": who}),
        ))
        .unwrap();
    for i in 1..n {
        let body = json!({"dataset_id": format!("{who}/d{i}"), "name": "D", "access": "open"});
        ledger
            .submit(record(
                &key,
                &format!("d{i}"),
                ts,
                Kind::DatasetCreate,
                body,
            ))
            .unwrap();
    }
}

/// Append one dataset over HTTP, as a client would.
async fn add_dataset(base: &str, who: &str, i: usize) {
    let key = ActorKey::from_seed([who.as_bytes()[0]; 32]);
    let body = json!({"dataset_id": format!("{who}/late{i}"), "name": "D", "access": "open"});
    let rec = record(
        &key,
        &format!("late{i}"),
        now_ms(),
        Kind::DatasetCreate,
        body,
    );
    let r = reqwest::Client::new()
        .post(format!("{base}/api/records"))
        .body(rec)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

fn policy_text(witnesses: &[&RunningWitness]) -> String {
    let mut text = String::new();
    for w in witnesses {
        text.push_str(&format!("witness {} {}\n", w.vkey, w.url));
    }
    text + "quorum 2\n"
}

/// Witnesses `w0`, `w1`, `w2` of the log under `dir`, and their policy (quorum 2) as text and
/// parsed.
async fn three_witnesses(
    dir: &Path,
    log_vkey: &str,
) -> (Vec<RunningWitness>, String, WitnessPolicy) {
    let mut ws = Vec::new();
    for i in 0..3 {
        ws.push(
            start_witness(
                &dir.join(format!("w{i}")),
                &format!("w{i}.example"),
                log_vkey,
            )
            .await,
        );
    }
    let text = policy_text(&ws.iter().collect::<Vec<_>>());
    let policy = WitnessPolicy::parse(&text).unwrap();
    (ws, text, policy)
}

fn config(data: &Path, policy: &str) -> ServerConfig {
    let mut c = ServerConfig::new(data);
    c.metering = Metering::Off;
    c.witness_policy = Some(WitnessPolicy::parse(policy).unwrap());
    c
}

/// `GET /log/checkpoint`: status and body.
async fn served(base: &str) -> (u16, Vec<u8>) {
    let r = reqwest::get(format!("{base}/log/checkpoint"))
        .await
        .unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

/// Wait until `/log/checkpoint` is cosigned at `size` (or panic after 15 s).
async fn cosigned_at(
    base: &str,
    policy: &WitnessPolicy,
    log: &LogVerifier,
    size: u64,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, note) = served(base).await;
        if status == 200 {
            let (view, names) = policy.open(log, &note).unwrap();
            if view.size == size {
                return names;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no cosigned checkpoint of size {size}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quorum_cosigns_survives_one_witness_down_and_not_two() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::new(tmp.path().join("ledger"));
    let log_vkey = init(&data, ORIGIN, &mut rand_core::OsRng).unwrap();
    ledger(&data, "ann", 3);
    let (mut ws, text, policy) = three_witnesses(tmp.path(), &log_vkey).await;
    let log = LogVerifier::new(&log_vkey).unwrap();
    let server = common::start(config(data.root(), &text)).await;

    // The policy is published as the explorer reads it.
    let doc: Value = reqwest::get(server.url("/api/witnesses"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["log_vkey"], log_vkey);
    assert_eq!(doc["quorum"], 2);
    assert_eq!(doc["witnesses"][1]["name"], "w1.example");
    assert_eq!(doc["witnesses"][1]["vkey"], ws[1].vkey);
    assert_eq!(doc["witnesses"][1]["url"], ws[1].url);

    let names = cosigned_at(&server.base, &policy, &log, 3).await;
    assert!(names.len() >= 2, "{names:?}");

    // One witness down: the log grows and a quorum still cosigns it.
    ws.remove(0).stop().await;
    add_dataset(&server.base, "ann", 1).await;
    let mut names = cosigned_at(&server.base, &policy, &log, 4).await;
    names.sort();
    assert_eq!(names, vec!["w1.example", "w2.example"]);

    // Two down: the log grows, the cosigned checkpoint stays the old one.
    ws.remove(0).stop().await;
    add_dataset(&server.base, "ann", 2).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(server.size().await, 5);
    let (status, note) = served(&server.base).await;
    assert_eq!(status, 200);
    assert_eq!(policy.open(&log, &note).unwrap().0.size, 4);
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "shoulders_witness_requests_total{witness=\"w0.example\",outcome=\"failed\"}"
        ),
        "{metrics}"
    );

    // A restart serves the saved cosigned checkpoint at once, before any witness answers.
    server.stop().await;
    let server = common::start(config(data.root(), &text)).await;
    let (status, again) = served(&server.base).await;
    assert_eq!((status, again), (200, note));
    server.stop().await;

    // Without a policy, /log/checkpoint is the log-signed checkpoint and the policy is empty.
    let mut plain = ServerConfig::new(data.root());
    plain.metering = Metering::Off;
    let server = common::start(plain).await;
    let (status, note) = served(&server.base).await;
    assert_eq!((status, log.open(&note).unwrap().size), (200, 5));
    let doc: Value = reqwest::get(server.url("/api/witnesses"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc,
        json!({"log_vkey": log_vkey, "quorum": 0, "witnesses": []})
    );
    server.stop().await;
    for w in ws {
        w.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_view_cannot_get_a_quorum() {
    let tmp = tempfile::tempdir().unwrap();
    let a = DataDir::new(tmp.path().join("a"));
    let log_vkey = init(&a, ORIGIN, &mut rand_core::OsRng).unwrap();
    ledger(&a, "ann", 2);
    // b: a copy of a at size 2 (the same log key), then another history.
    let b = DataDir::new(tmp.path().join("b"));
    std::fs::create_dir_all(b.root()).unwrap();
    for e in std::fs::read_dir(a.root()).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), b.root().join(e.file_name())).unwrap();
        }
    }
    ledger(&a, "ben", 3);
    ledger(&b, "bob", 4);
    let (ws, text, policy) = three_witnesses(tmp.path(), &log_vkey).await;
    let log = LogVerifier::new(&log_vkey).unwrap();

    let server_a = common::start(config(a.root(), &text)).await;
    let names = cosigned_at(&server_a.base, &policy, &log, 5).await;
    assert!(names.len() >= 2);
    // Let the third witness catch up, so every witness holds a's tree.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server_a.stop().await;

    // b (size 6) shows the witnesses a tree that does not extend a's size-5 tree: each answers
    // 409 with size 5, then 422 for b's proof from 5, and b never gets a cosigned checkpoint.
    let server_b = common::start(config(b.root(), &text)).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let (status, body) = served(&server_b.base).await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let error: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["code"], "E_NOT_COSIGNED");
    let metrics = reqwest::get(server_b.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("outcome=\"conflict\""), "{metrics}");
    assert!(!metrics.contains("outcome=\"cosigned\""), "{metrics}");
    server_b.stop().await;

    // What each witness answers b, asked directly: 409 naming a's size, then 422 for b's proof.
    let rb = shoulders_ledger::Reader::open(&b).unwrap();
    let note_b = rb.checkpoint_at(6).unwrap();
    let proof: Vec<shoulders_log::Hash> = rb
        .consistency_proof(5, 6)
        .unwrap()
        .hashes
        .iter()
        .map(|h| shoulders_log::Hash::parse_hash(h).unwrap())
        .collect();
    let http = reqwest::Client::new();
    for w in &ws {
        let ask = |old: u64, proof: &[shoulders_log::Hash]| {
            http.post(format!("{}/add-checkpoint", w.url))
                .body(shoulders_witness::protocol::encode_request(
                    old, proof, &note_b,
                ))
                .send()
        };
        let r = ask(0, &[]).await.unwrap();
        assert_eq!(r.status().as_u16(), 409);
        assert_eq!(r.headers()["content-type"], "text/x.tlog.size");
        assert_eq!(r.text().await.unwrap(), "5\n");
        assert_eq!(ask(5, &proof).await.unwrap().status().as_u16(), 422);
    }
    for w in ws {
        w.stop().await;
    }
}
