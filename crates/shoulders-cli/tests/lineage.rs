//! `shoulders lineage` through the binary, on the demo ledger.

mod common;

use common::*;

use serde_json::Value;

#[test]
fn lineage_and_standard_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let data = data.to_str().unwrap();
    assert!(shoulders(&["demo", "--no-serve", "--data-dir", data])
        .status
        .success());

    let out = shoulders(&["lineage", "--data-dir", data, "dave/verse-instruct-q4"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["model"]["model_id"], "dave/verse-instruct-q4");
    let ancestors: Vec<(&str, u64)> = p["ancestors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["model_id"].as_str().unwrap(),
                a["depth"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ancestors,
        vec![("dave/verse-instruct", 1), ("carol-lab/verse-base", 2)]
    );
    let datasets: Vec<(&str, u64)> = p["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["dataset_id"].as_str().unwrap(),
                d["contributions"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(datasets.contains(&("dave/instructions", 2)), "{datasets:?}");
    assert!(
        datasets.contains(&("carol-lab/public-domain-verse", 7)),
        "{datasets:?}"
    );
    let edges: Vec<(&str, &str, &str)> = p["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["child"].as_str().unwrap(),
                e["parent"].as_str().unwrap(),
                e["relation"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        edges,
        vec![
            ("dave/verse-instruct-q4", "dave/verse-instruct", "quantized"),
            ("dave/verse-instruct", "carol-lab/verse-base", "finetune")
        ]
    );
    let base = shoulders(&["lineage", "--data-dir", data, "carol-lab/verse-base"]);
    let base: Value = serde_json::from_slice(&base.stdout).unwrap();
    let descendants: Vec<&str> = base["descendants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["model_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        descendants,
        vec![
            "dave/verse-instruct",
            "alice/verse-adapter",
            "dave/verse-instruct-q4"
        ]
    );

    let dot = String::from_utf8(
        shoulders(&[
            "lineage",
            "--data-dir",
            data,
            "dave/verse-instruct-q4",
            "--format",
            "dot",
        ])
        .stdout,
    )
    .unwrap();
    assert!(dot.starts_with("digraph"), "{dot}");
    assert!(
        dot.contains("\"model:dave/verse-instruct\" -> \"model:carol-lab/verse-base\""),
        "{dot}"
    );
    let mermaid = String::from_utf8(
        shoulders(&[
            "lineage",
            "--data-dir",
            data,
            "dave/verse-instruct-q4",
            "--format",
            "mermaid",
        ])
        .stdout,
    )
    .unwrap();
    assert!(mermaid.starts_with("flowchart BT"), "{mermaid}");
    assert!(mermaid.contains("\"carol-lab/verse-base\""), "{mermaid}");

    // Standard exports carry the licence recorded on the ledger.
    let card = String::from_utf8(
        shoulders(&[
            "model",
            "export",
            "--data-dir",
            data,
            "dave/verse-instruct",
            "--format",
            "hf-card",
        ])
        .stdout,
    )
    .unwrap();
    assert!(
        card.starts_with("---\n") && card.contains("license: cc-by-nc-4.0"),
        "{card}"
    );
    assert!(card.contains("carol-lab/verse-base"), "{card}");
    let spdx: Value = serde_json::from_slice(
        &shoulders(&[
            "model",
            "export",
            "--data-dir",
            data,
            "dave/verse-instruct",
            "--format",
            "spdx",
        ])
        .stdout,
    )
    .unwrap();
    assert!(
        spdx["@context"].as_str().unwrap().contains("spdx.org"),
        "{spdx}"
    );
    assert!(spdx.to_string().contains("CC-BY-NC-4.0"));
    let bom: Value = serde_json::from_slice(
        &shoulders(&[
            "model",
            "export",
            "--data-dir",
            data,
            "dave/verse-instruct-q4",
            "--format",
            "cyclonedx",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(bom["specVersion"], "1.6");
    assert_eq!(
        bom["metadata"]["component"]["type"],
        "machine-learning-model"
    );
    let again: Value = serde_json::from_slice(
        &shoulders(&[
            "model",
            "export",
            "--data-dir",
            data,
            "dave/verse-instruct-q4",
            "--format",
            "cyclonedx",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(bom, again, "exports are deterministic");
    let out = shoulders(&[
        "model",
        "export",
        "--data-dir",
        data,
        "nobody/nothing",
        "--format",
        "spdx",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error[E_NOT_FOUND]"));

    let out = shoulders(&["lineage", "--data-dir", data, "nobody/nothing"]);
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error[E_NOT_FOUND]"));
    assert_eq!(
        shoulders(&[
            "lineage",
            "--data-dir",
            data,
            "dave/verse-instruct-q4",
            "--format",
            "yaml"
        ])
        .status
        .code(),
        Some(2)
    );
}
