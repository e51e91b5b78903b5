//! Helpers shared by the CLI's end-to-end tests that run the `shoulders` binary.
#![allow(dead_code)]

use serde_json::Value;
use shoulders_record::{sign_record, ActorKey, Body, Kind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// A path as the `&str` command lines take.
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Now, in ms since the Unix epoch (record timestamps).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A record of `kind` signed by `key` for the tests' log origin, as bytes.
pub fn record(key: &ActorKey, id: &str, kind: Kind, body: Value) -> Vec<u8> {
    sign_record(
        key,
        "test.shoulders.local/log",
        id,
        now_ms(),
        Body::from_value(kind, body).unwrap(),
    )
    .unwrap()
    .bytes()
    .to_vec()
}

/// A `shoulders serve` process; killed when dropped.
pub struct Served {
    pub child: Child,
    pub base: String,
    pub started: Value,
    pub stderr: PathBuf,
}

impl Served {
    pub fn start(dir: &Path, name: &str, extra: &[&str]) -> Served {
        let mut args = vec!["serve", "--data-dir", p(dir), "--listen", "127.0.0.1:0"];
        args.extend(extra);
        Served::launch(dir.parent().unwrap(), name, &args)
    }

    /// `shoulders ARGS`, its stderr kept in `logs`.
    pub fn launch(logs: &Path, name: &str, args: &[&str]) -> Served {
        let stderr = logs.join(format!("{name}-{}.stderr", now_ms()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_shoulders"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        // The first thing printed is one (pretty-printed) JSON object naming the address.
        let mut out = serde_json::Deserializer::from_reader(child.stdout.take().unwrap())
            .into_iter::<Value>();
        let started = match out.next() {
            Some(Ok(v)) => v,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{name} did not start: {}",
                    std::fs::read_to_string(&stderr).unwrap()
                )
            }
        };
        Served {
            base: started["listening"].as_str().unwrap().to_string(),
            child,
            started,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        respond(ureq::get(&self.url(path)).call())
    }

    pub fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    }

    pub fn post(&self, path: &str, body: &[u8], token: Option<&str>) -> (u16, Value) {
        let mut req = ureq::post(&self.url(path)).set("content-type", "application/json");
        if let Some(t) = token {
            req = req.set("authorization", &format!("Bearer {t}"));
        }
        let (status, bytes) = respond(req.send_bytes(body));
        let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!("POST {path}: not JSON: {}", String::from_utf8_lossy(&bytes))
        });
        (status, v)
    }

    pub fn checkpoint(&self) -> Vec<u8> {
        let (status, note) = self.get("/api/checkpoint");
        assert_eq!(status, 200);
        note
    }

    pub fn size(&self) -> u64 {
        let note = String::from_utf8(self.checkpoint()).unwrap();
        note.lines().nth(1).unwrap().parse().unwrap()
    }

    /// SIGTERM, then wait: a clean stop exits 0 and says so.
    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        let err = std::fs::read_to_string(&self.stderr).unwrap();
        assert!(status.success(), "serve exited with {status}: {err}");
        assert!(err.contains("stopped cleanly"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        err
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status and body of a `ureq` call, error statuses included.
pub fn respond(r: Result<ureq::Response, ureq::Error>) -> (u16, Vec<u8>) {
    let resp = match r {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = resp.status();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut resp.into_reader(), &mut body).unwrap();
    (status, body)
}
