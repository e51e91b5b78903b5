//! End-to-end tests of the `shoulders` binary: every command is run as a real process in a
//! temporary directory, and its output is checked for exact shape, exit status and error code.
//!
//! Proofs are checked with a small RFC 6962 / RFC 9162 verifier written here, independent of
//! the crates the binary is built from; roots come from the signed checkpoints the binary
//! prints, and leaf hashes from the record bytes in an export.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

const ORIGIN: &str = "example.org/log";
const EXPORT_MAGIC: &str = "shoulders-log-export/v1";
/// Timestamp of the first record of the standard ledger; record `i` is signed at `TS + i`.
const TS: u64 = 1_700_000_000_000;

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// A path as an argument (temporary directories have UTF-8 names).
fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn shoulders_in<I, S>(cwd: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_shoulders"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the shoulders binary runs")
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Assert success with nothing on stderr; return stdout.
#[track_caller]
fn expect_ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "expected success\n{}",
        describe(out)
    );
    assert!(
        out.stderr.is_empty(),
        "unexpected stderr\n{}",
        describe(out)
    );
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

/// Assert success and parse stdout as one JSON value.
#[track_caller]
fn expect_json(out: &Output) -> Value {
    let text = expect_ok(out);
    assert!(
        text.ends_with('\n'),
        "JSON output ends with a newline: {text:?}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text}"))
}

/// Assert failure with exit status 1, nothing on stdout, and exactly one stderr line
/// `error[CODE]: message`; return the message.
#[track_caller]
fn expect_err(out: &Output, code: &str) -> String {
    let (got, message) = error_of(out);
    assert_eq!(got, code, "wrong error code\n{}", describe(out));
    message
}

/// Assert the `error[CODE]: message` failure shape and return `(code, message)`.
#[track_caller]
fn error_of(out: &Output) -> (String, String) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit status 1\n{}",
        describe(out)
    );
    assert!(
        out.stdout.is_empty(),
        "stdout must be empty on failure\n{}",
        describe(out)
    );
    let stderr = String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8");
    let line = stderr
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("stderr ends with a newline: {stderr:?}"));
    assert!(!line.contains('\n'), "stderr is one line: {stderr:?}");
    let rest = line
        .strip_prefix("error[")
        .unwrap_or_else(|| panic!("stderr starts with error[: {stderr:?}"));
    let (code, message) = rest
        .split_once("]: ")
        .unwrap_or_else(|| panic!("stderr is error[CODE]: message: {stderr:?}"));
    assert!(
        code.starts_with("E_")
            && code[2..]
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
        "code {code:?} is E_[A-Z0-9_]+"
    );
    assert!(!message.is_empty(), "message is not empty: {stderr:?}");
    (code.to_string(), message.to_string())
}

// ---------------------------------------------------------------------------------------------
// RFC 6962 / RFC 9162 Merkle tree math, written independently of the crates under test
// ---------------------------------------------------------------------------------------------

type H = [u8; 32];

fn sha256(parts: &[&[u8]]) -> H {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn leaf_hash(record: &[u8]) -> H {
    sha256(&[&[0u8], record])
}

fn node_hash(left: &H, right: &H) -> H {
    sha256(&[&[1u8], left, right])
}

/// MTH(D[n]) of RFC 6962 §2.1.
fn mth(leaves: &[H]) -> H {
    match leaves.len() {
        0 => sha256(&[]),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// RFC 9162 §2.1.3.2.
fn verify_inclusion(index: u64, size: u64, leaf: &H, proof: &[H], root: &H) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// RFC 9162 §2.1.4.2.
fn verify_consistency(old: u64, new: u64, old_root: &H, new_root: &H, proof: &[H]) -> bool {
    if old == 0 || old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if proof.is_empty() {
        return false;
    }
    let mut path = proof.to_vec();
    if old.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    fr == *old_root && sr == *new_root && snode == 0
}

fn b64_hash(s: &str) -> H {
    B64.decode(s)
        .unwrap_or_else(|e| panic!("{s:?} is not base64: {e}"))
        .try_into()
        .unwrap_or_else(|_| panic!("{s:?} is not 32 bytes"))
}

fn proof_hashes(v: &Value) -> Vec<H> {
    v["hashes"]
        .as_array()
        .expect("hashes is an array")
        .iter()
        .map(|h| b64_hash(h.as_str().expect("hash is a string")))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Checkpoints and exports
// ---------------------------------------------------------------------------------------------

/// A parsed C2SP signed checkpoint note.
#[derive(Debug, Clone, PartialEq)]
struct Checkpoint {
    origin: String,
    size: u64,
    root: H,
    sig_name: String,
    key_id: [u8; 4],
}

/// Parse and strictly check the shape of a checkpoint note:
/// `origin\nsize\nroot\n\n— origin base64(keyid||sig)\n`.
#[track_caller]
fn parse_checkpoint(bytes: &[u8]) -> Checkpoint {
    let text = std::str::from_utf8(bytes).expect("checkpoint is UTF-8");
    let lines: Vec<&str> = text
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("checkpoint ends with a newline: {text:?}"))
        .split('\n')
        .collect();
    assert_eq!(lines.len(), 5, "checkpoint has 5 lines: {text:?}");
    let size: u64 = lines[1].parse().expect("size line is a decimal integer");
    assert_eq!(
        size.to_string(),
        lines[1],
        "size has no leading zeros or sign"
    );
    let root = b64_hash(lines[2]);
    assert_eq!(lines[3], "", "empty line before the signature: {text:?}");
    let sig_line = lines[4]
        .strip_prefix("\u{2014} ")
        .unwrap_or_else(|| panic!("signature line starts with an em dash: {text:?}"));
    let (sig_name, sig_b64) = sig_line.split_once(' ').expect("name and signature");
    let sig = B64.decode(sig_b64).expect("signature is base64");
    assert_eq!(sig.len(), 4 + 64, "key id + ed25519 signature");
    Checkpoint {
        origin: lines[0].to_string(),
        size,
        root,
        sig_name: sig_name.to_string(),
        key_id: sig[..4].try_into().unwrap(),
    }
}

/// An export split into its record lines (base64 text) and its checkpoint note.
struct Export {
    lines: Vec<String>,
    checkpoint: Vec<u8>,
}

impl Export {
    #[track_caller]
    fn parse(bytes: &[u8]) -> Export {
        let text = std::str::from_utf8(bytes).expect("export is UTF-8");
        let rest = text
            .strip_prefix(&format!("{EXPORT_MAGIC}\n"))
            .expect("export starts with the magic line");
        let (records, checkpoint) = if let Some(cp) = rest.strip_prefix('\n') {
            ("", cp)
        } else {
            rest.split_once("\n\n")
                .expect("empty line before checkpoint")
        };
        let lines = if records.is_empty() {
            Vec::new()
        } else {
            records.split('\n').map(str::to_string).collect()
        };
        Export {
            lines,
            checkpoint: checkpoint.as_bytes().to_vec(),
        }
    }

    fn records(&self) -> Vec<Vec<u8>> {
        self.lines
            .iter()
            .map(|l| B64.decode(l).expect("record line is base64"))
            .collect()
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{EXPORT_MAGIC}\n").into_bytes();
        for l in &self.lines {
            out.extend_from_slice(l.as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.checkpoint);
        out
    }

    fn with_lines(&self, lines: Vec<String>) -> Export {
        Export {
            lines,
            checkpoint: self.checkpoint.clone(),
        }
    }

    /// Replace record `i` by `f(decoded JSON)`, re-encoded canonically (compact, sorted keys).
    fn with_record_json(&self, i: usize, f: impl FnOnce(&mut Value)) -> Export {
        let mut v: Value = serde_json::from_slice(&self.records()[i]).unwrap();
        f(&mut v);
        let mut lines = self.lines.clone();
        lines[i] = B64.encode(serde_json::to_vec(&v).unwrap());
        self.with_lines(lines)
    }

    /// Replace record `i`'s raw bytes by `f(bytes)`.
    fn with_record_bytes(&self, i: usize, f: impl FnOnce(&mut Vec<u8>)) -> Export {
        let mut bytes = self.records()[i].clone();
        f(&mut bytes);
        let mut lines = self.lines.clone();
        lines[i] = B64.encode(bytes);
        self.with_lines(lines)
    }
}

// ---------------------------------------------------------------------------------------------
// A ledger in a temporary directory
// ---------------------------------------------------------------------------------------------

struct Fixture {
    tmp: TempDir,
    data: PathBuf,
    vkey: String,
    files: Cell<usize>,
}

impl Fixture {
    /// An initialised, empty ledger with origin [`ORIGIN`].
    fn new() -> Fixture {
        let tmp = TempDir::new().unwrap();
        let data = tmp.path().join("ledger");
        let out = shoulders_in(
            tmp.path(),
            ["init", "--data-dir", p(&data), "--origin", ORIGIN],
        );
        let vkey = expect_ok(&out).trim_end().to_string();
        Fixture {
            tmp,
            data,
            vkey,
            files: Cell::new(0),
        }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        shoulders_in(self.dir(), args)
    }

    /// Run `cmd... --data-dir <data> rest...`.
    fn run_data(&self, cmd: &[&str], rest: &[&str]) -> Output {
        let mut args = cmd.to_vec();
        args.extend(["--data-dir", p(&self.data)]);
        args.extend(rest);
        self.run(args)
    }

    fn fresh_path(&self, stem: &str, ext: &str) -> PathBuf {
        let n = self.files.get();
        self.files.set(n + 1);
        self.dir().join(format!("{stem}-{n}.{ext}"))
    }

    /// A new actor key file; returns its path and public key.
    fn key(&self, name: &str) -> (PathBuf, String) {
        let path = self.fresh_path(name, "key");
        let v = expect_json(&self.run(["key", "new", "--out", p(&path)]));
        (path, v["public_key"].as_str().unwrap().to_string())
    }

    /// Put `text` in the ledger's content store the way an operator copies a blob in
    /// (`D/content/sha256/<hex>`); returns its `sha256:<hex>`.
    fn store_content(&self, text: &str) -> String {
        let hash = content_hash(text);
        let dir = self.data.join("content").join("sha256");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(&hash["sha256:".len()..]), text).unwrap();
        hash
    }

    /// A `data.contribute` body for `text` in `dataset_id`, its content stored first.
    fn stored_contribution(&self, dataset_id: &str, text: &str) -> Value {
        json!({ "dataset_id": dataset_id, "content_hash": self.store_content(text),
                "byte_size": text.len(), "token_count": text.len() })
    }

    fn body_file(&self, body: &Value) -> PathBuf {
        self.raw_body_file(&serde_json::to_vec_pretty(body).unwrap())
    }

    fn raw_body_file(&self, bytes: &[u8]) -> PathBuf {
        let path = self.fresh_path("body", "json");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// `submit` with an explicit id and timestamp.
    fn submit(&self, key: &Path, kind: &str, body: &Value, id: &str, ts_ms: u64) -> Output {
        let body = self.body_file(body);
        self.submit_file(
            key,
            kind,
            &body,
            &["--id", id, "--ts-ms", &ts_ms.to_string()],
        )
    }

    fn submit_file(&self, key: &Path, kind: &str, body: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "submit",
            "--data-dir",
            p(&self.data),
            "--key",
            p(key),
            "--kind",
            kind,
            "--body",
            p(body),
        ];
        args.extend(extra);
        self.run(args)
    }

    /// `submit` that must append a new record at `expected_index`; returns its leaf hash.
    #[track_caller]
    fn append(&self, key: &Path, kind: &str, body: &Value, expected_index: u64) -> H {
        let out = self.submit(
            key,
            kind,
            body,
            &format!("rec-{expected_index}"),
            TS + expected_index,
        );
        let v = expect_json(&out);
        let leaf = check_appended(&v, expected_index, false);
        // Pretty JSON in field order.
        let text = format!(
            "{{\n  \"index\": {expected_index},\n  \"leaf_hash\": \"{}\",\n  \"duplicate\": false\n}}\n",
            B64.encode(leaf)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), text);
        leaf
    }

    fn checkpoint_bytes(&self) -> Vec<u8> {
        let out = self.run_data(&["checkpoint"], &[]);
        expect_ok(&out);
        out.stdout
    }

    fn checkpoint(&self) -> Checkpoint {
        parse_checkpoint(&self.checkpoint_bytes())
    }

    fn export(&self) -> (PathBuf, Vec<u8>) {
        let path = self.fresh_path("export", "txt");
        let v = expect_json(&self.run_data(&["export"], &["--out", path.to_str().unwrap()]));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            v,
            json!({ "file": path.to_str().unwrap(), "tree_size": self.checkpoint().size })
        );
        (path, bytes)
    }

    fn write_export(&self, export: &Export) -> PathBuf {
        self.write_raw_export(&export.to_bytes())
    }

    fn write_raw_export(&self, bytes: &[u8]) -> PathBuf {
        let path = self.fresh_path("tampered", "txt");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn verify(&self, file: &Path, key: &str) -> Output {
        self.run(["verify", p(file), "--key", key])
    }

    fn show(&self, what: &str, id: &str) -> Output {
        self.run_data(&["show"], &[what, id])
    }
}

/// Check `{"index":N,"leaf_hash":"<base64 of 32 bytes>","duplicate":D}`; return the hash.
#[track_caller]
fn check_appended(v: &Value, index: u64, duplicate: bool) -> H {
    let obj = v.as_object().expect("submit prints a JSON object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["duplicate", "index", "leaf_hash"], "{v}");
    assert_eq!(v["index"], json!(index), "{v}");
    assert_eq!(v["duplicate"], json!(duplicate), "{v}");
    b64_hash(v["leaf_hash"].as_str().expect("leaf_hash is a string"))
}

fn content_hash(text: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// The standard ledger used by most tests (`tests/data/standard-ledger.json`): actors alice,
/// bob and carol, an open and an allowlist dataset with three contributions, and the model
/// lineage alice/base <- bob/tuned <- bob/tuned-q4. Record `i` is signed at `TS + i` with id
/// `rec-i`.
struct Standard {
    fx: Fixture,
    alice: (PathBuf, String),
    bob: (PathBuf, String),
    carol: (PathBuf, String),
    /// Leaf hashes as printed by `submit`, in log order.
    leaves: Vec<H>,
    /// `checkpoints[s]` is the checkpoint printed when the log had `s` records.
    checkpoints: Vec<Vec<u8>>,
    /// `{"signer", "kind", "body"}` per record, in log order.
    records: Vec<Value>,
}

const N_STANDARD: u64 = 11;

fn standard_records() -> Vec<Value> {
    serde_json::from_str(include_str!("data/standard-ledger.json")).unwrap()
}

impl Standard {
    fn build() -> Standard {
        let fx = Fixture::new();
        let alice = fx.key("alice");
        let bob = fx.key("bob");
        let carol = fx.key("carol");
        let records = standard_records();
        assert_eq!(records.len() as u64, N_STANDARD);
        let mut leaves = Vec::new();
        let mut checkpoints = vec![fx.checkpoint_bytes()];
        for (i, r) in records.iter().enumerate() {
            let key = match r["signer"].as_str().unwrap() {
                "alice" => &alice.0,
                "bob" => &bob.0,
                _ => &carol.0,
            };
            let kind = r["kind"].as_str().unwrap();
            if let Some(text) = r["content"].as_str() {
                assert_eq!(fx.store_content(text), r["body"]["content_hash"]);
            }
            leaves.push(fx.append(key, kind, &r["body"], i as u64));
            checkpoints.push(fx.checkpoint_bytes());
        }
        Standard {
            fx,
            alice,
            bob,
            carol,
            leaves,
            checkpoints,
            records,
        }
    }

    fn root_at(&self, size: u64) -> H {
        parse_checkpoint(&self.checkpoints[size as usize]).root
    }
}

// ---------------------------------------------------------------------------------------------
// 1. init
// ---------------------------------------------------------------------------------------------

/// `^example.org/log\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+$`, plus: the base64 is an ed25519 key.
#[track_caller]
fn check_verifier_key(vkey: &str) -> [u8; 4] {
    let rest = vkey
        .strip_prefix("example.org/log+")
        .unwrap_or_else(|| panic!("verifier key starts with the origin: {vkey:?}"));
    let (hash, key) = rest.split_at(8);
    assert!(
        hash.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "8 lowercase hex digits: {vkey:?}"
    );
    let key = key
        .strip_prefix('+')
        .unwrap_or_else(|| panic!("'+' after the hash: {vkey:?}"));
    assert!(
        !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)),
        "base64 key: {vkey:?}"
    );
    let raw = B64.decode(key).expect("key is base64");
    assert_eq!(raw.len(), 33, "algorithm byte + 32-byte ed25519 key");
    assert_eq!(raw[0], 0x01, "ed25519 algorithm byte");
    hex::decode(hash).unwrap().try_into().unwrap()
}

#[test]
fn init_prints_verifier_key_and_refuses_a_second_init() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("d");
    let init = |origin: &str| {
        shoulders_in(
            tmp.path(),
            ["init", "--data-dir", p(&data), "--origin", origin],
        )
    };
    let stdout = expect_ok(&init(ORIGIN));
    let vkey = stdout.strip_suffix('\n').expect("one line");
    assert!(!vkey.contains('\n'), "{stdout:?}");
    check_verifier_key(vkey);

    // The public key file holds the same key; the private key is private.
    assert_eq!(
        std::fs::read_to_string(data.join("log.pub")).unwrap(),
        stdout
    );
    let mode = std::fs::metadata(data.join("log.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "log.key mode {mode:o}");
    let log_key = std::fs::read(data.join("log.key")).unwrap();

    for origin in [ORIGIN, "other.example/log"] {
        let msg = expect_err(&init(origin), "E_ALREADY_INITIALISED");
        assert!(msg.contains(data.to_str().unwrap()), "{msg}");
    }
    // Nothing was replaced.
    assert_eq!(
        std::fs::read_to_string(data.join("log.pub")).unwrap(),
        stdout
    );
    assert_eq!(std::fs::read(data.join("log.key")).unwrap(), log_key);

    // Two ledgers never share a key.
    let other = TempDir::new().unwrap();
    let out = shoulders_in(
        other.path(),
        ["init", "--data-dir", "x", "--origin", ORIGIN],
    );
    let other_key = expect_ok(&out);
    check_verifier_key(other_key.trim_end());
    assert_ne!(other_key, stdout);
}

#[test]
fn init_default_origin_and_bad_origins() {
    let tmp = TempDir::new().unwrap();
    let vkey = expect_ok(&shoulders_in(tmp.path(), ["init", "--data-dir", "d"]));
    assert!(vkey.starts_with("shoulders.local/log-"), "{vkey}");
    // Each default origin is unique: records signed for one ledger never verify on another.
    let again = expect_ok(&shoulders_in(tmp.path(), ["init", "--data-dir", "d2"]));
    assert_ne!(vkey.split('+').next(), again.split('+').next());

    for bad in ["has space", "a+b", ""] {
        let out = shoulders_in(tmp.path(), ["init", "--data-dir", "bad", "--origin", bad]);
        expect_err(&out, "E_KEY_MALFORMED");
        assert!(
            !tmp.path().join("bad").exists(),
            "no directory left behind for {bad:?}"
        );
    }
}

#[test]
fn commands_on_a_missing_ledger_say_not_initialised() {
    let tmp = TempDir::new().unwrap();
    let key = tmp.path().join("k.key");
    expect_json(&shoulders_in(tmp.path(), ["key", "new", "--out", p(&key)]));
    std::fs::write(
        tmp.path().join("b.json"),
        r#"{"handle":"alice","name":"A"}"#,
    )
    .unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["checkpoint", "--data-dir", "nope"],
        vec!["proof", "inclusion", "--data-dir", "nope", "--index", "0"],
        vec!["proof", "consistency", "--data-dir", "nope", "--old", "1"],
        vec!["export", "--data-dir", "nope", "--out", "e.txt"],
        vec!["show", "--data-dir", "nope", "actor", "alice"],
        vec![
            "submit",
            "--data-dir",
            "nope",
            "--key",
            "k.key",
            "--kind",
            "actor.register",
            "--body",
            "b.json",
        ],
    ];
    for args in cases {
        let msg = expect_err(&shoulders_in(tmp.path(), &args), "E_NOT_INITIALISED");
        assert!(
            msg.contains("shoulders init --data-dir nope"),
            "{args:?}: {msg}"
        );
    }
    assert!(!tmp.path().join("nope").exists());
    assert!(!tmp.path().join("e.txt").exists());
}

// ---------------------------------------------------------------------------------------------
// 2. key new
// ---------------------------------------------------------------------------------------------

#[test]
fn key_new_writes_a_private_file_and_refuses_to_overwrite() {
    let tmp = TempDir::new().unwrap();
    let path = tmp.path().join("alice.key");
    let new_key = || shoulders_in(tmp.path(), ["key", "new", "--out", p(&path)]);

    let v = expect_json(&new_key());
    assert_eq!(
        v,
        json!({ "public_key": v["public_key"], "file": path.to_str().unwrap() })
    );
    let public = v["public_key"].as_str().expect("public_key is a string");
    assert_eq!(B64.decode(public).unwrap().len(), 32, "ed25519 public key");

    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    let text = std::fs::read_to_string(&path).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(file["format"], "shoulders-actor-key/v1");
    assert_eq!(file["public_key"], public);
    assert_eq!(
        B64.decode(file["secret_seed"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );

    // A second run refuses and leaves the file alone.
    let msg = expect_err(&new_key(), "E_IO");
    assert!(msg.contains(path.to_str().unwrap()), "{msg}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // Fresh keys differ.
    let other = tmp.path().join("other.key");
    let v2 = expect_json(&shoulders_in(
        tmp.path(),
        ["key", "new", "--out", p(&other)],
    ));
    assert_ne!(v2["public_key"], v["public_key"]);
}

// ---------------------------------------------------------------------------------------------
// 3. submit
// ---------------------------------------------------------------------------------------------

#[test]
fn submit_appends_every_enabled_kind() {
    let s = Standard::build();
    let cp = s.fx.checkpoint();
    assert_eq!(cp.size, N_STANDARD);
    assert_eq!(s.leaves.len() as u64, N_STANDARD);
    // Each append grew the checkpoint by exactly one and changed the root.
    for (size, bytes) in s.checkpoints.iter().enumerate() {
        assert_eq!(parse_checkpoint(bytes).size, size as u64);
    }
    for w in s.checkpoints.windows(2) {
        assert_ne!(parse_checkpoint(&w[0]).root, parse_checkpoint(&w[1]).root);
    }
    // The printed leaf hashes are RFC 6962 leaf hashes of the logged bytes.
    let (_, bytes) = s.fx.export();
    let records = Export::parse(&bytes).records();
    let from_export: Vec<H> = records.iter().map(|r| leaf_hash(r)).collect();
    assert_eq!(from_export, s.leaves);
    assert_eq!(mth(&s.leaves), cp.root);

    // The logged records carry the submitted envelope fields and body.
    for (i, (rec, submitted)) in records.iter().zip(&s.records).enumerate() {
        let v: Value = serde_json::from_slice(rec).unwrap();
        let signer = match submitted["signer"].as_str().unwrap() {
            "alice" => &s.alice.1,
            "bob" => &s.bob.1,
            _ => &s.carol.1,
        };
        assert_eq!(v["v"], 2);
        assert_eq!(v["log"], ORIGIN);
        assert_eq!(v["kind"], submitted["kind"]);
        assert_eq!(v["signer"], signer.as_str());
        assert_eq!(v["id"], format!("rec-{i}"));
        assert_eq!(v["ts_ms"], TS + i as u64);
        assert_eq!(v["body"], submitted["body"]);
        assert_eq!(B64.decode(v["sig"].as_str().unwrap()).unwrap().len(), 64);
        // Canonical: compact, keys sorted (serde_json's map is ordered).
        assert_eq!(serde_json::to_vec(&v).unwrap(), *rec);
    }
}

#[test]
fn submit_without_id_or_timestamp_uses_fresh_ones() {
    let fx = Fixture::new();
    let (alice, _) = fx.key("alice");
    fx.append(
        &alice,
        "actor.register",
        &json!({ "handle": "alice", "name": "Alice" }),
        0,
    );
    let body = fx.body_file(&json!({
        "dataset_id": "alice/d", "name": "D", "access": "owner"
    }));
    let v = expect_json(&fx.submit_file(&alice, "dataset.create", &body, &[]));
    check_appended(&v, 1, false);
    let contribution = fx.body_file(&fx.stored_contribution("alice/d", "x"));
    // The same body twice without --id: two distinct records.
    let a = expect_json(&fx.submit_file(&alice, "data.contribute", &contribution, &[]));
    let b = expect_json(&fx.submit_file(&alice, "data.contribute", &contribution, &[]));
    assert_ne!(check_appended(&a, 2, false), check_appended(&b, 3, false));
    let (_, bytes) = fx.export();
    let records = Export::parse(&bytes).records();
    let ids: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_slice::<Value>(r).unwrap()["id"].clone())
        .collect();
    assert_eq!(ids[0], "rec-0");
    assert_ne!(ids[2], ids[3]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for r in &records[1..] {
        let ts = serde_json::from_slice::<Value>(r).unwrap()["ts_ms"]
            .as_u64()
            .unwrap();
        assert!(
            now.abs_diff(ts) < 10 * 60 * 1000,
            "ts_ms {ts} is close to now {now}"
        );
    }
}

#[test]
fn resubmission_is_idempotent_and_id_reuse_is_refused() {
    let fx = Fixture::new();
    let (alice, _) = fx.key("alice");
    let (bob, _) = fx.key("bob");
    let reg = json!({ "handle": "alice", "name": "Alice" });
    let first = expect_json(&fx.submit(&alice, "actor.register", &reg, "id-1", TS));
    let leaf = check_appended(&first, 0, false);
    let ds = json!({ "dataset_id": "alice/d", "name": "D", "access": "open" });
    let second = expect_json(&fx.submit(&alice, "dataset.create", &ds, "id-2", TS + 1));
    let ds_leaf = check_appended(&second, 1, false);
    let before = fx.checkpoint_bytes();
    assert_eq!(parse_checkpoint(&before).size, 2);

    // Exactly the same record again (same id, timestamp and body): same index, flagged.
    for _ in 0..2 {
        let again = expect_json(&fx.submit(&alice, "actor.register", &reg, "id-1", TS));
        assert_eq!(check_appended(&again, 0, true), leaf);
        let again = expect_json(&fx.submit(&alice, "dataset.create", &ds, "id-2", TS + 1));
        assert_eq!(check_appended(&again, 1, true), ds_leaf);
        assert_eq!(
            fx.checkpoint_bytes(),
            before,
            "a duplicate does not grow the log"
        );
    }
    // Whitespace and key order in the body file do not matter: the record is canonical.
    let reordered = fx.raw_body_file(b"{ \"name\" : \"Alice\",\n  \"handle\": \"alice\" }\n");
    let again = expect_json(&fx.submit_file(
        &alice,
        "actor.register",
        &reordered,
        &["--id", "id-1", "--ts-ms", &TS.to_string()],
    ));
    assert_eq!(check_appended(&again, 0, true), leaf);

    // The same id with anything different is a conflict, naming the earlier index.
    let other_body = json!({ "handle": "alice", "name": "Alice Renamed" });
    let msg = expect_err(
        &fx.submit(&alice, "actor.register", &other_body, "id-1", TS),
        "E_ID_CONFLICT",
    );
    assert!(msg.contains("\"id-1\"") && msg.contains("index 0"), "{msg}");
    expect_err(
        &fx.submit(&alice, "actor.register", &reg, "id-1", TS + 5),
        "E_ID_CONFLICT",
    );
    let other_ds = json!({ "dataset_id": "alice/e", "name": "E", "access": "open" });
    let msg = expect_err(
        &fx.submit(&alice, "dataset.create", &other_ds, "id-1", TS + 2),
        "E_ID_CONFLICT",
    );
    assert!(msg.contains("index 0"), "{msg}");
    assert_eq!(fx.checkpoint_bytes(), before);

    // Ids are per signer: bob may use "id-1" too.
    let v = expect_json(&fx.submit(
        &bob,
        "actor.register",
        &json!({ "handle": "bob", "name": "Bob" }),
        "id-1",
        TS,
    ));
    check_appended(&v, 2, false);
    assert_eq!(fx.checkpoint().size, 3);
}

/// Submissions the ledger must refuse, one per line: `CODE signer kind body`, where the body is
/// the rest of the line, written to the body file verbatim. The log holds actors `alice` and
/// `bob`, alice's owner-only dataset `alice/d` and her model `alice/m`; `stranger` is a key
/// that never registered.
const REFUSED: &str = r#"
E_RECORD_MALFORMED       alice    actor.register  {"handle": "carol",
E_RECORD_MALFORMED       alice    actor.register  handle=carol
E_RECORD_MALFORMED       alice    actor.register  {"handle":"carol","name":"C"} trailing
E_RECORD_SCHEMA          stranger actor.register  {"handle":"carol","name":"C","age":3}
E_RECORD_SCHEMA          alice    model.register  {"model_id":"alice/n","name":"N","parents":[{"model_id":"alice/m","relation":"finetune","weight":1}]}
E_RECORD_SCHEMA          stranger actor.register  {"handle":"carol"}
E_RECORD_SCHEMA          stranger actor.register  ["carol"]
E_RECORD_SCHEMA          stranger actor.register  "carol"
E_RECORD_SCHEMA          alice    dataset.create  {"dataset_id":"alice/e","name":"E","access":"everyone"}
E_RECORD_SCHEMA          alice    data.contribute {"dataset_id":"alice/d","content_hash":"sha256:0000000000000000000000000000000000000000000000000000000000000000","byte_size":"1","token_count":1}
E_RECORD_BAD_NUMBER      alice    data.contribute {"dataset_id":"alice/d","content_hash":"sha256:0000000000000000000000000000000000000000000000000000000000000000","byte_size":1.5,"token_count":1}
E_RECORD_BAD_NUMBER      alice    data.contribute {"dataset_id":"alice/d","content_hash":"sha256:0000000000000000000000000000000000000000000000000000000000000000","byte_size":-1,"token_count":1}
E_RECORD_BAD_NUMBER      alice    data.contribute {"dataset_id":"alice/d","content_hash":"sha256:0000000000000000000000000000000000000000000000000000000000000000","byte_size":9007199254740992,"token_count":1}
E_KIND_UNKNOWN           alice    model.delete    {"model_id":"alice/m"}
E_KIND_UNKNOWN           alice    Actor.Register  {"handle":"carol","name":"C"}
E_FIELD_INVALID          stranger actor.register  {"handle":"Carol!","name":"C"}
E_FIELD_INVALID          stranger actor.register  {"handle":"-carol","name":"C"}
E_FIELD_INVALID          stranger actor.register  {"handle":"cccccccccccccccccccccccccccccccccccccccccc","name":"C"}
E_FIELD_INVALID          stranger actor.register  {"handle":"carol","name":"  "}
E_FIELD_INVALID          stranger actor.register  {"handle":"carol","name":"C","url":"ftp://carol.example"}
E_FIELD_INVALID          alice    data.contribute {"dataset_id":"alice/d","content_hash":"md5:00","byte_size":1,"token_count":1}
E_FIELD_INVALID          alice    data.contribute {"dataset_id":"alice/d","content_hash":"sha256:0000000000000000000000000000000000000000000000000000000000000000","byte_size":0,"token_count":1}
E_FIELD_INVALID          alice    dataset.create  {"dataset_id":"alice/e","name":"E","access":"open","allowlist":["bob"]}
E_FIELD_INVALID          alice    model.register  {"model_id":"alice","name":"N"}
E_FIELD_INVALID          alice    model.register  {"model_id":"alice/n","name":"N","parents":[{"model_id":"alice/m","relation":"finetune"},{"model_id":"bob/x","relation":"adapter"}]}
E_FIELD_INVALID          alice    model.register  {"model_id":"alice/n","name":"N","parents":[{"model_id":"alice/m","relation":"merge"}]}
E_FIELD_INVALID          alice    model.register  {"model_id":"alice/n","name":"N","artifacts":[{"path":"../w.bin","size_bytes":1,"sha256":"sha256:0000000000000000000000000000000000000000000000000000000000000000"}]}
E_SIGNER_UNKNOWN         stranger dataset.create  {"dataset_id":"stranger/d","name":"D","access":"open"}
E_SIGNER_UNKNOWN         stranger funds.deposit   {"account":"bob","currency":"USD","amount_micros":"1500000"}
E_MODEL_UNKNOWN          alice    model.register  {"model_id":"alice/child","name":"C","parents":[{"model_id":"bob/ghost","relation":"finetune"}]}
E_NAMESPACE_MISMATCH     bob      dataset.create  {"dataset_id":"alice/bobs","name":"B","access":"open"}
E_NAMESPACE_MISMATCH     bob      model.register  {"model_id":"alice/bobs","name":"B"}
E_NO_OPERATOR            alice    funds.deposit   {"account":"bob","currency":"USD","amount_micros":"1500000"}
E_NO_PAYOUT_ADDRESS      alice    funds.withdraw  {"currency":"USDC","amount_micros":"1"}
E_LICENSE_UNKNOWN        alice    license.grant   {"license_id":"alice/l","model_id":"alice/m","grantee":"bob"}
E_NO_OPERATOR            alice    usage.receipt   {"usage_id":"u1","model_id":"alice/m","payer":"bob","use_category":"chat","input_tokens":1,"output_tokens":1,"output_hash":"sha256:0000000000000000000000000000000000000000000000000000000000000000"}
E_HANDLE_TAKEN           stranger actor.register  {"handle":"alice","name":"Alice 2"}
E_ACTOR_KEY_EXISTS       alice    actor.register  {"handle":"alice2","name":"Alice 2"}
E_DATASET_EXISTS         alice    dataset.create  {"dataset_id":"alice/d","name":"D","access":"open"}
E_DATASET_UNKNOWN        alice    data.contribute {"dataset_id":"alice/ghost","content_hash":"sha256:0000000000000000000000000000000000000000000000000000000000000000","byte_size":1,"token_count":1}
E_CONTRIBUTION_FORBIDDEN bob      data.contribute {"dataset_id":"alice/d","content_hash":"sha256:0000000000000000000000000000000000000000000000000000000000000000","byte_size":1,"token_count":1}
E_CONTENT_MISSING        alice    data.contribute {"dataset_id":"alice/d","content_hash":"sha256:0000000000000000000000000000000000000000000000000000000000000000","byte_size":1,"token_count":1}
E_ACTOR_UNKNOWN          alice    dataset.create  {"dataset_id":"alice/a","name":"A","access":"allowlist","allowlist":["zed"]}
E_MODEL_EXISTS           alice    model.register  {"model_id":"alice/m","name":"M again"}
E_LINEAGE_CYCLE          alice    model.register  {"model_id":"alice/self","name":"S","parents":[{"model_id":"alice/self","relation":"finetune"}]}
E_DATASET_UNKNOWN        alice    model.register  {"model_id":"alice/n","name":"N","datasets":["bob/none"]}
E_LICENSE_UNKNOWN        alice    model.register  {"model_id":"alice/n","name":"N","license_id":"alice/l"}
E_KEY_FILE               garbage  actor.register  {"handle":"carol","name":"C"}
E_KEY_FILE               forged   actor.register  {"handle":"carol","name":"C"}
"#;

#[test]
fn refused_submissions_leave_the_log_unchanged() {
    let fx = Fixture::new();
    let (alice, _) = fx.key("alice");
    let (bob, _) = fx.key("bob");
    let (stranger, _) = fx.key("stranger");
    let reg = |handle: &str| json!({ "handle": handle, "name": handle });
    fx.append(&alice, "actor.register", &reg("alice"), 0);
    fx.append(&bob, "actor.register", &reg("bob"), 1);
    let ds = json!({ "dataset_id": "alice/d", "name": "D", "access": "owner" });
    fx.append(&alice, "dataset.create", &ds, 2);
    let model = json!({ "model_id": "alice/m", "name": "M" });
    fx.append(&alice, "model.register", &model, 3);
    let before = fx.checkpoint_bytes();

    let garbage = fx.dir().join("garbage.key");
    std::fs::write(&garbage, "not a key").unwrap();
    let forged = fx.dir().join("forged.key");
    let mut kf: Value = serde_json::from_str(&std::fs::read_to_string(&alice).unwrap()).unwrap();
    kf["public_key"] = Value::String(B64.encode([7u8; 32]));
    std::fs::write(&forged, kf.to_string()).unwrap();

    let mut cases = 0;
    for line in REFUSED.lines().filter(|l| !l.trim().is_empty()) {
        let (code, rest) = line.split_once(' ').unwrap();
        let (signer, rest) = rest.trim_start().split_once(' ').unwrap();
        let (kind, body) = rest.trim_start().split_once(' ').unwrap();
        let key = match signer {
            "alice" => &alice,
            "bob" => &bob,
            "stranger" => &stranger,
            "garbage" => &garbage,
            "forged" => &forged,
            other => panic!("unknown signer {other}"),
        };
        let body = fx.raw_body_file(body.trim_start().as_bytes());
        let (got, msg) = error_of(&fx.submit_file(key, kind, &body, &[]));
        assert_eq!(got, code, "{line}\n{msg}");
        assert_eq!(
            fx.checkpoint_bytes(),
            before,
            "the checkpoint changed: {line}"
        );
        cases += 1;
    }
    assert_eq!(cases, 49);

    // Bad envelope arguments.
    let ok_body = fx.body_file(&json!({ "dataset_id": "alice/e", "name": "E", "access": "open" }));
    let too_long = "x".repeat(129);
    let beyond = (1u64 << 53).to_string();
    for extra in [
        ["--id", "has space"],
        ["--id", &too_long],
        ["--id", "tab\there"],
        ["--ts-ms", &beyond],
    ] {
        let out = fx.submit_file(&alice, "dataset.create", &ok_body, &extra);
        let msg = expect_err(&out, "E_FIELD_INVALID");
        assert!(
            msg.contains("`id`") || msg.contains("`ts_ms`"),
            "{extra:?}: {msg}"
        );
        assert_eq!(fx.checkpoint_bytes(), before, "{extra:?}");
    }
    let empty = fx.raw_body_file(b"");
    expect_err(
        &fx.submit_file(&alice, "actor.register", &empty, &[]),
        "E_RECORD_MALFORMED",
    );

    // Messages name what is wrong.
    let body = fx.raw_body_file(br#"{"handle":"Carol!","name":"C"}"#);
    let msg = expect_err(
        &fx.submit_file(&stranger, "actor.register", &body, &[]),
        "E_FIELD_INVALID",
    );
    assert!(msg.contains("`handle`"), "{msg}");
    let body = fx.raw_body_file(br#"{"handle":"carol","name":"C","age":3}"#);
    let msg = expect_err(
        &fx.submit_file(&stranger, "actor.register", &body, &[]),
        "E_RECORD_SCHEMA",
    );
    assert!(msg.contains("age"), "{msg}");
    let msg = expect_err(
        &fx.submit_file(&alice, "model.delete", &body, &[]),
        "E_KIND_UNKNOWN",
    );
    assert!(msg.contains("\"model.delete\""), "{msg}");
    let body = fx.body_file(&json!({ "dataset_id": "alice/bobs", "name": "B", "access": "open" }));
    let msg = expect_err(
        &fx.submit_file(&bob, "dataset.create", &body, &[]),
        "E_NAMESPACE_MISMATCH",
    );
    assert!(
        msg.contains("\"alice/bobs\"") && msg.contains("\"bob\""),
        "{msg}"
    );

    // Files that cannot be read.
    let out = fx.submit_file(
        &alice,
        "actor.register",
        &fx.dir().join("missing.json"),
        &[],
    );
    let msg = expect_err(&out, "E_IO");
    assert!(msg.contains("missing.json"), "{msg}");
    let out = fx.submit_file(&fx.dir().join("missing.key"), "actor.register", &body, &[]);
    expect_err(&out, "E_IO");
    // A body file over the record size limit is refused before it is read.
    let big = fx.raw_body_file(&vec![b' '; shoulders_record::MAX_RECORD_BYTES + 1]);
    let out = fx.submit_file(&alice, "actor.register", &big, &[]);
    let (_, msg) = error_of(&out);
    assert!(msg.contains("limit"), "{msg}");
    assert_eq!(fx.checkpoint_bytes(), before);

    // The ledger still accepts good records afterwards, at the next index.
    let c = fx.stored_contribution("alice/d", "c");
    let v = expect_json(&fx.submit(&alice, "data.contribute", &c, "ok", TS));
    check_appended(&v, 4, false);
}

#[test]
fn concurrent_submitters_either_append_or_get_locked() {
    let fx = Fixture::new();
    let n = 6;
    let keys: Vec<PathBuf> = (0..n).map(|i| fx.key(&format!("k{i}")).0).collect();
    let bodies: Vec<PathBuf> = (0..n)
        .map(|i| {
            fx.body_file(&json!({ "handle": format!("actor-{i}"), "name": format!("Actor {i}") }))
        })
        .collect();
    let spawn = |i: usize| {
        Command::new(env!("CARGO_BIN_EXE_shoulders"))
            .current_dir(fx.dir())
            .args([
                "submit",
                "--data-dir",
                p(&fx.data),
                "--key",
                p(&keys[i]),
                "--kind",
                "actor.register",
                "--body",
                p(&bodies[i]),
                "--id",
                "reg",
                "--ts-ms",
                &TS.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = (0..n).map(spawn).collect();
    let mut indexes = Vec::new();
    let mut locked = Vec::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            let v = expect_json(&out);
            assert_eq!(v["duplicate"], false);
            indexes.push(v["index"].as_u64().unwrap());
        } else {
            expect_err(&out, "E_LOCKED");
            locked.push(i);
        }
    }
    indexes.sort_unstable();
    let expected: Vec<u64> = (0..indexes.len() as u64).collect();
    assert_eq!(
        indexes, expected,
        "successful submits got consecutive indexes"
    );
    assert_eq!(fx.checkpoint().size, indexes.len() as u64);
    // The locked-out ones succeed when retried alone; the others are duplicates.
    for (i, (key, body)) in keys.iter().zip(&bodies).enumerate() {
        let v = expect_json(&fx.submit_file(
            key,
            "actor.register",
            body,
            &["--id", "reg", "--ts-ms", &TS.to_string()],
        ));
        assert_eq!(v["duplicate"], !locked.contains(&i));
    }
    assert_eq!(fx.checkpoint().size, n as u64);
    let (path, _) = fx.export();
    let report = expect_json(&fx.verify(&path, &fx.vkey));
    assert_eq!(report["actors"], n);
}

// ---------------------------------------------------------------------------------------------
// 4. checkpoint
// ---------------------------------------------------------------------------------------------

#[test]
fn checkpoint_is_a_signed_note_matching_the_log() {
    let fx = Fixture::new();
    let key_id = check_verifier_key(&fx.vkey);

    let empty = fx.checkpoint_bytes();
    let text = String::from_utf8(empty.clone()).unwrap();
    let empty_root = B64.encode(Sha256::digest(b""));
    let prefix = format!("{ORIGIN}\n0\n{empty_root}\n\n\u{2014} {ORIGIN} ");
    assert!(text.starts_with(&prefix), "{text:?}");
    let cp = parse_checkpoint(&empty);
    assert_eq!(cp.origin, ORIGIN);
    assert_eq!(cp.sig_name, ORIGIN);
    assert_eq!(
        cp.key_id, key_id,
        "the signature names the verifier key's hash"
    );
    // Deterministic: the same tree head gives the same bytes.
    assert_eq!(fx.checkpoint_bytes(), empty);

    let (alice, _) = fx.key("alice");
    let l0 = fx.append(
        &alice,
        "actor.register",
        &json!({ "handle": "alice", "name": "A" }),
        0,
    );
    let cp1 = fx.checkpoint();
    assert_eq!((cp1.size, cp1.root), (1, l0));
    let l1 = fx.append(
        &alice,
        "dataset.create",
        &json!({ "dataset_id": "alice/d", "name": "D", "access": "open" }),
        1,
    );
    let l2 = fx.append(
        &alice,
        "data.contribute",
        &fx.stored_contribution("alice/d", "c"),
        2,
    );
    let cp3 = fx.checkpoint();
    assert_eq!(cp3.size, 3);
    assert_eq!(cp3.root, node_hash(&node_hash(&l0, &l1), &l2));
    assert_eq!(
        (cp3.origin.as_str(), cp3.sig_name.as_str(), cp3.key_id),
        (ORIGIN, ORIGIN, key_id)
    );
}

// ---------------------------------------------------------------------------------------------
// 5. proofs
// ---------------------------------------------------------------------------------------------

#[test]
fn inclusion_proofs_verify_against_signed_checkpoints() {
    let s = Standard::build();
    let fx = &s.fx;
    // My own MTH over the leaf hashes agrees with every signed checkpoint.
    for size in 0..=N_STANDARD {
        assert_eq!(
            mth(&s.leaves[..size as usize]),
            s.root_at(size),
            "root of size {size}"
        );
    }
    for size in 1..=N_STANDARD {
        let root = s.root_at(size);
        for index in 0..size {
            let v = expect_json(&fx.run_data(
                &["proof", "inclusion"],
                &["--index", &index.to_string(), "--size", &size.to_string()],
            ));
            let obj = v.as_object().unwrap();
            let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["hashes", "leaf_index", "tree_size"], "{v}");
            assert_eq!(
                (v["tree_size"].as_u64(), v["leaf_index"].as_u64()),
                (Some(size), Some(index))
            );
            let proof = proof_hashes(&v);
            let leaf = &s.leaves[index as usize];
            assert!(
                verify_inclusion(index, size, leaf, &proof, &root),
                "index {index} size {size}: {v}"
            );
            // The verifier is not vacuous.
            assert!(!verify_inclusion(
                index,
                size,
                &leaf_hash(b"other"),
                &proof,
                &root
            ));
            if let Some((first, rest)) = proof.split_first() {
                let mut bad = vec![node_hash(first, first)];
                bad.extend_from_slice(rest);
                assert!(!verify_inclusion(index, size, leaf, &bad, &root));
                assert!(!verify_inclusion(
                    index,
                    size,
                    leaf,
                    &proof[..proof.len() - 1],
                    &root
                ));
            }
            if size > 1 {
                let other = (index + 1) % size;
                assert!(
                    !verify_inclusion(other, size, leaf, &proof, &root)
                        || s.leaves[other as usize] == *leaf
                );
            }
        }
    }
    // --size defaults to the current size.
    let cp = fx.checkpoint();
    for index in [0, 5, N_STANDARD - 1] {
        let v =
            expect_json(&fx.run_data(&["proof", "inclusion"], &["--index", &index.to_string()]));
        assert_eq!(v["tree_size"], N_STANDARD);
        assert!(verify_inclusion(
            index,
            cp.size,
            &s.leaves[index as usize],
            &proof_hashes(&v),
            &cp.root
        ));
    }
}

#[test]
fn consistency_proofs_verify_against_signed_checkpoints() {
    let s = Standard::build();
    let fx = &s.fx;
    for new in 1..=N_STANDARD {
        for old in 1..=new {
            let v = expect_json(&fx.run_data(
                &["proof", "consistency"],
                &["--old", &old.to_string(), "--new", &new.to_string()],
            ));
            let obj = v.as_object().unwrap();
            let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["hashes", "new_size", "old_size"], "{v}");
            assert_eq!(
                (v["old_size"].as_u64(), v["new_size"].as_u64()),
                (Some(old), Some(new))
            );
            let proof = proof_hashes(&v);
            let (old_root, new_root) = (s.root_at(old), s.root_at(new));
            assert!(
                verify_consistency(old, new, &old_root, &new_root, &proof),
                "{old} -> {new}: {v}"
            );
            if old == new {
                assert!(proof.is_empty());
            } else {
                // Not vacuous: a different old root or a damaged proof fails.
                assert!(!verify_consistency(
                    old,
                    new,
                    &leaf_hash(b"x"),
                    &new_root,
                    &proof
                ));
                let mut bad = proof.clone();
                bad[0] = node_hash(&bad[0], &bad[0]);
                assert!(!verify_consistency(old, new, &old_root, &new_root, &bad));
            }
        }
    }
    // --new defaults to the current size.
    let v = expect_json(&fx.run_data(&["proof", "consistency"], &["--old", "3"]));
    assert_eq!(v["new_size"], N_STANDARD);
    assert!(verify_consistency(
        3,
        N_STANDARD,
        &s.root_at(3),
        &fx.checkpoint().root,
        &proof_hashes(&v)
    ));
}

#[test]
fn proof_ranges_are_checked() {
    let fx = Fixture::new();
    // Empty log.
    expect_err(
        &fx.run_data(&["proof", "inclusion"], &["--index", "0"]),
        "E_PROOF_INDEX_OUT_OF_RANGE",
    );
    expect_err(
        &fx.run_data(&["proof", "consistency"], &["--old", "1"]),
        "E_PROOF_BAD_RANGE",
    );

    let (alice, _) = fx.key("alice");
    fx.append(
        &alice,
        "actor.register",
        &json!({ "handle": "alice", "name": "A" }),
        0,
    );
    fx.append(
        &alice,
        "dataset.create",
        &json!({ "dataset_id": "alice/d", "name": "D", "access": "open" }),
        1,
    );
    fx.append(
        &alice,
        "dataset.create",
        &json!({ "dataset_id": "alice/e", "name": "E", "access": "open" }),
        2,
    );
    let cases: &[(&[&str], &[&str], &str)] = &[
        (
            &["proof", "inclusion"],
            &["--index", "3"],
            "E_PROOF_INDEX_OUT_OF_RANGE",
        ),
        (
            &["proof", "inclusion"],
            &["--index", "2", "--size", "2"],
            "E_PROOF_INDEX_OUT_OF_RANGE",
        ),
        (
            &["proof", "inclusion"],
            &["--index", "0", "--size", "0"],
            "E_PROOF_INDEX_OUT_OF_RANGE",
        ),
        (
            &["proof", "inclusion"],
            &["--index", "18446744073709551615"],
            "E_PROOF_INDEX_OUT_OF_RANGE",
        ),
        (
            &["proof", "inclusion"],
            &["--index", "0", "--size", "4"],
            "E_PROOF_SIZE_BEYOND_LOG",
        ),
        (
            &["proof", "inclusion"],
            &["--index", "9", "--size", "10"],
            "E_PROOF_SIZE_BEYOND_LOG",
        ),
        (
            &["proof", "consistency"],
            &["--old", "1", "--new", "4"],
            "E_PROOF_SIZE_BEYOND_LOG",
        ),
        (
            &["proof", "consistency"],
            &["--old", "0"],
            "E_PROOF_BAD_RANGE",
        ),
        (
            &["proof", "consistency"],
            &["--old", "4"],
            "E_PROOF_BAD_RANGE",
        ),
        (
            &["proof", "consistency"],
            &["--old", "3", "--new", "2"],
            "E_PROOF_BAD_RANGE",
        ),
    ];
    for (cmd, rest, code) in cases {
        let msg = expect_err(&fx.run_data(cmd, rest), code);
        assert!(!msg.is_empty(), "{rest:?}");
    }
    let msg = expect_err(
        &fx.run_data(&["proof", "inclusion"], &["--index", "0", "--size", "4"]),
        "E_PROOF_SIZE_BEYOND_LOG",
    );
    assert!(msg.contains('4') && msg.contains('3'), "{msg}");
    // Not numbers: usage error from the argument parser (exit status 2).
    let out = fx.run_data(&["proof", "inclusion"], &["--index", "-1"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

// ---------------------------------------------------------------------------------------------
// 6. export and verify
// ---------------------------------------------------------------------------------------------

fn expected_report(vkey_root: &H, size: u64) -> Value {
    json!({
        "origin": ORIGIN,
        "tree_size": size,
        "root_hash": B64.encode(vkey_root),
        "actors": 3,
        "datasets": 2,
        "models": 3,
        "contributions": 3,
        "receipts": 0,
        "legs": 0,
    })
}

#[test]
fn export_then_verify_with_key_string_and_key_file() {
    let s = Standard::build();
    let fx = &s.fx;
    let (path, bytes) = fx.export();
    let export = Export::parse(&bytes);
    assert_eq!(export.lines.len() as u64, N_STANDARD);
    assert_eq!(
        export.checkpoint,
        fx.checkpoint_bytes(),
        "the export ends with the checkpoint"
    );
    assert_eq!(export.to_bytes(), bytes, "the export format round-trips");
    assert!(
        !path.with_extension("partial").exists(),
        "no partial file left"
    );
    let cp = fx.checkpoint();

    let report = expect_json(&fx.verify(&path, &fx.vkey));
    assert_eq!(report, expected_report(&cp.root, N_STANDARD));
    let pub_file = fx.data.join("log.pub");
    let report = expect_json(&fx.verify(&path, pub_file.to_str().unwrap()));
    assert_eq!(report, expected_report(&cp.root, N_STANDARD));
    // A relative key path works from the working directory.
    let report = expect_json(&fx.verify(&path, "ledger/log.pub"));
    assert_eq!(report["tree_size"], N_STANDARD);

    // An older, shorter export (first records + their checkpoint) verifies on its own.
    let prefix = Export {
        lines: export.lines[..5].to_vec(),
        checkpoint: s.checkpoints[5].clone(),
    };
    let report = expect_json(&fx.verify(&fx.write_export(&prefix), &fx.vkey));
    assert_eq!(
        report,
        json!({ "origin": ORIGIN, "tree_size": 5, "root_hash": B64.encode(s.root_at(5)),
                "actors": 2, "datasets": 1, "models": 0, "contributions": 2,
                "receipts": 0, "legs": 0 })
    );

    // Exporting twice gives identical files, and export overwrites an existing file.
    let again = fx.dir().join("again.txt");
    std::fs::write(&again, "old").unwrap();
    expect_json(&fx.run_data(&["export"], &["--out", again.to_str().unwrap()]));
    assert_eq!(std::fs::read(&again).unwrap(), bytes);
}

#[test]
fn export_of_an_empty_log_verifies() {
    let fx = Fixture::new();
    let (path, bytes) = fx.export();
    let mut expected = format!("{EXPORT_MAGIC}\n\n").into_bytes();
    expected.extend(fx.checkpoint_bytes());
    assert_eq!(bytes, expected);
    let report = expect_json(&fx.verify(&path, &fx.vkey));
    assert_eq!(
        report,
        json!({ "origin": ORIGIN, "tree_size": 0, "root_hash": B64.encode(Sha256::digest(b"")),
                "actors": 0, "datasets": 0, "models": 0, "contributions": 0,
                "receipts": 0, "legs": 0 })
    );
}

/// Verify `export` and expect failure with `code`, naming record `index` when given.
#[track_caller]
fn expect_verify_failure(fx: &Fixture, bytes: &[u8], code: &str, index: Option<u64>) -> String {
    let path = fx.write_raw_export(bytes);
    let msg = expect_err(&fx.verify(&path, &fx.vkey), code);
    match index {
        Some(i) => assert!(
            msg.contains(&format!("at record {i}:")),
            "expected record {i}: {msg}"
        ),
        None => assert!(!msg.contains("at record"), "no record named: {msg}"),
    }
    msg
}

#[test]
fn verify_detects_tampered_records() {
    let s = Standard::build();
    let fx = &s.fx;
    let (_, bytes) = fx.export();
    let export = Export::parse(&bytes);
    let n = N_STANDARD as usize;
    let last = N_STANDARD - 1;

    // One changed byte inside a signed field: signature fails at that record.
    let t = export.with_record_bytes(0, |b| {
        let at = b.windows(5).position(|w| w == b"Alice").unwrap();
        b[at] ^= 0x01;
    });
    expect_verify_failure(fx, &t.to_bytes(), "E_SIG_INVALID", Some(0));
    let t = export.with_record_json(7, |v| v["ts_ms"] = json!(TS + 100));
    expect_verify_failure(fx, &t.to_bytes(), "E_SIG_INVALID", Some(7));
    let t = export.with_record_json(8, |v| {
        v["body"]["parents"][0]["relation"] = json!("finetune")
    });
    expect_verify_failure(fx, &t.to_bytes(), "E_SIG_INVALID", Some(8));

    // Raw byte flips anywhere in a record line: always refused, at that record.
    let line = export.lines[4].clone();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let allowed = [
        "E_EXPORT_MALFORMED",
        "E_RECORD_NOT_UTF8",
        "E_RECORD_MALFORMED",
        "E_RECORD_SCHEMA",
        "E_RECORD_BAD_NUMBER",
        "E_RECORD_NOT_CANONICAL",
        "E_RECORD_VERSION",
        "E_KIND_UNKNOWN",
        "E_FIELD_INVALID",
        "E_KEY_INVALID",
        "E_SIG_INVALID",
    ];
    let step = (line.len() / 23).max(1);
    for pos in (0..line.len()).step_by(step).chain([line.len() - 1]) {
        let mut raw = line.clone().into_bytes();
        let c = raw[pos];
        raw[pos] = if c == b'=' {
            b'A'
        } else {
            let k = alphabet.iter().position(|&a| a == c).unwrap();
            alphabet[(k + 1) % alphabet.len()]
        };
        let mut lines = export.lines.clone();
        lines[4] = String::from_utf8(raw).unwrap();
        let path = fx.write_export(&export.with_lines(lines));
        let (code, msg) = error_of(&fx.verify(&path, &fx.vkey));
        assert!(
            allowed.contains(&code.as_str()),
            "flip at {pos}: {code} {msg}"
        );
        assert!(msg.contains("at record 4:"), "flip at {pos}: {msg}");
    }
    // A character that is not base64 at all.
    let mut lines = export.lines.clone();
    lines[4].replace_range(10..11, "!");
    expect_verify_failure(
        fx,
        &export.with_lines(lines).to_bytes(),
        "E_EXPORT_MALFORMED",
        Some(4),
    );

    // Encoding changes that keep the content: not canonical.
    let t = export.with_record_bytes(2, |b| b.insert(1, b' '));
    expect_verify_failure(fx, &t.to_bytes(), "E_RECORD_NOT_CANONICAL", Some(2));
    let t = export.with_record_bytes(3, |b| {
        let v: Value = serde_json::from_slice(b).unwrap();
        *b = serde_json::to_vec_pretty(&v).unwrap();
    });
    expect_verify_failure(fx, &t.to_bytes(), "E_RECORD_NOT_CANONICAL", Some(3));
    // Broken encodings.
    let t = export.with_record_bytes(5, |b| b.truncate(b.len() / 2));
    expect_verify_failure(fx, &t.to_bytes(), "E_RECORD_MALFORMED", Some(5));
    let t = export.with_record_bytes(6, |b| b[3] = 0xff);
    expect_verify_failure(fx, &t.to_bytes(), "E_RECORD_NOT_UTF8", Some(6));
    let t = export.with_record_json(1, |v| v["extra"] = json!(1));
    expect_verify_failure(fx, &t.to_bytes(), "E_RECORD_SCHEMA", Some(1));
    let t = export.with_record_json(1, |v| v["v"] = json!(3));
    expect_verify_failure(fx, &t.to_bytes(), "E_RECORD_VERSION", Some(1));

    // Another record's signature.
    let sig4 = serde_json::from_slice::<Value>(&export.records()[4]).unwrap()["sig"].clone();
    let t = export.with_record_json(3, |v| v["sig"] = sig4);
    expect_verify_failure(fx, &t.to_bytes(), "E_SIG_INVALID", Some(3));
    // Someone else's signer key on a record.
    let t = export.with_record_json(3, |v| v["signer"] = json!(s.bob.1));
    expect_verify_failure(fx, &t.to_bytes(), "E_SIG_INVALID", Some(3));

    // Dropped lines.
    let mut lines = export.lines.clone();
    lines.pop();
    let msg = expect_verify_failure(
        fx,
        &export.with_lines(lines).to_bytes(),
        "E_SIZE_MISMATCH",
        Some(last),
    );
    assert!(
        msg.contains(&format!("{} records", n - 1)) && msg.contains(&n.to_string()),
        "{msg}"
    );
    let mut lines = export.lines.clone();
    lines.remove(4); // bob's contribution: nothing depends on it
    expect_verify_failure(
        fx,
        &export.with_lines(lines).to_bytes(),
        "E_SIZE_MISMATCH",
        Some(last),
    );
    let mut lines = export.lines.clone();
    lines.remove(2); // the dataset the next record contributes to
    expect_verify_failure(
        fx,
        &export.with_lines(lines).to_bytes(),
        "E_DATASET_UNKNOWN",
        Some(2),
    );
    let mut lines = export.lines.clone();
    lines.remove(0); // alice's registration
    expect_verify_failure(
        fx,
        &export.with_lines(lines).to_bytes(),
        "E_SIGNER_UNKNOWN",
        Some(1),
    );
    expect_verify_failure(
        fx,
        &export.with_lines(Vec::new()).to_bytes(),
        "E_SIZE_MISMATCH",
        Some(0),
    );

    // Swapped lines.
    let mut lines = export.lines.clone();
    lines.swap(3, 4); // two independent contributions: only the root shows it
    expect_verify_failure(
        fx,
        &export.with_lines(lines).to_bytes(),
        "E_ROOT_MISMATCH",
        None,
    );
    let mut lines = export.lines.clone();
    lines.swap(0, 2); // alice's dataset before alice exists
    expect_verify_failure(
        fx,
        &export.with_lines(lines).to_bytes(),
        "E_SIGNER_UNKNOWN",
        Some(0),
    );
    let mut lines = export.lines.clone();
    lines.swap(7, 8); // the quantized child before its parent
    expect_verify_failure(
        fx,
        &export.with_lines(lines).to_bytes(),
        "E_MODEL_UNKNOWN",
        Some(7),
    );

    // Extra lines.
    let mut lines = export.lines.clone();
    lines.push(export.lines[n - 1].clone());
    expect_verify_failure(
        fx,
        &export.with_lines(lines).to_bytes(),
        "E_DUPLICATE_ID",
        Some(N_STANDARD),
    );
    let mut lines = export.lines.clone();
    lines.insert(3, export.lines[3].clone());
    expect_verify_failure(
        fx,
        &export.with_lines(lines).to_bytes(),
        "E_DUPLICATE_ID",
        Some(4),
    );
}

#[test]
fn verify_detects_damaged_files_and_checkpoints() {
    let s = Standard::build();
    let fx = &s.fx;
    let (_, bytes) = fx.export();
    let export = Export::parse(&bytes);
    let records_end = bytes.len() - export.checkpoint.len() - 1; // offset of the empty line

    // Truncation at specific places.
    let cases: &[(usize, &str)] = &[
        (0, "E_EXPORT_MALFORMED"),
        (10, "E_EXPORT_MALFORMED"),
        (EXPORT_MAGIC.len() + 1, "E_EXPORT_MALFORMED"),
        (bytes.len() / 2, "E_EXPORT_MALFORMED"),
        (records_end, "E_EXPORT_MALFORMED"),
        (records_end + 1, "E_CHECKPOINT_MALFORMED"),
        (
            records_end + 1 + export.checkpoint.len() / 2,
            "E_CHECKPOINT_MALFORMED",
        ),
        (bytes.len() - 1, "E_CHECKPOINT_MALFORMED"),
    ];
    for &(len, code) in cases {
        let (got, msg) = error_of(&fx.verify(&fx.write_raw_export(&bytes[..len]), &fx.vkey));
        assert_eq!(got, code, "truncated to {len} of {}: {msg}", bytes.len());
    }
    // Any truncation is refused.
    for len in (0..bytes.len()).step_by(61) {
        let out = fx.verify(&fx.write_raw_export(&bytes[..len]), &fx.vkey);
        error_of(&out);
    }

    // Bad magic line.
    let mut bad = bytes.clone();
    bad[0] = b'S';
    expect_verify_failure(fx, &bad, "E_EXPORT_MALFORMED", None);
    expect_verify_failure(fx, b"", "E_EXPORT_MALFORMED", None);

    // The checkpoint edited: size, root or signature.
    let cp_text = String::from_utf8(export.checkpoint.clone()).unwrap();
    let mut parts: Vec<String> = cp_text.split('\n').map(str::to_string).collect();
    parts[1] = (N_STANDARD - 1).to_string();
    let edited = Export {
        lines: export.lines.clone(),
        checkpoint: parts.join("\n").into_bytes(),
    };
    expect_verify_failure(fx, &edited.to_bytes(), "E_CHECKPOINT_SIGNATURE", None);
    let mut parts: Vec<String> = cp_text.split('\n').map(str::to_string).collect();
    parts[2] = B64.encode(leaf_hash(b"forged"));
    let edited = Export {
        lines: export.lines.clone(),
        checkpoint: parts.join("\n").into_bytes(),
    };
    expect_verify_failure(fx, &edited.to_bytes(), "E_CHECKPOINT_SIGNATURE", None);
    let mut cp = export.checkpoint.clone();
    let at = cp.len() - 10;
    cp[at] = if cp[at] == b'A' { b'B' } else { b'A' };
    let edited = Export {
        lines: export.lines.clone(),
        checkpoint: cp,
    };
    expect_verify_failure(fx, &edited.to_bytes(), "E_CHECKPOINT_SIGNATURE", None);

    // A genuine but older checkpoint with all the records.
    let stale = Export {
        lines: export.lines.clone(),
        checkpoint: s.checkpoints[5].clone(),
    };
    let msg = expect_verify_failure(fx, &stale.to_bytes(), "E_SIZE_MISMATCH", Some(5));
    assert!(
        msg.contains(&format!("{N_STANDARD} records")) && msg.contains("commits to 5"),
        "{msg}"
    );
    // Fewer records than the checkpoint.
    let short = export.with_lines(export.lines[..5].to_vec());
    expect_verify_failure(fx, &short.to_bytes(), "E_SIZE_MISMATCH", Some(5));
    // A checkpoint from another ledger with the same origin but another key.
    let other = Fixture::new();
    let foreign = Export {
        lines: export.lines.clone(),
        checkpoint: other.checkpoint_bytes(),
    };
    expect_verify_failure(fx, &foreign.to_bytes(), "E_CHECKPOINT_SIGNATURE", None);
    // Trailing garbage after the checkpoint.
    let mut extra = bytes.clone();
    extra.extend_from_slice(b"junk\n");
    let (code, _) = error_of(&fx.verify(&fx.write_raw_export(&extra), &fx.vkey));
    assert!(code.starts_with("E_CHECKPOINT"), "{code}");
    // A blank line inside the records.
    let mut lines = export.lines.clone();
    lines.insert(3, String::new());
    let (code, _) = error_of(&fx.verify(&fx.write_export(&export.with_lines(lines)), &fx.vkey));
    assert!(code.starts_with("E_CHECKPOINT"), "{code}");
    // A missing export file.
    expect_err(&fx.verify(&fx.dir().join("missing.txt"), &fx.vkey), "E_IO");
}

#[test]
fn verify_rejects_the_wrong_key() {
    let s = Standard::build();
    let fx = &s.fx;
    let (path, _) = fx.export();

    // Another log's key, same origin.
    let other = Fixture::new();
    assert_ne!(other.vkey, fx.vkey);
    let msg = expect_err(&fx.verify(&path, &other.vkey), "E_CHECKPOINT_SIGNATURE");
    assert!(!msg.contains("at record"), "{msg}");
    expect_err(
        &fx.verify(&path, other.data.join("log.pub").to_str().unwrap()),
        "E_CHECKPOINT_SIGNATURE",
    );
    // Another log's key with another origin: its first record was not signed for that log.
    let tmp = TempDir::new().unwrap();
    let elsewhere = expect_ok(&shoulders_in(
        tmp.path(),
        ["init", "--data-dir", "d", "--origin", "other.example/log"],
    ));
    let msg = expect_err(&fx.verify(&path, elsewhere.trim_end()), "E_WRONG_LEDGER");
    assert!(msg.contains("at record 0"), "{msg}");
    // The right name and hash with another public key.
    let (head, _) = fx.vkey.rsplit_once('+').unwrap();
    let (_, other_b64) = other.vkey.rsplit_once('+').unwrap();
    let (code, _) = error_of(&fx.verify(&path, &format!("{head}+{other_b64}")));
    assert!(
        ["E_KEY_MALFORMED", "E_CHECKPOINT_SIGNATURE"].contains(&code.as_str()),
        "{code}"
    );
    // Not a key at all, and a key file holding garbage.
    expect_err(&fx.verify(&path, "not-a-key"), "E_KEY_MALFORMED");
    let garbage = fx.dir().join("garbage.pub");
    std::fs::write(&garbage, "garbage\n").unwrap();
    expect_err(
        &fx.verify(&path, garbage.to_str().unwrap()),
        "E_KEY_MALFORMED",
    );
    // The right key still works.
    expect_json(&fx.verify(&path, &fx.vkey));
}

/// Content first: `submit` refuses a contribution whose content the ledger never received or
/// whose sizes are not the measured ones; `contribute` stores and appends; `verify --content`
/// checks an export's contributions against a content directory.
#[test]
fn content_first_through_submit_contribute_and_verify() {
    let fx = Fixture::new();
    let (alice, _) = fx.key("alice");
    fx.append(
        &alice,
        "actor.register",
        &json!({ "handle": "alice", "name": "A" }),
        0,
    );
    fx.append(
        &alice,
        "dataset.create",
        &json!({ "dataset_id": "alice/d", "name": "D", "access": "open" }),
        1,
    );
    let before = fx.checkpoint_bytes();
    let text = "a public text whose hash anyone could publish";
    let n = text.len() as u64;
    let claim = json!({ "dataset_id": "alice/d", "content_hash": content_hash(text),
                        "byte_size": n, "token_count": n });
    let msg = expect_err(
        &fx.submit(&alice, "data.contribute", &claim, "c-1", TS),
        "E_CONTENT_MISSING",
    );
    assert!(
        msg.contains(&content_hash(text)) && msg.contains("shoulders contribute"),
        "{msg}"
    );
    fx.store_content(text);
    for (bytes, tokens) in [(1u64 << 40, n), (n, 1 << 40), (n - 1, n - 1)] {
        let lie = json!({ "dataset_id": "alice/d", "content_hash": content_hash(text),
                          "byte_size": bytes, "token_count": tokens });
        let msg = expect_err(
            &fx.submit(&alice, "data.contribute", &lie, "c-1", TS),
            "E_CONTENT_SIZE_MISMATCH",
        );
        assert!(
            msg.contains(&bytes.to_string()) && msg.contains(&format!("{n} bytes")),
            "{msg}"
        );
    }
    assert_eq!(fx.checkpoint_bytes(), before, "refusals change nothing");
    fx.append(&alice, "data.contribute", &claim, 2);

    // `contribute` stores the document and appends its record through the same door.
    let doc = fx.fresh_path("poem", "txt");
    std::fs::write(&doc, "my own poem\n").unwrap();
    let contribute = |id: &str| {
        fx.run_data(
            &["contribute"],
            &[
                "--key",
                p(&alice),
                "--dataset",
                "alice/d",
                "--id",
                id,
                "--ts-ms",
                "1",
                p(&doc),
            ],
        )
    };
    let v = expect_json(&contribute("c-2"));
    let hash = content_hash("my own poem\n");
    assert_eq!(
        v,
        json!({ "index": 3, "leaf_hash": v["leaf_hash"], "duplicate": false, "content_hash": hash })
    );
    let blob = fx
        .data
        .join("content/sha256")
        .join(&hash["sha256:".len()..]);
    assert_eq!(std::fs::read(&blob).unwrap(), b"my own poem\n");
    let again = expect_json(&contribute("c-2"));
    assert_eq!(
        (&again["index"], &again["duplicate"]),
        (&json!(3), &json!(true))
    );
    let c = expect_json(&fx.show("contribution", "3"));
    assert_eq!(
        (&c["byte_size"], &c["token_count"]),
        (&json!(12), &json!(12))
    );

    // verify --content: the data directory, its content/ or content/sha256/.
    let (export, _) = fx.export();
    let verify = |dir: &Path| {
        fx.run([
            "verify",
            p(&export),
            "--key",
            fx.vkey.as_str(),
            "--content",
            p(dir),
        ])
    };
    for dir in [
        fx.data.clone(),
        fx.data.join("content"),
        fx.data.join("content/sha256"),
    ] {
        let report = expect_json(&verify(&dir));
        assert_eq!(report["tree_size"], 4);
        assert_eq!(
            report["content"],
            json!({ "contributions_checked": 2, "content_bytes": n + 12 })
        );
    }
    std::fs::write(&blob, "my own poeM\n").unwrap();
    let msg = expect_err(&verify(&fx.data), "E_CONTENT_CORRUPT");
    assert!(msg.contains("at record 3"), "{msg}");
    std::fs::remove_file(&blob).unwrap();
    let msg = expect_err(&verify(&fx.data), "E_CONTENT_MISSING");
    assert!(msg.contains("at record 3"), "{msg}");
    // Without --content, only the log is verified.
    let report = expect_json(&fx.verify(&export, &fx.vkey));
    assert!(report.get("content").is_none(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// 7. show
// ---------------------------------------------------------------------------------------------

/// Remove the licence `effective` terms from a shown entity (checked by the licence tests) after
/// checking that an unlicensed entity reports itself as such.
fn take_effective(shown: &mut Value, label: &str) {
    let effective = shown
        .as_object_mut()
        .unwrap()
        .remove("effective")
        .expect("effective terms shown");
    let unlicensed: Vec<&str> = effective["unlicensed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(unlicensed.contains(&label), "{label} in {unlicensed:?}");
}

#[test]
fn show_prints_derived_state() {
    let s = Standard::build();
    let fx = &s.fx;

    let alice = expect_json(&fx.show("actor", "alice"));
    assert_eq!(
        alice,
        json!({ "handle": "alice", "name": "Alice Example", "public_key": s.alice.1,
                "url": "https://alice.example", "registered_at": 0, "registered_ts_ms": TS })
    );
    let bob = expect_json(&fx.show("actor", "bob"));
    assert_eq!(
        bob,
        json!({ "handle": "bob", "name": "Bob Example", "public_key": s.bob.1,
                "payout_address": "IBAN DE00 0000", "registered_at": 1, "registered_ts_ms": TS + 1 })
    );
    let carol = expect_json(&fx.show("actor", "carol"));
    assert_eq!(carol["public_key"], s.carol.1.as_str());

    let mut verse = expect_json(&fx.show("dataset", "alice/verse"));
    take_effective(&mut verse, "dataset alice/verse");
    assert_eq!(
        verse,
        json!({ "dataset_id": "alice/verse", "owner": "alice", "name": "Verse",
                "description": "Old poems.\nLine two.", "access": "open",
                "created_at": 2, "created_ts_ms": TS + 2, "contributions": [3, 4],
                "contributors": { "alice": 1, "bob": 1 }, "total_bytes": 16, "total_tokens": 16 })
    );
    let mut pairs = expect_json(&fx.show("dataset", "bob/pairs"));
    take_effective(&mut pairs, "dataset bob/pairs");
    assert_eq!(
        pairs,
        json!({ "dataset_id": "bob/pairs", "owner": "bob", "name": "Bob's pairs",
                "access": "allowlist", "allowlist": ["alice"],
                "created_at": 6, "created_ts_ms": TS + 6, "contributions": [10],
                "contributors": { "alice": 1 }, "total_bytes": 4, "total_tokens": 4 })
    );

    let mut base = expect_json(&fx.show("model", "alice/base"));
    take_effective(&mut base, "model alice/base");
    assert_eq!(
        base,
        json!({ "model_id": "alice/base", "owner": "alice", "name": "Alice base",
                "parents": [], "children": ["bob/tuned"], "ancestors": [],
                "datasets": ["alice/verse"], "artifacts": s.records[5]["body"]["artifacts"],
                "registered_at": 5, "registered_ts_ms": TS + 5 })
    );
    let mut tuned = expect_json(&fx.show("model", "bob/tuned"));
    take_effective(&mut tuned, "model bob/tuned");
    assert_eq!(
        tuned,
        json!({ "model_id": "bob/tuned", "owner": "bob", "name": "Bob tuned",
                "parents": [{ "model_id": "alice/base", "relation": "finetune" }],
                "children": ["bob/tuned-q4"], "ancestors": ["alice/base"],
                "datasets": ["bob/pairs"], "artifacts": [],
                "registered_at": 7, "registered_ts_ms": TS + 7 })
    );
    let mut q4 = expect_json(&fx.show("model", "bob/tuned-q4"));
    take_effective(&mut q4, "model bob/tuned-q4");
    assert_eq!(
        q4,
        json!({ "model_id": "bob/tuned-q4", "owner": "bob", "name": "Bob tuned, 4-bit",
                "parents": [{ "model_id": "bob/tuned", "relation": "quantized" }],
                "children": [], "ancestors": ["bob/tuned", "alice/base"],
                "datasets": [], "artifacts": [],
                "registered_at": 8, "registered_ts_ms": TS + 8 })
    );

    let c3 = expect_json(&fx.show("contribution", "3"));
    assert_eq!(
        c3,
        json!({ "index": 3, "dataset_id": "alice/verse", "contributor": "alice",
                "content_hash": content_hash("poem one"), "byte_size": 8, "token_count": 8,
                "media_type": "text/plain", "title": "Poem one", "ts_ms": TS + 3 })
    );
    let c4 = expect_json(&fx.show("contribution", "4"));
    assert_eq!(
        c4,
        json!({ "index": 4, "dataset_id": "alice/verse", "contributor": "bob",
                "content_hash": content_hash("poem two"), "byte_size": 8, "token_count": 8,
                "ts_ms": TS + 4 })
    );
}

#[test]
fn show_unknown_ids_are_not_found() {
    let s = Standard::build();
    let fx = &s.fx;
    for (what, id) in [
        ("actor", "zed"),
        ("actor", "Alice"),
        ("actor", "alice/verse"),
        ("dataset", "alice/nothing"),
        ("dataset", "alice"),
        ("model", "alice/verse"),
        ("model", "bob"),
        ("contribution", "0"),  // an actor registration, not a contribution
        ("contribution", "5"),  // a model
        ("contribution", "99"), // beyond the log
        ("contribution", "three"),
    ] {
        let msg = expect_err(&fx.show(what, id), "E_NOT_FOUND");
        assert!(
            msg.contains(what) && msg.contains(&format!("{id:?}")),
            "{what} {id}: {msg}"
        );
    }
    // An unknown entity type is a usage error (exit status 2).
    let out = fx.show("licence", "x");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

// ---------------------------------------------------------------------------------------------
// 8. demo
// ---------------------------------------------------------------------------------------------

#[test]
fn demo_builds_and_verifies_a_ledger() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("demo");
    let out = shoulders_in(tmp.path(), ["demo", "--no-serve", "--data-dir", p(&dir)]);
    let text = expect_ok(&out);
    assert!(text.contains("verified"), "{text}");
    assert!(
        !text.contains("serving"),
        "--no-serve serves nothing: {text}"
    );
    // The key the explorer's "try it" box uses is a real gateway key for the payer.
    let key = std::fs::read_to_string(dir.join("demo-api-key.txt")).unwrap();
    let keys = shoulders_server::apikeys::open_store(&dir, None, false).unwrap();
    let row = shoulders_server::apikeys::lookup(&*keys, key.trim()).unwrap();
    assert_eq!(row.unwrap().actor, "erin");
    assert!(text.contains(key.trim()), "{text}");
    assert!(text.contains("refused  E_CONTRIBUTION_FORBIDDEN"), "{text}");
    assert!(text.contains("refused  E_CONTENT_MISSING"), "{text}");
    assert!(text.contains("(duplicate: true)"), "{text}");
    assert!(text.contains("settled 200 usage receipts"), "{text}");
    assert!(text.contains("refused  E_USE_DENIED"), "{text}");
    assert!(text.contains("held in the unclaimed pool"), "{text}");
    // The governance walk-through: escrow while disputed, then credit follows the ruling.
    assert!(text.contains("alice disputes"), "{text}");
    assert!(text.contains("held in @escrow/"), "{text}");
    assert!(
        text.contains("in all) go to alice; frank holds 0.000000 USD"),
        "{text}"
    );
    assert!(text.contains("frank 0.000000 USD"), "{text}");
    assert!(text.contains("refused  E_TDM_RESERVED"), "{text}");
    assert!(
        text.contains("deposits minus withdrawals: conserved"),
        "{text}"
    );
    assert!(
        text.contains("dave/verse-instruct-q4: dave/verse-instruct <- carol-lab/verse-base"),
        "{text}"
    );

    // What it left behind is a normal ledger the other commands can read.
    let vkey = std::fs::read_to_string(dir.join("log.pub")).unwrap();
    assert!(
        text.contains(&format!("verifier {}", vkey.trim_end())),
        "{text}"
    );
    let run = |args: &[&str]| shoulders_in(tmp.path(), args);
    let report = expect_json(&run(&[
        "verify",
        p(&dir.join("export.txt")),
        "--key",
        p(&dir.join("log.pub")),
    ]));
    assert_eq!(
        report,
        json!({ "origin": report["origin"], "tree_size": 250, "root_hash": report["root_hash"],
                "actors": 7, "datasets": 4, "models": 4, "contributions": 11,
                "receipts": 215, "legs": report["legs"] })
    );
    assert!(report["origin"]
        .as_str()
        .unwrap()
        .starts_with("demo.shoulders.local/log-"));
    // Every contribution's content is in the demo's content store.
    let with_content = expect_json(&run(&[
        "verify",
        p(&dir.join("export.txt")),
        "--key",
        p(&dir.join("log.pub")),
        "--content",
        p(&dir),
    ]));
    assert_eq!(with_content["content"]["contributions_checked"], 11);
    let cp = expect_ok(&run(&["checkpoint", "--data-dir", p(&dir)]));
    let cp = parse_checkpoint(cp.as_bytes());
    assert_eq!(
        (cp.size, B64.encode(cp.root)),
        (250, report["root_hash"].as_str().unwrap().to_string())
    );
    assert!(
        text.contains(&format!("root {}", report["root_hash"].as_str().unwrap())),
        "{text}"
    );
    let model = expect_json(&run(&[
        "show",
        "--data-dir",
        p(&dir),
        "model",
        "dave/verse-instruct-q4",
    ]));
    assert_eq!(
        model["ancestors"],
        json!(["dave/verse-instruct", "carol-lab/verse-base"])
    );

    // Running it again on the same directory refuses.
    let out = shoulders_in(tmp.path(), ["demo", "--no-serve", "--data-dir", p(&dir)]);
    expect_err(&out, "E_ALREADY_INITIALISED");
}

#[test]
fn demo_without_a_directory_uses_the_temp_dir() {
    let tmp = TempDir::new().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shoulders"))
        .args(["demo", "--no-serve"])
        .env("TMPDIR", tmp.path())
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let text = expect_ok(&out);
    assert!(text.contains("verified"), "{text}");
    let made: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    let name = made[0].file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("shoulders-demo-"), "{name}");
    assert!(made[0].join("export.txt").is_file());
}

// ---------------------------------------------------------------------------------------------
// Usage errors
// ---------------------------------------------------------------------------------------------

#[test]
fn usage_errors_exit_with_status_2() {
    let tmp = TempDir::new().unwrap();
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["init"],
        vec!["submit", "--data-dir", "d"],
        vec!["proof", "inclusion", "--data-dir", "d"],
        vec!["show", "--data-dir", "d", "actor"],
        vec!["verify", "file"],
    ] {
        let out = shoulders_in(tmp.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", describe(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = shoulders_in(tmp.path(), ["--help"]);
    let help = expect_ok(&out);
    for cmd in [
        "init",
        "key",
        "submit",
        "checkpoint",
        "proof",
        "export",
        "verify",
        "show",
        "demo",
    ] {
        assert!(help.contains(cmd), "help lists {cmd}: {help}");
    }
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "nothing was created"
    );
}
