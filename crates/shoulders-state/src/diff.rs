//! "Who changed what": the parameter-level diff between a model and its parent, computed from
//! the per-tensor hashes their `model.register` records carry, and nothing else (no weights
//! are read, so anyone holding the log gets the same answer).
//!
//! **Matching.** Every tensor of the parent is paired with at most one tensor of the child:
//!
//! 1. tensors with the same name are paired first (in record order when a name repeats across
//!    files);
//! 2. the rest are paired by their Hugging Face name: a llama.cpp (GGUF) name is mapped with
//!    [`hf_name`] (llama family table below), so a GGUF quantisation of a safetensors model, or
//!    the reverse, lines up tensor by tensor.
//!
//! Shapes are compared outermost-first. GGUF lists a tensor's dimensions innermost-first
//! (`ne[0]` is the row length) and the record keeps them as the file has them, so the shapes of
//! tensors in `*.gguf` artifacts are reversed before comparing (and shown reversed).
//!
//! | llama.cpp (GGUF) | Hugging Face |
//! |---|---|
//! | `token_embd` | `model.embed_tokens` |
//! | `output` | `lm_head` |
//! | `output_norm` | `model.norm` |
//! | `blk.N.attn_q` / `attn_k` / `attn_v` / `attn_output` | `model.layers.N.self_attn.q_proj` / `k_proj` / `v_proj` / `o_proj` |
//! | `blk.N.ffn_gate` / `ffn_up` / `ffn_down` | `model.layers.N.mlp.gate_proj` / `up_proj` / `down_proj` |
//! | `blk.N.attn_norm` | `model.layers.N.input_layernorm` |
//! | `blk.N.ffn_norm` | `model.layers.N.post_attention_layernorm` |
//!
//! each with its `.weight` or `.bias` suffix.
//!
//! **Status.** A paired tensor is `identical` when its hash, dtype and shape all match, else
//! `changed` (with the list of what differs: `hash`, `dtype`, `shape`). A parent tensor with no
//! partner is `removed`, a child tensor with none `added`, except for an adapter: its tensors
//! sit beside the base's, so the base's unpaired tensors are `inherited` (loaded unchanged)
//! and the adapter's own are `added`, each naming the base tensor it adapts.
//!
//! **Counting.** A tensor's parameters are the product of its dimensions (a scalar has one), in
//! `u128`, saturating (only a forged shape could reach the bound). Parameters of `identical`,
//! `changed`, `removed` and `inherited` tensors are counted on the parent's side, of `added`
//! ones on the child's. "Parameters changed" are those of `changed` tensors (removed and added
//! ones are counted apart), as a fraction of all the parent's parameters in parts per million,
//! rounded down (so 1 000 000 means every parameter changed), plus a rounded percentage for
//! people. No floating point is used anywhere.
//!
//! **Layers.** A tensor belongs to layer N when its name has a segment `layers`, `layer`, `h`
//! or `blk` followed by the segment `N` and more (`model.layers.3.mlp…`, `transformer.h.3…`,
//! `blk.3.attn_q…`); every other tensor is in the non-layer group (`layer: null`).

use crate::Model;
use serde::{Deserialize, Serialize};
use shoulders_record::{AdapterConfig, Relation, Tensor};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write;

/// Parts per million that make a whole.
const PPM: u128 = 1_000_000;

/// Global (non-layer) llama.cpp modules and their Hugging Face names (llama family).
const GLOBAL_NAMES: [(&str, &str); 3] = [
    ("token_embd", "model.embed_tokens"),
    ("output", "lm_head"),
    ("output_norm", "model.norm"),
];

/// Per-layer llama.cpp modules (after `blk.N.`) and their Hugging Face names (after
/// `model.layers.N.`), llama family.
const LAYER_NAMES: [(&str, &str); 9] = [
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
];

/// Name segments that hold a LoRA (or DoRA) adapter's own weights; the segments before one
/// name the base module it adapts.
const LORA_PARTS: [&str; 5] = [
    "lora_A",
    "lora_B",
    "lora_embedding_A",
    "lora_embedding_B",
    "lora_magnitude_vector",
];

/// The prefix PEFT puts before a base module's name in an adapter's tensor names.
const PEFT_PREFIX: &str = "base_model.model.";

/// What happened to one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TensorStatus {
    Identical,
    Changed,
    Added,
    Removed,
    /// An adapter's base tensor, loaded unchanged beside the adapter.
    Inherited,
}

/// What differs between two paired tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Hash,
    Dtype,
    Shape,
}

/// How a pair was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    /// The same tensor name.
    Name,
    /// The same Hugging Face name after mapping a llama.cpp name ([`hf_name`]).
    Mapping,
}

/// One side (parent or child) of a tensor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSide {
    /// The artifact (file) holding it.
    pub file: String,
    /// The name as recorded.
    pub name: String,
    pub dtype: String,
    /// Outermost dimension first (a GGUF tensor's recorded dimensions reversed).
    pub shape: Vec<u64>,
    pub params: u128,
}

/// One tensor of the diff.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorDiff {
    /// The parent's name when there is a parent side, else the child's.
    pub name: String,
    pub status: TensorStatus,
    /// The layer the name places it in ([`layer_of`]); `None` for the non-layer group.
    pub layer: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<TensorSide>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<TensorSide>,
    /// What differs, for `changed` tensors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_by: Option<MatchedBy>,
    /// For an adapter's own tensor: the base module it adapts ([`lora_module`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapts: Option<String>,
}

/// A count per status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts<T> {
    pub identical: T,
    pub changed: T,
    pub added: T,
    pub removed: T,
    pub inherited: T,
}

impl StatusCounts<u64> {
    fn add(&mut self, status: TensorStatus) {
        let slot = self.slot(status);
        *slot = slot.saturating_add(1);
    }
}

impl StatusCounts<u128> {
    fn add(&mut self, status: TensorStatus, n: u128) {
        let slot = self.slot(status);
        *slot = slot.saturating_add(n);
    }
}

impl<T> StatusCounts<T> {
    fn slot(&mut self, status: TensorStatus) -> &mut T {
        match status {
            TensorStatus::Identical => &mut self.identical,
            TensorStatus::Changed => &mut self.changed,
            TensorStatus::Added => &mut self.added,
            TensorStatus::Removed => &mut self.removed,
            TensorStatus::Inherited => &mut self.inherited,
        }
    }
}

/// How many paired tensors differ in each respect (a tensor may count in several).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeCounts {
    pub hash: u64,
    pub dtype: u64,
    pub shape: u64,
}

/// Totals of the whole diff.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub parent_tensors: u64,
    pub child_tensors: u64,
    pub parent_params: u128,
    pub child_params: u128,
    pub tensors: StatusCounts<u64>,
    pub params: StatusCounts<u128>,
    pub changes: ChangeCounts,
    /// The parent's parameters in `changed` tensors.
    pub changed_params: u128,
    /// `changed_params` per million of `parent_params`, rounded down.
    pub changed_ppm: u32,
    /// The same as a percentage for display, e.g. `12.5%`, `<0.1%`.
    pub changed_percent: String,
}

/// Totals of one layer (or of the non-layer group).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerTotals {
    /// `None`: tensors outside any numbered layer (embeddings, final norm, head, …).
    pub layer: Option<u64>,
    pub tensors: StatusCounts<u64>,
    pub params: StatusCounts<u128>,
    /// Parameters of the parent's tensors in this group.
    pub parent_params: u128,
    /// The group's changed parameters per million of its `parent_params`, rounded down.
    pub changed_ppm: u32,
}

/// What a quantisation did to the tensors it kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantization {
    /// Tensors paired with a parent tensor.
    pub matched: u64,
    pub dtype_changed: u64,
    pub shape_changed: u64,
    /// The new dtypes of the re-typed tensors, with how many took each.
    pub dtypes: BTreeMap<String, u64>,
}

/// One base module an adapter targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterModule {
    /// The base module, e.g. `model.layers.0.self_attn.q_proj`.
    pub module: String,
    /// The parent's tensor it adapts (`<module>.weight`), when the parent has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_tensor: Option<String>,
    /// That tensor's parameters (0 when the parent has no such tensor).
    pub parent_params: u128,
    pub adapter_tensors: u64,
    pub adapter_params: u128,
}

/// What an adapter adds and where.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterDiff {
    /// The adapter's own tensors and parameters (all of the child's).
    pub tensors: u64,
    pub params: u128,
    /// The base modules its tensors target, by name.
    pub modules: Vec<AdapterModule>,
    /// The adapter's tensors whose names target no base module (not LoRA-shaped).
    pub untargeted_tensors: u64,
    /// Parameters of the parent tensors the adapter targets.
    pub targeted_parent_params: u128,
    /// `targeted_parent_params` per million of the parent's parameters, rounded down.
    pub targeted_ppm: u32,
    pub targeted_percent: String,
    /// The adapter's declared configuration (`adapter_config.json`), when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<AdapterConfig>,
}

/// The diff of `child` against `parent`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelDiff {
    pub parent: String,
    pub child: String,
    /// How the child derives from the parent; `None` when the child does not name it.
    pub relation: Option<Relation>,
    /// False when either side recorded no tensors: then nothing is paired and the totals are
    /// only the sides' sizes (an adapter's own tensors are still described).
    pub comparable: bool,
    /// One line for people, e.g. `finetune · 12% of parameters changed (layers 2–3)`.
    pub summary: String,
    pub totals: Totals,
    /// Per layer, in layer order, the non-layer group last.
    pub layers: Vec<LayerTotals>,
    /// Every tensor: the parent's in record order, then the child's added ones.
    pub tensors: Vec<TensorDiff>,
    /// For a `quantized` child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
    /// For an `adapter` child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterDiff>,
}

/// A tensor with its comparison key.
struct Entry<'a> {
    file: &'a str,
    tensor: &'a Tensor,
    /// The Hugging Face name ([`hf_name`], or the name itself).
    key: String,
    shape: Vec<u64>,
    params: u128,
}

impl Entry<'_> {
    fn side(&self) -> TensorSide {
        TensorSide {
            file: self.file.to_string(),
            name: self.tensor.name.clone(),
            dtype: self.tensor.dtype.clone(),
            shape: self.shape.clone(),
            params: self.params,
        }
    }
}

fn entries(m: &Model) -> Vec<Entry<'_>> {
    let mut out = Vec::new();
    for a in &m.artifacts {
        let gguf = a.path.ends_with(".gguf");
        for t in &a.tensors {
            let mut shape = t.shape.clone();
            if gguf {
                shape.reverse();
            }
            out.push(Entry {
                file: &a.path,
                tensor: t,
                key: hf_name(&t.name).unwrap_or_else(|| t.name.clone()),
                params: params(&shape),
                shape,
            });
        }
    }
    out
}

/// Parameters of a tensor of this shape: the product of its dimensions, saturating.
pub fn params(shape: &[u64]) -> u128 {
    shape
        .iter()
        .fold(1u128, |n, &d| n.saturating_mul(u128::from(d)))
}

/// `part` per million of `whole`, rounded down; 0 when `whole` is 0, at most 1 000 000.
/// Exact unless `part` is over 3.4·10^32 (only forged shapes get there), then approximated.
pub fn ppm(part: u128, whole: u128) -> u32 {
    if whole == 0 {
        return 0;
    }
    let part = part.min(whole);
    let v = match part.checked_mul(PPM) {
        Some(scaled) => scaled / whole,
        None => part / (whole / PPM).max(1),
    };
    u32::try_from(v.min(PPM)).unwrap_or(1_000_000)
}

/// A percentage for display from a ppm fraction: one decimal, `.0` dropped; never rounds a
/// non-zero share to `0%` or a partial one to `100%` (`<0.1%`, `>99.9%`).
pub fn percent(part: u128, whole: u128) -> String {
    if whole == 0 || part == 0 {
        return "0%".into();
    }
    if part >= whole {
        return "100%".into();
    }
    let tenths = (ppm(part, whole) + 500) / 1000;
    match tenths {
        0 => "<0.1%".into(),
        t if t >= 1000 => ">99.9%".into(),
        t if t.is_multiple_of(10) => format!("{}%", t / 10),
        t => format!("{}.{}%", t / 10, t % 10),
    }
}

/// A parameter count for people: `512`, `8.4K`, `8.4M`, `7B`, `1.2T` (rounded down to a tenth).
pub fn human_count(n: u128) -> String {
    const UNITS: [(u128, &str); 4] = [
        (1_000_000_000_000, "T"),
        (1_000_000_000, "B"),
        (1_000_000, "M"),
        (1_000, "K"),
    ];
    for (unit, suffix) in UNITS {
        if n >= unit {
            let tenths = n / (unit / 10);
            return if tenths.is_multiple_of(10) {
                format!("{}{suffix}", tenths / 10)
            } else {
                format!("{}.{}{suffix}", tenths / 10, tenths % 10)
            };
        }
    }
    n.to_string()
}

/// A canonical decimal layer number (no sign, no leading zero).
fn layer_number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// The layer a tensor name places it in: the number after the first `layers`, `layer`, `h` or
/// `blk` segment that is followed by a number and at least one more segment.
pub fn layer_of(name: &str) -> Option<u64> {
    let segs: Vec<&str> = name.split('.').collect();
    (0..segs.len().saturating_sub(2)).find_map(|i| {
        if matches!(segs[i], "layers" | "layer" | "h" | "blk") {
            layer_number(segs[i + 1])
        } else {
            None
        }
    })
}

/// The Hugging Face name of a llama.cpp (GGUF) tensor name, llama family (see the module
/// table); `None` for names the table does not cover.
pub fn hf_name(gguf: &str) -> Option<String> {
    let (module, suffix) = gguf.rsplit_once('.')?;
    if !matches!(suffix, "weight" | "bias") {
        return None;
    }
    if let Some((_, hf)) = GLOBAL_NAMES.iter().find(|(g, _)| *g == module) {
        return Some(format!("{hf}.{suffix}"));
    }
    let (n, part) = module.strip_prefix("blk.")?.split_once('.')?;
    let n = layer_number(n)?;
    let (_, hf) = LAYER_NAMES.iter().find(|(g, _)| *g == part)?;
    Some(format!("model.layers.{n}.{hf}.{suffix}"))
}

/// The llama.cpp name of a Hugging Face tensor name, the inverse of [`hf_name`].
pub fn gguf_name(hf: &str) -> Option<String> {
    let (module, suffix) = hf.rsplit_once('.')?;
    if !matches!(suffix, "weight" | "bias") {
        return None;
    }
    if let Some((g, _)) = GLOBAL_NAMES.iter().find(|(_, h)| *h == module) {
        return Some(format!("{g}.{suffix}"));
    }
    let (n, part) = module.strip_prefix("model.layers.")?.split_once('.')?;
    let n = layer_number(n)?;
    let (g, _) = LAYER_NAMES.iter().find(|(_, h)| *h == part)?;
    Some(format!("blk.{n}.{g}.{suffix}"))
}

/// The base module a PEFT LoRA tensor adapts: `base_model.model.` stripped from the front and
/// everything from the `lora_A`/`lora_B` (or `lora_embedding_*`, `lora_magnitude_vector`)
/// segment on dropped, e.g. `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` →
/// `model.layers.0.self_attn.q_proj`. `None` for other names.
pub fn lora_module(name: &str) -> Option<String> {
    let name = name.strip_prefix(PEFT_PREFIX).unwrap_or(name);
    let segs: Vec<&str> = name.split('.').collect();
    let at = segs.iter().rposition(|s| LORA_PARTS.contains(s))?;
    (at > 0).then(|| segs[..at].join("."))
}

/// Layer numbers as ranges: `[2, 3, 5]` → `2–3, 5`.
fn ranges(layers: &[u64]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < layers.len() {
        let mut j = i;
        while j + 1 < layers.len() && layers[j + 1] == layers[j].saturating_add(1) {
            j += 1;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        if i == j {
            let _ = write!(out, "{}", layers[i]);
        } else {
            let _ = write!(out, "{}–{}", layers[i], layers[j]);
        }
        i = j + 1;
    }
    out
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Diff `child` against `parent`. Pure, and linear in the two models' tensors.
pub fn model_diff(parent: &Model, child: &Model) -> ModelDiff {
    let relation = child
        .parents
        .iter()
        .find(|p| p.model_id == parent.model_id)
        .map(|p| p.relation);
    let is_adapter = relation == Some(Relation::Adapter);
    let pe = entries(parent);
    let ce = entries(child);
    let comparable = !pe.is_empty() && !ce.is_empty();

    // Pair: the same name first, then the same Hugging Face name.
    let mut pair_of_child: Vec<Option<(usize, MatchedBy)>> = vec![None; ce.len()];
    let mut paired_parent = vec![false; pe.len()];
    if comparable {
        let mut by_name: HashMap<&str, VecDeque<usize>> = HashMap::new();
        for (i, e) in pe.iter().enumerate() {
            by_name.entry(&e.tensor.name).or_default().push_back(i);
        }
        for (ci, c) in ce.iter().enumerate() {
            if let Some(pi) = by_name
                .get_mut(c.tensor.name.as_str())
                .and_then(VecDeque::pop_front)
            {
                pair_of_child[ci] = Some((pi, MatchedBy::Name));
                paired_parent[pi] = true;
            }
        }
        let mut by_key: HashMap<&str, VecDeque<usize>> = HashMap::new();
        for (i, e) in pe.iter().enumerate().filter(|(i, _)| !paired_parent[*i]) {
            by_key.entry(&e.key).or_default().push_back(i);
        }
        for (ci, c) in ce.iter().enumerate() {
            if pair_of_child[ci].is_some() {
                continue;
            }
            if let Some(pi) = by_key.get_mut(c.key.as_str()).and_then(VecDeque::pop_front) {
                pair_of_child[ci] = Some((pi, MatchedBy::Mapping));
                paired_parent[pi] = true;
            }
        }
    }
    let mut child_of_parent: Vec<Option<(usize, MatchedBy)>> = vec![None; pe.len()];
    for (ci, p) in pair_of_child.iter().enumerate() {
        if let Some((pi, how)) = *p {
            child_of_parent[pi] = Some((ci, how));
        }
    }

    // The parent's tensors by name and by Hugging Face name, for an adapter's targets.
    let mut parent_lookup: HashMap<&str, usize> = HashMap::new();
    for (i, e) in pe.iter().enumerate() {
        parent_lookup.entry(&e.tensor.name).or_insert(i);
    }
    for (i, e) in pe.iter().enumerate() {
        parent_lookup.entry(&e.key).or_insert(i);
    }

    let mut tensors = Vec::with_capacity(pe.len() + ce.len());
    if comparable {
        for (pi, p) in pe.iter().enumerate() {
            let d = match child_of_parent[pi] {
                Some((ci, how)) => {
                    let c = &ce[ci];
                    let mut changes = Vec::new();
                    if p.tensor.sha256 != c.tensor.sha256 {
                        changes.push(Change::Hash);
                    }
                    if p.tensor.dtype != c.tensor.dtype {
                        changes.push(Change::Dtype);
                    }
                    if p.shape != c.shape {
                        changes.push(Change::Shape);
                    }
                    TensorDiff {
                        name: p.tensor.name.clone(),
                        status: if changes.is_empty() {
                            TensorStatus::Identical
                        } else {
                            TensorStatus::Changed
                        },
                        layer: layer_of(&p.tensor.name),
                        parent: Some(p.side()),
                        child: Some(c.side()),
                        changes,
                        matched_by: Some(how),
                        adapts: None,
                    }
                }
                None => TensorDiff {
                    name: p.tensor.name.clone(),
                    status: if is_adapter {
                        TensorStatus::Inherited
                    } else {
                        TensorStatus::Removed
                    },
                    layer: layer_of(&p.tensor.name),
                    parent: Some(p.side()),
                    child: None,
                    changes: Vec::new(),
                    matched_by: None,
                    adapts: None,
                },
            };
            tensors.push(d);
        }
        for (ci, c) in ce.iter().enumerate() {
            if pair_of_child[ci].is_none() {
                tensors.push(TensorDiff {
                    name: c.tensor.name.clone(),
                    status: TensorStatus::Added,
                    layer: layer_of(&c.tensor.name),
                    parent: None,
                    child: Some(c.side()),
                    changes: Vec::new(),
                    matched_by: None,
                    adapts: if is_adapter {
                        lora_module(&c.tensor.name)
                    } else {
                        None
                    },
                });
            }
        }
    }

    // Totals, per layer and overall.
    let mut totals = Totals {
        parent_tensors: pe.len() as u64,
        child_tensors: ce.len() as u64,
        parent_params: pe.iter().fold(0u128, |n, e| n.saturating_add(e.params)),
        child_params: ce.iter().fold(0u128, |n, e| n.saturating_add(e.params)),
        ..Totals::default()
    };
    // Key: (0, N) for layer N, (1, 0) for the non-layer group, so it sorts last.
    let mut layers: BTreeMap<(u8, u64), LayerTotals> = BTreeMap::new();
    let mut quant = Quantization::default();
    for t in &tensors {
        let n = match (&t.parent, &t.child) {
            (Some(p), _) => p.params,
            (None, Some(c)) => c.params,
            (None, None) => 0,
        };
        totals.tensors.add(t.status);
        totals.params.add(t.status, n);
        let key = t.layer.map_or((1, 0), |l| (0, l));
        let group = layers.entry(key).or_insert_with(|| LayerTotals {
            layer: t.layer,
            tensors: StatusCounts::default(),
            params: StatusCounts::default(),
            parent_params: 0,
            changed_ppm: 0,
        });
        group.tensors.add(t.status);
        group.params.add(t.status, n);
        if let Some(p) = &t.parent {
            group.parent_params = group.parent_params.saturating_add(p.params);
        }
        if t.parent.is_some() && t.child.is_some() {
            quant.matched += 1;
        }
        for c in &t.changes {
            match c {
                Change::Hash => totals.changes.hash += 1,
                Change::Dtype => {
                    totals.changes.dtype += 1;
                    quant.dtype_changed += 1;
                    if let Some(side) = &t.child {
                        *quant.dtypes.entry(side.dtype.clone()).or_default() += 1;
                    }
                }
                Change::Shape => {
                    totals.changes.shape += 1;
                    quant.shape_changed += 1;
                }
            }
        }
    }
    for g in layers.values_mut() {
        g.changed_ppm = ppm(g.params.changed, g.parent_params);
    }
    totals.changed_params = totals.params.changed;
    totals.changed_ppm = ppm(totals.changed_params, totals.parent_params);
    totals.changed_percent = percent(totals.changed_params, totals.parent_params);

    let adapter = is_adapter.then(|| {
        let mut modules: BTreeMap<String, AdapterModule> = BTreeMap::new();
        let mut untargeted = 0u64;
        for c in &ce {
            match lora_module(&c.tensor.name) {
                Some(module) => {
                    let m = modules.entry(module.clone()).or_insert_with(|| {
                        let target = format!("{module}.weight");
                        let found = parent_lookup.get(target.as_str()).map(|&i| &pe[i]);
                        AdapterModule {
                            parent_tensor: found.map(|p| p.tensor.name.clone()),
                            parent_params: found.map_or(0, |p| p.params),
                            module,
                            adapter_tensors: 0,
                            adapter_params: 0,
                        }
                    });
                    m.adapter_tensors += 1;
                    m.adapter_params = m.adapter_params.saturating_add(c.params);
                }
                None => untargeted += 1,
            }
        }
        let targeted = modules
            .values()
            .fold(0u128, |n, m| n.saturating_add(m.parent_params));
        AdapterDiff {
            tensors: totals.child_tensors,
            params: totals.child_params,
            modules: modules.into_values().collect(),
            untargeted_tensors: untargeted,
            targeted_parent_params: targeted,
            targeted_ppm: ppm(targeted, totals.parent_params),
            targeted_percent: percent(targeted, totals.parent_params),
            config: child.adapter.clone(),
        }
    });
    let quantization = (relation == Some(Relation::Quantized)).then_some(quant);

    let mut diff = ModelDiff {
        parent: parent.model_id.clone(),
        child: child.model_id.clone(),
        relation,
        comparable,
        summary: String::new(),
        totals,
        layers: layers.into_values().collect(),
        tensors,
        quantization,
        adapter,
    };
    diff.summary = summary(&diff);
    diff
}

/// The one-line summary of a diff (see [`ModelDiff::summary`]).
fn summary(d: &ModelDiff) -> String {
    let t = &d.totals;
    let what = d.relation.map_or("compared", Relation::as_str);
    let mut out = format!("{what} · ");
    if let Some(a) = &d.adapter {
        if a.tensors > 0 {
            let _ = write!(
                out,
                "{} adapter parameters on {}",
                human_count(a.params),
                plural(a.modules.len() as u64, "module", "modules")
            );
            return out;
        }
    }
    if !d.comparable {
        if d.relation == Some(Relation::Distilled) {
            out.push_str("trained on the teacher's outputs; shares no weights by design");
            return out;
        }
        out.push_str(match (t.parent_tensors, t.child_tensors) {
            (0, 0) => "no tensor hashes recorded for either model",
            (0, _) => "no tensor hashes recorded for the parent",
            _ => "no tensor hashes recorded for this model",
        });
        return out;
    }
    let extras = |out: &mut String| {
        if t.tensors.added > 0 {
            let _ = write!(
                out,
                ", {} added",
                plural(t.tensors.added, "tensor", "tensors")
            );
        }
        if t.tensors.removed > 0 {
            let _ = write!(
                out,
                ", {} removed",
                plural(t.tensors.removed, "tensor", "tensors")
            );
        }
    };
    match d.relation {
        Some(Relation::Quantized) => {
            let q = d.quantization.clone().unwrap_or_default();
            if q.matched == 0 {
                out.push_str("no tensor matches the parent's");
                return out;
            }
            let mut dtypes: Vec<(&String, &u64)> = q.dtypes.iter().collect();
            dtypes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let mut names: Vec<String> = dtypes.iter().take(3).map(|(n, _)| (*n).clone()).collect();
            if dtypes.len() > 3 {
                names.push(format!("+{} more", dtypes.len() - 3));
            }
            if q.dtype_changed == 0 {
                out.push_str("no tensor re-typed");
            } else if q.dtype_changed == q.matched && t.tensors.removed == 0 {
                let _ = write!(
                    out,
                    "all {} re-typed ({})",
                    plural(q.matched, "tensor", "tensors"),
                    names.join(", ")
                );
            } else {
                let _ = write!(
                    out,
                    "{} of {} matched tensors re-typed ({})",
                    q.dtype_changed,
                    q.matched,
                    names.join(", ")
                );
            }
            if q.shape_changed == 0 {
                out.push_str(", no shape changed");
            } else {
                let _ = write!(
                    out,
                    ", {} changed",
                    plural(q.shape_changed, "shape", "shapes")
                );
            }
            extras(&mut out);
        }
        Some(Relation::Distilled) => {
            if t.tensors.identical == 0 {
                out.push_str("shares no weights with the teacher");
            } else {
                let _ = write!(
                    out,
                    "{} of {} identical to the teacher's",
                    t.tensors.identical,
                    plural(t.parent_tensors, "tensor", "tensors")
                );
            }
        }
        _ => {
            if t.tensors.changed == 0 && t.tensors.added == 0 && t.tensors.removed == 0 {
                out.push_str("identical weights");
                return out;
            }
            let _ = write!(out, "{} of parameters changed", t.changed_percent);
            let mut changed_layers = Vec::new();
            let mut outside = false;
            for g in &d.layers {
                if g.tensors.changed > 0 {
                    match g.layer {
                        Some(l) => changed_layers.push(l),
                        None => outside = true,
                    }
                }
            }
            if !changed_layers.is_empty() && !outside {
                let r = ranges(&changed_layers);
                if r.matches(", ").count() < 3 {
                    let word = if changed_layers.len() == 1 {
                        "layer"
                    } else {
                        "layers"
                    };
                    let _ = write!(out, " ({word} {r})");
                }
            }
            extras(&mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_cpp_names_map_to_hugging_face_names_and_back() {
        let table = [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output.weight", "lm_head.weight"),
            ("output_norm.weight", "model.norm.weight"),
            (
                "blk.0.attn_q.weight",
                "model.layers.0.self_attn.q_proj.weight",
            ),
            (
                "blk.1.attn_k.weight",
                "model.layers.1.self_attn.k_proj.weight",
            ),
            (
                "blk.2.attn_v.weight",
                "model.layers.2.self_attn.v_proj.weight",
            ),
            (
                "blk.3.attn_output.weight",
                "model.layers.3.self_attn.o_proj.weight",
            ),
            (
                "blk.10.ffn_gate.weight",
                "model.layers.10.mlp.gate_proj.weight",
            ),
            ("blk.10.ffn_up.weight", "model.layers.10.mlp.up_proj.weight"),
            (
                "blk.31.ffn_down.weight",
                "model.layers.31.mlp.down_proj.weight",
            ),
            (
                "blk.0.attn_norm.weight",
                "model.layers.0.input_layernorm.weight",
            ),
            (
                "blk.0.ffn_norm.weight",
                "model.layers.0.post_attention_layernorm.weight",
            ),
            ("blk.4.attn_q.bias", "model.layers.4.self_attn.q_proj.bias"),
        ];
        for (g, h) in table {
            assert_eq!(hf_name(g).as_deref(), Some(h), "{g}");
            assert_eq!(gguf_name(h).as_deref(), Some(g), "{h}");
        }
        for unmapped in [
            "rope_freqs.weight",
            "blk.0.attn_qkv.weight",
            "blk.01.attn_q.weight",
            "blk.x.attn_q.weight",
            "blk.0.attn_q.scales",
            "token_embd",
            "model.embed_tokens.weight",
            "",
        ] {
            assert_eq!(hf_name(unmapped), None, "{unmapped}");
        }
        assert_eq!(gguf_name("model.layers.0.mlp.experts.0.weight"), None);
        assert_eq!(gguf_name("transformer.h.0.attn.c_attn.weight"), None);
    }

    #[test]
    fn layers_come_from_the_names() {
        for (name, layer) in [
            ("model.layers.7.self_attn.q_proj.weight", Some(7)),
            ("layers.0.weight", Some(0)),
            ("transformer.h.11.mlp.c_fc.bias", Some(11)),
            ("blk.3.attn_q.weight", Some(3)),
            ("encoder.layer.2.output.dense.weight", Some(2)),
            (
                "base_model.model.model.layers.5.self_attn.v_proj.lora_B.weight",
                Some(5),
            ),
            ("model.embed_tokens.weight", None),
            ("lm_head.weight", None),
            ("model.norm.weight", None),
            ("token_embd.weight", None),
            // A number with nothing after it is not a layer; nor is a non-canonical number.
            ("layers.3", None),
            ("layers.03.weight", None),
            ("h.x.weight", None),
            ("weights.3.h", None),
        ] {
            assert_eq!(layer_of(name), layer, "{name}");
        }
    }

    #[test]
    fn lora_tensors_name_their_base_module() {
        assert_eq!(
            lora_module("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")
                .as_deref(),
            Some("model.layers.0.self_attn.q_proj")
        );
        assert_eq!(
            lora_module("base_model.model.model.layers.0.self_attn.v_proj.lora_B.default.weight")
                .as_deref(),
            Some("model.layers.0.self_attn.v_proj")
        );
        assert_eq!(
            lora_module("model.embed_tokens.lora_embedding_A").as_deref(),
            Some("model.embed_tokens")
        );
        assert_eq!(lora_module("lora_A.weight"), None);
        assert_eq!(lora_module("base_model.model.lm_head.weight"), None);
    }

    #[test]
    fn fractions_are_integers_and_percentages_honest() {
        assert_eq!(ppm(1, 3), 333_333);
        assert_eq!(ppm(3, 3), 1_000_000);
        assert_eq!(ppm(5, 0), 0);
        assert_eq!(ppm(u128::MAX, u128::MAX), 1_000_000);
        assert_eq!(ppm(u128::MAX / 2, u128::MAX), 500_000);
        assert_eq!(percent(1, 8), "12.5%");
        assert_eq!(percent(1, 4), "25%");
        assert_eq!(percent(0, 4), "0%");
        assert_eq!(percent(1, 1_000_000), "<0.1%");
        assert_eq!(percent(999_999, 1_000_000), ">99.9%");
        assert_eq!(percent(4, 4), "100%");
        assert_eq!(human_count(512), "512");
        assert_eq!(human_count(8_400_000), "8.4M");
        assert_eq!(human_count(7_000_000_000), "7B");
        assert_eq!(human_count(1_999), "1.9K");
        assert_eq!(params(&[]), 1);
        assert_eq!(params(&[4096, 11008]), 4096 * 11008);
        assert_eq!(params(&[u64::MAX, u64::MAX, u64::MAX]), u128::MAX);
        assert_eq!(ranges(&[0, 2, 3, 4, 7]), "0, 2–4, 7");
    }
}
