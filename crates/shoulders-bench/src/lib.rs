//! Benchmarks for shoulders; this library is intentionally empty.
//!
//! Run `cargo bench -p shoulders-bench` for the full figures (durable signed appends, single and
//! batched; inclusion proofs at one million leaves, in memory and from SQLite; in-memory tree
//! build against `ct-merkle`). Set `SHOULDERS_BENCH_SCALE=0.01` for a quick smoke run and
//! `SHOULDERS_BENCH_DIR` to put the temporary ledgers on a particular file system.
