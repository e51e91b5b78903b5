//! Property tests of the fold over random record sequences: a refused record changes nothing,
//! replaying the accepted records reproduces the state exactly, and the invariants hold.

use proptest::prelude::*;
use serde_json::{json, Value};
use shoulders_record::{sign_record, ActorKey, Body, Kind, SignedRecord};
use shoulders_state::State;

const HANDLES: [&str; 4] = ["ann", "ben", "cat", "dan"];
const RELATIONS: [&str; 4] = ["finetune", "adapter", "quantized", "distilled"];

#[derive(Clone, Debug)]
enum Op {
    Register {
        actor: usize,
        handle: usize,
    },
    Dataset {
        actor: usize,
        name: u8,
        access: u8,
    },
    Contribute {
        actor: usize,
        owner: usize,
        name: u8,
        doc: u16,
    },
    Model {
        actor: usize,
        name: u8,
        parent: Option<(usize, u8, usize)>,
        dataset: Option<(usize, u8)>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..4usize, 0..4usize).prop_map(|(actor, handle)| Op::Register { actor, handle }),
        (0..4usize, 0..3u8, 0..3u8).prop_map(|(actor, name, access)| Op::Dataset {
            actor,
            name,
            access
        }),
        (0..4usize, 0..4usize, 0..3u8, any::<u16>()).prop_map(|(actor, owner, name, doc)| {
            Op::Contribute {
                actor,
                owner,
                name,
                doc,
            }
        }),
        (
            0..4usize,
            0..4u8,
            proptest::option::of((0..4usize, 0..4u8, 0..4usize)),
            proptest::option::of((0..4usize, 0..3u8))
        )
            .prop_map(|(actor, name, parent, dataset)| Op::Model {
                actor,
                name,
                parent,
                dataset
            }),
    ]
}

fn body(op: &Op) -> (usize, Kind, Value) {
    match op {
        Op::Register { actor, handle } => (
            *actor,
            Kind::ActorRegister,
            json!({"handle": HANDLES[*handle], "name": "x"}),
        ),
        Op::Dataset {
            actor,
            name,
            access,
        } => {
            let access = ["open", "owner", "allowlist"][*access as usize];
            let mut b = json!({"dataset_id": format!("{}/d{name}", HANDLES[*actor]), "name": "d", "access": access});
            if access == "allowlist" {
                b["allowlist"] = json!([HANDLES[(*actor + 1) % 4]]);
            }
            (*actor, Kind::DatasetCreate, b)
        }
        Op::Contribute {
            actor,
            owner,
            name,
            doc,
        } => {
            use sha2::{Digest, Sha256};
            let hash = format!("sha256:{:x}", Sha256::digest(doc.to_be_bytes()));
            (
                *actor,
                Kind::DataContribute,
                json!({"dataset_id": format!("{}/d{name}", HANDLES[*owner]), "content_hash": hash, "byte_size": 2, "token_count": 1}),
            )
        }
        Op::Model {
            actor,
            name,
            parent,
            dataset,
        } => {
            let mut b = json!({"model_id": format!("{}/m{name}", HANDLES[*actor]), "name": "m"});
            if let Some((owner, pname, rel)) = parent {
                b["parents"] = json!([{"model_id": format!("{}/m{pname}", HANDLES[*owner]), "relation": RELATIONS[*rel]}]);
            }
            if let Some((owner, dname)) = dataset {
                b["datasets"] = json!([format!("{}/d{dname}", HANDLES[*owner])]);
            }
            (*actor, Kind::ModelRegister, b)
        }
    }
}

fn check_invariants(state: &State) {
    for model in state.models() {
        for p in &model.parents {
            let parent = state.model(&p.model_id).expect("parents exist");
            assert!(
                parent.registered_at < model.registered_at,
                "parents come first in the log"
            );
            assert!(parent.children.contains(&model.model_id));
        }
        assert!(
            !state.ancestors(&model.model_id).contains(&model.model_id),
            "lineage is acyclic"
        );
        for d in &model.datasets {
            assert!(state.dataset(d).is_some());
        }
        assert_eq!(model.model_id.split('/').next(), Some(model.owner.as_str()));
    }
    for dataset in state.datasets() {
        assert_eq!(
            dataset.contributors.values().sum::<u64>(),
            dataset.contributions.len() as u64
        );
        for c in &dataset.contributions {
            assert_eq!(
                state.contribution(*c).unwrap().dataset_id,
                dataset.dataset_id
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn refusals_change_nothing_and_replay_is_exact(ops in proptest::collection::vec(op(), 1..60)) {
        let keys: Vec<ActorKey> = (0..4u8).map(|i| ActorKey::from_seed([i + 1; 32])).collect();
        let mut state = State::new();
        let mut accepted: Vec<SignedRecord> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            let (actor, kind, value) = body(op);
            let rec = sign_record(&keys[actor], "test.example/log", &format!("op-{i}"), i as u64, Body::from_value(kind, value).unwrap()).unwrap();
            let before = state.clone();
            let leaf = [i as u8; 32];
            match state.apply(state.size(), leaf, &rec) {
                Ok(applied) => {
                    prop_assert_eq!(applied.index, accepted.len() as u64);
                    accepted.push(rec);
                }
                Err(reject) => {
                    prop_assert!(reject.code().starts_with("E_"));
                    prop_assert_eq!(&state, &before, "refused {:?} changed the state", reject);
                }
            }
            check_invariants(&state);
        }
        // Replaying only the accepted records gives an identical state.
        let mut replayed = State::new();
        for (i, rec) in accepted.iter().enumerate() {
            replayed.apply(i as u64, [0; 32], rec).unwrap();
        }
        prop_assert_eq!(replayed.size(), state.size());
        prop_assert_eq!(replayed.actors().collect::<Vec<_>>(), state.actors().collect::<Vec<_>>());
        prop_assert_eq!(replayed.datasets().collect::<Vec<_>>(), state.datasets().collect::<Vec<_>>());
        prop_assert_eq!(replayed.models().collect::<Vec<_>>(), state.models().collect::<Vec<_>>());
        // Re-applying any accepted record is refused as a duplicate.
        for rec in &accepted {
            let err = replayed.clone().apply(replayed.size(), [0; 32], rec).unwrap_err();
            prop_assert_eq!(err.code(), "E_DUPLICATE_ID");
        }
    }
}
