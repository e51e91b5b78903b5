//! The memory budget of a memory-mapped index (Linux: reads `/proc/self/smaps`): opening an
//! index makes none of its token array or suffix array resident, and queries make resident
//! only the `O(log N)` pages per binary-search step they touch, a small fraction of the files.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::time::Instant;

use shoulders_attrib::index::{build, DocInput, Index, TABLE_FILE, TOKENIZED_FILE};

/// Tokens of the index the always-run test builds, in MiB: small enough for a debug build in
/// CI (about 10 s), large enough for a 3-byte suffix array of 48 MiB.
const CI_MIB: usize = 16;
/// Tokens of the full-size run (`--ignored`: its build alone takes 25 to 50 s in debug).
const FULL_MIB: usize = 48;
const PAGE_BYTES: u64 = 4096;
/// Slack over one page per file per search step: Linux may map a few already cached
/// neighbours of a faulting page (`fault_around_bytes`).
const SLACK: u64 = 2;

/// Deterministic prose: syllable words from a xorshift generator, so the text does not repeat
/// itself at length (a realistic suffix array) and the test needs no data file.
fn document(seed: u64, len: usize) -> Vec<u8> {
    const SYLLABLES: [&str; 32] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ba", "de", "fi", "go", "hu", "ja", "ke",
        "li", "ma", "no", "pe", "qui", "ra", "se", "to", "un", "ve", "wa", "xi", "yo", "ze", "ar",
        "el", "on",
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for k in 0..1 + (x >> 60) % 3 {
            out.extend_from_slice(SYLLABLES[((x >> (5 * k)) % 32) as usize].as_bytes());
        }
        out.push(if x.is_multiple_of(13) { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// Resident bytes (`Rss`) and size of this process's mapping of `path`, from
/// `/proc/self/smaps` (0 resident when the file is mapped but untouched).
fn resident(path: &Path) -> (u64, u64) {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let name = path.to_str().unwrap();
    let (mut rss, mut size, mut inside) = (0, 0, false);
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            // A mapping header: "start-end perms offset dev inode path".
            inside = line.ends_with(name);
            continue;
        }
        let kib = || {
            words
                .clone()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match first {
            "Rss:" if inside => rss += kib() * 1024,
            "Size:" if inside => size += kib() * 1024,
            _ => {}
        }
    }
    (rss, size)
}

#[test]
fn open_and_queries_touch_few_pages() {
    check(CI_MIB);
}

/// The same at about 50 MB of tokens (`cargo test -p shoulders-attrib --test resident --
/// --ignored --nocapture`; `SHOULDERS_RESIDENT_TEST_VERIFY=1` also times `verify_full`).
#[test]
#[ignore]
fn open_and_queries_touch_few_pages_full_size() {
    check(FULL_MIB);
}

fn check(mib: usize) {
    let total = mib << 20;
    let doc_bytes = 64 << 10;
    let docs = total / doc_bytes;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("idx");
    let started = Instant::now();
    build(
        &dir,
        (0..docs).map(|d| {
            Ok(DocInput {
                contribution: d as u64,
                bytes: document(d as u64 + 1, doc_bytes),
            })
        }),
        &mut |_| {},
    )
    .unwrap();
    let build_s = started.elapsed().as_secs_f64();
    let (text_path, table_path) = (dir.join(TOKENIZED_FILE), dir.join(TABLE_FILE));
    // Start cold, as a server opening an index it has not read: the build just wrote these
    // files, and the page cache may hold them in large folios, each mapped whole on a fault
    // (Linux 6.x), which would measure the build's folio sizes instead of the queries. The
    // build synced them, so they are clean and dropping them is allowed.
    for path in [&text_path, &table_path] {
        let file = std::fs::File::open(path).unwrap();
        rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    }

    let started = Instant::now();
    let index = Index::open(&dir).unwrap();
    let open_s = started.elapsed().as_secs_f64();
    let n = index.info().token_count;
    let (text_rss, text_size) = resident(&text_path);
    let (table_rss, table_size) = resident(&table_path);
    // Mappings are whole pages.
    assert_eq!(
        text_size,
        n.next_multiple_of(4096),
        "tokenized.0 is mapped whole"
    );
    let table_bytes = n * u64::from(index.info().pointer_width);
    assert_eq!(table_size, table_bytes.next_multiple_of(4096));
    assert_eq!(
        (text_rss, table_rss),
        (0, 0),
        "open reads no byte of the token array or the suffix array"
    );

    // Counts: each is two binary searches of at most log2(N) + 1 steps, each step touching
    // one page of the table and one (rarely two) of the text.
    let probe = document(docs as u64 / 2, 4096);
    let queries: Vec<&[u8]> = vec![&probe[100..140], &probe[1000..1010], b"kalo", b"zzzz"];
    for q in &queries[..3] {
        assert!(index.count(q).unwrap() > 0);
    }
    assert_eq!(index.count(b"zzzz").unwrap(), 0);
    let steps = 2 * (64 - n.leading_zeros() as u64 + 1);
    let (text_rss, _) = resident(&text_path);
    let (table_rss, _) = resident(&table_path);
    let bound = queries.len() as u64 * steps * PAGE_BYTES * SLACK;
    println!(
        "after {} counts: table {} KiB, text {} KiB resident (bound {} KiB)",
        queries.len(),
        table_rss >> 10,
        text_rss >> 10,
        bound >> 10
    );
    assert!(table_rss <= bound && text_rss <= bound);
    assert!(table_rss * 20 < table_size && text_rss * 20 < text_size);

    // Attribution of a 32-byte output copied from a document, and of unrelated text: the
    // matching statistics make one whole-array search per output byte (re-finding the
    // carried match) plus extensions inside a shrinking range: O(|output| · log N) pages.
    let out = &probe[2000..2032];
    let unrelated = b"an output that shares little";
    let spans = index.maximal_spans(out, 8, u64::MAX).unwrap();
    assert!(
        spans.iter().any(|s| s.end - s.start == out.len()),
        "{spans:?}"
    );
    index.maximal_spans(unrelated, 8, u64::MAX).unwrap();
    let found = index.find(&probe[500..532], 10).unwrap();
    assert_eq!(found.len(), 1);
    let searches = (queries.len() + 1 + out.len() + unrelated.len()) as u64;
    let (text_rss, _) = resident(&text_path);
    let (table_rss, _) = resident(&table_path);
    println!(
        "after attribution: table {} KiB of {} MiB, text {} KiB of {} MiB resident",
        table_rss >> 10,
        table_size >> 20,
        text_rss >> 10,
        text_size >> 20
    );
    let bound = searches * steps * PAGE_BYTES * SLACK;
    assert!(table_rss <= bound && text_rss <= bound, "bound {bound}");
    // The bound does not grow with the index (only its log does): at full size it is a
    // small fraction of the files.
    if mib >= FULL_MIB {
        assert!(
            (table_rss + text_rss) * 10 < table_size + text_size,
            "queries made over 10% of the index resident"
        );
    }

    // What opening cost before mapping: reading every file whole (then the O(tokens) checks,
    // now `verify_full`: timed with SHOULDERS_RESIDENT_TEST_VERIFY=1, as it takes longer than
    // the rest of the test in a debug build).
    let started = Instant::now();
    let mut read = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        read += std::fs::read(entry.unwrap().path()).unwrap().len();
    }
    let read_s = started.elapsed().as_secs_f64();
    println!(
        "{mib} MiB of tokens ({docs} documents): build {build_s:.2} s; open (mapped) {:.3} ms; \
         reading the files whole ({} MiB, as open did before its checks) {read_s:.3} s",
        open_s * 1000.0,
        read >> 20
    );
    if std::env::var_os("SHOULDERS_RESIDENT_TEST_VERIFY").is_some() {
        let started = Instant::now();
        index.verify_full().unwrap();
        println!("verify_full {:.3} s", started.elapsed().as_secs_f64());
    }
}
