//! The three exports of a model built by signing and folding real records: each validates
//! against its official schema (vendored under `tests/data/schemas`, resolved offline), is
//! checked for meaning beyond what the schema can say, and matches a golden file.
//!
//! Regenerate the golden files deliberately, after reading the diff, with
//! `UPDATE_GOLDEN=1 cargo test -p shoulders-formats --test formats`.

use jsonschema::{Registry, Validator};
use serde_json::{json, Value};
use shoulders_formats::{
    cyclonedx_json, cyclonedx_json_with, hf_card_yaml, spdx3_json, spdx3_json_with, Attachments,
    LicenseSummary,
};
use shoulders_record::{sign_record, ActorKey, Body, Kind};
use shoulders_state::State;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;
use yaml_rust2::{Yaml, YamlLoader};

const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const DEEPEST: &str = "dan/merged-1b";
const CREATED_MS: u64 = 1_767_312_000_123; // 2026-01-02T00:00:00.123Z
/// A model with a full training run (and a descendant naming the same framework).
const TRAINED: &str = "ben/chat-1b";

/// The training configuration `ben/chat-1b`'s run names by hash: scalars, a null and nested
/// values (which the standards' flat lists leave out).
fn training_config() -> serde_json::Map<String, Value> {
    serde_json::from_value(json!({
        "learning_rate": 0.0002, "epochs": 3, "batch_size": 16, "optimizer": "adamw",
        "bf16": true, "seed": null, "scheduler": {"type": "cosine", "warmup_steps": 100},
        "layers_frozen": [0, 1]
    }))
    .unwrap()
}

/// `sha256:` of the configuration's canonical text (as a caller would find it stored).
fn training_config_hash() -> String {
    use sha2::Digest;
    let bytes = serde_json::to_vec(&training_config()).unwrap();
    let digest = sha2::Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Whether a caller reading the content store would pass `config` for `model_id`: its run
/// names that configuration.
fn attachments_for(state: &State, model_id: &str) -> bool {
    state
        .model(model_id)
        .and_then(|m| m.training.as_ref()?.config_hash.as_ref())
        .is_some_and(|h| *h == training_config_hash())
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(data(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// A fake but well-formed `sha256:` reference, different for each `tag`.
fn sha(tag: u64) -> String {
    format!(
        "sha256:{:016x}{:048x}",
        tag,
        tag.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    )
}

struct Ledger {
    state: State,
    keys: BTreeMap<&'static str, ActorKey>,
}

impl Ledger {
    fn submit(&mut self, who: &'static str, kind: Kind, body: Value) {
        let n = self.state.size();
        let key = self.keys.entry(who).or_insert_with(|| {
            let mut seed = [7u8; 32];
            seed[..who.len()].copy_from_slice(who.as_bytes());
            ActorKey::from_seed(seed)
        });
        let body = Body::from_value(kind, body).unwrap();
        let rec = sign_record(
            key,
            "test.example/log",
            &format!("rec-{n}"),
            T0 + n * 60_000,
            body,
        )
        .unwrap();
        let leaf = [n as u8; 32];
        self.state.apply(n, leaf, &rec).unwrap();
    }
}

/// Actors, two datasets with contributions, a base model, a finetune with artifacts and tensors,
/// an adapter on the finetune, a second base, a merge of the adapter and that base (the deepest
/// model), and a student with a finetune base plus a distilled teacher.
fn ledger() -> State {
    let mut l = Ledger {
        state: State::new(),
        keys: BTreeMap::new(),
    };
    use Kind::*;
    l.submit(
        "ann",
        ActorRegister,
        json!({"handle": "ann", "name": "Ann Archivist", "url": "https://ann.example/"}),
    );
    l.submit(
        "ben",
        ActorRegister,
        json!({"handle": "ben", "name": "Ben Tuner"}),
    );
    l.submit(
        "cat",
        ActorRegister,
        json!({"handle": "cat", "name": "Cat Adapter"}),
    );
    l.submit(
        "dan",
        ActorRegister,
        json!({"handle": "dan", "name": "Dan Merger"}),
    );
    l.submit(
        "ann",
        DatasetCreate,
        json!({"dataset_id": "ann/verse", "name": "Verse", "description": "Public-domain poems.", "access": "open"}),
    );
    l.submit(
        "ben",
        DatasetCreate,
        json!({"dataset_id": "ben/prose", "name": "Prose & Pictures", "access": "allowlist", "allowlist": ["cat"]}),
    );
    let mut doc = 0;
    let mut contribute = |l: &mut Ledger, who, dataset: &str, media: Option<&str>| {
        doc += 1;
        let mut body = json!({"dataset_id": dataset, "content_hash": sha(100 + doc), "byte_size": 1000 * doc, "token_count": 250 * doc});
        if let Some(m) = media {
            body["media_type"] = json!(m);
        }
        l.submit(who, DataContribute, body);
    };
    contribute(&mut l, "ann", "ann/verse", Some("text/plain"));
    contribute(&mut l, "ben", "ann/verse", Some("text/markdown"));
    contribute(&mut l, "ann", "ann/verse", None);
    contribute(&mut l, "cat", "ben/prose", Some("image/png"));
    contribute(&mut l, "ben", "ben/prose", Some("application/octet-stream"));
    l.submit(
        "ann",
        ModelRegister,
        json!({"model_id": "ann/base-1b", "name": "Base 1B", "datasets": ["ann/verse"],
               "artifacts": [{"path": "config.json", "size_bytes": 512, "sha256": sha(1)}]}),
    );
    l.submit(
        "ben",
        ModelRegister,
        json!({"model_id": "ben/tuned-1b", "name": "Tuned 1B", "description": "Base 1B finetuned on prose.\nSecond line.",
               "parents": [{"model_id": "ann/base-1b", "relation": "finetune"}],
               "datasets": ["ben/prose", "ann/verse"],
               "url": "https://models.example/ben/tuned-1b",
               "artifacts": [
                   {"path": "model.safetensors", "size_bytes": 4096, "sha256": sha(2), "tensors": [
                       {"name": "embed.weight", "dtype": "F16", "shape": [32, 16], "sha256": sha(3)},
                       {"name": "lm_head.weight", "dtype": "F16", "shape": [16, 32], "sha256": sha(4)}]},
                   {"path": "config.json", "size_bytes": 600, "sha256": sha(5)},
                   {"path": "tokenizer/vocab file #1.txt", "size_bytes": 77, "sha256": sha(6)}]}),
    );
    l.submit(
        "cat",
        ModelRegister,
        json!({"model_id": "cat/lora-1b", "name": "LoRA 1B",
               "parents": [{"model_id": "ben/tuned-1b", "relation": "adapter"}],
               "datasets": ["ben/prose"],
               "artifacts": [{"path": "adapter_model.safetensors", "size_bytes": 1024, "sha256": sha(7), "tensors": [
                   {"name": "lora_A", "dtype": "F32", "shape": [4, 16], "sha256": sha(8)}]}]}),
    );
    l.submit(
        "dan",
        ModelRegister,
        json!({"model_id": "dan/other-1b", "name": "Other 1B",
               "artifacts": [{"path": "model.safetensors", "size_bytes": 2048, "sha256": sha(9)}]}),
    );
    l.submit(
        "dan",
        ModelRegister,
        json!({"model_id": DEEPEST, "name": "Merged 1B", "description": "Merge of LoRA 1B and Other 1B.",
               "parents": [{"model_id": "cat/lora-1b", "relation": "merge"}, {"model_id": "dan/other-1b", "relation": "merge"}],
               "artifacts": [{"path": "model.safetensors", "size_bytes": 8192, "sha256": sha(10), "tensors": [
                   {"name": "embed.weight", "dtype": "BF16", "shape": [32, 16], "sha256": sha(11)}]}]}),
    );
    l.submit(
        "ann",
        ModelRegister,
        json!({"model_id": "ann/student-1b", "name": "Student 1B",
               "parents": [{"model_id": "ann/base-1b", "relation": "finetune"}, {"model_id": "dan/other-1b", "relation": "distilled"}]}),
    );
    l.submit(
        "ben",
        ModelRegister,
        json!({"model_id": TRAINED, "name": "Chat 1B",
               "parents": [{"model_id": "ben/tuned-1b", "relation": "finetune"}],
               "training": {
                   "config_hash": training_config_hash(),
                   "code": {"repository": "https://git.example/ben/chat-train", "commit": "0123456789abcdef0123456789abcdef01234567"},
                   "framework": {"name": "PyTorch", "version": "2.4"},
                   "credits": [{"actor": "ann", "role": "data_engineer"}, {"actor": "ben", "role": "trainer"},
                               {"actor": "cat", "role": "framework_author"}, {"actor": "dan", "role": "evaluator"}],
                   "compute": {"hardware": "8x NVIDIA H100 80GB", "accelerator_hours": 96, "energy_wh": 2400, "region": "eu-west-1"}}}),
    );
    l.submit(
        "cat",
        ModelRegister,
        json!({"model_id": "cat/chat-1b-q4", "name": "Chat 1B, 4-bit",
               "parents": [{"model_id": TRAINED, "relation": "quantized"}],
               "training": {"framework": {"name": "PyTorch", "version": "2.4"},
                            "compute": {"energy_wh": 1}}}),
    );
    l.state
}

fn apache() -> LicenseSummary {
    LicenseSummary {
        license_id: "dan/apache".into(),
        spdx_id: Some("Apache-2.0".into()),
        name: "Apache License 2.0".into(),
        commercial_use: true,
        attribution_required: true,
        share_alike: false,
    }
}

fn community() -> LicenseSummary {
    LicenseSummary {
        license_id: "dan/community_1".into(),
        spdx_id: None,
        name: "Dan Community Licence 1".into(),
        commercial_use: false,
        attribution_required: true,
        share_alike: true,
    }
}

/// Compare with (or, under `UPDATE_GOLDEN`, rewrite) `tests/data/golden/<name>`.
fn golden(name: &str, actual: &str) {
    let path = data(&format!("golden/{name}"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{name} differs from its golden file; if the change is intended, rerun with UPDATE_GOLDEN=1 and review the diff\n--- got ---\n{actual}"
    );
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap() + "\n"
}

// ---------------------------------------------------------------------------------------------
// Schema validators (built once; no network: `offline()` and no default features).

fn report(kind: &str, validator: &Validator, doc: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{kind} output fails its schema:\n{}\n{}",
        errors.join("\n"),
        pretty(doc)
    );
}

fn cyclonedx_validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| {
        let dir = "schemas/cyclonedx";
        // `$ref`s resolve against the bom schema's `$id`, http://cyclonedx.org/schema/.
        let registry = Registry::new()
            .add(
                "http://cyclonedx.org/schema/spdx.SNAPSHOT.schema.json",
                read_json(&format!("{dir}/spdx.SNAPSHOT.schema.json")),
            )
            .unwrap()
            .add(
                "http://cyclonedx.org/schema/jsf-0.82.SNAPSHOT.schema.json",
                read_json(&format!("{dir}/jsf-0.82.SNAPSHOT.schema.json")),
            )
            .unwrap()
            .prepare()
            .unwrap();
        jsonschema::options()
            .offline()
            .should_validate_formats(true)
            .with_registry(&registry)
            .build(&read_json(&format!("{dir}/bom-1.6.SNAPSHOT.schema.json")))
            .expect("the CycloneDX 1.6 schema compiles offline")
    })
}

fn spdx_validator() -> &'static Validator {
    static V: OnceLock<Validator> = OnceLock::new();
    V.get_or_init(|| {
        let schema = read_json("schemas/spdx/spdx-json-schema-3.0.1.json");
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "the SPDX 3.0.1 schema is draft 2020-12"
        );
        jsonschema::options()
            .offline()
            .should_validate_formats(true)
            .build(&schema)
            .expect("the SPDX 3.0.1 schema compiles offline")
    })
}

#[test]
fn validators_reject_broken_documents() {
    // The validators are live: a document missing required parts fails.
    let cdx = cyclonedx_validator();
    assert!(cdx.is_valid(&json!({"bomFormat": "CycloneDX", "specVersion": "1.6"})));
    assert!(!cdx.is_valid(&json!({"bomFormat": "CycloneDX"})));
    assert!(!cdx.is_valid(&json!({"bomFormat": "CycloneDX", "specVersion": "1.6",
        "components": [{"type": "data", "name": "x", "licenses": [{"license": {"id": "Not-A-Licence"}}]}]})));
    assert!(cdx.is_valid(&json!({"bomFormat": "CycloneDX", "specVersion": "1.6",
        "components": [{"type": "data", "name": "x", "licenses": [{"license": {"id": "Apache-2.0"}}]}]})));
    let spdx = spdx_validator();
    let mut doc = spdx3_json(&ledger(), DEEPEST, None, CREATED_MS).unwrap();
    assert!(spdx.is_valid(&doc));
    doc["@graph"][0]
        .as_object_mut()
        .unwrap()
        .remove("specVersion");
    assert!(!spdx.is_valid(&doc), "CreationInfo without specVersion");
    let mut doc = spdx3_json(&ledger(), DEEPEST, None, CREATED_MS).unwrap();
    doc["@graph"][0]["created"] = json!("2026-01-02T00:00:00.123Z");
    assert!(!spdx.is_valid(&doc), "fractional seconds are not allowed");
}

#[test]
fn unknown_model_gives_none() {
    let state = ledger();
    assert_eq!(hf_card_yaml(&state, "nobody/none", None), None);
    assert_eq!(spdx3_json(&state, "nobody/none", None, 0), None);
    assert_eq!(cyclonedx_json(&state, "nobody/none", None, b"x"), None);
    assert_eq!(
        hf_card_yaml(&state, "ann/verse", Some(&apache())),
        None,
        "a dataset is not a model"
    );
}

#[test]
fn outputs_are_deterministic() {
    let (a, b) = (ledger(), ledger());
    for l in [None, Some(apache()), Some(community())] {
        let l = l.as_ref();
        assert_eq!(hf_card_yaml(&a, DEEPEST, l), hf_card_yaml(&b, DEEPEST, l));
        assert_eq!(
            pretty(&spdx3_json(&a, DEEPEST, l, CREATED_MS).unwrap()),
            pretty(&spdx3_json(&b, DEEPEST, l, CREATED_MS).unwrap())
        );
        assert_eq!(
            pretty(&cyclonedx_json(&a, DEEPEST, l, b"seed").unwrap()),
            pretty(&cyclonedx_json(&b, DEEPEST, l, b"seed").unwrap())
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Hugging Face card

const HF_RELATIONS: [&str; 4] = ["adapter", "merge", "quantized", "finetune"];

fn strings(y: &Yaml, what: &str) -> Vec<String> {
    y.as_vec()
        .unwrap_or_else(|| panic!("{what} must be a list"))
        .iter()
        .map(|i| {
            i.as_str()
                .unwrap_or_else(|| panic!("{what} entries must be strings"))
                .to_string()
        })
        .collect()
}

/// Parse the front matter and check every key the Hub defines has the Hub's type; return the
/// parsed mapping.
fn check_card(text: &str) -> Yaml {
    assert!(
        text.starts_with("---\n") && text.ends_with("\n---\n"),
        "{text}"
    );
    let inner = &text[4..text.len() - 4];
    assert!(!inner.lines().any(|l| l == "---"), "one front-matter block");
    let docs = YamlLoader::load_from_str(inner).expect("front matter is valid YAML");
    assert_eq!(docs.len(), 1);
    let doc = docs.into_iter().next().unwrap();
    let map = doc.as_hash().expect("front matter is a mapping");
    let allowed = [
        "license",
        "license_name",
        "license_link",
        "base_model",
        "base_model_relation",
        "datasets",
        "tags",
        "shoulders",
    ];
    for k in map.keys() {
        let k = k.as_str().expect("keys are strings");
        assert!(allowed.contains(&k), "unexpected key {k}");
    }
    if let Some(l) = doc["license"].as_str() {
        assert!(
            l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+.-".contains(&b)),
            "Hub licence ids are lowercase: {l}"
        );
        if l == "other" {
            assert!(
                doc["license_name"].as_str().is_some(),
                "other needs a license_name"
            );
        } else {
            assert!(doc["license_name"].is_badvalue());
        }
    } else {
        assert!(doc["license"].is_badvalue());
        assert!(doc["license_name"].is_badvalue());
    }
    if !doc["base_model"].is_badvalue() {
        assert!(!strings(&doc["base_model"], "base_model").is_empty());
    }
    if let Some(r) = doc["base_model_relation"].as_str() {
        assert!(HF_RELATIONS.contains(&r), "{r}");
        assert!(!doc["base_model"].is_badvalue());
    } else {
        assert!(doc["base_model_relation"].is_badvalue());
    }
    if !doc["datasets"].is_badvalue() {
        strings(&doc["datasets"], "datasets");
    }
    assert!(strings(&doc["tags"], "tags").contains(&"shoulders".to_string()));
    let s = &doc["shoulders"];
    assert!(s.as_hash().is_some());
    assert!(s["model_id"].as_str().is_some());
    assert!(s["name"].as_str().is_some());
    assert!(s["owner"].as_str().is_some());
    assert!(s["log_index"].as_i64().is_some());
    assert!(s["registered_ts_ms"].as_i64().is_some());
    if !s["artifacts"].is_badvalue() {
        for a in s["artifacts"].as_vec().unwrap() {
            assert!(a["path"].as_str().is_some());
            assert!(a["size_bytes"].as_i64().is_some());
            let h = a["sha256"].as_str().unwrap();
            assert!(h.len() == 71 && h.starts_with("sha256:"), "{h}");
        }
    }
    doc
}

#[test]
fn hf_card_for_every_model_has_hub_keys_and_reads_back() {
    let state = ledger();
    for m in state.models() {
        for l in [None, Some(apache()), Some(community())] {
            let text = hf_card_yaml(&state, &m.model_id, l.as_ref()).unwrap();
            let doc = check_card(&text);
            // The ledger's own card reader (used by `shoulders model import`) reads it back.
            let card = shoulders_artifacts::parse_front_matter(&format!("{text}# {}\n", m.name))
                .unwrap()
                .unwrap();
            let parents: Vec<String> = m.parents.iter().map(|p| p.model_id.clone()).collect();
            assert_eq!(card.base_models, parents);
            assert_eq!(card.datasets, m.datasets);
            assert_eq!(
                card.license.as_deref(),
                l.as_ref().map(|l| if l.spdx_id.is_some() {
                    "apache-2.0"
                } else {
                    "other"
                })
            );
            // Ledger provenance.
            let s = &doc["shoulders"];
            assert_eq!(s["model_id"].as_str(), Some(m.model_id.as_str()));
            assert_eq!(s["name"].as_str(), Some(m.name.as_str()));
            assert_eq!(s["log_index"].as_i64(), Some(m.registered_at as i64));
            let arts = s["artifacts"].as_vec().map(Vec::as_slice).unwrap_or(&[]);
            assert_eq!(arts.len(), m.artifacts.len());
            for (y, a) in arts.iter().zip(&m.artifacts) {
                assert_eq!(y["path"].as_str(), Some(a.path.as_str()));
                assert_eq!(y["sha256"].as_str(), Some(a.sha256.as_str()));
                assert_eq!(y["size_bytes"].as_i64(), Some(a.size_bytes as i64));
            }
            let parents_y = s["parents"].as_vec().map(Vec::as_slice).unwrap_or(&[]);
            assert_eq!(parents_y.len(), m.parents.len());
            for (y, p) in parents_y.iter().zip(&m.parents) {
                assert_eq!(y["model_id"].as_str(), Some(p.model_id.as_str()));
                assert_eq!(y["relation"].as_str(), Some(p.relation.as_str()));
            }
        }
    }
}

#[test]
fn hf_card_relations_and_licences() {
    let state = ledger();
    let card =
        |id: &str, l: Option<&LicenseSummary>| check_card(&hf_card_yaml(&state, id, l).unwrap());
    let relation = |id: &str| {
        card(id, None)["base_model_relation"]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(relation("ann/base-1b"), None);
    assert!(card("ann/base-1b", None)["base_model"].is_badvalue());
    assert_eq!(relation("ben/tuned-1b").as_deref(), Some("finetune"));
    assert_eq!(relation("cat/lora-1b").as_deref(), Some("adapter"));
    assert_eq!(relation(DEEPEST).as_deref(), Some("merge"));
    // A finetune base plus a distilled teacher share no Hub relation: both listed, none named.
    assert_eq!(relation("ann/student-1b"), None);
    assert_eq!(
        strings(&card("ann/student-1b", None)["base_model"], "base_model"),
        ["ann/base-1b", "dan/other-1b"]
    );

    let c = card(DEEPEST, Some(&apache()));
    assert_eq!(c["license"].as_str(), Some("apache-2.0"));
    assert_eq!(c["shoulders"]["license_id"].as_str(), Some("dan/apache"));
    let c = card(DEEPEST, Some(&community()));
    assert_eq!(c["license"].as_str(), Some("other"));
    assert_eq!(c["license_name"].as_str(), Some("dan-community-1"));
    let gpl = LicenseSummary {
        spdx_id: Some("GPL-3.0-or-later".into()),
        ..apache()
    };
    assert_eq!(
        card(DEEPEST, Some(&gpl))["license"].as_str(),
        Some("gpl-3.0")
    );
    let unlisted = LicenseSummary {
        spdx_id: Some("0BSD".into()),
        ..apache()
    };
    let c = card(DEEPEST, Some(&unlisted));
    assert_eq!(c["license"].as_str(), Some("other"));
    assert_eq!(c["license_name"].as_str(), Some("0bsd"));
    // Paths that YAML could misread are quoted and come back intact.
    let c = card("ben/tuned-1b", None);
    assert_eq!(
        c["shoulders"]["artifacts"][2]["path"].as_str(),
        Some("tokenizer/vocab file #1.txt")
    );
}

#[test]
fn hf_card_golden() {
    let state = ledger();
    golden(
        "merged.hf-card.yaml",
        &hf_card_yaml(&state, DEEPEST, None).unwrap(),
    );
    golden(
        "merged.hf-card.licensed.yaml",
        &hf_card_yaml(&state, DEEPEST, Some(&apache())).unwrap(),
    );
    // A finetune with datasets and a path that needs quoting.
    golden(
        "tuned.hf-card.licensed.yaml",
        &hf_card_yaml(&state, "ben/tuned-1b", Some(&community())).unwrap(),
    );
}

// ---------------------------------------------------------------------------------------------
// SPDX 3.0.1

const NO_ASSERTION: &str = "expandedlicensing_NoAssertionLicense";

/// Meaning the JSON schema cannot check: references resolve, ids are unique, the AI and Dataset
/// profiles' licence rules hold, and lineage, training data and hashes match the ledger.
fn check_spdx(state: &State, model_id: &str, license: Option<&LicenseSummary>, doc: &Value) {
    assert_eq!(
        doc["@context"],
        "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"
    );
    let graph = doc["@graph"].as_array().unwrap();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    for n in graph {
        let ty = n["type"].as_str().unwrap().to_string();
        if ty == "CreationInfo" {
            assert_eq!(n["@id"], "_:creationinfo");
            assert_eq!(n["specVersion"], "3.0.1");
            assert_eq!(n["created"], "2026-01-02T00:00:00Z");
            continue;
        }
        assert_eq!(n["creationInfo"], "_:creationinfo", "{n}");
        let id = n["spdxId"].as_str().unwrap().to_string();
        assert!(id.starts_with("urn:shoulders:"), "{id}");
        assert!(
            types.insert(id.clone(), ty).is_none(),
            "duplicate spdxId {id}"
        );
    }
    let of_type = |t: &str| -> BTreeSet<String> {
        types
            .iter()
            .filter(|(_, ty)| ty.as_str() == t)
            .map(|(id, _)| id.clone())
            .collect()
    };
    let resolves = |r: &Value| {
        let r = r.as_str().unwrap();
        assert!(types.contains_key(r), "dangling reference {r}");
    };
    let creation = graph.iter().find(|n| n["type"] == "CreationInfo").unwrap();
    creation["createdBy"]
        .as_array()
        .unwrap()
        .iter()
        .for_each(resolves);
    creation["createdUsing"]
        .as_array()
        .unwrap()
        .iter()
        .for_each(resolves);

    // One document, rooted at the model, listing every element.
    let docs: Vec<&Value> = graph
        .iter()
        .filter(|n| n["type"] == "SpdxDocument")
        .collect();
    assert_eq!(docs.len(), 1);
    let d = docs[0];
    let model_iri = format!("urn:shoulders:model:{model_id}");
    assert_eq!(d["rootElement"], json!([model_iri]));
    let listed: BTreeSet<String> = d["element"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    let mut all: BTreeSet<String> = types.keys().cloned().collect();
    all.remove(d["spdxId"].as_str().unwrap());
    assert_eq!(listed, all);
    for p in ["core", "software", "simpleLicensing", "ai", "dataset"] {
        assert!(d["profileConformance"]
            .as_array()
            .unwrap()
            .contains(&json!(p)));
    }

    // Packages: the model and exactly its ancestors; exactly the datasets they were trained on.
    let mut models = vec![model_id.to_string()];
    models.extend(state.ancestors(model_id));
    let expected: BTreeSet<String> = models
        .iter()
        .map(|m| format!("urn:shoulders:model:{m}"))
        .collect();
    assert_eq!(of_type("ai_AIPackage"), expected);
    let datasets: BTreeSet<String> = models
        .iter()
        .flat_map(|m| state.model(m).unwrap().datasets.clone())
        .map(|d| format!("urn:shoulders:dataset:{d}"))
        .collect();
    assert_eq!(of_type("dataset_DatasetPackage"), datasets);

    let rels: Vec<&Value> = graph
        .iter()
        .filter(|n| n["type"] == "Relationship")
        .collect();
    for r in &rels {
        resolves(&r["from"]);
        for t in r["to"].as_array().unwrap() {
            if t != NO_ASSERTION {
                resolves(t);
            }
        }
    }
    let edges = |ty: &str| -> Vec<(&str, Vec<&str>, Option<&str>)> {
        rels.iter()
            .filter(|r| r["relationshipType"] == ty)
            .map(|r| {
                (
                    r["from"].as_str().unwrap(),
                    r["to"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t.as_str().unwrap())
                        .collect(),
                    r["comment"].as_str(),
                )
            })
            .collect()
    };
    let known: BTreeSet<&str> = [
        "contains",
        "descendantOf",
        "trainedOn",
        "hasDeclaredLicense",
        "hasConcludedLicense",
        "usesTool",
    ]
    .into();
    // Training frameworks: one package per (name, version), used by exactly the models naming it.
    let mut frameworks = BTreeSet::new();
    let mut uses = BTreeSet::new();
    for m in &models {
        if let Some(f) = state
            .model(m)
            .unwrap()
            .training
            .as_ref()
            .and_then(|t| t.framework.as_ref())
        {
            let iri = format!("urn:shoulders:framework:{}@{}", f.name, f.version);
            frameworks.insert(iri.clone());
            uses.insert((format!("urn:shoulders:model:{m}"), iri));
        }
    }
    assert_eq!(of_type("software_Package"), frameworks);
    let used: BTreeSet<(String, String)> = rels
        .iter()
        .filter(|r| r["relationshipType"] == "usesTool")
        .map(|r| {
            assert_eq!(r["to"].as_array().unwrap().len(), 1);
            (
                r["from"].as_str().unwrap().to_string(),
                r["to"][0].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(used, uses);
    for r in &rels {
        assert!(known.contains(r["relationshipType"].as_str().unwrap()));
    }

    // AI and Dataset profile conformance: exactly one declared and one concluded licence each.
    let packages: BTreeSet<String> = of_type("ai_AIPackage")
        .union(&of_type("dataset_DatasetPackage"))
        .cloned()
        .collect();
    let expressions = of_type("simplelicensing_LicenseExpression");
    for kind in ["hasDeclaredLicense", "hasConcludedLicense"] {
        let e = edges(kind);
        let froms: Vec<&str> = e.iter().map(|(f, _, _)| *f).collect();
        let unique: BTreeSet<String> = froms.iter().map(|f| f.to_string()).collect();
        assert_eq!(froms.len(), unique.len(), "{kind}: at most one per package");
        assert_eq!(unique, packages, "{kind}: one per package");
        for (_, to, _) in &e {
            assert_eq!(to.len(), 1);
            assert!(
                to[0] == NO_ASSERTION || expressions.contains(to[0]),
                "{kind} -> {}",
                to[0]
            );
        }
    }
    let declared = edges("hasDeclaredLicense");
    let subject_declared = declared.iter().find(|(f, _, _)| *f == model_iri).unwrap();
    match license {
        None => {
            assert!(expressions.is_empty());
            assert_eq!(subject_declared.1, [NO_ASSERTION]);
        }
        Some(l) => {
            let iri = format!("urn:shoulders:license:{}", l.license_id);
            assert_eq!(subject_declared.1, [iri.as_str()]);
            let node = graph.iter().find(|n| n["spdxId"] == iri).unwrap();
            let expr = node["simplelicensing_licenseExpression"].as_str().unwrap();
            match &l.spdx_id {
                Some(s) => assert_eq!(expr, s),
                None => {
                    assert!(expr.starts_with("LicenseRef-"));
                    assert_eq!(node["simplelicensing_customIdToUri"][0]["key"], expr);
                }
            }
        }
    }
    for (from, to, _) in declared.iter().filter(|(f, _, _)| *f != model_iri) {
        assert_eq!(
            to,
            &[NO_ASSERTION],
            "only the exported model has a known licence: {from}"
        );
    }

    // Lineage, training data and files match the ledger.
    let descent: BTreeSet<(String, String, String)> = edges("descendantOf")
        .into_iter()
        .map(|(f, to, c)| {
            assert_eq!(to.len(), 1);
            (f.to_string(), to[0].to_string(), c.unwrap().to_string())
        })
        .collect();
    let mut expected_descent = BTreeSet::new();
    for m in &models {
        let m = state.model(m).unwrap();
        for p in &m.parents {
            expected_descent.insert((
                format!("urn:shoulders:model:{}", m.model_id),
                format!("urn:shoulders:model:{}", p.model_id),
                format!("shoulders relation: {}", p.relation.as_str()),
            ));
        }
    }
    assert_eq!(descent, expected_descent);
    for (from, to, _) in edges("trainedOn") {
        assert_eq!(types[from], "ai_AIPackage");
        let m = state
            .model(from.strip_prefix("urn:shoulders:model:").unwrap())
            .unwrap();
        let want: Vec<String> = m
            .datasets
            .iter()
            .map(|d| format!("urn:shoulders:dataset:{d}"))
            .collect();
        assert_eq!(to, want);
    }
    let trained = edges("trainedOn").len();
    assert_eq!(
        trained,
        models
            .iter()
            .filter(|m| !state.model(m).unwrap().datasets.is_empty())
            .count()
    );
    let contains = edges("contains");
    let mut files_seen = 0;
    for m in &models {
        let m = state.model(m).unwrap();
        let from = format!("urn:shoulders:model:{}", m.model_id);
        let c = contains.iter().find(|(f, _, _)| *f == from);
        assert_eq!(c.is_some(), !m.artifacts.is_empty());
        for a in &m.artifacts {
            let node = graph
                .iter()
                .find(|n| {
                    n["type"] == "software_File"
                        && n["name"] == a.path.as_str()
                        && c.unwrap().1.contains(&n["spdxId"].as_str().unwrap())
                })
                .unwrap_or_else(|| panic!("no file {} in {}", a.path, m.model_id));
            assert_eq!(
                node["verifiedUsing"],
                json!([{"type": "Hash", "algorithm": "sha256",
                        "hashValue": a.sha256.strip_prefix("sha256:").unwrap()}])
            );
            files_seen += 1;
        }
    }
    assert_eq!(of_type("software_File").len(), files_seen);
}

#[test]
fn spdx_for_every_model_validates_and_means_what_the_ledger_says() {
    let state = ledger();
    let config = training_config();
    for m in state.models() {
        for l in [None, Some(apache()), Some(community())] {
            let doc = spdx3_json(&state, &m.model_id, l.as_ref(), CREATED_MS).unwrap();
            report("SPDX 3.0.1", spdx_validator(), &doc);
            check_spdx(&state, &m.model_id, l.as_ref(), &doc);
            if attachments_for(&state, &m.model_id) {
                let with = Attachments {
                    training_config: Some(&config),
                };
                let doc =
                    spdx3_json_with(&state, &m.model_id, l.as_ref(), CREATED_MS, with).unwrap();
                report("SPDX 3.0.1", spdx_validator(), &doc);
                check_spdx(&state, &m.model_id, l.as_ref(), &doc);
            }
        }
    }
}

fn graph_node<'a>(doc: &'a Value, id: &str) -> &'a Value {
    doc["@graph"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["spdxId"] == id)
        .unwrap_or_else(|| panic!("no {id}"))
}

#[test]
fn spdx_carries_the_training_run() {
    let state = ledger();
    let config = training_config();
    let with = Attachments {
        training_config: Some(&config),
    };
    let doc = spdx3_json_with(&state, "cat/chat-1b-q4", None, CREATED_MS, with).unwrap();
    report("SPDX 3.0.1", spdx_validator(), &doc);
    // The configuration is only the exported model's: its ancestor's run shows no
    // hyperparameters here, but its energy, code and credits.
    let chat = graph_node(&doc, "urn:shoulders:model:ben/chat-1b");
    assert!(chat.get("ai_hyperparameter").is_none());
    let doc = spdx3_json_with(&state, TRAINED, None, CREATED_MS, with).unwrap();
    report("SPDX 3.0.1", spdx_validator(), &doc);
    let chat = graph_node(&doc, "urn:shoulders:model:ben/chat-1b");
    assert_eq!(
        chat["ai_hyperparameter"],
        json!([
            {"type": "DictionaryEntry", "key": "batch_size", "value": "16"},
            {"type": "DictionaryEntry", "key": "bf16", "value": "true"},
            {"type": "DictionaryEntry", "key": "epochs", "value": "3"},
            {"type": "DictionaryEntry", "key": "learning_rate", "value": "0.0002"},
            {"type": "DictionaryEntry", "key": "optimizer", "value": "adamw"},
            {"type": "DictionaryEntry", "key": "seed"},
        ])
    );
    assert_eq!(
        chat["ai_energyConsumption"],
        json!({"type": "ai_EnergyConsumption", "ai_trainingEnergyConsumption": [
            {"type": "ai_EnergyConsumptionDescription", "ai_energyQuantity": "2.4", "ai_energyUnit": "kilowattHour"}]})
    );
    let credits = chat["software_attributionText"].as_array().unwrap();
    assert_eq!(credits.len(), 4);
    assert_eq!(
        credits[2],
        "Cat Adapter (shoulders actor cat): framework author of the training run"
    );
    assert_eq!(chat["externalRef"][0]["externalRefType"], "vcs");
    assert_eq!(
        chat["externalRef"][0]["locator"],
        json!(["https://git.example/ben/chat-train"])
    );
    let info = chat["ai_informationAboutTraining"].as_str().unwrap();
    for part in [
        "Framework: PyTorch 2.4.",
        "commit 0123456789abcdef0123456789abcdef01234567",
        "8x NVIDIA H100 80GB, 96 accelerator hours, 2.4 kWh, region eu-west-1",
        &training_config_hash(),
        "Ann Archivist (data_engineer)",
        "Dan Merger (evaluator)",
    ] {
        assert!(info.contains(part), "{part} in {info}");
    }
    let framework = graph_node(&doc, "urn:shoulders:framework:PyTorch@2.4");
    assert_eq!(framework["type"], "software_Package");
    assert_eq!(framework["software_packageVersion"], "2.4");
    assert_eq!(framework["software_primaryPurpose"], "framework");
    // Without the configuration, everything but the hyperparameters is still there.
    let doc = spdx3_json(&state, TRAINED, None, CREATED_MS).unwrap();
    let chat = graph_node(&doc, "urn:shoulders:model:ben/chat-1b");
    assert!(chat.get("ai_hyperparameter").is_none());
    assert!(chat.get("ai_energyConsumption").is_some());
    golden(
        "trained.spdx.json",
        &pretty(
            &spdx3_json_with(
                &state,
                "cat/chat-1b-q4",
                None,
                CREATED_MS,
                Attachments::default(),
            )
            .unwrap(),
        ),
    );
}

#[test]
fn spdx_dataset_details() {
    let state = ledger();
    let doc = spdx3_json(&state, DEEPEST, None, CREATED_MS).unwrap();
    let node = |id: &str| {
        doc["@graph"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["spdxId"] == id)
            .unwrap()
            .clone()
    };
    let verse = node("urn:shoulders:dataset:ann/verse");
    assert_eq!(verse["dataset_datasetType"], json!(["text"]));
    assert_eq!(verse["dataset_datasetSize"], json!(1000 + 2000 + 3000));
    assert_eq!(verse["suppliedBy"], "urn:shoulders:actor:ann");
    assert_eq!(
        verse["originatedBy"],
        json!(["urn:shoulders:actor:ann", "urn:shoulders:actor:ben"])
    );
    let prose = node("urn:shoulders:dataset:ben/prose");
    assert_eq!(prose["dataset_datasetType"], json!(["image"]));
    let merged = node("urn:shoulders:model:dan/merged-1b");
    assert_eq!(merged["releaseTime"], "2026-01-01T00:15:00Z");
    assert_eq!(merged["suppliedBy"], "urn:shoulders:actor:dan");
    let ann = node("urn:shoulders:actor:ann");
    assert_eq!(ann["name"], "Ann Archivist");
    // A path with a space and '#' is percent-encoded in the IRI and verbatim in the name.
    let doc = spdx3_json(&state, "ben/tuned-1b", None, CREATED_MS).unwrap();
    let file = doc["@graph"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "tokenizer/vocab file #1.txt")
        .unwrap();
    assert_eq!(
        file["spdxId"],
        "urn:shoulders:model:ben/tuned-1b:file:tokenizer/vocab%20file%20%231.txt"
    );
}

#[test]
fn spdx_golden() {
    let state = ledger();
    golden(
        "merged.spdx.json",
        &pretty(&spdx3_json(&state, DEEPEST, None, CREATED_MS).unwrap()),
    );
    golden(
        "merged.spdx.licensed.json",
        &pretty(&spdx3_json(&state, DEEPEST, Some(&apache()), CREATED_MS).unwrap()),
    );
}

// ---------------------------------------------------------------------------------------------
// CycloneDX 1.6

fn bom_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(r) = o.get("bom-ref").and_then(Value::as_str) {
                out.push(r.to_string());
            }
            o.values().for_each(|x| bom_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| bom_refs(x, out)),
        _ => {}
    }
}

fn check_cyclonedx(state: &State, model_id: &str, license: Option<&LicenseSummary>, bom: &Value) {
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.6");
    let mut refs = Vec::new();
    bom_refs(bom, &mut refs);
    let unique: BTreeSet<&String> = refs.iter().collect();
    assert_eq!(unique.len(), refs.len(), "bom-refs are unique: {refs:?}");

    let model = state.model(model_id).unwrap();
    let subject = &bom["metadata"]["component"];
    assert_eq!(subject["type"], "machine-learning-model");
    assert_eq!(subject["name"], model_id);
    let ancestors = state.ancestors(model_id);
    let components = bom["components"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let models: Vec<&str> = components
        .iter()
        .filter(|c| c["type"] == "machine-learning-model")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(models, ancestors);
    let mut datasets = BTreeSet::new();
    for m in std::iter::once(model_id.to_string()).chain(ancestors.iter().cloned()) {
        datasets.extend(state.model(&m).unwrap().datasets.clone());
    }
    let data: BTreeSet<String> = components
        .iter()
        .filter(|c| c["type"] == "data")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(data, datasets);
    let mut frameworks = BTreeSet::new();
    for m in std::iter::once(model_id.to_string()).chain(ancestors.iter().cloned()) {
        if let Some(f) = state
            .model(&m)
            .unwrap()
            .training
            .as_ref()
            .and_then(|t| t.framework.as_ref())
        {
            frameworks.insert((f.name.clone(), f.version.clone()));
        }
    }
    let listed: Vec<(String, String)> = components
        .iter()
        .filter(|c| c["type"] == "framework")
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(listed.len(), frameworks.len(), "each framework once");
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), frameworks);

    // Every model component: files with the ledger's hashes, parents in pedigree, datasets in
    // the model card.
    for c in std::iter::once(subject).chain(
        components
            .iter()
            .filter(|c| c["type"] == "machine-learning-model"),
    ) {
        let m = state.model(c["name"].as_str().unwrap()).unwrap();
        let files = c["components"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(files.len(), m.artifacts.len());
        for (f, a) in files.iter().zip(&m.artifacts) {
            assert_eq!(f["type"], "file");
            assert_eq!(f["name"], a.path.as_str());
            assert_eq!(
                f["hashes"],
                json!([{"alg": "SHA-256", "content": a.sha256.strip_prefix("sha256:").unwrap()}])
            );
        }
        let ped: Vec<&str> = c["pedigree"]["ancestors"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        let parents: Vec<&str> = m.parents.iter().map(|p| p.model_id.as_str()).collect();
        assert_eq!(ped, parents);
        let card: Vec<String> = c["modelCard"]["modelParameters"]["datasets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(|d| d["ref"].as_str().unwrap().to_string())
            .collect();
        let want: Vec<String> = m
            .datasets
            .iter()
            .map(|d| format!("urn:shoulders:dataset:{d}"))
            .collect();
        assert_eq!(card, want);
        for r in &card {
            assert!(unique.contains(r), "model card dataset {r} resolves");
        }
    }

    // Dependencies: every ref resolves; each model depends on exactly its parents and datasets.
    let deps = bom["dependencies"].as_array().unwrap();
    assert_eq!(deps.len(), unique.len(), "one dependency entry per bom-ref");
    for d in deps {
        let r = d["ref"].as_str().unwrap().to_string();
        assert!(unique.contains(&r), "{r}");
        let on: Vec<String> = d["dependsOn"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .map(|x| x.as_str().unwrap().to_string())
            .collect();
        for x in &on {
            assert!(unique.contains(x), "{x}");
        }
        if let Some(id) = r.strip_prefix("urn:shoulders:model:") {
            let m = state.model(id).unwrap();
            let want: Vec<String> = m
                .parents
                .iter()
                .map(|p| format!("urn:shoulders:model:{}", p.model_id))
                .chain(
                    m.datasets
                        .iter()
                        .map(|d| format!("urn:shoulders:dataset:{d}")),
                )
                .chain(
                    m.training
                        .as_ref()
                        .and_then(|t| t.framework.as_ref())
                        .map(|f| format!("urn:shoulders:framework:{}@{}", f.name, f.version)),
                )
                .collect();
            assert_eq!(on, want);
        } else {
            assert!(on.is_empty());
        }
    }

    match license {
        None => assert!(subject.get("licenses").is_none()),
        Some(l) => match &l.spdx_id {
            Some(id) => assert_eq!(
                subject["licenses"],
                json!([{"expression": id, "acknowledgement": "declared"}])
            ),
            None => assert_eq!(subject["licenses"][0]["license"]["name"], l.name.as_str()),
        },
    }
    let log_index = subject["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "shoulders:log_index")
        .unwrap();
    assert_eq!(log_index["value"], model.registered_at.to_string());
}

#[test]
fn cyclonedx_for_every_model_validates_and_means_what_the_ledger_says() {
    let state = ledger();
    let config = training_config();
    for m in state.models() {
        for l in [None, Some(apache()), Some(community())] {
            let seed = m.registered_at.to_be_bytes();
            let bom = cyclonedx_json(&state, &m.model_id, l.as_ref(), &seed).unwrap();
            report("CycloneDX 1.6", cyclonedx_validator(), &bom);
            check_cyclonedx(&state, &m.model_id, l.as_ref(), &bom);
            if attachments_for(&state, &m.model_id) {
                let with = Attachments {
                    training_config: Some(&config),
                };
                let bom =
                    cyclonedx_json_with(&state, &m.model_id, l.as_ref(), &seed, with).unwrap();
                report("CycloneDX 1.6", cyclonedx_validator(), &bom);
                check_cyclonedx(&state, &m.model_id, l.as_ref(), &bom);
            }
        }
    }
}

#[test]
fn cyclonedx_carries_the_training_run() {
    let state = ledger();
    let config = training_config();
    let with = Attachments {
        training_config: Some(&config),
    };
    let bom = cyclonedx_json_with(&state, TRAINED, None, b"seed", with).unwrap();
    report("CycloneDX 1.6", cyclonedx_validator(), &bom);
    let card = &bom["metadata"]["component"]["modelCard"];
    assert_eq!(
        card["considerations"]["environmentalConsiderations"]["energyConsumptions"],
        json!([{"activity": "training", "energyProviders": [],
                "activityEnergyCost": {"value": 2.4, "unit": "kWh"}}])
    );
    let props: Vec<(String, Option<String>)> = card["properties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["value"].as_str().map(str::to_string),
            )
        })
        .collect();
    let has = |name: &str, value: Option<&str>| {
        assert!(
            props.contains(&(name.to_string(), value.map(str::to_string))),
            "{name}={value:?} in {props:?}"
        );
    };
    has(
        "shoulders:training.config_hash",
        Some(&training_config_hash()),
    );
    has("shoulders:training.framework", Some("PyTorch 2.4"));
    has(
        "shoulders:training.code.commit",
        Some("0123456789abcdef0123456789abcdef01234567"),
    );
    has("shoulders:training.credit", Some("cat:framework_author"));
    has("shoulders:training.credit", Some("dan:evaluator"));
    has(
        "shoulders:training.compute.hardware",
        Some("8x NVIDIA H100 80GB"),
    );
    has("shoulders:training.compute.accelerator_hours", Some("96"));
    has("shoulders:training.compute.region", Some("eu-west-1"));
    has("shoulders:hyperparameter:learning_rate", Some("0.0002"));
    has("shoulders:hyperparameter:epochs", Some("3"));
    has("shoulders:hyperparameter:seed", None);
    assert!(
        !props.iter().any(|(n, _)| n.contains("scheduler")),
        "nested values stay on the ledger"
    );
    let vcs = &bom["metadata"]["component"]["externalReferences"][0];
    assert_eq!(vcs["type"], "vcs");
    assert_eq!(vcs["url"], "https://git.example/ben/chat-train");
    let framework = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "framework")
        .unwrap();
    assert_eq!(
        (&framework["name"], &framework["version"]),
        (&json!("PyTorch"), &json!("2.4"))
    );
    // The quantized child names the same framework: one component, both depend on it.
    let bom = cyclonedx_json(&state, "cat/chat-1b-q4", None, b"seed").unwrap();
    report("CycloneDX 1.6", cyclonedx_validator(), &bom);
    let child = &bom["metadata"]["component"]["modelCard"];
    assert_eq!(
        child["considerations"]["environmentalConsiderations"]["energyConsumptions"][0]
            ["activityEnergyCost"]["value"],
        json!(0.001)
    );
    golden("trained.cdx.json", &pretty(&bom));
}

#[test]
fn cyclonedx_serial_number_comes_from_the_seed() {
    let state = ledger();
    let serial = |seed: &[u8]| {
        cyclonedx_json(&state, DEEPEST, None, seed).unwrap()["serialNumber"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(serial(b"a"), serial(b"a"));
    assert_ne!(serial(b"a"), serial(b"b"));
    let s = serial(&[]);
    assert!(s.starts_with("urn:uuid:"));
    assert_eq!(
        s.as_bytes()["urn:uuid:".len() + 14],
        b'8',
        "version 8 UUID: {s}"
    );
}

#[test]
fn cyclonedx_golden() {
    let state = ledger();
    let seed = state.model(DEEPEST).unwrap().registered_at.to_be_bytes();
    golden(
        "merged.cdx.json",
        &pretty(&cyclonedx_json(&state, DEEPEST, None, &seed).unwrap()),
    );
    golden(
        "merged.cdx.licensed.json",
        &pretty(&cyclonedx_json(&state, DEEPEST, Some(&community()), &seed).unwrap()),
    );
}

#[test]
fn exports_name_the_hub_repository_and_commit_a_model_was_downloaded_as() {
    let mut l = Ledger {
        state: State::new(),
        keys: BTreeMap::new(),
    };
    l.submit(
        "eve",
        Kind::ActorRegister,
        json!({"handle": "eve", "name": "Eve"}),
    );
    let commit = "0123456789abcdef0123456789abcdef01234567";
    l.submit(
        "eve",
        Kind::ModelRegister,
        json!({"model_id": "eve/tiny", "name": "tiny",
               "source": {"hub": "huggingface", "repo": "acme/tiny", "revision": commit},
               "artifacts": [{"path": "config.json", "size_bytes": 17, "sha256": sha(1)}]}),
    );
    l.submit(
        "eve",
        Kind::ModelRegister,
        json!({"model_id": "eve/plain", "name": "plain"}),
    );
    let url = format!("https://huggingface.co/acme/tiny/tree/{commit}");

    let doc = spdx3_json(&l.state, "eve/tiny", None, CREATED_MS).unwrap();
    report("SPDX 3.0.1", spdx_validator(), &doc);
    let model = graph_node(&doc, "urn:shoulders:model:eve/tiny");
    assert_eq!(model["software_downloadLocation"], json!(url));
    let doc = spdx3_json(&l.state, "eve/plain", None, CREATED_MS).unwrap();
    let model = graph_node(&doc, "urn:shoulders:model:eve/plain");
    assert!(model.get("software_downloadLocation").is_none());

    let bom = cyclonedx_json(&l.state, "eve/tiny", None, b"seed").unwrap();
    report("CycloneDX 1.6", cyclonedx_validator(), &bom);
    let refs = &bom["metadata"]["component"]["externalReferences"];
    assert_eq!(
        refs,
        &json!([{"type": "distribution", "url": url,
                 "comment": format!("downloaded from huggingface repository acme/tiny at commit {commit}")}])
    );
    let bom = cyclonedx_json(&l.state, "eve/plain", None, b"seed").unwrap();
    assert!(bom["metadata"]["component"]
        .get("externalReferences")
        .is_none());
}
