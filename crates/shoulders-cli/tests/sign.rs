//! `shoulders sign` prints exactly the bytes `submit` would append for the same body, id and time.

mod common;

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use common::{ok_json, shoulders};

#[test]
fn sign_prints_the_bytes_submit_appends() {
    let tmp = tempfile::TempDir::new().unwrap();
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    assert!(shoulders(&["init", "--data-dir", &p("d")]).status.success());
    ok_json(shoulders(&["key", "new", "--out", &p("k")]));
    std::fs::write(p("b.json"), r#"{"handle":"zed","name":"Zed"}"#).unwrap();
    let args = [
        "--key",
        &p("k"),
        "--kind",
        "actor.register",
        "--body",
        &p("b.json"),
        "--id",
        "one",
        "--ts-ms",
        "1800000000000",
    ];
    let out = shoulders(&[&["sign", "--data-dir", &p("d")][..], &args].concat());
    assert!(out.status.success());
    let rec = shoulders_record::SignedRecord::from_bytes(out.stdout.clone())
        .expect("a valid signed record");
    assert_eq!(rec.record().client_id, "one");
    let appended = ok_json(shoulders(
        &[&["submit", "--data-dir", &p("d")][..], &args].concat(),
    ));
    let leaf = shoulders_log::leaf_hash(&out.stdout);
    assert_eq!(appended["leaf_hash"].as_str().unwrap(), B64.encode(leaf.0));
    // A bad body is refused with its code, nothing printed on stdout.
    std::fs::write(p("bad.json"), r#"{"handle":"Zed!","name":"Zed"}"#).unwrap();
    let out = shoulders(&[
        "sign",
        "--log",
        "any.example/log",
        "--key",
        &p("k"),
        "--kind",
        "actor.register",
        "--body",
        &p("bad.json"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error[E_FIELD_INVALID]"));
}

/// A record signed for one ledger (`--data-dir A`, or `--log` with A's origin) is refused by
/// another with `E_WRONG_LEDGER` and nothing is appended there; `sign` needs a ledger.
#[test]
fn a_record_signed_for_one_ledger_is_refused_by_another() {
    let tmp = tempfile::TempDir::new().unwrap();
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    for d in ["a", "b"] {
        assert!(shoulders(&["init", "--data-dir", &p(d)]).status.success());
    }
    ok_json(shoulders(&["key", "new", "--out", &p("k")]));
    std::fs::write(p("b.json"), r#"{"handle":"zed","name":"Zed"}"#).unwrap();
    let body = [
        "--key",
        &p("k"),
        "--kind",
        "actor.register",
        "--body",
        &p("b.json"),
    ];
    // Without a ledger to sign for, `sign` refuses (clap usage error).
    let out = shoulders(&[&["sign"][..], &body].concat());
    assert_eq!(out.status.code(), Some(2));
    let out = shoulders(&[&["sign", "--data-dir", &p("a")][..], &body].concat());
    assert!(out.status.success());
    let record = out.stdout;
    let origin_a = String::from_utf8(shoulders(&["checkpoint", "--data-dir", &p("a")]).stdout)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let rec = shoulders_record::SignedRecord::from_bytes(record.clone()).unwrap();
    assert_eq!(rec.record().log, origin_a);
    // --log with the origin gives the same bytes.
    let again = shoulders(
        &[
            &[
                "sign",
                "--log",
                &origin_a,
                "--id",
                &rec.record().client_id,
                "--ts-ms",
                &rec.record().ts_ms.to_string(),
            ][..],
            &body,
        ]
        .concat(),
    );
    assert_eq!(again.stdout, record);
    // Ledger b refuses it (through the engine that `submit` and the server use).
    let ledger = shoulders_ledger::Ledger::open(&shoulders_ledger::DataDir::new(p("b"))).unwrap();
    let before = ledger.size();
    let err = ledger.submit(record.clone()).unwrap_err();
    assert_eq!(err.code(), "E_WRONG_LEDGER");
    assert_eq!(ledger.size(), before);
    drop(ledger);
    let ledger = shoulders_ledger::Ledger::open(&shoulders_ledger::DataDir::new(p("a"))).unwrap();
    assert!(!ledger.submit(record).unwrap().duplicate);
}
