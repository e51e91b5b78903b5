//! Issue 15, item 11: every command that reads a path it is given refuses `/dev/zero`, a FIFO
//! and a symbolic link (here to a 1 TiB sparse file) at once, with `E_NOT_A_REGULAR_FILE`,
//! instead of filling memory or waiting forever; nothing is appended and `verify` stays clean.
//! A model directory's FIFO and links leading outside it are skipped, not read.

#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Generous: a refused input answers in milliseconds; a hang would run until killed.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Run `shoulders` with a wall-clock limit: a command that hangs (a FIFO read) fails the test
/// instead of hanging it.
fn run(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_shoulders"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            panic!("shoulders {args:?} still running after {COMMAND_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn code_of(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    err.split_once("error[")
        .and_then(|(_, r)| r.split_once(']'))
        .map(|(c, _)| c.to_string())
        .unwrap_or_else(|| format!("<no code: status {:?}, {err}>", out.status.code()))
}

struct Hostile {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    key: PathBuf,
    vkey: String,
    inputs: Vec<(&'static str, PathBuf)>,
}

fn hostile() -> Hostile {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ledger");
    let out = run(&[
        "init",
        "--data-dir",
        p(&data),
        "--origin",
        "hostile.test/log",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vkey = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let key = tmp.path().join("alice.key");
    assert!(run(&["key", "new", "--out", p(&key)]).status.success());
    let fifo = tmp.path().join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let big = tmp.path().join("big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&big, &link).unwrap();
    Hostile {
        inputs: vec![
            ("/dev/zero", PathBuf::from("/dev/zero")),
            ("a FIFO", fifo),
            ("a link to 1 TiB", link),
        ],
        _tmp: tmp,
        data,
        key,
        vkey,
    }
}

#[test]
fn every_command_refuses_devices_fifos_and_links() {
    let h = hostile();
    let export = h.data.join("../export.jsonl");
    let clean = |h: &Hostile| {
        let out = run(&["export", "--data-dir", p(&h.data), "--out", p(&export)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = run(&["verify", p(&export), "--key", &h.vkey]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let before = clean(&h);
    let mut tried = 0;
    for (what, input) in &h.inputs {
        let i = p(input);
        let d = p(&h.data);
        let k = p(&h.key);
        let commands: Vec<Vec<&str>> = vec![
            vec!["verify", i, "--key", &h.vkey],
            vec!["verify", p(&export), "--key", i],
            vec![
                "contribute",
                "--data-dir",
                d,
                "--key",
                k,
                "--dataset",
                "alice/d",
                "--title",
                "t",
                i,
            ],
            vec![
                "submit",
                "--data-dir",
                d,
                "--key",
                k,
                "--kind",
                "actor.register",
                "--body",
                i,
            ],
            vec![
                "submit",
                "--data-dir",
                d,
                "--key",
                i,
                "--kind",
                "actor.register",
                "--body",
                i,
            ],
            vec!["settle", "--data-dir", d, "--key", k, i],
            vec![
                "attribute",
                "--data-dir",
                d,
                "--dataset",
                "alice/d",
                "--text",
                i,
            ],
        ];
        for args in commands {
            let started = Instant::now();
            let out = run(&args);
            assert_eq!(
                code_of(&out),
                "E_NOT_A_REGULAR_FILE",
                "{what}: shoulders {args:?}"
            );
            assert!(started.elapsed() < COMMAND_LIMIT);
            tried += 1;
        }
    }
    assert_eq!(tried, 21);
    assert_eq!(clean(&h), before, "nothing appended; verify clean");
}

#[test]
fn model_import_skips_special_files_and_links_outside() {
    let h = hostile();
    let model = h.data.join("../model");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("config.json"), b"{}").unwrap();
    std::fs::write(model.join("weights.bin"), b"weights").unwrap();
    for (n, (_, input)) in h.inputs.iter().enumerate() {
        std::os::unix::fs::symlink(input, model.join(format!("link{n}.bin"))).unwrap();
    }
    assert!(Command::new("mkfifo")
        .arg(model.join("pipe.bin"))
        .status()
        .unwrap()
        .success());
    // A link inside the directory is followed (as the file it names).
    std::os::unix::fs::symlink(model.join("weights.bin"), model.join("alias.bin")).unwrap();
    // What `model import` and `model check` hash: returns at once, without the FIFO, the
    // device or the link to a file outside.
    let mut progress = |_: u64| {};
    let scanned =
        shoulders_artifacts::scan_dir(&model, &mut (&mut progress as &mut dyn FnMut(u64))).unwrap();
    let mut paths: Vec<&str> = scanned.artifacts.iter().map(|a| a.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["alias.bin", "config.json", "weights.bin"]);
}
