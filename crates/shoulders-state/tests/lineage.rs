//! Lineage queries: ancestors, descendants and provenance of a fixed model family (checked
//! exactly, table-driven), their DOT and Mermaid renderings (golden files), escaping of
//! unusual ids, and a property test against a naive recomputation on random lineage graphs.
//!
//! Regenerate the golden files deliberately with
//! `UPDATE_GOLDEN=1 cargo test -p shoulders-state --test lineage`.

use proptest::prelude::*;
use serde_json::{json, Value};
use shoulders_record::{sign_record, ActorKey, Body, Kind, Relation};
use shoulders_state::lineage::{Ancestor, Contributor, DatasetUse, Descendant, Edge, LineageModel};
use shoulders_state::{provenance, to_dot, to_mermaid, Provenance, State};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

const HANDLES: [&str; 4] = ["ann", "ben", "cat", "dan"];
const TS: u64 = 1_700_000_000_000;

/// Signs records with fixed keys (actor `i` has seed `[i + 1; 32]`) and folds them.
struct Builder {
    keys: Vec<ActorKey>,
    state: State,
}

impl Builder {
    fn new() -> Self {
        let keys: Vec<ActorKey> = (0..HANDLES.len() as u8)
            .map(|i| ActorKey::from_seed([i + 1; 32]))
            .collect();
        let mut b = Builder {
            keys,
            state: State::new(),
        };
        for (i, h) in HANDLES.iter().enumerate() {
            b.push(i, Kind::ActorRegister, json!({"handle": h, "name": h}));
        }
        b
    }

    fn push(&mut self, actor: usize, kind: Kind, body: Value) {
        let n = self.state.size();
        let rec = sign_record(
            &self.keys[actor],
            "test.example/log",
            &format!("r{n}"),
            TS + n,
            Body::from_value(kind, body).unwrap(),
        )
        .unwrap();
        self.state
            .apply(n, [0; 32], &rec)
            .unwrap_or_else(|e| panic!("record {n} refused: {e}"));
    }

    fn actor(id: &str) -> usize {
        let handle = id.split('/').next().unwrap();
        HANDLES.iter().position(|h| *h == handle).unwrap()
    }

    fn dataset(&mut self, id: &str, name: &str, access: &str, allowlist: &[&str]) {
        let mut body = json!({"dataset_id": id, "name": name, "access": access});
        if !allowlist.is_empty() {
            body["allowlist"] = json!(allowlist);
        }
        self.push(Self::actor(id), Kind::DatasetCreate, body);
    }

    fn contribute(&mut self, contributor: &str, dataset: &str, bytes: u64, tokens: u64) {
        let hash = format!("sha256:{:064x}", self.state.size());
        self.push(
            Self::actor(contributor),
            Kind::DataContribute,
            json!({"dataset_id": dataset, "content_hash": hash, "byte_size": bytes, "token_count": tokens}),
        );
    }

    fn model(&mut self, id: &str, parents: &[(&str, &str)], datasets: &[&str]) {
        let mut body = json!({"model_id": id, "name": format!("Model {id}")});
        if !parents.is_empty() {
            body["parents"] = parents
                .iter()
                .map(|(p, r)| json!({"model_id": p, "relation": r}))
                .collect();
        }
        if !datasets.is_empty() {
            body["datasets"] = json!(datasets);
        }
        self.push(Self::actor(id), Kind::ModelRegister, body);
    }
}

/// The family:
///
/// ```text
/// ann/base ──finetune── cat/ft ──adapter── dan/adapter ──quantized── dan/adapter-q4 ──finetune── ann/mix
///                          └──merge── ben/merge ──────────────────────────────────distilled──────┘
///                 ben/base-b ──merge──┘
/// dan/solo (unrelated)
/// ```
///
/// with datasets at several levels (`ann/web` used three times, `cat/chat` twice, `ben/empty`
/// with no contributions, `dan/unused` only by the unrelated model).
fn family() -> State {
    let mut b = Builder::new();
    b.dataset("ann/web", "Web crawl", "open", &[]);
    b.dataset("ben/code", "Code", "allowlist", &["cat"]);
    b.dataset("ben/empty", "Empty", "owner", &[]);
    b.dataset("cat/chat", "Chat logs", "owner", &[]);
    b.dataset("dan/math", "Math problems", "open", &[]);
    b.dataset("dan/unused", "Unused", "open", &[]);
    b.contribute("ann", "ann/web", 100, 10);
    b.contribute("ben", "ann/web", 200, 20);
    b.contribute("ann", "ann/web", 300, 30);
    b.contribute("cat", "ann/web", 400, 40);
    b.contribute("ben", "ben/code", 50, 5);
    b.contribute("cat", "ben/code", 60, 6);
    b.contribute("cat", "ben/code", 70, 7);
    b.contribute("cat", "cat/chat", 1, 1);
    b.contribute("dan", "dan/math", 10, 2);
    b.contribute("ann", "dan/math", 20, 3);
    b.contribute("dan", "dan/unused", 5, 1);
    b.model("ann/base", &[], &["ann/web"]);
    b.model("ben/base-b", &[], &["ben/code", "ann/web", "ben/empty"]);
    b.model("cat/ft", &[("ann/base", "finetune")], &["cat/chat"]);
    b.model("dan/adapter", &[("cat/ft", "adapter")], &["dan/math"]);
    b.model("dan/adapter-q4", &[("dan/adapter", "quantized")], &[]);
    b.model(
        "ben/merge",
        &[("cat/ft", "merge"), ("ben/base-b", "merge")],
        &["cat/chat"],
    );
    b.model(
        "ann/mix",
        &[("dan/adapter-q4", "finetune"), ("ben/merge", "distilled")],
        &["ann/web"],
    );
    b.model("dan/solo", &[], &["dan/unused"]);
    b.state
}

/// Expected lineage of one model of the family.
struct Case {
    model: &'static str,
    ancestors: &'static [(&'static str, u32)],
    descendants: &'static [(&'static str, u32)],
    /// `child parent relation`.
    edges: &'static [&'static str],
    /// `dataset: used_by…`.
    datasets: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        model: "ann/base",
        ancestors: &[],
        descendants: &[
            ("cat/ft", 1),
            ("dan/adapter", 2),
            ("ben/merge", 2),
            ("dan/adapter-q4", 3),
            ("ann/mix", 3),
        ],
        edges: &[],
        datasets: &["ann/web: ann/base"],
    },
    Case {
        model: "ben/base-b",
        ancestors: &[],
        descendants: &[("ben/merge", 1), ("ann/mix", 2)],
        edges: &[],
        datasets: &[
            "ben/code: ben/base-b",
            "ann/web: ben/base-b",
            "ben/empty: ben/base-b",
        ],
    },
    Case {
        model: "cat/ft",
        ancestors: &[("ann/base", 1)],
        descendants: &[
            ("dan/adapter", 1),
            ("ben/merge", 1),
            ("dan/adapter-q4", 2),
            ("ann/mix", 2),
        ],
        edges: &["cat/ft ann/base finetune"],
        datasets: &["cat/chat: cat/ft", "ann/web: ann/base"],
    },
    Case {
        model: "dan/adapter",
        ancestors: &[("cat/ft", 1), ("ann/base", 2)],
        descendants: &[("dan/adapter-q4", 1), ("ann/mix", 2)],
        edges: &["dan/adapter cat/ft adapter", "cat/ft ann/base finetune"],
        datasets: &[
            "dan/math: dan/adapter",
            "cat/chat: cat/ft",
            "ann/web: ann/base",
        ],
    },
    Case {
        model: "dan/adapter-q4",
        ancestors: &[("dan/adapter", 1), ("cat/ft", 2), ("ann/base", 3)],
        descendants: &[("ann/mix", 1)],
        edges: &[
            "dan/adapter-q4 dan/adapter quantized",
            "dan/adapter cat/ft adapter",
            "cat/ft ann/base finetune",
        ],
        datasets: &[
            "dan/math: dan/adapter",
            "cat/chat: cat/ft",
            "ann/web: ann/base",
        ],
    },
    Case {
        model: "ben/merge",
        ancestors: &[("cat/ft", 1), ("ben/base-b", 1), ("ann/base", 2)],
        descendants: &[("ann/mix", 1)],
        edges: &[
            "ben/merge cat/ft merge",
            "ben/merge ben/base-b merge",
            "cat/ft ann/base finetune",
        ],
        datasets: &[
            "cat/chat: ben/merge cat/ft",
            "ben/code: ben/base-b",
            "ann/web: ben/base-b ann/base",
            "ben/empty: ben/base-b",
        ],
    },
    Case {
        // cat/ft is reachable at depth 2 (through the merge) and 3 (through the adapter chain).
        model: "ann/mix",
        ancestors: &[
            ("dan/adapter-q4", 1),
            ("ben/merge", 1),
            ("dan/adapter", 2),
            ("cat/ft", 2),
            ("ben/base-b", 2),
            ("ann/base", 3),
        ],
        descendants: &[],
        edges: &[
            "ann/mix dan/adapter-q4 finetune",
            "ann/mix ben/merge distilled",
            "dan/adapter-q4 dan/adapter quantized",
            "ben/merge cat/ft merge",
            "ben/merge ben/base-b merge",
            "dan/adapter cat/ft adapter",
            "cat/ft ann/base finetune",
        ],
        datasets: &[
            "ann/web: ann/mix ben/base-b ann/base",
            "cat/chat: ben/merge cat/ft",
            "dan/math: dan/adapter",
            "ben/code: ben/base-b",
            "ben/empty: ben/base-b",
        ],
    },
    Case {
        model: "dan/solo",
        ancestors: &[],
        descendants: &[],
        edges: &[],
        datasets: &["dan/unused: dan/solo"],
    },
];

#[test]
fn family_lineage_is_exact() {
    let state = family();
    assert_eq!(
        CASES.len(),
        state.models().count(),
        "every model has a case"
    );
    for case in CASES {
        let p = provenance(&state, case.model).unwrap();
        let m = case.model;
        assert_eq!(p.model.model_id, m);
        assert_eq!(p.model.owner, m.split('/').next().unwrap());
        assert_eq!(p.model.name, format!("Model {m}"));
        assert_eq!(p.model.parents, state.model(m).unwrap().parents);

        let ancestors: Vec<(&str, u32)> = p
            .ancestors
            .iter()
            .map(|a| (a.model_id.as_str(), a.depth))
            .collect();
        assert_eq!(ancestors, case.ancestors, "ancestors of {m}");
        for a in &p.ancestors {
            let model = state.model(&a.model_id).unwrap();
            assert_eq!(a.owner, model.owner);
            assert_eq!(a.name, model.name);
            assert_eq!(a.parents, model.parents);
        }
        let descendants: Vec<(&str, u32)> = p
            .descendants
            .iter()
            .map(|d| (d.model_id.as_str(), d.depth))
            .collect();
        assert_eq!(descendants, case.descendants, "descendants of {m}");

        // The State methods list the same models in the same order.
        let ids = |v: &[(&str, u32)]| v.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>();
        assert_eq!(
            state.ancestors(m),
            ids(case.ancestors),
            "State::ancestors({m})"
        );
        assert_eq!(
            state.descendants(m),
            ids(case.descendants),
            "State::descendants({m})"
        );

        let edges: Vec<String> = p
            .edges
            .iter()
            .map(|e| format!("{} {} {}", e.child, e.parent, e.relation.as_str()))
            .collect();
        assert_eq!(edges, case.edges, "edges of {m}");

        let datasets: Vec<String> = p
            .datasets
            .iter()
            .map(|d| format!("{}: {}", d.dataset_id, d.used_by.join(" ")))
            .collect();
        assert_eq!(datasets, case.datasets, "datasets of {m}");
        for d in &p.datasets {
            let dataset = state.dataset(&d.dataset_id).unwrap();
            assert_eq!(d.owner, dataset.owner);
            assert_eq!(d.name, dataset.name);
            assert_eq!(d.contributions, dataset.contributions.len() as u64);
            assert_eq!(d.total_bytes, dataset.total_bytes);
            assert_eq!(d.total_tokens, dataset.total_tokens);
            let contributors: BTreeMap<String, u64> = d
                .contributors
                .iter()
                .map(|c| (c.handle.clone(), c.contributions))
                .collect();
            assert_eq!(contributors, dataset.contributors);
        }
    }
}

#[test]
fn descendants_and_ancestors_mirror_each_other() {
    let state = family();
    for a in state.models() {
        for b in state.models() {
            assert_eq!(
                state.descendants(&a.model_id).contains(&b.model_id),
                state.ancestors(&b.model_id).contains(&a.model_id),
                "{} / {}",
                a.model_id,
                b.model_id
            );
        }
    }
}

#[test]
fn unknown_model_has_no_lineage() {
    let state = family();
    assert_eq!(provenance(&state, "ann/nope"), None);
    assert_eq!(
        provenance(&state, "ann/web"),
        None,
        "a dataset is not a model"
    );
    assert_eq!(provenance(&State::new(), "ann/base"), None);
    assert!(state.ancestors("ann/nope").is_empty());
    assert!(state.descendants("ann/nope").is_empty());
}

/// The whole provenance of the merged, distilled model, field by field as JSON.
#[test]
fn provenance_json_is_exact() {
    let state = family();
    let p = provenance(&state, "ann/mix").unwrap();
    let parents = |v: &[(&str, &str)]| -> Value {
        v.iter()
            .map(|(m, r)| json!({"model_id": m, "relation": r}))
            .collect()
    };
    let expected = json!({
        "model": {
            "model_id": "ann/mix", "owner": "ann", "name": "Model ann/mix",
            "parents": parents(&[("dan/adapter-q4", "finetune"), ("ben/merge", "distilled")]),
        },
        "ancestors": [
            {"model_id": "dan/adapter-q4", "owner": "dan", "name": "Model dan/adapter-q4", "depth": 1,
             "parents": parents(&[("dan/adapter", "quantized")])},
            {"model_id": "ben/merge", "owner": "ben", "name": "Model ben/merge", "depth": 1,
             "parents": parents(&[("cat/ft", "merge"), ("ben/base-b", "merge")])},
            {"model_id": "dan/adapter", "owner": "dan", "name": "Model dan/adapter", "depth": 2,
             "parents": parents(&[("cat/ft", "adapter")])},
            {"model_id": "cat/ft", "owner": "cat", "name": "Model cat/ft", "depth": 2,
             "parents": parents(&[("ann/base", "finetune")])},
            {"model_id": "ben/base-b", "owner": "ben", "name": "Model ben/base-b", "depth": 2,
             "parents": []},
            {"model_id": "ann/base", "owner": "ann", "name": "Model ann/base", "depth": 3,
             "parents": []},
        ],
        "descendants": [],
        "edges": [
            {"child": "ann/mix", "parent": "dan/adapter-q4", "relation": "finetune"},
            {"child": "ann/mix", "parent": "ben/merge", "relation": "distilled"},
            {"child": "dan/adapter-q4", "parent": "dan/adapter", "relation": "quantized"},
            {"child": "ben/merge", "parent": "cat/ft", "relation": "merge"},
            {"child": "ben/merge", "parent": "ben/base-b", "relation": "merge"},
            {"child": "dan/adapter", "parent": "cat/ft", "relation": "adapter"},
            {"child": "cat/ft", "parent": "ann/base", "relation": "finetune"},
        ],
        "datasets": [
            {"dataset_id": "ann/web", "owner": "ann", "name": "Web crawl",
             "used_by": ["ann/mix", "ben/base-b", "ann/base"], "contributions": 4,
             "contributors": [{"handle": "ann", "contributions": 2}, {"handle": "ben", "contributions": 1},
                              {"handle": "cat", "contributions": 1}],
             "total_bytes": 1000, "total_tokens": 100},
            {"dataset_id": "cat/chat", "owner": "cat", "name": "Chat logs",
             "used_by": ["ben/merge", "cat/ft"], "contributions": 1,
             "contributors": [{"handle": "cat", "contributions": 1}],
             "total_bytes": 1, "total_tokens": 1},
            {"dataset_id": "dan/math", "owner": "dan", "name": "Math problems",
             "used_by": ["dan/adapter"], "contributions": 2,
             "contributors": [{"handle": "ann", "contributions": 1}, {"handle": "dan", "contributions": 1}],
             "total_bytes": 30, "total_tokens": 5},
            {"dataset_id": "ben/code", "owner": "ben", "name": "Code",
             "used_by": ["ben/base-b"], "contributions": 3,
             "contributors": [{"handle": "ben", "contributions": 1}, {"handle": "cat", "contributions": 2}],
             "total_bytes": 180, "total_tokens": 18},
            {"dataset_id": "ben/empty", "owner": "ben", "name": "Empty",
             "used_by": ["ben/base-b"], "contributions": 0, "contributors": [],
             "total_bytes": 0, "total_tokens": 0},
        ],
    });
    assert_eq!(serde_json::to_value(&p).unwrap(), expected);
    // The queried model is a descendant of its ancestors, with the matching depth.
    let base = provenance(&state, "ann/base").unwrap();
    assert!(base
        .descendants
        .iter()
        .any(|d| d.model_id == "ann/mix" && d.depth == 3));
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Compare `actual` with the golden file `name`, or rewrite it under `UPDATE_GOLDEN=1`.
fn golden(name: &str, actual: &str) {
    let path = data(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert!(
        expected == actual,
        "{} differs from the output:\n{actual}",
        path.display()
    );
}

#[test]
fn dot_and_mermaid_match_golden_files() {
    let state = family();
    for (model, file) in [
        ("ann/mix", "lineage_ann-mix"),
        ("dan/adapter-q4", "lineage_dan-adapter-q4"),
        ("ann/base", "lineage_ann-base"),
    ] {
        let p = provenance(&state, model).unwrap();
        let dot = to_dot(&p);
        let mermaid = to_mermaid(&p);
        golden(&format!("{file}.dot"), &dot);
        golden(&format!("{file}.mmd"), &mermaid);
        // Deterministic: a fresh fold renders the same bytes.
        let again = provenance(&family(), model).unwrap();
        assert_eq!(to_dot(&again), dot);
        assert_eq!(to_mermaid(&again), mermaid);
        // One node per model and dataset of the graph, one edge per lineage edge and dataset use.
        let nodes = 1 + p.ancestors.len() + p.datasets.len();
        let uses: usize = p.datasets.iter().map(|d| d.used_by.len()).sum();
        assert_eq!(
            dot.matches(" [label=").count(),
            nodes + p.edges.len() + uses
        );
        assert_eq!(dot.matches(" -> ").count(), p.edges.len() + uses);
        assert_eq!(
            mermaid.matches("[\"").count() + mermaid.matches("[(\"").count(),
            nodes
        );
        assert_eq!(mermaid.matches("-->|").count(), p.edges.len());
        assert_eq!(mermaid.matches("-.->|trained on|").count(), uses);
    }
}

/// A hand-made provenance whose ids hold every character that means something in DOT or
/// Mermaid: quotes, backslashes, `#`, angle brackets, `&`, a line break.
#[test]
fn renderers_escape_awkward_ids() {
    let odd = "x/a\"b\\c#d<e>&f\ng";
    let p = Provenance {
        model: LineageModel {
            model_id: odd.into(),
            owner: "x".into(),
            name: "n".into(),
            license_id: None,
            parents: vec![],
        },
        ancestors: vec![Ancestor {
            model_id: "y/p\\".into(),
            owner: "y".into(),
            name: "n".into(),
            license_id: None,
            depth: 1,
            parents: vec![],
        }],
        descendants: vec![Descendant {
            model_id: "z/c".into(),
            depth: 1,
        }],
        edges: vec![Edge {
            child: odd.into(),
            parent: "y/p\\".into(),
            relation: Relation::Merge,
        }],
        datasets: vec![DatasetUse {
            dataset_id: "d/\"q\"".into(),
            owner: "d".into(),
            name: "n".into(),
            used_by: vec!["y/p\\".into()],
            contributions: 1,
            contributors: vec![Contributor {
                handle: "d".into(),
                contributions: 1,
            }],
            total_bytes: 1,
            total_tokens: 0,
        }],
    };
    let dot = to_dot(&p);
    assert_eq!(
        dot,
        concat!(
            "digraph lineage {\n",
            "  rankdir=BT;\n",
            "  node [shape=box];\n",
            r#"  "model:x/a\"b\\c#d<e>&f\ng" [label="x/a\"b\\c#d<e>&f\ng", penwidth=2];"#,
            "\n",
            r#"  "model:y/p\\" [label="y/p\\"];"#,
            "\n",
            r#"  "dataset:d/\"q\"" [label="d/\"q\"", shape=cylinder];"#,
            "\n",
            r#"  "model:x/a\"b\\c#d<e>&f\ng" -> "model:y/p\\" [label="merge"];"#,
            "\n",
            r#"  "model:y/p\\" -> "dataset:d/\"q\"" [label="trained on", style=dashed];"#,
            "\n",
            "}\n",
        )
    );
    let mermaid = to_mermaid(&p);
    assert_eq!(
        mermaid,
        concat!(
            "flowchart BT\n",
            "    m0[\"x/a#quot;b\\c#35;d#lt;e#gt;#amp;f g\"]\n",
            "    m1[\"y/p\\\"]\n",
            "    d0[(\"d/#quot;q#quot;\")]\n",
            "    m0 -->|merge| m1\n",
            "    m1 -.->|trained on| d0\n",
            "    classDef subject stroke-width:3px\n",
            "    class m0 subject\n",
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Random lineage graphs against a naive recomputation
// ---------------------------------------------------------------------------------------------

const BASE_RELATIONS: [&str; 4] = ["finetune", "adapter", "quantized", "distilled"];
const DATASETS: [&str; 3] = ["ann/d0", "ben/d1", "cat/d2"];

/// Model `i`: parent picks among models `0..i`, whether a multi-parent model is a merge, the
/// base relation, and a bit mask of datasets.
type Spec = (Vec<prop::sample::Index>, bool, usize, u8);

fn random_state(specs: &[Spec]) -> (State, Vec<String>) {
    let mut b = Builder::new();
    for (i, d) in DATASETS.iter().enumerate() {
        b.dataset(d, "d", "open", &[]);
        for (c, handle) in HANDLES.iter().enumerate().take(i + 1) {
            b.contribute(handle, d, 1 + c as u64, c as u64);
        }
    }
    let mut ids: Vec<String> = Vec::new();
    for (i, (picks, merge, rel, mask)) in specs.iter().enumerate() {
        let id = format!("{}/m{i}", HANDLES[i % HANDLES.len()]);
        let mut parents: Vec<String> = Vec::new();
        if i > 0 {
            for pick in picks {
                let p = ids[pick.index(i)].clone();
                if !parents.contains(&p) {
                    parents.push(p);
                }
            }
        }
        let relations: Vec<&str> = if *merge && parents.len() >= 2 {
            vec!["merge"; parents.len()]
        } else {
            (0..parents.len())
                .map(|k| {
                    if k == 0 {
                        BASE_RELATIONS[*rel]
                    } else {
                        "distilled"
                    }
                })
                .collect()
        };
        let parent_refs: Vec<(&str, &str)> =
            parents.iter().map(String::as_str).zip(relations).collect();
        let datasets: Vec<&str> = (0..DATASETS.len())
            .filter(|k| mask & (1 << k) != 0)
            .map(|k| DATASETS[k])
            .collect();
        b.model(&id, &parent_refs, &datasets);
        ids.push(id);
    }
    (b.state, ids)
}

/// Shortest distances from `start` along `next`, by relaxing every model until nothing changes.
fn naive_distances(
    state: &State,
    start: &str,
    next: impl Fn(&str) -> Vec<String>,
) -> BTreeMap<String, u32> {
    let mut dist: BTreeMap<String, u32> = BTreeMap::from([(start.to_string(), 0)]);
    loop {
        let mut changed = false;
        for m in state.models() {
            let Some(&d) = dist.get(&m.model_id) else {
                continue;
            };
            for n in next(&m.model_id) {
                if dist.get(&n).is_none_or(|&old| old > d + 1) {
                    dist.insert(n, d + 1);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    dist.remove(start);
    dist
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn provenance_matches_naive_recomputation(
        specs in proptest::collection::vec(
            (proptest::collection::vec(any::<prop::sample::Index>(), 0..4), any::<bool>(), 0..4usize, 0..8u8),
            1..24,
        )
    ) {
        let (state, ids) = random_state(&specs);
        for id in &ids {
            let p = provenance(&state, id).unwrap();
            let parents = |m: &str| -> Vec<String> {
                state.model(m).unwrap().parents.iter().map(|p| p.model_id.clone()).collect()
            };
            let children = |m: &str| state.model(m).unwrap().children.clone();
            let up = naive_distances(&state, id, parents);
            let down = naive_distances(&state, id, children);

            // Ancestors: exactly the closure, shortest depths, nearest first, same as State.
            let got: BTreeMap<String, u32> =
                p.ancestors.iter().map(|a| (a.model_id.clone(), a.depth)).collect();
            prop_assert_eq!(got.len(), p.ancestors.len(), "ancestors listed once");
            prop_assert_eq!(&got, &up);
            prop_assert!(p.ancestors.windows(2).all(|w| w[0].depth <= w[1].depth));
            prop_assert_eq!(
                p.ancestors.iter().map(|a| a.model_id.clone()).collect::<Vec<_>>(),
                state.ancestors(id)
            );
            // Descendants likewise.
            let got: BTreeMap<String, u32> =
                p.descendants.iter().map(|d| (d.model_id.clone(), d.depth)).collect();
            prop_assert_eq!(got.len(), p.descendants.len(), "descendants listed once");
            prop_assert_eq!(&got, &down);
            prop_assert!(p.descendants.windows(2).all(|w| w[0].depth <= w[1].depth));
            prop_assert_eq!(
                p.descendants.iter().map(|d| d.model_id.clone()).collect::<Vec<_>>(),
                state.descendants(id)
            );

            // Edges: every parent link of every model in the graph, once.
            let graph: Vec<&str> = std::iter::once(id.as_str())
                .chain(p.ancestors.iter().map(|a| a.model_id.as_str()))
                .collect();
            let mut expected_edges = BTreeSet::new();
            for m in &graph {
                for par in &state.model(m).unwrap().parents {
                    expected_edges.insert((m.to_string(), par.model_id.clone(), par.relation));
                }
            }
            let edges: BTreeSet<(String, String, Relation)> = p
                .edges
                .iter()
                .map(|e| (e.child.clone(), e.parent.clone(), e.relation))
                .collect();
            prop_assert_eq!(edges.len(), p.edges.len(), "edges listed once");
            prop_assert_eq!(edges, expected_edges);

            // Datasets: the union over the graph, once each, `used_by` in graph order.
            let mut expected_used: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for m in &graph {
                for d in &state.model(m).unwrap().datasets {
                    expected_used.entry(d.clone()).or_default().push(m.to_string());
                }
            }
            let used: BTreeMap<String, Vec<String>> = p
                .datasets
                .iter()
                .map(|d| (d.dataset_id.clone(), d.used_by.clone()))
                .collect();
            prop_assert_eq!(used.len(), p.datasets.len(), "datasets listed once");
            prop_assert_eq!(used, expected_used);

            // The renderings are well-formed: one node line per model and dataset.
            let nodes = graph.len() + p.datasets.len();
            let mermaid = to_mermaid(&p);
            prop_assert_eq!(mermaid.matches("[\"").count() + mermaid.matches("[(\"").count(), nodes);
            let closed = to_dot(&p).ends_with("}\n");
            prop_assert!(closed, "DOT graph is closed");
        }
    }
}
