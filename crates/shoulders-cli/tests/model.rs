//! `shoulders model import` / `model check` end to end on generated model directories.

mod common;

use common::*;

use safetensors::tensor::{Dtype, TensorView};
use serde_json::Value;
use std::path::Path;

fn write_model(dir: &Path, seed: u8, card: Option<&str>) {
    std::fs::create_dir_all(dir).unwrap();
    let a: Vec<u8> = (0..24u8).map(|i| i.wrapping_mul(seed)).collect();
    let b: Vec<u8> = (0..32u8).map(|i| i.wrapping_add(seed)).collect();
    let views = vec![
        (
            "embed.weight",
            TensorView::new(Dtype::F32, vec![2, 3], &a).unwrap(),
        ),
        (
            "layers.0.weight",
            TensorView::new(Dtype::F32, vec![8], &b).unwrap(),
        ),
    ];
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("config.json"), format!("{{\"seed\":{seed}}}")).unwrap();
    if let Some(card) = card {
        std::fs::write(dir.join("README.md"), card).unwrap();
    }
}

#[test]
fn import_check_and_lineage_from_the_card() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = t.join("ledger");
    let data_s = data.to_str().unwrap();
    assert!(shoulders(&["init", "--data-dir", data_s]).status.success());
    let key = t.join("acme.key");
    let key_s = key.to_str().unwrap();
    ok_json(shoulders(&["key", "new", "--out", key_s]));
    std::fs::write(t.join("actor.json"), r#"{"handle":"acme","name":"Acme"}"#).unwrap();
    ok_json(shoulders(&[
        "submit",
        "--data-dir",
        data_s,
        "--key",
        key_s,
        "--kind",
        "actor.register",
        "--body",
        t.join("actor.json").to_str().unwrap(),
    ]));
    std::fs::write(
        t.join("ds.json"),
        r#"{"dataset_id":"acme/verse","name":"Verse","access":"open"}"#,
    )
    .unwrap();
    ok_json(shoulders(&[
        "submit",
        "--data-dir",
        data_s,
        "--key",
        key_s,
        "--kind",
        "dataset.create",
        "--body",
        t.join("ds.json").to_str().unwrap(),
    ]));

    // A base model without a card, then a fine-tune whose card names the base and the dataset.
    let base = t.join("tiny-base");
    write_model(&base, 3, None);
    let out = ok_json(shoulders(&[
        "model",
        "import",
        "--data-dir",
        data_s,
        "--key",
        key_s,
        base.to_str().unwrap(),
    ]));
    assert_eq!(out["model_id"], "acme/tiny-base");
    assert_eq!(
        (out["files"].as_u64(), out["tensors"].as_u64()),
        (Some(2), Some(2))
    );

    let tuned = t.join("tiny-tuned");
    write_model(&tuned, 5, Some("---\nlicense: apache-2.0\nbase_model: acme/tiny-base\nbase_model_relation: finetune\ndatasets: [acme/verse]\n---\n# Tiny tuned\n"));
    let out = ok_json(shoulders(&[
        "model",
        "import",
        "--data-dir",
        data_s,
        "--key",
        key_s,
        tuned.to_str().unwrap(),
        "--id",
        "tuned-1",
    ]));
    assert_eq!(out["model_id"], "acme/tiny-tuned");
    assert_eq!(out["card_license"], "apache-2.0");
    // Importing the same unchanged directory with the same id is idempotent.
    let again = shoulders(&[
        "model",
        "import",
        "--data-dir",
        data_s,
        "--key",
        key_s,
        tuned.to_str().unwrap(),
        "--id",
        "tuned-1",
    ]);
    // (A new timestamp makes the bytes differ, so the id is refused rather than silently reused.)
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).starts_with("error[E_ID_CONFLICT]"));

    let model = ok_json(shoulders(&[
        "show",
        "--data-dir",
        data_s,
        "model",
        "acme/tiny-tuned",
    ]));
    assert_eq!(model["parents"][0]["model_id"], "acme/tiny-base");
    assert_eq!(model["parents"][0]["relation"], "finetune");
    assert_eq!(model["datasets"][0], "acme/verse");
    let weights = model["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == "model.safetensors")
        .unwrap();
    assert_eq!(weights["tensors"].as_array().unwrap().len(), 2);

    // Unchanged: check passes.
    let report = ok_json(shoulders(&[
        "model",
        "check",
        "--data-dir",
        data_s,
        "acme/tiny-tuned",
        tuned.to_str().unwrap(),
    ]));
    assert_eq!(report["matches"], true);

    // Change one tensor's bytes: check names exactly that tensor and fails.
    let path = tuned.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    bytes[8 + header + 24 + 3] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let out = shoulders(&[
        "model",
        "check",
        "--data-dir",
        data_s,
        "acme/tiny-tuned",
        tuned.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error[E_ARTIFACTS_DIFFER]"));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["differences"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    assert_eq!(report["differences"][0]["kind"], "changed_tensor");
    assert_eq!(report["differences"][0]["tensor"], "layers.0.weight");

    // A card naming a base model the ledger does not know is refused, nothing appended.
    let orphan = t.join("orphan");
    write_model(&orphan, 7, Some("---\nbase_model: meta/unknown\n---\n"));
    let before = shoulders(&["checkpoint", "--data-dir", data_s]).stdout;
    let out = shoulders(&[
        "model",
        "import",
        "--data-dir",
        data_s,
        "--key",
        key_s,
        orphan.to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error[E_MODEL_UNKNOWN]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        shoulders(&["checkpoint", "--data-dir", data_s]).stdout,
        before
    );

    // --no-hints ignores the card's lineage; with a fixed --id and --ts-ms a re-run is a no-op.
    let args = [
        "model",
        "import",
        "--data-dir",
        data_s,
        "--key",
        key_s,
        orphan.to_str().unwrap(),
        "--no-hints",
        "--id",
        "orphan-1",
        "--ts-ms",
        "1767225600000",
    ];
    let first = ok_json(shoulders(&args));
    assert_eq!(
        (first["model_id"].as_str(), first["duplicate"].as_bool()),
        (Some("acme/orphan"), Some(false))
    );
    let again = ok_json(shoulders(&args));
    assert_eq!(
        (again["index"].clone(), again["duplicate"].as_bool()),
        (first["index"].clone(), Some(true))
    );
    let model = ok_json(shoulders(&[
        "show",
        "--data-dir",
        data_s,
        "model",
        "acme/orphan",
    ]));
    assert_eq!(model["parents"], serde_json::json!([]));

    // Explicit flags: an adapter of the fine-tune; a broken safetensors file is refused.
    let adapter = t.join("adapter");
    write_model(&adapter, 9, None);
    let out = ok_json(shoulders(&[
        "model",
        "import",
        "--data-dir",
        data_s,
        "--key",
        key_s,
        adapter.to_str().unwrap(),
        "--model-id",
        "acme/tiny-lora",
        "--parent",
        "acme/tiny-tuned",
        "--relation",
        "adapter",
    ]));
    assert_eq!(out["model_id"], "acme/tiny-lora");
    std::fs::write(
        adapter.join("broken.safetensors"),
        b"\x05\x00\x00\x00\x00\x00\x00\x00{}",
    )
    .unwrap();
    let out = shoulders(&[
        "model",
        "import",
        "--data-dir",
        data_s,
        "--key",
        key_s,
        adapter.to_str().unwrap(),
        "--model-id",
        "acme/other",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error[E_SAFETENSORS_INVALID]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = shoulders(&[
        "model",
        "import",
        "--data-dir",
        data_s,
        "--key",
        key_s,
        base.to_str().unwrap(),
        "--model-id",
        "acme/x",
        "--parent",
        "acme/tiny-base",
        "--relation",
        "sideways",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error[E_FIELD_INVALID]"));
}

// ---- parameter diffs on real formats -------------------------------------------------------
//
// The files are written here (safetensors with the `safetensors` crate, GGUF byte by byte,
// a PEFT adapter as `adapter_model.safetensors` + `adapter_config.json`), imported with
// `model import`, diffed with `model diff`, and every count is checked against a brute-force
// computation over the files themselves, with this test's own name table and parsers.

/// Bytes for a tensor, different for every `seed`.
fn fill(seed: &str, len: usize) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::with_capacity(len + 32);
    let mut block = Sha256::digest(seed.as_bytes());
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(block);
    }
    out.truncate(len);
    out
}

/// The llama-style tensors of a 3-layer toy model: (Hugging Face name, shape outermost-first).
fn llama_tensors() -> Vec<(String, Vec<usize>)> {
    let (hidden, kv, inter, vocab) = (8, 4, 16, 32);
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![vocab, hidden])];
    for l in 0..3 {
        for (part, shape) in [
            ("self_attn.q_proj.weight", vec![hidden, hidden]),
            ("self_attn.k_proj.weight", vec![kv, hidden]),
            ("self_attn.v_proj.weight", vec![kv, hidden]),
            ("self_attn.o_proj.weight", vec![hidden, hidden]),
            ("mlp.gate_proj.weight", vec![inter, hidden]),
            ("mlp.up_proj.weight", vec![inter, hidden]),
            ("mlp.down_proj.weight", vec![hidden, inter]),
            ("input_layernorm.weight", vec![hidden]),
            ("post_attention_layernorm.weight", vec![hidden]),
        ] {
            out.push((format!("model.layers.{l}.{part}"), shape));
        }
    }
    out.push(("model.norm.weight".into(), vec![hidden]));
    out.push(("lm_head.weight".into(), vec![vocab, hidden]));
    out
}

/// Write `model.safetensors` (F16) with the given tensors; `seed(name)` picks the bytes.
fn write_safetensors(dir: &Path, file: &str, tensors: &[(String, Vec<usize>, String)]) {
    std::fs::create_dir_all(dir).unwrap();
    let data: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, shape, seed)| fill(seed, 2 * shape.iter().product::<usize>()))
        .collect();
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .zip(&data)
        .map(|((name, shape, _), bytes)| {
            (
                name.as_str(),
                TensorView::new(Dtype::F16, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join(file)).unwrap();
}

/// What a safetensors file holds, read back with the `safetensors` crate: name → (dtype,
/// shape, bytes).
fn read_safetensors(
    path: &Path,
) -> std::collections::BTreeMap<String, (String, Vec<u64>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                (
                    format!("{:?}", view.dtype()),
                    view.shape().iter().map(|&d| d as u64).collect(),
                    view.data().to_vec(),
                ),
            )
        })
        .collect()
}

/// This test's own llama.cpp → Hugging Face name table (written independently of the diff).
fn test_hf_name(gguf: &str) -> String {
    let globals = [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output.weight", "lm_head.weight"),
        ("output_norm.weight", "model.norm.weight"),
    ];
    if let Some((_, h)) = globals.iter().find(|(g, _)| *g == gguf) {
        return h.to_string();
    }
    let rest = gguf.strip_prefix("blk.").unwrap();
    let (n, part) = rest.split_once('.').unwrap();
    let hf = match part {
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        other => panic!("no mapping for {other}"),
    };
    format!("model.layers.{n}.{hf}")
}

fn test_gguf_name(hf: &str) -> String {
    let mut names: Vec<String> = vec![
        "token_embd.weight".into(),
        "output.weight".into(),
        "output_norm.weight".into(),
    ];
    for l in 0..3 {
        for p in [
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
            "attn_norm",
            "ffn_norm",
        ] {
            names.push(format!("blk.{l}.{p}.weight"));
        }
    }
    names.into_iter().find(|g| test_hf_name(g) == hf).unwrap()
}

const GGML_F32: u32 = 0;
const GGML_Q4_K: u32 = 12;

/// Write a GGUF v3 file as llama.cpp lays it out: header, one metadata pair, tensor infos with
/// dims innermost-first, padding to 32, then each tensor's data padded to 32.
fn write_gguf(path: &Path, tensors: &[(String, Vec<u64>, u32, Vec<u8>)]) {
    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend(1u64.to_le_bytes());
    put_str(&mut out, "general.architecture");
    out.extend(8u32.to_le_bytes());
    put_str(&mut out, "llama");
    let mut offset = 0u64;
    for (name, dims, ty, data) in tensors {
        put_str(&mut out, name);
        out.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(ty.to_le_bytes());
        out.extend(offset.to_le_bytes());
        offset = (offset + data.len() as u64).next_multiple_of(32);
    }
    out.resize(out.len().next_multiple_of(32), 0);
    for (_, _, _, data) in tensors {
        out.extend(data);
        out.resize(out.len().next_multiple_of(32), 0);
    }
    std::fs::write(path, out).unwrap();
}

/// Read back a GGUF file's tensor infos (name, dims as stored, ggml type): this test's own
/// parser, for files with string metadata only.
fn read_gguf_infos(path: &Path) -> Vec<(String, Vec<u64>, u32)> {
    let b = std::fs::read(path).unwrap();
    let mut at = 4 + 4;
    let u64_at = |at: &mut usize| {
        let v = u64::from_le_bytes(b[*at..*at + 8].try_into().unwrap());
        *at += 8;
        v
    };
    let u32_at = |at: &mut usize| {
        let v = u32::from_le_bytes(b[*at..*at + 4].try_into().unwrap());
        *at += 4;
        v
    };
    let string_at = |at: &mut usize| {
        let n = u64_at(at) as usize;
        let s = String::from_utf8(b[*at..*at + n].to_vec()).unwrap();
        *at += n;
        s
    };
    let n_tensors = u64_at(&mut at);
    let n_kv = u64_at(&mut at);
    for _ in 0..n_kv {
        string_at(&mut at);
        assert_eq!(u32_at(&mut at), 8, "string metadata only");
        string_at(&mut at);
    }
    (0..n_tensors)
        .map(|_| {
            let name = string_at(&mut at);
            let n_dims = u32_at(&mut at);
            let dims = (0..n_dims).map(|_| u64_at(&mut at)).collect();
            let ty = u32_at(&mut at);
            u64_at(&mut at);
            (name, dims, ty)
        })
        .collect()
}

fn product(shape: &[u64]) -> u128 {
    shape.iter().map(|&d| u128::from(d)).product()
}

fn as_u128(v: &Value) -> u128 {
    v.as_u64().map(u128::from).unwrap_or_else(|| panic!("{v}"))
}

/// A fresh ledger with actor `acme`; returns (data dir, key file).
fn acme_ledger(t: &Path) -> (String, String) {
    let data = t.join("ledger");
    let data_s = data.to_str().unwrap().to_string();
    assert!(shoulders(&["init", "--data-dir", &data_s]).status.success());
    let key = t.join("acme.key");
    let key_s = key.to_str().unwrap().to_string();
    ok_json(shoulders(&["key", "new", "--out", &key_s]));
    std::fs::write(t.join("actor.json"), r#"{"handle":"acme","name":"Acme"}"#).unwrap();
    ok_json(shoulders(&[
        "submit",
        "--data-dir",
        &data_s,
        "--key",
        &key_s,
        "--kind",
        "actor.register",
        "--body",
        t.join("actor.json").to_str().unwrap(),
    ]));
    (data_s, key_s)
}

fn import(data: &str, key: &str, dir: &Path, parent: &str, relation: &str) -> Value {
    ok_json(shoulders(&[
        "model",
        "import",
        "--data-dir",
        data,
        "--key",
        key,
        dir.to_str().unwrap(),
        "--parent",
        parent,
        "--relation",
        relation,
    ]))
}

fn diff(data: &str, parent: &str, child: &str) -> Value {
    ok_json(shoulders(&[
        "model",
        "diff",
        "--data-dir",
        data,
        parent,
        child,
    ]))
}

#[test]
fn diffs_of_a_finetune_a_gguf_quantisation_and_a_peft_adapter_match_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (data, key) = acme_ledger(t);

    // The base, imported without a parent.
    let base_dir = t.join("llama-base");
    let base: Vec<(String, Vec<usize>, String)> = llama_tensors()
        .into_iter()
        .map(|(n, s)| (n.clone(), s, format!("base:{n}")))
        .collect();
    write_safetensors(&base_dir, "model.safetensors", &base);
    ok_json(shoulders(&[
        "model",
        "import",
        "--data-dir",
        &data,
        "--key",
        &key,
        base_dir.to_str().unwrap(),
    ]));
    let parent = read_safetensors(&base_dir.join("model.safetensors"));
    let parent_params: u128 = parent.values().map(|(_, s, _)| product(s)).sum();

    // 1. A fine-tune: new values in layer 1 and in the embedding, lm_head dropped, a
    //    classification head added.
    let tuned_dir = t.join("llama-tuned");
    let mut tuned = base.clone();
    for (name, _, seed) in &mut tuned {
        if name.starts_with("model.layers.1.") || name == "model.embed_tokens.weight" {
            *seed = format!("tuned:{name}");
        }
    }
    tuned.retain(|(n, _, _)| n != "lm_head.weight");
    tuned.push(("score.weight".into(), vec![2, 8], "score".into()));
    write_safetensors(&tuned_dir, "model.safetensors", &tuned);
    import(&data, &key, &tuned_dir, "acme/llama-base", "finetune");
    let d = diff(&data, "acme/llama-base", "acme/llama-tuned");

    let child = read_safetensors(&tuned_dir.join("model.safetensors"));
    let (mut identical, mut changed, mut removed, mut changed_params) = (0u64, 0u64, 0u64, 0u128);
    let mut changed_by_layer: std::collections::BTreeMap<String, u128> = Default::default();
    for (name, p) in &parent {
        match child.get(name) {
            Some(c) if c == p => identical += 1,
            Some(_) => {
                changed += 1;
                changed_params += product(&p.1);
                let group = name
                    .strip_prefix("model.layers.")
                    .map_or("other".to_string(), |r| {
                        r.split('.').next().unwrap().to_string()
                    });
                *changed_by_layer.entry(group).or_default() += product(&p.1);
            }
            None => removed += 1,
        }
    }
    let added = child.keys().filter(|n| !parent.contains_key(*n)).count() as u64;
    let added_params: u128 = child
        .iter()
        .filter(|(n, _)| !parent.contains_key(*n))
        .map(|(_, c)| product(&c.1))
        .sum();
    assert_eq!((identical, changed, removed, added), (19, 10, 1, 1));
    let totals = &d["totals"];
    assert_eq!(totals["tensors"]["identical"], identical);
    assert_eq!(totals["tensors"]["changed"], changed);
    assert_eq!(totals["tensors"]["removed"], removed);
    assert_eq!(totals["tensors"]["added"], added);
    assert_eq!(as_u128(&totals["parent_params"]), parent_params);
    assert_eq!(as_u128(&totals["changed_params"]), changed_params);
    assert_eq!(as_u128(&totals["params"]["added"]), added_params);
    assert_eq!(
        u128::from(totals["changed_ppm"].as_u64().unwrap()),
        changed_params * 1_000_000 / parent_params
    );
    for g in d["layers"].as_array().unwrap() {
        let key = g["layer"]
            .as_u64()
            .map_or("other".to_string(), |l| l.to_string());
        assert_eq!(
            as_u128(&g["params"]["changed"]),
            changed_by_layer.get(&key).copied().unwrap_or(0),
            "{key}"
        );
    }
    assert_eq!(
        d["summary"],
        format!(
            "finetune · {} of parameters changed, 1 tensor added, 1 tensor removed",
            totals["changed_percent"].as_str().unwrap()
        )
    );

    // 2. A GGUF quantisation of the base: llama.cpp names, dims innermost-first, Q4_K
    //    matrices and F32 norms.
    let q_dir = t.join("llama-q4");
    std::fs::create_dir_all(&q_dir).unwrap();
    let gguf_tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)> = llama_tensors()
        .into_iter()
        .map(|(hf, shape)| {
            let gguf = test_gguf_name(&hf);
            let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
            let ty = if shape.len() == 1 {
                GGML_F32
            } else {
                GGML_Q4_K
            };
            let data = fill(
                &format!("q4:{gguf}"),
                18 * shape.iter().product::<usize>() / 32 + 1,
            );
            (gguf, dims, ty, data)
        })
        .collect();
    write_gguf(&q_dir.join("model-Q4_K_M.gguf"), &gguf_tensors);
    let out = import(&data, &key, &q_dir, "acme/llama-base", "quantized");
    assert_eq!(out["tensors"], 30);
    let d = diff(&data, "acme/llama-base", "acme/llama-q4");

    let infos = read_gguf_infos(&q_dir.join("model-Q4_K_M.gguf"));
    let (mut matched, mut retyped, mut reshaped) = (0u64, 0u64, 0u64);
    let mut child_params = 0u128;
    for (name, dims, ty) in &infos {
        let shape: Vec<u64> = dims.iter().rev().copied().collect();
        child_params += product(&shape);
        let (dtype, parent_shape, _) = &parent[&test_hf_name(name)];
        matched += 1;
        let ty_name = if *ty == GGML_F32 { "F32" } else { "Q4_K" };
        retyped += u64::from(ty_name != dtype);
        reshaped += u64::from(&shape != parent_shape);
    }
    assert_eq!((matched, retyped, reshaped), (30, 30, 0));
    let q = &d["quantization"];
    assert_eq!(
        (&q["matched"], &q["dtype_changed"], &q["shape_changed"]),
        (&json(matched), &json(retyped), &json(reshaped))
    );
    let q4 = infos.iter().filter(|i| i.2 == GGML_Q4_K).count();
    assert_eq!((q4, infos.len() - q4), (23, 7));
    assert_eq!(q["dtypes"]["Q4_K"], q4);
    assert_eq!(q["dtypes"]["F32"], infos.len() - q4);
    assert_eq!(d["totals"]["tensors"]["changed"], 30);
    assert_eq!(
        (
            &d["totals"]["tensors"]["added"],
            &d["totals"]["tensors"]["removed"]
        ),
        (&json(0), &json(0))
    );
    assert_eq!(as_u128(&d["totals"]["child_params"]), child_params);
    assert_eq!(child_params, parent_params);
    assert_eq!(
        d["summary"],
        "quantized · all 30 tensors re-typed (Q4_K, F32), no shape changed"
    );
    assert!(d["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["matched_by"] == "mapping"
            && t["changes"] == serde_json::json!(["hash", "dtype"])));

    // 3. A PEFT LoRA adapter on q_proj and v_proj of every layer.
    let lora_dir = t.join("llama-lora");
    let rank = 2usize;
    let mut lora: Vec<(String, Vec<usize>, String)> = Vec::new();
    for l in 0..3 {
        for (proj, out_dim) in [("q_proj", 8usize), ("v_proj", 4)] {
            let m = format!("base_model.model.model.layers.{l}.self_attn.{proj}");
            lora.push((
                format!("{m}.lora_A.weight"),
                vec![rank, 8],
                format!("{m}.A"),
            ));
            lora.push((
                format!("{m}.lora_B.weight"),
                vec![out_dim, rank],
                format!("{m}.B"),
            ));
        }
    }
    write_safetensors(&lora_dir, "adapter_model.safetensors", &lora);
    std::fs::write(
        lora_dir.join("adapter_config.json"),
        r#"{"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "acme/llama-base",
            "target_modules": ["v_proj", "q_proj"], "r": 2, "lora_alpha": 16, "lora_dropout": 0.05}"#,
    )
    .unwrap();
    let out = import(&data, &key, &lora_dir, "acme/llama-base", "adapter");
    assert_eq!(
        out["adapter"],
        serde_json::json!({"peft_type": "LORA", "target_modules": ["q_proj", "v_proj"], "r": 2, "lora_alpha": 16})
    );
    let d = diff(&data, "acme/llama-base", "acme/llama-lora");

    let adapter = read_safetensors(&lora_dir.join("adapter_model.safetensors"));
    let adapter_params: u128 = adapter.values().map(|(_, s, _)| product(s)).sum();
    let mut modules = std::collections::BTreeSet::new();
    for name in adapter.keys() {
        let base = name.strip_prefix("base_model.model.").unwrap();
        let cut = base.find(".lora_").unwrap();
        modules.insert(base[..cut].to_string());
    }
    let targeted: u128 = modules
        .iter()
        .map(|m| product(&parent[&format!("{m}.weight")].1))
        .sum();
    let a = &d["adapter"];
    assert_eq!(a["tensors"], adapter.len());
    assert_eq!(as_u128(&a["params"]), adapter_params);
    assert_eq!(a["modules"].as_array().unwrap().len(), modules.len());
    assert_eq!(as_u128(&a["targeted_parent_params"]), targeted);
    assert_eq!(
        u128::from(a["targeted_ppm"].as_u64().unwrap()),
        targeted * 1_000_000 / parent_params
    );
    for m in a["modules"].as_array().unwrap() {
        assert!(modules.contains(m["module"].as_str().unwrap()), "{m}");
        assert_eq!(
            m["parent_tensor"],
            format!("{}.weight", m["module"].as_str().unwrap())
        );
    }
    assert_eq!(a["config"], out["adapter"]);
    assert_eq!(d["totals"]["tensors"]["added"], adapter.len());
    assert_eq!(d["totals"]["tensors"]["inherited"], parent.len());
    assert_eq!(d["totals"]["tensors"]["removed"], 0);
    assert_eq!(
        d["summary"],
        format!(
            "adapter · {adapter_params} adapter parameters on {} modules",
            modules.len()
        )
    );

    // Unknown models are the usual not-found error.
    let out = shoulders(&[
        "model",
        "diff",
        "--data-dir",
        &data,
        "acme/llama-base",
        "acme/nope",
    ]);
    assert!(
        stderr(&out).starts_with("error[E_NOT_FOUND]"),
        "{}",
        stderr(&out)
    );

    // A malformed adapter_config.json is refused before anything is signed.
    let bad_dir = t.join("bad-lora");
    write_safetensors(&bad_dir, "adapter_model.safetensors", &lora);
    std::fs::write(
        bad_dir.join("adapter_config.json"),
        r#"{"target_modules": 7}"#,
    )
    .unwrap();
    let out = shoulders(&[
        "model",
        "import",
        "--data-dir",
        &data,
        "--key",
        &key,
        bad_dir.to_str().unwrap(),
        "--parent",
        "acme/llama-base",
        "--relation",
        "adapter",
    ]);
    assert!(
        stderr(&out).starts_with("error[E_ADAPTER_CONFIG_INVALID]"),
        "{}",
        stderr(&out)
    );
}

fn json(n: u64) -> Value {
    Value::from(n)
}

/// git's blob id (SHA-1 of `"blob <len>\0"` and the content): the name a Hugging Face cache
/// gives a file kept in git itself.
fn git_blob_id(content: &[u8]) -> String {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    hex::encode(h.finalize())
}

/// A Hugging Face hub cache under `t/hub` holding `acme/tiny` at `commit` (and `refs/main`
/// naming it), laid out as `huggingface_hub` writes it: the safetensors file an LFS blob named
/// by its SHA-256, the config and card git blobs named by their git blob ids, each linked from
/// the snapshot. Returns (cache, snapshot).
fn hf_cache(t: &Path, commit: &str, seed: u8) -> (std::path::PathBuf, std::path::PathBuf) {
    use sha2::Digest;
    let plain = t.join(format!("plain-{seed}"));
    write_model(&plain, seed, Some("---\nlicense: mit\n---\n# Tiny\n"));
    let cache = t.join("hub");
    let entry = cache.join("models--acme--tiny");
    let snapshot = entry.join("snapshots").join(commit);
    for dir in [entry.join("blobs"), entry.join("refs"), snapshot.clone()] {
        std::fs::create_dir_all(dir).unwrap();
    }
    for file in ["model.safetensors", "config.json", "README.md"] {
        let bytes = std::fs::read(plain.join(file)).unwrap();
        let blob = if file.ends_with(".safetensors") {
            hex::encode(sha2::Sha256::digest(&bytes))
        } else {
            git_blob_id(&bytes)
        };
        std::fs::write(entry.join("blobs").join(&blob), &bytes).unwrap();
        let link = snapshot.join(file);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), link).unwrap();
    }
    std::fs::write(entry.join("refs/main"), commit).unwrap();
    (cache, snapshot)
}

/// Lines of the ledger's export: grows by one per appended record.
fn log_lines(t: &Path, data: &str) -> usize {
    let out = t.join("export.jsonl");
    let _ = std::fs::remove_file(&out);
    let run = shoulders(&["export", "--data-dir", data, "--out", out.to_str().unwrap()]);
    assert!(run.status.success(), "{}", stderr(&run));
    std::fs::read_to_string(out).unwrap().lines().count()
}

const HF_COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const HF_PR_COMMIT: &str = "fedcba9876543210fedcba9876543210fedcba98";

#[test]
fn a_hugging_face_cache_snapshot_imports_with_its_repo_and_revision() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (data, key) = acme_ledger(t);
    let (cache, snapshot) = hf_cache(t, HF_COMMIT, 3);
    let cache_s = cache.to_str().unwrap();

    // Given as a directory: recognised by its layout.
    let out = ok_json(shoulders(&[
        "model",
        "import",
        "--data-dir",
        &data,
        "--key",
        &key,
        snapshot.to_str().unwrap(),
    ]));
    assert_eq!(out["model_id"], "acme/tiny", "named after the repository");
    assert_eq!(out["files"], 3);
    assert_eq!(
        out["card_license"], "mit",
        "the card is read through its link"
    );
    let source =
        serde_json::json!({"hub": "huggingface", "repo": "acme/tiny", "revision": HF_COMMIT});
    assert_eq!(out["source"], source);
    let shown = ok_json(shoulders(&[
        "show",
        "--data-dir",
        &data,
        "model",
        "acme/tiny",
    ]));
    assert_eq!(shown["source"], source, "recorded in the registration");
    assert_eq!(shown["name"], "tiny");
    // The hashes are of the files' contents, as for a plain copy of them.
    let plain = t.join("plain-3");
    let check = ok_json(shoulders(&[
        "model",
        "check",
        "--data-dir",
        &data,
        "acme/tiny",
        plain.to_str().unwrap(),
    ]));
    assert_eq!(check["matches"], true, "{check}");
    // `model check` reads the snapshot itself the same way.
    let check = ok_json(shoulders(&[
        "model",
        "check",
        "--data-dir",
        &data,
        "acme/tiny",
        snapshot.to_str().unwrap(),
    ]));
    assert_eq!(check["matches"], true, "{check}");
    let cdx = ok_json(shoulders(&[
        "model",
        "export",
        "--data-dir",
        &data,
        "acme/tiny",
        "--format",
        "cyclonedx",
    ]));
    let url = format!("https://huggingface.co/acme/tiny/tree/{HF_COMMIT}");
    assert!(cdx.to_string().contains(&url), "{cdx}");

    // By --hf-cache and --repo: `main` resolved through refs/main.
    let by_repo = |model_id: &str, revision: Option<&str>| {
        let mut args = vec![
            "model",
            "import",
            "--data-dir",
            &data,
            "--key",
            &key,
            "--hf-cache",
            cache_s,
            "--repo",
            "acme/tiny",
            "--model-id",
            model_id,
        ];
        if let Some(r) = revision {
            args.extend(["--revision", r]);
        }
        shoulders(&args)
    };
    let out = ok_json(by_repo("acme/tiny-main", None));
    assert_eq!(out["source"]["revision"], HF_COMMIT);
    let out = ok_json(by_repo("acme/tiny-refs-main", Some("refs/main")));
    assert_eq!(out["source"]["revision"], HF_COMMIT);

    // A second snapshot reached through a pull-request ref, with other weights.
    let (_, second) = hf_cache(t, HF_PR_COMMIT, 5);
    std::fs::write(cache.join("models--acme--tiny/refs/main"), HF_COMMIT).unwrap();
    std::fs::create_dir_all(cache.join("models--acme--tiny/refs/pr")).unwrap();
    std::fs::write(cache.join("models--acme--tiny/refs/pr/1"), HF_PR_COMMIT).unwrap();
    let out = ok_json(by_repo("acme/tiny-pr", Some("refs/pr/1")));
    assert_eq!(out["source"]["revision"], HF_PR_COMMIT);
    assert_eq!(
        second,
        cache
            .join("models--acme--tiny/snapshots")
            .join(HF_PR_COMMIT)
    );
    let unknown = by_repo("acme/tiny-dev", Some("dev"));
    assert!(
        stderr(&unknown).starts_with("error[E_HF_CACHE_INVALID]"),
        "{}",
        stderr(&unknown)
    );
    // A directory and --hf-cache together is a usage error (clap's).
    let both = shoulders(&[
        "model",
        "import",
        "--data-dir",
        &data,
        "--key",
        &key,
        snapshot.to_str().unwrap(),
        "--hf-cache",
        cache_s,
        "--repo",
        "acme/tiny",
    ]);
    assert!(!both.status.success());
}

#[test]
fn a_tampered_or_escaping_hugging_face_snapshot_is_refused_and_nothing_appended() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (data, key) = acme_ledger(t);
    let (_, snapshot) = hf_cache(t, HF_COMMIT, 3);
    let import = || {
        shoulders(&[
            "model",
            "import",
            "--data-dir",
            &data,
            "--key",
            &key,
            snapshot.to_str().unwrap(),
        ])
    };
    let before = log_lines(t, &data);

    // One byte of the weights blob changed: its content no longer hashes to its name.
    let blob = std::fs::canonicalize(snapshot.join("model.safetensors")).unwrap();
    let original = std::fs::read(&blob).unwrap();
    let mut changed = original.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0x40;
    std::fs::write(&blob, &changed).unwrap();
    let out = import();
    let err = stderr(&out);
    assert!(
        err.starts_with("error[E_HF_BLOB_HASH_MISMATCH]") && err.contains("model.safetensors"),
        "{err}"
    );
    assert_eq!(log_lines(t, &data), before, "nothing appended");
    std::fs::write(&blob, &original).unwrap();

    // A link out of the entry's blobs/.
    let outside = t.join("outside.bin");
    std::fs::write(&outside, b"elsewhere").unwrap();
    std::os::unix::fs::symlink(&outside, snapshot.join("extra.bin")).unwrap();
    let out = import();
    let err = stderr(&out);
    assert!(
        err.starts_with("error[E_HF_CACHE_LINK_OUTSIDE]") && err.contains("extra.bin"),
        "{err}"
    );
    assert_eq!(log_lines(t, &data), before, "nothing appended");
    std::fs::remove_file(snapshot.join("extra.bin")).unwrap();

    // Restored, it imports.
    ok_json(import());
    assert_eq!(log_lines(t, &data), before + 1);
}
