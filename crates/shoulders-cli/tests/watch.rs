//! `shoulders watch` against a scripted server: an honest growing log passes; a rollback, a
//! fork at the same size, a fork that grew, a checkpoint from another key and a tampered note are
//! each detected with their code and exit status 1, also across a monitor restart (`--state`).

mod common;

use common::stderr;
use serde_json::json;
use shoulders_ledger::{init, DataDir, Ledger, Reader};
use shoulders_record::{sign_record, ActorKey, Body, Kind};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// Append `n` records from a fresh actor (named `who`) to the ledger in `dir`.
fn grow(dir: &DataDir, who: &str, n: usize) {
    let ledger = Ledger::open(dir).unwrap();
    let key = ActorKey::from_seed([who.len() as u8 + who.as_bytes()[0]; 32]);
    let reg = sign_record(
        &key,
        "watch.example/log",
        "reg",
        1,
        Body::from_value(Kind::ActorRegister, json!({"handle": who, "name": who})).unwrap(),
    )
    .unwrap();
    ledger.submit(reg.bytes().to_vec()).unwrap();
    for i in 1..n {
        let body = json!({"dataset_id": format!("{who}/d{i}"), "name": "D", "access": "open"});
        let rec = sign_record(
            &key,
            "watch.example/log",
            &format!("d{i}"),
            1,
            Body::from_value(Kind::DatasetCreate, body).unwrap(),
        )
        .unwrap();
        ledger.submit(rec.bytes().to_vec()).unwrap();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Each poll gets the next scripted checkpoint; proofs come from the ledger that served it.
type Script = Arc<Mutex<(Vec<(Vec<u8>, DataDir)>, usize)>>;

fn serve(script: Script) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            let body = {
                let mut s = script.lock().unwrap();
                if path == "/api/checkpoint" || path == "/log/checkpoint" {
                    let i = s.1.min(s.0.len() - 1);
                    s.1 += 1;
                    s.0[i].0.clone()
                } else {
                    let q: std::collections::BTreeMap<&str, u64> = path
                        .split_once('?')
                        .unwrap()
                        .1
                        .split('&')
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').unwrap();
                            (k, v.parse().unwrap())
                        })
                        .collect();
                    let dir = &s.0[s.1.saturating_sub(1)].1;
                    serde_json::to_vec(
                        &Reader::open(dir)
                            .unwrap()
                            .consistency_proof(q["old"], q["new"])
                            .unwrap(),
                    )
                    .unwrap()
                }
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(&body));
        }
    });
    url
}

fn watch(url: &str, key: &str, polls: usize, state: Option<&Path>) -> Output {
    watch_with(url, key, polls, state, &[])
}

fn watch_with(url: &str, key: &str, polls: usize, state: Option<&Path>, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shoulders"));
    cmd.args([
        "watch",
        "--url",
        url,
        "--key",
        key,
        "--interval-ms",
        "1",
        "--polls",
        &polls.to_string(),
    ]);
    if let Some(s) = state {
        cmd.args(["--state", s.to_str().unwrap()]);
    }
    cmd.args(extra);
    cmd.output().unwrap()
}

fn run_script(key: &str, steps: Vec<(Vec<u8>, DataDir)>, state: Option<&Path>) -> Output {
    let n = steps.len();
    let url = serve(Arc::new(Mutex::new((steps, 0))));
    watch(&url, key, n, state)
}

fn assert_alert(out: &Output, code: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr(out).starts_with(&format!("error[{code}]")),
        "{}",
        stderr(out)
    );
}

#[test]
fn watch_detects_rollback_forks_and_bad_signatures() {
    let tmp = tempfile::TempDir::new().unwrap();
    let a = DataDir::new(tmp.path().join("a"));
    let vkey = init(&a, "watch.example/log", &mut rand_core::OsRng).unwrap();
    grow(&a, "ann", 4);
    // b is a copy of a at size 4, the same log key: the operator can sign both histories.
    let b = DataDir::new(tmp.path().join("b"));
    copy_dir(a.root(), b.root());
    grow(&a, "ben", 3);
    grow(&b, "bob", 3);
    let ra = Reader::open(&a).unwrap();
    let rb = Reader::open(&b).unwrap();
    let cp = |r: &Reader, n: u64| r.checkpoint_at(n).unwrap();
    assert_eq!((ra.size(), rb.size()), (7, 7));

    // An honest, growing log: three polls, three verified steps.
    let out = run_script(
        &vkey,
        vec![
            (cp(&ra, 2), a.clone()),
            (cp(&ra, 4), a.clone()),
            (cp(&ra, 7), a.clone()),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("\"ok\": true")
            .count(),
        3
    );

    // Rollback.
    assert_alert(
        &run_script(
            &vkey,
            vec![(cp(&ra, 7), a.clone()), (cp(&ra, 5), a.clone())],
            None,
        ),
        "E_WATCH_ROLLBACK",
    );
    // Fork at the same size: two roots for size 7, both validly signed.
    assert_alert(
        &run_script(
            &vkey,
            vec![(cp(&ra, 7), a.clone()), (cp(&rb, 7), b.clone())],
            None,
        ),
        "E_WATCH_FORK",
    );
    // Fork that grew: the larger tree does not contain the one seen before.
    assert_alert(
        &run_script(
            &vkey,
            vec![(cp(&ra, 5), a.clone()), (cp(&rb, 7), b.clone())],
            None,
        ),
        "E_WATCH_FORK",
    );
    // Before the fork point both histories agree: no alert.
    let out = run_script(
        &vkey,
        vec![(cp(&ra, 3), a.clone()), (cp(&rb, 4), b.clone())],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // A checkpoint signed by another log's key, and a tampered note.
    let c = DataDir::new(tmp.path().join("c"));
    init(&c, "watch.example/log", &mut rand_core::OsRng).unwrap();
    grow(&c, "cat", 2);
    let rc = Reader::open(&c).unwrap();
    assert_alert(
        &run_script(&vkey, vec![(cp(&rc, 2), c.clone())], None),
        "E_CHECKPOINT_SIGNATURE",
    );
    let mut tampered = cp(&ra, 7);
    let at = tampered.iter().position(|b| *b == b'\n').unwrap() + 1;
    tampered[at] = if tampered[at] == b'7' { b'8' } else { b'7' };
    let out = run_script(&vkey, vec![(tampered, a.clone())], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error[E_CHECKPOINT"),
        "{}",
        stderr(&out)
    );

    // A restarted monitor remembers what it verified: a later rollback is still caught.
    let state = tmp.path().join("watch.state");
    assert!(
        run_script(&vkey, vec![(cp(&ra, 7), a.clone())], Some(&state))
            .status
            .success()
    );
    assert_alert(
        &run_script(&vkey, vec![(cp(&ra, 6), a.clone())], Some(&state)),
        "E_WATCH_ROLLBACK",
    );
    assert_alert(
        &run_script(&vkey, vec![(cp(&rb, 7), b.clone())], Some(&state)),
        "E_WATCH_FORK",
    );
}

/// The note's text (what a witness cosigns): everything before the blank line, with its newline.
fn note_text(note: &[u8]) -> Vec<u8> {
    let end = note.windows(2).position(|w| w == b"\n\n").unwrap();
    note[..=end].to_vec()
}

/// With `--witness-policy` the monitor reads `/log/checkpoint`, accepts only a checkpoint a
/// quorum cosigned, and calls a cosigned checkpoint that does not extend the last cosigned one
/// a split view (witnesses that signed both histories: collusion or a key compromise).
#[test]
fn watch_with_a_witness_policy_demands_a_quorum_and_reports_a_cosigned_split_view() {
    use shoulders_log::{add_cosignatures, Cosigner};
    let tmp = tempfile::TempDir::new().unwrap();
    let a = DataDir::new(tmp.path().join("a"));
    let vkey = init(&a, "watch.example/log", &mut rand_core::OsRng).unwrap();
    grow(&a, "ann", 4);
    let b = DataDir::new(tmp.path().join("b"));
    copy_dir(a.root(), b.root());
    grow(&a, "ben", 3);
    grow(&b, "bob", 3);
    let ra = Reader::open(&a).unwrap();
    let rb = Reader::open(&b).unwrap();
    let keys: Vec<(String, String)> = (0..3)
        .map(|i| Cosigner::generate(&mut rand_core::OsRng, &format!("w{i}.example")).unwrap())
        .collect();
    let policy = tmp.path().join("witnesses.txt");
    std::fs::write(
        &policy,
        format!(
            "witness {} http://127.0.0.1:1\nwitness {} http://127.0.0.1:2\nwitness {}\nquorum 2\n",
            keys[0].1, keys[1].1, keys[2].1
        ),
    )
    .unwrap();
    let cosigned = |r: &Reader, n: u64, by: &[usize]| {
        let note = r.checkpoint_at(n).unwrap();
        let lines: Vec<Vec<u8>> = by
            .iter()
            .map(|&i| {
                Cosigner::new(&keys[i].0)
                    .unwrap()
                    .cosign(&note_text(&note), 1_700_000_000)
            })
            .collect();
        add_cosignatures(&note, &lines).unwrap()
    };
    let flags = ["--witness-policy", policy.to_str().unwrap()];
    let run = |steps: Vec<(Vec<u8>, DataDir)>| {
        let n = steps.len();
        let url = serve(Arc::new(Mutex::new((steps, 0))));
        watch_with(&url, &vkey, n, None, &flags)
    };

    // A quorum on every step: accepted, and the report names the witnesses.
    let out = run(vec![
        (cosigned(&ra, 4, &[0, 1]), a.clone()),
        (cosigned(&ra, 7, &[1, 2]), a.clone()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("w2.example"));

    // One cosignature, or none: refused, even though the log's own signature is good.
    assert_alert(
        &run(vec![(cosigned(&ra, 7, &[0]), a.clone())]),
        "E_WITNESS_QUORUM",
    );
    assert_alert(
        &run(vec![(cosigned(&ra, 7, &[]), a.clone())]),
        "E_WITNESS_QUORUM",
    );
    // A cosignature over another checkpoint is refused outright.
    let mut forged = cosigned(&ra, 7, &[0]);
    let wrong = Cosigner::new(&keys[1].0)
        .unwrap()
        .cosign(&note_text(&ra.checkpoint_at(6).unwrap()), 1);
    forged = add_cosignatures(&forged, &[wrong]).unwrap();
    assert_alert(&run(vec![(forged, a.clone())]), "E_COSIGNATURE_INVALID");

    // Both histories cosigned by a quorum: a split view, with its own code.
    assert_alert(
        &run(vec![
            (cosigned(&ra, 5, &[0, 1]), a.clone()),
            (cosigned(&rb, 7, &[1, 2]), b.clone()),
        ]),
        "E_WITNESS_SPLIT_VIEW",
    );
    // Without a quorum the forked checkpoint is refused for the quorum first.
    assert_alert(
        &run(vec![
            (cosigned(&ra, 5, &[0, 1]), a.clone()),
            (cosigned(&rb, 7, &[2]), b.clone()),
        ]),
        "E_WITNESS_QUORUM",
    );
}
