//! `model.register.source`: optional, omitted when absent (so earlier registrations keep their
//! bytes and signatures), and checked when present.

use serde_json::{json, Value};
use shoulders_record::{
    sign_record, ActorKey, Body, Kind, ModelHub, RecordError, SignedRecord,
    MAX_HUB_REPO_SEGMENT_BYTES,
};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn sign(body: Value) -> Result<SignedRecord, RecordError> {
    let body = Body::from_value(Kind::ModelRegister, body)?;
    sign_record(
        &ActorKey::from_seed([9; 32]),
        "golden.example/log",
        "hub-1",
        1_767_225_600_000,
        body,
    )
}

fn with_source(repo: &str, revision: &str) -> Value {
    json!({"model_id": "dave/m", "name": "M",
           "source": {"hub": "huggingface", "repo": repo, "revision": revision}})
}

#[test]
fn a_source_round_trips_through_signed_bytes() {
    let rec = sign(with_source("acme/tiny-1.5b", COMMIT)).unwrap();
    let back = SignedRecord::from_bytes(rec.bytes().to_vec()).unwrap();
    assert_eq!(back.bytes(), rec.bytes());
    let Body::ModelRegister(b) = &back.record().body else {
        panic!("not a model.register")
    };
    let src = b.source.as_ref().expect("source kept");
    assert_eq!(src.hub, ModelHub::HuggingFace);
    assert_eq!(src.repo, "acme/tiny-1.5b");
    assert_eq!(src.revision, COMMIT);
    assert_eq!(
        src.url(),
        format!("https://huggingface.co/acme/tiny-1.5b/tree/{COMMIT}")
    );
    // Owner-less legacy repositories and 64-digit commits are accepted too.
    sign(with_source("gpt2", &"f".repeat(64))).unwrap();
    let longest = "a".repeat(MAX_HUB_REPO_SEGMENT_BYTES);
    sign(with_source(&format!("{longest}/{longest}"), COMMIT)).unwrap();
}

#[test]
fn without_a_source_the_bytes_do_not_mention_it() {
    let rec = sign(json!({"model_id": "dave/m", "name": "M"})).unwrap();
    assert!(!String::from_utf8_lossy(rec.bytes()).contains("source"));
    let Body::ModelRegister(b) = &rec.record().body else {
        panic!("not a model.register")
    };
    assert_eq!(b.source, None);
}

#[test]
fn bad_sources_are_refused_naming_the_field() {
    let too_long = "a".repeat(MAX_HUB_REPO_SEGMENT_BYTES + 1);
    for (repo, revision, field) in [
        ("acme/tiny", "main", "source.revision"),
        ("acme/tiny", &COMMIT[..39], "source.revision"),
        ("acme/tiny", &COMMIT.to_uppercase(), "source.revision"),
        ("acme--x/tiny", COMMIT, "source.repo"),
        ("acme/../tiny", COMMIT, "source.repo"),
        ("a/b/c", COMMIT, "source.repo"),
        ("", COMMIT, "source.repo"),
        ("acme/-tiny", COMMIT, "source.repo"),
        ("acme/tiny.", COMMIT, "source.repo"),
        ("acme/ti ny", COMMIT, "source.repo"),
        (&too_long, COMMIT, "source.repo"),
    ] {
        let err = sign(with_source(repo, revision)).unwrap_err();
        assert_eq!(err.code(), "E_FIELD_INVALID", "{repo} {revision}: {err}");
        assert!(err.to_string().contains(field), "{repo} {revision}: {err}");
    }
    // An unknown hub or an unknown key is a schema error.
    let mut body = with_source("acme/tiny", COMMIT);
    body["source"]["hub"] = json!("modelscope");
    assert_eq!(sign(body).unwrap_err().code(), "E_RECORD_SCHEMA");
    let mut body = with_source("acme/tiny", COMMIT);
    body["source"]["branch"] = json!("main");
    assert_eq!(sign(body).unwrap_err().code(), "E_RECORD_SCHEMA");
}
