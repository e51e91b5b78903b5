//! Parameter-level diffs folded from signed `model.register` records: each relation's statuses,
//! totals, layers and summary, cross-format pairing in both directions, adapters (with their
//! recorded configuration), and the cases where there is nothing to compare.

use serde_json::{json, Value};
use shoulders_record::{sign_record, ActorKey, Body, Kind};
use shoulders_state::diff::{Change, MatchedBy};
use shoulders_state::{model_diff, ModelDiff, State, TensorStatus};

const TS: u64 = 1_700_000_000_000;

/// One actor, `lab`, registering models.
struct Ledger {
    key: ActorKey,
    state: State,
}

impl Ledger {
    fn new() -> Self {
        let mut l = Ledger {
            key: ActorKey::from_seed([7; 32]),
            state: State::new(),
        };
        l.push(Kind::ActorRegister, json!({"handle": "lab", "name": "Lab"}));
        l
    }

    fn push(&mut self, kind: Kind, body: Value) {
        let n = self.state.size();
        let rec = sign_record(
            &self.key,
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

    /// Register `lab/<name>` with one artifact per `(path, tensors)`.
    fn model(&mut self, name: &str, parents: &[(&str, &str)], files: &[(&str, Vec<Value>)]) {
        self.model_with(name, parents, files, json!({}));
    }

    fn model_with(
        &mut self,
        name: &str,
        parents: &[(&str, &str)],
        files: &[(&str, Vec<Value>)],
        extra: Value,
    ) {
        let mut body = json!({"model_id": format!("lab/{name}"), "name": name});
        if !parents.is_empty() {
            body["parents"] = parents
                .iter()
                .map(|(p, r)| json!({"model_id": format!("lab/{p}"), "relation": r}))
                .collect();
        }
        if !files.is_empty() {
            body["artifacts"] = files
                .iter()
                .map(|(path, tensors)| {
                    json!({"path": path, "size_bytes": 1, "sha256": hash(path), "tensors": tensors})
                })
                .collect();
        }
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.push(Kind::ModelRegister, body);
    }

    fn diff(&self, parent: &str, child: &str) -> ModelDiff {
        let s = &self.state;
        model_diff(
            s.model(&format!("lab/{parent}")).unwrap(),
            s.model(&format!("lab/{child}")).unwrap(),
        )
    }
}

fn hash(seed: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex(&Sha256::digest(seed.as_bytes())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn t(name: &str, dtype: &str, shape: &[u64], seed: &str) -> Value {
    json!({"name": name, "dtype": dtype, "shape": shape, "sha256": hash(seed)})
}

/// A two-layer llama-style model in Hugging Face names; `seed` varies the hashes of the
/// tensors in `changed_layers`.
fn llama(seed: &str, changed_layers: &[u64]) -> Vec<Value> {
    let s = |name: &str, layer: Option<u64>| {
        if layer.is_some_and(|l| changed_layers.contains(&l)) {
            format!("{seed}:{name}")
        } else {
            name.to_string()
        }
    };
    let mut out = vec![t(
        "model.embed_tokens.weight",
        "F16",
        &[100, 8],
        &s("embed", None),
    )];
    for l in 0..2u64 {
        for (part, shape) in [
            ("self_attn.q_proj.weight", vec![8, 8]),
            ("self_attn.v_proj.weight", vec![4, 8]),
            ("mlp.down_proj.weight", vec![8, 16]),
            ("input_layernorm.weight", vec![8]),
        ] {
            let name = format!("model.layers.{l}.{part}");
            out.push(t(&name, "F16", &shape, &s(&name, Some(l))));
        }
    }
    out.push(t("model.norm.weight", "F16", &[8], "norm"));
    out.push(t("lm_head.weight", "F16", &[100, 8], "head"));
    out
}

const LAYER_PARAMS: u128 = 64 + 32 + 128 + 8;
const TOTAL_PARAMS: u128 = 800 + 2 * LAYER_PARAMS + 8 + 800;

#[test]
fn a_finetune_of_one_layer_with_a_tensor_added_and_one_removed() {
    let mut l = Ledger::new();
    l.model("base", &[], &[("model.safetensors", llama("", &[]))]);
    let mut tuned = llama("tuned", &[1]);
    tuned.retain(|v| v["name"] != "lm_head.weight");
    tuned.push(t("score.weight", "F32", &[2, 8], "score"));
    // One tensor changes shape as well as bytes (a resized embedding).
    tuned[0] = t("model.embed_tokens.weight", "F16", &[101, 8], "bigger");
    l.model(
        "tuned",
        &[("base", "finetune")],
        &[("model.safetensors", tuned)],
    );
    let d = l.diff("base", "tuned");
    assert!(d.comparable);
    assert_eq!(d.relation.unwrap().as_str(), "finetune");
    let t = &d.totals;
    assert_eq!((t.parent_tensors, t.child_tensors), (11, 11));
    assert_eq!(t.parent_params, TOTAL_PARAMS);
    assert_eq!(
        (
            t.tensors.identical,
            t.tensors.changed,
            t.tensors.added,
            t.tensors.removed,
            t.tensors.inherited
        ),
        (5, 5, 1, 1, 0)
    );
    assert_eq!(t.params.changed, LAYER_PARAMS + 800);
    assert_eq!(t.params.removed, 800);
    assert_eq!(t.params.added, 16);
    assert_eq!(t.changed_params, LAYER_PARAMS + 800);
    assert_eq!(
        u128::from(t.changed_ppm),
        (LAYER_PARAMS + 800) * 1_000_000 / TOTAL_PARAMS
    );
    assert_eq!(
        (t.changes.hash, t.changes.dtype, t.changes.shape),
        (5, 0, 1)
    );
    let embed = &d.tensors[0];
    assert_eq!(embed.status, TensorStatus::Changed);
    assert_eq!(embed.changes, vec![Change::Hash, Change::Shape]);
    assert_eq!(embed.matched_by, Some(MatchedBy::Name));
    // Layers 0 and 1, then the non-layer group.
    let layers: Vec<_> = d.layers.iter().map(|g| g.layer).collect();
    assert_eq!(layers, vec![Some(0), Some(1), None]);
    assert_eq!(d.layers[0].tensors.identical, 4);
    assert_eq!(d.layers[1].tensors.changed, 4);
    assert_eq!(d.layers[1].changed_ppm, 1_000_000);
    assert_eq!(d.layers[1].params.changed, LAYER_PARAMS);
    assert_eq!(
        (
            d.layers[2].tensors.changed,
            d.layers[2].tensors.added,
            d.layers[2].tensors.removed
        ),
        (1, 1, 1)
    );
    assert_eq!(
        d.summary,
        format!(
            "finetune · {} of parameters changed, 1 tensor added, 1 tensor removed",
            t.changed_percent
        )
    );
    assert!(d.quantization.is_none() && d.adapter.is_none());

    // Only layer 1 changed: the summary names it.
    l.model(
        "tuned2",
        &[("base", "finetune")],
        &[("model.safetensors", llama("x", &[1]))],
    );
    let d = l.diff("base", "tuned2");
    assert_eq!(
        d.summary,
        format!(
            "finetune · {} of parameters changed (layer 1)",
            d.totals.changed_percent
        )
    );
}

/// llama.cpp names and innermost-first dims for [`llama`]'s tensors.
fn llama_gguf(dtype: &str) -> Vec<Value> {
    llama("", &[])
        .into_iter()
        .map(|v| {
            let name = v["name"].as_str().unwrap();
            let gguf = shoulders_state::diff::gguf_name(name).unwrap();
            let mut shape: Vec<u64> = serde_json::from_value(v["shape"].clone()).unwrap();
            shape.reverse();
            t(&gguf, dtype, &shape, &format!("q:{gguf}"))
        })
        .collect()
}

#[test]
fn a_gguf_quantisation_pairs_every_tensor_by_its_mapped_name() {
    let mut l = Ledger::new();
    l.model("base", &[], &[("model.safetensors", llama("", &[]))]);
    l.model(
        "q4",
        &[("base", "quantized")],
        &[("model-Q4_K_M.gguf", llama_gguf("Q4_K"))],
    );
    let d = l.diff("base", "q4");
    assert_eq!(d.totals.tensors.changed, 11);
    assert_eq!(d.totals.changes.dtype, 11);
    assert_eq!(
        d.totals.changes.shape, 0,
        "dims are compared outermost-first"
    );
    assert_eq!(d.totals.child_params, TOTAL_PARAMS);
    assert!(d
        .tensors
        .iter()
        .all(|t| t.matched_by == Some(MatchedBy::Mapping)));
    let q = d.quantization.as_ref().unwrap();
    assert_eq!((q.matched, q.dtype_changed, q.shape_changed), (11, 11, 0));
    assert_eq!(q.dtypes.get("Q4_K"), Some(&11));
    assert_eq!(
        d.summary,
        "quantized · all 11 tensors re-typed (Q4_K), no shape changed"
    );
    // The child side shows the GGUF tensor with its shape outermost-first.
    let embed = &d.tensors[0];
    assert_eq!(embed.child.as_ref().unwrap().name, "token_embd.weight");
    assert_eq!(embed.child.as_ref().unwrap().shape, vec![100, 8]);

    // The other way round: a GGUF parent, a safetensors child (dequantised) of it.
    l.model(
        "deq",
        &[("q4", "finetune")],
        &[("model.safetensors", llama("", &[]))],
    );
    let d = l.diff("q4", "deq");
    assert_eq!(d.totals.tensors.changed, 11);
    assert_eq!((d.totals.tensors.added, d.totals.tensors.removed), (0, 0));
    assert_eq!(d.totals.changes.shape, 0);
}

#[test]
fn an_adapter_adds_tensors_beside_the_base_and_names_its_targets() {
    let mut l = Ledger::new();
    l.model("base", &[], &[("model.safetensors", llama("", &[]))]);
    let mut lora = Vec::new();
    for layer in 0..2 {
        for (proj, out) in [("q_proj", 8u64), ("v_proj", 4)] {
            let m = format!("base_model.model.model.layers.{layer}.self_attn.{proj}");
            lora.push(t(&format!("{m}.lora_A.weight"), "F32", &[2, 8], &m));
            lora.push(t(&format!("{m}.lora_B.weight"), "F32", &[out, 2], &m));
        }
    }
    lora.push(t("extra.scale", "F32", &[3], "extra"));
    l.model_with(
        "lora",
        &[("base", "adapter")],
        &[("adapter_model.safetensors", lora)],
        json!({"adapter": {"peft_type": "LORA", "target_modules": ["q_proj", "v_proj"], "r": 2, "lora_alpha": 16}}),
    );
    let model = l.state.model("lab/lora").unwrap();
    assert_eq!(model.adapter.as_ref().unwrap().r, Some(2));
    let d = l.diff("base", "lora");
    let t = &d.totals;
    assert_eq!(
        (t.tensors.added, t.tensors.inherited, t.tensors.removed),
        (9, 11, 0)
    );
    let a = d.adapter.as_ref().unwrap();
    assert_eq!(a.tensors, 9);
    let adapter_params: u128 = 2 * (16 + 16) + 2 * (16 + 8) + 3;
    assert_eq!(a.params, adapter_params);
    assert_eq!(a.modules.len(), 4);
    assert_eq!(a.untargeted_tensors, 1);
    assert_eq!(a.modules[0].module, "model.layers.0.self_attn.q_proj");
    assert_eq!(
        a.modules[0].parent_tensor.as_deref(),
        Some("model.layers.0.self_attn.q_proj.weight")
    );
    assert_eq!(a.targeted_parent_params, 2 * (64 + 32));
    assert_eq!(a.config.as_ref().unwrap().target_modules.len(), 2);
    let added = d
        .tensors
        .iter()
        .find(|t| t.status == TensorStatus::Added)
        .unwrap();
    assert_eq!(
        added.adapts.as_deref(),
        Some("model.layers.0.self_attn.q_proj")
    );
    assert_eq!(
        d.summary,
        format!("adapter · {adapter_params} adapter parameters on 4 modules")
    );
}

#[test]
fn distillation_merges_unrelated_pairs_and_missing_hashes() {
    let mut l = Ledger::new();
    l.model("teacher", &[], &[("model.safetensors", llama("", &[]))]);
    l.model("other", &[], &[("model.safetensors", llama("o", &[0, 1]))]);
    l.model(
        "student",
        &[("teacher", "distilled")],
        &[("model.safetensors", llama("s", &[0, 1]))],
    );
    // The student's non-layer tensors keep the teacher's bytes in this fixture.
    let d = l.diff("teacher", "student");
    assert_eq!(
        d.summary,
        "distilled · 3 of 11 tensors identical to the teacher's"
    );
    l.model(
        "student2",
        &[("teacher", "distilled")],
        &[(
            "model.safetensors",
            vec![t("model.embed_tokens.weight", "F16", &[50, 8], "small")],
        )],
    );
    assert_eq!(
        l.diff("teacher", "student2").summary,
        "distilled · shares no weights with the teacher"
    );
    l.model("bare", &[("teacher", "distilled")], &[]);
    let d = l.diff("teacher", "bare");
    assert!(!d.comparable && d.tensors.is_empty());
    assert_eq!(
        d.summary,
        "distilled · trained on the teacher's outputs; shares no weights by design"
    );
    l.model(
        "merged",
        &[("teacher", "merge"), ("other", "merge")],
        &[("model.safetensors", llama("m", &[0, 1]))],
    );
    let d = l.diff("other", "merged");
    assert_eq!(d.relation.unwrap().as_str(), "merge");
    assert!(d.summary.starts_with("merge · "), "{}", d.summary);
    assert!(d.summary.contains("(layers 0–1)"), "{}", d.summary);
    // Two models that are not parent and child still compare.
    let d = l.diff("teacher", "other");
    assert_eq!(d.relation, None);
    assert!(d.summary.starts_with("compared · "), "{}", d.summary);
    // Identical weights.
    l.model(
        "copy",
        &[("teacher", "finetune")],
        &[("weights.safetensors", llama("", &[]))],
    );
    assert_eq!(
        l.diff("teacher", "copy").summary,
        "finetune · identical weights"
    );
    // A parent registered without tensors.
    l.model("nohash", &[], &[]);
    l.model(
        "child",
        &[("nohash", "finetune")],
        &[("model.safetensors", llama("", &[]))],
    );
    let d = l.diff("nohash", "child");
    assert!(!d.comparable);
    assert_eq!(
        d.summary,
        "finetune · no tensor hashes recorded for the parent"
    );
    assert_eq!(d.totals.child_params, TOTAL_PARAMS);
}

#[test]
fn tensors_repeated_across_files_pair_in_order_and_the_diff_serialises() {
    let mut l = Ledger::new();
    let w = |seed: &str| vec![t("w.weight", "F32", &[2, 2], seed)];
    l.model(
        "a",
        &[],
        &[("one.safetensors", w("1")), ("two.safetensors", w("2"))],
    );
    l.model(
        "b",
        &[("a", "finetune")],
        &[("one.safetensors", w("1")), ("two.safetensors", w("3"))],
    );
    let d = l.diff("a", "b");
    let statuses: Vec<_> = d.tensors.iter().map(|t| t.status).collect();
    assert_eq!(
        statuses,
        vec![TensorStatus::Identical, TensorStatus::Changed]
    );
    assert_eq!(d.totals.changed_ppm, 500_000);
    assert_eq!(d.totals.changed_percent, "50%");
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["tensors"][1]["status"], "changed");
    assert_eq!(v["tensors"][1]["changes"], json!(["hash"]));
    assert_eq!(v["totals"]["changed_params"], 4);
    assert_eq!(v["layers"][0]["layer"], Value::Null);
    let back: ModelDiff = serde_json::from_value(v).unwrap();
    assert_eq!(back, d);
}
