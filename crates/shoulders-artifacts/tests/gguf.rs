//! GGUF hashing: files written byte by byte here, per-tensor and whole-file hashes, lineage
//! hints, change detection, hostile headers and a fuzz loop.

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use shoulders_artifacts::{compare, hash_gguf, scan_dir, Difference, GgufHints};
use shoulders_record::{Artifact, MAX_SAFE_INTEGER};
use std::ops::Range;
use std::path::Path;

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

// ---- a small GGUF writer -------------------------------------------------------------------

/// A metadata value (`enum gguf_type`).
#[derive(Clone, Debug)]
enum Val {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    /// Element type and elements (which must all be of that type).
    Arr(u32, Vec<Val>),
    U64(u64),
    I64(i64),
    F64(f64),
}

const T_U8: u32 = 0;
const T_U32: u32 = 4;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;

impl Val {
    fn ty(&self) -> u32 {
        match self {
            Val::U8(_) => 0,
            Val::I8(_) => 1,
            Val::U16(_) => 2,
            Val::I16(_) => 3,
            Val::U32(_) => 4,
            Val::I32(_) => 5,
            Val::F32(_) => 6,
            Val::Bool(_) => 7,
            Val::Str(_) => 8,
            Val::Arr(..) => 9,
            Val::U64(_) => 10,
            Val::I64(_) => 11,
            Val::F64(_) => 12,
        }
    }

    /// The value without its type tag (array elements carry none).
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Val::U8(v) => out.push(*v),
            Val::I8(v) => out.extend(v.to_le_bytes()),
            Val::U16(v) => out.extend(v.to_le_bytes()),
            Val::I16(v) => out.extend(v.to_le_bytes()),
            Val::U32(v) => out.extend(v.to_le_bytes()),
            Val::I32(v) => out.extend(v.to_le_bytes()),
            Val::F32(v) => out.extend(v.to_le_bytes()),
            Val::Bool(v) => out.push(u8::from(*v)),
            Val::Str(s) => put_str(out, s),
            Val::Arr(elem, items) => {
                put_u32(out, *elem);
                put_u64(out, items.len() as u64);
                for item in items {
                    assert_eq!(item.ty(), *elem, "array elements share one type");
                    item.write(out);
                }
            }
            Val::U64(v) => out.extend(v.to_le_bytes()),
            Val::I64(v) => out.extend(v.to_le_bytes()),
            Val::F64(v) => out.extend(v.to_le_bytes()),
        }
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend(v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend(v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend(s.as_bytes());
}

fn put_kv(out: &mut Vec<u8>, key: &str, v: &Val) {
    put_str(out, key);
    put_u32(out, v.ty());
    v.write(out);
}

/// The fixed start of a file: magic, version, tensor count, metadata count.
fn preamble(version: u32, tensors: u64, kvs: u64) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    put_u32(&mut out, version);
    put_u64(&mut out, tensors);
    put_u64(&mut out, kvs);
    out
}

struct TensorSpec {
    name: String,
    dims: Vec<u64>,
    ggml_type: u32,
    data: Vec<u8>,
}

fn tensor(name: &str, dims: &[u64], ggml_type: u32, len: usize, seed: u8) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dims: dims.to_vec(),
        ggml_type,
        data: (0..len)
            .map(|i| seed.wrapping_mul(37).wrapping_add(i as u8))
            .collect(),
    }
}

struct Built {
    bytes: Vec<u8>,
    /// End of the tensor infos.
    header_end: usize,
    data_start: usize,
    /// Each tensor's expected byte range (absolute): its offset to the next one's, the last
    /// to the end of the file.
    ranges: Vec<(String, Range<usize>)>,
    /// Where each tensor's `n_dims` and `offset` fields are, for tampering.
    n_dims_at: Vec<usize>,
    offset_at: Vec<usize>,
}

/// Lay out a file the way llama.cpp does: header, zero padding to `alignment`, then each
/// tensor's data followed by zero padding to `alignment` (the last one too).
fn build(version: u32, kvs: &[(&str, Val)], tensors: &[TensorSpec], alignment: usize) -> Built {
    let mut out = preamble(version, tensors.len() as u64, kvs.len() as u64);
    for (k, v) in kvs {
        put_kv(&mut out, k, v);
    }
    let mut offsets = Vec::new();
    let mut next = 0usize;
    for t in tensors {
        offsets.push(next);
        next = (next + t.data.len()).next_multiple_of(alignment);
    }
    let (mut n_dims_at, mut offset_at) = (Vec::new(), Vec::new());
    for (t, off) in tensors.iter().zip(&offsets) {
        put_str(&mut out, &t.name);
        n_dims_at.push(out.len());
        put_u32(&mut out, t.dims.len() as u32);
        for d in &t.dims {
            put_u64(&mut out, *d);
        }
        put_u32(&mut out, t.ggml_type);
        offset_at.push(out.len());
        put_u64(&mut out, *off as u64);
    }
    let header_end = out.len();
    out.resize(header_end.next_multiple_of(alignment), 0);
    let data_start = out.len();
    for t in tensors {
        out.extend(&t.data);
        out.resize(out.len().next_multiple_of(alignment), 0);
    }
    let ranges = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let start = data_start + offsets[i];
            let end = offsets.get(i + 1).map_or(out.len(), |o| data_start + o);
            (t.name.clone(), start..end)
        })
        .collect();
    Built {
        bytes: out,
        header_end,
        data_start,
        ranges,
        n_dims_at,
        offset_at,
    }
}

fn base_model_kvs() -> Vec<(&'static str, Val)> {
    vec![
        ("general.base_model.count", Val::U32(3)),
        ("general.base_model.0.name", Val::Str("Base 1b".into())),
        ("general.base_model.0.organization", Val::Str("Acme".into())),
        (
            "general.base_model.0.repo_url",
            Val::Str("https://huggingface.co/acme/base-1b".into()),
        ),
        (
            "general.base_model.1.organization",
            Val::Str("Other Org".into()),
        ),
        ("general.base_model.1.name", Val::Str("Merge Source".into())),
        // No entry 2; entry 3 is beyond the count.
        ("general.base_model.3.name", Val::Str("Ignored".into())),
    ]
}

/// A v3 file with metadata of every type, 64-byte alignment and five tensors of different
/// types and sizes (so there is padding between them).
fn sample() -> Built {
    let mut kvs: Vec<(&str, Val)> = vec![
        ("general.architecture", Val::Str("llama".into())),
        ("general.alignment", Val::U32(64)),
        ("general.license", Val::Str("apache-2.0".into())),
        ("general.file_type", Val::U32(7)),
        ("llama.rope.freq_base", Val::F32(10000.0)),
        ("llama.use_parallel_residual", Val::Bool(true)),
        (
            "tokenizer.ggml.tokens",
            Val::Arr(
                T_STRING,
                ["<s>", "</s>", "hello", "wörld"]
                    .iter()
                    .map(|s| Val::Str(s.to_string()))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.scores",
            Val::Arr(6, vec![Val::F32(0.0), Val::F32(-1.5), Val::F32(2.25)]),
        ),
        (
            "test.nested",
            Val::Arr(
                T_ARRAY,
                vec![
                    Val::Arr(T_U32, vec![Val::U32(1), Val::U32(2)]),
                    Val::Arr(T_U32, vec![]),
                ],
            ),
        ),
        ("test.u8", Val::U8(200)),
        ("test.i8", Val::I8(-3)),
        ("test.u16", Val::U16(65_000)),
        ("test.i16", Val::I16(-30_000)),
        ("test.i32", Val::I32(-7)),
        ("test.u64", Val::U64(u64::MAX)),
        ("test.i64", Val::I64(i64::MIN)),
        ("test.f64", Val::F64(std::f64::consts::PI)),
        ("test.empty_string", Val::Str(String::new())),
    ];
    kvs.extend(base_model_kvs());
    let tensors = vec![
        tensor("token_embd.weight", &[3, 2], 0, 4 * 6, 1), // F32, 24 bytes
        tensor("blk.0.attn_q.weight", &[32, 2], 8, 34 * 2, 2), // Q8_0, 68 bytes
        tensor("blk.0.ffn_up.weight", &[32], 2, 18, 3),    // Q4_0, 18 bytes
        tensor("output_norm.weight", &[5], 1, 2 * 5, 4),   // F16, 10 bytes
        tensor("output.weight", &[256], 99, 130, 5),       // unknown type, 130 bytes
    ];
    build(3, &kvs, &tensors, 64)
}

fn no_progress() -> impl FnMut(u64) {
    |_| {}
}

fn hash_bytes(dir: &Path, bytes: &[u8]) -> Result<(Artifact, GgufHints), String> {
    let path = dir.join("model.gguf");
    std::fs::write(&path, bytes).unwrap();
    let mut p = no_progress();
    hash_gguf(&path, "model.gguf", &mut (&mut p as &mut dyn FnMut(u64)))
        .map_err(|e| format!("{} {e}", e.code()))
}

// ---- well-formed files ---------------------------------------------------------------------

#[test]
fn tensors_and_file_are_hashed_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let built = sample();
    let path = tmp.path().join("model.gguf");
    std::fs::write(&path, &built.bytes).unwrap();
    let mut seen = 0u64;
    let mut progress = |n: u64| seen += n;
    let (artifact, hints) = hash_gguf(
        &path,
        "weights/model.gguf",
        &mut (&mut progress as &mut dyn FnMut(u64)),
    )
    .unwrap();
    let bytes = &built.bytes;
    assert_eq!(artifact.path, "weights/model.gguf");
    assert_eq!(artifact.sha256, sha(bytes));
    assert_eq!(artifact.size_bytes, bytes.len() as u64);
    assert_eq!(seen, bytes.len() as u64, "progress covers every byte once");

    // The layout really has padding to check against.
    assert!(built.data_start > built.header_end);
    assert_eq!(built.data_start % 64, 0);
    assert_eq!(built.ranges[0].1.len(), 64, "24 bytes + 40 padding");
    assert_eq!(
        built.ranges[4].1.len(),
        192,
        "130 bytes + 62 padding, to the end"
    );
    assert_eq!(built.ranges[4].1.end, bytes.len());

    assert_eq!(artifact.tensors.len(), 5);
    for (t, (name, range)) in artifact.tensors.iter().zip(&built.ranges) {
        assert_eq!(&t.name, name);
        assert_eq!(t.sha256, sha(&bytes[range.clone()]), "{name}");
    }
    let dtypes: Vec<&str> = artifact.tensors.iter().map(|t| t.dtype.as_str()).collect();
    assert_eq!(dtypes, ["F32", "Q8_0", "Q4_0", "F16", "GGML_99"]);
    assert_eq!(artifact.tensors[0].shape, vec![3, 2]);
    assert_eq!(artifact.tensors[2].shape, vec![32]);

    assert_eq!(
        hints,
        GgufHints {
            base_models: vec!["acme/base-1b".into(), "Other Org/Merge Source".into()],
            license: Some("apache-2.0".into()),
        }
    );

    // The record accepts what was produced.
    let body = shoulders_record::Body::ModelRegister(shoulders_record::ModelRegister {
        model_id: "acme/tiny-gguf".into(),
        name: "Tiny".into(),
        description: None,
        parents: Vec::new(),
        datasets: Vec::new(),
        artifacts: vec![artifact],
        license_id: None,
        url: None,
        max_royalty_bps: None,
        adapter: None,
        training: None,
        source: None,
    });
    body.validate().unwrap();
}

#[test]
fn ggml_type_names() {
    use shoulders_artifacts::ggml_type_name as n;
    let known = [
        (0, "F32"),
        (1, "F16"),
        (2, "Q4_0"),
        (3, "Q4_1"),
        (6, "Q5_0"),
        (7, "Q5_1"),
        (8, "Q8_0"),
        (9, "Q8_1"),
        (10, "Q2_K"),
        (14, "Q6_K"),
        (15, "Q8_K"),
        (16, "IQ2_XXS"),
        (23, "IQ4_XS"),
        (24, "I8"),
        (27, "I64"),
        (28, "F64"),
        (29, "IQ1_M"),
        (30, "BF16"),
        (34, "TQ1_0"),
        (35, "TQ2_0"),
        (39, "MXFP4"),
    ];
    for (t, name) in known {
        assert_eq!(n(t), name);
    }
    assert_eq!(n(1000), "GGML_1000");
    assert_eq!(n(u32::MAX), "GGML_4294967295");
    for t in (0..64).chain([u32::MAX]) {
        let name = n(t);
        assert!(
            name.len() <= 16 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{name} fits a record's dtype tag"
        );
    }
}

#[test]
fn version_2_default_alignment_and_no_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    // Version 2, no general.alignment: 32 bytes.
    let tensors = vec![
        tensor("a", &[3], 0, 12, 1),
        tensor("b", &[2, 2], 30, 8, 2),
        tensor("c", &[40], 24, 40, 3),
    ];
    let built = build(2, &[("general.name", Val::Str("x".into()))], &tensors, 32);
    let (artifact, hints) = hash_bytes(tmp.path(), &built.bytes).unwrap();
    assert_eq!(built.data_start % 32, 0);
    for (t, (_, range)) in artifact.tensors.iter().zip(&built.ranges) {
        assert_eq!(t.sha256, sha(&built.bytes[range.clone()]));
    }
    assert_eq!(artifact.tensors[1].dtype, "BF16");
    assert_eq!(artifact.tensors[2].dtype, "I8");
    assert_eq!(hints, GgufHints::default());

    // Tensor infos need not be in offset order; the record lists tensors in offset order.
    let mut shuffled = build(3, &[], &tensors, 32);
    let infos_start = preamble(3, 3, 0).len();
    let infos: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            let start = if i == 0 {
                infos_start
            } else {
                shuffled.offset_at[i - 1] + 8
            };
            shuffled.bytes[start..shuffled.offset_at[i] + 8].to_vec()
        })
        .collect();
    let reordered: Vec<u8> = [&infos[2], &infos[0], &infos[1]]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    shuffled.bytes[infos_start..shuffled.header_end].copy_from_slice(&reordered);
    let (again, _) = hash_bytes(tmp.path(), &shuffled.bytes).unwrap();
    assert_eq!(again.tensors, artifact.tensors);

    // A vocabulary-only file: no tensors, whatever follows the header is hashed whole.
    let mut vocab = build(3, &[("general.license", Val::Str("mit".into()))], &[], 32);
    let (artifact, hints) = hash_bytes(tmp.path(), &vocab.bytes).unwrap();
    assert!(artifact.tensors.is_empty());
    assert_eq!(artifact.sha256, sha(&vocab.bytes));
    assert_eq!(hints.license.as_deref(), Some("mit"));
    vocab.bytes.truncate(vocab.header_end);
    let (artifact, _) = hash_bytes(tmp.path(), &vocab.bytes).unwrap();
    assert_eq!(artifact.sha256, sha(&vocab.bytes));
}

#[test]
fn base_model_hints() {
    let tmp = tempfile::tempdir().unwrap();
    let hints = |kvs: Vec<(&str, Val)>| -> Result<GgufHints, String> {
        let built = build(3, &kvs, &[tensor("t", &[1], 0, 4, 1)], 32);
        hash_bytes(tmp.path(), &built.bytes).map(|(_, h)| h)
    };
    // Entries are read whatever the key order; the count may come last.
    let h = hints(vec![
        (
            "general.base_model.1.repo_url",
            Val::Str("https://hf.co/b-org/b-model/tree/main".into()),
        ),
        (
            "general.base_model.0.repo_url",
            Val::Str("https://www.huggingface.co/a-org/a-model".into()),
        ),
        ("general.base_model.2.name", Val::Str("Only A Name".into())),
        (
            "general.base_model.3.repo_url",
            Val::Str("https://example.com/models/x".into()),
        ),
        // A Hugging Face dataset URL is kept as written, not read as a model id.
        (
            "general.base_model.6.repo_url",
            Val::Str("https://huggingface.co/datasets/acme/verse".into()),
        ),
        // A duplicate of entry 0 is listed once.
        (
            "general.base_model.4.repo_url",
            Val::Str("https://huggingface.co/a-org/a-model".into()),
        ),
        ("general.base_model.5.author", Val::Str("not a hint".into())),
        ("general.base_model.count", Val::U64(7)),
    ])
    .unwrap();
    assert_eq!(
        h.base_models,
        [
            "a-org/a-model",
            "b-org/b-model",
            "Only A Name",
            "https://example.com/models/x",
            "https://huggingface.co/datasets/acme/verse"
        ]
    );
    assert_eq!(h.license, None);
    // No count: no base models.
    assert_eq!(
        hints(vec![("general.base_model.0.name", Val::Str("x".into()))])
            .unwrap()
            .base_models,
        Vec::<String>::new()
    );
    // Non-canonical indices are not base-model entries (and are skipped like any key).
    assert_eq!(
        hints(vec![
            ("general.base_model.count", Val::U8(1)),
            ("general.base_model.00.name", Val::Str("x".into())),
            ("general.base_model.+0.name", Val::U32(1)),
        ])
        .unwrap()
        .base_models,
        Vec::<String>::new()
    );
    // Wrong types and absurd counts are refused.
    for kvs in [
        vec![("general.base_model.0.name", Val::U32(1))],
        vec![("general.license", Val::Bool(true))],
        vec![("general.base_model.count", Val::Str("1".into()))],
        vec![("general.base_model.count", Val::I32(-1))],
        vec![("general.base_model.count", Val::U32(65))],
    ] {
        let err = hints(kvs.clone()).unwrap_err();
        assert!(err.starts_with("E_GGUF_INVALID"), "{kvs:?}: {err}");
    }
}

#[test]
fn scan_dir_hashes_gguf_and_compare_names_the_changed_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let built = sample();
    std::fs::write(tmp.path().join("model-q8.gguf"), &built.bytes).unwrap();
    std::fs::write(tmp.path().join("README.md"), "# Tiny\n").unwrap();
    let mut p = no_progress();
    let mut scan = || scan_dir(tmp.path(), &mut (&mut p as &mut dyn FnMut(u64))).unwrap();
    let dir = scan();
    assert_eq!(dir.artifacts.len(), 2);
    let gguf = &dir.artifacts[1];
    assert_eq!(gguf.path, "model-q8.gguf");
    assert_eq!(gguf.tensors.len(), 5);
    assert!(dir.card.is_none());
    assert_eq!(
        dir.gguf_base_models,
        ["acme/base-1b", "Other Org/Merge Source"]
    );
    assert_eq!(dir.gguf_license.as_deref(), Some("apache-2.0"));
    let registered = dir.artifacts;
    let report = compare(&registered, &scan().artifacts);
    assert!(report.matches);
    assert_eq!((report.files_checked, report.tensors_checked), (2, 5));

    // One byte inside blk.0.attn_q.weight.
    let mut bytes = built.bytes.clone();
    bytes[built.ranges[1].1.start + 7] ^= 0x55;
    std::fs::write(tmp.path().join("model-q8.gguf"), &bytes).unwrap();
    let report = compare(&registered, &scan().artifacts);
    assert_eq!(report.differences.len(), 1, "{:?}", report.differences);
    match &report.differences[0] {
        Difference::ChangedTensor { path, tensor, .. } => assert_eq!(
            (path.as_str(), tensor.as_str()),
            ("model-q8.gguf", "blk.0.attn_q.weight")
        ),
        other => panic!("expected a changed tensor, got {other:?}"),
    }

    // A byte of the padding after the last tensor belongs to the last tensor.
    let mut bytes = built.bytes.clone();
    *bytes.last_mut().unwrap() = 1;
    std::fs::write(tmp.path().join("model-q8.gguf"), &bytes).unwrap();
    let report = compare(&registered, &scan().artifacts);
    assert!(
        matches!(&report.differences[..], [Difference::ChangedTensor { tensor, .. }] if tensor == "output.weight"),
        "{:?}",
        report.differences
    );

    // A metadata-only change (same length) is a changed file, and changes the hints.
    let mut bytes = built.bytes.clone();
    let at = bytes.windows(10).position(|w| w == b"apache-2.0").unwrap();
    bytes[at..at + 10].copy_from_slice(b"apache-3.0");
    std::fs::write(tmp.path().join("model-q8.gguf"), &bytes).unwrap();
    let dir = scan();
    assert_eq!(dir.gguf_license.as_deref(), Some("apache-3.0"));
    let report = compare(&registered, &dir.artifacts);
    assert!(
        matches!(&report.differences[..], [Difference::ChangedFile { path, .. }] if path == "model-q8.gguf"),
        "{:?}",
        report.differences
    );

    // A second GGUF adds its hints after the first's, without duplicates.
    let other = build(
        3,
        &[
            ("general.base_model.count", Val::U32(2)),
            (
                "general.base_model.0.repo_url",
                Val::Str("https://huggingface.co/acme/base-1b".into()),
            ),
            (
                "general.base_model.1.repo_url",
                Val::Str("https://huggingface.co/acme/vision".into()),
            ),
            ("general.license", Val::Str("mit".into())),
        ],
        &[tensor("v", &[2], 0, 8, 9)],
        32,
    );
    std::fs::write(tmp.path().join("mmproj.gguf"), &other.bytes).unwrap();
    let dir = scan();
    assert_eq!(
        dir.gguf_base_models,
        ["acme/base-1b", "acme/vision", "Other Org/Merge Source"],
        "mmproj.gguf sorts first"
    );
    assert_eq!(dir.gguf_license.as_deref(), Some("mit"));

    // A broken .gguf stops the scan with the GGUF code.
    std::fs::write(tmp.path().join("broken.gguf"), b"version https://git-lfs").unwrap();
    let mut p = no_progress();
    let err = scan_dir(tmp.path(), &mut (&mut p as &mut dyn FnMut(u64))).unwrap_err();
    assert_eq!(err.code(), "E_GGUF_INVALID", "{err}");
}

// ---- hostile files -------------------------------------------------------------------------

/// The peak resident memory of this process, where Linux reports it.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn hostile_headers_are_refused_without_big_allocations() {
    let tmp = tempfile::tempdir().unwrap();
    let good = sample();
    let with_kv = |key: &str, ty: u32, value: &[u8]| -> Vec<u8> {
        let mut b = preamble(3, 0, 1);
        put_str(&mut b, key);
        put_u32(&mut b, ty);
        b.extend(value);
        b
    };
    let u64le = |v: u64| v.to_le_bytes().to_vec();
    let array_header = |elem: u32, n: u64| -> Vec<u8> {
        let mut b = Vec::new();
        put_u32(&mut b, elem);
        put_u64(&mut b, n);
        b
    };
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "truncated"),
        ("bad magic", b"GGML\x03\0\0\0".to_vec(), "magic"),
        ("safetensors", good.bytes[8..].to_vec(), "magic"),
        ("version 1", preamble(1, 0, 0), "version 1"),
        ("version 4", preamble(4, 0, 0), "version 4"),
        ("big-endian", preamble(0x0300_0000, 0, 0), "big-endian"),
        ("too many tensors", preamble(3, 65_537, 0), "tensors"),
        ("u64::MAX tensors", preamble(3, u64::MAX, 0), "tensors"),
        ("too many kvs", preamble(3, 0, 65_537), "metadata entries"),
        ("u64::MAX kvs", preamble(3, 0, u64::MAX), "metadata entries"),
        (
            "many tensors claimed, none present",
            preamble(3, 65_536, 0),
            "truncated",
        ),
        (
            "huge key",
            {
                let mut b = preamble(3, 0, 1);
                put_u64(&mut b, 1 << 40);
                b
            },
            "limit",
        ),
        (
            "u64::MAX key",
            {
                let mut b = preamble(3, 0, 1);
                put_u64(&mut b, u64::MAX);
                b
            },
            "limit",
        ),
        (
            "key just over the limit",
            {
                let mut b = preamble(3, 0, 1);
                put_u64(&mut b, 64 * 1024 + 1);
                b.extend(vec![b'k'; 64 * 1024 + 1]);
                b
            },
            "limit",
        ),
        (
            "key longer than the file",
            {
                let mut b = preamble(3, 0, 1);
                put_u64(&mut b, 1000);
                b.extend(b"short");
                b
            },
            "truncated",
        ),
        (
            "huge string value",
            with_kv("k", T_STRING, &u64le(1 << 40)),
            "limit",
        ),
        (
            "huge array",
            with_kv("k", T_ARRAY, &array_header(T_U8, u64::MAX)),
            "elements",
        ),
        (
            "array just over the element limit",
            with_kv("k", T_ARRAY, &array_header(T_U8, 16 * 1024 * 1024 + 1)),
            "elements",
        ),
        (
            "array of huge strings",
            with_kv(
                "k",
                T_ARRAY,
                &[array_header(T_STRING, 2), u64le(u64::MAX)].concat(),
            ),
            "limit",
        ),
        (
            "array claims more than the file holds",
            with_kv("k", T_ARRAY, &array_header(T_U64, 1000)),
            "truncated",
        ),
        (
            "arrays nested too deep",
            with_kv("k", T_ARRAY, &array_header(T_ARRAY, 1).repeat(9)),
            "nested",
        ),
        (
            "unknown value type",
            with_kv("k", 13, &[0; 8]),
            "value type 13",
        ),
        (
            "unknown array element type",
            with_kv("k", T_ARRAY, &array_header(99, 1)),
            "element type 99",
        ),
        (
            "duplicate key",
            {
                let mut b = preamble(3, 0, 2);
                put_kv(&mut b, "a", &Val::U8(1));
                put_kv(&mut b, "a", &Val::U8(1));
                b
            },
            "twice",
        ),
        (
            "alignment not a power of two",
            with_kv("general.alignment", T_U32, &48u32.to_le_bytes()),
            "power of two",
        ),
        (
            "alignment zero",
            with_kv("general.alignment", T_U32, &0u32.to_le_bytes()),
            "power of two",
        ),
        (
            "alignment of the wrong type",
            with_kv("general.alignment", 10, &u64le(32)),
            "uint32",
        ),
    ];

    // Tensor-info tampering on the sample file.
    let set_u64 = |at: usize, v: u64| {
        let mut b = good.bytes.clone();
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        b
    };
    let set_u32 = |at: usize, v: u32| {
        let mut b = good.bytes.clone();
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        b
    };
    let off = |i: usize| {
        u64::from_le_bytes(
            good.bytes[good.offset_at[i]..good.offset_at[i] + 8]
                .try_into()
                .unwrap(),
        )
    };
    let data_len = (good.bytes.len() - good.data_start) as u64;
    cases.extend([
        (
            "too many dimensions",
            set_u32(good.n_dims_at[0], 9),
            "dimensions",
        ),
        (
            "u32::MAX dimensions",
            set_u32(good.n_dims_at[0], u32::MAX),
            "dimensions",
        ),
        (
            "huge dimension",
            set_u64(good.n_dims_at[0] + 4, MAX_SAFE_INTEGER + 1),
            "dimensions",
        ),
        (
            "dimension product overflows",
            set_u64(good.n_dims_at[0] + 4, 1 << 62),
            "dimensions",
        ),
        (
            "first offset not zero",
            set_u64(good.offset_at[0], 64 * 100),
            "beginning",
        ),
        ("shared offset", set_u64(good.offset_at[2], off(1)), "share"),
        (
            "unaligned offset",
            set_u64(good.offset_at[2], off(2) + 32),
            "multiple",
        ),
        (
            "offset past the end",
            set_u64(good.offset_at[4], data_len),
            "inside",
        ),
        (
            "offset far past the end",
            set_u64(good.offset_at[4], u64::MAX - 63),
            "inside",
        ),
        (
            "huge tensor name",
            {
                let at = good.offset_at[0] + 8; // the second tensor's name length
                set_u64(at, u64::MAX)
            },
            "limit",
        ),
        (
            "tensor name over 256 bytes",
            {
                let mut b = preamble(3, 1, 0);
                put_str(&mut b, &"n".repeat(257));
                b
            },
            "names are",
        ),
        (
            "empty tensor name",
            {
                let mut b = preamble(3, 1, 0);
                put_str(&mut b, "");
                b
            },
            "names are",
        ),
    ]);
    // A tensor name that is not UTF-8 / has control characters; a duplicate name.
    let rename = |to: &[u8]| {
        let mut b = good.bytes.clone();
        let name = b"token_embd.weight";
        let at = b.windows(name.len()).position(|w| w == name).unwrap();
        b[at..at + to.len()].copy_from_slice(to);
        b
    };
    cases.push(("non-UTF-8 tensor name", rename(b"\xfftoken"), "UTF-8"));
    cases.push((
        "control character in tensor name",
        rename(b"tok\nen"),
        "UTF-8",
    ));
    cases.push((
        "blank tensor name",
        {
            let mut b = preamble(3, 1, 0);
            put_str(&mut b, "   ");
            b
        },
        "UTF-8",
    ));
    let mut dup = good.bytes.clone();
    let second = b"blk.0.attn_q.weight";
    let at = dup.windows(second.len()).position(|w| w == second).unwrap();
    dup[at..at + second.len()].copy_from_slice(b"blk.0.ffn_up.weight");
    cases.push(("duplicate tensor name", dup, "twice"));
    // Data section beyond the end: the file stops right after the tensor infos.
    cases.push((
        "no data section",
        good.bytes[..good.header_end].to_vec(),
        "beyond the end",
    ));

    for (what, bytes, expect) in &cases {
        let err = hash_bytes(tmp.path(), bytes).unwrap_err();
        assert!(err.starts_with("E_GGUF_INVALID "), "{what}: {err}");
        assert!(err.contains(expect), "{what}: expected {expect:?} in {err}");
    }
    if let Some(peak) = peak_rss_bytes() {
        assert!(peak < 512 << 20, "peak RSS {peak} bytes");
    }
}

#[test]
fn array_elements_are_limited_across_the_whole_file() {
    let tmp = tempfile::tempdir().unwrap();
    let ten_m = 10 * 1024 * 1024;
    let mut b = preamble(3, 0, 2);
    put_str(&mut b, "first");
    put_u32(&mut b, T_ARRAY);
    put_u32(&mut b, T_U8);
    put_u64(&mut b, ten_m);
    b.resize(b.len() + ten_m as usize, 7);
    put_str(&mut b, "second");
    put_u32(&mut b, T_ARRAY);
    put_u32(&mut b, T_U8);
    put_u64(&mut b, 7 * 1024 * 1024);
    let err = hash_bytes(tmp.path(), &b).unwrap_err();
    assert!(err.contains("elements in all"), "{err}");
    // Each alone is fine.
    let mut ok = preamble(3, 0, 1);
    put_str(&mut ok, "first");
    put_u32(&mut ok, T_ARRAY);
    put_u32(&mut ok, T_U8);
    put_u64(&mut ok, ten_m);
    ok.resize(ok.len() + ten_m as usize, 7);
    hash_bytes(tmp.path(), &ok).unwrap();
    // Eight levels of nesting are read.
    let mut nested = preamble(3, 0, 1);
    put_str(&mut nested, "n");
    put_u32(&mut nested, T_ARRAY);
    for _ in 0..7 {
        put_u32(&mut nested, T_ARRAY);
        put_u64(&mut nested, 1);
    }
    put_u32(&mut nested, T_U8);
    put_u64(&mut nested, 0);
    hash_bytes(tmp.path(), &nested).unwrap();
}

#[test]
fn every_truncation_is_refused_up_to_the_last_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let good = sample();
    let last_start = good.ranges.last().unwrap().1.start;
    for len in 0..good.bytes.len() {
        let result = hash_bytes(tmp.path(), &good.bytes[..len]);
        if len <= last_start {
            let err = result.unwrap_err();
            assert!(err.starts_with("E_GGUF_INVALID "), "{len}: {err}");
        } else {
            // Without a size table for every ggml type, a shorter last tensor cannot be told
            // from a truncated one: it hashes, and differs from the registered hash.
            let (artifact, _) = result.unwrap();
            assert_ne!(
                artifact.tensors.last().unwrap().sha256,
                sha(&good.bytes[good.ranges.last().unwrap().1.clone()])
            );
        }
    }
}

// ---- fuzzing -------------------------------------------------------------------------------

/// Hash `bytes`; it must not panic, must fail only with `E_GGUF_INVALID`, and when it succeeds
/// the whole-file hash and the tensors must cover the file.
fn hash_never_panics(dir: &Path, bytes: &[u8]) -> Result<(), TestCaseError> {
    match hash_bytes(dir, bytes) {
        Err(e) => prop_assert!(e.starts_with("E_GGUF_INVALID "), "{}", e),
        Ok((artifact, _)) => {
            prop_assert_eq!(artifact.sha256, sha(bytes));
            prop_assert_eq!(artifact.size_bytes, bytes.len() as u64);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(
        version in prop_oneof![Just(2u32), Just(3u32), any::<u32>()],
        rest in prop::collection::vec(any::<u8>(), 0..600),
        magic in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let mut bytes = if magic { b"GGUF".to_vec() } else { Vec::new() };
        if magic {
            bytes.extend(version.to_le_bytes());
        }
        bytes.extend(rest);
        hash_never_panics(tmp.path(), &bytes)?;
    }

    #[test]
    fn mutated_files_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        header_only in any::<bool>(),
        truncate in prop::option::of(any::<prop::sample::Index>()),
        splice in prop::option::of((any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..16))),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let good = sample();
        let mut bytes = good.bytes.clone();
        let span = if header_only { good.header_end } else { bytes.len() };
        for (at, value) in edits {
            let at = at.index(span);
            bytes[at] = value;
        }
        if let Some((at, insert)) = splice {
            let at = at.index(bytes.len());
            bytes.splice(at..at, insert);
        }
        if let Some(at) = truncate {
            let at = at.index(bytes.len());
            bytes.truncate(at);
        }
        hash_never_panics(tmp.path(), &bytes)?;
    }

    #[test]
    fn extreme_values_in_header_fields_never_panic(
        field in 0usize..4,
        tensor in 0usize..5,
        value in prop_oneof![
            Just(0u64), Just(1), Just(u64::MAX), Just(u64::MAX - 1), Just(1 << 32),
            Just(1 << 63), Just(64 * 1024), Just(16 * 1024 * 1024), any::<u64>()
        ],
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let good = sample();
        let mut bytes = good.bytes.clone();
        let at = match field {
            0 => 8,  // tensor count
            1 => 16, // metadata count
            2 => good.offset_at[tensor],
            _ => good.n_dims_at[tensor] + 4, // first dimension
        };
        bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        hash_never_panics(tmp.path(), &bytes)?;
    }
}
