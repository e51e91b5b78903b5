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
    let out = shoulders(&[&["sign"][..], &args].concat());
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
