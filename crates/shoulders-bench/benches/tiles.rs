//! Transparency at scale (issue 17): C2SP tiles served, published and followed, and witnesses
//! against a split view.
//!
//! `cargo build --release -p shoulders-cli && cargo bench -p shoulders-bench --bench tiles`
//!
//! * **A real ledger** of `SHOULDERS_TILES_RECEIPTS` settled receipts (default 1,000,000; each
//!   ~8 legs): `shoulders publish` (tiles written per second, bytes), the tiles `serve` answers
//!   per second under `/log/tile/` (4 client threads, random full hash tiles, then random full
//!   entry bundles), and a full `shoulders verify --tiles` (every record replayed from tiles
//!   alone) from the directory and over HTTP.
//! * **A monitor following a log of `SHOULDERS_TILES_FOLLOW` entries** (default 10,000,000 of
//!   receipt size, 400 bytes) from a tile directory: every hash tile authenticated against the
//!   checkpoint's root and every entry checked against its leaf, by our `TiledTree` and, side by
//!   side on the same files, by Go's `sumdb/tlog` (the `interop/go` checker, built when `go` and
//!   Debian's `golang-golang-x-mod-dev` are installed).
//! * **A split-view simulation** ([`split_view`]): a log signs two histories of the same size and
//!   tries to get each cosigned by a quorum of real witnesses (`shoulders_witness::Witness`,
//!   state on disk, fsync), for several k-of-n policies and numbers of colluding witnesses, over
//!   every way of splitting the honest witnesses between the two views; it reports whether both
//!   views reached a quorum, how many requests witnesses refused, and that a monitor holding
//!   both cosigned checkpoints sees the fork. Runs first (`SHOULDERS_TILES_ONLY_SPLIT=1`: only
//!   it).
//!
//! `SHOULDERS_TILES_DIR` chooses where the files go (default a temporary directory). It prints
//! figures; it asserts nothing about time.

use shoulders_bench::serve::{release_binary, serve};
use shoulders_bench::settle::settled_ledger;
use shoulders_ledger::DataDir;
use shoulders_log::tiles::{encode_bundle, new_tiles, TileCoord, TileFetch, TiledTree, TILE_WIDTH};
use shoulders_log::{generate_log_key, LogError, LogSigner, LogVerifier, MemoryHashes};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A ledger with the settlement world and `n` settled receipts.
fn build(root: &Path, n: usize) -> DataDir {
    let dir = DataDir::new(root.join(format!("ledger-{n}")));
    let settling = settled_ledger(&dir, n);
    eprintln!("  {n} receipts settled in {:.1} s", settling.as_secs_f64());
    dir
}

fn run(bin: &Path, args: &[&str]) -> (f64, String) {
    let t = Instant::now();
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        t.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn dir_bytes(path: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                files += 1;
                bytes += m.len();
            }
        }
    }
    (files, bytes)
}

/// Hammer `serve` with 4 threads fetching random tiles of one kind for `secs`.
fn tiles_per_s(url: &str, paths: Vec<String>, secs: u64) -> (f64, f64) {
    let paths = Arc::new(paths);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (paths, stop, count, bytes) = (
                Arc::clone(&paths),
                Arc::clone(&stop),
                Arc::clone(&count),
                Arc::clone(&bytes),
            );
            let url = url.to_string();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ t;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let p = &paths[(x % paths.len() as u64) as usize];
                    let r = client.get(format!("{url}/log/{p}")).send().unwrap();
                    assert!(r.status().is_success(), "{p}: {}", r.status());
                    let b = r.bytes().unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                    bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let s = started.elapsed().as_secs_f64();
    (
        count.load(Ordering::Relaxed) as f64 / s,
        bytes.load(Ordering::Relaxed) as f64 / s / 1e6,
    )
}

/// Tiles from a directory written in the `publish` layout.
struct DirFetch(PathBuf);

impl TileFetch for DirFetch {
    fn fetch(&self, tiles: &[TileCoord]) -> Result<Vec<Vec<u8>>, LogError> {
        tiles
            .iter()
            .map(|t| {
                std::fs::read(self.0.join(t.path())).map_err(|_| LogError::TileNotInTree(t.path()))
            })
            .collect()
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Entry `i` of the synthetic log: 400 bytes, distinct, of receipt-like size.
fn entry(i: u64, out: &mut Vec<u8>) {
    out.clear();
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    out.extend_from_slice(format!("{{\"kind\":\"usage.receipt\",\"n\":{i},\"pad\":\"").as_bytes());
    while out.len() < 398 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(b'a' + (x % 26) as u8);
    }
    out.extend_from_slice(b"\"}");
}

/// Write a synthetic tile directory of `n` entries; returns the log's verifier key.
fn synthetic(dir: &Path, n: u64) -> String {
    let (skey, vkey) = generate_log_key(&mut rand_core::OsRng, "follow.bench.local/log").unwrap();
    let mut hashes = MemoryHashes::new();
    let mut buf = Vec::with_capacity(400);
    let mut bundle: Vec<Vec<u8>> = Vec::with_capacity(TILE_WIDTH as usize);
    for i in 0..n {
        entry(i, &mut buf);
        hashes.append(&buf);
        bundle.push(buf.clone());
        if bundle.len() == TILE_WIDTH as usize || i + 1 == n {
            let first = i + 1 - bundle.len() as u64;
            let coord = TileCoord::entries(first / u64::from(TILE_WIDTH), bundle.len() as u32);
            let data = encode_bundle(bundle.iter().map(Vec::as_slice)).unwrap();
            write(&dir.join(coord.path()), &data);
            bundle.clear();
        }
    }
    for t in new_tiles(0, n).into_iter().filter(|t| t.level.is_some()) {
        let data = shoulders_log::tiles::hash_tile_bytes(&t, n, &hashes).unwrap();
        write(&dir.join(t.path()), &data);
    }
    let root = hashes.root();
    let note = LogSigner::new(&skey).unwrap().sign(n, root).unwrap();
    write(&dir.join("checkpoint"), &note);
    vkey
}

/// Follow the log in `dir` as a monitor: verify the checkpoint, then every bundle's entries
/// against authenticated leaves. Returns (seconds, entries).
fn follow(dir: &Path, vkey: &str) -> (f64, u64) {
    let started = Instant::now();
    let fetch = DirFetch(dir.to_path_buf());
    let note = std::fs::read(dir.join("checkpoint")).unwrap();
    let cp = LogVerifier::new(vkey).unwrap().open(&note).unwrap();
    let tree = TiledTree::new(cp.size, cp.root, &fetch);
    let mut seen = 0u64;
    let w = u64::from(TILE_WIDTH);
    let mut at = 0;
    while at < cp.size {
        let end = (at + w).min(cp.size);
        seen += tree.entries(at..end).unwrap().len() as u64;
        at = end;
    }
    (started.elapsed().as_secs_f64(), seen)
}

/// The Go checker (`interop/go`), built into `target/` when Go and x/mod are installed.
fn go_checker(target: &Path) -> Option<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/go");
    let out = target.join("c2sp-interop");
    let ok = Command::new("go")
        .args(["build", "-o", out.to_str().unwrap(), "."])
        .current_dir(&src)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", target.join("gocache"))
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(out)
}

/// The cosignature lines `w` gives `note` (of `size` records) as its first checkpoint of the
/// log, or the refusal's code.
fn ask(w: &shoulders_witness::Witness, note: &[u8]) -> Result<Vec<u8>, &'static str> {
    let body = shoulders_witness::protocol::encode_request(0, &[], note);
    w.add_checkpoint(&body, 1_800_000_000).map_err(|e| match e {
        shoulders_witness::AddError::Refused(r) => r.code(),
        shoulders_witness::AddError::Storage(e) => e.code(),
    })
}

/// Split view against `n` witnesses with quorum `k`, `c` of them colluding (a colluder cosigns
/// both views: it keeps one state per view). For every split of the honest witnesses between the
/// two views, each witness is asked for the view of its side first and then the other view.
/// Returns (splits tried, splits in which both views reached the quorum, requests refused,
/// forks the monitor saw among cosigned pairs).
fn split_view(root: &Path, n: usize, k: usize, c: usize) -> (usize, usize, usize, usize) {
    let dir = root.join(format!("split-{n}-{k}-{c}"));
    let (skey, vkey) = generate_log_key(&mut rand_core::OsRng, "split.bench.local/log").unwrap();
    let signer = LogSigner::new(&skey).unwrap();
    // Two histories of 2,000 records that agree on their first 1,000.
    let (mut h, mut f) = (MemoryHashes::new(), MemoryHashes::new());
    for i in 0..2_000u64 {
        h.append(format!("record {i}").as_bytes());
        let fork = if i < 1_000 {
            format!("record {i}")
        } else {
            format!("forged {i}")
        };
        f.append(fork.as_bytes());
    }
    let honest_view = signer.sign(2_000, h.root()).unwrap();
    let forged_view = signer.sign(2_000, f.root()).unwrap();
    let keys: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("key-{i}"))).collect();
    let vkeys: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, d)| {
            shoulders_witness::init(d, &format!("w{i}.split"), &mut rand_core::OsRng).unwrap()
        })
        .collect();
    let mut policy = String::new();
    for v in &vkeys {
        policy.push_str(&format!("witness {v}\n"));
    }
    policy.push_str(&format!("quorum {k}\n"));
    let policy = shoulders_log::WitnessPolicy::parse(&policy).unwrap();
    let log = LogVerifier::new(&vkey).unwrap();
    // A fresh witness state (same key) under `dir/run/i`.
    let fresh = |run: &Path, i: usize| {
        let d = run.join(format!("w{i}"));
        std::fs::create_dir_all(d.join(shoulders_witness::LOGS_DIR)).unwrap();
        std::fs::copy(
            keys[i].join(shoulders_witness::KEY_FILE),
            d.join(shoulders_witness::KEY_FILE),
        )
        .unwrap();
        shoulders_witness::Witness::open(&d, std::slice::from_ref(&vkey)).unwrap()
    };
    let honest = n - c;
    let (mut both, mut refused, mut forks_seen) = (0, 0, 0);
    for split in 0..(1usize << honest) {
        let run = dir.join(format!("run-{split}"));
        let (mut h_lines, mut f_lines) = (Vec::new(), Vec::new());
        for i in 0..n {
            if i < honest {
                // One state: whichever view it sees first, it refuses the other (a fork).
                let w = fresh(&run, i);
                let (first, second, first_lines, second_lines) = if split & (1 << i) == 0 {
                    (&honest_view, &forged_view, &mut h_lines, &mut f_lines)
                } else {
                    (&forged_view, &honest_view, &mut f_lines, &mut h_lines)
                };
                first_lines.push(ask(&w, first).unwrap());
                match ask(&w, second) {
                    Ok(line) => second_lines.push(line),
                    Err(_) => refused += 1,
                }
            } else {
                h_lines.push(ask(&fresh(&run.join("h"), i), &honest_view).unwrap());
                f_lines.push(ask(&fresh(&run.join("f"), i), &forged_view).unwrap());
            }
        }
        let h_note = shoulders_log::add_cosignatures(&honest_view, &h_lines).unwrap();
        let f_note = shoulders_log::add_cosignatures(&forged_view, &f_lines).unwrap();
        let (h_ok, f_ok) = (policy.open(&log, &h_note), policy.open(&log, &f_note));
        if let (Ok((a, _)), Ok((b, _))) = (&h_ok, &f_ok) {
            both += 1;
            // A monitor that holds both cosigned checkpoints: same size, two roots.
            if shoulders_log::check_advance(a, b, &[]).is_err() {
                forks_seen += 1;
            }
        }
        std::fs::remove_dir_all(&run).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
    (1 << honest, both, refused, forks_seen)
}

fn split_views(root: &Path) {
    println!("\nsplit view: a log signs two 2,000-record histories that differ after record 1,000 and asks real witnesses (state fsynced) to cosign each; every split of the honest witnesses is tried");
    println!(
        "  {:>7} {:>10} {:>8} {:>26} {:>16} {:>22}",
        "policy",
        "colluding",
        "splits",
        "both views reached quorum",
        "requests refused",
        "monitor saw the fork"
    );
    let t = Instant::now();
    let mut requests = 0usize;
    for (n, k) in [(3, 2), (3, 3), (5, 3), (5, 4), (7, 5)] {
        for c in 0..=n.min(2 * k - n + 1) {
            let (splits, both, refused, seen) = split_view(root, n, k, c);
            // Every witness is asked twice per split (a colluder once per view).
            requests += splits * 2 * n;
            // Two quorums of the same policy share at least 2k − n witnesses; only if all of
            // those collude can both views be cosigned.
            assert_eq!(both > 0, c >= 2 * k - n, "k={k} n={n} c={c}");
            assert_eq!(seen, both);
            println!(
                "  {:>7} {c:>10} {splits:>8} {both:>26} {refused:>16} {seen:>22}",
                format!("{k} of {n}")
            );
        }
    }
    println!(
        "  (a split view needs at least 2k − n colluding witnesses; {requests} add-checkpoint requests in {:.1} s)",
        t.elapsed().as_secs_f64()
    );
}

fn main() {
    let bin = release_binary();
    let target = bin.parent().unwrap().to_path_buf();
    let receipts_n = env_usize("SHOULDERS_TILES_RECEIPTS", 1_000_000);
    let follow_n = env_usize("SHOULDERS_TILES_FOLLOW", 10_000_000) as u64;
    let tmp;
    let root = match std::env::var("SHOULDERS_TILES_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => {
            tmp = tempfile::tempdir().unwrap();
            tmp.path().to_path_buf()
        }
    };
    let go = go_checker(&target);
    split_views(&root);
    if std::env::var("SHOULDERS_TILES_ONLY_SPLIT").is_ok() {
        return;
    }

    println!("\ntiles (release build, 2 cores)");
    eprintln!("building a SQLite ledger with {receipts_n} receipts");
    let dir = build(&root, receipts_n);
    let size: u64 = {
        let cp = std::fs::read_to_string(dir.root().join("log.pub")).unwrap();
        let (_, out) = run(
            &bin,
            &["checkpoint", "--data-dir", dir.root().to_str().unwrap()],
        );
        let _ = cp;
        out.lines().nth(1).unwrap().parse().unwrap()
    };
    let vkey = std::fs::read_to_string(dir.root().join("log.pub"))
        .unwrap()
        .trim()
        .to_string();
    let published = root.join("published");
    let (publish_s, _) = run(
        &bin,
        &[
            "publish",
            "--data-dir",
            dir.root().to_str().unwrap(),
            "--out",
            published.to_str().unwrap(),
        ],
    );
    let (files, bytes) = dir_bytes(&published);
    println!(
        "  publish {size} records: {publish_s:.1} s, {files} files ({:.0} tiles/s), {:.0} MB",
        files as f64 / publish_s,
        bytes as f64 / 1e6
    );

    let (server, _) = serve(&bin, &dir);
    let full = size / u64::from(TILE_WIDTH);
    let hash_paths: Vec<String> = (0..full)
        .map(|n| TileCoord::hash(0, n, 256).path())
        .collect();
    let bundle_paths: Vec<String> = (0..full)
        .map(|n| TileCoord::entries(n, 256).path())
        .collect();
    let (hash_rate, hash_mb) = tiles_per_s(&server.url, hash_paths, 5);
    let (bundle_rate, bundle_mb) = tiles_per_s(&server.url, bundle_paths, 5);
    println!(
        "  serve /log/tile (4 clients): hash tiles {hash_rate:.0}/s ({hash_mb:.0} MB/s), entry bundles {bundle_rate:.0}/s ({bundle_mb:.0} MB/s)"
    );

    let (verify_dir_s, _) = run(
        &bin,
        &[
            "verify",
            "--tiles",
            published.to_str().unwrap(),
            "--key",
            &vkey,
        ],
    );
    let log_url = format!("{}/log/", server.url);
    let (verify_http_s, _) = run(&bin, &["verify", "--tiles", &log_url, "--key", &vkey]);
    println!(
        "  verify --tiles (every record replayed): directory {verify_dir_s:.1} s ({:.0} records/s), HTTP {verify_http_s:.1} s ({:.0} records/s)",
        size as f64 / verify_dir_s,
        size as f64 / verify_http_s
    );
    if let Some(go) = &go {
        let (go_dir_s, _) = run(
            go,
            &["-tiles", published.to_str().unwrap(), "-log-key", &vkey],
        );
        let (go_http_s, _) = run(go, &["-tiles", &log_url, "-log-key", &vkey]);
        println!(
            "  Go sumdb/tlog checker, same tiles (tiles and entries, no replay): directory {go_dir_s:.1} s, HTTP {go_http_s:.1} s"
        );
    }
    drop(server);

    eprintln!("writing a synthetic tile directory of {follow_n} entries");
    let synth = root.join("follow");
    let t = Instant::now();
    let synth_key = synthetic(&synth, follow_n);
    let (files, bytes) = dir_bytes(&synth);
    println!(
        "\nmonitor following a {follow_n}-entry log from tiles ({files} files, {:.1} GB, written in {:.0} s)",
        bytes as f64 / 1e9,
        t.elapsed().as_secs_f64()
    );
    let (ours_s, seen) = follow(&synth, &synth_key);
    assert_eq!(seen, follow_n);
    println!(
        "  shoulders TiledTree: {ours_s:.1} s, {:.0} entries/s, {:.0} MB/s",
        seen as f64 / ours_s,
        bytes as f64 / 1e6 / ours_s
    );
    if let Some(go) = &go {
        let (go_s, _) = run(
            go,
            &["-tiles", synth.to_str().unwrap(), "-log-key", &synth_key],
        );
        println!(
            "  Go sumdb/tlog (peer):  {go_s:.1} s, {:.0} entries/s, {:.0} MB/s",
            follow_n as f64 / go_s,
            bytes as f64 / 1e6 / go_s
        );
    } else {
        println!(
            "  Go sumdb/tlog (peer): not measured (install golang-go golang-golang-x-mod-dev)"
        );
    }
}
