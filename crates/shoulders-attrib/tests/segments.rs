//! Segmented indexes answer exactly as one index over all documents (issue 16): random corpora
//! from the vendored corpus plus copies, edited copies and junk, split into 1 to 6 segments at
//! random boundaries (the first built, the others appended), are attributed against both, with
//! and without exclusions. Also: merges, index states, the manifest's crash consistency.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::OnceLock;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shoulders_attrib::dataset::{
    append, build, build_state, index_dir, merge, AttributeOptions, AttributionReport, BuildDoc,
    DatasetIndex, MAX_SOURCES_PER_SPAN,
};
use shoulders_attrib::index::IndexError;
use shoulders_attrib::segments::{self, merge_plan, IndexState, SegmentEntry, MANIFEST_FILE};

const DATASET: &str = "test/segments";

/// The vendored corpus: (author, text), in path order.
fn corpus() -> &'static Vec<(String, String)> {
    static CORPUS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus");
        let mut files = Vec::new();
        for author in std::fs::read_dir(&root).unwrap() {
            let author = author.unwrap().path();
            if author.is_dir() {
                for f in std::fs::read_dir(&author).unwrap() {
                    files.push(f.unwrap().path());
                }
            }
        }
        files.sort();
        files
            .iter()
            .map(|f| {
                let author = f.parent().unwrap().file_name().unwrap().to_string_lossy();
                (author.to_string(), std::fs::read_to_string(f).unwrap())
            })
            .collect()
    })
}

fn passage(text: &str, at: usize, len: usize) -> &str {
    let mut s = at.min(text.len());
    while !text.is_char_boundary(s) {
        s -= 1;
    }
    let mut e = (s + len).min(text.len());
    while !text.is_char_boundary(e) {
        e -= 1;
    }
    &text[s..e]
}

/// A random corpus: some honest documents, then (interleaved) exact copies, edited copies,
/// chunks, junk and more honest documents, so later segments hold copies of earlier ones.
fn random_docs(rng: &mut ChaCha8Rng) -> Vec<(String, String)> {
    let all = corpus();
    let mut docs: Vec<(String, String)> = Vec::new();
    let n = rng.gen_range(6..16);
    for _ in 0..n {
        let (who, text) = &all[rng.gen_range(0..all.len())];
        let text = match rng.gen_range(0..6) {
            0 if !docs.is_empty() => docs[rng.gen_range(0..docs.len())].1.clone(),
            1 if !docs.is_empty() => docs[rng.gen_range(0..docs.len())].1.to_uppercase(),
            2 => {
                let at = rng.gen_range(0..text.len().max(1));
                passage(text, at, rng.gen_range(50..800)).to_string()
            }
            3 => "the quick brown fox jumps over the lazy dog ".repeat(rng.gen_range(1..5)),
            _ => passage(text, 0, 4000).to_string(),
        };
        if text.is_empty() {
            continue;
        }
        let who = if rng.gen_bool(0.3) {
            "mallory".to_string()
        } else {
            who.clone()
        };
        docs.push((who, text));
    }
    docs
}

fn build_docs(
    docs: &[(String, String)],
    range: std::ops::Range<usize>,
) -> Vec<Result<BuildDoc, IndexError>> {
    docs[range.clone()]
        .iter()
        .zip(range)
        .map(|((who, text), i)| {
            Ok(BuildDoc {
                contribution: i as u64,
                contributor: who.clone(),
                bytes: text.clone().into_bytes(),
            })
        })
        .collect()
}

/// One index over all documents.
fn single(dir: &Path, docs: &[(String, String)]) -> DatasetIndex {
    build(
        dir,
        DATASET,
        docs.len() as u64,
        build_docs(docs, 0..docs.len()).into_iter(),
        &mut |_| {},
    )
    .unwrap();
    DatasetIndex::open(dir, DATASET).unwrap()
}

/// The same documents in segments ending at `ends` (ascending, the last `docs.len()`).
fn segmented(dir: &Path, docs: &[(String, String)], ends: &[usize]) -> DatasetIndex {
    build(
        dir,
        DATASET,
        ends[0] as u64,
        build_docs(docs, 0..ends[0]).into_iter(),
        &mut |_| {},
    )
    .unwrap();
    for w in ends.windows(2) {
        let r = append(dir, DATASET, w[1] as u64, |from| {
            assert_eq!(from, w[0] as u64);
            build_docs(docs, w[0]..w[1]).into_iter()
        })
        .unwrap()
        .expect("new documents");
        assert_eq!(r.from_ledger_size, w[0] as u64);
    }
    let ix = DatasetIndex::open(dir, DATASET).unwrap();
    assert_eq!(
        ix.state(),
        IndexState {
            ledger_size: docs.len() as u64,
            segments: ends.iter().map(|&e| e as u64).collect()
        }
    );
    ix
}

/// The report as JSON, with the source samples of spans over [`MAX_SOURCES_PER_SPAN`]
/// occurrences left out (the one documented difference).
fn comparable(r: &AttributionReport) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap();
    for s in v["spans"].as_array_mut().unwrap() {
        if s["occurrences"].as_u64().unwrap() > MAX_SOURCES_PER_SPAN as u64 {
            s["contributions"] = serde_json::Value::Null;
        }
    }
    v
}

/// Texts to attribute: quotes of documents (some edited), joined quotes, junk.
fn outputs(docs: &[(String, String)], rng: &mut ChaCha8Rng) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..6 {
        let (_, t) = &docs[rng.gen_range(0..docs.len())];
        let q = passage(t, rng.gen_range(0..t.len().max(1)), rng.gen_range(40..600)).to_string();
        out.push(if rng.gen_bool(0.3) {
            q.to_lowercase()
        } else {
            q
        });
    }
    let a = &docs[rng.gen_range(0..docs.len())].1;
    let b = &docs[rng.gen_range(0..docs.len())].1;
    out.push(format!(
        "{} and then {}",
        passage(a, 0, 300),
        passage(b, 100, 300)
    ));
    out.push("nothing here matches anything at all, xyzzy plugh".into());
    // A reworded passage (words in reverse order): no window matches, the paraphrase layer
    // answers.
    let t = &docs[rng.gen_range(0..docs.len())].1;
    let words: Vec<&str> = passage(t, 0, 600).split_whitespace().rev().collect();
    out.push(words.join(" "));
    out
}

/// Compares the reports of some texts; returns how many credited someone after exclusions.
fn check_equal(
    single: &DatasetIndex,
    seg: &DatasetIndex,
    docs: &[(String, String)],
    rng: &mut ChaCha8Rng,
) -> usize {
    let mut credited = 0;
    for text in outputs(docs, rng) {
        let plain = AttributeOptions::default();
        let a = single.attribute(&text, &plain).unwrap();
        let b = seg.attribute(&text, &plain).unwrap();
        assert_eq!(comparable(&a), comparable(&b), "text {text:?}");
        // Exclude some credited contributions and some span sources.
        let mut named: Vec<u64> = a
            .contributions_named()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        named.shuffle(rng);
        let excluded: BTreeSet<u64> = named.into_iter().take(rng.gen_range(1..4)).collect();
        let opts = AttributeOptions {
            excluded,
            ..AttributeOptions::default()
        };
        let a = single.attribute(&text, &opts).unwrap();
        let b = seg.attribute(&text, &opts).unwrap();
        assert_eq!(
            comparable(&a),
            comparable(&b),
            "text {text:?} excluding {:?}",
            opts.excluded
        );
        credited += usize::from(!a.shares.contributions_ppm.is_empty() && !a.excluded.is_empty());
    }
    credited
}

#[test]
fn segments_answer_as_one_index() {
    // The cases are not vacuous: several segments, exclusions that moved credit.
    let (mut several, mut moved) = (0, 0);
    for seed in 0..10u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let docs = random_docs(&mut rng);
        let k = rng.gen_range(1..=6usize).min(docs.len());
        let mut cuts: BTreeSet<usize> = BTreeSet::new();
        while cuts.len() < k - 1 {
            cuts.insert(rng.gen_range(1..docs.len()));
        }
        let ends: Vec<usize> = cuts.into_iter().chain([docs.len()]).collect();
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let one = single(d1.path(), &docs);
        let seg = segmented(d2.path(), &docs, &ends);
        several += usize::from(ends.len() > 2);
        moved += check_equal(&one, &seg, &docs, &mut rng);
        // Merged per policy, then all: still the same answers.
        merge(d2.path(), DATASET, false, true).unwrap();
        let merged = DatasetIndex::open(d2.path(), DATASET).unwrap();
        check_equal(&one, &merged, &docs, &mut rng);
        if ends.len() > 1 {
            let r = merge(d2.path(), DATASET, true, true).unwrap();
            if let Some(r) = r {
                assert_eq!(r.segments, 1);
            }
            let all = DatasetIndex::open(d2.path(), DATASET).unwrap();
            assert_eq!(all.state().segments, vec![docs.len() as u64]);
            check_equal(&one, &all, &docs, &mut rng);
        }
    }
    assert!(several >= 3 && moved >= 5, "{several} {moved}");
}

/// A copy of an older document appended in a new segment is reported as mostly copied.
#[test]
fn appended_copies_are_measured_against_earlier_segments() {
    let docs: Vec<(String, String)> = corpus()[..3].to_vec();
    let dir = tempfile::tempdir().unwrap();
    segmented(dir.path(), &docs, &[3]);
    let copy = vec![("mallory".to_string(), docs[1].1.to_uppercase())];
    let all: Vec<(String, String)> = docs.iter().cloned().chain(copy).collect();
    let r = append(dir.path(), DATASET, 4, |_| {
        build_docs(&all, 3..4).into_iter()
    })
    .unwrap()
    .unwrap();
    assert_eq!(r.mostly_copied.len(), 1, "{r:?}");
    assert_eq!(r.mostly_copied[0].contribution, 3);
    assert!(r.own_windows < r.copied_windows / 10, "{r:?}");
}

/// Rebuilding an index state gives the same segments (byte-identical index files) and answers.
#[test]
fn build_state_reproduces_the_index() {
    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let docs = random_docs(&mut rng);
    let ends = [2, docs.len() - 1, docs.len()];
    let dir = tempfile::tempdir().unwrap();
    let ix = segmented(dir.path(), &docs, &ends);
    let state = ix.state();
    let tmp = tempfile::tempdir().unwrap();
    let again = build_state(tmp.path(), DATASET, &state, |from, to| {
        build_docs(&docs, from as usize..to as usize).into_iter()
    })
    .unwrap();
    assert_eq!(again.state(), state);
    for (a, b) in ix.segments().zip(again.segments()) {
        for f in [
            "tokenized.0",
            "table.0",
            "shoulders-owners.bin",
            "shoulders-raw.bin",
        ] {
            let fa = std::fs::read(index_dir(dir.path(), DATASET).join(&a.dir).join(f)).unwrap();
            let fb = std::fs::read(index_dir(tmp.path(), DATASET).join(&b.dir).join(f)).unwrap();
            assert!(fa == fb, "{f} differs");
        }
    }
    check_equal(&ix, &again, &docs, &mut rng);

    // A state that cannot be: refused.
    let bad = IndexState {
        ledger_size: 5,
        segments: vec![3, 2, 5],
    };
    let other = tempfile::tempdir().unwrap();
    assert!(build_state(other.path(), DATASET, &bad, |_, _| Vec::new().into_iter()).is_err());
}

/// A crash at any point leaves a consistent set: leftovers of an interrupted segment build or
/// manifest write are ignored by readers and collected by the next writer; a manifest that
/// lists a bad range is refused.
#[test]
fn crash_leftovers_are_ignored_and_collected() {
    let docs: Vec<(String, String)> = corpus()[..4].to_vec();
    let dir = tempfile::tempdir().unwrap();
    let ix = segmented(dir.path(), &docs[..3], &[2, 3]);
    let idir = index_dir(dir.path(), DATASET);
    // An interrupted build (temporary dir), an unlisted segment, a half-written manifest.
    std::fs::create_dir(idir.join(".seg-3-4-g9.tmp-1-2")).unwrap();
    std::fs::create_dir(idir.join("seg-3-4-g9")).unwrap();
    std::fs::write(idir.join(format!("{MANIFEST_FILE}.partial")), b"{\"form").unwrap();
    let text = passage(&docs[1].1, 0, 300).to_string();
    let before = DatasetIndex::open(dir.path(), DATASET).unwrap();
    assert_eq!(before.state(), ix.state());
    let opts = AttributeOptions::default();
    assert_eq!(
        comparable(&before.attribute(&text, &opts).unwrap()),
        comparable(&ix.attribute(&text, &opts).unwrap())
    );
    append(dir.path(), DATASET, 4, |_| {
        build_docs(&docs, 3..4).into_iter()
    })
    .unwrap()
    .unwrap();
    assert!(!idir.join(".seg-3-4-g9.tmp-1-2").exists());
    assert!(!idir.join("seg-3-4-g9").exists());
    // Nothing new: no write.
    assert!(append(dir.path(), DATASET, 4, |_| Vec::new().into_iter())
        .unwrap()
        .is_none());
    // A manifest whose segments do not cover the ledger is E_INDEX_CORRUPT.
    let mut m = segments::read_manifest(&idir).unwrap().unwrap();
    m.segments[1].from += 1;
    std::fs::write(idir.join(MANIFEST_FILE), serde_json::to_vec(&m).unwrap()).unwrap();
    let e = DatasetIndex::open(dir.path(), DATASET).err().unwrap();
    assert_eq!(e.code(), "E_INDEX_CORRUPT");
}

/// The merge policy keeps the segment count logarithmic: appending one small segment at a time
/// and merging per policy never leaves more than 1 + log10(tokens / smallest) segments.
#[test]
fn merge_policy_bounds_segment_count() {
    let seg = |i: u64, tokens: u64| SegmentEntry {
        dir: format!("seg-{i}-{}-g1", i + 1),
        from: i,
        to: i + 1,
        documents: 1,
        tokens,
    };
    let mut segs: Vec<SegmentEntry> = Vec::new();
    for i in 0..10_000u64 {
        segs.push(seg(i, 1000));
        while let Some(r) = merge_plan(&segs) {
            let tokens = segs[r.clone()].iter().map(|s| s.tokens).sum();
            let (from, to) = (segs[r.start].from, segs[r.end - 1].to);
            segs.splice(
                r,
                [SegmentEntry {
                    from,
                    to,
                    tokens,
                    ..seg(from, 0)
                }],
            );
        }
        let total: u64 = segs.iter().map(|s| s.tokens).sum();
        let bound = 1 + (total / 1000).ilog10() as usize + 1;
        assert!(
            segs.len() <= bound,
            "{} segments at {total} tokens",
            segs.len()
        );
    }
    assert_eq!(merge_plan(&[seg(0, 1_000_000), seg(1, 10)]), None);
    assert_eq!(merge_plan(&[seg(0, 100), seg(1, 10)]), Some(0..2));
}

/// An index from before segments (its files directly in the index folder, no manifest) is
/// read as one segment; `append` refuses it; a full build moves it to the new layout and the
/// next update collects the old files.
#[test]
fn indexes_from_before_segments() {
    let docs: Vec<(String, String)> = corpus()[..3].to_vec();
    let dir = tempfile::tempdir().unwrap();
    let ix = segmented(dir.path(), &docs, &[3]);
    let text = passage(&docs[2].1, 50, 400).to_string();
    let opts = AttributeOptions::default();
    let expected = comparable(&ix.attribute(&text, &opts).unwrap());
    // Recreate the old layout from the one segment.
    let idir = index_dir(dir.path(), DATASET);
    let seg = idir.join(&ix.segments().next().unwrap().dir);
    for f in std::fs::read_dir(&seg).unwrap() {
        let f = f.unwrap();
        std::fs::rename(f.path(), idir.join(f.file_name())).unwrap();
    }
    std::fs::remove_dir(&seg).unwrap();
    std::fs::remove_file(idir.join(MANIFEST_FILE)).unwrap();
    let old = DatasetIndex::open(dir.path(), DATASET).unwrap();
    assert_eq!(old.state().segments, vec![3]);
    assert_eq!(comparable(&old.attribute(&text, &opts).unwrap()), expected);
    let e = append(dir.path(), DATASET, 4, |_| Vec::new().into_iter()).unwrap_err();
    assert_eq!(e.code(), "E_INDEX_CORRUPT");
    build(
        dir.path(),
        DATASET,
        3,
        build_docs(&docs, 0..3).into_iter(),
        &mut |_| {},
    )
    .unwrap();
    assert!(
        idir.join("table.0").exists(),
        "collected on the next update, not now"
    );
    let more: Vec<(String, String)> = corpus()[..4].to_vec();
    append(dir.path(), DATASET, 4, |_| {
        build_docs(&more, 3..4).into_iter()
    })
    .unwrap()
    .unwrap();
    assert!(!idir.join("table.0").exists());
    let after = comparable(
        &DatasetIndex::open(dir.path(), DATASET)
            .unwrap()
            .attribute(&text, &opts)
            .unwrap(),
    );
    assert_eq!(after["index_ledger_size"], 4);
    assert_eq!(
        (&after["shares"], &after["spans"]),
        (&expected["shares"], &expected["spans"])
    );
}

/// Writers exclude each other per dataset; readers need no lock.
#[test]
fn writers_exclude_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let held = segments::WriterLock::acquire(dir.path(), DATASET).unwrap();
    assert!(segments::WriterLock::try_acquire(dir.path(), DATASET)
        .unwrap()
        .is_none());
    assert!(segments::WriterLock::try_acquire(dir.path(), "test/other")
        .unwrap()
        .is_some());
    drop(held);
    assert!(segments::WriterLock::try_acquire(dir.path(), DATASET)
        .unwrap()
        .is_some());
    let merging = segments::MergeLock::acquire(dir.path(), DATASET).unwrap();
    assert!(segments::MergeLock::try_acquire(dir.path(), DATASET)
        .unwrap()
        .is_none());
    // A merge already running: a merge that does not wait returns at once.
    assert!(merge(dir.path(), DATASET, true, false).unwrap().is_none());
    drop(merging);
}
