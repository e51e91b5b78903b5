//! The log as C2SP tiles with real processes: `shoulders publish` writes only the new tiles on a
//! second run, byte for byte what `serve` answers under `/log/` (a read-only node here, with
//! its cache headers and error codes); `verify --tiles` passes on the directory and over HTTP,
//! and fails with a code on a tampered bundle, a tampered hash tile or a missing tile;
//! `publish` refuses a directory of another log or of another history; `watch --tiles` follows
//! a growing directory and catches a fork and a rollback when the directory is replaced.

mod common;

use common::{ok_json, shoulders, stderr, Process};
use serde_json::{json, Value};
use shoulders_ledger::{init, DataDir, Ledger};
use shoulders_log::tiles::new_tiles;
use shoulders_record::{sign_record, ActorKey, Body, Kind};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

const ORIGIN: &str = "tiles.example/log";

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Append `n` records from a fresh actor named `who`, in one batch.
fn grow(dir: &DataDir, who: &str, n: usize) {
    let ledger = Ledger::open(dir).unwrap();
    let key = ActorKey::from_seed([who.len() as u8 + who.as_bytes()[0]; 32]);
    let sign = |id: &str, kind: Kind, body: Value| {
        sign_record(&key, ORIGIN, id, 1, Body::from_value(kind, body).unwrap())
            .unwrap()
            .bytes()
            .to_vec()
    };
    let mut batch = vec![sign(
        "reg",
        Kind::ActorRegister,
        json!({"handle": who, "name": who}),
    )];
    for i in 1..n {
        let body = json!({"dataset_id": format!("{who}/d{i}"), "name": "D", "access": "open"});
        batch.push(sign(&format!("d{i}"), Kind::DatasetCreate, body));
    }
    for r in ledger.submit_batch(batch) {
        r.unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Every file under `dir`: relative path → (inode, bytes).
fn files(dir: &Path) -> BTreeMap<String, (u64, Vec<u8>)> {
    fn walk(root: &Path, at: &Path, out: &mut BTreeMap<String, (u64, Vec<u8>)>) {
        for e in std::fs::read_dir(at).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else {
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                let ino = e.metadata().unwrap().ino();
                out.insert(rel, (ino, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn publish(data: &DataDir, out: &Path) -> Output {
    shoulders(&["publish", "--data-dir", p(data.root()), "--out", p(out)])
}

fn verify_tiles(location: &str, key: &str) -> Output {
    shoulders(&["verify", "--tiles", location, "--key", key])
}

fn assert_fails(out: &Output, code: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr(out).starts_with(&format!("error[{code}]")),
        "want {code}: {}",
        stderr(out)
    );
}

/// A read-only `shoulders serve` on `dir`; killed when dropped.
/// A read-only `serve` of a data directory.
struct Served(Process);

impl Served {
    fn start(dir: &Path) -> Served {
        Served(Process::launch(&[
            "serve",
            "--data-dir",
            p(dir),
            "--listen",
            "127.0.0.1:0",
            "--read-only",
        ]))
    }

    /// Status, `Cache-Control` and body of `GET path`.
    fn get(&self, path: &str) -> (u16, String, Vec<u8>) {
        let response = match ureq::get(&format!("{}{path}", self.0.base())).call() {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("GET {path}: {e}"),
        };
        let status = response.status();
        let cache = response.header("cache-control").unwrap_or("").to_string();
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut body).unwrap();
        (status, cache, body)
    }
}

fn flip_last_byte(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(file, bytes).unwrap();
}

#[test]
fn publish_is_incremental_matches_the_log_routes_and_verifies() {
    let tmp = tempfile::TempDir::new().unwrap();
    let a = DataDir::new(tmp.path().join("a"));
    let vkey = init(&a, ORIGIN, &mut rand_core::OsRng).unwrap();
    grow(&a, "ann", 100);
    let fork = DataDir::new(tmp.path().join("fork"));
    copy_dir(a.root(), fork.root());
    let behind = DataDir::new(tmp.path().join("behind"));
    copy_dir(a.root(), behind.root());
    let out = tmp.path().join("out");

    let first = ok_json(publish(&a, &out));
    assert_eq!(first["tiles_written"], new_tiles(0, 100).len());
    assert_eq!(first["tiles_written"], 2);
    let before = files(&out);
    assert!(before.contains_key("tile/0/000.p/100"));
    assert!(before.contains_key("tile/entries/000.p/100"));

    grow(&a, "ben", 200);
    let second = ok_json(publish(&a, &out));
    assert_eq!(
        (second["previous_size"].clone(), second["tree_size"].clone()),
        (json!(100), json!(300))
    );
    assert_eq!(second["tiles_written"], new_tiles(100, 300).len());
    let after = files(&out);
    // The first run's tiles were not written again (same inode); every tile of 300 is there.
    for (path, (ino, bytes)) in &before {
        if path != "checkpoint" {
            assert_eq!(&after[path], &(*ino, bytes.clone()), "{path} was rewritten");
        }
    }
    for t in new_tiles(0, 300) {
        assert!(after.contains_key(&t.path()), "{} missing", t.path());
    }
    assert_eq!(
        after.len(),
        1 + before.len() - 1 + new_tiles(100, 300).len(),
        "checkpoint + first tiles + new tiles"
    );
    // Nothing new: only the checkpoint is written again.
    assert_eq!(ok_json(publish(&a, &out))["tiles_written"], 0);
    let after = files(&out);

    let report = ok_json(verify_tiles(p(&out), &vkey));
    assert_eq!(report["tree_size"], 300);
    assert_eq!(report["datasets"], 298);

    // A read-only node serves exactly the published bytes under /log/.
    let served = Served::start(a.root());
    for (path, (_, bytes)) in &after {
        let (status, cache, body) = served.get(&format!("/log/{path}"));
        assert_eq!(status, 200, "{path}");
        assert_eq!(&body, bytes, "GET /log/{path}");
        let want_cache = if path == "checkpoint" {
            "no-cache"
        } else if path.contains(".p/") {
            "public, max-age=10"
        } else {
            "public, max-age=31536000, immutable"
        };
        assert_eq!(cache, want_cache, "{path}");
    }
    for (path, status, code) in [
        ("/log/tile/0/001", 404, "E_TILE_NOT_FOUND"),
        ("/log/tile/entries/001.p/45", 404, "E_TILE_NOT_FOUND"),
        ("/log/tile/0/1", 400, "E_TILE_PATH"),
        ("/log/tile/data/000", 400, "E_TILE_PATH"),
        ("/log/tile/0/000.p/256", 400, "E_TILE_PATH"),
    ] {
        let (got, _, body) = served.get(path);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (got, v["error"]["code"].as_str().unwrap()),
            (status, code),
            "{path}"
        );
    }
    // The same verification over HTTP, from the node's /log/ prefix.
    let report = ok_json(verify_tiles(&format!("{}/log/", served.0.base()), &vkey));
    assert_eq!(report["tree_size"], 300);
    drop(served);

    // Tampering: a bundle entry, a hash tile, a missing tile.
    for (file, code) in [
        ("tile/entries/001.p/44", "E_TILE_BUNDLE_MALFORMED"),
        ("tile/0/000", "E_TILE_INVALID"),
    ] {
        let bad = tmp.path().join(format!("bad-{}", file.replace('/', "-")));
        copy_dir(&out, &bad);
        flip_last_byte(&bad.join(file));
        assert_fails(&verify_tiles(p(&bad), &vkey), code);
    }
    let missing = tmp.path().join("missing");
    copy_dir(&out, &missing);
    std::fs::remove_file(missing.join("tile/entries/000")).unwrap();
    assert_fails(&verify_tiles(p(&missing), &vkey), "E_TILE_NOT_FOUND");
    // Another log's key does not verify the checkpoint.
    let c = DataDir::new(tmp.path().join("c"));
    let other_key = init(&c, ORIGIN, &mut rand_core::OsRng).unwrap();
    assert_fails(&verify_tiles(p(&out), &other_key), "E_CHECKPOINT_SIGNATURE");

    // publish refuses a directory of another log, and one whose history the ledger does not
    // extend (a fork of the same log, and a larger tree than the ledger holds).
    grow(&c, "cat", 3);
    assert_fails(&publish(&c, &out), "E_PUBLISH_OTHER_LOG");
    grow(&fork, "fay", 250);
    assert_fails(&publish(&fork, &out), "E_PUBLISH_NOT_PREFIX");
    // The same log, but a ledger behind the directory (100 records where it holds 300).
    assert_fails(&publish(&behind, &out), "E_PUBLISH_NOT_PREFIX");
    assert!(files(&out) == after, "the refusals wrote nothing");
    let fork_out = tmp.path().join("fork-out");
    ok_json(publish(&fork, &fork_out));
    // The fork's own directory verifies: it is a valid history of the same key.
    assert_eq!(ok_json(verify_tiles(p(&fork_out), &vkey))["tree_size"], 350);
}

fn watch_tiles(dir: &Path, key: &str, state: &Path) -> Output {
    shoulders(&[
        "watch",
        "--tiles",
        p(dir),
        "--key",
        key,
        "--polls",
        "1",
        "--interval-ms",
        "1",
        "--state",
        p(state),
    ])
}

#[test]
fn watch_tiles_follows_a_directory_and_catches_forks_and_rollbacks() {
    let tmp = tempfile::TempDir::new().unwrap();
    let a = DataDir::new(tmp.path().join("a"));
    let vkey = init(&a, ORIGIN, &mut rand_core::OsRng).unwrap();
    grow(&a, "ann", 4);
    let a4 = DataDir::new(tmp.path().join("a4"));
    copy_dir(a.root(), a4.root());
    let b = DataDir::new(tmp.path().join("b"));
    copy_dir(a.root(), b.root());
    grow(&a, "ben", 300);
    grow(&b, "bob", 300);

    let out = tmp.path().join("out");
    let state = tmp.path().join("watch.state");
    ok_json(publish(&a4, &out));
    let v = ok_json(watch_tiles(&out, &vkey, &state));
    assert_eq!(v["size"], 4);
    // The directory grows: consistent, proved from its tiles alone.
    ok_json(publish(&a, &out));
    assert_eq!(ok_json(watch_tiles(&out, &vkey, &state))["size"], 304);

    // Replaced by another history of the same key: a fork.
    let published = |data: &DataDir, name: &str| -> PathBuf {
        let dir = tmp.path().join(name);
        ok_json(publish(data, &dir));
        dir
    };
    let replace = |with: &Path| {
        std::fs::remove_dir_all(&out).unwrap();
        copy_dir(with, &out);
    };
    let keep = tmp.path().join("keep");
    copy_dir(&out, &keep);
    replace(&published(&b, "b-out"));
    assert_fails(&watch_tiles(&out, &vkey, &state), "E_WATCH_FORK");
    // Replaced by an older copy of the log: a rollback.
    replace(&published(&a4, "a4-out"));
    assert_fails(&watch_tiles(&out, &vkey, &state), "E_WATCH_ROLLBACK");
    // The honest directory back: still accepted.
    replace(&keep);
    assert_eq!(ok_json(watch_tiles(&out, &vkey, &state))["size"], 304);
}
