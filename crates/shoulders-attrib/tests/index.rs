//! Index tests: brute-force comparisons on random small-alphabet corpora, the on-disk layout,
//! reopen/replace, and corruption handling.

use std::path::Path;

use proptest::prelude::*;
use shoulders_attrib::index::{
    build, pointer_width, DocInput, Index, IndexError, Span, MAX_OUTPUT_BYTES, MAX_QUERY_BYTES,
};

type Docs = Vec<Vec<u8>>;

fn contribution(d: usize) -> u64 {
    1000 + 7 * d as u64
}

fn build_docs(dir: &Path, docs: &Docs) -> Result<shoulders_attrib::index::IndexInfo, IndexError> {
    let mut calls = Vec::new();
    let r = build(
        dir,
        docs.iter().enumerate().map(|(d, b)| {
            Ok(DocInput {
                contribution: contribution(d),
                bytes: b.clone(),
            })
        }),
        &mut |n| calls.push(n),
    );
    assert!(calls.windows(2).all(|w| w[0] <= w[1]), "progress goes up");
    r
}

fn occurs_at(hay: &[u8], at: usize, q: &[u8]) -> bool {
    hay.get(at..at + q.len()) == Some(q)
}

/// Brute-force count: occurrences inside documents (never across a separator).
fn bf_count(docs: &Docs, q: &[u8]) -> u64 {
    if q.is_empty() || q.contains(&0xFF) {
        return 0;
    }
    docs.iter()
        .map(|d| (0..d.len()).filter(|&i| occurs_at(d, i, q)).count() as u64)
        .sum()
}

/// The token array infini-gram writes for these documents.
fn tokenized(docs: &Docs) -> Vec<u8> {
    let mut t = Vec::new();
    for d in docs {
        t.push(0xFF);
        t.extend_from_slice(d);
    }
    t
}

/// Brute-force maximal spans with the documented definition.
fn bf_spans(docs: &Docs, out: &[u8], min_len: usize, max_occ: u64) -> Vec<Span> {
    let min_len = min_len.max(1);
    let mut spans = Vec::new();
    let mut prev_end = 0;
    for i in 0..out.len() {
        let mut len = 0;
        while i + len < out.len() && bf_count(docs, &out[i..i + len + 1]) > 0 {
            len += 1;
        }
        let end = i + len;
        let occ = bf_count(docs, &out[i..end]);
        if len >= min_len && end > prev_end && occ <= max_occ {
            spans.push(Span {
                start: i,
                end,
                occurrences: occ,
            });
        }
        prev_end = prev_end.max(end);
    }
    spans
}

fn docs_strategy() -> impl Strategy<Value = Docs> {
    (2usize..=4).prop_flat_map(|alpha| {
        prop::collection::vec(
            prop::collection::vec((0..alpha as u8).prop_map(|b| b'a' + b), 0..40),
            1..8,
        )
    })
}

/// Queries over a slightly larger alphabet (so some are absent), occasionally with 0xFF.
fn query_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            10 => (0u8..5).prop_map(|b| b'a' + b),
            1 => Just(0xFFu8),
        ],
        0..7,
    )
}

fn check_find(index: &Index, docs: &Docs, q: &[u8]) {
    let count = index.count(q).unwrap();
    let hits = index.find(q, usize::MAX).unwrap();
    assert_eq!(hits.len() as u64, count, "find returns every occurrence");
    for h in &hits {
        let d = h.doc as usize;
        assert_eq!(h.contribution, contribution(d));
        assert!(
            occurs_at(&docs[d], h.offset as usize, q),
            "hit {h:?} for {q:?}"
        );
    }
    let mut sorted = hits.clone();
    sorted.sort_by_key(|h| (h.doc, h.offset));
    sorted.dedup();
    assert_eq!(sorted, hits, "hits sorted by (doc, offset), distinct");
    // A limit returns a deterministic subset.
    let some = index.find(q, 2).unwrap();
    assert_eq!(some.len() as u64, count.min(2));
    assert!(some.iter().all(|h| hits.contains(h)));
    assert_eq!(some, index.find(q, 2).unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn count_and_find_match_brute_force(
        docs in docs_strategy(),
        queries in prop::collection::vec(query_strategy(), 1..30),
        picks in prop::collection::vec((0usize..8, 0usize..40, 1usize..12), 1..10),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        let info = build_docs(&dir, &docs).unwrap();
        let index = Index::open(&dir).unwrap();
        prop_assert_eq!(index.info(), &info);
        let text = tokenized(&docs);
        prop_assert_eq!(info.token_count, text.len() as u64);
        prop_assert_eq!(info.pointer_width, pointer_width(text.len() as u64));

        let mut all = queries.clone();
        for &(d, at, len) in &picks {
            let d = d % docs.len();
            let doc = &docs[d];
            // A substring of a document (present).
            let s = at.min(doc.len());
            all.push(doc[s..(s + len).min(doc.len())].to_vec());
            // A string across the boundary to the next document: with the separator it must
            // count 0 even though it occurs in the token array; without, it is an ordinary query.
            if d + 1 < docs.len() {
                let tail = &doc[doc.len() - doc.len().min(len)..];
                let head = &docs[d + 1][..docs[d + 1].len().min(len)];
                let mut across = tail.to_vec();
                across.push(0xFF);
                across.extend_from_slice(head);
                prop_assert_eq!(index.count(&across).unwrap(), 0);
                prop_assert!(index.find(&across, 10).unwrap().is_empty());
                let mut joined = tail.to_vec();
                joined.extend_from_slice(head);
                all.push(joined);
            }
        }
        for q in &all {
            prop_assert_eq!(index.count(q).unwrap(), bf_count(&docs, q), "query {:?}", q);
            if !q.is_empty() && !q.contains(&0xFF) {
                // infini-gram semantics: occurrences in the concatenated token array.
                let raw = (0..text.len()).filter(|&i| occurs_at(&text, i, q)).count() as u64;
                prop_assert_eq!(index.count(q).unwrap(), raw);
            }
            check_find(&index, &docs, q);
        }
    }

    #[test]
    fn maximal_spans_match_brute_force(
        docs in docs_strategy(),
        outputs in prop::collection::vec(
            prop::collection::vec(prop_oneof![
                20 => (0u8..4).prop_map(|b| b'a' + b),
                1 => Just(b'z'),
                1 => Just(0xFFu8),
            ], 0..50),
            1..4),
        min_len in 0usize..5,
        max_occ in prop_oneof![Just(u64::MAX), 0u64..6],
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        build_docs(&dir, &docs).unwrap();
        let index = Index::open(&dir).unwrap();
        for out in &outputs {
            let spans = index.maximal_spans(out, min_len, max_occ).unwrap();
            prop_assert_eq!(&spans, &bf_spans(&docs, out, min_len, max_occ), "output {:?}", out);
            // Independent property checks.
            let all = index.maximal_spans(out, 1, u64::MAX).unwrap();
            for s in &spans {
                let piece = &out[s.start..s.end];
                prop_assert!(s.end - s.start >= min_len.max(1));
                prop_assert!(s.occurrences <= max_occ);
                prop_assert_eq!(s.occurrences, bf_count(&docs, piece));
                prop_assert!(s.occurrences > 0);
                if s.end < out.len() {
                    prop_assert_eq!(index.count(&out[s.start..s.end + 1]).unwrap(), 0, "right-maximal");
                }
                if s.start > 0 {
                    // The longest match starting one byte earlier ends before this one.
                    let mut len = 0;
                    while s.start - 1 + len < out.len()
                        && bf_count(&docs, &out[s.start - 1..s.start + len]) > 0
                    {
                        len += 1;
                    }
                    prop_assert!(s.start - 1 + len < s.end, "left-maximal");
                }
                prop_assert!(all.contains(s), "span {:?} also found without filters", s);
            }
        }
    }
}

#[test]
fn layout_matches_infini_gram_u8() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let docs: Docs = vec![
        b"banana".to_vec(),
        Vec::new(),
        "n\u{e4}".as_bytes().to_vec(),
    ];
    let info = build_docs(&dir, &docs).unwrap();
    let text = tokenized(&docs);
    assert_eq!(std::fs::read(dir.join("tokenized.0")).unwrap(), text);
    let offsets: Vec<u8> = [0u64, 7, 8].iter().flat_map(|o| o.to_le_bytes()).collect();
    assert_eq!(std::fs::read(dir.join("offset.0")).unwrap(), offsets);
    // Every position, sorted by suffix, 1-byte pointers.
    let mut sa: Vec<usize> = (0..text.len()).collect();
    sa.sort_by(|&a, &b| text[a..].cmp(&text[b..]));
    let table: Vec<u8> = sa.iter().map(|&p| p as u8).collect();
    assert_eq!(std::fs::read(dir.join("table.0")).unwrap(), table);
    assert_eq!(info.pointer_width, 1);
    assert_eq!(info.doc_count, 3);
    assert_eq!(info.token_count, 12);
    assert_eq!(info.contributions, vec![1000, 1007, 1014]);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("shoulders-index.json")).unwrap()).unwrap();
    assert_eq!(meta["tokenizer"], "bytes-utf8");
    assert_eq!(meta["format"], "shoulders-attrib-index");
    assert_eq!(meta["version"], 1);
    // No other files (infini-gram's engine scans the directory).
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["offset.0", "shoulders-index.json", "table.0", "tokenized.0"]
    );
    let index = Index::open(&dir).unwrap();
    assert_eq!(index.count(b"ana").unwrap(), 2);
    assert_eq!(index.count("\u{e4}".as_bytes()).unwrap(), 1);
    assert_eq!(index.count(b"an").unwrap(), 2);
    assert_eq!(index.count(b"n").unwrap(), 3);
    assert_eq!(index.count(b"").unwrap(), 0);
    let hits = index.find(b"n", 10).unwrap();
    let got: Vec<(u64, u32, u64)> = hits
        .iter()
        .map(|h| (h.contribution, h.doc, h.offset))
        .collect();
    assert_eq!(got, vec![(1000, 0, 2), (1000, 0, 4), (1014, 2, 0)]);
}

#[test]
fn pointer_width_is_smallest_that_fits() {
    for (n, w) in [
        (1u64, 1u8),
        (2, 1),
        (256, 1),
        (257, 2),
        (65_536, 2),
        (65_537, 3),
        (1 << 24, 3),
        ((1 << 24) + 1, 4),
        (1 << 32, 4),
        ((1 << 32) + 1, 5),
        (1 << 40, 5),
        ((1 << 40) + 1, 6),
    ] {
        assert_eq!(pointer_width(n), w, "n = {n}");
        // Equals infini-gram's ratio = ceil(log2(ds_size) / 8) for n >= 2.
        if n >= 2 {
            assert_eq!(
                u64::from(w),
                ((n as f64).log2() / 8.0).ceil() as u64,
                "n = {n}"
            );
        }
    }
    // Token arrays of exactly 256 and 257 bytes on disk.
    for (len, w) in [(255usize, 1u8), (256, 2)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("idx");
        let info = build_docs(&dir, &vec![vec![b'a'; len]]).unwrap();
        assert_eq!(info.token_count, len as u64 + 1);
        assert_eq!(info.pointer_width, w);
        let table = std::fs::read(dir.join("table.0")).unwrap();
        assert_eq!(table.len(), (len + 1) * w as usize);
        let index = Index::open(&dir).unwrap();
        assert_eq!(index.count(b"a").unwrap(), len as u64);
        assert_eq!(index.count(&vec![b'a'; len]).unwrap(), 1);
        assert_eq!(index.count(&vec![b'a'; len + 1]).unwrap(), 0);
    }
}

#[test]
fn reopen_and_replace() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let docs: Docs = vec![b"abcabcab".to_vec(), b"cabbage".to_vec()];
    build_docs(&dir, &docs).unwrap();
    let a = Index::open(&dir).unwrap();
    let b = Index::open(&dir).unwrap();
    let out = b"xxcabcabbagey";
    for q in [&b"ab"[..], b"cab", b"bb", b"zz", b"abcab"] {
        assert_eq!(a.count(q).unwrap(), b.count(q).unwrap());
        assert_eq!(a.find(q, 100).unwrap(), b.find(q, 100).unwrap());
    }
    assert_eq!(
        a.maximal_spans(out, 1, u64::MAX).unwrap(),
        b.maximal_spans(out, 1, u64::MAX).unwrap()
    );
    // Rebuilding replaces the index and leaves no temporary directories behind.
    let docs2: Docs = vec![b"zz".to_vec()];
    build_docs(&dir, &docs2).unwrap();
    let c = Index::open(&dir).unwrap();
    assert_eq!(c.count(b"zz").unwrap(), 1);
    assert_eq!(c.count(b"ab").unwrap(), 0);
    assert_eq!(c.info().doc_count, 1);
    let entries: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "only the index directory remains");
    // The already-open index still answers from memory.
    assert_eq!(a.count(b"ab").unwrap(), 4);
}

#[test]
fn build_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let e = build_docs(&dir, &Vec::new()).unwrap_err();
    assert_eq!(e.code(), "E_INDEX_EMPTY");
    let e = build_docs(&dir, &vec![b"ok".to_vec(), vec![b'a', 0xFF]]).unwrap_err();
    assert_eq!(e.code(), "E_INDEX_INPUT");
    let e = build_docs(&dir, &vec![vec![0xC3]]).unwrap_err();
    assert_eq!(e.code(), "E_INDEX_INPUT");
    // An error from the document source is passed through.
    let e = build(
        &dir,
        vec![
            Ok(DocInput {
                contribution: 1,
                bytes: b"a".to_vec(),
            }),
            Err(IndexError::Corrupt("source failed".into())),
        ]
        .into_iter(),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(e.code(), "E_INDEX_CORRUPT");
    // Over 1 GiB (zeroed allocation: pages are never touched, the size check comes first).
    let e = build(
        &dir,
        std::iter::once(Ok(DocInput {
            contribution: 1,
            bytes: vec![0u8; (1 << 30) + 1],
        })),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(e.code(), "E_INDEX_TOO_LARGE");
    assert!(!dir.exists(), "failed builds leave nothing");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn query_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    build_docs(&dir, &vec![b"abc".to_vec()]).unwrap();
    let index = Index::open(&dir).unwrap();
    let big = vec![b'a'; MAX_QUERY_BYTES + 1];
    assert_eq!(index.count(&big).unwrap_err().code(), "E_QUERY_TOO_LARGE");
    assert_eq!(index.find(&big, 1).unwrap_err().code(), "E_QUERY_TOO_LARGE");
    let ok = vec![b'a'; MAX_QUERY_BYTES];
    assert_eq!(index.count(&ok).unwrap(), 0);
    let big = vec![b'a'; MAX_OUTPUT_BYTES + 1];
    assert_eq!(
        index.maximal_spans(&big, 1, 10).unwrap_err().code(),
        "E_QUERY_TOO_LARGE"
    );
    // The largest output: every byte is its own one-byte span ("a" occurs once and "aa" never).
    let out = vec![b'a'; MAX_OUTPUT_BYTES];
    let spans = index.maximal_spans(&out, 1, u64::MAX).unwrap();
    assert_eq!(spans.len(), out.len());
    assert!(spans
        .iter()
        .enumerate()
        .all(|(i, s)| (s.start, s.end, s.occurrences) == (i, i + 1, 1)));
    assert!(index.maximal_spans(&out, 2, u64::MAX).unwrap().is_empty());
}

#[test]
fn long_matches_in_long_output() {
    // An output that is mostly a copy of a document: one long span, found quickly.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let doc: Vec<u8> = (0..50_000u32)
        .map(|i| b'a' + (i.wrapping_mul(2_654_435_761) >> 29) as u8)
        .collect();
    build_docs(&dir, &vec![doc.clone(), b"hello".to_vec()]).unwrap();
    let index = Index::open(&dir).unwrap();
    let mut out = b"hello ".to_vec();
    out.extend_from_slice(&doc[1000..21_000]);
    let spans = index.maximal_spans(&out, 50, u64::MAX).unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!((spans[0].start, spans[0].end), (6, out.len()));
    assert_eq!(spans[0].occurrences, 1);
}

fn corrupt_case(name: &str, f: impl FnOnce(&Path)) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    build_docs(&dir, &vec![b"abcab".to_vec(), b"ba".to_vec(), b"".to_vec()]).unwrap();
    Index::open(&dir).unwrap().verify_full().unwrap();
    f(&dir);
    assert_refused(&dir, name);
}

/// `E_INDEX_CORRUPT` from [`Index::open`] (sizes, metadata, offsets) or, for what open does
/// not read (every byte of the token array and the suffix array), from
/// [`Index::verify_full`].
fn assert_refused(dir: &Path, name: &str) {
    let e = match Index::open(dir) {
        Err(e) => e,
        Ok(index) => index
            .verify_full()
            .expect_err(&format!("{name}: verify_full passed")),
    };
    assert_eq!(e.code(), "E_INDEX_CORRUPT", "{name}: {e}");
}

fn edit(dir: &Path, file: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let p = dir.join(file);
    let mut b = std::fs::read(&p).unwrap();
    f(&mut b);
    std::fs::write(&p, b).unwrap();
}

fn edit_meta(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    edit(dir, "shoulders-index.json", |b| {
        let mut v: serde_json::Value = serde_json::from_slice(b).unwrap();
        f(&mut v);
        *b = serde_json::to_vec(&v).unwrap();
    });
}

#[test]
fn corrupt_indexes_are_refused() {
    for file in ["tokenized.0", "table.0", "offset.0", "shoulders-index.json"] {
        corrupt_case(&format!("missing {file}"), |d| {
            std::fs::remove_file(d.join(file)).unwrap()
        });
        corrupt_case(&format!("truncated {file}"), |d| {
            edit(d, file, |b| {
                b.pop();
            })
        });
        corrupt_case(&format!("extended {file}"), |d| {
            edit(d, file, |b| b.push(0))
        });
    }
    corrupt_case("missing dir", |d| std::fs::remove_dir_all(d).unwrap());
    corrupt_case("bad json", |d| {
        edit(d, "shoulders-index.json", |b| b[0] = b'[')
    });
    corrupt_case("unknown field", |d| edit_meta(d, |v| v["extra"] = 1.into()));
    corrupt_case("wrong version", |d| {
        edit_meta(d, |v| v["version"] = 2.into())
    });
    corrupt_case("wrong tokenizer", |d| {
        edit_meta(d, |v| v["tokenizer"] = "gpt2".into())
    });
    corrupt_case("wrong width", |d| {
        edit_meta(d, |v| v["pointer_width"] = 2.into())
    });
    corrupt_case("contributions short", |d| {
        edit_meta(d, |v| {
            v["contributions"].as_array_mut().unwrap().pop();
        })
    });
    corrupt_case("doc count", |d| edit_meta(d, |v| v["doc_count"] = 2.into()));
    corrupt_case("zero docs", |d| {
        edit_meta(d, |v| {
            v["doc_count"] = 0.into();
            v["contributions"] = serde_json::json!([]);
        })
    });
    corrupt_case("separator moved", |d| {
        edit(d, "tokenized.0", |b| {
            b[0] = b'a';
            b[1] = 0xFF;
        })
    });
    corrupt_case("extra separator", |d| {
        edit(d, "tokenized.0", |b| b[2] = 0xFF)
    });
    corrupt_case("offset wrong", |d| edit(d, "offset.0", |b| b[8] = 5));
    corrupt_case("pointer out of range", |d| {
        edit(d, "table.0", |b| b[3] = 200)
    });
    corrupt_case("table is a directory", |d| {
        std::fs::remove_file(d.join("table.0")).unwrap();
        std::fs::create_dir(d.join("table.0")).unwrap();
    });
}

#[test]
fn shuffled_table_does_not_panic() {
    // A table that is a valid permutation but not sorted gives wrong answers, never a panic.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    build_docs(&dir, &vec![b"abcabcabcab".to_vec(), b"bcbcbca".to_vec()]).unwrap();
    edit(&dir, "table.0", |b| b.reverse());
    let index = Index::open(&dir).unwrap();
    for q in [&b"a"[..], b"bc", b"abc", b"cab", b"zz"] {
        let _ = index.count(q).unwrap();
        let _ = index.find(q, 100).unwrap();
    }
    let _ = index
        .maximal_spans(b"abcabcbcbcaxabcab", 1, u64::MAX)
        .unwrap();
}

/// Build and query cost on a larger corpus (run with `--ignored --nocapture` in release;
/// measure peak memory with `/usr/bin/time -v`).
#[test]
#[ignore]
fn large_build_timing() {
    let mb: usize = std::env::var("ATTRIB_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let words = [
        "the ",
        "model ",
        "data ",
        "of ",
        "a ",
        "shoulders ",
        "giant ",
        "on\n",
    ];
    let docs = (0..mb * 256).map(move |_| {
        let mut d = Vec::with_capacity(4096);
        while d.len() < 4000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            d.extend_from_slice(words[(x % 8) as usize].as_bytes());
        }
        Ok(DocInput {
            contribution: x % 1000,
            bytes: d,
        })
    });
    let t = std::time::Instant::now();
    let info = build(&dir, docs, &mut |_| {}).unwrap();
    println!(
        "built {} tokens, {} docs, width {} in {:?}",
        info.token_count,
        info.doc_count,
        info.pointer_width,
        t.elapsed()
    );
    let t = std::time::Instant::now();
    let index = Index::open(&dir).unwrap();
    println!("opened in {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let mut total = 0;
    for q in [
        "the model",
        "giant on\nthe data of a",
        "shoulders shoulders shoulders",
    ] {
        total += index.count(q.as_bytes()).unwrap();
    }
    println!("3 counts ({total}) in {:?}", t.elapsed());
    let out =
        "we stand on the shoulders giant of a model data the of a giant; nothing here matches zzz"
            .repeat(100);
    let t = std::time::Instant::now();
    let spans = index.maximal_spans(out.as_bytes(), 8, 1000).unwrap();
    println!(
        "{} spans over {} output bytes in {:?}",
        spans.len(),
        out.len(),
        t.elapsed()
    );
    // Worst case: an output copied verbatim from the corpus (one long carried-over match).
    let text = std::fs::read(dir.join("tokenized.0")).unwrap();
    for len in [10_000usize, 100_000] {
        let copy: Vec<u8> = text[1..]
            .iter()
            .copied()
            .filter(|&b| b != 0xFF)
            .take(len)
            .collect();
        let t = std::time::Instant::now();
        let spans = index.maximal_spans(&copy, 8, u64::MAX).unwrap();
        println!(
            "copied output of {len} bytes: {} spans in {:?}",
            spans.len(),
            t.elapsed()
        );
    }
}

/// Writes an index and our answers for infini-gram's own engine to check
/// (`ATTRIB_EXPORT_DIR=/some/dir cargo test -p shoulders-attrib -- --ignored export_for_infini_gram`,
/// then open `/some/dir/index` with `InfiniGramEngine(..., token_dtype='u8')`).
#[test]
#[ignore]
fn export_for_infini_gram() {
    let Ok(out) = std::env::var("ATTRIB_EXPORT_DIR") else {
        return;
    };
    let out = Path::new(&out);
    let alphabet = ["a", "b", "c", " ", "\u{e9}", "\u{65e5}\u{672c}"];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let ndocs: usize = std::env::var("ATTRIB_EXPORT_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let docs: Docs = (0..ndocs)
        .map(|_| {
            let len = next(400) as usize;
            let mut d = Vec::new();
            while d.len() < len {
                d.extend_from_slice(alphabet[next(6) as usize].as_bytes());
            }
            d
        })
        .collect();
    let info = build_docs(&out.join("index"), &docs).unwrap();
    let index = Index::open(&out.join("index")).unwrap();
    let mut answers = Vec::new();
    for i in 0..500 {
        let d = &docs[next(docs.len() as u64) as usize];
        let q: Vec<u8> = if i % 5 == 0 || d.is_empty() {
            (0..1 + next(8))
                .map(|_| b"abcz"[next(4) as usize])
                .collect()
        } else {
            let s = next(d.len() as u64) as usize;
            d[s..(s + 1 + next(12) as usize).min(d.len())].to_vec()
        };
        let hits = index.find(&q, usize::MAX).unwrap();
        answers.push(serde_json::json!({
            "query": q,
            "count": index.count(&q).unwrap(),
            "docs": hits.iter().map(|h| h.doc).collect::<Vec<_>>(),
            "offsets": hits.iter().map(|h| h.offset).collect::<Vec<_>>(),
        }));
    }
    let meta = serde_json::json!({"info": info, "answers": answers});
    std::fs::write(out.join("answers.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
}

/// The attribution files are validated (sizes on open, runs by `verify_full`): a tampered
/// copy map or original text is `E_INDEX_CORRUPT`.
#[test]
fn attribution_files_are_checked() {
    use shoulders_attrib::index::{build_with, BuildMode, OWNERS_FILE, RAW_FILE};
    let docs = [
        "The first document, with its own words.",
        "THE FIRST DOCUMENT,\r\nwith its own words. And more.",
    ];
    let make = |dir: &std::path::Path| {
        build_with(
            dir,
            docs.iter().enumerate().map(|(d, s)| {
                Ok(DocInput {
                    contribution: 10 + d as u64,
                    bytes: s.as_bytes().to_vec(),
                })
            }),
            BuildMode::Attribution { window_bytes: 8 },
            &mut |_| {},
        )
        .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let ix = dir.path().join("ix");
    let info = make(&ix);
    let layout = info.content.as_ref().unwrap();
    // The second document copies the first (after normalisation): it owns only "and more.".
    assert_eq!(layout.own_windows[0], layout.windows[0]);
    assert_eq!(layout.own_windows[1], " and more.".len() as u64);
    let index = Index::open(&ix).unwrap();
    assert_eq!(index.original(1), Some(docs[1].as_bytes()));
    // "first document" in the token array is lower case; it maps back to the original bytes.
    let hits = index.find(b"first document,", 10).unwrap();
    assert_eq!(hits.len(), 2);
    for h in hits {
        // Token-array position: the first document starts at 1, the second after it and its
        // separator (the first document's normalised form has its original length).
        let pos = h.offset
            + if h.doc == 0 {
                1
            } else {
                docs[0].len() as u64 + 2
            };
        let (orig, len) = index.locate_original(pos, 15).unwrap();
        let text = &docs[h.doc as usize][orig.offset as usize..(orig.offset + len) as usize];
        assert_eq!(text.to_lowercase(), "first document,", "{text:?}");
    }
    // Tampering.
    for (file, edit) in [(OWNERS_FILE, 0usize), (RAW_FILE, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let ix = dir.path().join("ix");
        make(&ix);
        let path = ix.join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        if edit == 0 {
            // An owner document that does not exist.
            let last = bytes.len() - 4;
            bytes[last..].copy_from_slice(&99u32.to_le_bytes());
        } else {
            bytes.pop();
        }
        std::fs::write(&path, bytes).unwrap();
        assert_refused(&ix, file);
    }
}
