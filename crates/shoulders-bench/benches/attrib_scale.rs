//! The attribution benchmark at scale (issue 16), side by side with infini-gram's engine over
//! the same index files. `cargo bench -p shoulders-bench --bench attrib_scale` (needs the
//! release `shoulders` binary: `cargo build --release -p shoulders-cli`).
//!
//! * `SHOULDERS_BENCH_TOKENS` corpus size in bytes (= tokens), default 1,000,000,000;
//! * `SHOULDERS_BENCH_DIR` where the work directory goes (~12 bytes per token at 1B; removed
//!   afterwards unless `SHOULDERS_BENCH_KEEP=1`);
//! * `SHOULDERS_IG_PYTHON` an interpreter with infini-gram 2.6.0 (default `/tmp/igvenv/bin/python`),
//!   running `bench/attrib_scale_ig.py`; without it that column says n/a;
//! * `SHOULDERS_BENCH_JSON` where the table goes as JSON (default `attrib_scale.json` in
//!   `SHOULDERS_BENCH_DIR`, or the current directory).
//!
//! Steps: a deterministic corpus from the machine's own documentation (licences, copyright
//! files, changelogs, man pages), cut into sentences, reshuffled and mutated with a seeded
//! PRNG, in documents of 2-64 KiB, streamed into a ledger (content first, then signed
//! `data.contribute` records in batches); `shoulders index build` as a child (wall time, peak
//! RSS); the index's size on disk; `count` in-process for both engines (our `Index::count`,
//! infini-gram's Python engine), cold (page cache dropped) and warm; 512-byte attribution over
//! HTTP for ours (`POST /api/attribute` on `shoulders serve --preload-index`) and in-process
//! `attribute` for infini-gram; the server's memory; and the time a contribution sent over HTTP
//! takes to become attributable. Figures only: nothing here asserts a target.

use serde_json::{json, Value};
use shoulders_attrib::index::Index;
use shoulders_attrib::normalize::normalize;
use shoulders_bench::serve::{release_binary, serve_with};
use shoulders_bench::settle::World;
use shoulders_ledger::{DataDir, Ledger};
use shoulders_record::{ActorKey, Kind};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DATASET: &str = "c0/corpus";
/// Contributors the documents are spread over.
const CONTRIBUTORS: usize = 50;
/// Source text read from the machine's documentation, at most.
const MATERIAL_BYTES: usize = 48 << 20;
/// Documents kept in memory to draw queries from.
const SAMPLE_DOCS: usize = 400;
const COUNT_QUERIES: usize = 2_000;
const NOVEL_COUNT_QUERIES: usize = 200;
const QUOTE_QUERIES: usize = 200;
const NOVEL_QUERIES: usize = 50;
const QUERY_BYTES: usize = 512;
/// Probability (per mille) that a word is replaced by one drawn from the material's own words.
const SUBSTITUTE_PER_MILLE: u64 = 200;
/// Probability (per mille) that a sentence is the head of one and the tail of another.
const RECOMBINE_PER_MILLE: u64 = 250;
/// How long the new contribution may take to be credited without a rebuild before the bench
/// falls back to timing `index build`.
const INCREMENTAL_WAIT: Duration = Duration::from_secs(15);

/// PCG-style generator: deterministic across platforms.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let x = self.0;
        (x ^ (x >> 29)).wrapping_mul(0xbf58476d1ce4e5b9) >> 16
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

// ---------------------------------------------------------------------------------------------
// Corpus

/// Files of real text on this machine, in a fixed order.
fn sources() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut list = |dir: &str, keep: &dyn Fn(&Path) -> bool, depth: usize| {
        let mut found = Vec::new();
        walk(Path::new(dir), depth, &mut found);
        found.retain(|p| keep(p));
        found.sort();
        out.extend(found);
    };
    list("/usr/share/common-licenses", &|_| true, 1);
    list(
        "/usr/share/doc",
        &|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name == "copyright"
                || name.starts_with("changelog")
                || name.starts_with("NEWS")
                || name.starts_with("README")
        },
        3,
    );
    list(
        "/usr/share/man",
        &|p| p.extension().is_some_and(|e| e == "gz"),
        2,
    );
    out
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() && depth > 1 {
            walk(&e.path(), depth - 1, out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

/// A file's text: gunzipped when `.gz`, troff requests and escapes stripped for man pages.
fn read_text(path: &Path) -> Option<String> {
    let raw = std::fs::read(path).ok()?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .take(4 << 20)
            .read_to_end(&mut out)
            .ok()?;
        out
    } else {
        raw
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if path.starts_with("/usr/share/man") {
        Some(strip_troff(&text))
    } else {
        Some(text)
    }
}

/// Man page source → its words: requests lose their macro name, escapes are dropped.
fn strip_troff(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = if let Some(rest) = line.strip_prefix(['.', '\'']) {
            if rest.starts_with('\\') {
                continue; // a comment
            }
            match rest.split_once(' ') {
                Some((_, args)) => args,
                None => {
                    out.push('\n'); // a bare request: a paragraph break
                    continue;
                }
            }
        } else {
            line
        };
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                if c != '"' {
                    out.push(c);
                }
                continue;
            }
            match chars.next() {
                Some('f') | Some('*') => {
                    chars.next();
                }
                Some('(') => {
                    chars.next();
                    chars.next();
                }
                Some('-') => out.push('-'),
                Some('e') => out.push('\\'),
                _ => {}
            }
        }
        out.push('\n');
    }
    out
}

/// Sentences of the material (paragraphs deduplicated) and its words, one entry per
/// occurrence, so a word drawn from it follows the material's own frequencies.
struct Material {
    sentences: Vec<String>,
    vocab: Vec<String>,
    occurrences: Vec<u32>,
    bytes: usize,
}

fn material() -> Material {
    let mut seen = HashSet::new();
    let mut sentences = Vec::new();
    let mut bytes = 0;
    for path in sources() {
        if bytes >= MATERIAL_BYTES {
            break;
        }
        let Some(text) = read_text(&path) else {
            continue;
        };
        for para in text.split("\n\n") {
            let para = para.split_whitespace().collect::<Vec<_>>().join(" ");
            if para.len() < 40 {
                continue;
            }
            let mut h = std::collections::hash_map::DefaultHasher::new();
            para.hash(&mut h);
            if !seen.insert(h.finish()) {
                continue; // the same licence text in a hundred copyright files: once
            }
            bytes += para.len();
            for s in para.split_inclusive(". ") {
                let s = s.trim();
                if s.len() >= 8 {
                    sentences.push(s.chars().take(600).collect::<String>());
                }
            }
        }
    }
    let mut index = std::collections::HashMap::new();
    let mut vocab = Vec::new();
    let mut occurrences = Vec::new();
    for s in &sentences {
        for w in s.split(' ') {
            let id = *index.entry(w.to_string()).or_insert_with(|| {
                vocab.push(w.to_string());
                vocab.len() as u32 - 1
            });
            occurrences.push(id);
        }
    }
    assert!(
        sentences.len() > 1000,
        "too little documentation on this machine"
    );
    Material {
        sentences,
        vocab,
        occurrences,
        bytes,
    }
}

impl Material {
    fn word(&self, rng: &mut Rng) -> &str {
        &self.vocab[self.occurrences[rng.below(self.occurrences.len() as u64) as usize] as usize]
    }

    /// One sentence, mutated: words substituted, digits changed, sometimes another's tail.
    fn sentence(&self, at: usize, rng: &mut Rng, out: &mut String) {
        let s = &self.sentences[at % self.sentences.len()];
        let mut words: Vec<&str> = s.split(' ').collect();
        if rng.chance(RECOMBINE_PER_MILLE) {
            let other = &self.sentences[rng.below(self.sentences.len() as u64) as usize];
            let tail: Vec<&str> = other.split(' ').collect();
            words.truncate(words.len().div_ceil(2));
            words.extend_from_slice(&tail[tail.len() / 2..]);
        }
        for w in words {
            if w.bytes().any(|b| b.is_ascii_digit()) {
                for c in w.chars() {
                    out.push(if c.is_ascii_digit() {
                        char::from(b'0' + rng.below(10) as u8)
                    } else {
                        c
                    });
                }
            } else if rng.chance(SUBSTITUTE_PER_MILLE) {
                out.push_str(self.word(rng));
            } else {
                out.push_str(w);
            }
            out.push(' ');
        }
    }

    /// One document of 2-64 KiB (log-uniform): runs of 1-8 consecutive sentences from random
    /// places, each run a paragraph.
    fn document(&self, rng: &mut Rng) -> String {
        let target = (2048.0 * 32f64.powf(rng.below(1 << 20) as f64 / (1 << 20) as f64)) as usize;
        let mut doc = String::with_capacity(target + 1024);
        while doc.len() < target {
            let at = rng.below(self.sentences.len() as u64) as usize;
            for k in 0..1 + rng.below(8) as usize {
                self.sentence(at + k, rng, &mut doc);
            }
            doc.pop();
            doc.push_str("\n\n");
        }
        doc
    }

    /// Text no document holds: words of the material in a fresh random order.
    fn novel(&self, rng: &mut Rng, len: usize) -> String {
        let mut text = String::new();
        while text.len() < len {
            text.push_str(self.word(rng));
            text.push(' ');
        }
        truncate(&text, len).to_string()
    }
}

/// The longest prefix of `s` of at most `len` bytes that ends on a character boundary.
fn truncate(s: &str, len: usize) -> &str {
    let mut end = len.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// ---------------------------------------------------------------------------------------------
// Ledger load

/// Contributions submitted at once (their documents are stored first, by [`PUT_THREADS`]).
const LOAD_BATCH: usize = 1_000;
/// Each stored document is fsynced: several at a time keep the disk busy.
const PUT_THREADS: usize = 8;

/// Content first: store the batch's documents (in parallel), then submit its records.
fn store_and_submit(ledger: &Ledger, docs: &mut Vec<String>, batch: &mut Vec<Vec<u8>>) {
    let store = ledger.content();
    std::thread::scope(|scope| {
        for chunk in docs.chunks(docs.len().div_ceil(PUT_THREADS).max(1)) {
            scope.spawn(move || {
                for d in chunk {
                    store.put(d.as_bytes()).unwrap();
                }
            });
        }
    });
    docs.clear();
    for r in ledger.submit_batch(std::mem::take(batch)) {
        r.unwrap();
    }
}

struct Loaded {
    world: World,
    documents: usize,
    tokens: usize,
    samples: Vec<String>,
    generate_s: f64,
    load_s: f64,
}

fn contributor(i: usize) -> String {
    format!("c{}", i % CONTRIBUTORS)
}

/// A ledger holding one open dataset whose contributions are the corpus's documents.
fn load_ledger(dir: &DataDir, material: &Material, tokens: usize) -> Loaded {
    shoulders_ledger::init_with(
        dir,
        shoulders_bench::BENCH_LOG,
        Some(&shoulders_ledger::OperatorInit {
            handle: "operator".into(),
            name: "Operator".into(),
            protocol_fee_bps: 250,
            ts_ms: 1_800_000_000_000,
        }),
        &mut rand_core::OsRng,
    )
    .unwrap();
    let ledger = Ledger::open(dir).unwrap();
    let operator = ActorKey::from_file_text(
        &std::fs::read_to_string(dir.root().join("operator.key")).unwrap(),
    )
    .unwrap();
    let mut world = World::new(operator);
    let mut setup = Vec::new();
    for i in 0..CONTRIBUTORS {
        let c = contributor(i);
        setup.push(world.sign(
            &c,
            Kind::ActorRegister,
            json!({"handle": c, "name": c, "payout_address": format!("acct:{c}")}),
        ));
    }
    setup.push(world.sign(
        "c0",
        Kind::DatasetCreate,
        json!({"dataset_id": DATASET, "name": "scale corpus", "access": "open"}),
    ));
    for r in ledger.submit_batch(setup.iter().map(|r| r.bytes().to_vec()).collect()) {
        r.unwrap();
    }
    // Sample every `stride`th document for queries (the mean document is ~18 KiB).
    let stride = (tokens / 18_000 / SAMPLE_DOCS).max(1);
    let mut rng = Rng(0x05ee_d0f5_ca1e);
    let (mut made, mut documents) = (0, 0);
    let (mut generate, mut load) = (Duration::ZERO, Duration::ZERO);
    let mut samples = Vec::new();
    let mut docs = Vec::new();
    let mut batch = Vec::new();
    while made < tokens {
        let t = Instant::now();
        let doc = material.document(&mut rng);
        let record = world.sign(
            &contributor(documents),
            Kind::DataContribute,
            json!({"dataset_id": DATASET, "content_hash": shoulders_ledger::content_ref(doc.as_bytes()),
                   "byte_size": doc.len(), "token_count": doc.len()}),
        );
        generate += t.elapsed();
        made += doc.len();
        if documents % stride == 0 && samples.len() < SAMPLE_DOCS {
            samples.push(doc.clone());
        }
        documents += 1;
        docs.push(doc);
        batch.push(record.bytes().to_vec());
        if batch.len() == LOAD_BATCH || made >= tokens {
            let t = Instant::now();
            store_and_submit(&ledger, &mut docs, &mut batch);
            load += t.elapsed();
        }
        if documents % 10_000 == 0 {
            eprintln!("  {documents} documents, {} MB", made >> 20);
        }
    }
    drop(ledger);
    Loaded {
        world,
        documents,
        tokens: made,
        samples,
        generate_s: generate.as_secs_f64(),
        load_s: load.as_secs_f64(),
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// Run `cmd` to completion, sampling its peak RSS (`VmHWM`) every 10 ms; (wall s, peak KiB).
fn run_measured(cmd: &mut Command) -> (f64, u64) {
    let t = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(kib) = proc_status(&status_path, "VmHWM") {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{cmd:?} failed: {status}");
            return (t.elapsed().as_secs_f64(), peak);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One `kB` field of a `/proc/PID/status` file.
fn proc_status(path: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Evict the page cache (we run as root); says how, or why not.
fn drop_caches() -> String {
    let _ = Command::new("sync").status();
    match std::fs::write("/proc/sys/vm/drop_caches", "3\n") {
        Ok(()) => "drop_caches".into(),
        Err(e) => format!("not evicted ({e})"),
    }
}

/// The one segment directory under a dataset's index directory after a full build.
fn only_segment(index_dir: &Path) -> PathBuf {
    let segs: Vec<PathBuf> = std::fs::read_dir(index_dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("seg-"))
        })
        .collect();
    assert_eq!(segs.len(), 1, "one segment after a full build: {segs:?}");
    segs.into_iter().next().unwrap()
}

fn dir_bytes(path: &Path) -> u64 {
    let mut files = Vec::new();
    walk(path, 16, &mut files);
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

/// (p50, p99) of a list of times.
fn p50_p99(v: &[f64]) -> (f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let at = |q: usize| v[((v.len() * q).div_ceil(100)).clamp(1, v.len()) - 1];
    (at(50), at(99))
}

fn pair(v: &[f64], unit: &str) -> String {
    let (a, b) = p50_p99(v);
    format!("{a:.3} / {b:.3} {unit}")
}

fn mib(kib: u64) -> String {
    format!("{:.0} MiB", kib as f64 / 1024.0)
}

/// The queries both engines answer: n-grams of normalised corpus text (5-40 bytes) and a few
/// novel ones; 512-byte quotes of documents with three words changed; novel 512-byte texts.
struct Queries {
    counts: Vec<Vec<u8>>,
    quotes: Vec<String>,
    novel: Vec<String>,
}

fn queries(material: &Material, samples: &[String]) -> Queries {
    let mut rng = Rng(0x0bad_cafe);
    let normalised: Vec<Vec<u8>> = samples.iter().map(|d| normalize(d).bytes).collect();
    let mut counts = Vec::new();
    for _ in 0..COUNT_QUERIES {
        let d = &normalised[rng.below(normalised.len() as u64) as usize];
        let len = 5 + rng.below(36) as usize;
        let at = rng.below((d.len() - len) as u64) as usize;
        counts.push(d[at..at + len].to_vec());
    }
    for _ in 0..NOVEL_COUNT_QUERIES {
        let len = 8 + rng.below(20) as usize;
        counts.push(
            (0..len)
                .map(|_| b'a' + rng.below(26) as u8)
                .collect::<Vec<u8>>(),
        );
    }
    let mut quotes = Vec::new();
    for _ in 0..QUOTE_QUERIES {
        let d = &samples[rng.below(samples.len() as u64) as usize];
        let mut at = rng.below((d.len() - QUERY_BYTES - 128) as u64) as usize;
        while !d.is_char_boundary(at) {
            at += 1;
        }
        let mut words: Vec<String> = truncate(&d[at..], QUERY_BYTES + 64)
            .split(' ')
            .map(str::to_string)
            .collect();
        for _ in 0..3 {
            let k = rng.below(words.len() as u64) as usize;
            words[k] = material.word(&mut rng).to_string();
        }
        quotes.push(truncate(&words.join(" "), QUERY_BYTES).to_string());
    }
    let novel = (0..NOVEL_QUERIES)
        .map(|_| material.novel(&mut rng, QUERY_BYTES))
        .collect();
    Queries {
        counts,
        quotes,
        novel,
    }
}

/// Our engine, in-process: open (cold), every count once (cold), again (warm).
struct OurCounts {
    open_s: f64,
    evicted: String,
    counts: Vec<u64>,
    cold_ms: Vec<f64>,
    warm_ms: Vec<f64>,
}

fn our_counts(index_dir: &Path, qs: &[Vec<u8>]) -> OurCounts {
    let evicted = drop_caches();
    let t = Instant::now();
    let index = Index::open(index_dir).unwrap();
    let open_s = t.elapsed().as_secs_f64();
    let pass = || {
        let mut ms = Vec::with_capacity(qs.len());
        let mut counts = Vec::with_capacity(qs.len());
        for q in qs {
            let t = Instant::now();
            counts.push(index.count(q).unwrap());
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        (ms, counts)
    };
    let (cold_ms, counts) = pass();
    let (warm_ms, again) = pass();
    assert_eq!(counts, again);
    OurCounts {
        open_s,
        evicted,
        counts,
        cold_ms,
        warm_ms,
    }
}

/// infini-gram's engine over the same files (`bench/attrib_scale_ig.py`), or why not.
fn infini_gram(index_dir: &Path, q: &Queries) -> Result<Value, String> {
    let python = std::env::var("SHOULDERS_IG_PYTHON").unwrap_or_else(|_| {
        if Path::new("/tmp/igvenv/bin/python").exists() {
            "/tmp/igvenv/bin/python".into()
        } else {
            "python3".into()
        }
    });
    let dir = index_dir.canonicalize().map_err(|e| e.to_string())?;
    for word in [
        "tokenized",
        "table",
        "offset",
        "metadata",
        "metaoff",
        "unigram",
    ] {
        if dir.to_string_lossy().contains(word) {
            return Err(format!(
                "the path {} contains {word:?}, which infini-gram's engine misreads",
                dir.display()
            ));
        }
    }
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let texts: Vec<String> = q
        .quotes
        .iter()
        .chain(&q.novel)
        .map(|t| hex(&normalize(t).bytes))
        .collect();
    let request = json!({"index_dir": dir, "counts": q.counts.iter().map(|c| hex(c)).collect::<Vec<_>>(),
        "texts": texts, "min_len": shoulders_attrib::index::DEFAULT_WINDOW_BYTES, "max_cnt": 1000});
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/attrib_scale_ig.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{python}: {e}"))?;
    let body = request.to_string();
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, body.as_bytes()));
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = writer.join();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or_default();
        return Err(format!("{python} failed ({}): {last}", out.status));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// Attribute every text over HTTP once; the times in ms (every answer must be 200).
fn attribute_pass(
    client: &reqwest::blocking::Client,
    url: &str,
    key: &str,
    texts: &[String],
) -> Vec<f64> {
    texts
        .iter()
        .map(|text| {
            let t = Instant::now();
            let r = client
                .post(format!("{url}/api/attribute"))
                .bearer_auth(key)
                .json(&json!({"dataset_id": DATASET, "text": text}))
                .send()
                .unwrap();
            let status = r.status();
            let body = r.bytes().unwrap();
            assert!(status.is_success(), "{status}: {body:?}");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

/// Whether an attribution of `text` credits contribution `index`.
fn credits(
    client: &reqwest::blocking::Client,
    url: &str,
    key: &str,
    text: &str,
    index: u64,
) -> bool {
    client
        .post(format!("{url}/api/attribute"))
        .bearer_auth(key)
        .json(&json!({"dataset_id": DATASET, "text": text}))
        .send()
        .ok()
        .and_then(|r| r.json::<Value>().ok())
        .is_some_and(|v| v["shares"]["contributions_ppm"][index.to_string()].is_u64())
}

fn main() {
    let tokens: usize = std::env::var("SHOULDERS_BENCH_TOKENS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000_000);
    let base = std::env::var_os("SHOULDERS_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("attrib-scale-")
        .tempdir_in(&base)
        .unwrap();
    let bin = release_binary();
    let dir = DataDir::new(work.path().join("d"));
    eprintln!("attrib_scale: {tokens} tokens in {}", work.path().display());

    // 1-2. Corpus and ledger.
    let t = Instant::now();
    let material = material();
    let material_s = t.elapsed().as_secs_f64();
    eprintln!(
        "  material: {} MB, {} sentences, {} words ({material_s:.1} s)",
        material.bytes >> 20,
        material.sentences.len(),
        material.vocab.len()
    );
    let mut loaded = load_ledger(&dir, &material, tokens);
    eprintln!(
        "  ledger: {} documents, generated in {:.1} s, loaded in {:.1} s",
        loaded.documents, loaded.generate_s, loaded.load_s
    );

    // 3. Build.
    let build_out = work.path().join("build.json");
    let (build_s, build_peak_kib) = run_measured(
        Command::new(&bin)
            .args(["index", "build", "--data-dir"])
            .arg(dir.root())
            .arg(DATASET)
            .stdout(std::fs::File::create(&build_out).unwrap())
            .stderr(Stdio::null()),
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&build_out).unwrap()).unwrap();
    let copied = report["copied_windows"].as_u64().unwrap_or(0);
    let own = report["own_windows"].as_u64().unwrap_or(0);
    let copy_pct = 100.0 * copied as f64 / (copied + own).max(1) as f64;
    let index_dir = shoulders_attrib::dataset::index_dir(dir.root(), DATASET);
    // A full build writes one segment (`seg-…`): infini-gram's engine reads its files.
    let segment_dir = only_segment(&index_dir);
    let file_bytes = |names: &[&str]| -> u64 {
        names
            .iter()
            .filter_map(|n| std::fs::metadata(segment_dir.join(n)).ok())
            .map(|m| m.len())
            .sum()
    };
    let sa_bytes = file_bytes(&["tokenized.0", "table.0", "offset.0"]);
    let index_bytes = dir_bytes(&index_dir);
    let paraphrase_bytes = dir_bytes(&shoulders_attrib::dataset::paraphrase_dir(
        dir.root(),
        DATASET,
    ));
    eprintln!(
        "  index built in {build_s:.1} s, peak {}",
        mib(build_peak_kib)
    );

    // 5. Counts, in-process, ours then infini-gram's (one engine in memory at a time).
    let q = queries(&material, &loaded.samples);
    let ours = our_counts(&segment_dir, &q.counts);
    let ig = infini_gram(&segment_dir, &q);
    let agree = match &ig {
        Ok(v) => {
            let theirs: Vec<u64> = v["counts"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            let same = ours
                .counts
                .iter()
                .zip(&theirs)
                .filter(|(a, b)| a == b)
                .count();
            format!("{same} of {} agree", ours.counts.len())
        }
        Err(e) => format!("n/a: {e}"),
    };
    eprintln!("  counts: {agree}");

    // 4-5. The server, attribution cold and warm, its memory.
    let key_out = Command::new(&bin)
        .args(["apikey", "new", "--data-dir"])
        .arg(dir.root())
        .args(["--actor", "c0"])
        .output()
        .unwrap();
    assert!(key_out.status.success(), "{key_out:?}");
    let key_json: Value = serde_json::from_slice(&key_out.stdout).unwrap();
    let key = key_json["api_key"].as_str().unwrap().to_string();
    let (server, ready_s) = serve_with(
        &bin,
        &dir,
        &[
            "--preload-index",
            DATASET,
            "--attribute-rate-per-s",
            "0",
            "--metering",
            "off",
            "--admission-window-ms",
            "0",
            "--quota-records",
            "0",
            "--timeout-ms",
            "600000",
        ],
        "/readyz",
    );
    let client = reqwest::blocking::Client::new();
    let server_evicted = drop_caches();
    let attr_cold = attribute_pass(&client, &server.url, &key, &q.quotes);
    let attr_warm = attribute_pass(&client, &server.url, &key, &q.quotes);
    let _ = attribute_pass(&client, &server.url, &key, &q.novel);
    let novel_warm = attribute_pass(&client, &server.url, &key, &q.novel);
    let status = format!("/proc/{}/status", server.child.id());
    let mem = |k: &str| proc_status(&status, k).unwrap_or(0);
    let (vm_rss, rss_anon, rss_file) = (mem("VmRSS"), mem("RssAnon"), mem("RssFile"));
    let anon_pct = 100.0 * (rss_anon * 1024) as f64 / index_bytes.max(1) as f64;

    // 6. A new contribution over HTTP, then attribution of a quote of it until credited.
    let mut rng = Rng(0xfeed);
    let doc = format!(
        "New contribution to the benchmark. {}\n",
        material.novel(&mut rng, 8192)
    );
    let record = loaded.world.sign(
        "c1",
        Kind::DataContribute,
        json!({"dataset_id": DATASET, "content_hash": shoulders_ledger::content_ref(doc.as_bytes()),
               "byte_size": doc.len(), "token_count": doc.len()}),
    );
    let quote = truncate(&doc[2048..], QUERY_BYTES).to_string();
    let sent = Instant::now();
    let r = client
        .post(format!("{}/api/contributions", server.url))
        .json(&json!({"record": std::str::from_utf8(record.bytes()).unwrap(), "content": doc}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
    let index = r.json::<Value>().unwrap()["index"].as_u64().unwrap();
    let mut path = "incremental (no rebuild)".to_string();
    let mut rebuild_s = None;
    while !credits(&client, &server.url, &key, &quote, index) {
        if rebuild_s.is_none() && sent.elapsed() > INCREMENTAL_WAIT {
            // Today's server only picks new contributions up from a rebuilt index.
            let (s, _) = run_measured(
                Command::new(&bin)
                    .args(["index", "build", "--data-dir"])
                    .arg(dir.root())
                    .arg(DATASET)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            );
            rebuild_s = Some(s);
            path = format!(
                "not credited in {} s: `index build` ({s:.1} s) while serving",
                INCREMENTAL_WAIT.as_secs()
            );
        }
        assert!(
            sent.elapsed() < INCREMENTAL_WAIT * 4 + Duration::from_secs_f64(build_s * 3.0),
            "the new contribution was never credited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let attributable_s = sent.elapsed().as_secs_f64();
    drop(server);

    // 7. The table.
    let ig_f = |k: &str| ig.as_ref().ok().map(|v| floats(&v[k]));
    let ig_pair = |k: &str, n: Option<usize>| match ig_f(k) {
        Some(v) => pair(&v[..n.unwrap_or(v.len()).min(v.len())], "ms"),
        None => "n/a".into(),
    };
    let ig_tail = |k: &str, from: usize| match ig_f(k) {
        Some(v) => pair(&v[from.min(v.len())..], "ms"),
        None => "n/a".into(),
    };
    let ig_mem = ig
        .as_ref()
        .ok()
        .map(|v| {
            let m = &v["memory_kib"];
            let g = |k: &str| m[k].as_u64().unwrap_or(0);
            format!(
                "{} ({} anon, {} file; Python process)",
                mib(g("VmRSS")),
                mib(g("RssAnon")),
                mib(g("RssFile"))
            )
        })
        .unwrap_or_else(|| "n/a".into());
    let ig_open = ig
        .as_ref()
        .ok()
        .and_then(|v| v["open_s"].as_f64())
        .map(|s| format!("{s:.3} s"))
        .unwrap_or_else(|| "n/a".into());
    let nq = q.quotes.len();
    let rows: Vec<[String; 4]> = vec![
        [
            "corpus: tokens / documents / copied 32-byte windows".into(),
            format!("{} / {} / {copy_pct:.1} %", loaded.tokens, loaded.documents),
            "same files".into(),
            String::new(),
        ],
        [
            "corpus generation, ledger load (content + records)".into(),
            format!(
                "{:.1} s + {:.1} s, {:.1} s",
                material_s, loaded.generate_s, loaded.load_s
            ),
            String::new(),
            String::new(),
        ],
        [
            "`index build`: wall time, peak RSS".into(),
            format!("{build_s:.1} s, {}", mib(build_peak_kib)),
            "not run (bench/infini_gram_crosscheck.py)".into(),
            String::new(),
        ],
        [
            "index on disk: SA files / originals+maps / paraphrase".into(),
            format!(
                "{} / {} / {} MiB",
                sa_bytes >> 20,
                (index_bytes - sa_bytes) >> 20,
                paraphrase_bytes >> 20
            ),
            format!("{} MiB (SA files)", sa_bytes >> 20),
            String::new(),
        ],
        [
            "server memory: VmRSS (RssAnon, RssFile)".into(),
            format!(
                "{} ({} anon, {} file)",
                mib(vm_rss),
                mib(rss_anon),
                mib(rss_file)
            ),
            ig_mem,
            String::new(),
        ],
        [
            "server RssAnon / index size (without paraphrase)".into(),
            format!("{anon_pct:.1} %"),
            String::new(),
            "< 10 %".into(),
        ],
        [
            "index open (page cache dropped), in-process".into(),
            format!("{:.3} s", ours.open_s),
            ig_open,
            String::new(),
        ],
        [
            format!(
                "count, cold, p50/p99 ({} n-grams, in-process)",
                q.counts.len()
            ),
            pair(&ours.cold_ms, "ms"),
            ig_pair("count_cold_ms", None),
            String::new(),
        ],
        [
            "count, warm, p50/p99".into(),
            pair(&ours.warm_ms, "ms"),
            ig_pair("count_warm_ms", None),
            String::new(),
        ],
        [
            "counts of both engines".into(),
            agree.clone(),
            String::new(),
            "all agree".into(),
        ],
        [
            format!("attribution 512 B, cold, p50/p99 ({nq} edited quotes)"),
            pair(&attr_cold, "ms"),
            ig_pair("attr_cold_ms", Some(nq)),
            String::new(),
        ],
        [
            "attribution 512 B, warm, p50/p99".into(),
            pair(&attr_warm, "ms"),
            ig_pair("attr_warm_ms", Some(nq)),
            "p99 < 50 ms".into(),
        ],
        [
            format!("attribution 512 B novel text, warm ({})", q.novel.len()),
            pair(&novel_warm, "ms"),
            ig_tail("attr_warm_ms", nq),
            "p99 < 50 ms".into(),
        ],
        [
            "new contribution attributable".into(),
            format!("{attributable_s:.2} s: {path}"),
            "n/a (no ingestion)".into(),
            "< 5 s".into(),
        ],
    ];
    println!(
        "\nattribution at {} tokens: ours = `shoulders serve` over HTTP for attribution, \
         in-process Index::count; infini-gram 2.6.0 = its Python engine in-process (u8) on the same files",
        loaded.tokens
    );
    println!(
        "page cache: {} before counts, {server_evicted} before attribution; server ready in {ready_s:.1} s",
        ours.evicted
    );
    println!(
        "{:<58} | {:<44} | {:<36} | target",
        "measurement", "shoulders", "infini-gram"
    );
    println!("{}", "-".repeat(160));
    for r in &rows {
        println!("{:<58} | {:<44} | {:<36} | {}", r[0], r[1], r[2], r[3]);
    }
    let ig_summary = match &ig {
        Ok(v) => {
            json!({"open_s": v["open_s"], "evicted": v["evicted"], "memory_kib": v["memory_kib"]})
        }
        Err(e) => json!({"error": e}),
    };
    let out = json!({
        "tokens": loaded.tokens, "documents": loaded.documents, "material_bytes": material.bytes,
        "copied_windows": copied, "own_windows": own,
        "material_s": material_s, "generate_s": loaded.generate_s, "ledger_load_s": loaded.load_s,
        "build_s": build_s, "build_peak_rss_kib": build_peak_kib,
        "index_bytes": index_bytes, "sa_bytes": sa_bytes, "paraphrase_bytes": paraphrase_bytes,
        "server": {"ready_s": ready_s, "vm_rss_kib": vm_rss, "rss_anon_kib": rss_anon,
                   "rss_file_kib": rss_file, "rss_anon_pct_of_index": anon_pct},
        "ours": {"open_s": ours.open_s, "count_cold_ms": p50_p99(&ours.cold_ms),
                 "count_warm_ms": p50_p99(&ours.warm_ms), "attr_cold_ms": p50_p99(&attr_cold),
                 "attr_warm_ms": p50_p99(&attr_warm), "novel_warm_ms": p50_p99(&novel_warm)},
        "infini_gram": ig_summary,
        "counts_agree": agree,
        "new_contribution": {"attributable_s": attributable_s, "path": path, "rebuild_s": rebuild_s},
        "rows": rows.iter().map(|r| json!({"measurement": r[0], "shoulders": r[1], "infini_gram": r[2], "target": r[3]})).collect::<Vec<_>>(),
    });
    let json_path = std::env::var_os("SHOULDERS_BENCH_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|| base.join("attrib_scale.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    println!("JSON: {}", json_path.display());
    if std::env::var("SHOULDERS_BENCH_KEEP").as_deref() == Ok("1") {
        println!("kept: {}", work.keep().display());
    }
}
