//! Attribution index figures: build time and peak memory on a generated corpus of at least
//! 100M tokens (bytes), plain (infini-gram layout only) and full (normalisation, original
//! text, copy map: what `index build` does), `count` latency, and the full attribution of
//! 512-byte outputs (spans, copy-map owners, shares: what the gateway does per call).
//! `cargo bench -p shoulders-bench --bench attrib` (`SHOULDERS_BENCH_ATTRIB_MB`, default 100).
//! The same-run comparison with infini-gram's indexer is `bench/infini_gram_crosscheck.py`.

use shoulders_attrib::dataset::{AttributeOptions, BuildDoc, DatasetIndex};
use shoulders_attrib::index::{build, DocInput, Index};
use shoulders_bench::peak_rss_kib;
use std::hint::black_box;
use std::time::Instant;

/// Deterministic prose from a 2,000-word vocabulary (Zipf-like word choice), ~4 KiB documents.
fn corpus(total_bytes: usize) -> Vec<Vec<u8>> {
    let vocab: Vec<String> = (0..2000u32)
        .map(|i| {
            let mut w = String::new();
            let mut x = i.wrapping_mul(2654435761).wrapping_add(12345);
            for _ in 0..(3 + i % 7) {
                w.push((b'a' + (x % 26) as u8) as char);
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
            }
            w
        })
        .collect();
    let mut docs = Vec::new();
    let mut x: u64 = 42;
    let mut made = 0;
    while made < total_bytes {
        let mut doc = String::with_capacity(4096);
        while doc.len() < 4000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (x >> 33) as f64 / (1u64 << 31) as f64;
            let i = ((r * r * r) * vocab.len() as f64) as usize; // skewed towards common words
            doc.push_str(&vocab[i.min(vocab.len() - 1)]);
            doc.push(if (x >> 20).is_multiple_of(12) {
                '.'
            } else {
                ' '
            });
        }
        made += doc.len();
        docs.push(doc.into_bytes());
    }
    docs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mb: usize = std::env::var("SHOULDERS_BENCH_ATTRIB_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let docs = corpus(mb * 1_000_000);
    let tokens: usize = docs.iter().map(Vec::len).sum();
    let dir = tempfile::tempdir().unwrap();
    let index_dir = dir.path().join("index");
    let rss_before = peak_rss_kib() / 1024;
    let start = Instant::now();
    let inputs = docs.iter().enumerate().map(|(i, d)| {
        Ok(DocInput {
            contribution: i as u64,
            bytes: d.clone(),
        })
    });
    let info = build(&index_dir, inputs, &mut |_| {}).unwrap();
    let build_s = start.elapsed().as_secs_f64();
    let peak = peak_rss_kib() / 1024;
    let index = Index::open(&index_dir).unwrap();

    // The full attribution build, as `shoulders index build` runs it.
    let start = Instant::now();
    let report = shoulders_attrib::dataset::build(
        dir.path(),
        "bench/corpus",
        0,
        docs.iter().enumerate().map(|(i, d)| {
            Ok(BuildDoc {
                contribution: i as u64,
                contributor: format!("c{}", i % 100),
                bytes: d.clone(),
            })
        }),
        &mut |_| {},
    )
    .unwrap();
    let full_s = start.elapsed().as_secs_f64();
    let full_peak = peak_rss_kib() / 1024;
    let dataset = DatasetIndex::open(dir.path(), "bench/corpus").unwrap();

    // count: 10,000 n-grams of 5..40 bytes sampled from the corpus.
    let mut x: u64 = 7;
    let mut next = |n: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % n
    };
    let mut times = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let d = &docs[next(docs.len() as u64) as usize];
        let len = 5 + next(36) as usize;
        let at = next((d.len() - len) as u64) as usize;
        let q = &d[at..at + len];
        let t = Instant::now();
        black_box(index.count(q).unwrap());
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let count_us = median(times);

    // Span attribution of 512-byte outputs: half copied from one document, half recombined.
    let mut span_ms = Vec::new();
    for k in 0..50 {
        let d = &docs[next(docs.len() as u64) as usize];
        let at = next((d.len() - 512) as u64) as usize;
        let mut out = d[at..at + 256].to_vec();
        let e = &docs[next(docs.len() as u64) as usize];
        out.extend_from_slice(&e[k..k + 256]);
        let t = Instant::now();
        let spans = index.maximal_spans(&out, 16, 1000).unwrap();
        for s in &spans {
            black_box(index.find(&out[s.start..s.end], 1000).unwrap());
        }
        span_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let span_med = median(span_ms);

    // The full attribution (what the gateway does per call) of 200 outputs of 512 bytes.
    let mut full_ms = Vec::new();
    for k in 0..200 {
        let d = &docs[next(docs.len() as u64) as usize];
        let at = next((d.len() - 512) as u64) as usize;
        let mut out = d[at..at + 256].to_vec();
        let e = &docs[next(docs.len() as u64) as usize];
        out.extend_from_slice(&e[k..k + 256]);
        let text = String::from_utf8(out).unwrap();
        let t = Instant::now();
        black_box(
            dataset
                .attribute(&text, &AttributeOptions::default())
                .unwrap(),
        );
        full_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    full_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (full_p50, full_p99) = (
        full_ms[full_ms.len() / 2],
        full_ms[full_ms.len() * 99 / 100],
    );

    // Outputs that quote nothing (corpus words in a new order): the paraphrase path runs too.
    let words: Vec<&str> = docs[..100]
        .iter()
        .flat_map(|d| std::str::from_utf8(d).unwrap().split(' '))
        .collect();
    let mut para_ms = Vec::new();
    let mut no_quote = 0;
    for _ in 0..200 {
        let mut text = String::new();
        while text.len() < 512 {
            text.push_str(words[next(words.len() as u64) as usize]);
            text.push(' ');
        }
        let t = Instant::now();
        let r = dataset
            .attribute(&text, &AttributeOptions::default())
            .unwrap();
        para_ms.push(t.elapsed().as_secs_f64() * 1e3);
        no_quote += usize::from(r.shares.rule != shoulders_attrib::shares::Rule::Spans);
    }
    para_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (para_p50, para_p99) = (
        para_ms[para_ms.len() / 2],
        para_ms[para_ms.len() * 99 / 100],
    );
    println!(
        "\nattribution index on {tokens} tokens ({} documents, {} MB generated prose), 2 cores",
        docs.len(),
        mb
    );
    println!("{:<58} {:>14}", "measurement", "figure");
    println!(
        "{:<58} {:>11.2} s",
        "plain index build (libsais, all cores)", build_s
    );
    println!(
        "{:<58} {:>10} MiB   ({} MiB held by the corpus before building)",
        "peak RSS of this process during build", peak, rss_before
    );
    println!("{:<58} {:>11} B", "pointer width", info.pointer_width);
    println!(
        "{:<58} {:>11.2} s",
        "attribution index (normalise, SA, PLCP, copy map)", report.index_seconds
    );
    println!(
        "{:<58} {:>11.2} s",
        "paraphrase index (BM25 passages, tantivy)", report.paraphrase_seconds
    );
    println!(
        "{:<58} {:>11.2} s",
        "`index build` in all (both, plus metadata)", full_s
    );
    println!(
        "{:<58} {:>10} MiB   ({} windows copied)",
        "peak RSS so far (attribution build included)", full_peak, report.copied_windows
    );
    println!(
        "{:<58} {:>10.1} µs   target < 50 µs: {}",
        "count, median of 10,000 corpus n-grams (5-40 bytes)",
        count_us,
        if count_us < 50.0 { "met" } else { "MISSED" }
    );
    println!(
        "{:<58} {:>10.2} ms   target < 50 ms: {}",
        "maximal spans + find of a 512-token output (plain index)",
        span_med,
        if span_med < 50.0 { "met" } else { "MISSED" }
    );
    println!(
        "{:<58} {:>7.2}/{:.2} ms target < 50 ms: {}",
        "full attribution of a 512-byte output, p50/p99",
        full_p50,
        full_p99,
        if full_p99 < 50.0 { "met" } else { "MISSED" }
    );
    println!(
        "{:<58} {:>7.2}/{:.2} ms target < 50 ms: {}   ({no_quote} of 200 took the paraphrase path)",
        "same, outputs quoting nothing (suffix array + BM25)",
        para_p50,
        para_p99,
        if para_p99 < 50.0 { "met" } else { "MISSED" }
    );
}
