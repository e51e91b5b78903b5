//! Helpers shared by the CLI's end-to-end tests that run the `shoulders` binary.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// Run the binary with `args`.
pub fn shoulders(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoulders"))
        .args(args)
        .output()
        .unwrap()
}

/// The JSON a successful command printed; panics with its stderr otherwise.
pub fn ok_json(out: Output) -> Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `shoulders submit` of `body` (written to a file in `dir`) as `kind`, signed with `key`.
pub fn submit_out(data: &Path, key: &Path, kind: &str, body: Value, dir: &Path) -> Output {
    let file = dir.join(format!("body-{}.json", rand::random::<u64>()));
    std::fs::write(&file, body.to_string()).unwrap();
    shoulders(&[
        "submit",
        "--data-dir",
        data.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--kind",
        kind,
        "--body",
        file.to_str().unwrap(),
    ])
}
