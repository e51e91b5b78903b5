//! Helpers shared by the CLI's end-to-end tests that run the `shoulders` binary.
#![allow(dead_code)]

use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

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

/// A long-running `shoulders` process (`serve`, `witness serve`), killed when dropped, and the
/// JSON line it printed first (`{"listening": URL, ...}`).
pub struct Process {
    child: Child,
    pub started: Value,
}

impl Process {
    pub fn launch(args: &[&str]) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shoulders"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = serde_json::Deserializer::from_reader(child.stdout.take().unwrap())
            .into_iter::<Value>();
        let started = out.next().unwrap().unwrap();
        Process { child, started }
    }

    /// The URL it listens on.
    pub fn base(&self) -> String {
        self.started["listening"].as_str().unwrap().to_string()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
