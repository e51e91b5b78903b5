//! One proptest harness per decoder of untrusted input (see the crate docs). A panic anywhere
//! fails the harness; so does a mutated input that decodes when it must not.

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};
use shoulders_fuzz::{cases, mutate};
use shoulders_log::{
    generate_log_key, leaf_hash, verify_consistency, verify_inclusion, Hash, LogSigner, LogVerifier,
};
use shoulders_record::{sign_record, ActorKey, Body, Kind, SignedRecord};
use std::sync::OnceLock;

fn config() -> Config {
    Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    }
}

fn valid_record() -> &'static SignedRecord {
    static R: OnceLock<SignedRecord> = OnceLock::new();
    R.get_or_init(|| {
        let key = ActorKey::from_seed([3; 32]);
        let body = Body::from_value(
            Kind::UsageReceipt,
            json!({"usage_id": "u-1", "model_id": "a/m", "payer": "b", "use_category": "chat",
                   "input_tokens": 5, "output_tokens": 7, "output_hash": format!("sha256:{}", "1".repeat(64)),
                   "attribution": [{"dataset_id": "a/d", "contribution": 4, "ppm": 600000},
                                   {"dataset_id": "a/d", "contribution": 5, "ppm": 400000}]}),
        )
        .unwrap();
        sign_record(&key, "fuzz.example/log", "id-1", 1_767_225_600_000, body).unwrap()
    })
}

/// Arbitrary JSON values up to a small depth.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z_./:0-9]{0,12}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("handle".to_string()),
                    Just("name".to_string()),
                    Just("dataset_id".to_string()),
                    Just("model_id".to_string()),
                    Just("amount_micros".to_string()),
                    Just("attribution".to_string()),
                    Just("parents".to_string()),
                    Just("terms".to_string()),
                    Just("ppm".to_string()),
                    "[a-z_]{1,10}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes never panic the record decoder.
    #[test]
    fn record_bytes_arbitrary(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = SignedRecord::from_bytes(bytes);
    }

    /// A mutated valid record is refused unless the mutation left it byte-identical.
    #[test]
    fn record_bytes_mutated(seed in prop::collection::vec(any::<u8>(), 4..40)) {
        let valid = valid_record().bytes();
        let bytes = mutate(valid, &seed);
        if let Ok(rec) = SignedRecord::from_bytes(bytes.clone()) {
            prop_assert_eq!(rec.bytes(), valid, "a changed record decoded and verified");
        }
    }

    /// Arbitrary JSON never panics any body decoder, and what decodes re-encodes to itself.
    #[test]
    fn json_bodies(kind in 0..Kind::ALL.len(), value in json_value()) {
        let kind = Kind::ALL[kind];
        if let Ok(body) = Body::from_value(kind, value) {
            let again = Body::from_value(kind, body.to_value()).expect("a decoded body re-decodes");
            prop_assert_eq!(again, body);
        }
    }

    /// Arbitrary text never panics the strict JSON parser.
    #[test]
    fn json_text(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = shoulders_record::parse_integer_json(&bytes);
    }
}

fn log_key() -> &'static (String, String) {
    static K: OnceLock<(String, String)> = OnceLock::new();
    K.get_or_init(|| generate_log_key(&mut rand_core::OsRng, "fuzz.example/log").unwrap())
}

proptest! {
    #![proptest_config(config())]

    /// Checkpoint notes: arbitrary bytes and mutations of a valid note never panic, and a
    /// changed note never verifies.
    #[test]
    fn checkpoint_notes(seed in prop::collection::vec(any::<u8>(), 4..40), noise in prop::collection::vec(any::<u8>(), 0..300)) {
        let (signer, verifier) = log_key();
        let signer = LogSigner::new(signer).unwrap();
        let verifier = LogVerifier::new(verifier).unwrap();
        let note = signer.sign(12345, leaf_hash(b"x")).unwrap();
        let mutated = mutate(&note, &seed);
        if let Ok(cp) = verifier.open(&mutated) {
            prop_assert_eq!(&mutated, &note, "a changed checkpoint verified");
            prop_assert_eq!(cp.size, 12345);
        }
        prop_assert!(verifier.open(&noise).is_err());
    }

    /// Proof verification on random proofs, indexes and sizes never panics or accepts.
    #[test]
    fn proofs(hashes in prop::collection::vec(any::<[u8; 32]>(), 0..70), index in any::<u64>(), size in any::<u64>(), old in any::<u64>(), leaf in any::<[u8; 32]>(), root in any::<[u8; 32]>()) {
        let proof: Vec<Hash> = hashes.into_iter().map(Hash).collect();
        prop_assert!(verify_inclusion(&proof, index, size, Hash(leaf), Hash(root)).is_err() || proof.is_empty());
        let _ = verify_consistency(&proof, old, Hash(leaf), size, Hash(root));
    }
}

/// A small valid export (three records) and its verifier key.
fn valid_export() -> &'static (Vec<u8>, String) {
    static E: OnceLock<(Vec<u8>, String)> = OnceLock::new();
    E.get_or_init(|| {
        let tmp = tempfile::TempDir::new().unwrap();
        let dir = shoulders_ledger::DataDir::new(tmp.path().join("l"));
        let vkey = shoulders_ledger::init(&dir, "fuzz.example/log", &mut rand_core::OsRng).unwrap();
        let ledger = shoulders_ledger::Ledger::open(&dir).unwrap();
        let key = ActorKey::from_seed([9; 32]);
        // Content first: the contribution's document is stored before its record.
        let document = ledger.content().put(b"abc").unwrap();
        for (i, (kind, body)) in [
            (Kind::ActorRegister, json!({"handle": "ann", "name": "Ann"})),
            (Kind::DatasetCreate, json!({"dataset_id": "ann/d", "name": "D", "access": "open"})),
            (Kind::DataContribute, json!({"dataset_id": "ann/d", "content_hash": document, "byte_size": 3, "token_count": 3})),
        ]
        .into_iter()
        .enumerate()
        {
            let rec = sign_record(&key, "fuzz.example/log", &format!("r{i}"), 1, Body::from_value(kind, body).unwrap()).unwrap();
            ledger.submit(rec.bytes().to_vec()).unwrap();
        }
        let mut out = Vec::new();
        ledger.export(&mut out).unwrap();
        (out, vkey)
    })
}

proptest! {
    #![proptest_config(config())]

    /// Log exports: a mutated export never panics the verifier and never verifies.
    #[test]
    fn exports(seed in prop::collection::vec(any::<u8>(), 4..40)) {
        let (export, vkey) = valid_export();
        let mutated = mutate(export, &seed);
        if shoulders_ledger::verify_export(&mutated, vkey).is_ok() {
            prop_assert_eq!(&mutated, export, "a changed export verified");
        }
    }
}

/// A valid two-tensor safetensors file.
fn valid_safetensors() -> Vec<u8> {
    let header = br#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}}"#;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    out
}

proptest! {
    #![proptest_config(config())]

    /// Safetensors and GGUF files: arbitrary bytes and mutated valid files hash or fail with a
    /// typed error, never panic.
    #[test]
    fn weight_files(seed in prop::collection::vec(any::<u8>(), 4..40), noise in prop::collection::vec(any::<u8>(), 0..600)) {
        let tmp = tempfile::TempDir::new().unwrap();
        let mut progress = |_: u64| {};
        for (name, bytes) in [("m.safetensors", mutate(&valid_safetensors(), &seed)), ("n.safetensors", noise.clone()), ("g.gguf", noise.clone())] {
            let path = tmp.path().join(name);
            std::fs::write(&path, &bytes).unwrap();
            let mut p: &mut dyn FnMut(u64) = &mut progress;
            let result = if name.ends_with(".gguf") {
                shoulders_artifacts::hash_gguf(&path, name, &mut p).map(|_| ())
            } else {
                shoulders_artifacts::hash_safetensors(&path, name, &mut p).map(|_| ())
            };
            if let Err(e) = result {
                prop_assert!(e.code().starts_with("E_"));
            }
        }
    }
}

proptest! {
    #![proptest_config(Config { cases: cases().div_ceil(4), ..config() })]

    /// Attribution index files: a corrupted file is refused on open or answers queries without
    /// panicking.
    #[test]
    fn index_files(which in 0..3usize, seed in prop::collection::vec(any::<u8>(), 4..40), query in prop::collection::vec(any::<u8>(), 1..12)) {
        let tmp = tempfile::TempDir::new().unwrap();
        let dir = tmp.path().join("idx");
        let docs = ["the cat sat on the mat", "a cat and a hat", "the mat is flat"];
        shoulders_attrib::index::build(
            &dir,
            docs.iter().enumerate().map(|(i, d)| Ok(shoulders_attrib::index::DocInput { contribution: i as u64 + 10, bytes: d.as_bytes().to_vec() })),
            &mut |_| {},
        ).unwrap();
        let file = dir.join(["tokenized.0", "table.0", "offset.0"][which]);
        let bytes = std::fs::read(&file).unwrap();
        std::fs::write(&file, mutate(&bytes, &seed)).unwrap();
        if let Ok(index) = shoulders_attrib::index::Index::open(&dir) {
            let _ = index.count(&query);
            let _ = index.find(&query, 8);
            let _ = index.maximal_spans(b"the cat sat on a flat mat", 3, 100);
        }
    }
}
