//! `shoulders license` end to end: presets, flow-down refusal at import, use checks.

mod common;

use common::*;

use serde_json::Value;
use std::path::Path;
use std::process::Output;

fn submit(data: &str, key: &Path, kind: &str, body: &str, dir: &Path) -> Output {
    let file = dir.join(format!("body-{}.json", rand_suffix()));
    std::fs::write(&file, body).unwrap();
    shoulders(&[
        "submit",
        "--data-dir",
        data,
        "--key",
        key.to_str().unwrap(),
        "--kind",
        kind,
        "--body",
        file.to_str().unwrap(),
    ])
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Royalty policies from the command line: a licence whose royalty reaches direct children
/// only, `model import --max-royalty-bps` (refused over it, naming the ancestor) and
/// `license check --max-royalty-bps`.
#[test]
fn royalty_reach_and_maximum_royalty() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = t.join("ledger");
    let data = data.to_str().unwrap();
    assert!(shoulders(&["init", "--data-dir", data]).status.success());
    let (alice, bob) = (t.join("alice.key"), t.join("bob.key"));
    ok_json(shoulders(&["key", "new", "--out", alice.to_str().unwrap()]));
    ok_json(shoulders(&["key", "new", "--out", bob.to_str().unwrap()]));
    for (key, handle) in [(&alice, "alice"), (&bob, "bob")] {
        ok_json(submit(
            data,
            key,
            "actor.register",
            &format!(r#"{{"handle":"{handle}","name":"{handle}"}}"#),
            t,
        ));
    }
    let mut lic = ok_json(shoulders(&[
        "license",
        "preset",
        "apache-2.0",
        "--license-id",
        "alice/r30",
    ]));
    lic["terms"]["royalty_bps"] = 3000.into();
    lic["terms"]["royalty_reach"] = "direct_parent".into();
    ok_json(submit(data, &alice, "license.define", &lic.to_string(), t));
    let import = |key: &Path, name: &str, extra: &[&str]| {
        let dir = t.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("weights.bin"), name.as_bytes()).unwrap();
        let mut args = vec![
            "model",
            "import",
            "--data-dir",
            data,
            "--key",
            key.to_str().unwrap(),
            dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        shoulders(&args)
    };
    ok_json(import(&alice, "base", &["--license-id", "alice/r30"]));

    // bob accepts at most 29.99% upstream: his child of the base is refused, naming it.
    let child = ["--parent", "alice/base", "--relation", "finetune"];
    let before = shoulders(&["checkpoint", "--data-dir", data]).stdout;
    let out = import(
        &bob,
        "child",
        &[&child[..], &["--max-royalty-bps", "2999"]].concat(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error[E_LICENSE_ROYALTY_ABOVE_MAX]"),
        "{err}"
    );
    assert!(
        err.contains("alice/base 3000 bps (licence alice/r30)") && err.contains("2999"),
        "{err}"
    );
    assert_eq!(
        shoulders(&["checkpoint", "--data-dir", data]).stdout,
        before,
        "nothing appended"
    );
    let out = import(
        &bob,
        "child",
        &[&child[..], &["--max-royalty-bps", "10001"]].concat(),
    );
    assert_eq!(out.status.code(), Some(2), "a usage error");
    ok_json(import(
        &bob,
        "child",
        &[&child[..], &["--max-royalty-bps", "3000"]].concat(),
    ));
    let check = |model: &str, max: &str| {
        shoulders(&[
            "license",
            "check",
            "--data-dir",
            data,
            model,
            "--use",
            "chat",
            "--max-royalty-bps",
            max,
        ])
    };
    let out = check("bob/child", "2000");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error[E_LICENSE_DENIED]"));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["max_royalty_bps"], 2000);
    assert_eq!(answer["royalties"][0]["reach"], "direct_parent");
    assert!(answer["reasons"][0]
        .as_str()
        .unwrap()
        .contains("alice/base 3000 bps (licence alice/r30)"));
    assert_eq!(ok_json(check("bob/child", "3000"))["allowed"], true);

    // The base's royalty reaches its children only: a grandchild owes nothing upstream.
    ok_json(import(
        &bob,
        "grand",
        &[
            "--parent",
            "bob/child",
            "--relation",
            "finetune",
            "--max-royalty-bps",
            "0",
        ],
    ));
    let answer = ok_json(check("bob/grand", "0"));
    assert_eq!(answer["royalties"], serde_json::json!([]));
}

#[test]
fn presets_flow_down_and_use_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = t.join("ledger");
    let data = data.to_str().unwrap();
    assert!(shoulders(&["init", "--data-dir", data]).status.success());
    let (alice, bob) = (t.join("alice.key"), t.join("bob.key"));
    ok_json(shoulders(&["key", "new", "--out", alice.to_str().unwrap()]));
    ok_json(shoulders(&["key", "new", "--out", bob.to_str().unwrap()]));
    ok_json(submit(
        data,
        &alice,
        "actor.register",
        r#"{"handle":"alice","name":"Alice"}"#,
        t,
    ));
    ok_json(submit(
        data,
        &bob,
        "actor.register",
        r#"{"handle":"bob","name":"Bob"}"#,
        t,
    ));

    let presets = ok_json(shoulders(&["license", "presets"]));
    let names: Vec<&str> = presets
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["preset"].as_str().unwrap())
        .collect();
    for expected in [
        "apache-2.0",
        "mit",
        "cc-by-4.0",
        "cc-by-sa-4.0",
        "cc-by-nc-4.0",
        "openrail-m",
        "llama-community",
    ] {
        assert!(names.contains(&expected), "{expected}");
    }
    // A preset body goes straight into `submit`.
    let nc = ok_json(shoulders(&[
        "license",
        "preset",
        "cc-by-nc-4.0",
        "--license-id",
        "alice/nc",
    ]));
    assert_eq!(nc["spdx_id"], "CC-BY-NC-4.0");
    ok_json(submit(data, &alice, "license.define", &nc.to_string(), t));
    let mut apache = ok_json(shoulders(&[
        "license",
        "preset",
        "apache-2.0",
        "--license-id",
        "bob/apache",
    ]));
    apache["terms"]["price_per_call_micros"] = "1500".into();
    ok_json(submit(data, &bob, "license.define", &apache.to_string(), t));
    ok_json(submit(
        data,
        &alice,
        "dataset.create",
        r#"{"dataset_id":"alice/nc-poems","name":"NC poems","access":"open","license_id":"alice/nc"}"#,
        t,
    ));
    let unknown = shoulders(&["license", "preset", "wtfpl", "--license-id", "bob/x"]);
    assert!(stderr(&unknown).starts_with("error[E_NOT_FOUND]"));

    // Bob's commercial licence on a model trained on NC data is refused, naming the dataset.
    let model_dir = t.join("tiny");
    std::fs::create_dir_all(&model_dir).unwrap();
    std::fs::write(model_dir.join("weights.bin"), b"0123456789").unwrap();
    let before = shoulders(&["checkpoint", "--data-dir", data]).stdout;
    let out = shoulders(&[
        "model",
        "import",
        "--data-dir",
        data,
        "--key",
        bob.to_str().unwrap(),
        model_dir.to_str().unwrap(),
        "--dataset",
        "alice/nc-poems",
        "--license-id",
        "bob/apache",
    ]);
    let err = stderr(&out);
    assert!(
        err.starts_with("error[E_LICENSE_COMMERCIAL_CONFLICT]"),
        "{err}"
    );
    assert!(
        err.contains("dataset alice/nc-poems") && err.contains("commercial_use"),
        "{err}"
    );
    assert_eq!(
        shoulders(&["checkpoint", "--data-dir", data]).stdout,
        before,
        "nothing appended"
    );

    // Without a commercial licence the import is accepted; commercial use is then denied.
    ok_json(shoulders(&[
        "model",
        "import",
        "--data-dir",
        data,
        "--key",
        bob.to_str().unwrap(),
        model_dir.to_str().unwrap(),
        "--dataset",
        "alice/nc-poems",
    ]));
    let out = shoulders(&[
        "license",
        "check",
        "--data-dir",
        data,
        "bob/tiny",
        "--use",
        "commercial",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("error[E_LICENSE_DENIED]"));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["allowed"], false);
    assert!(answer["reasons"][0]
        .as_str()
        .unwrap()
        .contains("dataset alice/nc-poems"));
    let answer = ok_json(shoulders(&[
        "license",
        "check",
        "--data-dir",
        data,
        "bob/tiny",
        "--use",
        "research",
    ]));
    assert_eq!(answer["allowed"], true);
    assert!(answer["notes"].as_array().unwrap().iter().any(|n| n
        .as_str()
        .unwrap()
        .contains("attribution required: credit dataset alice/nc-poems")));

    // A model under bob's own priced licence reports its price.
    let other = t.join("priced");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("weights.bin"), b"abc").unwrap();
    ok_json(shoulders(&[
        "model",
        "import",
        "--data-dir",
        data,
        "--key",
        bob.to_str().unwrap(),
        other.to_str().unwrap(),
        "--license-id",
        "bob/apache",
    ]));
    let answer = ok_json(shoulders(&[
        "license",
        "check",
        "--data-dir",
        data,
        "bob/priced",
        "--use",
        "commercial",
    ]));
    assert_eq!(answer["price"]["per_call_micros"], 1500);
    assert_eq!(answer["price"]["currency"], "USD");
    let out = shoulders(&[
        "license",
        "check",
        "--data-dir",
        data,
        "bob/none",
        "--use",
        "commercial",
    ]);
    assert!(stderr(&out).starts_with("error[E_NOT_FOUND]"));
}
