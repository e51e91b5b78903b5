//! The release `shoulders` binary and a `shoulders serve` child process, shared by the
//! benchmarks that measure the server as an operator runs it (`scale`, `tiles`).

use shoulders_ledger::DataDir;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `target/release/shoulders`, beside the running benchmark (`target/release/deps/…`).
pub fn release_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("bench executable");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("shoulders");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --release -p shoulders-cli` first",
        bin.display()
    );
    bin
}

/// A `shoulders serve` process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `bin serve` on `dir` (a free local port, no rate limit) and wait until it answers
/// `/api/checkpoint`; returns the server and the seconds it took to get ready.
pub fn serve(bin: &Path, dir: &DataDir) -> (Server, f64) {
    serve_with(bin, dir, &[], "/api/checkpoint")
}

/// [`serve`] with `extra` flags, ready once `ready_path` answers 2xx (`/readyz` waits for
/// `--preload-index`).
pub fn serve_with(bin: &Path, dir: &DataDir, extra: &[&str], ready_path: &str) -> (Server, f64) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let child = Command::new(bin)
        .args([
            "serve",
            "--data-dir",
            dir.root().to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--rate-limit-per-s",
            "0",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::blocking::Client::new();
    while !client
        .get(format!("{}{ready_path}", server.url))
        .send()
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "serve never got ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, started.elapsed().as_secs_f64())
}
