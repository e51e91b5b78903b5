//! GGUF (llama.cpp) weight files: the header is parsed with explicit limits on every count and
//! length, then each tensor and the whole file are hashed with SHA-256 in one streaming pass.
//!
//! Layout (little-endian, versions 2 and 3): magic `GGUF`, `u32` version, `u64` tensor count,
//! `u64` metadata count, the metadata key/value pairs, the tensor infos (name, `u32` n_dims,
//! `u64` dims, `u32` ggml type, `u64` offset), padding up to `general.alignment` (default 32),
//! then the data section. Tensor offsets are relative to the start of the data section.
//!
//! Memory stays flat whatever the file: metadata values are skipped through the read buffer
//! except the few keys kept as hints, and every count and length is checked against a limit
//! before it is used (see the `MAX_GGUF_*` constants).

use crate::hash::{sha_ref, Progress, WholeDigest};
use crate::tee::{read_teed, Tee};
use crate::{
    ArtifactError, MAX_GGUF_ARRAY_DEPTH, MAX_GGUF_ARRAY_ELEMENTS, MAX_GGUF_BASE_MODELS,
    MAX_GGUF_DIMS, MAX_GGUF_KV, MAX_GGUF_STRING_BYTES, MAX_GGUF_TENSORS,
    MAX_GGUF_TENSOR_NAME_BYTES,
};
use sha2::{Digest, Sha256};
use shoulders_record::{Artifact, Tensor};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// Lineage hints from a GGUF file's `general.*` metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GgufHints {
    /// One entry per `general.base_model.{i}` for `i` below `general.base_model.count`, in
    /// order: `org/name` taken from a Hugging Face `repo_url`
    /// (`https://huggingface.co/org/name`); otherwise `organization/name` (llama.cpp's
    /// converter writes these as display titles, e.g. `Meta Llama/Llama 3.1 8B`), otherwise
    /// `name`, otherwise the `repo_url` as written. Entries with none of these are skipped.
    pub base_models: Vec<String>,
    /// `general.license`, if present.
    pub license: Option<String>,
}

/// Name of a ggml tensor type (`enum ggml_type`), or `GGML_<n>` for numbers not known here.
/// Types since removed from ggml (`Q4_2`, `Q4_0_4_4`, …) keep their historical names.
pub fn ggml_type_name(t: u32) -> String {
    const NAMES: [&str; 42] = [
        "F32",
        "F16",
        "Q4_0",
        "Q4_1",
        "Q4_2",
        "Q4_3",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q8_1",
        "Q2_K",
        "Q3_K",
        "Q4_K",
        "Q5_K",
        "Q6_K",
        "Q8_K",
        "IQ2_XXS",
        "IQ2_XS",
        "IQ3_XXS",
        "IQ1_S",
        "IQ4_NL",
        "IQ3_S",
        "IQ2_S",
        "IQ4_XS",
        "I8",
        "I16",
        "I32",
        "I64",
        "F64",
        "IQ1_M",
        "BF16",
        "Q4_0_4_4",
        "Q4_0_4_8",
        "Q4_0_8_8",
        "TQ1_0",
        "TQ2_0",
        "IQ4_NL_4_4",
        "IQ4_NL_4_8",
        "IQ4_NL_8_8",
        "MXFP4",
        "NVFP4",
        "Q1_0",
    ];
    match NAMES.get(t as usize) {
        Some(name) => (*name).to_string(),
        None => format!("GGML_{t}"),
    }
}

// Metadata value types (`enum gguf_type`).
const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

/// Byte size of a fixed-size metadata value type; `None` for strings, arrays and unknown types.
fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        T_U8 | T_I8 | T_BOOL => Some(1),
        T_U16 | T_I16 => Some(2),
        T_U32 | T_I32 | T_F32 => Some(4),
        T_U64 | T_I64 | T_F64 => Some(8),
        _ => None,
    }
}

/// GGUF-specific reads on top of the shared [`Tee`] reader.
impl Tee<'_> {
    /// A string's length prefix, checked against [`MAX_GGUF_STRING_BYTES`] and the file size.
    fn string_len(&mut self, what: &str) -> Result<u64, ArtifactError> {
        let n = self.u64(what)?;
        if n > MAX_GGUF_STRING_BYTES {
            return Err(self.bad(format!(
                "{what} at byte {} is {n} bytes long; the limit is {MAX_GGUF_STRING_BYTES}",
                self.pos() - 8
            )));
        }
        self.need(n, what)?;
        Ok(n)
    }

    /// Read a string's bytes into `out` (cleared first; at most [`MAX_GGUF_STRING_BYTES`]).
    fn string_into(&mut self, out: &mut Vec<u8>, what: &str) -> Result<(), ArtifactError> {
        let n = self.string_len(what)?;
        out.clear();
        self.take(n, what, |b| out.extend_from_slice(b))
    }

    fn utf8_string(&mut self, what: &str) -> Result<String, ArtifactError> {
        let mut bytes = Vec::new();
        self.string_into(&mut bytes, what)?;
        String::from_utf8(bytes).map_err(|_| self.bad(format!("{what} is not UTF-8")))
    }

    /// Skip one metadata value of type `ty`, counting array elements against `budget`.
    fn skip_value(&mut self, ty: u32, depth: u32, budget: &mut u64) -> Result<(), ArtifactError> {
        if let Some(size) = fixed_size(ty) {
            return self.skip(size, "metadata value");
        }
        match ty {
            T_STRING => {
                let n = self.string_len("metadata string")?;
                self.skip(n, "metadata string")
            }
            T_ARRAY => {
                if depth >= MAX_GGUF_ARRAY_DEPTH {
                    return Err(self.bad(format!(
                        "metadata arrays nested deeper than {MAX_GGUF_ARRAY_DEPTH} levels"
                    )));
                }
                let elem = self.u32("array element type")?;
                let n = self.u64("array length")?;
                if n > *budget {
                    return Err(self.bad(format!(
                        "metadata arrays hold more than {MAX_GGUF_ARRAY_ELEMENTS} elements in all"
                    )));
                }
                *budget -= n;
                if let Some(size) = fixed_size(elem) {
                    // n ≤ 16M and size ≤ 8: no overflow.
                    return self.skip(n * size, "metadata array");
                }
                match elem {
                    T_STRING | T_ARRAY => {
                        for _ in 0..n {
                            self.skip_value(elem, depth + 1, budget)?;
                        }
                        Ok(())
                    }
                    other => Err(self.bad(format!("unknown metadata array element type {other}"))),
                }
            }
            other => Err(self.bad(format!("unknown metadata value type {other}"))),
        }
    }

    /// An integer metadata value of any integer type, as long as it is not negative.
    fn unsigned(&mut self, ty: u32, key: &str) -> Result<u64, ArtifactError> {
        let v: i128 = match ty {
            T_U8 => u8::from_le_bytes(self.bytes(key)?).into(),
            T_I8 => i8::from_le_bytes(self.bytes(key)?).into(),
            T_U16 => u16::from_le_bytes(self.bytes(key)?).into(),
            T_I16 => i16::from_le_bytes(self.bytes(key)?).into(),
            T_U32 => u32::from_le_bytes(self.bytes(key)?).into(),
            T_I32 => i32::from_le_bytes(self.bytes(key)?).into(),
            T_U64 => u64::from_le_bytes(self.bytes(key)?).into(),
            T_I64 => i64::from_le_bytes(self.bytes(key)?).into(),
            _ => return Err(self.bad(format!("`{key}` must be an integer"))),
        };
        u64::try_from(v).map_err(|_| self.bad(format!("`{key}` must not be negative")))
    }
}

struct TensorInfo {
    name: String,
    dims: Vec<u64>,
    ggml_type: u32,
    offset: u64,
}

#[derive(Default)]
struct BaseModel {
    repo_url: Option<String>,
    organization: Option<String>,
    name: Option<String>,
}

/// `org/name` from a Hugging Face model URL, `None` for other URLs.
fn hf_repo_id(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let rest = rest.strip_prefix("www.").unwrap_or(rest);
    let rest = rest
        .strip_prefix("huggingface.co/")
        .or_else(|| rest.strip_prefix("hf.co/"))?;
    let mut parts = rest.split(['/', '?', '#']);
    let org = parts
        .next()
        .filter(|s| !s.is_empty() && !matches!(*s, "datasets" | "spaces"))?;
    let name = parts.next().filter(|s| !s.is_empty())?;
    Some(format!("{org}/{name}"))
}

impl BaseModel {
    fn hint(&self) -> Option<String> {
        if let Some(id) = self.repo_url.as_deref().and_then(hf_repo_id) {
            return Some(id);
        }
        match (&self.organization, &self.name) {
            (Some(org), Some(name)) => Some(format!("{org}/{name}")),
            (None, Some(name)) => Some(name.clone()),
            _ => self.repo_url.clone(),
        }
    }
}

/// Non-empty, trimmed.
fn nonblank(s: String) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

struct Header {
    tensors: Vec<TensorInfo>,
    alignment: u64,
    hints: GgufHints,
}

fn parse_header(src: &mut Tee<'_>) -> Result<Header, ArtifactError> {
    let magic: [u8; 4] = src.bytes("magic")?;
    if &magic != b"GGUF" {
        return Err(src.bad(format!(
            "does not start with the GGUF magic (found {})",
            hex::encode(magic)
        )));
    }
    let version = src.u32("version")?;
    if version != 2 && version != 3 {
        if matches!(version.swap_bytes(), 2 | 3) {
            return Err(src.bad("big-endian GGUF files are not supported"));
        }
        return Err(src.bad(format!(
            "unsupported GGUF version {version} (versions 2 and 3, little-endian, are read)"
        )));
    }
    let tensor_count = src.u64("tensor count")?;
    if tensor_count > MAX_GGUF_TENSORS {
        return Err(src.bad(format!(
            "{tensor_count} tensors; the limit is {MAX_GGUF_TENSORS}"
        )));
    }
    let kv_count = src.u64("metadata count")?;
    if kv_count > MAX_GGUF_KV {
        return Err(src.bad(format!(
            "{kv_count} metadata entries; the limit is {MAX_GGUF_KV}"
        )));
    }

    let mut alignment = 32u64;
    let mut license = None;
    let mut base_model_count = None;
    let mut base_models: BTreeMap<u64, BaseModel> = BTreeMap::new();
    // Keys are remembered by digest (32 bytes each) to refuse duplicates in bounded memory.
    let mut seen_keys: HashSet<[u8; 32]> = HashSet::new();
    let mut key = Vec::new();
    let mut budget = MAX_GGUF_ARRAY_ELEMENTS;
    for _ in 0..kv_count {
        src.string_into(&mut key, "metadata key")?;
        if !seen_keys.insert(Sha256::digest(&key).into()) {
            return Err(src.bad(format!(
                "metadata key {:?} appears twice",
                String::from_utf8_lossy(&key)
            )));
        }
        let ty = src.u32("metadata value type")?;
        let key_str = String::from_utf8_lossy(&key);
        let string = |src: &mut Tee<'_>| -> Result<Option<String>, ArtifactError> {
            if ty != T_STRING {
                return Err(src.bad(format!("`{key_str}` must be a string")));
            }
            src.utf8_string(&key_str).map(nonblank)
        };
        match key.as_slice() {
            b"general.alignment" => {
                if ty != T_U32 {
                    return Err(src.bad("`general.alignment` must be a uint32"));
                }
                let a = src.u32("general.alignment")?;
                if !a.is_power_of_two() {
                    return Err(src.bad(format!("`general.alignment` is {a}, not a power of two")));
                }
                alignment = a.into();
            }
            b"general.license" => license = string(src)?,
            b"general.base_model.count" => {
                let n = src.unsigned(ty, "general.base_model.count")?;
                if n > MAX_GGUF_BASE_MODELS {
                    return Err(src.bad(format!(
                        "`general.base_model.count` is {n}; the limit is {MAX_GGUF_BASE_MODELS}"
                    )));
                }
                base_model_count = Some(n);
            }
            k => {
                let field = k
                    .strip_prefix(b"general.base_model.")
                    .and_then(|rest| std::str::from_utf8(rest).ok())
                    .and_then(|rest| rest.split_once('.'))
                    .and_then(|(i, field)| {
                        // Canonical decimal indices only, so that two keys never name one entry.
                        let canonical = i == "0" || !i.starts_with('0');
                        if !canonical || !i.bytes().all(|b| b.is_ascii_digit()) {
                            return None;
                        }
                        let i: u64 = i.parse().ok()?;
                        let known = matches!(field, "repo_url" | "organization" | "name");
                        (known && i < MAX_GGUF_BASE_MODELS).then(|| (i, field.to_string()))
                    });
                match field {
                    Some((i, field)) => {
                        let value = string(src)?;
                        let entry = base_models.entry(i).or_default();
                        match field.as_str() {
                            "repo_url" => entry.repo_url = value,
                            "organization" => entry.organization = value,
                            _ => entry.name = value,
                        }
                    }
                    None => src.skip_value(ty, 0, &mut budget)?,
                }
            }
        }
    }
    let mut hints = GgufHints {
        base_models: Vec::new(),
        license,
    };
    for i in 0..base_model_count.unwrap_or(0) {
        if let Some(hint) = base_models.get(&i).and_then(BaseModel::hint) {
            if !hints.base_models.contains(&hint) {
                hints.base_models.push(hint);
            }
        }
    }

    let mut tensors = Vec::with_capacity(tensor_count.min(1024) as usize);
    for _ in 0..tensor_count {
        let at = src.pos();
        let n = src.string_len("tensor name")?;
        if n == 0 || n > MAX_GGUF_TENSOR_NAME_BYTES {
            return Err(src.bad(format!(
                "tensor name at byte {at} is {n} bytes; names are 1-{MAX_GGUF_TENSOR_NAME_BYTES} bytes"
            )));
        }
        let mut bytes = Vec::with_capacity(n as usize);
        src.take(n, "tensor name", |b| bytes.extend_from_slice(b))?;
        let name = String::from_utf8(bytes)
            .ok()
            .filter(|s| !s.trim().is_empty() && !s.chars().any(char::is_control))
            .ok_or_else(|| {
                src.bad(format!(
                    "tensor name at byte {at} is not UTF-8 text without control characters"
                ))
            })?;
        let n_dims = src.u32("tensor dimension count")?;
        if n_dims > MAX_GGUF_DIMS {
            return Err(src.bad(format!(
                "tensor {name:?} has {n_dims} dimensions; the limit is {MAX_GGUF_DIMS}"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        let mut elements = 1u64;
        for _ in 0..n_dims {
            let d = src.u64("tensor dimension")?;
            elements = elements.saturating_mul(d);
            if d > shoulders_record::MAX_SAFE_INTEGER || elements > i64::MAX as u64 {
                return Err(src.bad(format!("tensor {name:?} has absurd dimensions")));
            }
            dims.push(d);
        }
        let ggml_type = src.u32("tensor type")?;
        let offset = src.u64("tensor offset")?;
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        });
    }
    let mut names: HashSet<&str> = HashSet::with_capacity(tensors.len());
    if let Some(dup) = tensors.iter().find(|t| !names.insert(&t.name)) {
        return Err(src.bad(format!("tensor {:?} appears twice", dup.name)));
    }
    Ok(Header {
        tensors,
        alignment,
        hints,
    })
}

/// Per-tensor and whole-file SHA-256 of a GGUF file, in one streaming pass, plus the lineage
/// hints in its metadata.
///
/// A tensor's bytes are defined as the range from its offset to the next tensor's offset (in
/// offset order), and the last tensor's as the range from its offset to the end of the file.
/// That way no table of the byte sizes of ggml's (many, and still growing) quantised types is
/// needed: the alignment padding after a tensor counts as part of it, and the tensors together
/// cover the data section exactly. The header (metadata and tensor infos) is covered by the
/// whole-file hash only. The price: a file cut short inside its last tensor cannot be told
/// from one whose last tensor is shorter; it hashes, and its last tensor's hash differs.
///
/// Checked: the magic, version 2 or 3, limits on every count and length, known metadata value
/// types, no duplicate keys or tensor names, a power-of-two `general.alignment` (`uint32`),
/// tensor offsets that start at 0, are multiples of the alignment and strictly increase, and
/// a file long enough for every tensor to hold at least one byte. Failures are
/// [`ArtifactError::BadGguf`] (`E_GGUF_INVALID`).
pub fn hash_gguf(
    path: &Path,
    rel: &str,
    progress: &mut Progress<'_>,
) -> Result<(Artifact, GgufHints), ArtifactError> {
    hash_gguf_whole(path, rel, progress, false).map(|(a, hints, _)| (a, hints))
}

/// [`hash_gguf`], also returning the whole-file digests (with the git blob id when `git_blob`).
pub(crate) fn hash_gguf_whole(
    path: &Path,
    rel: &str,
    progress: &mut Progress<'_>,
    git_blob: bool,
) -> Result<(Artifact, GgufHints, WholeDigest), ArtifactError> {
    let bad = |path: &Path, reason: String| ArtifactError::BadGguf {
        path: path.display().to_string(),
        reason,
    };
    let ((tensors, hints), size, whole) = read_teed(path, progress, bad, git_blob, hash_body)?;
    Ok((
        Artifact {
            path: rel.to_string(),
            size_bytes: size,
            sha256: whole.sha256.clone(),
            tensors,
        },
        hints,
        whole,
    ))
}

fn hash_body(src: &mut Tee<'_>) -> Result<(Vec<Tensor>, GgufHints), ArtifactError> {
    let Header {
        mut tensors,
        alignment,
        hints,
    } = parse_header(src)?;
    let header_end = src.pos();
    let mut out = Vec::with_capacity(tensors.len());
    if !tensors.is_empty() {
        let data_start = header_end
            .checked_next_multiple_of(alignment)
            .filter(|&d| d <= src.size)
            .ok_or_else(|| {
                src.bad(format!(
                    "the data section (after {header_end} header bytes, aligned to {alignment}) \
                     starts beyond the end of the file ({} bytes)",
                    src.size
                ))
            })?;
        tensors.sort_by_key(|t| t.offset);
        let data_len = src.size - data_start;
        let mut expected_min = 0u64;
        for (i, t) in tensors.iter().enumerate() {
            if i == 0 && t.offset != 0 {
                return Err(src.bad(format!(
                    "no tensor starts at the beginning of the data section (the first, {:?}, is at offset {})",
                    t.name, t.offset
                )));
            }
            if t.offset < expected_min {
                return Err(src.bad(format!(
                    "tensors {:?} and {:?} share offset {}",
                    tensors[i - 1].name,
                    t.name,
                    t.offset
                )));
            }
            if t.offset % alignment != 0 {
                return Err(src.bad(format!(
                    "tensor {:?} offset {} is not a multiple of the alignment {alignment}",
                    t.name, t.offset
                )));
            }
            if t.offset >= data_len {
                return Err(src.bad(format!(
                    "tensor {:?} offset {} is not inside the {data_len}-byte data section",
                    t.name, t.offset
                )));
            }
            expected_min = t.offset + 1;
        }
        src.skip(data_start - header_end, "padding")?;
        for (i, t) in tensors.iter().enumerate() {
            let end = tensors.get(i + 1).map_or(data_len, |next| next.offset);
            let mut h = Sha256::new();
            src.take(end - t.offset, "tensor data", |b| h.update(b))?;
            out.push(Tensor {
                name: t.name.clone(),
                dtype: ggml_type_name(t.ggml_type),
                shape: t.dims.clone(),
                sha256: sha_ref(h.finalize()),
            });
        }
    }
    Ok((out, hints))
}
