//! `cargo bench -p shoulders-bench`: durable signed appends, inclusion proofs at one million
//! leaves, and in-memory tree building against `ct-merkle`. Prints one table.
//!
//! Environment:
//! - `SHOULDERS_BENCH_SCALE` (default `1`): multiplies every size, e.g. `0.01` for a smoke run.
//! - `SHOULDERS_BENCH_DIR` (default: the system temp dir): where the temporary ledgers live.
//!   Durable figures are only meaningful on a real disk (not tmpfs, where fsync is free).
//! - `SHOULDERS_BENCH_ONLY` (default: all): comma-separated parts to run, of `disk`, `appends`,
//!   `batched` (only the CPU sample and the `submit_batch` figures of `appends`), `build` and
//!   `proofs` (`proofs` builds the in-memory tree too), e.g. for profiling one part.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use rand::{Rng, SeedableRng};
use rand_core::OsRng;
use sha2_011::Digest as _;
use shoulders_ledger::{init, DataDir, Ledger, Reader};
use shoulders_log::{
    inclusion_proof, leaf_hash, node_hash, tree_root, verify_inclusion, Frontier, Hash,
    MemoryHashes,
};
use shoulders_record::{
    sign_record, Access, ActorKey, ActorRegister, AttributionShare, Body, DataContribute,
    DatasetCreate, IndexState, SignedRecord, UsageReceipt,
};
use shoulders_store::{AppendBatch, SqliteStore, Store, StoreHashes};
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const HANDLE: &str = "bench";
const DATASET: &str = "bench/documents";
/// The document every benchmark contribution names. Content first: each fresh ledger stores it
/// before any record, so every submit pays the admission check (open, hash and measure a small
/// stored blob) without the setup paying one fsync per record.
const DOCUMENT: &str = "A benchmark document: the ledger holds it before any record names it.\n";
/// Records per `submit_batch` call.
const SUBMIT_BATCH: usize = 1000;
/// Records per raw `Store::append` when building the one-million-leaf SQLite store.
const STORE_BATCH: u64 = 50_000;
/// Submitter threads for the concurrent single-append figure.
const CONCURRENT_THREADS: usize = 8;
/// Targets from the issues (durable batched appends: issue 21).
const TARGET_BATCHED_PER_S: f64 = 60_000.0;
const TARGET_PROOF_US: f64 = 50.0;

/// Sizes of one run; every one is the full size times the scale, with a small floor.
struct Sizes {
    scale: f64,
    fsyncs: usize,
    single: usize,
    concurrent: usize,
    batched: usize,
    cpu_sample: usize,
    leaves: u64,
    proofs: usize,
}

impl Sizes {
    fn from_env() -> Self {
        let scale = match std::env::var("SHOULDERS_BENCH_SCALE") {
            Ok(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .unwrap_or_else(|| {
                    panic!("SHOULDERS_BENCH_SCALE must be a positive number, got {s:?}")
                }),
            Err(_) => 1.0,
        };
        let n = |full: usize, floor: usize| ((full as f64 * scale).round() as usize).max(floor);
        Sizes {
            scale,
            fsyncs: n(500, 20),
            single: n(2_000, 20),
            concurrent: n(8_000, CONCURRENT_THREADS * 4),
            // Whole batches only, so every submit_batch carries SUBMIT_BATCH records.
            batched: n(100_000, SUBMIT_BATCH).div_ceil(SUBMIT_BATCH) * SUBMIT_BATCH,
            cpu_sample: n(5_000, 200),
            leaves: n(1_000_000, 1_000) as u64,
            proofs: n(10_000, 200),
        }
    }
}

/// One line of the result table.
struct Row {
    section: &'static str,
    what: String,
    count: String,
    total: String,
    per_op: String,
    rate: String,
    note: String,
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// A timed operation repeated `count` times.
    fn timed(
        &mut self,
        section: &'static str,
        what: impl Into<String>,
        count: u64,
        elapsed: Duration,
        note: impl Into<String>,
    ) {
        let secs = elapsed.as_secs_f64();
        self.rows.push(Row {
            section,
            what: what.into(),
            count: group(count),
            total: format!("{secs:.3} s"),
            per_op: fmt_per_op(secs / count as f64),
            rate: format!("{}/s", group((count as f64 / secs).round() as u64)),
            note: note.into(),
        });
        // Progress on stderr, so a long run shows it is alive.
        let last = self.rows.last().expect("just pushed");
        eprintln!(
            "  [{}] {}: {} in {} ({} per op, {})",
            last.section, last.what, last.count, last.total, last.per_op, last.rate
        );
    }

    fn print(&self, header: &str) {
        let cols = |r: &Row| {
            [
                r.section.to_string(),
                r.what.clone(),
                r.count.clone(),
                r.total.clone(),
                r.per_op.clone(),
                r.rate.clone(),
                r.note.clone(),
            ]
        };
        let head = [
            "section",
            "measurement",
            "ops",
            "total",
            "per op",
            "rate",
            "note",
        ]
        .map(String::from);
        let mut width = head.clone().map(|h| h.len());
        for r in &self.rows {
            for (w, c) in width.iter_mut().zip(cols(r)) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |c: [String; 7]| {
            let mut out = String::new();
            for (i, (cell, w)) in c.iter().zip(width).enumerate() {
                let pad = w - cell.chars().count();
                // Numbers right-aligned, words left-aligned.
                if (2..=5).contains(&i) {
                    let _ = write!(out, "{}{cell}  ", " ".repeat(pad));
                } else {
                    let _ = write!(out, "{cell}{}  ", " ".repeat(pad));
                }
            }
            out.trim_end().to_string()
        };
        let mut out = String::new();
        let _ = writeln!(out, "\n{header}\n");
        let _ = writeln!(out, "{}", line(head));
        let total: usize = width.iter().sum::<usize>() + 2 * (width.len() - 1);
        let _ = writeln!(out, "{}", "-".repeat(total));
        // Sections in numeric order (the proofs run after the build, whose tree they reuse).
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        rows.sort_by_key(|r| r.section.as_bytes()[0]);
        let mut last_section = "";
        for r in rows {
            if !last_section.is_empty() && r.section != last_section {
                let _ = writeln!(out);
            }
            last_section = r.section;
            let _ = writeln!(out, "{}", line(cols(r)));
        }
        print!("{out}");
        let _ = std::io::stdout().flush();
    }
}

/// `1234567` as `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let head = match digits.len() % 3 {
        0 => 3,
        r => r,
    };
    let mut out = digits[..head].to_string();
    for chunk in digits.as_bytes()[head..].chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(chunk).expect("ASCII digits"));
    }
    out
}

fn fmt_per_op(secs: f64) -> String {
    if secs >= 1e-3 {
        format!("{:.3} ms", secs * 1e3)
    } else if secs >= 1e-6 {
        format!("{:.2} µs", secs * 1e6)
    } else {
        format!("{:.0} ns", secs * 1e9)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Leaf `i` of the Merkle benchmarks: small (8 to 15 bytes) and distinct.
fn leaf_bytes(i: u64) -> Vec<u8> {
    let mut out = i.to_be_bytes().to_vec();
    out.extend(std::iter::repeat_n(0x5a, (i % 8) as usize));
    out
}

/// CPU time used so far by this process, all threads (user + system), from `/proc/self/stat`
/// in clock ticks of 1/100 s; `None` off Linux. Unlike wall time it does not grow when other
/// processes take the cores, so it gives a contention-independent cost per record.
fn cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// "cpu N µs/record" plus the ceiling that cost allows on this machine's cores.
fn cpu_note(cpu_before: Option<f64>, records: u64) -> String {
    match (cpu_before, cpu_secs()) {
        (Some(a), Some(b)) if b > a => {
            let per = (b - a) / records as f64;
            format!(
                "cpu {:.1} µs/rec: at that cost {} cores give <= {}/s",
                per * 1e6,
                threads(),
                group((threads() as f64 / per) as u64)
            )
        }
        _ => String::new(),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Sign `count` distinct `data.contribute` records (ids `<prefix>-<i>`) of [`DOCUMENT`], on
/// every core.
/// `count` signed `usage.receipt` records with four attribution entries each.
fn sign_receipts(key: &ActorKey, count: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| {
            let i = i as u64;
            let attribution = (0..4)
                .map(|k| AttributionShare {
                    dataset_id: DATASET.into(),
                    contribution: 1000 + i * 7 + k * 5,
                    ppm: [400_000, 300_000, 200_000, 100_000][k as usize],
                })
                .collect();
            let body = Body::UsageReceipt(UsageReceipt {
                usage_id: format!("u{i}"),
                model_id: "tuner/chat".into(),
                payer: "payer".into(),
                use_category: "chat".into(),
                input_tokens: 50,
                output_tokens: 100 + i % 900,
                output_hash: format!("sha256:{i:064x}"),
                attribution,
                evidence_hash: None,
                max_royalty_bps: None,
                index_state: Some(IndexState::single(100_000)),
            });
            sign_record(
                key,
                shoulders_bench::BENCH_LOG,
                &format!("r-{i}"),
                1_700_000_000_000 + i,
                body,
            )
            .expect("benchmark records are valid")
            .into_parts()
            .1
        })
        .collect()
}

fn sign_contributions(key: &ActorKey, prefix: &str, count: usize) -> Vec<Vec<u8>> {
    let hash = sha2_011::Sha256::digest(DOCUMENT.as_bytes());
    let content_hash = format!("sha256:{}", hex(&hash));
    let sign = |i: usize| -> Vec<u8> {
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
            1_700_000_000_000 + i as u64,
            body,
        )
        .expect("benchmark records are valid")
        .into_parts()
        .1
    };
    let workers = threads().max(1);
    let per = count.div_ceil(workers).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..count)
            .step_by(per)
            .map(|start| {
                let end = (start + per).min(count);
                s.spawn(move || (start..end).map(sign).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signing threads do not panic"))
            .collect()
    })
}

/// A fresh ledger with the benchmark actor registered and an open dataset created.
fn fresh_ledger(base: &Path, name: &str, key: &ActorKey) -> (Ledger, PathBuf) {
    let root = base.join(name);
    let dir = DataDir::new(&root);
    init(&dir, shoulders_bench::BENCH_LOG, &mut OsRng).expect("init ledger");
    let ledger = Ledger::open(&dir).expect("open ledger");
    ledger
        .content()
        .put(DOCUMENT.as_bytes())
        .expect("store the benchmark document");
    let setup = [
        Body::ActorRegister(ActorRegister {
            handle: HANDLE.into(),
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
        ledger
            .submit(rec.bytes().to_vec())
            .expect("setup record accepted");
    }
    (ledger, root)
}

fn expect_appended(result: Result<shoulders_ledger::Appended, shoulders_ledger::LedgerError>) {
    match result {
        Ok(a) if !a.duplicate => {}
        Ok(a) => panic!(
            "record {} was a duplicate; the figure would be wrong",
            a.index
        ),
        Err(e) => panic!("a benchmark record was refused: {} ({e})", e.code()),
    }
}

/// Raw disk baseline: `write` 4 KiB + `fdatasync`, the floor for a durable commit.
fn bench_fsync(table: &mut Table, base: &Path, count: usize) {
    use std::os::unix::fs::FileExt;
    let path = base.join("fsync-probe");
    let file = std::fs::File::create(&path).expect("create fsync probe");
    let block = [0xa5u8; 4096];
    let start = Instant::now();
    for i in 0..count {
        file.write_all_at(&block, (i as u64 % 16) * 4096)
            .expect("write probe");
        file.sync_data().expect("fdatasync probe");
    }
    table.timed(
        "0 disk",
        "write 4 KiB + fdatasync (floor of one commit)",
        count as u64,
        start.elapsed(),
        "",
    );
    drop(file);
    let _ = std::fs::remove_file(path);
}

/// `with_single`: also the one-record-per-submit figures (`false` profiles the batched path alone).
fn bench_appends(table: &mut Table, base: &Path, sizes: &Sizes, with_single: bool) {
    let key = ActorKey::generate(&mut OsRng);
    let (single_count, concurrent_count) = if with_single {
        (sizes.single, sizes.concurrent)
    } else {
        (0, 0)
    };
    let total = single_count + concurrent_count + 2 * sizes.batched;
    eprintln!(
        "signing {} data.contribute records on {} threads ...",
        group(total as u64),
        threads()
    );
    let start = Instant::now();
    let single = sign_contributions(&key, "single", single_count);
    let concurrent = sign_contributions(&key, "concurrent", concurrent_count);
    let batched = sign_contributions(&key, "batched", sizes.batched);
    let batched2 = sign_contributions(&key, "batched2", sizes.batched);
    let elapsed = start.elapsed();
    let avg_len = batched.iter().map(Vec::len).sum::<usize>() / batched.len();
    table.timed(
        "1 setup",
        format!("sign data.contribute records ({} threads)", threads()),
        total as u64,
        elapsed,
        format!("~{avg_len} bytes each; not part of the append figures"),
    );

    // What every submitted record costs on the submitting side, on one thread: this bounds
    // what any number of submitters can reach on this machine's cores.
    let sample: Vec<Vec<u8>> = batched.iter().take(sizes.cpu_sample).cloned().collect();
    let n = sample.len() as u64;
    let start = Instant::now();
    let decoded: Vec<SignedRecord> = sample
        .into_iter()
        .map(|b| SignedRecord::decode(b).expect("decodes"))
        .collect();
    let decode = start.elapsed();
    table.timed(
        "2 batched",
        "cpu: SignedRecord::decode (parse, schema, canonical check), 1 thread",
        n,
        decode,
        "",
    );
    // The settle path's record: a receipt with four attribution entries (as the settle
    // bench's), whose decode runs on the submitting side too.
    let receipts = sign_receipts(&key, sizes.cpu_sample);
    let receipt_len = receipts.iter().map(Vec::len).sum::<usize>() / receipts.len().max(1);
    let start = Instant::now();
    for bytes in receipts {
        black_box(SignedRecord::decode(bytes).expect("decodes"));
    }
    table.timed(
        "2 batched",
        "cpu: SignedRecord::decode of a usage.receipt (4 attribution entries), 1 thread",
        n,
        start.elapsed(),
        format!("~{receipt_len} bytes each"),
    );
    let mut singles = decoded.clone();
    let start = Instant::now();
    for rec in &mut singles {
        rec.verify_signature().expect("verifies");
    }
    let verify = start.elapsed();
    table.timed(
        "2 batched",
        "cpu: SignedRecord::verify_signature (one at a time), 1 thread",
        n,
        verify,
        "",
    );
    let mut batched_sigs = decoded.clone();
    let start = Instant::now();
    for chunk in batched_sigs.chunks_mut(256) {
        for v in SignedRecord::verify_signatures(chunk) {
            v.expect("verifies");
        }
    }
    let verify = start.elapsed();
    let per_record = (decode + verify).as_secs_f64() / n as f64;
    table.timed(
        "2 batched",
        "cpu: SignedRecord::verify_signatures (batches of 256), 1 thread",
        n,
        verify,
        format!(
            "decode+verify alone caps {} cores at ~{}/s",
            threads(),
            group((threads() as f64 / per_record) as u64)
        ),
    );

    // The previous rule, for comparison (not library code): ed25519-dalek's `verify_strict`,
    // key decompressed once, payloads prebuilt.
    let payloads: Vec<Vec<u8>> = decoded
        .iter()
        .map(|r| r.record().signing_payload())
        .collect();
    let signatures: Vec<ed25519_dalek::Signature> = decoded
        .iter()
        .map(|r| ed25519_dalek::Signature::from_bytes(&r.record().signature))
        .collect();
    let start = Instant::now();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.public().0).expect("valid key");
    for (payload, sig) in payloads.iter().zip(&signatures) {
        vk.verify_strict(payload, sig).expect("verifies");
    }
    table.timed(
        "2 batched",
        "cpu reference: ed25519-dalek verify_strict (the previous rule), 1 thread",
        n,
        start.elapsed(),
        "not library code; payloads prebuilt",
    );
    drop((decoded, singles, batched_sigs, payloads, signatures));

    if with_single {
        bench_singles(table, base, &key, single, concurrent);
    }
    // 2a. submit_batch of SUBMIT_BATCH pre-signed records, one caller.
    bench_batched(table, base, &key, "batched", batched, 1);
    // 2b. The same with two callers, so the signature checks of one batch also overlap the
    // commit of the other.
    bench_batched(table, base, &key, "batched2", batched2, 2);
}

fn bench_singles(
    table: &mut Table,
    base: &Path,
    key: &ActorKey,
    single: Vec<Vec<u8>>,
    concurrent: Vec<Vec<u8>>,
) {
    // 1a. One submitter, one record per submit: every record waits for its own commit.
    bench_submits(
        table,
        base,
        key,
        "single",
        single,
        1,
        "verify + fold + commit each",
    );
    // 1b. Many submitters, one record each: group commit merges whatever is queued.
    bench_submits(
        table,
        base,
        key,
        "concurrent",
        concurrent,
        CONCURRENT_THREADS,
        "group commit",
    );
}

/// Durable single-record `submit` throughput: `records` split into `threads` contiguous parts,
/// each submitted one record at a time by its own thread.
fn bench_submits(
    table: &mut Table,
    base: &Path,
    key: &ActorKey,
    name: &str,
    records: Vec<Vec<u8>>,
    threads: usize,
    note: &str,
) {
    let (ledger, _) = fresh_ledger(base, name, key);
    let n = records.len() as u64;
    let per = records.len().div_ceil(threads).max(1);
    let mut parts: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut rest = records.into_iter();
    loop {
        let part: Vec<Vec<u8>> = rest.by_ref().take(per).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    let start = Instant::now();
    std::thread::scope(|s| {
        for part in parts {
            let ledger = &ledger;
            s.spawn(move || {
                for bytes in part {
                    expect_appended(ledger.submit(bytes));
                }
            });
        }
    });
    let elapsed = start.elapsed();
    assert_eq!(ledger.size(), 2 + n);
    drop(ledger);
    let who = if threads == 1 {
        "1 thread".to_string()
    } else {
        format!("{threads} threads")
    };
    table.timed(
        "1 appends",
        format!("durable signed submit, {who}"),
        n,
        elapsed,
        note,
    );
}

/// Durable `submit_batch` throughput: `records` in batches of `SUBMIT_BATCH`, dealt round-robin
/// to `callers` threads.
fn bench_batched(
    table: &mut Table,
    base: &Path,
    key: &ActorKey,
    name: &str,
    records: Vec<Vec<u8>>,
    callers: usize,
) {
    let (ledger, _) = fresh_ledger(base, name, key);
    let n = records.len() as u64;
    let mut lanes: Vec<Vec<Vec<Vec<u8>>>> = (0..callers).map(|_| Vec::new()).collect();
    for (i, chunk) in records.chunks(SUBMIT_BATCH).enumerate() {
        lanes[i % callers].push(chunk.to_vec());
    }
    drop(records);
    let cpu = cpu_secs();
    let start = Instant::now();
    std::thread::scope(|s| {
        for lane in lanes {
            let ledger = &ledger;
            s.spawn(move || {
                for batch in lane {
                    for result in ledger.submit_batch(batch) {
                        expect_appended(result);
                    }
                }
            });
        }
    });
    let elapsed = start.elapsed();
    assert_eq!(ledger.size(), 2 + n);
    drop(ledger);
    let note = cpu_note(cpu, n);
    let rate = n as f64 / elapsed.as_secs_f64();
    let who = if callers == 1 {
        "1 caller".to_string()
    } else {
        format!("{callers} callers")
    };
    table.timed(
        "2 batched",
        format!("durable signed submit_batch({SUBMIT_BATCH}), {who}"),
        n,
        elapsed,
        format!(
            "{}; {note}",
            verdict(rate >= TARGET_BATCHED_PER_S, "target >= 60,000/s")
        ),
    );
}

fn verdict(ok: bool, target: &str) -> String {
    format!("{target}: {}", if ok { "met" } else { "MISSED" })
}

/// Tree building in memory: ours against ct-merkle, same leaves. Returns our tree for the
/// proof benchmark.
fn bench_build(table: &mut Table, leaves: u64) -> MemoryHashes {
    let data: Vec<Vec<u8>> = (0..leaves).map(leaf_bytes).collect();

    // Floor: the SHA-256 work any RFC 6962 tree of this size needs (n leaf + n-1 node hashes).
    let start = Instant::now();
    let mut acc = shoulders_log::EMPTY_HASH;
    for (i, d) in data.iter().enumerate() {
        let l = leaf_hash(d);
        acc = if i == 0 { l } else { node_hash(acc, l) };
    }
    black_box(acc);
    table.timed(
        "4 build",
        "floor: leaf_hash + node_hash per leaf (sha2 0.10)",
        leaves,
        start.elapsed(),
        "2n-1 SHA-256 calls",
    );

    let start = Instant::now();
    let mut mem = MemoryHashes::new();
    for d in &data {
        mem.append(d);
    }
    let our_root = mem.root();
    table.timed(
        "4 build",
        "ours: MemoryHashes::append + root",
        leaves,
        start.elapsed(),
        format!(
            "keeps all {} stored hashes",
            group(mem.stored().len() as u64)
        ),
    );

    let start = Instant::now();
    let mut frontier = Frontier::new();
    for d in &data {
        black_box(frontier.append(leaf_hash(d)));
    }
    let frontier_root = frontier.root();
    table.timed(
        "4 build",
        "ours: leaf_hash + Frontier::append + root",
        leaves,
        start.elapsed(),
        "right edge only",
    );
    assert_eq!(frontier_root, our_root, "frontier and memory roots differ");

    let owned = data.clone();
    let start = Instant::now();
    let mut ct = MemoryBackedTree::<sha2_011::Sha256, Vec<u8>>::new();
    for d in owned {
        ct.push(d);
    }
    let ct_root = ct.root();
    table.timed(
        "4 build",
        "ct-merkle 0.3: MemoryBackedTree::push + root",
        leaves,
        start.elapsed(),
        "sha2 0.11; stores leaves too",
    );
    assert_eq!(
        ct_root.as_bytes().as_slice(),
        &our_root.0[..],
        "ct-merkle and shoulders disagree on the root"
    );
    drop(ct);
    mem
}

fn bench_proofs(table: &mut Table, base: &Path, mem: &MemoryHashes, count: usize) {
    let size = mem.size();
    let root = mem.root();
    let mut rng = rand::rngs::StdRng::seed_from_u64(6962);
    let indexes: Vec<u64> = (0..count).map(|_| rng.gen_range(0..size)).collect();
    let label = group(size);

    // 3a. In memory.
    let start = Instant::now();
    let proofs: Vec<Vec<Hash>> = indexes
        .iter()
        .map(|&i| inclusion_proof(i, size, mem).expect("in-memory proof"))
        .collect();
    let elapsed = start.elapsed();
    let avg_len = proofs.iter().map(Vec::len).sum::<usize>() as f64 / proofs.len() as f64;
    table.timed(
        "3 proofs",
        format!("inclusion_proof, MemoryHashes, {label} leaves"),
        count as u64,
        elapsed,
        format!("avg {avg_len:.1} hashes"),
    );
    let leaves: Vec<Hash> = indexes
        .iter()
        .map(|&i| mem.leaf(i).expect("leaf exists"))
        .collect();
    let start = Instant::now();
    for ((proof, &i), &leaf) in proofs.iter().zip(&indexes).zip(&leaves) {
        verify_inclusion(proof, i, size, leaf, root).expect("proof verifies");
    }
    table.timed(
        "3 proofs",
        format!("verify_inclusion, {label} leaves"),
        count as u64,
        start.elapsed(),
        "",
    );

    // 3b. From SQLite. A ledger of a million signed records takes long to build, so the store
    // is filled with the raw leaves directly (same Merkle hashes the writer would write). It is
    // made with `init`, which creates the store with `SqliteStore::create`, so a `Reader` can open
    // it too; `Ledger::open` would refuse it (the leaves are not records).
    let root_dir = base.join("proofs");
    let dir = DataDir::new(&root_dir);
    init(&dir, "bench.shoulders.local/proofs", &mut OsRng).expect("init proof store");
    let mut store = SqliteStore::open(&dir.database()).expect("open proof store");
    let mut frontier = Frontier::new();
    let start = Instant::now();
    let mut first = 0u64;
    while first < size {
        let end = (first + STORE_BATCH).min(size);
        let records: Vec<Vec<u8>> = (first..end).map(leaf_bytes).collect();
        let mut hashes = Vec::new();
        for r in &records {
            hashes.extend(frontier.append(leaf_hash(r)));
        }
        store
            .append(&AppendBatch {
                state: None,
                first_index: first,
                records: records.iter().map(Vec::as_slice).collect(),
                hashes,
            })
            .expect("raw append");
        first = end;
    }
    table.timed(
        "3 proofs",
        format!(
            "build SQLite store: Store::append raw leaves ({} per txn)",
            group(STORE_BATCH)
        ),
        size,
        start.elapsed(),
        "setup, no signatures",
    );
    let store_hashes = StoreHashes(&store);
    assert_eq!(
        tree_root(size, &store_hashes).expect("store root"),
        root,
        "SQLite store and memory disagree on the root"
    );

    // Warm-up pass over other indexes, so both runs below see a warm OS page cache; the
    // SQLite page cache (2 MB by default) cannot hold the hashes table (~90 MB at a million leaves) anyway.
    for _ in 0..count.min(1_000) {
        black_box(inclusion_proof(rng.gen_range(0..size), size, &store_hashes).expect("proof"));
    }
    let start = Instant::now();
    let sql_proofs: Vec<Vec<Hash>> = indexes
        .iter()
        .map(|&i| inclusion_proof(i, size, &store_hashes).expect("store proof"))
        .collect();
    let elapsed = start.elapsed();
    assert_eq!(sql_proofs, proofs, "SQLite and memory proofs differ");
    let us = elapsed.as_secs_f64() * 1e6 / count as f64;
    table.timed(
        "3 proofs",
        format!("inclusion_proof, StoreHashes(SqliteStore), {label} leaves"),
        count as u64,
        elapsed,
        verdict(us < TARGET_PROOF_US, "target < 50 µs"),
    );
    drop(store);

    // The same through the read API a server uses (read-only connection, base64 output).
    let reader = Reader::open(&dir).expect("open reader");
    for _ in 0..count.min(1_000) {
        black_box(
            reader
                .inclusion_proof(rng.gen_range(0..size), size)
                .expect("proof"),
        );
    }
    let start = Instant::now();
    for &i in &indexes {
        black_box(reader.inclusion_proof(i, size).expect("reader proof"));
    }
    let elapsed = start.elapsed();
    let us = elapsed.as_secs_f64() * 1e6 / count as f64;
    table.timed(
        "3 proofs",
        format!("Reader::inclusion_proof (read-only conn), {label} leaves"),
        count as u64,
        elapsed,
        verdict(us < TARGET_PROOF_US, "target < 50 µs"),
    );
    drop(reader);
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument has no meaning here.
    let sizes = Sizes::from_env();
    let base = match std::env::var_os("SHOULDERS_BENCH_DIR") {
        Some(d) => tempfile::Builder::new()
            .prefix("shoulders-bench-")
            .tempdir_in(d),
        None => tempfile::Builder::new()
            .prefix("shoulders-bench-")
            .tempdir(),
    }
    .expect("create benchmark temp dir");
    let run_start = Instant::now();
    let load_start = load_average();
    eprintln!(
        "shoulders-bench: scale {}, {} cores, temp dir {}",
        sizes.scale,
        threads(),
        base.path().display()
    );
    let only = std::env::var("SHOULDERS_BENCH_ONLY").unwrap_or_default();
    let wanted = |part: &str| only.trim().is_empty() || only.split(',').any(|p| p.trim() == part);
    let mut table = Table::default();
    if wanted("disk") {
        bench_fsync(&mut table, base.path(), sizes.fsyncs);
    }
    if wanted("appends") || wanted("batched") {
        bench_appends(&mut table, base.path(), &sizes, wanted("appends"));
    }
    if wanted("build") || wanted("proofs") {
        let mem = bench_build(&mut table, sizes.leaves);
        if wanted("proofs") {
            bench_proofs(&mut table, base.path(), &mem, sizes.proofs);
        }
    }
    let header = format!(
        "shoulders-bench (scale {}; {} cores available; load average {} at start, {} at end; {}; \
         temp dir {}; run took {:.1} s)",
        sizes.scale,
        threads(),
        load_start,
        load_average(),
        if cfg!(debug_assertions) {
            "DEBUG build"
        } else {
            "optimised build"
        },
        base.path().display(),
        run_start.elapsed().as_secs_f64()
    );
    table.print(&header);
    println!(
        "\nDurable = acknowledged only after the SQLite WAL commit (synchronous=FULL). Rates are \
         end to end, signature checks included; records were signed before timing."
    );
}
