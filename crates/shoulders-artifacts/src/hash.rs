use crate::tee::{read_teed, Tee};
use crate::{
    ArtifactError, ModelCard, MAX_CARD_BYTES, MAX_CONFIG_BYTES, MAX_FILES, MAX_HEADER_BYTES,
};
use safetensors::tensor::Metadata;
use sha2::{Digest, Sha256};
use shoulders_record::{Artifact, Tensor};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Streaming read buffer size: the only allocation proportional to nothing.
pub(crate) const CHUNK_BYTES: usize = 1024 * 1024;

/// Called with the number of bytes just hashed (for progress bars).
pub type Progress<'a> = &'a mut dyn FnMut(u64);

pub(crate) fn sha_ref(digest: impl AsRef<[u8]>) -> String {
    format!("sha256:{}", hex::encode(digest))
}

/// Read exactly `len` bytes from `file` into both hashers, in chunks.
fn stream(
    file: &mut File,
    path: &Path,
    mut len: u64,
    buf: &mut [u8],
    hashers: &mut [&mut Sha256],
    progress: &mut Progress<'_>,
) -> Result<(), ArtifactError> {
    while len > 0 {
        let want = len.min(buf.len() as u64) as usize;
        file.read_exact(&mut buf[..want])
            .map_err(|e| ArtifactError::io(path, e))?;
        for h in hashers.iter_mut() {
            h.update(&buf[..want]);
        }
        progress(want as u64);
        len -= want as u64;
    }
    Ok(())
}

/// Whole-file SHA-256 of any file.
pub fn hash_file(
    path: &Path,
    rel: &str,
    progress: &mut Progress<'_>,
) -> Result<Artifact, ArtifactError> {
    let (mut file, size) = crate::files::open_regular(path, u64::MAX)?;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut whole = Sha256::new();
    stream(&mut file, path, size, &mut buf, &mut [&mut whole], progress)?;
    Ok(Artifact {
        path: rel.to_string(),
        size_bytes: size,
        sha256: sha_ref(whole.finalize()),
        tensors: Vec::new(),
    })
}

/// Per-tensor and whole-file SHA-256 of a safetensors file, in one pass.
pub fn hash_safetensors(
    path: &Path,
    rel: &str,
    progress: &mut Progress<'_>,
) -> Result<Artifact, ArtifactError> {
    let error = |path: &Path, reason: String| ArtifactError::BadSafetensors {
        path: path.display().to_string(),
        reason,
    };
    let (tensors, size, sha256) = read_teed(path, progress, error, parse_safetensors)?;
    Ok(Artifact {
        path: rel.to_string(),
        size_bytes: size,
        sha256,
        tensors,
    })
}

fn parse_safetensors(src: &mut Tee<'_>) -> Result<Vec<Tensor>, ArtifactError> {
    let size = src.size;
    let header_len = src.u64("header length")?;
    if header_len > MAX_HEADER_BYTES || header_len + 8 > size {
        return Err(src.bad(format!(
            "header length {header_len} does not fit the file ({size} bytes)"
        )));
    }
    let mut header = Vec::with_capacity(header_len as usize);
    src.take(header_len, "header", |b| header.extend_from_slice(b))?;
    let metadata: Metadata =
        serde_json::from_slice(&header).map_err(|e| src.bad(format!("header: {e}")))?;

    // Check the layout ourselves: tensors back to back from offset 0, each exactly
    // dtype bits × elements long, and the data section ending at the end of the file.
    let mut tensors: Vec<(String, &safetensors::tensor::TensorInfo)> =
        metadata.tensors().into_iter().collect();
    tensors.sort_by_key(|(_, info)| info.data_offsets);
    let data_len = size - 8 - header_len;
    let mut expected_start = 0u64;
    for (name, info) in &tensors {
        let (start, end) = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
        if start != expected_start || end < start {
            return Err(src.bad(format!(
                "tensor {name:?} does not start where the previous one ends"
            )));
        }
        let elements = info
            .shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        let bits = elements.and_then(|n| n.checked_mul(info.dtype.bitsize() as u64));
        if bits != Some((end - start) * 8) {
            return Err(src.bad(format!(
                "tensor {name:?} has {} bytes, which does not match {:?} × {:?}",
                end - start,
                info.dtype,
                info.shape
            )));
        }
        expected_start = end;
    }
    if expected_start != data_len {
        return Err(src.bad(format!(
            "tensor data covers {expected_start} bytes but the file holds {data_len}"
        )));
    }
    if tensors.len() > shoulders_record::MAX_TENSORS {
        return Err(src.bad(format!(
            "more than {} tensors",
            shoulders_record::MAX_TENSORS
        )));
    }
    let mut out = Vec::with_capacity(tensors.len());
    for (name, info) in &tensors {
        let mut tensor_hash = Sha256::new();
        let len = (info.data_offsets.1 - info.data_offsets.0) as u64;
        src.take(len, "tensor data", |b| tensor_hash.update(b))?;
        out.push(Tensor {
            name: name.clone(),
            dtype: format!("{:?}", info.dtype),
            shape: info.shape.iter().map(|&d| d as u64).collect(),
            sha256: sha_ref(tensor_hash.finalize()),
        });
    }
    Ok(out)
}

/// A scanned model directory.
#[derive(Debug)]
pub struct ModelDir {
    /// `config.json`, if present.
    pub config: Option<serde_json::Value>,
    /// The model card's front matter, if `README.md` has one.
    pub card: Option<ModelCard>,
    /// Every file, sorted by path.
    pub artifacts: Vec<Artifact>,
    /// Base models named in the `general.base_model.*` metadata of the `*.gguf` files, in
    /// file (path) order, without duplicates; see [`crate::GgufHints::base_models`]. Lineage
    /// hints for when the model card names none.
    pub gguf_base_models: Vec<String>,
    /// `general.license` of the first `*.gguf` file (in path order) that has one.
    pub gguf_license: Option<String>,
    /// A PEFT adapter's `adapter_config.json`, if present (see [`crate::parse_adapter_config`]).
    pub adapter: Option<shoulders_record::AdapterConfig>,
}

/// Where the symbolic link `link` under the model directory `root` leads, when it may be
/// followed: its fully resolved target lies inside `root`, or inside the `blobs` directory of
/// the Hugging Face cache entry `root` is a snapshot of (`models--org--name/snapshots/<rev>/`
/// holds links to `models--org--name/blobs/<sha>`). Anything else (a link to `/dev/zero`, to
/// a large file elsewhere, to a directory outside) is not followed. Links to directories are
/// not descended into either way.
fn allowed_link_target(root: &Path, link: &Path) -> Option<PathBuf> {
    let target = std::fs::canonicalize(link).ok()?;
    let root = std::fs::canonicalize(root).ok()?;
    if target.starts_with(&root) {
        return Some(target);
    }
    let snapshots = root.parent()?;
    let entry = snapshots.parent()?;
    let is_hf = snapshots.file_name()? == "snapshots"
        && entry.file_name()?.to_str()?.starts_with("models--");
    (is_hf && target.starts_with(entry.join("blobs"))).then_some(target)
}

fn list_files(root: &Path) -> Result<Vec<(PathBuf, String)>, ArtifactError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| ArtifactError::io(&dir, e))? {
            let entry = entry.map_err(|e| ArtifactError::io(&dir, e))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            // Hidden entries (.git, .cache, editor files) are not part of the model.
            if name.starts_with('.') {
                continue;
            }
            let kind = entry.file_type().map_err(|e| ArtifactError::io(&path, e))?;
            // A symbolic link counts as the file it points to when that stays inside the
            // model directory or is a Hugging Face cache blob (see [`allowed_link_target`]);
            // other links, like other special files, are not part of the model.
            let (kind, target) = if kind.is_symlink() {
                match allowed_link_target(root, &path) {
                    Some(t) => (
                        std::fs::metadata(&t)
                            .map_err(|e| ArtifactError::io(&t, e))?
                            .file_type(),
                        t,
                    ),
                    None => continue,
                }
            } else {
                (kind, path.clone())
            };
            if kind.is_dir() {
                if target == path {
                    stack.push(path);
                }
            } else if kind.is_file() {
                let rel = path
                    .strip_prefix(root)
                    .ok()
                    .and_then(|p| p.to_str())
                    .ok_or_else(|| ArtifactError::BadPath {
                        path: path.display().to_string(),
                        reason: "file names must be UTF-8".into(),
                    })?
                    .to_string();
                out.push((target, rel));
                if out.len() > MAX_FILES {
                    return Err(ArtifactError::TooManyFiles {
                        dir: root.display().to_string(),
                        limit: MAX_FILES,
                    });
                }
            }
            // Symlinks and other special files are skipped: a model is its regular files.
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn read_small(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, ArtifactError> {
    use crate::files::{read_regular_file, FileError};
    match read_regular_file(path, limit) {
        Err(FileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(FileError::TooLarge { .. }) => Err(ArtifactError::BadPath {
            path: path.display().to_string(),
            reason: format!("larger than the {limit}-byte limit for this file"),
        }),
        Err(e) => Err(e.into()),
        Ok(bytes) => Ok(Some(bytes)),
    }
}

/// Total size of the files [`scan_dir`] would hash (for a progress bar's length).
pub fn total_bytes(root: &Path) -> Result<u64, ArtifactError> {
    let mut total = 0u64;
    for (path, _) in list_files(root)? {
        total += std::fs::metadata(&path)
            .map_err(|e| ArtifactError::io(&path, e))?
            .len();
    }
    Ok(total)
}

/// Hash every regular file under `root` (hidden entries skipped) and read the card and config.
/// `*.safetensors` and `*.gguf` files are hashed per tensor, the rest as whole files.
pub fn scan_dir(root: &Path, progress: &mut Progress<'_>) -> Result<ModelDir, ArtifactError> {
    let files = list_files(root)?;
    let mut artifacts = Vec::with_capacity(files.len());
    let mut gguf_base_models: Vec<String> = Vec::new();
    let mut gguf_license = None;
    for (path, rel) in &files {
        shoulders_record::validate::relative_path("artifacts.path", rel).map_err(|e| {
            ArtifactError::BadPath {
                path: rel.clone(),
                reason: e.to_string(),
            }
        })?;
        let artifact = if rel.ends_with(".safetensors") {
            hash_safetensors(path, rel, progress)?
        } else if rel.ends_with(".gguf") {
            let (artifact, hints) = crate::hash_gguf(path, rel, progress)?;
            for base in hints.base_models {
                if !gguf_base_models.contains(&base) {
                    gguf_base_models.push(base);
                }
            }
            gguf_license = gguf_license.or(hints.license);
            artifact
        } else {
            hash_file(path, rel, progress)?
        };
        artifacts.push(artifact);
    }
    let config_path = root.join("config.json");
    let config = match read_small(&config_path, MAX_CONFIG_BYTES)? {
        None => None,
        Some(bytes) => {
            Some(
                serde_json::from_slice(&bytes).map_err(|e| ArtifactError::BadConfig {
                    path: config_path.display().to_string(),
                    reason: format!("not valid JSON: {e}"),
                })?,
            )
        }
    };
    let card_path = root.join("README.md");
    let card = match read_small(&card_path, MAX_CARD_BYTES)? {
        None => None,
        Some(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| ArtifactError::BadCard {
                path: card_path.display().to_string(),
                reason: "not UTF-8".into(),
            })?;
            crate::parse_front_matter(&text).map_err(|reason| ArtifactError::BadCard {
                path: card_path.display().to_string(),
                reason,
            })?
        }
    };
    // In a Hugging Face cache snapshot the file is a link into the entry's blobs: follow it
    // when `list_files` would; any other link is refused by the read (not a regular file).
    let mut adapter_path = root.join(crate::ADAPTER_CONFIG_FILE);
    if std::fs::symlink_metadata(&adapter_path).is_ok_and(|m| m.file_type().is_symlink()) {
        if let Some(target) = allowed_link_target(root, &adapter_path) {
            adapter_path = target;
        }
    }
    let adapter = crate::read_adapter_config(&adapter_path)?;
    Ok(ModelDir {
        config,
        card,
        artifacts,
        gguf_base_models,
        gguf_license,
        adapter,
    })
}
