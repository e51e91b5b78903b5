//! `cargo bench -p shoulders-bench --bench settle`: usage receipts settled per second and split
//! legs per second — the fold alone in memory (single thread), and durably on SQLite through the
//! ledger one by one and in batches, from one caller and from two (signature verification
//! included). Prints one table.
//!
//! Environment: `SHOULDERS_BENCH_SCALE` (default 1) multiplies every count;
//! `SHOULDERS_BENCH_DIR` (default: the system temp dir) is where the ledger lives.

use shoulders_bench::settle::{receipts, scale, setup, store_documents, World};
use shoulders_ledger::{init_with, DataDir, Ledger, OperatorInit};
use shoulders_state::State;
use std::time::Instant;

/// Receipts per `submit_batch` call.
const BATCH: usize = 1000;
/// Target from issue 21: split legs per second, batched, on SQLite.
const TARGET_LEGS_PER_S: f64 = 250_000.0;
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
    let two_n = batched_n;
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
        shoulders_bench::BENCH_LOG,
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
        fold_n + single_n + batched_n + two_n
    );
    let fold_receipts = receipts(&mut w, &contributions, 0, fold_n);
    let single_receipts = receipts(&mut w, &contributions, fold_n, single_n);
    let batched_receipts = receipts(&mut w, &contributions, fold_n + single_n, batched_n);
    let two_receipts = receipts(&mut w, &contributions, fold_n + single_n + batched_n, two_n);

    println!("\n| run | receipts | receipts/s | legs/s | legs per receipt | notes |\n|---|---|---|---|---|---|");
    // 1. The fold alone: what every verifier does on replay (signatures already checked).
    {
        let mut state = State::new();
        let ledger = Ledger::open(&dir).expect("open");
        store_documents(&ledger);
        let records: Vec<Vec<u8>> = setup_records.iter().map(|r| r.bytes().to_vec()).collect();
        for r in ledger.submit_batch(records) {
            r.expect("setup record");
        }
        drop(ledger);
        let reader = shoulders_ledger::Reader::open(&dir).expect("reader");
        // A replay keeps history in memory, as a verifier's fold does.
        state.clone_from(&shoulders_ledger::replay(reader.store()).expect("replay").0);
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
    let legs0 = ledger.with_state(|s| s.legs_count() as usize);
    let start = Instant::now();
    for rec in &single_receipts {
        ledger
            .submit(rec.bytes().to_vec())
            .expect("receipt settles");
    }
    let secs = start.elapsed().as_secs_f64();
    let legs1 = ledger.with_state(|s| s.legs_count() as usize);
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
    let legs2 = ledger.with_state(|s| s.legs_count() as usize);
    let legs_per_s = (legs2 - legs1) as f64 / secs;
    row(
        &format!("SQLite, batches of {BATCH}"),
        batched_n,
        legs2 - legs1,
        secs,
        "signatures verified on worker threads",
    );
    // 4. The same with two callers taking turns with batches, as concurrent clients (or the
    // gateway's calls) do: one caller's signature checks overlap the other's commit, and the
    // writer always has a batch waiting.
    let start = Instant::now();
    let batches: Vec<Vec<Vec<u8>>> = two_receipts
        .chunks(BATCH)
        .map(|c| c.iter().map(|r| r.bytes().to_vec()).collect())
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(batch) = batches.get(i) else { break };
                for r in ledger.submit_batch(batch.clone()) {
                    r.expect("receipt settles");
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let legs3 = ledger.with_state(|s| s.legs_count() as usize);
    let two_legs_per_s = (legs3 - legs2) as f64 / secs;
    row(
        &format!("SQLite, batches of {BATCH}, 2 callers"),
        two_n,
        legs3 - legs2,
        secs,
        "one caller's checks overlap the other's commit",
    );
    let conserved = ledger.with_state(|s| s.totals().iter().all(|t| t.conserved));
    println!("\nbooks conserved after the run: {conserved}");
    let verdict = |v: f64| {
        if v >= TARGET_LEGS_PER_S {
            "met"
        } else {
            "NOT met"
        }
    };
    println!(
        "target: >= {TARGET_LEGS_PER_S:.0} legs/s batched on SQLite: 1 caller {}, 2 callers {}",
        verdict(legs_per_s),
        verdict(two_legs_per_s)
    );
    println!("peers (published, not measured here): TigerBeetle 48k-341k transfers/s on far larger machines; PostgreSQL about 3.4k single-row transfers/s");
}
