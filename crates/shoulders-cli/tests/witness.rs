//! Real processes: `shoulders witness init|key|serve`, `shoulders serve --witness-policy` getting
//! its checkpoint cosigned at `/log/checkpoint`, and `shoulders verify --witness-policy
//! --checkpoint` accepting that checkpoint for the matching export and refusing it without the
//! quorum or for another tree.

mod common;

use common::{ok_json, shoulders, stderr, Process};
use serde_json::json;
use shoulders_ledger::{DataDir, Ledger};
use shoulders_record::{sign_record, ActorKey, Body, Kind};
use std::path::Path;
use std::time::{Duration, Instant};

const ORIGIN: &str = "witness.example/log";

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Append `n` records signed by a fresh actor `who`.
fn grow(dir: &DataDir, who: &str, n: usize) {
    let ledger = Ledger::open(dir).unwrap();
    let key = ActorKey::from_seed([who.as_bytes()[0]; 32]);
    let ts = shoulders_server::now_ms();
    let reg = Body::from_value(Kind::ActorRegister, json!({"handle": who, "name": who})).unwrap();
    ledger
        .submit(
            sign_record(&key, ORIGIN, who, ts, reg)
                .unwrap()
                .bytes()
                .to_vec(),
        )
        .unwrap();
    for i in 1..n {
        let body = json!({"dataset_id": format!("{who}/d{i}"), "name": "D", "access": "open"});
        let body = Body::from_value(Kind::DatasetCreate, body).unwrap();
        let rec = sign_record(&key, ORIGIN, &format!("d{i}"), ts, body).unwrap();
        ledger.submit(rec.bytes().to_vec()).unwrap();
    }
}

fn text_out(args: &[&str]) -> String {
    let out = shoulders(args);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_witness_process_cosigns_and_verify_demands_the_quorum() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ledger");
    text_out(&["init", "--data-dir", p(&data), "--origin", ORIGIN]);
    grow(&DataDir::new(&data), "ann", 3);

    // A witness: the key file is private, `witness key` prints what `init` printed.
    let wdir = tmp.path().join("w");
    let vkey = text_out(&["witness", "init", "--dir", p(&wdir), "--name", "w.example"]);
    assert!(vkey.starts_with("w.example+"), "{vkey}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(wdir.join("witness.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(text_out(&["witness", "key", "--dir", p(&wdir)]), vkey);
    let again = shoulders(&["witness", "init", "--dir", p(&wdir), "--name", "w.example"]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "a second init must not replace the key"
    );

    let log_pub = data.join("log.pub");
    let witness = Process::launch(&[
        "witness",
        "serve",
        "--dir",
        p(&wdir),
        "--listen",
        "127.0.0.1:0",
        "--log",
        p(&log_pub),
    ]);
    assert_eq!(witness.started["vkey"], vkey.as_str());
    let policy = tmp.path().join("policy.txt");
    std::fs::write(
        &policy,
        format!("witness {vkey} {}\nquorum 1\n", witness.base()),
    )
    .unwrap();

    let server = Process::launch(&[
        "serve",
        "--data-dir",
        p(&data),
        "--listen",
        "127.0.0.1:0",
        "--metering",
        "off",
        "--witness-policy",
        p(&policy),
    ]);
    let url = format!("{}/log/checkpoint", server.base());
    let deadline = Instant::now() + Duration::from_secs(15);
    let note = loop {
        if let Ok(r) = ureq::get(&url).call() {
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut r.into_reader(), &mut body).unwrap();
            break body;
        }
        assert!(Instant::now() < deadline, "never cosigned");
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(server);
    let cosigned = tmp.path().join("cosigned.txt");
    std::fs::write(&cosigned, &note).unwrap();

    let export = tmp.path().join("export.txt");
    text_out(&["export", "--data-dir", p(&data), "--out", p(&export)]);
    let verify = |policy: &Path, checkpoint: &Path| {
        shoulders(&[
            "verify",
            p(&export),
            "--key",
            p(&log_pub),
            "--witness-policy",
            p(policy),
            "--checkpoint",
            p(checkpoint),
        ])
    };
    let report = ok_json(verify(&policy, &cosigned));
    assert_eq!(report["tree_size"], 3);
    assert_eq!(report["witnesses"], json!(["w.example"]));

    // A policy that needs a second witness: refused for the quorum.
    let other = text_out(&[
        "witness",
        "init",
        "--dir",
        p(&tmp.path().join("w2")),
        "--name",
        "w2.example",
    ]);
    let two = tmp.path().join("two.txt");
    std::fs::write(&two, format!("witness {vkey}\nwitness {other}\nquorum 2\n")).unwrap();
    let out = verify(&two, &cosigned);
    assert!(
        stderr(&out).starts_with("error[E_WITNESS_QUORUM]"),
        "{}",
        stderr(&out)
    );

    // The log grew past the cosigned checkpoint: the export is not the cosigned tree.
    grow(&DataDir::new(&data), "bob", 1);
    text_out(&["export", "--data-dir", p(&data), "--out", p(&export)]);
    let out = verify(&policy, &cosigned);
    assert!(
        stderr(&out).starts_with("error[E_WITNESS_CHECKPOINT_MISMATCH]"),
        "{}",
        stderr(&out)
    );
    // A policy without the cosigned checkpoint is a usage error.
    let out = shoulders(&[
        "verify",
        p(&export),
        "--key",
        p(&log_pub),
        "--witness-policy",
        p(&policy),
    ]);
    assert_eq!(out.status.code(), Some(2));

    // A static mirror of the witnessed log: `publish --cosigned` writes the cosigned tree (3
    // records, though the ledger now holds 4) under the cosigned note, which a client that
    // demands the quorum follows from the directory alone.
    let mirror = tmp.path().join("mirror");
    let published = ok_json(shoulders(&[
        "publish",
        "--data-dir",
        p(&data),
        "--out",
        p(&mirror),
        "--cosigned",
    ]));
    assert_eq!(published["tree_size"], 3);
    assert_eq!(std::fs::read(mirror.join("checkpoint")).unwrap(), note);
    let verified = ok_json(shoulders(&[
        "verify",
        "--tiles",
        p(&mirror),
        "--key",
        p(&log_pub),
    ]));
    assert_eq!(verified["tree_size"], 3);
    let watched = shoulders(&[
        "watch",
        "--tiles",
        p(&mirror),
        "--key",
        p(&log_pub),
        "--witness-policy",
        p(&policy),
        "--polls",
        "1",
    ]);
    assert!(watched.status.success(), "{}", stderr(&watched));
    let out = shoulders(&[
        "watch",
        "--tiles",
        p(&mirror),
        "--key",
        p(&log_pub),
        "--witness-policy",
        p(&two),
        "--polls",
        "1",
    ]);
    assert!(
        stderr(&out).starts_with("error[E_WITNESS_QUORUM]"),
        "{}",
        stderr(&out)
    );
    // Later, the whole ledger under its own signature: the mirror grows to 4.
    let grown = ok_json(shoulders(&[
        "publish",
        "--data-dir",
        p(&data),
        "--out",
        p(&mirror),
    ]));
    assert_eq!(
        (grown["previous_size"].clone(), grown["tree_size"].clone()),
        (json!(3), json!(4))
    );
    // A ledger that no quorum ever cosigned has nothing to publish that way.
    let fresh = tmp.path().join("fresh");
    text_out(&[
        "init",
        "--data-dir",
        p(&fresh),
        "--origin",
        "fresh.example/log",
    ]);
    let out = shoulders(&[
        "publish",
        "--data-dir",
        p(&fresh),
        "--out",
        p(&tmp.path().join("none")),
        "--cosigned",
    ]);
    assert!(
        stderr(&out).starts_with("error[E_NOT_COSIGNED]"),
        "{}",
        stderr(&out)
    );
}
