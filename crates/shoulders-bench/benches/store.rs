//! `cargo bench -p shoulders-bench --bench store`: durable appends through the whole ledger
//! (verify, fold, group commit, acknowledge after commit) on SQLite and on PostgreSQL, in the
//! same run, printed side by side; and usage settlement (split legs per second) on both.
//!
//! PostgreSQL: `SHOULDERS_TEST_PG_URL` names a server to create a database on; without it a
//! throwaway server is started from the installed binaries (see `shoulders-pgtest`), with its
//! files under the system temp dir. Put both stores on the same kind of disk, or the comparison
//! says more about the disks than the stores.
//!
//! Environment: `SHOULDERS_BENCH_SCALE` (default `1`) multiplies every size;
//! `SHOULDERS_BENCH_DIR` (default: the system temp dir) holds the SQLite ledgers.

use rand_core::OsRng;
use shoulders_bench::settle::{receipts, setup as settle_setup, store_documents, World};
use shoulders_ledger::{init, init_with, DataDir, Ledger, OperatorInit, StoreLocation};
use shoulders_record::{
    sign_record, Access, ActorKey, ActorRegister, Body, DataContribute, DatasetCreate,
};
use std::path::Path;
use std::time::{Duration, Instant};

const DATASET: &str = "bench/documents";
/// Records per `submit_batch` call.
const SUBMIT_BATCH: usize = 1000;
/// Submitter threads for the concurrent (group-committed) single-record figure.
const THREADS: usize = 8;

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

fn scale() -> f64 {
    match std::env::var("SHOULDERS_BENCH_SCALE") {
        Ok(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .unwrap_or_else(|| {
                panic!("SHOULDERS_BENCH_SCALE must be a positive number, got {s:?}")
            }),
        Err(_) => 1.0,
    }
}

/// The document every benchmark contribution names; each fresh ledger stores it first (content
/// first), so every submit pays the admission check on a small stored blob.
const DOCUMENT: &str = "A benchmark document: the ledger holds it before any record names it.\n";

/// `count` distinct signed `data.contribute` records of [`DOCUMENT`] with ids `<prefix>-<i>`.
fn sign_contributions(key: &ActorKey, prefix: &str, count: usize) -> Vec<Vec<u8>> {
    let content_hash = shoulders_ledger::content_ref(DOCUMENT.as_bytes());
    (0..count)
        .map(|i| {
            let body = Body::DataContribute(DataContribute {
                dataset_id: DATASET.into(),
                content_hash: content_hash.clone(),
                byte_size: DOCUMENT.len() as u64,
                token_count: DOCUMENT.len() as u64,
                media_type: Some("text/plain".into()),
                title: Some(format!("Document {i}")),
                tdm_reservation: false,
            });
            sign_record(
                key,
                shoulders_bench::BENCH_LOG,
                &format!("{prefix}-{i}"),
                1_700_000_000_000,
                body,
            )
            .expect("benchmark records are valid")
            .into_parts()
            .1
        })
        .collect()
}

/// A new ledger on `backend` with the benchmark actor and dataset set up.
fn fresh_ledger(base: &Path, name: &str, backend: Backend, key: &ActorKey) -> Ledger {
    let mut dir = DataDir::new(base.join(name));
    if backend == Backend::Postgres {
        let url = shoulders_pgtest::fresh_database_url();
        dir = dir.with_database(StoreLocation::parse(&url).expect("a PostgreSQL URL"));
    }
    init(&dir, shoulders_bench::BENCH_LOG, &mut OsRng).expect("init ledger");
    let ledger = Ledger::open(&dir).expect("open ledger");
    ledger
        .content()
        .put(DOCUMENT.as_bytes())
        .expect("store the benchmark document");
    let setup = [
        Body::ActorRegister(ActorRegister {
            handle: "bench".into(),
            name: "Benchmark actor".into(),
            url: None,
            payout_address: None,
        }),
        Body::DatasetCreate(DatasetCreate {
            dataset_id: DATASET.into(),
            name: "Benchmark documents".into(),
            description: None,
            access: Access::Open,
            allowlist: vec![],
            license_id: None,
            review: false,
            quota: None,
            disputes: None,
        }),
    ];
    for (i, body) in setup.into_iter().enumerate() {
        let rec = sign_record(
            key,
            shoulders_bench::BENCH_LOG,
            &format!("setup-{i}"),
            1_600_000_000_000,
            body,
        )
        .expect("setup records are valid");
        ledger.submit(rec.bytes().to_vec()).expect("setup accepted");
    }
    ledger
}

/// Settle `receipts` usage receipts in batches on a fresh operated ledger on `backend`; returns
/// the split legs posted and the time taken (signature checks, fold and commits included).
fn settle(base: &Path, backend: Backend, receipt_count: usize) -> (usize, Duration) {
    let mut dir = DataDir::new(base.join(format!("settle-{}", backend.name())));
    if backend == Backend::Postgres {
        let url = shoulders_pgtest::fresh_database_url();
        dir = dir.with_database(StoreLocation::parse(&url).expect("a PostgreSQL URL"));
    }
    let op = OperatorInit {
        handle: "operator".into(),
        name: "op".into(),
        protocol_fee_bps: 250,
        ts_ms: 1_800_000_000_000,
    };
    init_with(&dir, shoulders_bench::BENCH_LOG, Some(&op), &mut OsRng).expect("init ledger");
    let operator = std::fs::read_to_string(dir.operator_key()).expect("operator key");
    let mut world = World::new(ActorKey::from_file_text(&operator).expect("operator key"));
    let (setup_records, contributions) = settle_setup(&mut world, 2);
    let ledger = Ledger::open(&dir).expect("open ledger");
    store_documents(&ledger);
    ledger
        .submit_batch(setup_records.iter().map(|r| r.bytes().to_vec()).collect())
        .into_iter()
        .for_each(check);
    let signed = receipts(&mut world, &contributions, 0, receipt_count);
    let legs_before = ledger.with_state(|s| s.legs_count() as usize);
    let start = Instant::now();
    for batch in signed.chunks(SUBMIT_BATCH) {
        ledger
            .submit_batch(batch.iter().map(|r| r.bytes().to_vec()).collect())
            .into_iter()
            .for_each(check);
    }
    let elapsed = start.elapsed();
    (
        ledger.with_state(|s| s.legs_count() as usize) - legs_before,
        elapsed,
    )
}

fn check(result: Result<shoulders_ledger::Appended, shoulders_ledger::LedgerError>) {
    match result {
        Ok(a) if !a.duplicate => {}
        Ok(a) => panic!(
            "record {} was a duplicate; the figure would be wrong",
            a.index
        ),
        Err(e) => panic!("a benchmark record was refused: {} ({e})", e.code()),
    }
}

/// Submit `records` one at a time from `threads` threads; returns the elapsed time.
fn submit_singles(ledger: &Ledger, records: Vec<Vec<u8>>, threads: usize) -> Duration {
    let per = records.len().div_ceil(threads).max(1);
    let parts: Vec<Vec<Vec<u8>>> = records.chunks(per).map(<[_]>::to_vec).collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for part in parts {
            s.spawn(move || part.into_iter().for_each(|r| check(ledger.submit(r))));
        }
    });
    start.elapsed()
}

/// Submit `records` in `submit_batch` calls of `SUBMIT_BATCH`, from one caller.
fn submit_batches(ledger: &Ledger, records: Vec<Vec<u8>>) -> Duration {
    let start = Instant::now();
    for batch in records.chunks(SUBMIT_BATCH) {
        ledger
            .submit_batch(batch.to_vec())
            .into_iter()
            .for_each(check);
    }
    start.elapsed()
}

struct Measurement {
    what: String,
    count: usize,
    per_backend: Vec<(Backend, Duration)>,
}

fn main() {
    let scale = scale();
    let n = |full: usize, floor: usize| ((full as f64 * scale).round() as usize).max(floor);
    let (single, concurrent) = (n(1_000, 20), n(8_000, THREADS * 4));
    let batched = n(50_000, SUBMIT_BATCH).div_ceil(SUBMIT_BATCH) * SUBMIT_BATCH;
    let base_dir = std::env::var_os("SHOULDERS_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&base_dir).expect("temporary directory");
    let key = ActorKey::from_seed([42; 32]);
    eprintln!("signing records ...");
    let runs: Vec<(String, usize, &str)> = vec![
        ("durable signed submit, 1 thread".into(), single, "s"),
        (
            format!("durable signed submit, {THREADS} threads (group commit)"),
            concurrent,
            "c",
        ),
        (
            format!("durable signed submit_batch({SUBMIT_BATCH}), 1 caller"),
            batched,
            "b",
        ),
    ];
    let mut table: Vec<Measurement> = Vec::new();
    for (what, count, prefix) in runs {
        let mut per_backend = Vec::new();
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let records = sign_contributions(&key, prefix, count);
            let name = format!("{prefix}-{}", backend.name());
            let ledger = fresh_ledger(tmp.path(), &name, backend, &key);
            let elapsed = match prefix {
                "s" => submit_singles(&ledger, records, 1),
                "c" => submit_singles(&ledger, records, THREADS),
                _ => submit_batches(&ledger, records),
            };
            assert_eq!(ledger.size(), 2 + count as u64, "every record appended");
            eprintln!(
                "  {what} on {}: {count} in {:.3} s",
                backend.name(),
                elapsed.as_secs_f64()
            );
            per_backend.push((backend, elapsed));
        }
        table.push(Measurement {
            what,
            count,
            per_backend,
        });
    }
    // Settlement: usage receipts split into legs by the fold, committed in batches.
    let receipts_n = n(20_000, SUBMIT_BATCH).div_ceil(SUBMIT_BATCH) * SUBMIT_BATCH;
    let mut per_backend = Vec::new();
    let mut legs_seen = None;
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let (legs, elapsed) = settle(tmp.path(), backend, receipts_n);
        assert!(
            legs_seen.is_none_or(|l| l == legs),
            "same receipts, same legs"
        );
        legs_seen = Some(legs);
        eprintln!(
            "  settlement on {}: {receipts_n} receipts, {legs} legs in {:.3} s",
            backend.name(),
            elapsed.as_secs_f64()
        );
        per_backend.push((backend, elapsed));
    }
    table.push(Measurement {
        what: format!("settlement legs ({receipts_n} receipts in submit_batch({SUBMIT_BATCH}))"),
        count: legs_seen.unwrap_or(0),
        per_backend,
    });
    print_table(&table, scale);
}

fn print_table(rows: &[Measurement], scale: f64) {
    let rate = |count: usize, d: Duration| format!("{:.0}/s", count as f64 / d.as_secs_f64());
    println!(
        "\nshoulders store benchmark (scale {scale}): durable appends, acknowledged after commit\n"
    );
    let head = [
        "measurement",
        "records / legs",
        "SQLite",
        "PostgreSQL",
        "PG / SQLite",
    ];
    let lines: Vec<[String; 5]> = rows
        .iter()
        .map(|m| {
            let get = |b: Backend| {
                m.per_backend
                    .iter()
                    .find(|(x, _)| *x == b)
                    .map(|(_, d)| *d)
                    .expect("both backends measured")
            };
            let (s, p) = (get(Backend::Sqlite), get(Backend::Postgres));
            [
                m.what.clone(),
                m.count.to_string(),
                rate(m.count, s),
                rate(m.count, p),
                format!("{:.2}", s.as_secs_f64() / p.as_secs_f64()),
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for l in &lines {
        for (w, c) in width.iter_mut().zip(l) {
            *w = (*w).max(c.len());
        }
    }
    let fmt = |cells: [String; 5]| {
        cells
            .iter()
            .zip(width)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 0 {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", fmt(head.map(String::from)));
    println!("{}", "-".repeat(width.iter().sum::<usize>() + 2 * 4));
    for l in lines {
        println!("{}", fmt(l));
    }
}
