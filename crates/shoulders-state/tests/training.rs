//! Training-run provenance in the fold: credited actors must exist, a refused registration
//! changes nothing, and the per-actor credits index is rebuilt from stored rows exactly as the
//! fold keeps it.

use serde_json::{json, Value};
use shoulders_record::{sign_record, ActorKey, Body, CreditRole, Kind, SignedRecord};
use shoulders_state::{Credited, Reject, State};
use std::collections::BTreeMap;

struct Book {
    state: State,
    keys: BTreeMap<String, ActorKey>,
    accepted: Vec<SignedRecord>,
    seq: u64,
}

impl Book {
    fn new() -> Self {
        Book {
            state: State::new(),
            keys: BTreeMap::new(),
            accepted: Vec::new(),
            seq: 0,
        }
    }

    fn submit(&mut self, who: &str, kind: Kind, body: Value) -> Result<u64, Reject> {
        let n = self.keys.len() as u8;
        let key = self
            .keys
            .entry(who.to_string())
            .or_insert_with(|| ActorKey::from_seed([n + 1; 32]));
        self.seq += 1;
        let body = Body::from_value(kind, body).unwrap_or_else(|e| panic!("{kind}: {e}"));
        let rec = sign_record(
            key,
            "test.example/log",
            &format!("r-{}", self.seq),
            1_767_225_600_000 + self.seq,
            body,
        )
        .unwrap();
        let index = self.state.size();
        let before = self.state.clone();
        match self.state.apply(index, [0; 32], &rec) {
            Ok(_) => {
                self.accepted.push(rec);
                Ok(index)
            }
            Err(e) => {
                assert_eq!(before, self.state, "a refused record changed the state");
                Err(e)
            }
        }
    }

    fn actor(&mut self, handle: &str) {
        self.submit(
            handle,
            Kind::ActorRegister,
            json!({"handle": handle, "name": handle}),
        )
        .unwrap();
    }

    fn model(&mut self, who: &str, name: &str, training: Value) -> Result<u64, Reject> {
        self.submit(
            who,
            Kind::ModelRegister,
            json!({"model_id": format!("{who}/{name}"), "name": name, "training": training}),
        )
    }
}

fn credited(model_id: &str, role: CreditRole) -> Credited {
    Credited {
        model_id: model_id.into(),
        role,
    }
}

#[test]
fn credits_must_name_registered_actors() {
    let mut b = Book::new();
    b.actor("dave");
    b.actor("alice");
    let err = b
        .model(
            "dave",
            "m",
            json!({"credits": [{"actor": "alice", "role": "evaluator"},
                               {"actor": "nobody", "role": "framework_author"}]}),
        )
        .unwrap_err();
    assert_eq!(err.code(), "E_ACTOR_UNKNOWN");
    assert!(err.to_string().contains("nobody"), "{err}");
    assert!(b.state.model("dave/m").is_none());
    assert!(b.state.credits_of("alice").is_empty());
    // Once the actor exists, the same run is accepted.
    b.actor("nobody");
    b.model(
        "dave",
        "m",
        json!({"credits": [{"actor": "alice", "role": "evaluator"},
                           {"actor": "nobody", "role": "framework_author"}]}),
    )
    .unwrap();
    assert_eq!(
        b.state.credits_of("nobody"),
        &[credited("dave/m", CreditRole::FrameworkAuthor)]
    );
}

#[test]
fn the_model_keeps_its_training_run_and_the_index_lists_credits_in_log_order() {
    let mut b = Book::new();
    for a in ["carol-lab", "dave", "alice"] {
        b.actor(a);
    }
    let run = json!({
        "config_hash": format!("sha256:{}", "1".repeat(64)),
        "code": {"repository": "https://git.example.org/dave/verse", "commit": "a".repeat(40)},
        "framework": {"name": "PyTorch", "version": "2.4"},
        "credits": [{"actor": "carol-lab", "role": "framework_author"},
                    {"actor": "dave", "role": "trainer"},
                    {"actor": "alice", "role": "evaluator"}],
        "compute": {"hardware": "1x A100", "accelerator_hours": 6, "energy_wh": 2400, "region": "eu-west-1"}
    });
    b.model("dave", "first", run.clone()).unwrap();
    b.model(
        "carol-lab",
        "second",
        json!({"credits": [{"actor": "alice", "role": "evaluator"}, {"actor": "alice", "role": "data_engineer"}]}),
    )
    .unwrap();
    // No training: nothing indexed, nothing stored.
    b.submit(
        "alice",
        Kind::ModelRegister,
        json!({"model_id": "alice/plain", "name": "plain"}),
    )
    .unwrap();

    let m = b.state.model("dave/first").unwrap();
    let t = m.training.as_ref().unwrap();
    assert_eq!(t.compute.as_ref().unwrap().energy_wh, Some(2400));
    assert_eq!(
        serde_json::to_value(m).unwrap()["training"]["credits"][0]["role"],
        "framework_author"
    );
    assert!(serde_json::to_value(b.state.model("alice/plain").unwrap())
        .unwrap()
        .get("training")
        .is_none());
    assert_eq!(
        b.state.credits_of("alice"),
        &[
            credited("dave/first", CreditRole::Evaluator),
            credited("carol-lab/second", CreditRole::Evaluator),
            credited("carol-lab/second", CreditRole::DataEngineer),
        ]
    );
    assert_eq!(
        b.state.credits_of("dave"),
        &[credited("dave/first", CreditRole::Trainer)]
    );
    assert!(b.state.credits_of("erin").is_empty());

    // Replay gives the same state; stored rows load back to the same rows and the same index.
    let mut replay = State::new();
    for (i, rec) in b.accepted.iter().enumerate() {
        replay.apply(i as u64, [0; 32], rec).unwrap();
    }
    assert_eq!(replay, b.state);
    let rows = b.state.all_entity_rows();
    let loaded = State::from_rows(
        rows.iter()
            .map(|r| (r.kind.to_string(), r.key.clone(), r.value.clone())),
    )
    .unwrap();
    assert_eq!(loaded.all_entity_rows(), rows);
    for a in ["carol-lab", "dave", "alice"] {
        assert_eq!(loaded.credits_of(a), b.state.credits_of(a), "{a}");
    }
    assert_eq!(loaded.model("dave/first"), b.state.model("dave/first"));
    // The stored model row carries the training run (the index is derived, not stored).
    let row = rows
        .iter()
        .find(|r| r.kind == "model" && r.key == "dave/first")
        .unwrap();
    let stored: Value = serde_json::from_slice(&row.value).unwrap();
    assert_eq!(stored["training"], run);
}

#[test]
fn model_rows_written_before_training_existed_still_load() {
    let mut b = Book::new();
    b.actor("dave");
    b.submit(
        "dave",
        Kind::ModelRegister,
        json!({"model_id": "dave/old", "name": "old"}),
    )
    .unwrap();
    let rows = b.state.all_entity_rows();
    assert!(rows
        .iter()
        .filter(|r| r.kind == "model")
        .all(|r| !String::from_utf8_lossy(&r.value).contains("training")));
    let loaded = State::from_rows(
        rows.iter()
            .map(|r| (r.kind.to_string(), r.key.clone(), r.value.clone())),
    )
    .unwrap();
    assert_eq!(loaded.model("dave/old").unwrap().training, None);
}
