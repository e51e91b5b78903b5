//! ∞-gram generation checked by brute force on small corpora: every generated character
//! follows the matched context somewhere in the corpus, the matched context is the longest one
//! that has a continuation, the output is valid UTF-8 within its limits, the same seed gives
//! the same text, and generation stops at a document's end and at stop sequences.

use std::path::Path;

use proptest::prelude::*;
use shoulders_attrib::generate::{generate, FinishReason, GenerateParams};
use shoulders_attrib::index::{build, DocInput, Index};

fn open(dir: &Path, docs: &[String]) -> Index {
    build(
        dir,
        docs.iter().enumerate().map(|(d, s)| {
            Ok(DocInput {
                contribution: 100 + d as u64,
                bytes: s.as_bytes().to_vec(),
            })
        }),
        &mut |_| {},
    )
    .expect("build");
    Index::open(dir).expect("open")
}

fn params(seed: u64, max_tokens: usize, max_suffix_bytes: usize) -> GenerateParams {
    GenerateParams {
        max_tokens,
        seed,
        stop: Vec::new(),
        max_suffix_bytes,
    }
}

/// Does `pattern` occur in some document followed by `next` (bytes; empty `next` means "followed
/// by the end of a document that is not the last one")?
fn bf_followed(docs: &[String], pattern: &[u8], next: &[u8]) -> bool {
    docs.iter().enumerate().any(|(d, doc)| {
        let doc = doc.as_bytes();
        (0..=doc.len()).any(|o| {
            doc[o..].starts_with(pattern)
                && if next.is_empty() {
                    o + pattern.len() == doc.len() && d + 1 < docs.len()
                } else {
                    doc[o + pattern.len()..].starts_with(next)
                }
        })
    })
}

/// Does `pattern` occur followed by anything (a byte or another document's separator)?
fn bf_has_continuation(docs: &[String], pattern: &[u8]) -> bool {
    docs.iter().enumerate().any(|(d, doc)| {
        let doc = doc.as_bytes();
        (0..=doc.len()).any(|o| {
            doc[o..].starts_with(pattern) && (o + pattern.len() < doc.len() || d + 1 < docs.len())
        })
    })
}

fn corpus() -> impl Strategy<Value = Vec<String>> {
    let ch = prop::sample::select(vec!["a", "b", "c", " ", "é", "€", "𝄞", "\n"]);
    let doc = prop::collection::vec(ch, 0..40).prop_map(|v| v.concat());
    prop::collection::vec(doc, 1..6)
}

fn prompt() -> impl Strategy<Value = String> {
    let ch = prop::sample::select(vec!["a", "b", "c", " ", "é", "€", "z", "ü"]);
    prop::collection::vec(ch, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_step_follows_the_longest_context(
        docs in corpus(),
        prompt in prompt(),
        seed in any::<u64>(),
        max_suffix in 1usize..12,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let index = open(&tmp.path().join("ix"), &docs);
        let g = generate(&index, &prompt, &params(seed, 60, max_suffix)).unwrap();
        prop_assert!(g.text.len() <= 60);
        let mut context = prompt.clone();
        for step in &g.steps {
            prop_assert_eq!(step.text.chars().count(), 1);
            let ctx = context.as_bytes();
            prop_assert!(step.suffix_len <= max_suffix && step.suffix_len <= ctx.len());
            let suffix = &ctx[ctx.len() - step.suffix_len..];
            // The character follows the matched suffix in the corpus.
            prop_assert!(bf_followed(&docs, suffix, step.text.as_bytes()),
                "{:?} never follows {:?}", step.text, String::from_utf8_lossy(suffix));
            // The source names a real place holding the character.
            let hit = step.source.expect("a copied character has a source");
            let doc = docs[(hit.contribution - 100) as usize].as_bytes();
            prop_assert_eq!(&doc[hit.offset as usize..hit.offset as usize + step.text.len()], step.text.as_bytes());
            // No longer suffix (that does not end inside a character) has a continuation.
            let last = context.chars().next_back().map_or(1, char::len_utf8);
            for len in (step.suffix_len + 1).max(last)..=max_suffix.min(ctx.len()) {
                prop_assert!(!bf_has_continuation(&docs, &ctx[ctx.len() - len..]),
                    "a longer suffix {:?} has a continuation", String::from_utf8_lossy(&ctx[ctx.len() - len..]));
            }
            context.push_str(&step.text);
        }
        prop_assert_eq!(&context[prompt.len()..], g.text.as_str());
        // Same seed, same text.
        let again = generate(&index, &prompt, &params(seed, 60, max_suffix)).unwrap();
        prop_assert_eq!(again, g);
    }
}

#[test]
fn stops_at_the_end_of_a_document() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = vec!["hello world".to_string(), "xyz".to_string()];
    let index = open(&tmp.path().join("ix"), &docs);
    for seed in 0..20 {
        let g = generate(&index, "hello w", &params(seed, 100, 64)).unwrap();
        assert_eq!(g.text, "orld");
        assert_eq!(g.finish_reason, FinishReason::Stop);
        assert!(g
            .steps
            .iter()
            .all(|s| s.source.unwrap().contribution == 100));
    }
    // A prompt that is a whole document (not the last) is followed by its end: nothing to add.
    let g = generate(&index, "hello world", &params(1, 100, 64)).unwrap();
    assert_eq!((g.text.as_str(), g.finish_reason), ("", FinishReason::Stop));
}

#[test]
fn stop_sequences_and_max_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = vec!["hello world".to_string(), "xyz".to_string()];
    let index = open(&tmp.path().join("ix"), &docs);
    let mut p = params(3, 100, 64);
    p.stop = vec!["rl".into()];
    let g = generate(&index, "hello w", &p).unwrap();
    assert_eq!(
        (g.text.as_str(), g.finish_reason),
        ("o", FinishReason::Stop)
    );
    let g = generate(&index, "hello w", &params(3, 2, 64)).unwrap();
    assert_eq!(
        (g.text.as_str(), g.finish_reason),
        ("or", FinishReason::Length)
    );
    let g = generate(&index, "hello w", &params(3, 0, 64)).unwrap();
    assert_eq!(
        (g.text.as_str(), g.finish_reason),
        ("", FinishReason::Length)
    );
    let mut bad = params(3, 10, 64);
    bad.stop = vec![String::new()];
    assert_eq!(
        generate(&index, "x", &bad).unwrap_err().code(),
        "E_GENERATE_PARAMS"
    );
    assert!(generate(&index, "x", &params(0, 1 << 20, 64)).is_err());
}

#[test]
fn a_multibyte_character_is_never_split_by_max_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = vec!["a€€€€".to_string(), "b".to_string()];
    let index = open(&tmp.path().join("ix"), &docs);
    // "€" is 3 bytes: with room for 4 only one fits.
    let g = generate(&index, "a", &params(0, 4, 64)).unwrap();
    assert_eq!(
        (g.text.as_str(), g.finish_reason),
        ("€", FinishReason::Length)
    );
}

#[test]
fn different_seeds_explore_different_continuations() {
    let tmp = tempfile::tempdir().unwrap();
    let mut docs: Vec<String> = (0..8).map(|i| format!("the {i} cat sat")).collect();
    docs.push("end".into());
    let index = open(&tmp.path().join("ix"), &docs);
    let outputs: std::collections::BTreeSet<String> = (0..40)
        .map(|seed| {
            generate(&index, "the ", &params(seed, 100, 64))
                .unwrap()
                .text
        })
        .collect();
    // Eight equally likely continuations of "the "; forty draws find several of them.
    assert!(outputs.len() >= 4, "{outputs:?}");
    assert!(
        outputs.iter().all(|o| o.ends_with(" cat sat")),
        "{outputs:?}"
    );
}

/// On an attribution index the model matches normalised context but writes the documents'
/// original bytes: case, line breaks and typography survive, and the prompt matches whatever
/// its case or spacing.
#[test]
fn attribution_index_matches_normalised_and_writes_originals() {
    use shoulders_attrib::index::{build_with, BuildMode};
    let dir = tempfile::tempdir().unwrap();
    let docs = [
        "Shall I compare thee to a summer\u{2019}s day?\r\nThou art more lovely and more temperate:\r\n",
        "Rough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date;\n",
    ];
    build_with(
        dir.path(),
        docs.iter().enumerate().map(|(d, s)| {
            Ok(DocInput {
                contribution: d as u64,
                bytes: s.as_bytes().to_vec(),
            })
        }),
        BuildMode::Attribution { window_bytes: 16 },
        &mut |_| {},
    )
    .unwrap();
    let index = Index::open(dir.path()).unwrap();
    for prompt in ["Shall I compare thee", "SHALL  i\ncompare THEE"] {
        let g = generate(&index, prompt, &params(1, 200, 64)).unwrap();
        assert!(
            g.text
                .starts_with(" to a summer\u{2019}s day?\r\nThou art more lovely"),
            "{prompt:?} gave {:?}",
            g.text
        );
        // Every character the model wrote is copied from some original document.
        for step in &g.steps {
            assert!(docs.iter().any(|d| d.contains(&step.text)), "{step:?}");
        }
    }
}
