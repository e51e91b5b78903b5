//! Helpers shared by the ledger's integration tests.
#![allow(dead_code)]

use serde_json::Value;
use shoulders_ledger::{init, DataDir, Ledger};
use shoulders_record::{sign_record, ActorKey, Body, Kind};
use std::sync::atomic::{AtomicU64, Ordering};

pub fn key(byte: u8) -> ActorKey {
    ActorKey::from_seed([byte; 32])
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Sign `body` of `kind` as `key` with a fresh client id.
pub fn rec(key: &ActorKey, kind: &str, body: Value) -> Vec<u8> {
    let id = format!("t-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    rec_id(key, &id, kind, body)
}

/// `record` with its envelope field `field` set to `value` (a moved signature, a swapped
/// signer): still canonical JSON, so only the changed field can be refused.
pub fn with_field(record: &[u8], field: &str, value: Value) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(record).unwrap();
    v[field] = value;
    serde_json::to_vec(&v).unwrap()
}

/// The envelope field `field` of `record`.
pub fn field_of(record: &[u8], field: &str) -> Value {
    serde_json::from_slice::<Value>(record).unwrap()[field].clone()
}

pub fn rec_id(key: &ActorKey, id: &str, kind: &str, body: Value) -> Vec<u8> {
    let kind = Kind::parse(kind).unwrap();
    let body = Body::from_value(kind, body).unwrap();
    sign_record(key, "test.example/log", id, 1_767_225_600_000, body)
        .unwrap()
        .bytes()
        .to_vec()
}

pub fn hash_of(text: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// Store `text` in the ledger's content store (content first) and return a `data.contribute`
/// body for it with the measured sizes.
pub fn stored(ledger: &Ledger, dataset_id: &str, text: &str) -> Value {
    let hash = ledger.content().put(text.as_bytes()).unwrap();
    serde_json::json!({"dataset_id": dataset_id, "content_hash": hash,
                       "byte_size": text.len(), "token_count": text.len()})
}

pub fn new_ledger(dir: &std::path::Path) -> (DataDir, Ledger, String) {
    new_ledger_in(DataDir::new(dir.join("ledger")))
}

/// A new ledger whose log lives in a fresh database on a real PostgreSQL server.
pub fn new_pg_ledger(dir: &std::path::Path) -> (DataDir, Ledger, String) {
    let url = shoulders_pgtest::fresh_database_url();
    let location = shoulders_ledger::StoreLocation::parse(&url).unwrap();
    new_ledger_in(DataDir::new(dir.join("ledger")).with_database(location))
}

/// A copy of `data`'s directory (keys and recorded database location) at `to`: a second
/// server process for the same ledger. The recorded location is what it shares.
pub fn copy_data_dir(data: &DataDir, to: &std::path::Path) -> DataDir {
    std::fs::create_dir_all(to).unwrap();
    for name in ["log.key", "log.pub", "database.url"] {
        std::fs::copy(data.root().join(name), to.join(name)).unwrap();
    }
    DataDir::new(to)
}

pub fn new_ledger_in(data: DataDir) -> (DataDir, Ledger, String) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let vkey = init(&data, "test.example/log", &mut rng).unwrap();
    let ledger = Ledger::open(&data).unwrap();
    (data, ledger, vkey)
}

use rand::SeedableRng;

/// alice (owner of an open and an owner-only dataset), bob, carol (allowlisted on alice/allow),
/// a base model alice/base and its finetune bob/tuned.
pub fn populate(ledger: &Ledger) {
    use serde_json::json;
    let (alice, bob, carol) = (key(1), key(2), key(3));
    let batch = vec![
        rec(
            &alice,
            "actor.register",
            json!({"handle": "alice", "name": "Alice"}),
        ),
        rec(
            &bob,
            "actor.register",
            json!({"handle": "bob", "name": "Bob"}),
        ),
        rec(
            &carol,
            "actor.register",
            json!({"handle": "carol", "name": "Carol"}),
        ),
        rec(
            &alice,
            "dataset.create",
            json!({"dataset_id": "alice/open", "name": "Open", "access": "open"}),
        ),
        rec(
            &alice,
            "dataset.create",
            json!({"dataset_id": "alice/private", "name": "Private", "access": "owner"}),
        ),
        rec(
            &alice,
            "dataset.create",
            json!({"dataset_id": "alice/allow", "name": "Allow", "access": "allowlist", "allowlist": ["carol"]}),
        ),
        rec(&bob, "data.contribute", stored(ledger, "alice/open", "b1")),
        rec(
            &carol,
            "data.contribute",
            stored(ledger, "alice/allow", "c1"),
        ),
        rec(
            &alice,
            "data.contribute",
            stored(ledger, "alice/private", "a1"),
        ),
        rec(
            &alice,
            "model.register",
            json!({"model_id": "alice/base", "name": "Base", "datasets": ["alice/open", "alice/private"]}),
        ),
        rec(
            &bob,
            "model.register",
            json!({"model_id": "bob/tuned", "name": "Tuned", "parents": [{"model_id": "alice/base", "relation": "finetune"}], "datasets": ["alice/allow"]}),
        ),
    ];
    for r in ledger.submit_batch(batch) {
        r.unwrap();
    }
}
