//! Benchmarks for shoulders (`cargo bench -p shoulders-bench --bench
//! ledger|hashing|lineage|attrib|attrib_scale|settle|store|server|scale|tiles`); this library
//! only holds the helpers the benchmarks share.
//!
//! `ledger`: durable signed appends, single and batched; inclusion proofs at one million leaves,
//! in memory and from SQLite; in-memory tree build against `ct-merkle`. Set
//! `SHOULDERS_BENCH_SCALE=0.01` for a quick smoke run and `SHOULDERS_BENCH_DIR` to put the
//! temporary ledgers on a particular file system.

pub mod serve;
pub mod settle;

/// The origin of every benchmark ledger: records are signed for it.
pub const BENCH_LOG: &str = "bench.shoulders.local/log";

/// Peak resident memory of this process so far (`VmHWM`), in KiB; 0 where unavailable.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
