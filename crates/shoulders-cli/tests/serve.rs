//! `shoulders serve` as real processes on ephemeral ports: the writer on a PostgreSQL ledger
//! (signed writes, reads, proofs, a metered gateway call, a clean stop), and `serve
//! --read-only` nodes following a writer on PostgreSQL (two of them, through the writer's stop
//! and restart) and on SQLite (the same data directory); `serve --config FILE` (the file
//! standing for the flags, a flag replacing its key, an unknown key refused before anything
//! starts).

mod common;

use common::{now_ms, ok_json, p, record, respond, shoulders, stderr, Served};
use serde_json::{json, Value};
use shoulders_ledger::{init, init_with, ContentStore, DataDir, Ledger, OperatorInit};
use shoulders_record::{ActorKey, Kind};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const DOCS: [&str; 2] = [
    "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate.\n",
    "The woods are lovely, dark and deep,\nBut I have promises to keep.\n",
];
/// How long a read node may take to show a committed record before the test fails. Generous
/// (the expected lag is one poll interval plus a fold); the measured lag is printed.
const FOLLOW_DEADLINE: Duration = Duration::from_secs(15);

/// Run the binary for a command expected to fail at once; killed (exit 124) if it does not.
fn bounded(args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .arg("30")
        .arg(env!("CARGO_BIN_EXE_shoulders"))
        .args(args)
        .output()
        .unwrap()
}

/// Poll `f` until it holds; returns how long that took. Panics after [`FOLLOW_DEADLINE`].
fn wait_until(what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < FOLLOW_DEADLINE,
            "{what}: not within {FOLLOW_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

fn hashes(proof: &Value) -> Vec<shoulders_log::Hash> {
    proof["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| shoulders_log::Hash::parse_hash(h.as_str().unwrap()).unwrap())
        .collect()
}

/// Check `node`'s checkpoint with the log's verifier key, and that record `index` (whose exact
/// bytes it serves) is included in that checkpoint's tree by the proof it serves.
fn assert_proven(node: &Served, vkey: &str, index: u64, bytes: &[u8]) -> u64 {
    let verifier = shoulders_log::LogVerifier::new(vkey).unwrap();
    let cp = verifier.open(&node.checkpoint()).unwrap();
    let (status, served) = node.get(&format!("/api/records/{index}"));
    assert_eq!((status, served.as_slice()), (200, bytes));
    let proof = node.get_json(&format!(
        "/api/proofs/inclusion?index={index}&size={}",
        cp.size
    ));
    shoulders_log::verify_inclusion(
        &hashes(&proof),
        index,
        cp.size,
        shoulders_log::leaf_hash(bytes),
        cp.root,
    )
    .unwrap();
    cp.size
}

/// The ledger every test serves: an operator, alice (a verse dataset with two documents, its
/// index, a priced model on it) and bob (a payer with a deposit and an API key). `database`:
/// a PostgreSQL URL, or `None` for SQLite in the data directory.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    vkey: String,
    bob: ActorKey,
    token: String,
}

/// Open the writer that `init_with` just closed. The tests of this file spawn `shoulders serve`
/// processes concurrently: a child forked by another test in the instant between fork and exec
/// still holds a copy of every open descriptor, this ledger's lock file included (close-on-exec
/// closes it only at the exec), so the lock can look taken for a moment. Retry briefly.
fn open_writer(dir: &std::path::Path) -> Ledger {
    for _ in 0..100 {
        match Ledger::open(&DataDir::new(dir)) {
            Err(shoulders_ledger::LedgerError::Locked(_)) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other.unwrap(),
        }
    }
    panic!("{} stayed locked for 2 s", dir.display())
}

fn fixture(database: Option<&str>) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("writer");
    let mut data = DataDir::new(&dir);
    if let Some(url) = database {
        data = data.with_database(shoulders_ledger::StoreLocation::parse(url).unwrap());
    }
    let operator = OperatorInit {
        handle: "op".into(),
        name: "Operator".into(),
        protocol_fee_bps: 250,
        ts_ms: now_ms(),
    };
    let vkey = init_with(
        &data,
        "test.shoulders.local/log",
        Some(&operator),
        &mut rand_core::OsRng,
    )
    .unwrap();
    let op = ActorKey::from_file_text(&std::fs::read_to_string(dir.join("operator.key")).unwrap())
        .unwrap();
    let alice = ActorKey::generate(&mut rand_core::OsRng);
    let bob = ActorKey::generate(&mut rand_core::OsRng);
    let ledger = open_writer(&dir);
    let submit = |key: &ActorKey, id: &str, kind: Kind, body: Value| {
        ledger.submit(record(key, id, kind, body)).unwrap();
    };
    submit(
        &alice,
        "a",
        Kind::ActorRegister,
        json!({"handle": "alice", "name": "Alice"}),
    );
    submit(
        &bob,
        "b",
        Kind::ActorRegister,
        json!({"handle": "bob", "name": "Bob"}),
    );
    submit(
        &alice,
        "ds",
        Kind::DatasetCreate,
        json!({"dataset_id": "alice/verse", "name": "Verse", "access": "open"}),
    );
    let content = ContentStore::new(&DataDir::new(&dir));
    for (i, doc) in DOCS.iter().enumerate() {
        let hash = content.put(doc.as_bytes()).unwrap();
        submit(
            &alice,
            &format!("c{i}"),
            Kind::DataContribute,
            json!({"dataset_id": "alice/verse", "content_hash": hash,
                   "byte_size": doc.len(), "token_count": doc.len()}),
        );
    }
    let (name, spdx, terms) = shoulders_license::preset("apache-2.0").unwrap();
    let mut terms = serde_json::to_value(terms).unwrap();
    terms["price_per_call_micros"] = json!("1000");
    submit(
        &alice,
        "lic",
        Kind::LicenseDefine,
        json!({"license_id": "alice/priced", "name": name, "spdx_id": spdx, "terms": terms}),
    );
    submit(
        &alice,
        "m",
        Kind::ModelRegister,
        json!({"model_id": "alice/verse-priced", "name": "Verse", "datasets": ["alice/verse"],
               "license_id": "alice/priced"}),
    );
    submit(
        &op,
        "dep",
        Kind::FundsDeposit,
        json!({"account": "bob", "currency": "USD", "amount_micros": "100000"}),
    );
    drop(ledger);
    ok_json(shoulders(&[
        "index",
        "build",
        "--data-dir",
        p(&dir),
        "alice/verse",
    ]));
    let mut keys = shoulders_server::apikeys::open_store(&dir, None, true).unwrap();
    let (token, _) = shoulders_server::apikeys::issue(
        &mut *keys,
        "bob",
        &shoulders_server::apikeys::KeyLimits::default(),
        now_ms(),
        &mut rand_core::OsRng,
    )
    .unwrap();
    drop(keys);
    Fixture {
        _tmp: tmp,
        dir,
        vkey,
        bob,
        token,
    }
}

/// A read node's data directory, as README says: the log keys and the database location
/// (PostgreSQL), plus the attribution indexes it serves (the API keys its attribute route
/// checks are in the shared database).
fn read_node_dir(f: &Fixture, name: &str) -> PathBuf {
    let dir = f.dir.parent().unwrap().join(name);
    std::fs::create_dir(&dir).unwrap();
    for file in ["log.key", "log.pub", "database.url"] {
        std::fs::copy(f.dir.join(file), dir.join(file)).unwrap();
    }
    let out = Command::new("cp")
        .args(["-r", p(&f.dir.join("indexes")), p(&dir)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    dir
}

fn new_dataset(f: &Fixture, id: &str) -> Vec<u8> {
    record(
        &f.bob,
        &format!("ds-{id}"),
        Kind::DatasetCreate,
        json!({"dataset_id": format!("bob/{id}"), "name": "Notes", "access": "owner"}),
    )
}

#[test]
fn serve_runs_a_postgres_ledger() {
    let f = fixture(Some(&shoulders_pgtest::fresh_database_url()));
    let writer = Served::start(&f.dir, "writer", &[]);
    assert_eq!(writer.started["metering"], "on");
    assert_eq!(writer.started["read_only"], false);
    let size = writer.size();

    // A signed write, read back byte for byte and proven against the signed checkpoint.
    let rec = new_dataset(&f, "notes");
    let (status, v) = writer.post("/api/records", &rec, None);
    assert_eq!((status, &v["index"]), (201, &json!(size)), "{v}");
    assert_eq!(assert_proven(&writer, &f.vkey, size, &rec), size + 1);
    let (status, v) = writer.post("/api/records", &rec, None);
    assert_eq!((status, &v["duplicate"]), (200, &json!(true)), "{v}");
    assert_eq!(writer.get_json("/api/datasets/bob/notes")["owner"], "bob");
    let consistency = writer.get_json(&format!("/api/proofs/consistency?old=1&new={}", size + 1));
    assert_eq!(consistency["new_size"], size + 1);

    // A metered call: generated from the index, attributed, its receipt appended first.
    let (status, v) = writer.post(
        "/v1/completions",
        json!({"model": "alice/verse-priced", "prompt": "Shall I", "max_tokens": 40})
            .to_string()
            .as_bytes(),
        Some(&f.token),
    );
    assert_eq!(status, 200, "{v}");
    let receipt = &v["shoulders"]["receipt"];
    assert_eq!(receipt["index"], size + 1, "{v}");
    let r = writer.get_json(&format!("/api/records/{}", size + 1));
    assert_eq!(
        (r["kind"].as_str(), &r["body"]["payer"]),
        (Some("usage.receipt"), &json!("bob"))
    );
    assert_eq!(writer.get_json("/api/accounts")["conserved"], true);
    let (status, page) = writer.get("/");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("try-form"));

    // A clean stop (the blocking PostgreSQL client is closed off the async runtime), and
    // everything acknowledged is there for the next process.
    writer.stop();
    let out = shoulders(&["checkpoint", "--data-dir", p(&f.dir)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("\n{}\n", size + 2)));
}

/// The write routes of a read node refuse with `E_READ_ONLY` before doing any work: not even
/// the body is looked at, and nothing reaches the log.
fn assert_refuses_writes(node: &Served, f: &Fixture, rec: &[u8]) {
    let gateway = json!({"model": "alice/verse-priced", "prompt": "Shall I", "max_tokens": 20});
    let contribution = json!({"record": String::from_utf8_lossy(rec), "content": "text"});
    for (path, body, token) in [
        ("/api/records", rec.to_vec(), None),
        ("/api/records", b"not even JSON".to_vec(), None),
        (
            "/api/contributions",
            contribution.to_string().into_bytes(),
            None,
        ),
        (
            "/v1/completions",
            gateway.to_string().into_bytes(),
            Some(f.token.as_str()),
        ),
        (
            "/v1/chat/completions",
            gateway.to_string().into_bytes(),
            Some(f.token.as_str()),
        ),
        ("/v1/completions", gateway.to_string().into_bytes(), None),
    ] {
        let (status, v) = node.post(path, &body, token);
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (403, Some("E_READ_ONLY")),
            "{path}: {v}"
        );
        assert_eq!(
            v["error"]["message"],
            "this node serves reads only; send writes to the writer node"
        );
    }
}

/// What a read node serves besides records and proofs: state, the explorer, the model list,
/// attribution from its own index directory.
fn assert_serves_reads(node: &Served, token: &str) {
    assert_eq!(node.started["read_only"], true);
    assert_eq!(node.started["metering"], "off");
    assert_eq!(
        node.get_json("/api/models/alice/verse-priced")["owner"],
        "alice"
    );
    let models = node.get_json("/v1/models");
    assert_eq!(models["data"][0]["id"], "alice/verse-priced");
    let (status, page) = node.get("/");
    assert_eq!(status, 200);
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("This node serves reads only"), "{page}");
    assert!(!page.contains("try-form"));
    let (status, v) = node.post(
        "/api/attribute",
        json!({"dataset_id": "alice/verse", "text": "Shall I compare thee to a summer's day?"})
            .to_string()
            .as_bytes(),
        Some(token),
    );
    assert_eq!(status, 200, "{v}");
    assert!(!v["spans"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn read_only_nodes_follow_a_postgres_writer() {
    let f = fixture(Some(&shoulders_pgtest::fresh_database_url()));
    let writer = Served::start(&f.dir, "writer", &[]);
    let (dir1, dir2) = (read_node_dir(&f, "read1"), read_node_dir(&f, "read2"));
    let read1 = Served::start(&dir1, "read1", &["--read-only"]);
    let read2 = Served::start(
        &dir2,
        "read2",
        &["--read-only", "--follow-interval-ms", "100"],
    );
    for node in [&read1, &read2] {
        assert_serves_reads(node, &f.token);
        assert_eq!(node.checkpoint(), writer.checkpoint());
    }

    // Signed records go to the writer; both read nodes show them: records, state, a checkpoint
    // of the same tree (the same bytes: the same key signs the same tree head), proofs.
    let base = writer.size();
    let verifier = shoulders_log::LogVerifier::new(&f.vkey).unwrap();
    let old = verifier.open(&writer.checkpoint()).unwrap();
    let recs: Vec<Vec<u8>> = (0..3).map(|i| new_dataset(&f, &format!("n{i}"))).collect();
    for rec in &recs {
        let (status, v) = writer.post("/api/records", rec, None);
        assert_eq!(status, 201, "{v}");
    }
    let size = base + 3;
    // From the writer's last acknowledgement, poll both nodes until each shows it.
    let nodes = [("read1 (250 ms)", &read1), ("read2 (100 ms)", &read2)];
    let start = Instant::now();
    let mut lags: [Option<Duration>; 2] = [None, None];
    wait_until("both read nodes", || {
        for (lag, (_, node)) in lags.iter_mut().zip(nodes) {
            if lag.is_none() && node.size() == size {
                *lag = Some(start.elapsed());
            }
        }
        lags.iter().all(Option::is_some)
    });
    for ((name, node), lag) in nodes.into_iter().zip(lags) {
        let lag = lag.unwrap();
        println!("{name}: showed the writer's last record {lag:?} after its acknowledgement");
        assert_eq!(node.checkpoint(), writer.checkpoint());
        for (i, rec) in recs.iter().enumerate() {
            assert_eq!(assert_proven(node, &f.vkey, base + i as u64, rec), size);
        }
        let listed = node.get_json(&format!("/api/records?from={base}&limit=10"));
        assert_eq!(listed["records"].as_array().unwrap().len(), 3);
        assert_eq!(node.get_json("/api/datasets/bob/n2")["owner"], "bob");
        let c = node.get_json(&format!("/api/proofs/consistency?old={base}&new={size}"));
        let new = verifier.open(&node.checkpoint()).unwrap();
        shoulders_log::verify_consistency(&hashes(&c), base, old.root, size, new.root).unwrap();
    }

    // Writes to a read node are refused and append nothing.
    let rec = new_dataset(&f, "refused");
    assert_refuses_writes(&read1, &f, &rec);
    assert_refuses_writes(&read2, &f, &rec);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        (writer.size(), read1.size(), read2.size()),
        (size, size, size)
    );
    // The same record is welcome at the writer.
    assert_eq!(writer.post("/api/records", &rec, None).0, 201);
    wait_until("read1 after the refused write", || read1.size() == size + 1);

    // With the writer stopped, the read nodes keep serving what is committed, and a read node
    // started now serves it too.
    let committed = writer.checkpoint();
    writer.stop();
    for node in [&read1, &read2] {
        wait_until("read nodes catch up", || node.checkpoint() == committed);
        assert_proven(node, &f.vkey, size, &rec);
        assert_serves_reads(node, &f.token);
    }
    let read3 = Served::start(&read_node_dir(&f, "read3"), "read3", &["--read-only"]);
    assert_eq!(read3.checkpoint(), committed);
    assert_proven(&read3, &f.vkey, size, &rec);

    // Read nodes never hold the writer lock: a writer starts beside three of them, and they
    // follow it. A second writer is still refused.
    let writer = Served::start(&f.dir, "writer-again", &[]);
    let rec = new_dataset(&f, "after-restart");
    assert_eq!(writer.post("/api/records", &rec, None).0, 201);
    for node in [&read1, &read2, &read3] {
        wait_until("read nodes follow the restarted writer", || {
            node.size() == size + 2
        });
        assert_proven(node, &f.vkey, size + 1, &rec);
    }
    let second = read_node_dir(&f, "second-writer");
    let out = bounded(&["serve", "--data-dir", p(&second), "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("error[E_WRITER_LOCKED]"),
        "{}",
        stderr(&out)
    );
    for node in [read1, read2, read3] {
        node.stop();
    }
    writer.stop();
}

#[test]
fn a_read_only_node_follows_a_sqlite_writer_in_the_same_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    let vkey = init(
        &DataDir::new(&dir),
        "test.shoulders.local/log",
        &mut rand_core::OsRng,
    )
    .unwrap();
    let alice = ActorKey::generate(&mut rand_core::OsRng);
    // Usage errors: following is for read nodes, and read nodes do not meter.
    for args in [
        vec!["--follow-interval-ms", "10"],
        vec!["--read-only", "--metering", "on"],
        vec!["--read-only", "--follow-interval-ms", "0"],
    ] {
        let mut all = vec!["serve", "--data-dir", p(&dir)];
        all.extend(args);
        assert_eq!(bounded(&all).status.code(), Some(2), "{all:?}");
    }

    let writer = Served::start(&dir, "writer", &[]);
    let reader = Served::start(
        &dir,
        "reader",
        &["--read-only", "--follow-interval-ms", "50"],
    );
    let rec = record(
        &alice,
        "a",
        Kind::ActorRegister,
        json!({"handle": "alice", "name": "A"}),
    );
    assert_eq!(writer.post("/api/records", &rec, None).0, 201);
    let lag = wait_until("the SQLite read node", || reader.size() == 1);
    println!("SQLite read node (50 ms): showed the record {lag:?} after its acknowledgement");
    assert_eq!(reader.get_json("/api/actors/alice")["handle"], "alice");
    assert_eq!(assert_proven(&reader, &vkey, 0, &rec), 1);
    assert_eq!(reader.checkpoint(), writer.checkpoint());

    let next = record(
        &alice,
        "d",
        Kind::DatasetCreate,
        json!({"dataset_id": "alice/d", "name": "D", "access": "open"}),
    );
    let (status, v) = reader.post("/api/records", &next, None);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("E_READ_ONLY"))
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!((writer.size(), reader.size()), (1, 1));

    writer.stop();
    assert_eq!(reader.size(), 1);
    let late = Served::start(&dir, "late-reader", &["--read-only"]);
    assert_eq!(late.checkpoint(), reader.checkpoint());
    assert_proven(&late, &vkey, 0, &rec);
    reader.stop();
    late.stop();
}

/// `shoulders apikey revoke` on a running server (issue 15, item 13; issue 18): the key works,
/// is revoked with the CLI in another process, and is refused (401) on the server's very next
/// request; nothing is charged to the payer after that, and another key keeps working.
#[test]
fn a_revoked_api_key_stops_working_without_a_restart() {
    let f = fixture(None);
    let other = ok_json(shoulders(&[
        "apikey",
        "new",
        "--data-dir",
        p(&f.dir),
        "--actor",
        "bob",
    ]));
    let other_token = other["api_key"].as_str().unwrap().to_string();
    let other_id = other["key_id"].as_str().unwrap().to_string();
    let writer = Served::start(&f.dir, "writer", &[]);
    let call =
        json!({"model": "alice/verse-priced", "prompt": "Shall I", "max_tokens": 10}).to_string();
    let (status, v) = writer.post("/v1/completions", call.as_bytes(), Some(&f.token));
    assert_eq!(status, 200, "{v}");
    let receipts = || {
        writer.get_json("/api/actors/bob/receipts")["items"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(receipts(), 1);

    // Listed by id (the token itself is not stored); revoked by the token.
    let listed = ok_json(shoulders(&["apikey", "list", "--data-dir", p(&f.dir)]));
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&f.token));
    let out = ok_json(shoulders(&[
        "apikey",
        "revoke",
        "--data-dir",
        p(&f.dir),
        &f.token,
    ]));
    assert_eq!(out["revoked"][0]["actor"], "bob");
    assert!(out["revoked"][0]["revoked_ms"].is_u64());
    // The very next request is refused: the server reads the key from the store each time.
    let (status, v) = writer.post("/v1/completions", call.as_bytes(), Some(&f.token));
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error"]["code"], "E_UNAUTHORIZED");
    assert_eq!(receipts(), 1, "nothing charged with the revoked key");
    // The other key still works; revoked by an id prefix, it is refused at once too; an
    // unknown id fails cleanly.
    let (status, v) = writer.post("/v1/completions", call.as_bytes(), Some(&other_token));
    assert_eq!(status, 200, "{v}");
    ok_json(shoulders(&[
        "apikey",
        "revoke",
        "--data-dir",
        p(&f.dir),
        &other_id[..8],
    ]));
    assert_eq!(
        writer.post("/v1/completions", b"{}", Some(&other_token)).0,
        401
    );
    let out = shoulders(&[
        "apikey",
        "revoke",
        "--data-dir",
        p(&f.dir),
        "ffffffffffffffff",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("E_API_KEY_UNKNOWN"),
        "{}",
        stderr(&out)
    );
    // Revoked keys stay listed, with when; a page of one has a cursor to the next.
    let listed = ok_json(shoulders(&[
        "apikey",
        "list",
        "--data-dir",
        p(&f.dir),
        "--limit",
        "1",
    ]));
    assert_eq!(listed["keys"].as_array().unwrap().len(), 1);
    assert!(listed["keys"][0]["revoked_ms"].is_u64());
    let next = listed["next"].as_str().unwrap().to_string();
    let rest = ok_json(shoulders(&[
        "apikey",
        "list",
        "--data-dir",
        p(&f.dir),
        "--after",
        &next,
    ]));
    assert_eq!(rest["keys"].as_array().unwrap().len(), 1);
    assert!(rest["next"].is_null());
    // Limits from the command line; inconsistent ones are refused and add nothing.
    let limited = ok_json(shoulders(&[
        "apikey",
        "new",
        "--data-dir",
        p(&f.dir),
        "--actor",
        "bob",
        "--budget-micros",
        "5000000",
        "--budget-period",
        "day",
        "--requests-per-minute",
        "60",
        "--tokens-per-minute",
        "1000",
    ]));
    assert_eq!(limited["budget_micros"], "5000000");
    assert_eq!(limited["budget_currency"], "USD");
    assert_eq!(limited["budget_period"], "day");
    assert_eq!(limited["requests_per_minute"], 60);
    assert_eq!(limited["tokens_per_minute"], 1000);
    let out = shoulders(&[
        "apikey",
        "new",
        "--data-dir",
        p(&f.dir),
        "--actor",
        "bob",
        "--budget-micros",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("E_API_KEY_LIMITS"),
        "{}",
        stderr(&out)
    );
    // The admin token the CLI makes opens the admin API of the running server.
    let admin = ok_json(shoulders(&[
        "apikey",
        "admin-token",
        "--data-dir",
        p(&f.dir),
    ]));
    let admin = admin["admin_token"].as_str().unwrap().to_string();
    let (status, body) = respond(
        ureq::get(&writer.url("/api/admin/keys"))
            .set("authorization", &format!("Bearer {admin}"))
            .call(),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let page: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["keys"].as_array().unwrap().len(), 3);
    assert_eq!(writer.get("/api/admin/keys").0, 401);
    assert_eq!(writer.get_json("/api/accounts")["conserved"], true);
    writer.stop();
}

/// A free loopback port (the OS's pick, released at once; nothing else on the machine binds
/// fixed ports in these tests).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `serve --config FILE` alone: the file's keys act as the flags would (where it listens,
/// metering off although operator.key exists, a read-only node refusing writes); a flag on the
/// command line replaces its key; an unknown key is refused naming the key and the file, and
/// nothing starts.
#[test]
fn serve_takes_its_flags_from_a_config_file() {
    let f = fixture(None);
    let tmp = f.dir.parent().unwrap();
    let config = |name: &str, text: &str| {
        let path = tmp.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let rec = new_dataset(&f, "notes");

    // The writer, from the file only: its port, its body limit, metering off.
    let port = free_port();
    let writer_toml = config(
        "writer.toml",
        &format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\nmetering = \"off\"\n\
             max_body_bytes = 100\n",
            p(&f.dir)
        ),
    );
    let writer = Served::launch(tmp, "writer", &["serve", "--config", p(&writer_toml)]);
    assert_eq!(writer.base, format!("http://127.0.0.1:{port}"));
    assert_eq!(writer.started["metering"], "off", "the file's, not auto's");
    assert_eq!(writer.started["read_only"], false);
    let (status, v) = writer.post("/api/records", &rec, None);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (413, Some("E_BODY_TOO_LARGE")),
        "max_body_bytes = 100: {v}"
    );
    writer.stop();

    // The same file with flags replacing two keys: another port, the default body limit.
    let writer = Served::launch(
        tmp,
        "writer-flags",
        &[
            "serve",
            "--config",
            p(&writer_toml),
            "--listen",
            "127.0.0.1:0",
            "--max-body-bytes",
            "2000000",
        ],
    );
    assert_ne!(writer.base, format!("http://127.0.0.1:{port}"));
    let size = writer.size();
    let (status, v) = writer.post("/api/records", &rec, None);
    assert_eq!((status, &v["index"]), (201, &json!(size)), "{v}");
    assert_eq!(
        writer.started["metering"], "off",
        "the key not replaced stays"
    );

    // A read node from a file (beside the SQLite writer, in the same directory).
    let reader_toml = config(
        "reader.toml",
        &format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\nread_only = true\n\
             follow_interval_ms = 20\n",
            p(&f.dir)
        ),
    );
    let reader = Served::launch(tmp, "reader", &["serve", "--config", p(&reader_toml)]);
    assert_eq!(reader.started["read_only"], true);
    wait_until("the configured read node", || reader.size() == size + 1);
    let next = new_dataset(&f, "more");
    let (status, v) = reader.post("/api/records", &next, None);
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("E_READ_ONLY")),
        "{v}"
    );
    reader.stop();
    writer.stop();

    // An unknown key: refused at once (exit 1, not killed by the timeout), naming the key and
    // the file; nothing listens and nothing is written.
    let port = free_port();
    let bad = config(
        "bad.toml",
        &format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\nlisten_adress = \"x\"\n",
            p(&f.dir)
        ),
    );
    let size_before = checkpoint_size(&shoulders(&["checkpoint", "--data-dir", p(&f.dir)]));
    let out = bounded(&["serve", "--config", p(&bad)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error[E_CONFIG]"), "{err}");
    assert!(err.contains("listen_adress"), "names the key: {err}");
    assert!(err.contains(p(&bad)), "names the file: {err}");
    assert!(
        out.stdout.is_empty(),
        "nothing started: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    let out = shoulders(&["checkpoint", "--data-dir", p(&f.dir)]);
    assert_eq!(checkpoint_size(&out), size_before);

    // A value the flag refuses names its key too.
    let bad = config(
        "bad-value.toml",
        &format!("data_dir = \"{}\"\nmax_connections = 0\n", p(&f.dir)),
    );
    let out = bounded(&["serve", "--config", p(&bad)]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("max_connections") && err.contains(p(&bad)),
        "{err}"
    );
}

/// The tree size in the checkpoint a successful `shoulders checkpoint` printed.
fn checkpoint_size(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    let note = String::from_utf8_lossy(&out.stdout).into_owned();
    note.lines().nth(1).unwrap().to_string()
}

/// `serve --log-format json` writes one JSON object per line on stderr, and each request's line
/// carries the request id the client sent (or the one the server made, as returned in
/// `x-request-id`); the default `text` format is not JSON; other formats are usage errors.
#[test]
fn log_format_json_writes_json_lines_carrying_the_request_id() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    init(
        &DataDir::new(&dir),
        "test.shoulders.local/log",
        &mut rand_core::OsRng,
    )
    .unwrap();
    assert_eq!(
        bounded(&["serve", "--data-dir", p(&dir), "--log-format", "xml"])
            .status
            .code(),
        Some(2)
    );

    let node = Served::start(&dir, "json-logs", &["--log-format", "json"]);
    let sent = ureq::get(&node.url("/healthz"))
        .set("x-request-id", "cli-log-test-1")
        .call()
        .unwrap();
    assert_eq!(sent.header("x-request-id"), Some("cli-log-test-1"));
    let (status, _) = respond(
        ureq::get(&node.url("/no/such/route"))
            .set("x-request-id", "bad id!")
            .call(),
    );
    assert_eq!(status, 404);
    let made = ureq::get(&node.url("/readyz")).call().unwrap();
    let made = made.header("x-request-id").unwrap().to_string();
    let err = node.stop();
    let lines: Vec<Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let answered = |id: &str| {
        lines
            .iter()
            .find(|v| v["span"]["request_id"] == id && v["fields"]["message"] == "request answered")
    };
    let line = answered("cli-log-test-1").unwrap_or_else(|| panic!("no line for the id: {err}"));
    assert_eq!(line["span"]["route"], "/healthz");
    assert_eq!(line["fields"]["status"], 200);
    assert_eq!(line["level"], "INFO");
    let line = answered(&made).unwrap_or_else(|| panic!("no line for {made}: {err}"));
    assert_eq!(line["span"]["route"], "/readyz");
    // The unsafe id was replaced, never logged.
    assert!(!err.contains("bad id!"), "{err}");
    let unmatched = lines
        .iter()
        .filter(|v| v["span"]["route"] == "unmatched" && v["fields"]["status"] == 404)
        .count();
    assert_eq!(unmatched, 1, "{err}");

    // Text (the default): request lines are not JSON but carry the id.
    let node = Served::start(&dir, "text-logs", &[]);
    ureq::get(&node.url("/healthz"))
        .set("x-request-id", "cli-log-test-2")
        .call()
        .unwrap();
    let err = node.stop();
    let line = err
        .lines()
        .find(|l| l.contains("request answered"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("request_id=cli-log-test-2"), "{line}");
    assert!(serde_json::from_str::<Value>(line).is_err());
}

/// `--preload-index DATASET`: `/readyz` names each index the node was told to load and answers
/// 503 `E_NOT_READY` while one cannot be loaded (here: none was ever built).
#[test]
fn preload_index_makes_readiness_wait_for_the_index() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ledger");
    init(
        &DataDir::new(&dir),
        "test.shoulders.local/log",
        &mut rand_core::OsRng,
    )
    .unwrap();
    let node = Served::start(&dir, "preload", &["--preload-index", "nobody/unbuilt"]);
    let (status, body) = node.get("/readyz");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "E_NOT_READY", "{v}");
    assert!(
        v["failed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "index:nobody/unbuilt"),
        "{v}"
    );
    node.stop();
    let node = Served::start(&dir, "no-preload", &[]);
    assert_eq!(node.get("/readyz").0, 200);
    node.stop();
}
