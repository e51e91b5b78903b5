//! Fuzz harnesses for every decoder that reads untrusted bytes, driven by proptest so they run
//! on the stable toolchain in CI: record bytes, JSON bodies, checkpoint notes, proofs, log
//! exports, safetensors and GGUF headers, and attribution index files. Each harness feeds
//! random inputs and mutations of a valid input, and fails on any panic or on a mutated input
//! that is accepted when it must not be.
//!
//! `SHOULDERS_FUZZ_CASES` sets the number of executions per harness (default 2000, the bounded
//! CI run); `reliability/fuzz.sh` documents the long run.

/// Executions per harness, from `SHOULDERS_FUZZ_CASES` (default 2000).
pub fn cases() -> u32 {
    std::env::var("SHOULDERS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(2000)
}

/// Apply up to `ops` byte-level mutations (flip, insert, delete, truncate) chosen by `seed`.
pub fn mutate(input: &[u8], seed: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for chunk in seed.chunks(4) {
        if chunk.len() < 4 {
            break;
        }
        let at = (usize::from(chunk[1]) << 8 | usize::from(chunk[2])) % (out.len() + 1);
        match chunk[0] % 5 {
            0 if at < out.len() => out[at] ^= chunk[3] | 1,
            1 => out.insert(at, chunk[3]),
            2 if at < out.len() => {
                out.remove(at);
            }
            3 => out.truncate(at),
            _ if at < out.len() => out[at] = chunk[3],
            _ => {}
        }
    }
    out
}
