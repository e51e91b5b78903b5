//! Corrupt index files under the memory-mapped index: [`Index::open`] no longer reads every
//! byte, so every query path must survive bad pointers, offsets and runs (a correct answer,
//! any answer, or `E_INDEX_CORRUPT`; never a panic or another error), and
//! [`Index::verify_full`] must find what open let through.

use std::path::Path;

use shoulders_attrib::dataset::{self, AttributeOptions, BuildDoc, DatasetIndex};
use shoulders_attrib::index::{
    Index, IndexError, MAP_FILE, OFFSET_FILE, OWNERS_FILE, RAW_STARTS_FILE, TABLE_FILE,
};

const DATASET: &str = "alice/corpus";

/// Deterministic xorshift64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Prose-like words; documents copy passages of each other so the copy map has many runs.
fn corpus() -> Vec<String> {
    const WORDS: [&str; 24] = [
        "the", "River", "of", "stone", "carried", "a", "quiet", "lamp", "under", "broken", "sky",
        "while", "seven", "orchards", "slept", "and", "Éclair", "north", "wind", "—", "copper",
        "bells", "rang", "again",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut docs: Vec<String> = Vec::new();
    for d in 0..8 {
        let mut s = String::new();
        while s.len() < 600 {
            s.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
            s.push(if rng.below(9) == 0 { '\n' } else { ' ' });
        }
        if d > 0 && d % 2 == 0 {
            // Copy a passage of an earlier document, with changed case and spacing.
            let passage = chars(&docs[d - 2], 100, 300).to_uppercase();
            s.push_str("  ");
            s.push_str(&passage);
        }
        docs.push(s);
    }
    docs
}

/// `s[a..b]`, both ends moved inward to character boundaries.
fn chars(s: &str, mut a: usize, b: usize) -> &str {
    let mut b = b.min(s.len());
    while !s.is_char_boundary(a) {
        a += 1;
    }
    while !s.is_char_boundary(b) {
        b -= 1;
    }
    &s[a..b.max(a)]
}

fn build(data_dir: &Path, docs: &[String]) {
    dataset::build(
        data_dir,
        DATASET,
        1,
        docs.iter().enumerate().map(|(d, s)| {
            Ok(BuildDoc {
                contribution: 100 + d as u64,
                contributor: format!("user{d}"),
                bytes: s.as_bytes().to_vec(),
            })
        }),
        &mut |_| {},
    )
    .unwrap();
}

/// The one segment a full build writes (`seg-…` under the dataset's index directory).
fn segment_dir(data_dir: &Path) -> std::path::PathBuf {
    let dir = dataset::index_dir(data_dir, DATASET);
    let segs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with("seg-"))
        .collect();
    assert_eq!(segs.len(), 1, "one segment in {}", dir.display());
    segs.into_iter().next().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// What the queries answer, as comparable strings.
fn answers(ix: &DatasetIndex, queries: &[&[u8]], texts: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for q in queries {
        out.push(format!(
            "count {:?}",
            ok_or_corrupt(ix.generation_index().count(q))
        ));
        out.push(format!(
            "find {:?}",
            ok_or_corrupt(ix.generation_index().find(q, 50))
        ));
        out.push(format!(
            "spans {:?}",
            ok_or_corrupt(ix.generation_index().maximal_spans(q, 1, u64::MAX))
        ));
    }
    for t in texts {
        let report = ok_or_corrupt(ix.attribute(t, &AttributeOptions::default()))
            .map(|r| serde_json::to_string(&r).unwrap());
        out.push(format!("attribute {report:?}"));
    }
    // Each document's originals and normalised text (through the offsets and raw starts) and
    // the owners of its windows (through the copy map and the offset map).
    for d in 0..ix.generation_index().doc_count() + 2 {
        out.push(format!(
            "doc {d} {:?} {:?}",
            ix.generation_index().original(d).map(<[u8]>::len),
            ix.generation_index().normalised(d).map(<[u8]>::len)
        ));
        out.push(format!(
            "owners {d} {:?}",
            ix.generation_index().window_owners_in(d, 0, 10_000)
        ));
    }
    out
}

/// A query's answer, or `None` for `E_INDEX_CORRUPT`; any other error fails the test.
fn ok_or_corrupt<T>(r: Result<T, IndexError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            assert_eq!(e.code(), "E_INDEX_CORRUPT", "unexpected error {e}");
            None
        }
    }
}

/// How a file is damaged: whole records replaced by random bytes (a random `u64` position or
/// pointer is out of range or out of order with near certainty, so `verify_full` must notice),
/// or single bytes replaced (which may leave the file consistent: only no panic is required).
#[derive(Clone, Copy, Debug)]
enum Damage {
    Records,
    Bytes,
}

#[test]
fn corrupt_files_never_panic_and_verify_finds_them() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    let docs = corpus();
    build(&clean, &docs);
    let ix = DatasetIndex::open(&clean, DATASET).unwrap();
    ix.generation_index().verify_full().unwrap();
    let queries: Vec<&[u8]> = vec![
        b"the",
        b"river of stone",
        b"copper bells rang again",
        b"zzz",
        b"e",
    ];
    let mut texts: Vec<String> = docs.iter().map(|d| chars(d, 50, 400).to_string()).collect();
    texts.push("nothing like the corpus at all, qqq xxx".into());
    let baseline = answers(&ix, &queries, &texts);
    assert!(
        baseline
            .iter()
            .any(|a| a.contains("contributors_ppm") && !a.contains("no_evidence")),
        "the texts are attributed: {baseline:#?}"
    );
    drop(ix);

    let index_dir = segment_dir(&clean);
    let files: [(&str, usize); 5] = [
        (
            TABLE_FILE,
            Index::open(&index_dir).unwrap().info().pointer_width as usize,
        ),
        (OFFSET_FILE, 8),
        (OWNERS_FILE, 12),
        (MAP_FILE, 16),
        (RAW_STARTS_FILE, 8),
    ];
    let mut rng = Rng(0x5EED);
    let (mut refused_at_open, mut changed_answers) = (0, 0);
    for (file, record) in files {
        for damage in [Damage::Records, Damage::Bytes] {
            for case in 0..12 {
                let data = tmp.path().join(format!("{file}-{damage:?}-{case}"));
                copy_dir(&clean, &data);
                let path = segment_dir(&data).join(file);
                let mut bytes = std::fs::read(&path).unwrap();
                let original = bytes.clone();
                let records = bytes.len() / record;
                assert!(records > 0, "{file} has records");
                for _ in 0..1 + case % 3 {
                    match damage {
                        Damage::Records => {
                            let at = rng.below(records as u64) as usize * record;
                            for b in &mut bytes[at..at + record] {
                                *b = rng.next() as u8;
                            }
                        }
                        Damage::Bytes => {
                            let at = rng.below(bytes.len() as u64) as usize;
                            bytes[at] ^= 1 + rng.below(255) as u8;
                        }
                    }
                }
                if bytes == original {
                    continue;
                }
                std::fs::write(&path, &bytes).unwrap();
                let what = format!("{file} {damage:?} case {case}");
                let Some(ix) = ok_or_corrupt(DatasetIndex::open(&data, DATASET)) else {
                    refused_at_open += 1;
                    continue;
                };
                let got = answers(&ix, &queries, &texts);
                if got != baseline {
                    changed_answers += 1;
                }
                let verified = ix.generation_index().verify_full();
                if let Damage::Records = damage {
                    let e = verified.expect_err(&what);
                    assert_eq!(e.code(), "E_INDEX_CORRUPT", "{what}: {e}");
                } else if let Err(e) = verified {
                    assert_eq!(e.code(), "E_INDEX_CORRUPT", "{what}: {e}");
                }
            }
        }
    }
    println!("refused at open: {refused_at_open}, opened with changed answers: {changed_answers}");
    // Both paths were exercised: some damage is caught at open (offsets, raw starts), some
    // only by verify_full (pointers, runs).
    assert!(refused_at_open > 0 && changed_answers > 0);
}
