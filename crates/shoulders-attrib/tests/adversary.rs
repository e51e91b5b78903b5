//! Attribution against an adversary, on real text nobody on the project wrote
//! (`tests/data/corpus`, ten authors; see its SOURCES.md).
//!
//! The honest authors contribute first. An adversary ("mallory") then adds any mix of exact
//! copies, edited copies (CRLF, re-wrapped lines, changed case, typographic quotes, invisible
//! characters, no-break spaces), chunked copies and junk. The properties:
//!
//! * the adversary never gets more of any output than without those documents (here: nothing);
//! * the honest author of a quoted passage keeps everything it had (≥ 90% here);
//! * shares always sum to exactly 1 000 000 ppm (or there is no evidence at all).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoulders_attrib::budget::Budget;
use shoulders_attrib::dataset::{build, AttributeOptions, BuildDoc, DatasetIndex};
use shoulders_attrib::normalize::normalize;
use shoulders_attrib::shares::{informative, Rule, PPM};

const ADVERSARY: &str = "mallory";

/// Cases per property: `default`, or `SHOULDERS_ADVERSARY_CASES` for a longer hunt (e.g.
/// `SHOULDERS_ADVERSARY_CASES=2000 cargo test --release -p shoulders-attrib --test adversary`).
fn cases(default: u32) -> u32 {
    std::env::var("SHOULDERS_ADVERSARY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The honest corpus: (author, text), in path order.
fn corpus() -> &'static Vec<(String, String)> {
    static CORPUS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus");
        let mut files = Vec::new();
        for author in std::fs::read_dir(&root).unwrap() {
            let author = author.unwrap().path();
            if !author.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(&author).unwrap() {
                files.push(f.unwrap().path());
            }
        }
        files.sort();
        let docs: Vec<(String, String)> = files
            .iter()
            .map(|f| {
                let author = f.parent().unwrap().file_name().unwrap().to_string_lossy();
                (author.to_string(), std::fs::read_to_string(f).unwrap())
            })
            .collect();
        assert!(docs.len() >= 40, "the corpus is vendored with the tests");
        docs
    })
}

struct Built {
    _dir: tempfile::TempDir,
    index: DatasetIndex,
}

fn index_of(docs: &[(String, String)]) -> Built {
    index_with_ids(docs, |i| i as u64)
}

/// [`index_of`] with contribution ids `id(i)` (increasing: documents are in log order).
fn index_with_ids(docs: &[(String, String)], id: impl Fn(usize) -> u64) -> Built {
    let dir = tempfile::tempdir().unwrap();
    build(
        dir.path(),
        "test/corpus",
        docs.len() as u64,
        docs.iter().enumerate().map(|(i, (who, text))| {
            Ok(BuildDoc {
                contribution: id(i),
                contributor: who.clone(),
                bytes: text.clone().into_bytes(),
            })
        }),
        &mut |_| {},
    )
    .unwrap();
    let index = DatasetIndex::open(dir.path(), "test/corpus").unwrap();
    Built { _dir: dir, index }
}

fn base() -> &'static Built {
    static BASE: OnceLock<Built> = OnceLock::new();
    BASE.get_or_init(|| index_of(corpus()))
}

fn shares(ix: &DatasetIndex, text: &str) -> BTreeMap<String, u64> {
    shares_by_rule(ix, text).1
}

/// [`shares`] and the rule that produced them.
fn shares_by_rule(ix: &DatasetIndex, text: &str) -> (Rule, BTreeMap<String, u64>) {
    let r = ix.attribute(text, &AttributeOptions::default()).unwrap();
    let sum: u64 = r.shares.contributors_ppm.values().sum();
    match r.shares.rule {
        Rule::NoEvidence => assert!(r.shares.contributors_ppm.is_empty()),
        _ => assert_eq!(sum, PPM, "ppm must sum to exactly one million"),
    }
    (r.shares.rule, r.shares.contributors_ppm)
}

fn char_floor(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A passage of `len` bytes at `at` (both reduced to char boundaries).
fn passage(text: &str, at: usize, len: usize) -> &str {
    let start = char_floor(text, at.min(text.len()));
    let end = char_floor(text, (start + len).min(text.len()));
    &text[start..end]
}

// ---- edits an adversary (or a model re-wrapping its output) can make ----------------------

fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

fn rewrap(s: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for w in s.split_whitespace() {
        if line > 0 && line + 1 + w.len() > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(w);
        line += w.len();
    }
    out
}

fn recase(s: &str, rng: &mut ChaCha8Rng) -> String {
    match rng.gen_range(0..3) {
        0 => s.to_uppercase(),
        1 => s.to_lowercase(),
        _ => s
            .chars()
            .map(|c| {
                if rng.gen_bool(0.5) {
                    c.to_uppercase().next().unwrap_or(c)
                } else {
                    c
                }
            })
            .collect(),
    }
}

fn typographic(s: &str) -> String {
    s.replace('\'', "\u{2019}")
        .replace(" \"", " \u{201C}")
        .replace('"', "\u{201D}")
        .replace(" - ", " \u{2014} ")
}

fn invisible(s: &str, rng: &mut ChaCha8Rng) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for c in s.chars() {
        out.push(c);
        if rng.gen_ratio(1, 7) {
            out.push(['\u{200B}', '\u{00AD}', '\u{FEFF}', '\u{200D}'][rng.gen_range(0..4)]);
        }
    }
    out
}

fn nbsp(s: &str, rng: &mut ChaCha8Rng) -> String {
    s.chars()
        .map(|c| {
            if c == ' ' && rng.gen_bool(0.5) {
                '\u{00A0}'
            } else {
                c
            }
        })
        .collect()
}

/// A random combination of trivial edits.
fn edit(s: &str, rng: &mut ChaCha8Rng) -> String {
    let mut t = s.to_string();
    if rng.gen_bool(0.5) {
        t = rewrap(&t, rng.gen_range(20..100));
    }
    if rng.gen_bool(0.5) {
        t = recase(&t, rng);
    }
    if rng.gen_bool(0.3) {
        t = typographic(&t);
    }
    if rng.gen_bool(0.3) {
        t = nbsp(&t, rng);
    }
    if rng.gen_bool(0.3) {
        t = invisible(&t, rng);
    }
    if rng.gen_bool(0.5) {
        t = crlf(&t);
    }
    t
}

/// `s` cut into `k` pieces at random character boundaries.
fn chunks(s: &str, k: usize, rng: &mut ChaCha8Rng) -> Vec<String> {
    let mut cuts: Vec<usize> = (1..k)
        .map(|_| char_floor(s, rng.gen_range(0..s.len().max(1))))
        .collect();
    cuts.push(0);
    cuts.push(s.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| s[w[0]..w[1]].to_string())
        .filter(|c| !c.trim().is_empty())
        .collect()
}

/// Shuffled words of the whole corpus: plausible-looking volume with no authored sequence.
fn junk(bytes: usize, rng: &mut ChaCha8Rng) -> String {
    static WORDS: OnceLock<Vec<String>> = OnceLock::new();
    let words = WORDS.get_or_init(|| {
        corpus()
            .iter()
            .flat_map(|(_, t)| t.split_whitespace().map(str::to_string))
            .collect()
    });
    let mut out = String::with_capacity(bytes + 32);
    while out.len() < bytes {
        out.push_str(&words[rng.gen_range(0..words.len())]);
        out.push(if rng.gen_ratio(1, 12) { '\n' } else { ' ' });
    }
    out
}

/// The attack documents against source document `src`, chosen by `mix`.
fn attack_docs(src: &str, mix: u8, rng: &mut ChaCha8Rng) -> Vec<String> {
    let mut docs = Vec::new();
    if mix & 1 != 0 {
        docs.push(src.to_string());
    }
    if mix & 2 != 0 {
        for _ in 0..rng.gen_range(1..4) {
            docs.push(edit(src, rng));
        }
    }
    if mix & 4 != 0 {
        let k = rng.gen_range(2..7);
        let edited = if rng.gen_bool(0.5) {
            edit(src, rng)
        } else {
            src.to_string()
        };
        docs.extend(chunks(&edited, k, rng));
    }
    if mix & 8 != 0 {
        // Ten times the source's volume in junk, in several documents.
        for _ in 0..5 {
            docs.push(junk(src.len() * 2, rng));
        }
    }
    if mix & 16 != 0 {
        // The source padded with junk on both sides (a "new" document that contains it).
        docs.push(format!(
            "{}\n{}\n{}",
            junk(2000, rng),
            edit(src, rng),
            junk(2000, rng)
        ));
    }
    docs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(24), .. ProptestConfig::default() })]

    /// Copies, edited copies, chunks and junk, alone or mixed, take nothing from the author of a
    /// quoted passage and earn the adversary nothing, whether the output quotes the original
    /// or one of the adversary's edited versions of it, verbatim or re-wrapped by the model.
    #[test]
    fn copies_and_junk_earn_the_adversary_nothing(
        src_pick in 0usize..1000,
        mix in 1u8..32,
        seed in any::<u64>(),
        quotes in proptest::collection::vec((0usize..100_000, 120usize..600, 0u8..4), 3),
    ) {
        attack_earns_nothing(src_pick, mix, seed, &quotes)?;
    }

    /// Junk and volume capture nothing: an output with no authored evidence has no shares at
    /// all, however much the adversary contributed.
    #[test]
    fn volume_captures_no_fallback(seed in any::<u64>(), words in 20usize..120) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut attacked = corpus().clone();
        for _ in 0..4 {
            attacked.push((ADVERSARY.to_string(), junk(80_000, &mut rng)));
        }
        let ix = index_of(&attacked);
        // An "output" of corpus words in a new order: it quotes nobody.
        let output = junk(words * 6, &mut rng);
        let before = shares(&base().index, &output);
        let after = shares(&ix.index, &output);
        prop_assert_eq!(after.get(ADVERSARY).copied().unwrap_or(0), 0);
        prop_assert!(before.is_empty() || before.values().sum::<u64>() == PPM);
    }

    /// Shares sum to exactly one million (or are empty) for any text: quotes, noise and mixes.
    #[test]
    fn ppm_always_sum_to_one_million(
        pieces in proptest::collection::vec((0usize..1000, 0usize..100_000, 1usize..400, any::<bool>()), 1..6),
        noise in "[a-z \n]{0,200}",
    ) {
        let docs = corpus();
        let mut output = String::new();
        for (d, at, len, quoted) in pieces {
            let (_, text) = &docs[d % docs.len()];
            if quoted {
                output.push_str(passage(text, at % text.len(), len));
            } else {
                output.push_str(&noise);
            }
        }
        shares(&base().index, &output);
    }
}

/// The property of `copies_and_junk_earn_the_adversary_nothing` for one case: source document
/// `src_pick`, attack mix `mix`, edits drawn from `seed`, quotes `(at, len, form)`.
fn attack_earns_nothing(
    src_pick: usize,
    mix: u8,
    seed: u64,
    quotes: &[(usize, usize, u8)],
) -> Result<(), TestCaseError> {
    let docs = corpus();
    let src = src_pick % docs.len();
    let (author, text) = &docs[src];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let attack = attack_docs(text, mix, &mut rng);
    let mut attacked = docs.clone();
    attacked.extend(attack.iter().map(|d| (ADVERSARY.to_string(), d.clone())));
    let attacked_ix = index_of(&attacked);
    for &(at, len, form) in quotes {
        let quote = passage(text, at % text.len().max(1), len);
        let output = match form {
            0 => quote.to_string(),
            1 => rewrap(quote, 60),
            2 => edit(quote, &mut rng),
            _ => format!("In short: {quote} That is all."),
        };
        let (rule, before) = shares_by_rule(&base().index, &output);
        let after = shares(&attacked_ix.index, &output);
        prop_assert_eq!(
            after.get(ADVERSARY),
            None,
            "mix {} output {:?}",
            mix,
            output
        );
        if rule == Rule::Spans {
            // Span evidence is decided by log order alone: nothing added later moves it.
            prop_assert_eq!(
                &before,
                &after,
                "the attack changed the attribution of {:?}",
                output
            );
            let kept = after.get(author).copied().unwrap_or(0);
            prop_assert_eq!(kept, before.get(author).copied().unwrap_or(0));
        }
        // Too short for a window (a quote cut at the end of its document): the paraphrase
        // fallback weighs candidates with corpus statistics (idf, BM25), which any later
        // document moves, so honest sources' shares may shift among themselves; the
        // adversary still earns nothing (asserted above). SECURITY.md, *A malicious
        // contributor*, states this limit.
    }
    Ok(())
}

/// A case the property found: the tail of a chunked copy ("e in /usr/share/...GPL-3."), too
/// short for a window, was credited to the adversary by the paraphrase fallback (a passage
/// without windows went to its own contribution, not to the first holder of its content).
#[test]
fn a_short_tail_chunk_of_a_copy_earns_its_copier_nothing() {
    attack_earns_nothing(
        78,
        4,
        12929671207581337222,
        &[(0, 139, 2), (20726, 184, 0), (48749, 558, 3)],
    )
    .unwrap();
}

/// The author whose windows make up most of a passage in the base corpus.
fn owner_share(author: &str, output: &str) -> u64 {
    shares(&base().index, output)
        .get(author)
        .copied()
        .unwrap_or(0)
}

#[test]
fn quoted_passages_go_to_their_authors() {
    // One passage from the middle of every document: its author gets ≥ 90% unless the passage
    // is boilerplate some earlier author contributed first (the licence notices in the Debian
    // copyright files); count those.
    let mut owned = 0;
    let docs = corpus();
    for (author, text) in docs {
        let quote = passage(text, text.len() / 3, 400);
        if owner_share(author, quote) >= 900_000 {
            owned += 1;
        }
    }
    assert!(
        owned * 10 >= docs.len() * 8,
        "{owned} of {} passages",
        docs.len()
    );
}

#[test]
fn boilerplate_goes_to_whoever_contributed_it_first_not_to_the_longest_match() {
    // Nine independent documents carry the same licence paragraph; the eighth also continues
    // it with a sentence of its own. An output quoting the paragraph and that continuation
    // used to be credited entirely to the eighth (its match runs a few bytes further).
    let paragraph = "Permission is hereby granted, free of charge, to any person obtaining a copy \
        of this software and associated documentation files, to deal in the Software without \
        restriction, including without limitation the rights to use, copy, modify, merge and \
        publish it, subject to the following conditions.";
    let tail = " Also, the maintainers ask that you send improvements back upstream.";
    let mut docs = Vec::new();
    for i in 0..9 {
        let own = format!("Project number {i} does something unique with widgets of kind {i}.\n");
        let body = if i == 7 {
            format!("{paragraph}{tail}")
        } else {
            paragraph.to_string()
        };
        docs.push((format!("author{i}"), format!("{own}\n{body}\n")));
    }
    let ix = index_of(&docs);
    let out = shares(&ix.index, &format!("{paragraph}{tail}"));
    let first = out.get("author0").copied().unwrap_or(0);
    let runner = out.get("author7").copied().unwrap_or(0);
    assert!(first > 700_000, "{out:?}");
    // author7 only earns the bytes it alone has: its sentence, partly shared at the seam.
    let tail_ppm = (tail.len() as u64 * PPM) / (paragraph.len() + tail.len()) as u64;
    assert!(runner <= tail_ppm + 60_000 && runner > 0, "{out:?}");
}

#[test]
fn a_later_authors_unique_line_in_a_near_duplicate_is_theirs() {
    let (_, text) = &corpus()[0];
    let line = "\nThis sentence was written by the later author and appears nowhere else at all.\n";
    let mid = char_floor(text, text.len() / 2);
    let near = format!("{}{line}{}", &text[..mid], &text[mid..]);
    let mut docs = corpus().clone();
    docs.push(("later".to_string(), near));
    let ix = index_of(&docs);
    let out = shares(&ix.index, line.trim());
    assert_eq!(out.get("later"), Some(&PPM), "{out:?}");
}

#[test]
fn drift_in_the_output_does_not_lose_the_author() {
    // Whitespace collapsed and lines re-wrapped, upper-cased: still the author's text.
    let docs = corpus();
    let (author, text) = &docs[12];
    let quote = passage(text, text.len() / 2, 500);
    for output in [
        rewrap(quote, 50),
        quote.split_whitespace().collect::<Vec<_>>().join(" "),
        quote.to_uppercase(),
    ] {
        let before = owner_share(author, quote);
        assert_eq!(owner_share(author, &output), before, "{output:?}");
    }
}

#[test]
fn declared_sizes_do_not_exist_here_only_content_counts() {
    // The index is built from content; a contribution without content cannot be in it, and a
    // huge junk contribution only owns its own junk.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut docs = corpus().clone();
    docs.push((ADVERSARY.to_string(), junk(2_000_000, &mut rng)));
    let ix = index_of(&docs);
    let (author, text) = &corpus()[3];
    let quote = passage(text, 100, 300);
    let out = shares(&ix.index, quote);
    assert_eq!(out.get(ADVERSARY), None);
    assert_eq!(out.get(author), shares(&base().index, quote).get(author));
}

/// The paraphrase layer through the dataset index: outputs that quote nothing but reword a
/// passage are credited to the passage's first contributor, and an adversary's chunked,
/// re-cased copy of every source takes none of it (a passage is credited through the copy map).
#[test]
fn paraphrases_are_credited_to_the_first_contributor_not_to_copies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/paraphrase");
    let cases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("cases.json")).unwrap()).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(root.join("corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    let mut docs: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            (name, std::fs::read_to_string(f).unwrap())
        })
        .collect();
    let honest = docs.len();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for i in 0..honest {
        let copy = docs[i].1.to_uppercase();
        for piece in chunks(&copy, 3, &mut rng) {
            docs.push((ADVERSARY.to_string(), piece));
        }
    }
    let ix = index_of(&docs);
    let (mut credited, mut total) = (0, 0);
    for case in cases["positives"].as_array().unwrap() {
        let source = case["source"].as_str().unwrap();
        let r = ix
            .index
            .attribute(case["text"].as_str().unwrap(), &AttributeOptions::default())
            .unwrap();
        total += 1;
        let shares = &r.shares.contributors_ppm;
        assert_eq!(shares.get(ADVERSARY), None, "{}: {shares:?}", case["id"]);
        if shares.get(source).copied().unwrap_or(0) > 0 {
            credited += 1;
        }
    }
    // Through the dataset index, with the copies present, the true source is credited for 52
    // of the 54 (45 by exact windows the paraphrase kept, 9 by retrieval; the two others are
    // credited to an earlier twin of the passage, as the evaluation set allows).
    assert!(
        credited * 100 >= total * 90,
        "{credited} of {total} paraphrases credited"
    );
    for case in cases["negatives"].as_array().unwrap() {
        let r = ix
            .index
            .attribute(case["text"].as_str().unwrap(), &AttributeOptions::default())
            .unwrap();
        assert_eq!(r.shares.contributors_ppm.get(ADVERSARY), None);
    }
}

// ---- exclusions (takedowns, pending review) ------------------------------------------------

/// Outputs whose reports are kept in `tests/data/golden_reports.json`: quotes of every third
/// document (boilerplate copies among them), edited quotes, two authors at once, junk, and
/// paraphrases.
fn golden_outputs() -> Vec<String> {
    let docs = corpus();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut out = Vec::new();
    for (i, (_, text)) in docs.iter().enumerate().step_by(3) {
        let quote = passage(text, text.len() / 3, 400);
        out.push(quote.to_string());
        if i % 2 == 0 {
            out.push(edit(quote, &mut rng));
        }
    }
    let (a, b) = (&docs[1].1, &docs[docs.len() - 2].1);
    out.push(format!(
        "{} and then {}",
        passage(a, a.len() / 2, 300),
        passage(b, b.len() / 4, 300)
    ));
    out.push(junk(600, &mut rng));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/paraphrase");
    let cases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("cases.json")).unwrap()).unwrap();
    // The first few cases (exact windows), and those the base corpus credits as paraphrases.
    let paraphrased = [
        "mpl-scope",
        "tar-description",
        "gzip-truncate",
        "sed-description",
    ];
    for (i, case) in cases["positives"].as_array().unwrap().iter().enumerate() {
        if i < 6 || paraphrased.contains(&case["id"].as_str().unwrap()) {
            out.push(case["text"].as_str().unwrap().to_string());
        }
    }
    out
}

/// With no exclusions the reports are byte for byte what they were before exclusions existed.
/// Regenerate deliberately with `UPDATE_GOLDEN=1 cargo test -p shoulders-attrib --test
/// adversary golden`.
#[test]
fn golden_reports_without_exclusions_are_unchanged() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden_reports.json");
    let got: Vec<serde_json::Value> = golden_outputs()
        .into_iter()
        .map(|output| {
            let r = base()
                .index
                .attribute(&output, &AttributeOptions::default())
                .unwrap();
            serde_json::json!({"output": output, "report": serde_json::to_string(&r).unwrap()})
        })
        .collect();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    let want: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g["output"], w["output"], "the golden outputs changed");
        assert_eq!(
            g["report"], w["report"],
            "report changed for {}",
            g["output"]
        );
    }
}

fn excluding(ids: &[u64]) -> AttributeOptions {
    AttributeOptions {
        excluded: ids.iter().copied().collect(),
        ..AttributeOptions::default()
    }
}

/// A plagiarist contributes an author's text before the author does. The copy map credits
/// the plagiarist; once it is taken down (excluded), the author, the next holder, gets
/// everything, at once and without a rebuild; with both excluded nobody is credited.
#[test]
fn a_takedown_passes_credit_to_the_next_holder() {
    let (_, text) = &corpus()[5];
    let (_, other) = &corpus()[20];
    let docs = vec![
        ("plagiarist".to_string(), text.clone()),
        ("other".to_string(), other.clone()),
        ("author".to_string(), text.clone()),
    ];
    let ix = index_of(&docs);
    let output = passage(text, text.len() / 3, 400);
    let attribute = |ids: &[u64]| ix.index.attribute(output, &excluding(ids)).unwrap();

    let before = attribute(&[]);
    assert_eq!(before.shares.contributions_ppm, BTreeMap::from([(0, PPM)]));
    assert!(before.excluded.is_empty());

    let after = attribute(&[0]);
    assert_eq!(after.shares.contributions_ppm, BTreeMap::from([(2, PPM)]));
    assert_eq!(after.shares.contributors_ppm["author"], PPM);
    assert_eq!(after.excluded, vec![0], "the report shows the takedown");
    for span in &after.spans {
        assert_eq!(span.credited, vec![2]);
        // The plagiarist's occurrence is still shown, marked, and owned by the author.
        let marked: Vec<(u64, bool)> = span
            .contributions
            .iter()
            .map(|c| (c.contribution, c.excluded))
            .collect();
        assert_eq!(marked, vec![(0, true), (2, false)]);
        assert!(span.contributions.iter().all(|c| c.owner == Some(2)));
    }
    let json = serde_json::to_string(&after).unwrap();
    assert!(json.contains(r#""excluded":true"#) && json.contains(r#""excluded":[0]"#));

    let neither = attribute(&[0, 2]);
    assert_eq!(
        neither.shares.rule,
        Rule::NoEvidence,
        "{:?}",
        neither.shares
    );
    assert!(neither.shares.contributions_ppm.is_empty());
    assert!(neither.spans.iter().all(|s| s.credited.is_empty()));
    assert!(neither.paraphrases.is_empty());
    assert_eq!(neither.excluded, vec![0]);

    // Excluding the later holder alone takes nothing from the owner and is not "a takedown
    // that took effect"; its occurrence is marked.
    let later = attribute(&[2]);
    assert_eq!(later.shares, before.shares);
    assert!(later.excluded.is_empty());
    assert!(later.spans[0].contributions.iter().any(|c| c.excluded));
}

/// A passage too short for a window is credited to the first holder of its exact normalised
/// content: a copier's short chunk (even re-cased, with CRLF) earns nothing, a contributor's
/// own short document stays theirs, and a takedown passes it to the next holder.
#[test]
fn a_short_passage_goes_to_the_first_holder_of_its_content() {
    let (_, text) = &corpus()[7];
    // The last words of the author's document, about 25 bytes: too short for a window.
    let tail = text.trim_end();
    let tail = &tail[char_floor(tail, tail.len() - 25)..];
    let own = "Zebras juggle kumquats.";
    let docs = vec![
        ("author".to_string(), text.clone()),
        ("carol".to_string(), own.to_string()),
        (ADVERSARY.to_string(), crlf(&tail.to_uppercase())),
        (ADVERSARY.to_string(), own.to_lowercase()),
    ];
    let ix = index_of(&docs);
    let attribute =
        |output: &str, ids: &[u64]| ix.index.attribute(output, &excluding(ids)).unwrap();

    let copied = format!("In short: {tail} That is all.");
    let r = attribute(&copied, &[]);
    assert_eq!(r.shares.rule, Rule::Paraphrase, "{:?}", r.shares);
    assert_eq!(
        r.shares.contributors_ppm,
        BTreeMap::from([("author".to_string(), PPM)])
    );
    assert!(
        r.paraphrases
            .iter()
            .all(|p| p.credited.keys().all(|&c| c == 0)),
        "{:?}",
        r.paraphrases
    );

    let theirs = format!("In short: {own} That is all.");
    let r = attribute(&theirs, &[]);
    assert_eq!(
        r.shares.contributors_ppm,
        BTreeMap::from([("carol".to_string(), PPM)])
    );
    // Carol's document taken down: the next holder of the content (here, the copy) has it,
    // as a window's credit passes on; the report names the takedown.
    let r = attribute(&theirs, &[1]);
    assert_eq!(r.excluded, vec![1]);
    assert_eq!(r.shares.contributions_ppm, BTreeMap::from([(3, PPM)]));
    // Both gone: nobody.
    let r = attribute(&theirs, &[1, 3]);
    assert_eq!(r.shares.rule, Rule::NoEvidence, "{:?}", r.shares);
}

/// Excluding contributions that hold none of the text (or that the index does not hold)
/// changes nothing: the report is byte for byte the same.
#[test]
fn excluding_unrelated_contributions_changes_nothing() {
    let ix = &base().index;
    for output in golden_outputs() {
        let plain = ix.attribute(&output, &AttributeOptions::default()).unwrap();
        let mut mentioned: BTreeSet<u64> = plain.shares.contributions_ppm.keys().copied().collect();
        for s in &plain.spans {
            mentioned.extend(&s.credited);
            mentioned.extend(s.contributions.iter().map(|c| c.contribution));
            mentioned.extend(s.contributions.iter().filter_map(|c| c.owner));
        }
        for p in &plain.paraphrases {
            mentioned.insert(p.contribution);
            mentioned.extend(p.credited.keys());
        }
        let unrelated: Vec<u64> = (0..corpus().len() as u64)
            .filter(|c| !mentioned.contains(c))
            .collect();
        assert!(!unrelated.is_empty());
        let mut ids = vec![unrelated[0], unrelated[unrelated.len() / 2], 1_000_000];
        ids.push(*unrelated.last().unwrap());
        let r = ix.attribute(&output, &excluding(&ids)).unwrap();
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            serde_json::to_string(&plain).unwrap(),
            "excluding {ids:?} changed the report of {output:?}"
        );
    }
}

/// The paraphrase path follows a takedown too: a passage credited by retrieval goes, window
/// by window, to the next holder of its content (a later copy, which the paraphrase index does
/// not even hold).
#[test]
fn a_takedown_moves_paraphrase_credit_too() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/paraphrase");
    let cases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("cases.json")).unwrap()).unwrap();
    let case = cases["positives"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "tar-description")
        .unwrap();
    let output = case["text"].as_str().unwrap();
    let plain = base()
        .index
        .attribute(output, &AttributeOptions::default())
        .unwrap();
    assert_eq!(plain.shares.rule, Rule::Paraphrase);
    let source = *plain.shares.contributions_ppm.keys().next().unwrap();
    let mut docs = corpus().clone();
    docs.push(("later".to_string(), corpus()[source as usize].1.clone()));
    let ix = index_of(&docs);
    let r = ix.index.attribute(output, &excluding(&[source])).unwrap();
    assert_eq!(r.shares.rule, Rule::Paraphrase);
    assert_eq!(
        r.shares.contributors_ppm,
        BTreeMap::from([("later".into(), PPM)])
    );
    assert_eq!(r.excluded, vec![source]);
    let copy = docs.len() as u64 - 1;
    let r = ix
        .index
        .attribute(output, &excluding(&[source, copy]))
        .unwrap();
    assert!(r
        .paraphrases
        .iter()
        .all(|p| !p.credited.contains_key(&source)));
    assert!(!r.shares.contributions_ppm.contains_key(&source));
    assert!(!r.shares.contributions_ppm.contains_key(&copy));
}

/// The slow path is charged to the budget: one step per occurrence of a window whose owner is
/// excluded, so a window held by many excluded copies cannot make a query unbounded.
#[test]
fn passing_credit_on_is_charged_to_the_budget() {
    let (_, text) = &corpus()[7];
    let quote = passage(text, text.len() / 2, 200).to_string();
    let copies = 300usize;
    let docs: Vec<(String, String)> = (0..copies)
        .map(|i| (format!("copier{i}"), format!("copy {i}\n{quote}\n")))
        .collect();
    let ix = index_of(&docs);
    let all_but_last: Vec<u64> = (0..copies as u64 - 1).collect();
    let steps = |opts: &AttributeOptions| {
        let mut budget = Budget::unlimited();
        let r = ix
            .index
            .attribute_within(&quote, opts, &mut budget)
            .unwrap();
        (budget.used(), r)
    };
    let (plain_steps, plain) = steps(&AttributeOptions::default());
    assert_eq!(plain.shares.contributors_ppm["copier0"], PPM);
    let (slow_steps, slow) = steps(&excluding(&all_but_last));
    let last = format!("copier{}", copies - 1);
    assert_eq!(slow.shares.contributors_ppm[&last], PPM);
    let windows = ix
        .index
        .credited_windows_within(
            &quote,
            &AttributeOptions::default(),
            &mut Budget::unlimited(),
        )
        .unwrap()
        .len() as u64;
    assert!(windows > 100);
    assert!(
        slow_steps >= plain_steps + windows * copies as u64,
        "{slow_steps} steps, {plain_steps} without exclusions, {windows} windows"
    );
    // A budget the plain query fits in is not enough once every window needs the slow path.
    let mut budget = Budget::steps(plain_steps + 1000);
    assert!(ix
        .index
        .attribute_within(&quote, &AttributeOptions::default(), &mut budget)
        .is_ok());
    let mut budget = Budget::steps(plain_steps + 1000);
    let err = ix
        .index
        .attribute_within(&quote, &excluding(&all_but_last), &mut budget)
        .unwrap_err();
    assert_eq!(err.code(), "E_ATTRIBUTION_BUDGET");
}

/// Phrases for small random corpora: each informative (≥ 8 distinct bytes), so windows made
/// of them are evidence, and few, so documents share windows often.
const PHRASES: [&str; 5] = [
    "quick brown fox ",
    "jumps over the lazy dog, ",
    "while seven orchards slept; ",
    "River Stone Lamp ",
    "never contributed anywhere ",
];

fn phrases(picks: &[usize]) -> String {
    picks.iter().map(|&p| PHRASES[p % PHRASES.len()]).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), .. ProptestConfig::default() })]

    /// Against brute force: for any exclusion set, every window of the output that is
    /// informative is credited exactly to the earliest non-excluded document holding it (both
    /// normalised), and windows no such document holds are not credited.
    #[test]
    fn credited_windows_match_brute_force(
        docs in proptest::collection::vec(
            (proptest::collection::vec(0usize..4, 0..8), any::<bool>()), 1..7),
        copies in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..3), 0..3),
        output in proptest::collection::vec(0usize..5, 1..10),
        mask in any::<u32>(),
    ) {
        let mut texts: Vec<String> = docs
            .iter()
            .map(|(picks, upper)| {
                let t = phrases(picks);
                if *upper { t.to_uppercase().replace(' ', "\n") } else { t }
            })
            .collect();
        // Later copies (whole, or cut) of earlier documents.
        for (which, cut) in &copies {
            let t = texts[which.index(texts.len())].clone();
            texts.push(t[t.len() * cut / 4..].to_string());
        }
        let docs: Vec<(String, String)> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("c{i}"), t.clone()))
            .collect();
        // Ids with gaps, as log indexes have.
        let id = |i: usize| 3 + 5 * i as u64;
        let ix = index_with_ids(&docs, id);
        let mut excluded: BTreeSet<u64> =
            (0..docs.len()).filter(|i| mask >> i & 1 == 1).map(id).collect();
        if mask >> 31 == 1 {
            excluded.insert(1_000_000);
        }
        let output = phrases(&output);
        let opts = AttributeOptions { excluded: excluded.clone(), ..AttributeOptions::default() };
        let got: BTreeMap<usize, u64> = ix
            .index
            .credited_windows_within(&output, &opts, &mut Budget::unlimited())
            .unwrap()
            .into_iter()
            .map(|w| (w.start, w.owner))
            .collect();
        let norm_docs: Vec<Vec<u8>> = texts.iter().map(|t| normalize(t).bytes).collect();
        let out = normalize(&output).bytes;
        let w = 32;
        let mut want = BTreeMap::new();
        for s in 0..(out.len() + 1).saturating_sub(w) {
            let win = &out[s..s + w];
            if !informative(win) {
                continue;
            }
            let owner = (0..norm_docs.len())
                .filter(|&i| !excluded.contains(&id(i)))
                .find(|&i| norm_docs[i].windows(w).any(|x| x == win));
            if let Some(i) = owner {
                want.insert(s, id(i));
            }
        }
        prop_assert_eq!(got, want);
    }
}
