//! Hashing generated model directories: per-tensor hashes, change detection, bad files.

use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest, Sha256};
use shoulders_artifacts::{compare, hash_safetensors, scan_dir, Difference};
use std::collections::HashMap;
use std::path::Path;

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn tensor_bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

/// A tiny model: two F32 tensors and one BF16 tensor, a card with front matter and a config.
/// The tiny model's three tensors as safetensors views: F32 [2,3], F32 [8], BF16 [2,2].
fn views(tensors: &[(String, Vec<u8>)]) -> Vec<(String, TensorView<'_>)> {
    let layout = [
        (Dtype::F32, vec![2, 3]),
        (Dtype::F32, vec![8]),
        (Dtype::BF16, vec![2, 2]),
    ];
    tensors
        .iter()
        .zip(layout)
        .map(|((name, bytes), (dtype, shape))| {
            (name.clone(), TensorView::new(dtype, shape, bytes).unwrap())
        })
        .collect()
}

fn write_model(dir: &Path) -> Vec<(String, Vec<u8>)> {
    std::fs::create_dir_all(dir).unwrap();
    let tensors = vec![
        ("embed.weight".to_string(), tensor_bytes(1, 4 * 6)),
        ("layers.0.mlp.weight".to_string(), tensor_bytes(2, 4 * 8)),
        ("lm_head.weight".to_string(), tensor_bytes(3, 2 * 4)),
    ];
    let views = views(&tensors);
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(meta), &dir.join("model.safetensors")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"architectures":["TinyForCausalLM"],"hidden_size":3}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("README.md"),
        "---\nlicense: apache-2.0\nbase_model: acme/base\nbase_model_relation: finetune\ndatasets:\n- acme/verse\n---\n# Tiny\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::write(dir.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    tensors
}

fn no_progress() -> impl FnMut(u64) {
    |_| {}
}

#[test]
fn tensors_and_files_are_hashed_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let tensors = write_model(tmp.path());
    let path = tmp.path().join("model.safetensors");
    let mut seen = 0u64;
    let mut progress = |n: u64| seen += n;
    let artifact = hash_safetensors(
        &path,
        "model.safetensors",
        &mut (&mut progress as &mut dyn FnMut(u64)),
    )
    .unwrap();
    let file_bytes = std::fs::read(&path).unwrap();
    assert_eq!(artifact.sha256, sha(&file_bytes));
    assert_eq!(artifact.size_bytes, file_bytes.len() as u64);
    assert_eq!(
        seen,
        file_bytes.len() as u64,
        "progress covers every byte once"
    );
    let names: Vec<&str> = artifact.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["embed.weight", "layers.0.mlp.weight", "lm_head.weight"]
    );
    for (t, (name, bytes)) in artifact.tensors.iter().zip(&tensors) {
        assert_eq!(&t.name, name);
        assert_eq!(t.sha256, sha(bytes), "{name}");
    }
    assert_eq!(artifact.tensors[2].dtype, "BF16");
    assert_eq!(artifact.tensors[0].shape, vec![2, 3]);

    let mut p = no_progress();
    let dir = scan_dir(tmp.path(), &mut (&mut p as &mut dyn FnMut(u64))).unwrap();
    let paths: Vec<&str> = dir.artifacts.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(
        paths,
        ["README.md", "config.json", "model.safetensors"],
        "sorted, hidden entries skipped"
    );
    assert_eq!(
        dir.artifacts[1].sha256,
        sha(&std::fs::read(tmp.path().join("config.json")).unwrap())
    );
    assert!(dir.artifacts[1].tensors.is_empty());
    let card = dir.card.unwrap();
    assert_eq!(card.base_models, vec!["acme/base"]);
    assert_eq!(card.datasets, vec!["acme/verse"]);
    assert_eq!(dir.config.unwrap()["hidden_size"], 3);
}

#[test]
fn check_names_exactly_the_changed_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    write_model(tmp.path());
    let mut p = no_progress();
    let registered = scan_dir(tmp.path(), &mut (&mut p as &mut dyn FnMut(u64)))
        .unwrap()
        .artifacts;
    let same = scan_dir(tmp.path(), &mut (&mut p as &mut dyn FnMut(u64)))
        .unwrap()
        .artifacts;
    let report = compare(&registered, &same);
    assert!(report.matches);
    assert_eq!((report.files_checked, report.tensors_checked), (3, 3));

    // Flip one byte inside layers.0.mlp.weight (same size, same header).
    let path = tmp.path().join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let at = 8 + header_len + 4 * 6 + 5; // second tensor, sixth byte
    bytes[at] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let changed = scan_dir(tmp.path(), &mut (&mut p as &mut dyn FnMut(u64)))
        .unwrap()
        .artifacts;
    let report = compare(&registered, &changed);
    assert!(!report.matches);
    assert_eq!(report.differences.len(), 1, "{:?}", report.differences);
    match &report.differences[0] {
        Difference::ChangedTensor { path, tensor, .. } => {
            assert_eq!(
                (path.as_str(), tensor.as_str()),
                ("model.safetensors", "layers.0.mlp.weight")
            )
        }
        other => panic!("expected a changed tensor, got {other:?}"),
    }

    // Files added and removed are named too.
    std::fs::write(tmp.path().join("extra.bin"), b"x").unwrap();
    std::fs::remove_file(tmp.path().join("config.json")).unwrap();
    let report = compare(
        &registered,
        &scan_dir(tmp.path(), &mut (&mut p as &mut dyn FnMut(u64)))
            .unwrap()
            .artifacts,
    );
    assert!(report.differences.contains(&Difference::MissingFile {
        path: "config.json".into()
    }));
    assert!(report.differences.contains(&Difference::ExtraFile {
        path: "extra.bin".into()
    }));
}

#[test]
fn header_only_changes_are_reported_as_a_changed_file() {
    let tmp = tempfile::tempdir().unwrap();
    let tensors = write_model(tmp.path());
    let mut p = no_progress();
    let registered = scan_dir(tmp.path(), &mut (&mut p as &mut dyn FnMut(u64)))
        .unwrap()
        .artifacts;
    let views = views(&tensors);
    let meta = HashMap::from([("format".to_string(), "tampered".to_string())]);
    safetensors::serialize_to_file(views, Some(meta), &tmp.path().join("model.safetensors"))
        .unwrap();
    let report = compare(
        &registered,
        &scan_dir(tmp.path(), &mut (&mut p as &mut dyn FnMut(u64)))
            .unwrap()
            .artifacts,
    );
    assert_eq!(report.differences.len(), 1);
    assert!(
        matches!(&report.differences[0], Difference::ChangedFile { path, .. } if path == "model.safetensors")
    );
}

#[test]
fn malformed_safetensors_are_refused_with_a_code() {
    let tmp = tempfile::tempdir().unwrap();
    write_model(tmp.path());
    let good = std::fs::read(tmp.path().join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("header longer than file", {
            let mut b = good.clone();
            b[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
            b
        }),
        ("trailing bytes", {
            let mut b = good.clone();
            b.push(0);
            b
        }),
        ("truncated data", good[..good.len() - 1].to_vec()),
        ("header not json", {
            let mut b = good.clone();
            b[8] = b'!';
            b
        }),
    ];
    // Shape that does not match the byte range: replace "[2,3]" with "[3,3]" in the header.
    let header = String::from_utf8(good[8..8 + header_len].to_vec()).unwrap();
    assert!(header.contains("[2,3]"));
    let mut b = good.clone();
    b[8..8 + header_len].copy_from_slice(header.replacen("[2,3]", "[3,3]", 1).as_bytes());
    cases.push(("shape mismatch", b));
    for (what, bytes) in cases {
        let path = tmp.path().join("bad.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let mut p = no_progress();
        let err = hash_safetensors(
            &path,
            "bad.safetensors",
            &mut (&mut p as &mut dyn FnMut(u64)),
        )
        .unwrap_err();
        assert_eq!(err.code(), "E_SAFETENSORS_INVALID", "{what}: {err}");
    }
}

#[test]
fn adapter_config_is_read_and_followed_into_a_cache_entry_only() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    write_model(&plain);
    let mut f = no_progress();
    let mut progress: &mut dyn FnMut(u64) = &mut f;
    assert_eq!(scan_dir(&plain, &mut progress).unwrap().adapter, None);
    std::fs::write(
        plain.join("adapter_config.json"),
        r#"{"peft_type":"LORA","target_modules":["v_proj","q_proj"],"r":8,"lora_alpha":16}"#,
    )
    .unwrap();
    let adapter = scan_dir(&plain, &mut progress).unwrap().adapter.unwrap();
    assert_eq!(adapter.target_modules, vec!["q_proj", "v_proj"]);
    assert_eq!((adapter.r, adapter.lora_alpha), (Some(8), Some(16)));

    // A Hugging Face cache snapshot links its files into the entry's blobs: followed.
    let entry = tmp.path().join("models--acme--lora");
    let snapshot = entry.join(format!("snapshots/{}", "ab12".repeat(10)));
    write_model(&snapshot);
    std::fs::create_dir_all(entry.join("blobs")).unwrap();
    let config = r#"{"peft_type":"LORA","target_modules":"all-linear"}"#;
    let blob = hex::encode(Sha256::digest(config));
    std::fs::write(entry.join("blobs").join(&blob), config).unwrap();
    std::os::unix::fs::symlink(
        format!("../../blobs/{blob}"),
        snapshot.join("adapter_config.json"),
    )
    .unwrap();
    let adapter = scan_dir(&snapshot, &mut progress).unwrap().adapter.unwrap();
    assert_eq!(adapter.target_modules, vec!["all-linear"]);

    // A link anywhere else is not read; nor is a file over the limit or malformed JSON.
    let elsewhere = tmp.path().join("elsewhere");
    write_model(&elsewhere);
    std::os::unix::fs::symlink(
        plain.join("adapter_config.json"),
        elsewhere.join("adapter_config.json"),
    )
    .unwrap();
    let err = scan_dir(&elsewhere, &mut progress).unwrap_err();
    assert_eq!(err.code(), "E_NOT_A_REGULAR_FILE", "{err}");
    std::fs::write(
        plain.join("adapter_config.json"),
        vec![b' '; shoulders_artifacts::MAX_ADAPTER_CONFIG_BYTES as usize + 1],
    )
    .unwrap();
    let err = scan_dir(&plain, &mut progress).unwrap_err();
    assert_eq!(err.code(), "E_ADAPTER_CONFIG_INVALID", "{err}");
    std::fs::write(plain.join("adapter_config.json"), "{\"r\": [8]}").unwrap();
    let err = scan_dir(&plain, &mut progress).unwrap_err();
    assert_eq!(err.code(), "E_ADAPTER_CONFIG_INVALID", "{err}");
    assert!(err.to_string().contains("`r` must be a number"), "{err}");
}
