//! `cargo bench -p shoulders-bench --bench settle`: usage receipts settled per second and split
//! legs per second — the fold alone in memory (single thread), and durably on SQLite through the
//! ledger one by one and in batches (signature verification included). Prints one table.
//!
//! Environment: `SHOULDERS_BENCH_SCALE` (default 1) multiplies every count;
//! `SHOULDERS_BENCH_DIR` (default: the system temp dir) is where the ledger lives.

use serde_json::{json, Value};
use shoulders_ledger::{init_with, DataDir, Ledger, OperatorInit};
use shoulders_record::{sign_record, ActorKey, Body, Kind, SignedRecord};
use shoulders_state::State;
use std::time::Instant;

/// Receipts per `submit_batch` call.
const BATCH: usize = 1000;
/// Target from the issue: split legs per second, batched, on SQLite.
const TARGET_LEGS_PER_S: f64 = 100_000.0;
const CONTRIBUTORS: [&str; 5] = ["c0", "c1", "c2", "c3", "c4"];

fn scale() -> f64 {
    std::env::var("SHOULDERS_BENCH_SCALE")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(1.0)
}

struct World {
    keys: Vec<(String, ActorKey)>,
    seq: u64,
}

impl World {
    fn key(&mut self, who: &str) -> &ActorKey {
        if !self.keys.iter().any(|(h, _)| h == who) {
            let n = self.keys.len() as u8;
            self.keys
                .push((who.to_string(), ActorKey::from_seed([n + 7; 32])));
        }
        &self
            .keys
            .iter()
            .find(|(h, _)| h == who)
            .expect("just added")
            .1
    }

    fn sign(&mut self, who: &str, kind: Kind, body: Value) -> SignedRecord {
        self.seq += 1;
        let seq = self.seq;
        let body = Body::from_value(kind, body).expect("valid bench body");
        sign_record(
            self.key(who),
            &format!("b-{seq}"),
            1_800_000_000_000 + seq,
            body,
        )
        .expect("sign")
    }
}

fn license(id: &str, royalty_bps: u32, data_share_bps: u32) -> Value {
    json!({"license_id": id, "name": id, "terms": {
        "commercial_use": true, "derivatives": "allowed", "attribution_required": true,
        "share_alike": false, "royalty_bps": royalty_bps, "data_share_bps": data_share_bps,
        "currency": "USD", "price_per_call_micros": "1000", "price_per_1k_output_tokens_micros": "20000",
        "registration_fee_micros": "0"}})
}

/// The setup records (after the operator's two) and the first contribution's index.
/// A base model (10% royalty, 20% to its data) and a fine-tune (30% to its data), each on a
/// dataset with eight contributions from five contributors (one without a payout address).
fn setup(w: &mut World, first_index: u64) -> (Vec<SignedRecord>, Vec<(String, u64)>) {
    let mut out = Vec::new();
    let mut index = first_index;
    let mut push = |out: &mut Vec<SignedRecord>, r: SignedRecord| {
        out.push(r);
        index += 1;
        index - 1
    };
    for (i, c) in CONTRIBUTORS
        .iter()
        .chain(["lab", "tuner", "payer"].iter())
        .enumerate()
    {
        let mut body = json!({"handle": c, "name": c});
        if i != 4 {
            body["payout_address"] = json!(format!("acct:{c}"));
        }
        let r = w.sign(c, Kind::ActorRegister, body);
        push(&mut out, r);
    }
    let r = w.sign("lab", Kind::LicenseDefine, license("lab/l", 1000, 2000));
    push(&mut out, r);
    let r = w.sign("tuner", Kind::LicenseDefine, license("tuner/l", 0, 3000));
    push(&mut out, r);
    let mut contributions = Vec::new();
    for (owner, ds) in [("lab", "lab/web"), ("tuner", "tuner/chat")] {
        let r = w.sign(
            owner,
            Kind::DatasetCreate,
            json!({"dataset_id": ds, "name": ds, "access": "open"}),
        );
        push(&mut out, r);
        for i in 0..8u64 {
            let who = CONTRIBUTORS[(i as usize) % CONTRIBUTORS.len()];
            let r = w.sign(who, Kind::DataContribute, json!({"dataset_id": ds,
                "content_hash": format!("sha256:{:064x}", contributions.len() as u64 * 100 + i + 1), "byte_size": 1000 + i, "token_count": 1000 + i}));
            let at = push(&mut out, r);
            contributions.push((ds.to_string(), at));
        }
    }
    let r = w.sign("lab", Kind::ModelRegister, json!({"model_id": "lab/base", "name": "b", "datasets": ["lab/web"], "license_id": "lab/l"}));
    push(&mut out, r);
    let r = w.sign("tuner", Kind::ModelRegister, json!({"model_id": "tuner/chat", "name": "c",
        "parents": [{"model_id": "lab/base", "relation": "finetune"}], "datasets": ["tuner/chat"], "license_id": "tuner/l"}));
    push(&mut out, r);
    let r = w.sign(
        "operator",
        Kind::FundsDeposit,
        json!({"account": "payer", "currency": "USD", "amount_micros": "1000000000000000000"}),
    );
    push(&mut out, r);
    (out, contributions)
}

/// `n` receipts on the fine-tune, each naming four contributions (two per level).
fn receipts(
    w: &mut World,
    contributions: &[(String, u64)],
    from: usize,
    n: usize,
) -> Vec<SignedRecord> {
    (from..from + n)
        .map(|i| {
            let pick = |k: usize| &contributions[(i * 7 + k * 5) % contributions.len()];
            let mut chosen: Vec<&(String, u64)> = Vec::new();
            for k in 0..6 {
                let c = pick(k);
                if chosen.len() < 4 && !chosen.iter().any(|x| x.1 == c.1) {
                    chosen.push(c);
                }
            }
            let ppm = [400_000u64, 300_000, 200_000, 100_000];
            let left: u64 = ppm[chosen.len()..].iter().sum();
            let attribution: Vec<Value> = chosen
                .iter()
                .enumerate()
                .map(|(k, (ds, idx))| json!({"dataset_id": ds, "contribution": idx, "ppm": ppm[k] + if k == 0 { left } else { 0 }}))
                .collect();
            w.sign("operator", Kind::UsageReceipt, json!({"usage_id": format!("u{i}"), "model_id": "tuner/chat",
                "payer": "payer", "use_category": "chat", "input_tokens": 50, "output_tokens": 100 + i % 900,
                "output_hash": format!("sha256:{:064x}", i), "attribution": attribution}))
        })
        .collect()
}

fn row(what: &str, receipts: usize, legs: usize, secs: f64, note: &str) {
    println!(
        "| {what} | {receipts} | {:.0} | {:.0} | {:.1} | {note} |",
        receipts as f64 / secs,
        legs as f64 / secs,
        legs as f64 / receipts as f64
    );
}

fn main() {
    let scale = scale();
    let n = |full: usize| ((full as f64 * scale) as usize).max(BATCH);
    let (fold_n, single_n, batched_n) = (n(200_000), n(2_000), n(100_000).div_ceil(BATCH) * BATCH);
    let base = std::env::var_os("SHOULDERS_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("settle-bench")
        .tempdir_in(base)
        .expect("temp dir");
    let dir = DataDir::new(tmp.path().join("ledger"));
    let op = OperatorInit {
        handle: "operator".into(),
        name: "op".into(),
        protocol_fee_bps: 250,
        ts_ms: 1_800_000_000_000,
    };
    init_with(
        &dir,
        "bench.shoulders.local/log",
        Some(&op),
        &mut rand_core::OsRng,
    )
    .expect("init");
    let mut w = World {
        keys: Vec::new(),
        seq: 0,
    };
    w.keys.push((
        "operator".into(),
        shoulders_record::ActorKey::from_file_text(
            &std::fs::read_to_string(dir.operator_key()).unwrap(),
        )
        .unwrap(),
    ));
    let (setup_records, contributions) = setup(&mut w, 2);

    println!("settlement benchmark: fine-tune of a royalty-bearing base, 4 attributed contributions per receipt, fee 250 bps");
    println!(
        "signing {} receipts for the runs…",
        fold_n + single_n + batched_n
    );
    let fold_receipts = receipts(&mut w, &contributions, 0, fold_n);
    let single_receipts = receipts(&mut w, &contributions, fold_n, single_n);
    let batched_receipts = receipts(&mut w, &contributions, fold_n + single_n, batched_n);

    println!("\n| run | receipts | receipts/s | legs/s | legs per receipt | notes |\n|---|---|---|---|---|---|");
    // 1. The fold alone: what every verifier does on replay (signatures already checked).
    {
        let mut state = State::new();
        let ledger = Ledger::open(&dir).expect("open");
        let records: Vec<Vec<u8>> = setup_records.iter().map(|r| r.bytes().to_vec()).collect();
        for r in ledger.submit_batch(records) {
            r.expect("setup record");
        }
        drop(ledger);
        let reader = shoulders_ledger::Reader::open(&dir).expect("reader");
        state.clone_from(&reader.state().expect("state"));
        let legs_before = state.legs().len();
        let start = Instant::now();
        for rec in &fold_receipts {
            let index = state.size();
            state.apply(index, [0; 32], rec).expect("receipt settles");
        }
        let secs = start.elapsed().as_secs_f64();
        row(
            "fold only, in memory, 1 thread",
            fold_n,
            state.legs().len() - legs_before,
            secs,
            "no I/O, no signature check (replay)",
        );
    }
    // 2. and 3. Durable on SQLite through the ledger: verify, fold, group commit, fsync.
    let ledger = Ledger::open(&dir).expect("open");
    let legs0 = ledger.with_state(|s| s.legs().len());
    let start = Instant::now();
    for rec in &single_receipts {
        ledger
            .submit(rec.bytes().to_vec())
            .expect("receipt settles");
    }
    let secs = start.elapsed().as_secs_f64();
    let legs1 = ledger.with_state(|s| s.legs().len());
    row(
        "SQLite, one receipt per commit",
        single_n,
        legs1 - legs0,
        secs,
        "durable before each answer",
    );
    let start = Instant::now();
    let mut rest = batched_receipts.iter();
    loop {
        let batch: Vec<Vec<u8>> = rest
            .by_ref()
            .take(BATCH)
            .map(|r| r.bytes().to_vec())
            .collect();
        if batch.is_empty() {
            break;
        }
        for r in ledger.submit_batch(batch) {
            r.expect("receipt settles");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let legs2 = ledger.with_state(|s| s.legs().len());
    let legs_per_s = (legs2 - legs1) as f64 / secs;
    row(
        &format!("SQLite, batches of {BATCH}"),
        batched_n,
        legs2 - legs1,
        secs,
        "signatures verified on worker threads",
    );
    let conserved = ledger.with_state(|s| s.totals().iter().all(|t| t.conserved));
    println!("\nbooks conserved after the run: {conserved}");
    println!(
        "target: >= {:.0} legs/s batched on SQLite: {}",
        TARGET_LEGS_PER_S,
        if legs_per_s >= TARGET_LEGS_PER_S {
            "met"
        } else {
            "NOT met"
        }
    );
    println!("peers (published, not measured here): TigerBeetle 48k-341k transfers/s on far larger machines; PostgreSQL about 3.4k single-row transfers/s");
}
