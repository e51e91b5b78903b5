//! Random tampering of an export is always detected by `verify_export`, naming the first
//! offending record where one can be named.

mod common;

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use common::*;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use shoulders_ledger::{verify_export, EXPORT_MAGIC};

struct Export {
    records: Vec<String>,
    note: String,
}

impl Export {
    fn parse(bytes: &[u8]) -> Export {
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let body = text.strip_prefix(&format!("{EXPORT_MAGIC}\n")).unwrap();
        let (records, note) = body.split_once("\n\n").unwrap();
        Export {
            records: records.lines().map(String::from).collect(),
            note: note.to_string(),
        }
    }

    fn render(&self) -> Vec<u8> {
        let mut out = format!("{EXPORT_MAGIC}\n");
        for r in &self.records {
            out.push_str(r);
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.note);
        out.into_bytes()
    }
}

fn build() -> (Vec<u8>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let (_, ledger, vkey) = new_ledger(tmp.path());
    populate(&ledger);
    let alice = key(1);
    for i in 0..40 {
        let text = format!("document {i}");
        ledger
            .submit(rec(
                &alice,
                "data.contribute",
                stored(&ledger, "alice/open", &text),
            ))
            .unwrap();
    }
    let mut out = Vec::new();
    ledger.export(&mut out).unwrap();
    (out, vkey)
}

#[test]
fn the_untampered_export_verifies() {
    let (bytes, vkey) = build();
    let (report, state) = verify_export(&bytes, &vkey).unwrap();
    assert_eq!(report.tree_size, 51);
    assert_eq!(report.contributions, 43);
    assert_eq!(state.size(), 51);
}

#[test]
fn every_single_byte_change_is_detected() {
    let (bytes, vkey) = build();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for _ in 0..1500 {
        let mut t = bytes.clone();
        let at = rng.gen_range(0..t.len());
        let new = loop {
            let b: u8 = rng.gen();
            if b != t[at] {
                break b;
            }
        };
        t[at] = new;
        assert!(
            verify_export(&t, &vkey).is_err(),
            "byte {at} changed to {new} went unnoticed"
        );
    }
}

#[test]
fn dropping_reordering_truncating_and_resigning_are_detected() {
    let (bytes, vkey) = build();
    let export = Export::parse(&bytes);
    let n = export.records.len();
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    for _ in 0..60 {
        // Drop a record.
        let mut t = Export {
            records: export.records.clone(),
            note: export.note.clone(),
        };
        let i = rng.gen_range(0..n);
        t.records.remove(i);
        let err = verify_export(&t.render(), &vkey).unwrap_err();
        assert!(
            matches!(
                err.code,
                "E_SIZE_MISMATCH"
                    | "E_SIGNER_UNKNOWN"
                    | "E_ACTOR_UNKNOWN"
                    | "E_DATASET_UNKNOWN"
                    | "E_MODEL_UNKNOWN"
            ),
            "drop {i}: {err}"
        );

        // Swap two distinct records.
        let (a, b) = (rng.gen_range(0..n), rng.gen_range(0..n));
        if a != b {
            let mut t = Export {
                records: export.records.clone(),
                note: export.note.clone(),
            };
            t.records.swap(a, b);
            assert!(
                verify_export(&t.render(), &vkey).is_err(),
                "swap {a} {b} went unnoticed"
            );
        }

        // Move one record's signature onto another record.
        let (a, b) = (rng.gen_range(0..n), rng.gen_range(0..n));
        if a != b {
            let mut t = Export {
                records: export.records.clone(),
                note: export.note.clone(),
            };
            let sig_of = |line: &str| -> Value {
                serde_json::from_slice::<Value>(&B64.decode(line).unwrap()).unwrap()["sig"].clone()
            };
            let mut victim: Value =
                serde_json::from_slice(&B64.decode(&t.records[b]).unwrap()).unwrap();
            victim["sig"] = sig_of(&t.records[a]);
            t.records[b] = B64.encode(serde_json::to_vec(&victim).unwrap());
            let err = verify_export(&t.render(), &vkey).unwrap_err();
            assert_eq!(
                (err.code, err.index),
                ("E_SIG_INVALID", Some(b as u64)),
                "sig {a}->{b}: {err}"
            );
        }

        // Truncate the file at a random point.
        let cut = rng.gen_range(0..bytes.len());
        assert!(
            verify_export(&bytes[..cut], &vkey).is_err(),
            "truncated at {cut}"
        );
    }
    // Truncating whole records while keeping the checkpoint.
    let t = Export {
        records: export.records[..n - 5].to_vec(),
        note: export.note.clone(),
    };
    let err = verify_export(&t.render(), &vkey).unwrap_err();
    assert_eq!(
        (err.code, err.index),
        ("E_SIZE_MISMATCH", Some((n - 5) as u64))
    );
    // Replaying a record (duplicate id) is refused at its index.
    let mut t = Export {
        records: export.records.clone(),
        note: export.note.clone(),
    };
    t.records.push(export.records[3].clone());
    let err = verify_export(&t.render(), &vkey).unwrap_err();
    assert_eq!((err.code, err.index), ("E_DUPLICATE_ID", Some(n as u64)));
    // A checkpoint checked with a different log's key.
    let other = tempfile::tempdir().unwrap();
    let other_dir = shoulders_ledger::DataDir::new(other.path().join("x"));
    let other_key = shoulders_ledger::init(
        &other_dir,
        "test.example/log",
        &mut rand::rngs::StdRng::seed_from_u64(99),
    )
    .unwrap();
    assert_eq!(
        verify_export(&bytes, &other_key).unwrap_err().code,
        "E_CHECKPOINT_SIGNATURE"
    );
}
