//! Helpers shared by the CLI's end-to-end tests that run the `shoulders` binary.
#![allow(dead_code)]

use serde_json::Value;
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
