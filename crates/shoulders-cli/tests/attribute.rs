//! `shoulders contribute`, `index build` and `attribute` end to end: a copied passage is
//! credited to its author, copies (exact, edited, chunked) earn nothing, text with no
//! evidence credits nobody, bad input gets clear errors.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

/// Deterministic prose: words from a small vocabulary chosen by a linear congruential generator.
fn prose(seed: u64, words: usize) -> String {
    const VOCAB: &[&str] = &[
        "river", "stone", "light", "over", "under", "quiet", "morning", "the", "a", "of", "and",
        "wind", "harbor", "lantern", "winter", "garden", "slowly", "bright", "shadow", "field",
        "falls", "rises", "beneath", "across", "singing", "old", "new", "silver", "green", "road",
    ];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(words);
    for _ in 0..words {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push(VOCAB[(x >> 33) as usize % VOCAB.len()]);
    }
    out.join(" ") + ".\n"
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
    fn data(&self) -> String {
        self.path("ledger")
    }
    fn actor(&self, handle: &str) -> String {
        let key = self.path(&format!("{handle}.key"));
        ok_json(shoulders(&["key", "new", "--out", &key]));
        let body = self.path(&format!("{handle}.json"));
        std::fs::write(
            &body,
            format!("{{\"handle\":\"{handle}\",\"name\":\"{handle}\"}}"),
        )
        .unwrap();
        ok_json(shoulders(&[
            "submit",
            "--data-dir",
            &self.data(),
            "--key",
            &key,
            "--kind",
            "actor.register",
            "--body",
            &body,
        ]));
        key
    }
    fn contribute(&self, key: &str, file: &Path) -> Value {
        ok_json(shoulders(&[
            "contribute",
            "--data-dir",
            &self.data(),
            "--key",
            key,
            "--dataset",
            "alice/corpus",
            file.to_str().unwrap(),
        ]))
    }
    fn attribute(&self, text: &str) -> Value {
        let file = self.path("output.txt");
        std::fs::write(&file, text).unwrap();
        ok_json(shoulders(&[
            "attribute",
            "--data-dir",
            &self.data(),
            "--dataset",
            "alice/corpus",
            "--text",
            &file,
        ]))
    }
}

fn ppm(v: &Value, who: &str) -> u64 {
    v["shares"]["contributors_ppm"][who].as_u64().unwrap_or(0)
}

#[test]
fn copied_text_is_credited_once_to_its_author() {
    let f = Fixture {
        dir: tempfile::tempdir().unwrap(),
    };
    assert!(shoulders(&["init", "--data-dir", &f.data()])
        .status
        .success());
    let alice = f.actor("alice");
    let bob = f.actor("bob");
    let ds = f.path("ds.json");
    std::fs::write(
        &ds,
        r#"{"dataset_id":"alice/corpus","name":"Corpus","access":"open"}"#,
    )
    .unwrap();
    ok_json(shoulders(&[
        "submit",
        "--data-dir",
        &f.data(),
        "--key",
        &alice,
        "--kind",
        "dataset.create",
        "--body",
        &ds,
    ]));

    let a_text = prose(1, 400);
    let b_text = prose(2, 400);
    let a = f.dir.path().join("a.txt");
    let b = f.dir.path().join("b.txt");
    std::fs::write(&a, &a_text).unwrap();
    std::fs::write(&b, &b_text).unwrap();
    let added = f.contribute(&alice, &a);
    assert!(added["content_hash"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    f.contribute(&bob, &b);

    // No index yet: a clear error.
    let file = f.path("early.txt");
    std::fs::write(&file, "anything").unwrap();
    let out = shoulders(&[
        "attribute",
        "--data-dir",
        &f.data(),
        "--dataset",
        "alice/corpus",
        "--text",
        &file,
    ]);
    assert!(
        stderr(&out).starts_with("error[E_NOT_FOUND]"),
        "{}",
        stderr(&out)
    );

    let built = ok_json(shoulders(&[
        "index",
        "build",
        "--data-dir",
        &f.data(),
        "alice/corpus",
    ]));
    assert_eq!(built["documents"].as_u64(), Some(2));
    assert_eq!(built["mostly_copied"].as_array().map(Vec::len), Some(0));

    // An output copying ~600 bytes of alice's document (plus a little glue) is alice's.
    let copied = &a_text[300..900];
    let answer = f.attribute(&format!("As I recall, {copied} and that is all."));
    assert_eq!(answer["shares"]["rule"], "spans");
    let total: u64 = answer["shares"]["contributors_ppm"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 1_000_000);
    let alice_before = ppm(&answer, "alice");
    assert!(alice_before >= 900_000, "{answer}");
    // Every reported span really occurs in a listed contribution's document at the offset given.
    let docs = [(added["index"].as_u64().unwrap(), a_text.as_str())];
    for span in answer["spans"].as_array().unwrap() {
        let text = span["text"].as_str().unwrap();
        assert!(text.len() >= 32);
        for c in span["contributions"].as_array().unwrap() {
            if let Some((_, doc)) = docs
                .iter()
                .find(|(i, _)| Some(*i) == c["contribution"].as_u64())
            {
                let at = c["offset"].as_u64().unwrap() as usize;
                let len = c["length"].as_u64().unwrap() as usize;
                // The same text up to white space (matching is on normalised text).
                let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
                assert_eq!(words(&doc[at..at + len]), words(text));
            }
        }
    }

    // Ten other keys re-contribute alice's document: exactly, upper-cased with CRLF line
    // endings, re-wrapped, or cut into chunks. Alice's share does not change and the copiers
    // earn nothing, even for an output that quotes a copier's edited version.
    let edited = a_text.to_uppercase().replace(' ', "\r\n");
    for i in 0..10 {
        let copier = f.actor(&format!("copier{i}"));
        let file = f.dir.path().join(format!("copy{i}.txt"));
        match i % 3 {
            0 => std::fs::write(&file, &a_text).unwrap(),
            1 => std::fs::write(&file, &edited).unwrap(),
            _ => {
                // Two chunks of alice's text, each contributed on its own.
                let cut = a_text.len() / 2 + i;
                let chunk = f.dir.path().join(format!("chunk{i}.txt"));
                std::fs::write(&chunk, &a_text[..cut]).unwrap();
                f.contribute(&copier, &chunk);
                std::fs::write(&file, &a_text[cut..]).unwrap();
            }
        }
        f.contribute(&copier, &file);
    }
    let rebuilt = ok_json(shoulders(&[
        "index",
        "build",
        "--data-dir",
        &f.data(),
        "alice/corpus",
    ]));
    assert_eq!(rebuilt["documents"].as_u64(), Some(15));
    // Every copy is reported as mostly copied.
    let copies = rebuilt["mostly_copied"].as_array().unwrap();
    assert_eq!(copies.len(), 13, "{rebuilt}");
    assert!(copies
        .iter()
        .all(|c| c["contributor"].as_str().unwrap().starts_with("copier")));
    let edited_quote = edited[300..900].to_string();
    for output in [
        format!("As I recall, {copied} and that is all."),
        format!("As I recall, {edited_quote} and that is all."),
    ] {
        let answer = f.attribute(&output);
        assert_eq!(ppm(&answer, "alice"), alice_before, "{answer}");
        for i in 0..10 {
            assert_eq!(ppm(&answer, &format!("copier{i}")), 0);
        }
    }

    // `index verify` checks every byte of the rebuilt index, and finds a damaged copy map
    // (an owner run naming a document the index does not have).
    let verified = ok_json(shoulders(&[
        "index",
        "verify",
        "--data-dir",
        &f.data(),
        "alice/corpus",
    ]));
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["documents"].as_u64(), Some(15));
    assert_eq!(verified["tokens"], rebuilt["tokens"]);
    let index_dir = Path::new(rebuilt["index_dir"].as_str().unwrap());
    let owners = index_dir.join("shoulders-owners.bin");
    let clean = std::fs::read(&owners).unwrap();
    let mut damaged = clean.clone();
    damaged[8..12].copy_from_slice(&999u32.to_le_bytes());
    std::fs::write(&owners, &damaged).unwrap();
    let out = shoulders(&["index", "verify", "--data-dir", &f.data(), "alice/corpus"]);
    assert!(
        stderr(&out).starts_with("error[E_INDEX_CORRUPT]"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&owners, &clean).unwrap();

    // Text with nothing in common credits nobody: no volume-based fallback.
    let none = f.attribute("zzzz qqqq xxxx — nothing here matches 0123456789");
    assert_eq!(none["shares"]["rule"], "no_evidence");
    assert_eq!(none["spans"].as_array().unwrap().len(), 0);
    assert_eq!(
        none["shares"]["contributors_ppm"]
            .as_object()
            .map(|m| m.len()),
        Some(0)
    );

    // Bad input: empty, non-UTF-8, oversized texts; non-UTF-8 contributions.
    for (name, bytes, code) in [
        ("empty.txt", Vec::new(), "E_TEXT_EMPTY"),
        (
            "latin1.txt",
            vec![0x63, 0x61, 0x66, 0xe9],
            "E_TEXT_NOT_UTF8",
        ),
        ("huge.txt", vec![b'a'; 1024 * 1024 + 1], "E_TEXT_TOO_LARGE"),
    ] {
        let path = f.path(name);
        std::fs::write(&path, bytes).unwrap();
        let out = shoulders(&[
            "attribute",
            "--data-dir",
            &f.data(),
            "--dataset",
            "alice/corpus",
            "--text",
            &path,
        ]);
        assert!(
            stderr(&out).starts_with(&format!("error[{code}]")),
            "{name}: {}",
            stderr(&out)
        );
    }
    let bad = f.dir.path().join("bad.bin");
    std::fs::write(&bad, [0xff, 0xfe, 0x00]).unwrap();
    let before = shoulders(&["checkpoint", "--data-dir", &f.data()]).stdout;
    let out = shoulders(&[
        "contribute",
        "--data-dir",
        &f.data(),
        "--key",
        &alice,
        "--dataset",
        "alice/corpus",
        bad.to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).starts_with("error[E_CONTENT_NOT_UTF8]"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        shoulders(&["checkpoint", "--data-dir", &f.data()]).stdout,
        before
    );
}

/// `index update` appends a segment over the contributions since the last build (a copy of an
/// older document is reported as mostly copied), does nothing when there is nothing new, and
/// `index merge` merges the segments into one; the answers do not change.
#[test]
fn index_update_and_merge() {
    let f = Fixture {
        dir: tempfile::tempdir().unwrap(),
    };
    assert!(shoulders(&["init", "--data-dir", &f.data()])
        .status
        .success());
    let alice = f.actor("alice");
    let bob = f.actor("bob");
    let ds = f.path("ds.json");
    std::fs::write(
        &ds,
        r#"{"dataset_id":"alice/corpus","name":"Corpus","access":"open"}"#,
    )
    .unwrap();
    ok_json(shoulders(&[
        "submit",
        "--data-dir",
        &f.data(),
        "--key",
        &alice,
        "--kind",
        "dataset.create",
        "--body",
        &ds,
    ]));
    let index = |cmd: &str| {
        ok_json(shoulders(&[
            "index",
            cmd,
            "--data-dir",
            &f.data(),
            "alice/corpus",
        ]))
    };
    let a_text = prose(11, 300);
    let a = f.dir.path().join("a.txt");
    std::fs::write(&a, &a_text).unwrap();
    f.contribute(&alice, &a);
    // A large first segment, so the merge policy leaves the small one appended next alone.
    let filler = f.dir.path().join("filler.txt");
    std::fs::write(&filler, prose(13, 12_000)).unwrap();
    f.contribute(&alice, &filler);
    // No index yet: `update` builds it whole.
    let first = index("update");
    assert_eq!(first["full_build"], true, "{first}");
    assert_eq!(first["appended"]["documents"], 2);
    // bob contributes a copy of alice's text and a text of his own.
    let b_text = prose(12, 300);
    let (copy, b) = (f.dir.path().join("copy.txt"), f.dir.path().join("b.txt"));
    std::fs::write(&copy, a_text.to_uppercase()).unwrap();
    std::fs::write(&b, &b_text).unwrap();
    f.contribute(&bob, &copy);
    f.contribute(&bob, &b);
    let updated = index("update");
    let appended = &updated["appended"];
    assert_eq!(appended["documents"], 2, "{updated}");
    assert_eq!(appended["segments"], 2, "{updated}");
    assert_eq!(updated["merged"], Value::Null, "{updated}");
    let copied = appended["mostly_copied"].as_array().unwrap();
    assert_eq!(copied.len(), 1, "{updated}");
    assert_eq!(copied[0]["contributor"], "bob");
    let quote_b = format!("Quoting bob: {}", &b_text[100..700]);
    let quote_a = format!("Quoting alice: {}", &a_text[100..700]);
    assert!(ppm(&f.attribute(&quote_b), "bob") >= 900_000);
    let before = f.attribute(&quote_a);
    assert!(ppm(&before, "alice") >= 900_000, "{before}");
    // Nothing new.
    assert_eq!(index("update")["appended"], Value::Null);
    // Merge: one segment, the same answer.
    let merged = index("merge");
    assert_eq!(merged["merged"]["segments"], 1, "{merged}");
    assert_eq!(f.attribute(&quote_a)["shares"], before["shares"]);
    assert_eq!(index("merge")["merged"], Value::Null);
}
