//! State at scale: ledgers of many settled receipts, measured as an operator runs them.
//!
//! `cargo build --release -p shoulders-cli && cargo bench -p shoulders-bench --bench scale`
//! (`SHOULDERS_SCALE_SIZES=100000,1000000,10000000`, default `1000,100000,1000000`;
//! `SHOULDERS_SCALE_DIR` for where the ledgers go, default a temporary directory;
//! `SHOULDERS_SCALE_PG=1` also builds the 1M ledger on PostgreSQL). For each size it settles
//! that many receipts in batches of 1,000 (each naming four contributions: ~8 legs), then
//! measures with the release binary, restarted cold:
//!
//! * `serve` ready after a restart (until `/api/checkpoint` answers) and its memory (VmRSS);
//! * p50/p99 of `GET /api/statements/{holder}` (first page), `GET /`, `/actors/{h}`,
//!   `/models/{m}`, and of a metered gateway call (embedded model over an indexed dataset);
//! * `shoulders accounts` and `shoulders statement --limit 100` from the CLI;
//! * settlement throughput in batches, and a full `verify` of the export (peak memory and
//!   receipts per second).
//!
//! It prints figures; it asserts nothing about time.

use serde_json::json;
use shoulders_bench::serve::{release_binary, serve};
use shoulders_bench::settle::settled_ledger;
use shoulders_ledger::DataDir;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[(v.len() * 99 / 100).min(v.len() - 1)])
}

struct Built {
    dir: DataDir,
    settle_per_s: f64,
    receipts: usize,
}

/// A ledger with the settlement world and `n` settled receipts.
fn build(root: &Path, n: usize, database: Option<String>) -> Built {
    let dir = DataDir::new(root.join(format!("ledger-{n}")));
    let dir = match database {
        Some(url) => dir.with_database(shoulders_ledger::StoreLocation::parse(&url).unwrap()),
        None => dir,
    };
    let settling = settled_ledger(&dir, n);
    let settle_per_s = n as f64 / settling.as_secs_f64();
    // The gateway's embedded model needs an index of the fine-tune's dataset.
    let mut reader = shoulders_ledger::Reader::open(&dir).unwrap();
    let state = reader.state().unwrap();
    let content = shoulders_ledger::ContentStore::new(&dir);
    let docs: Vec<_> = state
        .dataset("tuner/chat")
        .unwrap()
        .contributions
        .iter()
        .map(|&c| {
            let c = state.contribution(c).unwrap();
            Ok(shoulders_attrib::dataset::BuildDoc {
                contribution: c.index,
                contributor: c.contributor.clone(),
                bytes: content.get(&c.content_hash).unwrap(),
            })
        })
        .collect();
    shoulders_attrib::dataset::build(
        dir.root(),
        "tuner/chat",
        state.size(),
        docs.into_iter(),
        &mut |_| {},
    )
    .unwrap();
    Built {
        dir,
        settle_per_s,
        receipts: n,
    }
}

fn time_get(client: &reqwest::blocking::Client, url: &str, n: usize) -> (f64, f64) {
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = client.get(url).send().unwrap();
        assert!(r.status().is_success(), "{url}: {}", r.status());
        r.bytes().unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    percentiles(ms)
}

fn time_cmd(bin: &Path, args: &[&str]) -> f64 {
    let t = Instant::now();
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed().as_secs_f64()
}

fn main() {
    let bin = release_binary();
    let sizes: Vec<usize> = std::env::var("SHOULDERS_SCALE_SIZES")
        .unwrap_or_else(|_| "1000,100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let tmp;
    let root = match std::env::var("SHOULDERS_SCALE_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => {
            tmp = tempfile::tempdir().unwrap();
            tmp.path().to_path_buf()
        }
    };
    let mut runs: Vec<(String, Built)> = Vec::new();
    for &n in &sizes {
        eprintln!("building a SQLite ledger with {n} receipts");
        runs.push((format!("SQLite {n}"), build(&root, n, None)));
    }
    if std::env::var("SHOULDERS_SCALE_PG").is_ok() {
        // A fresh database on SHOULDERS_TEST_PG_URL, or on a server started for the run.
        let url = shoulders_pgtest::fresh_database_url();
        eprintln!("building a PostgreSQL ledger with 1000000 receipts");
        runs.push((
            "PostgreSQL 1000000".into(),
            build(&root.join("pg"), 1_000_000, Some(url)),
        ));
    }
    println!("\nstate at scale (release build, 2 cores; figures per ledger, measured after a cold restart)");
    for (label, built) in &runs {
        let dir = &built.dir;
        let (server, ready_s) = serve(&bin, dir);
        std::thread::sleep(Duration::from_millis(300));
        let rss = rss_mib(server.child.id());
        let client = reqwest::blocking::Client::new();
        let u = |p: &str| format!("{}{p}", server.url);
        let statement = time_get(&client, &u("/api/statements/c0"), 200);
        let home = time_get(&client, &u("/"), 200);
        let actor = time_get(&client, &u("/actors/c0"), 200);
        let model = time_get(&client, &u("/models/tuner/chat"), 200);
        // A metered gateway call: the API key of the payer.
        let mut keys = shoulders_server::apikeys::open_store(dir.root(), None, false).unwrap();
        let key = shoulders_server::apikeys::issue(
            &mut *keys,
            "payer",
            &Default::default(),
            1,
            &mut rand_core::OsRng,
        )
        .unwrap()
        .0;
        drop(keys);
        drop(server);
        let (server, _) = serve(&bin, dir);
        let mut gateway = Vec::new();
        for i in 0..100 {
            let t = Instant::now();
            let r = client
                .post(format!("{}/v1/completions", server.url))
                .bearer_auth(&key)
                .json(&json!({"model": "tuner/chat", "prompt": "words of a contributed", "max_tokens": 64, "seed": i}))
                .send()
                .unwrap();
            assert!(r.status().is_success(), "gateway: {}", r.status());
            r.bytes().unwrap();
            gateway.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let gateway = percentiles(gateway);
        drop(server);
        let d = dir.root().to_str().unwrap();
        let accounts_s = time_cmd(&bin, &["accounts", "--data-dir", d]);
        let statement_s = time_cmd(
            &bin,
            &["statement", "--data-dir", d, "c0", "--limit", "100"],
        );
        let export = dir.root().join("export.txt");
        time_cmd(
            &bin,
            &["export", "--data-dir", d, "--out", export.to_str().unwrap()],
        );
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M"])
            .arg(&bin)
            .args(["verify", export.to_str().unwrap(), "--key"])
            .arg(dir.root().join("log.pub"))
            .arg("--timing")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let verify_mib = String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0);
        let _ = std::fs::remove_file(&export);
        println!("\n{label} receipts ({} records)", report["tree_size"]);
        println!("| measurement | figure | target |");
        println!("|---|---|---|");
        println!("| `serve` ready after a restart | {ready_s:.2} s | < 2 s |");
        println!("| `serve` memory (VmRSS) | {rss:.0} MiB | < 300 MB |");
        for (what, (p50, p99)) in [
            ("GET /api/statements/c0 (first page)", statement),
            ("GET /", home),
            ("GET /actors/c0", actor),
            ("GET /models/tuner/chat", model),
        ] {
            println!("| {what} p50/p99 | {p50:.2}/{p99:.2} ms | p99 < 50 ms |");
        }
        println!(
            "| metered gateway call p50/p99 | {:.2}/{:.2} ms | no slower than at 1,000 receipts |",
            gateway.0, gateway.1
        );
        println!("| `shoulders accounts` | {accounts_s:.2} s | < 1 s |");
        println!("| `shoulders statement c0 --limit 100` | {statement_s:.2} s | < 1 s |");
        println!(
            "| settlement in batches of 1,000 | {:.0} receipts/s | ≥ ~14k/s |",
            built.settle_per_s
        );
        println!(
            "| `verify` of the export | {verify_mib:.0} MiB, {} receipts/s | memory < 1 GB |",
            report["timing"]["receipts_per_s"]
        );
        let _ = built.receipts;
    }
}
