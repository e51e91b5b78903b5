//! Hashing throughput of a large safetensors file (per tensor + whole file) against coreutils
//! `sha256sum` on the same file, in the same run, with the peak memory of our hashing process.
//!
//! `cargo bench -p shoulders-bench --bench hashing`
//! (`SHOULDERS_BENCH_HASH_MIB`, default 2048, sets the file size).

use shoulders_bench::peak_rss_kib;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const CHILD_ENV: &str = "SHOULDERS_BENCH_HASH_CHILD";

/// Write a safetensors file of about `mib` MiB: 64 F32 tensors of pseudo-random bytes, streamed.
fn write_file(path: &Path, mib: u64) {
    let tensors = 64u64;
    let per_tensor = (mib * 1024 * 1024 / tensors) / 4 * 4;
    let mut header = serde_json::Map::new();
    for i in 0..tensors {
        header.insert(
            format!("layers.{i}.weight"),
            serde_json::json!({"dtype": "F32", "shape": [per_tensor / 4], "data_offsets": [i * per_tensor, (i + 1) * per_tensor]}),
        );
    }
    let mut text = serde_json::to_vec(&header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    out.write_all(&(text.len() as u64).to_le_bytes()).unwrap();
    out.write_all(&text).unwrap();
    let mut chunk = vec![0u8; 1 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut left = per_tensor * tensors;
    while left > 0 {
        for b in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        let n = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    out.flush().unwrap();
}

fn main() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        let path = std::path::PathBuf::from(path);
        let start = Instant::now();
        let mut progress = |_: u64| {};
        let artifact = shoulders_artifacts::hash_safetensors(
            &path,
            "model.safetensors",
            &mut (&mut progress as &mut dyn FnMut(u64)),
        )
        .unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{secs} {} {} {}",
            peak_rss_kib(),
            artifact.tensors.len(),
            artifact.sha256
        );
        return;
    }
    let mib: u64 = std::env::var("SHOULDERS_BENCH_HASH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    let dir = tempfile::Builder::new()
        .prefix("shoulders-hash-")
        .tempdir()
        .unwrap();
    let path = dir.path().join("model.safetensors");
    write_file(&path, mib);
    let bytes = std::fs::metadata(&path).unwrap().len();
    let mb = bytes as f64 / 1e6;

    let sha256sum = || {
        let start = Instant::now();
        let out = Command::new("sha256sum")
            .arg(&path)
            .output()
            .expect("run sha256sum");
        let secs = start.elapsed().as_secs_f64();
        let hex = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        (secs, hex)
    };
    let ours = || {
        let out = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, &path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let f: Vec<&str> = text.split_whitespace().collect();
        (
            f[0].parse::<f64>().unwrap(),
            f[1].parse::<u64>().unwrap(),
            f[2].to_string(),
            f[3].to_string(),
        )
    };
    // Warm the page cache once so both read from memory, then alternate runs.
    sha256sum();
    let mut rows = Vec::new();
    for _ in 0..2 {
        let (s_secs, s_hex) = sha256sum();
        let (o_secs, rss, tensors, o_hex) = ours();
        assert_eq!(
            o_hex,
            format!("sha256:{s_hex}"),
            "whole-file hashes must agree"
        );
        rows.push((s_secs, o_secs, rss, tensors));
    }
    println!(
        "\nhashing a {mb:.0} MB safetensors file ({} tensors), page cache warm, {} cores",
        rows[0].3,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:<48} {:>10} {:>12} {:>10}",
        "measurement", "seconds", "MB/s", "peak RSS"
    );
    for (s_secs, o_secs, rss, _) in &rows {
        println!(
            "{:<48} {:>10.3} {:>12.0} {:>10}",
            "sha256sum (coreutils), whole file",
            s_secs,
            mb / s_secs,
            "-"
        );
        println!(
            "{:<48} {:>10.3} {:>12.0} {:>7} MiB   ratio {:.2}x sha256sum (target >= 0.8x, < 100 MB)",
            "shoulders: per-tensor + whole-file SHA-256",
            o_secs,
            mb / o_secs,
            rss / 1024,
            s_secs / o_secs
        );
    }
}
