//! `shoulders model import` with a training run, end to end: the configuration goes to the
//! content store and only its hash into the record; `show model` and the standard exports carry
//! the run; a bad configuration, an unknown credited actor and a configuration the ledger never
//! received are refused with nothing appended.

mod common;

use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;

struct Fx {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
}

impl Fx {
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.root.join(name)
    }
    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
    fn run(&self, args: &[&str]) -> std::process::Output {
        shoulders(args)
    }
    fn size(&self) -> Value {
        let out = self.run(&["checkpoint", "--data-dir", &self.s("ledger")]);
        Value::String(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A ledger with actors dave (the key that imports) and alice.
fn setup() -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let fx = Fx {
        root: tmp.path().to_path_buf(),
        _tmp: tmp,
    };
    assert!(fx
        .run(&["init", "--data-dir", &fx.s("ledger")])
        .status
        .success());
    for who in ["dave", "alice"] {
        ok_json(fx.run(&["key", "new", "--out", &fx.s(&format!("{who}.key"))]));
        std::fs::write(
            fx.path(&format!("{who}.json")),
            json!({"handle": who, "name": who}).to_string(),
        )
        .unwrap();
        ok_json(fx.run(&[
            "submit",
            "--data-dir",
            &fx.s("ledger"),
            "--key",
            &fx.s(&format!("{who}.key")),
            "--kind",
            "actor.register",
            "--body",
            &fx.s(&format!("{who}.json")),
        ]));
    }
    // A minimal model directory: one non-weights file is enough.
    std::fs::create_dir_all(fx.path("tiny")).unwrap();
    std::fs::write(fx.path("tiny/config.json"), b"{\"hidden_size\": 8}").unwrap();
    fx
}

fn import(fx: &Fx, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "model".to_string(),
        "import".into(),
        "--data-dir".into(),
        fx.s("ledger"),
        "--key".into(),
        fx.s("dave.key"),
        fx.s("tiny"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    shoulders(&args)
}

fn expect_code(out: &std::process::Output, code: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert!(
        stderr(out).starts_with(&format!("error[{code}]")),
        "{}",
        stderr(out)
    );
}

fn blob(ledger: &Path, hash: &str) -> std::path::PathBuf {
    ledger
        .join("content/sha256")
        .join(hash.strip_prefix("sha256:").unwrap())
}

#[test]
fn import_records_the_training_run_and_stores_its_configuration() {
    let fx = setup();
    let config =
        "{\"learning_rate\": 0.0002, \"epochs\": 3, \"scheduler\": {\"type\": \"cosine\"}}\n";
    std::fs::write(fx.path("train.json"), config).unwrap();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let out = ok_json(import(
        &fx,
        &[
            "--model-id",
            "dave/tiny",
            "--training-config",
            &fx.s("train.json"),
            "--code-repo",
            "https://git.example/dave/train",
            "--code-commit",
            commit,
            "--framework",
            "PyTorch",
            "--framework-version",
            "2.4",
            "--credit",
            "alice:evaluator",
            "--credit",
            "dave:trainer",
            "--hardware",
            "1x A100",
            "--accelerator-hours",
            "6",
            "--energy-kwh",
            "2.4",
            "--region",
            "eu-west-1",
        ],
    ));
    assert_eq!(out["model_id"], "dave/tiny");

    // The record holds the hash of the exact file bytes; the content store holds the bytes.
    let hash = format!("sha256:{}", hex::encode(Sha256::digest(config.as_bytes())));
    assert_eq!(
        std::fs::read_to_string(blob(&fx.path("ledger"), &hash)).unwrap(),
        config
    );
    let model = ok_json(fx.run(&["show", "--data-dir", &fx.s("ledger"), "model", "dave/tiny"]));
    assert_eq!(
        model["training"],
        json!({
            "config_hash": hash,
            "code": {"repository": "https://git.example/dave/train", "commit": commit},
            "framework": {"name": "PyTorch", "version": "2.4"},
            "credits": [{"actor": "alice", "role": "evaluator"}, {"actor": "dave", "role": "trainer"}],
            "compute": {"hardware": "1x A100", "accelerator_hours": 6, "energy_wh": 2400, "region": "eu-west-1"}
        })
    );
    // The standard exports carry it, hyperparameters included (read from the content store).
    let out = fx.run(&[
        "model",
        "export",
        "--data-dir",
        &fx.s("ledger"),
        "dave/tiny",
        "--format",
        "spdx",
    ]);
    let spdx: Value = serde_json::from_slice(&ok_out(&out)).unwrap();
    let node = spdx["@graph"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["spdxId"] == "urn:shoulders:model:dave/tiny")
        .unwrap();
    assert_eq!(
        node["ai_hyperparameter"],
        json!([{"type": "DictionaryEntry", "key": "epochs", "value": "3"},
               {"type": "DictionaryEntry", "key": "learning_rate", "value": "0.0002"}])
    );
    assert_eq!(
        node["ai_energyConsumption"]["ai_trainingEnergyConsumption"][0]["ai_energyQuantity"],
        "2.4"
    );
    let out = fx.run(&[
        "model",
        "export",
        "--data-dir",
        &fx.s("ledger"),
        "dave/tiny",
        "--format",
        "cyclonedx",
    ]);
    let bom: Value = serde_json::from_slice(&ok_out(&out)).unwrap();
    let props = bom["metadata"]["component"]["modelCard"]["properties"]
        .as_array()
        .unwrap();
    assert!(props.contains(&json!({"name": "shoulders:hyperparameter:epochs", "value": "3"})));
    assert!(
        props.contains(&json!({"name": "shoulders:training.credit", "value": "alice:evaluator"}))
    );
    // Without the content store's copy the export still works, less the hyperparameters.
    std::fs::remove_file(blob(&fx.path("ledger"), &hash)).unwrap();
    let out = fx.run(&[
        "model",
        "export",
        "--data-dir",
        &fx.s("ledger"),
        "dave/tiny",
        "--format",
        "spdx",
    ]);
    let spdx: Value = serde_json::from_slice(&ok_out(&out)).unwrap();
    assert!(!spdx.to_string().contains("ai_hyperparameter"));
}

fn ok_out(out: &std::process::Output) -> Vec<u8> {
    assert!(out.status.success(), "{}", stderr(out));
    out.stdout.clone()
}

#[test]
fn bad_configurations_and_credits_are_refused_before_anything_is_appended() {
    let fx = setup();
    let before = fx.size();
    for (name, text) in [
        ("list.json", "[1, 2]"),
        ("broken.json", "{\"epochs\": "),
        ("number.json", "7"),
    ] {
        std::fs::write(fx.path(name), text).unwrap();
        let out = import(&fx, &["--training-config", &fx.s(name)]);
        expect_code(&out, "E_TRAINING_CONFIG_INVALID");
    }
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(1 << 20));
    std::fs::write(fx.path("big.json"), big).unwrap();
    expect_code(
        &import(&fx, &["--training-config", &fx.s("big.json")]),
        "E_TRAINING_CONFIG_INVALID",
    );
    // Nothing was stored for refused files.
    assert!(
        !fx.path("ledger/content/sha256").exists()
            || std::fs::read_dir(fx.path("ledger/content/sha256"))
                .unwrap()
                .count()
                == 0
    );
    expect_code(
        &import(&fx, &["--credit", "nobody:trainer"]),
        "E_ACTOR_UNKNOWN",
    );
    let out = import(&fx, &["--credit", "alice:investor"]);
    expect_code(&out, "E_USAGE");
    // Energy with more than watt-hour precision is a usage error (clap: exit 2).
    let out = import(&fx, &["--energy-kwh", "0.0005"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Flags that go in pairs.
    let out = import(&fx, &["--framework", "PyTorch"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = import(&fx, &["--code-repo", "https://git.example/x"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    expect_code(
        &import(
            &fx,
            &[
                "--code-repo",
                "https://git.example/x",
                "--code-commit",
                "abc123",
            ],
        ),
        "E_FIELD_INVALID",
    );
    assert_eq!(fx.size(), before, "nothing appended");
}

#[test]
fn a_registration_naming_a_configuration_never_received_is_refused() {
    let fx = setup();
    let hash = format!("sha256:{}", hex::encode(Sha256::digest(b"{\"epochs\": 3}")));
    std::fs::write(
        fx.path("body.json"),
        json!({"model_id": "dave/remote", "name": "Remote",
               "training": {"config_hash": hash}})
        .to_string(),
    )
    .unwrap();
    let before = fx.size();
    let out = fx.run(&[
        "submit",
        "--data-dir",
        &fx.s("ledger"),
        "--key",
        &fx.s("dave.key"),
        "--kind",
        "model.register",
        "--body",
        &fx.s("body.json"),
    ]);
    expect_code(&out, "E_CONTENT_MISSING");
    assert!(
        stderr(&out).contains("--training-config"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fx.size(), before);
}
