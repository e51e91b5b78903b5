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
