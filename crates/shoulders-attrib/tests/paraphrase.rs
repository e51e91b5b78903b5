//! Paraphrase layer tests: the evaluation set (recall and false credit at the default
//! threshold), the adversary property (junk and bag-of-words copies earn nothing and take
//! nothing), the duplicate rule, build/open/limits, incremental appends (same answers as a
//! rebuild, log order, a stale metadata file after a crash), and ignored benchmarks on a
//! generated 100 MB corpus.
//!
//! The corpus (`tests/data/paraphrase/corpus/`, see its README) is real text nobody on this
//! project wrote; each file is one contribution, numbered `100 + i` in file-name order.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use proptest::prelude::*;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use shoulders_attrib::index::{DocInput, IndexError};
use shoulders_attrib::paraphrase::{
    append, split_passages, ParaphraseIndex, ParaphraseMatch, ParaphraseOptions,
    DEFAULT_MAX_MATCHES, DEFAULT_MIN_CONFIDENCE_PPM, MAX_QUERY_BYTES, MERGE_MIN_NUM_SEGMENTS,
};

/// Recall floor at the default threshold (measured: 53 of 54 = 98.1%).
const MIN_RECALL_PPM: u64 = 920_000;
/// Ceiling on cases with a false credit (measured: 0 of 97).
const MAX_FALSE_CREDIT_CASES: usize = 1;
/// Precision floor: share of credits that go to a true source (measured: 100%).
const MIN_PRECISION_PPM: u64 = 970_000;
/// First contribution id of the adversary (above every corpus contribution).
const ADVERSARY: u64 = 10_000;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/paraphrase")
}

struct Corpus {
    names: Vec<String>,
    docs: Vec<DocInput>,
}

impl Corpus {
    fn contribution(&self, name: &str) -> u64 {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("{name} is not in the corpus"));
        100 + i as u64
    }

    fn name(&self, contribution: u64) -> String {
        contribution
            .checked_sub(100)
            .and_then(|i| self.names.get(i as usize))
            .cloned()
            .unwrap_or_else(|| format!("#{contribution}"))
    }

    fn text(&self, contribution: u64) -> &str {
        let doc = self
            .docs
            .iter()
            .find(|d| d.contribution == contribution)
            .expect("a corpus contribution");
        std::str::from_utf8(&doc.bytes).expect("UTF-8 corpus")
    }
}

fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = data_dir().join("corpus");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .expect("corpus dir")
            .map(|e| e.expect("entry").file_name().into_string().expect("name"))
            .filter(|n| n.ends_with(".txt"))
            .collect();
        names.sort();
        let docs = names
            .iter()
            .enumerate()
            .map(|(i, n)| DocInput {
                contribution: 100 + i as u64,
                bytes: std::fs::read(dir.join(n)).expect("corpus file"),
            })
            .collect();
        Corpus { names, docs }
    })
}

#[derive(Deserialize)]
struct Positive {
    id: String,
    source: String,
    passage: String,
    text: String,
    #[serde(default)]
    also: Vec<String>,
}

#[derive(Deserialize)]
struct Negative {
    id: String,
    kind: String,
    text: String,
}

#[derive(Deserialize)]
struct Cases {
    positives: Vec<Positive>,
    negatives: Vec<Negative>,
}

fn cases() -> &'static Cases {
    static CASES: OnceLock<Cases> = OnceLock::new();
    CASES.get_or_init(|| {
        let bytes = std::fs::read(data_dir().join("cases.json")).expect("cases.json");
        serde_json::from_slice(&bytes).expect("valid cases.json")
    })
}

fn build(dir: &Path, docs: &[DocInput]) -> ParaphraseIndex {
    ParaphraseIndex::build(dir, docs.iter().cloned().map(Ok)).expect("build");
    ParaphraseIndex::open(dir).expect("open")
}

/// The corpus index, built once for the tests of this binary.
fn corpus_index() -> &'static ParaphraseIndex {
    static INDEX: OnceLock<(tempfile::TempDir, ParaphraseIndex)> = OnceLock::new();
    &INDEX
        .get_or_init(|| {
            let tmp = tempfile::tempdir().expect("tempdir");
            let index = build(&tmp.path().join("para"), &corpus().docs);
            (tmp, index)
        })
        .1
}

/// Byte range, in `text`, of `excerpt` compared with all whitespace runs collapsed.
fn locate(text: &str, excerpt: &str) -> Option<(usize, usize)> {
    let mut norm = String::new();
    let mut map = Vec::new(); // byte offset in text of each byte of norm
    let mut in_space = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if !in_space && !norm.is_empty() {
                norm.push(' ');
                map.push(i);
            }
            in_space = true;
        } else {
            in_space = false;
            let before = norm.len();
            norm.push(c);
            map.extend((0..norm.len() - before).map(|k| i + k));
        }
    }
    let want: String = excerpt.split_whitespace().collect::<Vec<_>>().join(" ");
    let at = norm.find(&want)?;
    Some((map[at], map[at + want.len() - 1] + 1))
}

#[test]
fn cases_are_well_formed() {
    let c = cases();
    let corpus = corpus();
    assert!(c.positives.len() >= 40, "at least 40 paraphrases");
    assert!(c.negatives.len() >= 40, "at least 40 negatives");
    let mut ids = BTreeSet::new();
    for p in &c.positives {
        assert!(ids.insert(p.id.clone()), "duplicate id {}", p.id);
        let n = p.text.len();
        assert!((150..=500).contains(&n), "{}: {n} bytes", p.id);
        let src = corpus.text(corpus.contribution(&p.source));
        assert!(
            locate(src, &p.passage).is_some(),
            "{}: passage not in source",
            p.id
        );
        for a in &p.also {
            corpus.contribution(a);
        }
    }
    for n in &c.negatives {
        assert!(ids.insert(n.id.clone()), "duplicate id {}", n.id);
        assert!((150..=500).contains(&n.text.len()), "{}", n.id);
    }
    let total: usize = corpus.docs.iter().map(|d| d.bytes.len()).sum();
    assert!(total <= 400 << 10, "corpus is {total} bytes");
    assert!((10..=20).contains(&corpus.docs.len()));
}

fn show(corpus: &Corpus, m: &ParaphraseMatch) -> String {
    format!(
        "{}@{}..{} {}",
        corpus.name(m.contribution),
        m.start,
        m.end,
        m.confidence_ppm
    )
}

#[test]
fn evaluation_set_at_the_default_threshold() {
    let corpus = corpus();
    let index = corpus_index();
    let opts = ParaphraseOptions::default();
    assert_eq!(opts.min_confidence_ppm, DEFAULT_MIN_CONFIDENCE_PPM);
    assert_eq!(opts.max_matches, DEFAULT_MAX_MATCHES);
    let (mut hits, mut passage_hits, mut twins, mut false_cases) = (0usize, 0usize, 0usize, 0usize);
    let (mut credits, mut correct) = (0usize, 0usize);
    println!(
        "{:<26} {:<24} {:>8} {:>8}  verdict   credited (file@start..end ppm)",
        "case", "expected", "best", "source"
    );
    for p in &cases().positives {
        let src = corpus.contribution(&p.source);
        let also: Vec<u64> = p.also.iter().map(|a| corpus.contribution(a)).collect();
        let got = index.query(&p.text, &opts).expect("query");
        let cands = index.candidates(&p.text).expect("candidates");
        let best = cands.iter().map(|c| c.passage.confidence_ppm).max();
        let source_best = cands
            .iter()
            .filter(|c| c.passage.contribution == src)
            .map(|c| c.passage.confidence_ppm)
            .max();
        let hit = got.iter().any(|m| m.contribution == src);
        let wrong = got
            .iter()
            .any(|m| m.contribution != src && !also.contains(&m.contribution));
        // The credited passage of the source covers the paraphrased excerpt.
        let (ps, pe) = locate(corpus.text(src), &p.passage).expect("excerpt");
        let passage_hit = got
            .iter()
            .any(|m| m.contribution == src && (m.start as usize) < pe && ps < m.end as usize);
        hits += usize::from(hit);
        passage_hits += usize::from(passage_hit);
        false_cases += usize::from(wrong);
        for m in &got {
            if m.contribution == src {
                credits += 1;
                correct += 1;
            } else if !also.contains(&m.contribution) {
                credits += 1;
            }
        }
        let twin = !hit && got.iter().any(|m| also.contains(&m.contribution));
        twins += usize::from(twin);
        let verdict = match (hit, wrong, twin) {
            (true, false, _) if passage_hit => "hit",
            (true, false, _) => "hit(psg)",
            (true, true, _) => "hit+FALSE",
            (false, true, _) => "FALSE",
            (false, false, true) => "twin",
            (false, false, false) => "miss",
        };
        let shown: Vec<String> = got.iter().map(|m| show(corpus, m)).collect();
        println!(
            "{:<26} {:<24} {:>8} {:>8}  {:<9} {}",
            p.id,
            p.source,
            best.unwrap_or(0),
            source_best.unwrap_or(0),
            verdict,
            shown.join(", ")
        );
    }
    let mut negative_false = 0;
    for n in &cases().negatives {
        let got = index.query(&n.text, &opts).expect("query");
        let best = index
            .candidates(&n.text)
            .expect("candidates")
            .iter()
            .map(|c| c.passage.confidence_ppm)
            .max();
        credits += got.len();
        negative_false += usize::from(!got.is_empty());
        let shown: Vec<String> = got.iter().map(|m| show(corpus, m)).collect();
        println!(
            "{:<26} {:<24} {:>8} {:>8}  {:<9} {}",
            n.id,
            "(none)",
            best.unwrap_or(0),
            "-",
            if got.is_empty() { "ok" } else { "FALSE" },
            shown.join(", ")
        );
        let _ = &n.kind;
    }
    false_cases += negative_false;
    let npos = cases().positives.len();
    let recall_ppm = hits as u64 * 1_000_000 / npos as u64;
    let precision_ppm = if credits == 0 {
        1_000_000
    } else {
        correct as u64 * 1_000_000 / credits as u64
    };
    println!(
        "threshold {DEFAULT_MIN_CONFIDENCE_PPM} ppm, max {DEFAULT_MAX_MATCHES} matches: \
         recall {hits}/{npos} = {:.1}% (passage-level {passage_hits}/{npos}; {twins} more \
         credited to a documented near-identical twin), \
         precision {correct}/{credits} = {:.1}%, false credits: {false_cases} cases \
         ({negative_false} of {} negatives, {} paraphrases credited to a wrong source)",
        recall_ppm as f64 / 1e4,
        precision_ppm as f64 / 1e4,
        cases().negatives.len(),
        false_cases - negative_false,
    );
    assert!(
        recall_ppm >= MIN_RECALL_PPM,
        "recall {recall_ppm} ppm < {MIN_RECALL_PPM}"
    );
    assert!(
        false_cases <= MAX_FALSE_CREDIT_CASES,
        "{false_cases} cases with false credit"
    );
    assert!(
        precision_ppm >= MIN_PRECISION_PPM,
        "precision {precision_ppm} ppm"
    );
}

/// Words of the whole corpus, most frequent first (for common-word junk).
fn common_words() -> &'static Vec<String> {
    static WORDS: OnceLock<Vec<String>> = OnceLock::new();
    WORDS.get_or_init(|| {
        let mut counts = std::collections::HashMap::<String, usize>::new();
        for d in &corpus().docs {
            for w in std::str::from_utf8(&d.bytes)
                .expect("utf8")
                .split_whitespace()
            {
                let w = w
                    .trim_matches(|c: char| !c.is_alphanumeric())
                    .to_lowercase();
                if w.len() > 1 {
                    *counts.entry(w).or_default() += 1;
                }
            }
        }
        let mut v: Vec<(String, usize)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter().take(200).map(|(w, _)| w).collect()
    })
}

fn shuffle<T>(v: &mut [T], rng: &mut ChaCha8Rng) {
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[derive(Debug, Clone)]
enum Junk {
    /// Shuffled words drawn from the 200 most common corpus words.
    CommonWords { seed: u64, words: usize },
    /// Random letter strings.
    RandomWords { seed: u64, words: usize },
    /// A bag-of-words shuffle of the passage of the corpus credited for a paraphrase case.
    ShuffledSource { case: usize, seed: u64 },
    /// A bag-of-words shuffle of any corpus passage.
    ShuffledPassage {
        doc: usize,
        passage: usize,
        seed: u64,
    },
}

fn junk_text(j: &Junk, baseline: &[Vec<ParaphraseMatch>]) -> String {
    let corpus = corpus();
    let shuffled_words = |text: &str, seed: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut words: Vec<&str> = text.split_whitespace().collect();
        shuffle(&mut words, &mut rng);
        words.join(" ")
    };
    match *j {
        Junk::CommonWords { seed, words } => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let common = common_words();
            (0..words)
                .map(|_| common[(rng.next_u64() % common.len() as u64) as usize].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        }
        Junk::RandomWords { seed, words } => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            (0..words)
                .map(|_| {
                    let len = 3 + rng.next_u64() % 8;
                    (0..len)
                        .map(|_| char::from(b'a' + (rng.next_u64() % 26) as u8))
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
                .join(" ")
        }
        Junk::ShuffledSource { case, seed } => {
            let credited = &baseline[case % baseline.len()];
            match credited.first() {
                Some(m) => {
                    let text = corpus.text(m.contribution);
                    shuffled_words(&text[m.start as usize..m.end as usize], seed)
                }
                None => String::new(),
            }
        }
        Junk::ShuffledPassage { doc, passage, seed } => {
            let d = &corpus.docs[doc % corpus.docs.len()];
            let text = std::str::from_utf8(&d.bytes).expect("utf8");
            let passages = split_passages(text);
            let r = passages[passage % passages.len()].clone();
            shuffled_words(&text[r], seed)
        }
    }
}

fn junk_strategy() -> impl Strategy<Value = Junk> {
    prop_oneof![
        (any::<u64>(), 20usize..150).prop_map(|(seed, words)| Junk::CommonWords { seed, words }),
        (any::<u64>(), 20usize..150).prop_map(|(seed, words)| Junk::RandomWords { seed, words }),
        (0usize..1000, any::<u64>()).prop_map(|(case, seed)| Junk::ShuffledSource { case, seed }),
        (0usize..100, 0usize..1000, any::<u64>())
            .prop_map(|(doc, passage, seed)| Junk::ShuffledPassage { doc, passage, seed }),
    ]
}

/// The matches of every paraphrase case on the corpus index alone.
fn baseline() -> &'static Vec<Vec<ParaphraseMatch>> {
    static BASELINE: OnceLock<Vec<Vec<ParaphraseMatch>>> = OnceLock::new();
    BASELINE.get_or_init(|| {
        let index = corpus_index();
        cases()
            .positives
            .iter()
            .map(|p| {
                index
                    .query(&p.text, &ParaphraseOptions::default())
                    .expect("query")
            })
            .collect()
    })
}

/// Share (ppm) of the confidence credited to contributions `>= ADVERSARY`.
fn adversary_share_ppm(got: &[ParaphraseMatch]) -> u64 {
    let total: u64 = got.iter().map(|m| u64::from(m.confidence_ppm)).sum();
    let adv: u64 = got
        .iter()
        .filter(|m| m.contribution >= ADVERSARY)
        .map(|m| u64::from(m.confidence_ppm))
        .sum();
    (adv * 1_000_000).checked_div(total).unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Junk and bag-of-words shuffled copies contributed later by an adversary never raise the
    /// adversary's credited share for a paraphrase and never remove its true source's credit.
    #[test]
    fn adversary_junk_and_shuffled_copies_earn_nothing(
        junk in proptest::collection::vec(junk_strategy(), 1..8)
    ) {
        let corpus = corpus();
        let base = baseline();
        let mut docs = corpus.docs.clone();
        for (k, j) in junk.iter().enumerate() {
            docs.push(DocInput { contribution: ADVERSARY + k as u64, bytes: junk_text(j, base).into_bytes() });
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let index = build(&tmp.path().join("para"), &docs);
        for (p, before) in cases().positives.iter().zip(base) {
            let src = corpus.contribution(&p.source);
            let after = index.query(&p.text, &ParaphraseOptions::default()).expect("query");
            prop_assert!(
                adversary_share_ppm(&after) <= adversary_share_ppm(before),
                "{}: adversary credited: {after:?}", p.id
            );
            if before.iter().any(|m| m.contribution == src) {
                prop_assert!(
                    after.iter().any(|m| m.contribution == src),
                    "{}: true source lost its credit: {before:?} -> {after:?}", p.id
                );
            }
        }
    }
}

#[test]
fn a_later_shuffled_copy_never_takes_the_credit() {
    // The copy is indexed when it comes first in the input but has the higher id, and the
    // original is found through the duplicate search; a reworded near copy (one word changed)
    // is indexed but still credited to the original.
    let corpus = corpus();
    let p = cases()
        .positives
        .iter()
        .find(|p| p.id == "apache-trademarks")
        .expect("case");
    let src = corpus.contribution(&p.source);
    let text = corpus.text(src);
    let base = corpus_index()
        .query(&p.text, &ParaphraseOptions::default())
        .expect("query");
    let m = base
        .iter()
        .find(|m| m.contribution == src)
        .expect("credited");
    let passage = &text[m.start as usize..m.end as usize];
    let mut words: Vec<&str> = passage.split_whitespace().collect();
    words.reverse();
    let shuffled = words.join(" ");
    let near = format!("{shuffled} zebra");
    let mut docs = vec![
        DocInput {
            contribution: ADVERSARY,
            bytes: shuffled.clone().into_bytes(),
        },
        DocInput {
            contribution: ADVERSARY + 1,
            bytes: near.into_bytes(),
        },
    ];
    docs.extend(corpus.docs.iter().cloned());
    let tmp = tempfile::tempdir().expect("tempdir");
    let index = build(&tmp.path().join("para"), &docs);
    let got = index
        .query(&p.text, &ParaphraseOptions::default())
        .expect("query");
    assert!(got.iter().any(|m| m.contribution == src), "{got:?}");
    assert!(got.iter().all(|m| m.contribution < ADVERSARY), "{got:?}");
    // Alone, the copy would be credited: the rule, not the threshold, stops it.
    let alone = build(
        &tmp.path().join("alone"),
        &[DocInput {
            contribution: ADVERSARY,
            bytes: shuffled.into_bytes(),
        }],
    );
    let got = alone
        .query(&p.text, &ParaphraseOptions::default())
        .expect("query");
    assert!(
        got.iter().any(|m| m.contribution == ADVERSARY),
        "the shuffled copy alone is credited: {got:?}"
    );
}

#[test]
fn exact_term_set_copies_are_not_indexed() {
    let a = "Alpha beta gamma delta epsilon, zeta eta theta.".to_string();
    let docs = vec![
        DocInput {
            contribution: 1,
            bytes: a.clone().into_bytes(),
        },
        DocInput {
            contribution: 2,
            bytes: "THETA eta zeta; epsilon delta gamma beta alpha".into(),
        },
        DocInput {
            contribution: 3,
            bytes: "alpha beta gamma delta epsilon zeta eta iota".into(),
        },
    ];
    let tmp = tempfile::tempdir().expect("tempdir");
    let info = ParaphraseIndex::build(&tmp.path().join("p"), docs.into_iter().map(Ok)).expect("b");
    assert_eq!(info.passage_count, 2);
    assert_eq!(info.duplicate_passages, 1);
    let index = ParaphraseIndex::open(&tmp.path().join("p")).expect("open");
    let opts = ParaphraseOptions {
        min_confidence_ppm: 0,
        max_matches: 10,
    };
    let got = index.query(&a, &opts).expect("query");
    // 3 shares 7 of 9 terms with 1 (Jaccard 77.8% < 80%): not a near duplicate, both stay.
    let ids: Vec<u64> = got.iter().map(|m| m.contribution).collect();
    assert_eq!(ids, vec![1, 3], "{got:?}");
    assert!(got[0].confidence_ppm > got[1].confidence_ppm);
    assert_eq!(got[0].confidence_ppm, 1_000_000);
}

#[test]
fn build_open_replace_and_limits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("p");
    let doc = |c: u64, s: &str| {
        Ok(DocInput {
            contribution: c,
            bytes: s.as_bytes().to_vec(),
        })
    };
    // Empty input, invalid UTF-8, an error from the source.
    let e = ParaphraseIndex::build(&dir, std::iter::empty()).unwrap_err();
    assert_eq!(e.code(), "E_INDEX_EMPTY");
    let e = ParaphraseIndex::build(
        &dir,
        [
            doc(1, "fine"),
            Ok(DocInput {
                contribution: 2,
                bytes: vec![b'a', 0xFF],
            }),
        ]
        .into_iter(),
    )
    .unwrap_err();
    assert!(matches!(
        e,
        IndexError::InvalidDocument { doc: 1, offset: 1 }
    ));
    let e = ParaphraseIndex::build(&dir, [Err(IndexError::Empty)].into_iter()).unwrap_err();
    assert_eq!(e.code(), "E_INDEX_EMPTY");
    assert!(!dir.exists(), "failed builds leave nothing");
    assert_eq!(
        std::fs::read_dir(tmp.path()).expect("ls").count(),
        0,
        "no temporary left"
    );
    // Missing index.
    assert_eq!(
        ParaphraseIndex::open(&dir).unwrap_err().code(),
        "E_INDEX_CORRUPT"
    );

    let info = ParaphraseIndex::build(
        &dir,
        [doc(7, "The heron waits in the reeds for the silver fish.")].into_iter(),
    )
    .expect("build");
    assert_eq!((info.doc_count, info.passage_count), (1, 1));
    let first = ParaphraseIndex::open(&dir).expect("open");
    let q = "a heron waiting among reeds for silver fish";
    assert_eq!(
        first.query(q, &ParaphraseOptions::default()).expect("q")[0].contribution,
        7
    );
    // Replace: the new index answers, the directory holds no leftovers.
    ParaphraseIndex::build(
        &dir,
        [doc(8, "Completely different words here.")].into_iter(),
    )
    .expect("rebuild");
    let second = ParaphraseIndex::open(&dir).expect("open");
    assert!(second
        .query(q, &ParaphraseOptions::default())
        .expect("q")
        .is_empty());
    assert_eq!(std::fs::read_dir(tmp.path()).expect("ls").count(), 1);

    // Query limits.
    let big = "a".repeat(MAX_QUERY_BYTES + 1);
    let e = second
        .query(&big, &ParaphraseOptions::default())
        .unwrap_err();
    assert_eq!(e.code(), "E_QUERY_TOO_LARGE");
    assert!(
        matches!(e, IndexError::QueryTooLarge { len, limit } if len == MAX_QUERY_BYTES + 1 && limit == MAX_QUERY_BYTES)
    );
    let ok = "word ".repeat(MAX_QUERY_BYTES / 5);
    assert!(second.query(&ok, &ParaphraseOptions::default()).is_ok());
    assert!(second
        .query("", &ParaphraseOptions::default())
        .expect("q")
        .is_empty());
    assert!(second
        .query("the and of", &ParaphraseOptions::default())
        .expect("q")
        .is_empty());

    // A tampered metadata file is refused.
    std::fs::write(dir.join("shoulders-paraphrase.json"), b"{}").expect("write");
    assert_eq!(
        ParaphraseIndex::open(&dir).unwrap_err().code(),
        "E_INDEX_CORRUPT"
    );
}

#[test]
fn queries_are_deterministic_across_builds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let other = build(&tmp.path().join("again"), &corpus().docs);
    for p in cases().positives.iter().take(10) {
        let a = corpus_index()
            .query(&p.text, &ParaphraseOptions::default())
            .expect("q");
        let b = other
            .query(&p.text, &ParaphraseOptions::default())
            .expect("q");
        let key = |v: &[ParaphraseMatch]| {
            v.iter()
                .map(|m| (m.contribution, m.start, m.end, m.confidence_ppm))
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&a), key(&b), "{}", p.id);
    }
}

/// Generated corpus of about `target` bytes, in documents of 8 paragraphs of 2-6 sentences.
/// 19 words in 20 are drawn from the real corpus's word frequencies (stop words included);
/// 1 in 20 is a made-up word from a Zipf-distributed vocabulary of 200 000 (a large corpus's
/// long tail of rare terms).
fn generated_docs(target: usize, seed: u64) -> impl Iterator<Item = Result<DocInput, IndexError>> {
    let tokens: Vec<String> = corpus()
        .docs
        .iter()
        .flat_map(|d| {
            std::str::from_utf8(&d.bytes)
                .expect("utf8")
                .split_whitespace()
                .map(|w| {
                    w.trim_matches(|c: char| !c.is_alphanumeric())
                        .to_lowercase()
                })
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut made = 0usize;
    let mut id = 0u64;
    std::iter::from_fn(move || {
        if made >= target {
            return None;
        }
        let mut doc = String::new();
        for _ in 0..8 {
            let sentences = 2 + rng.next_u64() % 5;
            for _ in 0..sentences {
                let words = 6 + rng.next_u64() % 14;
                for k in 0..words {
                    if k > 0 {
                        doc.push(' ');
                    }
                    if rng.next_u64() % 20 == 0 {
                        // Zipf (s = 1): index = 200000^u, u uniform.
                        let u = (rng.next_u64() % 1_000_000) as f64 / 1e6;
                        let mut i = 200_000f64.powf(u) as u64;
                        doc.push('q');
                        while i > 0 {
                            doc.push(char::from(b'a' + (i % 26) as u8));
                            i /= 26;
                        }
                    } else {
                        doc.push_str(&tokens[(rng.next_u64() % tokens.len() as u64) as usize]);
                    }
                }
                doc.push_str(". ");
            }
            doc.push_str("\n\n");
        }
        made += doc.len();
        id += 1;
        Some(Ok(DocInput {
            contribution: id,
            bytes: doc.into_bytes(),
        }))
    })
}

/// Build time and query latency on a generated 100 MB corpus (plus the real corpus):
/// `cargo test -p shoulders-attrib --release --test paraphrase -- --ignored --nocapture`.
#[test]
#[ignore]
fn benchmark_100_mb() {
    let target: usize = std::env::var("PARA_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100 << 20);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("p");
    let started = Instant::now();
    let docs = generated_docs(target, 42).chain(corpus().docs.iter().cloned().map(|mut d| {
        d.contribution += 1 << 32;
        Ok(d)
    }));
    let info = ParaphraseIndex::build(&dir, docs).expect("build");
    let build_s = started.elapsed().as_secs_f64();
    let index = ParaphraseIndex::open(&dir).expect("open");
    println!(
        "built {} docs, {} bytes, {} passages in {build_s:.1} s",
        info.doc_count, info.doc_bytes, info.passage_count
    );
    // Queries: the evaluation cases (150-500 bytes) and 512-byte windows of generated text.
    let mut queries: Vec<String> = cases()
        .positives
        .iter()
        .map(|p| p.text.clone())
        .chain(cases().negatives.iter().map(|n| n.text.clone()))
        .collect();
    for d in generated_docs(200 * 4096, 7).take(200) {
        let d = d.expect("doc");
        let s = String::from_utf8(d.bytes).expect("utf8");
        let mut end = 512.min(s.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        queries.push(s[..end].to_string());
    }
    let opts = ParaphraseOptions::default();
    let mut micros: Vec<u64> = Vec::new();
    for q in &queries {
        let t = Instant::now();
        let _ = index.query(q, &opts).expect("query");
        micros.push(t.elapsed().as_micros() as u64);
    }
    micros.sort_unstable();
    let pct = |p: usize| micros[(micros.len() * p / 100).min(micros.len() - 1)] as f64 / 1000.0;
    println!(
        "{} queries (wall clock): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        micros.len(),
        pct(50),
        pct(99),
        pct(100)
    );
}

/// Every answer of `index` for the evaluation cases, exactly (BM25 scores included, as their
/// shortest round-trip decimal): the credited passages at the default options and at no
/// threshold, and every candidate with its evidence.
fn answers(index: &ParaphraseIndex) -> Vec<String> {
    let all = ParaphraseOptions {
        min_confidence_ppm: 0,
        max_matches: 20,
    };
    cases()
        .positives
        .iter()
        .map(|p| p.text.as_str())
        .chain(cases().negatives.iter().map(|n| n.text.as_str()))
        .map(|text| {
            format!(
                "{:?}\n{:?}\n{:?}",
                index.query(text, &ParaphraseOptions::default()).expect("q"),
                index.query(text, &all).expect("q"),
                index.candidates(text).expect("candidates")
            )
        })
        .collect()
}

/// The corpus with its texts in an order drawn from `seed` (contributions `100 + i` in input
/// order), then later copies: exact copies and upper-cased copies of some documents (every
/// passage a term-set duplicate) and a junk document.
fn append_corpus(seed: u64) -> Vec<DocInput> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut texts: Vec<Vec<u8>> = corpus().docs.iter().map(|d| d.bytes.clone()).collect();
    if seed != 0 {
        shuffle(&mut texts, &mut rng);
    }
    let n = texts.len();
    for k in 0..3 {
        let i = (rng.next_u64() % n as u64) as usize;
        let t = texts[i].clone();
        texts.push(if k == 1 { t.to_ascii_uppercase() } else { t });
    }
    texts.push(junk_text(&Junk::CommonWords { seed, words: 120 }, &[]).into_bytes());
    texts
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| DocInput {
            contribution: 100 + i as u64,
            bytes,
        })
        .collect()
}

/// Building over documents `[0, k)` then appending the rest in batches answers every query
/// exactly as a build over all of them, with the same metadata; so do the metadata files.
#[test]
fn appends_answer_exactly_as_a_rebuild() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // (seed, documents built, sizes of the appended batches; the last one takes the rest).
    let plans: [(u64, usize, &[usize]); 4] = [
        (0, 16, &[1, 0, 1, 1, 1]),
        (1, 10, &[usize::MAX]),
        (2, 1, &[2, 2, 2, 2, 2, 2, 2, 2, 2, 2]),
        (3, 5, &[3, 7]),
    ];
    for (seed, k, batches) in plans {
        let docs = append_corpus(seed);
        let full_dir = tmp.path().join(format!("full-{seed}"));
        let full_info =
            ParaphraseIndex::build(&full_dir, docs.iter().cloned().map(Ok)).expect("build");
        assert!(
            full_info.duplicate_passages > 0,
            "the copies are duplicates"
        );
        let dir = tmp.path().join(format!("inc-{seed}"));
        ParaphraseIndex::build(&dir, docs[..k].iter().cloned().map(Ok)).expect("build");
        let mut at = k;
        let mut segments_max = 0;
        for &b in batches {
            let end = at.saturating_add(b).min(docs.len());
            let info = append(&dir, docs[at..end].iter().cloned().map(Ok)).expect("append");
            assert_eq!(info.doc_count, end as u64);
            assert_eq!(&info, ParaphraseIndex::open(&dir).expect("open").info());
            let segments = tantivy::Index::open_in_dir(&dir)
                .expect("tantivy")
                .searchable_segment_ids()
                .expect("segments")
                .len();
            segments_max = segments_max.max(segments);
            assert!(segments <= MERGE_MIN_NUM_SEGMENTS, "{segments} segments");
            at = end;
        }
        let info = append(&dir, docs[at..].iter().cloned().map(Ok)).expect("append the rest");
        assert_eq!(info, full_info, "seed {seed}");
        let read = |d: &Path| std::fs::read(d.join("shoulders-paraphrase.json")).expect("meta");
        assert_eq!(read(&dir), read(&full_dir), "seed {seed}");
        let full = ParaphraseIndex::open(&full_dir).expect("open");
        let inc = ParaphraseIndex::open(&dir).expect("open");
        assert_eq!(inc.info(), full.info());
        let (a, b) = (answers(&inc), answers(&full));
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x, y, "seed {seed}, case {i}");
        }
        println!(
            "seed {seed}: built {k}, appended {} documents in {} batches; {} passages, {} \
             duplicates; at most {segments_max} segments; {} answers identical",
            docs.len() - k,
            batches.len() + 1,
            info.passage_count,
            info.duplicate_passages,
            a.len()
        );
    }
}

#[test]
fn appends_refuse_earlier_contributions_and_bad_input_and_change_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("p");
    let docs = &corpus().docs;
    ParaphraseIndex::build(&dir, docs[..4].iter().cloned().map(Ok)).expect("build");
    let before = ParaphraseIndex::open(&dir).expect("open");
    let answers_before = answers(&before);
    let last = docs[3].contribution;
    let doc = |contribution: u64, bytes: &[u8]| DocInput {
        contribution,
        bytes: bytes.to_vec(),
    };
    let ok = doc(
        last + 1,
        b"The heron waits in the reeds for the silver fish.",
    );
    // A later document, then one not later than the index: nothing is committed.
    for bad in [last, last - 1, 0] {
        let e = append(
            &dir,
            [Ok(ok.clone()), Ok(doc(bad, b"An earlier document."))].into_iter(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "E_INDEX_ORDER", "{e}");
        assert!(
            matches!(e, IndexError::OutOfOrder { contribution, indexed } if contribution == bad && indexed == last)
        );
    }
    // Invalid UTF-8 (numbered among all documents), an error from the source.
    let e = append(
        &dir,
        [Ok(ok.clone()), Ok(doc(last + 2, &[b'a', 0xFF]))].into_iter(),
    )
    .unwrap_err();
    assert!(
        matches!(e, IndexError::InvalidDocument { doc: 5, offset: 1 }),
        "{e}"
    );
    let e = append(&dir, [Ok(ok.clone()), Err(IndexError::Empty)].into_iter()).unwrap_err();
    assert_eq!(e.code(), "E_INDEX_EMPTY");
    let after = ParaphraseIndex::open(&dir).expect("open");
    assert_eq!(after.info(), before.info());
    assert_eq!(answers(&after), answers_before);
    // Nothing to add changes nothing; a missing index is corrupt.
    assert_eq!(
        &append(&dir, std::iter::empty()).expect("empty"),
        before.info()
    );
    assert_eq!(
        append(&tmp.path().join("none"), std::iter::empty())
            .unwrap_err()
            .code(),
        "E_INDEX_CORRUPT"
    );
    // While another writer holds the index, an append is refused as busy (E_INDEX_IO).
    let held = tantivy::Index::open_in_dir(&dir).expect("tantivy");
    let writer: tantivy::IndexWriter = held.writer_with_num_threads(1, 15 << 20).expect("w");
    let e = append(&dir, [Ok(ok.clone())].into_iter()).unwrap_err();
    assert_eq!(e.code(), "E_INDEX_IO", "{e}");
    drop(writer);
    // In order it is taken, once: the same contribution again is refused.
    let info = append(&dir, [Ok(ok.clone())].into_iter()).expect("append");
    assert_eq!((info.doc_count, info.max_contribution), (5, last + 1));
    let got = ParaphraseIndex::open(&dir)
        .expect("open")
        .query(
            "a heron waiting among reeds for silver fish",
            &ParaphraseOptions::default(),
        )
        .expect("q");
    assert_eq!(got[0].contribution, last + 1);
    let e = append(&dir, [Ok(ok)].into_iter()).unwrap_err();
    assert_eq!(e.code(), "E_INDEX_ORDER");
}

/// A crash between the commit of an append and the rename of its metadata file leaves that
/// file one commit behind: the index opens with the commit's metadata and answers as a
/// rebuild; the next append rewrites the file. Any other disagreement is refused.
#[test]
fn a_stale_metadata_file_after_a_crash_is_repaired() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("p");
    let meta = dir.join("shoulders-paraphrase.json");
    let docs = &corpus().docs;
    ParaphraseIndex::build(&dir, docs[..10].iter().cloned().map(Ok)).expect("build");
    let stale = std::fs::read(&meta).expect("meta");
    let info = append(&dir, docs[10..12].iter().cloned().map(Ok)).expect("append");
    let current = std::fs::read(&meta).expect("meta");
    assert_ne!(stale, current);
    // The crash: the old file is still in place, a half-written temporary beside it.
    std::fs::write(&meta, &stale).expect("write");
    std::fs::write(dir.join("shoulders-paraphrase.json.tmp"), b"{\"form").expect("write");
    let opened = ParaphraseIndex::open(&dir).expect("open");
    assert_eq!(opened.info(), &info);
    let full = build(&tmp.path().join("full"), &docs[..12]);
    assert_eq!(answers(&opened), answers(&full));
    assert_eq!(
        std::fs::read(&meta).expect("meta"),
        stale,
        "open writes nothing"
    );
    // The next append (even of nothing) repairs the file.
    assert_eq!(append(&dir, std::iter::empty()).expect("repair"), info);
    assert_eq!(std::fs::read(&meta).expect("meta"), current);
    assert!(!dir.join("shoulders-paraphrase.json.tmp").exists());
    // A file ahead of the commit, or from another index, is refused by open and append.
    let mut ahead: serde_json::Value = serde_json::from_slice(&current).expect("json");
    ahead["doc_count"] = serde_json::json!(info.doc_count + 1);
    let mut other: serde_json::Value = serde_json::from_slice(&stale).expect("json");
    other["max_contribution"] = serde_json::json!(info.max_contribution + 5);
    for bad in [ahead, other] {
        std::fs::write(&meta, serde_json::to_vec(&bad).expect("json")).expect("write");
        let e = ParaphraseIndex::open(&dir).unwrap_err();
        assert_eq!(e.code(), "E_INDEX_CORRUPT");
        assert!(
            e.to_string().contains("disagrees with the last commit"),
            "{e}"
        );
        let e = append(&dir, std::iter::empty()).unwrap_err();
        assert_eq!(e.code(), "E_INDEX_CORRUPT");
    }
    // An index of the previous format is refused with a hint.
    let mut v1: serde_json::Value = serde_json::from_slice(&current).expect("json");
    v1["version"] = serde_json::json!(1);
    std::fs::write(&meta, serde_json::to_vec(&v1).expect("json")).expect("write");
    let e = ParaphraseIndex::open(&dir).unwrap_err();
    assert!(e.to_string().contains("rebuild the index"), "{e}");
}

/// Time to append one 10 KB document to an index of a generated corpus (100 MB by default,
/// `PARA_BENCH_BYTES`), against its full build:
/// `cargo test -p shoulders-attrib --test paraphrase benchmark_append -- --ignored --nocapture`.
#[test]
#[ignore]
fn benchmark_append_100_mb() {
    let target: usize = std::env::var("PARA_BENCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100 << 20);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("p");
    let started = Instant::now();
    let info = ParaphraseIndex::build(&dir, generated_docs(target, 42)).expect("build");
    let build_s = started.elapsed().as_secs_f64();
    println!(
        "full build: {} docs, {} bytes, {} passages in {build_s:.1} s",
        info.doc_count, info.doc_bytes, info.passage_count
    );
    // 10 KB documents of the same generator (another seed), later contributions.
    let mut extra: Vec<DocInput> = Vec::new();
    let mut gen = generated_docs(usize::MAX, 7);
    while extra.len() < 12 {
        let mut bytes = Vec::new();
        while bytes.len() < 10_000 {
            bytes.extend(gen.next().expect("doc").expect("doc").bytes);
        }
        let mut text = String::from_utf8(bytes).expect("utf8");
        let mut end = 10_240.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        extra.push(DocInput {
            contribution: info.max_contribution + 1 + extra.len() as u64,
            bytes: text.into_bytes(),
        });
    }
    let mut millis = Vec::new();
    for d in &extra {
        let t = Instant::now();
        append(&dir, [Ok(d.clone())].into_iter()).expect("append");
        millis.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let t = Instant::now();
    let index = ParaphraseIndex::open(&dir).expect("open");
    let open_ms = t.elapsed().as_secs_f64() * 1000.0;
    let last = extra.last().expect("doc");
    let text = std::str::from_utf8(&last.bytes).expect("utf8");
    let r = split_passages(text)[0].clone();
    let got = index
        .query(&text[r], &ParaphraseOptions::default())
        .expect("query");
    assert_eq!(got.first().map(|m| m.contribution), Some(last.contribution));
    let segments = tantivy::Index::open_in_dir(&dir)
        .expect("tantivy")
        .searchable_segment_ids()
        .expect("segments")
        .len();
    let mut sorted = millis.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "append of one 10 KB document ({} appends): median {:.0} ms, max {:.0} ms (each: {:?}); \
         reopen {open_ms:.0} ms; {segments} segments; full build {:.0} ms",
        millis.len(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        millis.iter().map(|m| m.round() as u64).collect::<Vec<_>>(),
        build_s * 1000.0
    );
}
