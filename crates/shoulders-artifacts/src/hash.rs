use crate::hf::{BlobName, HfSnapshot};
use crate::tee::{read_teed, Tee};
use crate::{
    ArtifactError, ModelCard, MAX_CARD_BYTES, MAX_CONFIG_BYTES, MAX_FILES, MAX_HEADER_BYTES,
};
use safetensors::tensor::Metadata;
use sha1::Sha1;
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

/// The whole-file hashes of one read: SHA-256 always (what the record holds), and git's blob
/// id when the file is a Hugging Face cache blob named by one ([`crate::hf`]).
pub(crate) struct WholeHash {
    sha256: Sha256,
    git_blob: Option<Sha1>,
}

/// What a [`WholeHash`] computed.
#[derive(Clone, Debug)]
pub(crate) struct WholeDigest {
    /// `sha256:<hex>`.
    pub(crate) sha256: String,
    /// git's blob id in hex, when asked for.
    pub(crate) git_blob: Option<String>,
}

impl WholeHash {
    /// `git_blob_len`: the file's size when its git blob id is wanted (git hashes
    /// `"blob <len>\0"` before the content).
    pub(crate) fn new(git_blob_len: Option<u64>) -> Self {
        WholeHash {
            sha256: Sha256::new(),
            git_blob: git_blob_len.map(|len| {
                let mut h = Sha1::new();
                h.update(format!("blob {len}\0").as_bytes());
                h
            }),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some(h) = &mut self.git_blob {
            h.update(bytes);
        }
    }

    pub(crate) fn finish(self) -> WholeDigest {
        WholeDigest {
            sha256: sha_ref(self.sha256.finalize()),
            git_blob: self.git_blob.map(|h| hex::encode(h.finalize())),
        }
    }
}

/// Read exactly `len` bytes from `file` into `whole`, in chunks.
fn stream(
    file: &mut File,
    path: &Path,
    mut len: u64,
    buf: &mut [u8],
    whole: &mut WholeHash,
    progress: &mut Progress<'_>,
) -> Result<(), ArtifactError> {
    while len > 0 {
        let want = len.min(buf.len() as u64) as usize;
        file.read_exact(&mut buf[..want])
            .map_err(|e| ArtifactError::io(path, e))?;
        whole.update(&buf[..want]);
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
    hash_file_whole(path, rel, progress, false).map(|(a, _)| a)
}

/// [`hash_file`], also returning the whole-file digests (with the git blob id when `git_blob`).
fn hash_file_whole(
    path: &Path,
    rel: &str,
    progress: &mut Progress<'_>,
    git_blob: bool,
) -> Result<(Artifact, WholeDigest), ArtifactError> {
    let (mut file, size) = crate::files::open_regular(path, u64::MAX)?;
    let mut buf = vec![0u8; CHUNK_BYTES.min(usize::try_from(size.max(1)).unwrap_or(CHUNK_BYTES))];
    let mut whole = WholeHash::new(git_blob.then_some(size));
    stream(&mut file, path, size, &mut buf, &mut whole, progress)?;
    let whole = whole.finish();
    Ok((
        Artifact {
            path: rel.to_string(),
            size_bytes: size,
            sha256: whole.sha256.clone(),
            tensors: Vec::new(),
        },
        whole,
    ))
}

/// Per-tensor and whole-file SHA-256 of a safetensors file, in one pass.
pub fn hash_safetensors(
    path: &Path,
    rel: &str,
    progress: &mut Progress<'_>,
) -> Result<Artifact, ArtifactError> {
    hash_safetensors_whole(path, rel, progress, false).map(|(a, _)| a)
}

/// [`hash_safetensors`], also returning the whole-file digests.
fn hash_safetensors_whole(
    path: &Path,
    rel: &str,
    progress: &mut Progress<'_>,
    git_blob: bool,
) -> Result<(Artifact, WholeDigest), ArtifactError> {
    let error = |path: &Path, reason: String| ArtifactError::BadSafetensors {
        path: path.display().to_string(),
        reason,
    };
    let (tensors, size, whole) = read_teed(path, progress, error, git_blob, parse_safetensors)?;
    Ok((
        Artifact {
            path: rel.to_string(),
            size_bytes: size,
            sha256: whole.sha256.clone(),
            tensors,
        },
        whole,
    ))
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
    /// The repository and commit, when the directory is a Hugging Face cache snapshot (every
    /// file then checked against its blob name; see [`crate::hf`]).
    pub source: Option<shoulders_record::ModelSource>,
}

/// Where the symbolic link `link` under an ordinary model directory `root` leads, when it may
/// be followed: its fully resolved target lies inside `root`. Anything else (a link to
/// `/dev/zero`, to a large file elsewhere, to a directory outside) is not followed. Links to
/// directories are not descended into either way. (A Hugging Face cache snapshot's links are
/// checked by [`crate::hf`] instead.)
fn allowed_link_target(root: &Path, link: &Path) -> Option<PathBuf> {
    let target = std::fs::canonicalize(link).ok()?;
    let root = std::fs::canonicalize(root).ok()?;
    target.starts_with(&root).then_some(target)
}

/// One file of a model directory: where its bytes are read, its path in the record, and, in a
/// Hugging Face cache snapshot, the blob name its content must hash to.
struct Listed {
    path: PathBuf,
    rel: String,
    blob: Option<BlobName>,
}

fn list_files(root: &Path, snapshot: Option<&HfSnapshot>) -> Result<Vec<Listed>, ArtifactError> {
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
            let rel = || {
                path.strip_prefix(root)
                    .ok()
                    .and_then(|p| p.to_str())
                    .map(str::to_string)
                    .ok_or_else(|| ArtifactError::BadPath {
                        path: path.display().to_string(),
                        reason: "file names must be UTF-8".into(),
                    })
            };
            // In a snapshot every link must be a checked blob link (refused otherwise). In an
            // ordinary directory a link counts as the file it points to when that stays inside
            // the directory (see [`allowed_link_target`]); other links, like other special
            // files, are not part of the model.
            let (kind, target, blob) = match (kind.is_symlink(), snapshot) {
                (true, Some(snapshot)) => {
                    let (target, blob) = crate::hf::blob_target(snapshot, &path, &rel()?)?;
                    // `blob_target` checked that the target is a regular file.
                    let kind = std::fs::metadata(&target)
                        .map_err(|e| ArtifactError::io(&target, e))?
                        .file_type();
                    (kind, target, Some(blob))
                }
                (true, None) => match allowed_link_target(root, &path) {
                    Some(t) => (
                        std::fs::metadata(&t)
                            .map_err(|e| ArtifactError::io(&t, e))?
                            .file_type(),
                        t,
                        None,
                    ),
                    None => continue,
                },
                (false, _) => (kind, path.clone(), None),
            };
            if kind.is_dir() {
                if target == path {
                    stack.push(path);
                }
            } else if kind.is_file() {
                out.push(Listed {
                    path: target,
                    rel: rel()?,
                    blob,
                });
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
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
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
    let snapshot = crate::hf::detect_snapshot(root)?;
    let mut total = 0u64;
    for file in list_files(root, snapshot.as_ref())? {
        total += std::fs::metadata(&file.path)
            .map_err(|e| ArtifactError::io(&file.path, e))?
            .len();
    }
    Ok(total)
}

/// Hash one listed file (per tensor for `*.safetensors` and `*.gguf`), checking a cache blob
/// against its name in the same pass.
fn hash_listed(
    file: &Listed,
    progress: &mut Progress<'_>,
) -> Result<(Artifact, Option<crate::GgufHints>), ArtifactError> {
    let (path, rel) = (file.path.as_path(), file.rel.as_str());
    let git_blob = file.blob.as_ref().is_some_and(BlobName::wants_git_blob);
    let (artifact, hints, whole) = if rel.ends_with(".safetensors") {
        let (a, whole) = hash_safetensors_whole(path, rel, progress, git_blob)?;
        (a, None, whole)
    } else if rel.ends_with(".gguf") {
        let (a, hints, whole) = crate::gguf::hash_gguf_whole(path, rel, progress, git_blob)?;
        (a, Some(hints), whole)
    } else {
        let (a, whole) = hash_file_whole(path, rel, progress, git_blob)?;
        (a, None, whole)
    };
    if let Some(blob) = &file.blob {
        blob.check(rel, &whole)?;
    }
    Ok((artifact, hints))
}

/// Where the small file `name` at the top of the model directory is read: in a snapshot, the
/// checked blob it links to; elsewhere the path itself (a link there is refused by the read).
fn top_file(root: &Path, files: &[Listed], snapshot: Option<&HfSnapshot>, name: &str) -> PathBuf {
    snapshot
        .and_then(|_| files.iter().find(|f| f.rel == name))
        .map(|f| f.path.clone())
        .unwrap_or_else(|| root.join(name))
}

/// Hash every regular file under `root` (hidden entries skipped) and read the card and config.
/// `*.safetensors` and `*.gguf` files are hashed per tensor, the rest as whole files. A
/// Hugging Face cache snapshot ([`crate::hf`]) is read through its checked blob links and its
/// repository and commit returned as `source`.
pub fn scan_dir(root: &Path, progress: &mut Progress<'_>) -> Result<ModelDir, ArtifactError> {
    let snapshot = crate::hf::detect_snapshot(root)?;
    let files = list_files(root, snapshot.as_ref())?;
    let mut artifacts = Vec::with_capacity(files.len());
    let mut gguf_base_models: Vec<String> = Vec::new();
    let mut gguf_license = None;
    for file in &files {
        shoulders_record::validate::relative_path("artifacts.path", &file.rel).map_err(|e| {
            ArtifactError::BadPath {
                path: file.rel.clone(),
                reason: e.to_string(),
            }
        })?;
        let (artifact, hints) = hash_listed(file, progress)?;
        if let Some(hints) = hints {
            for base in hints.base_models {
                if !gguf_base_models.contains(&base) {
                    gguf_base_models.push(base);
                }
            }
            gguf_license = gguf_license.or(hints.license);
        }
        artifacts.push(artifact);
    }
    let config_path = top_file(root, &files, snapshot.as_ref(), "config.json");
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
    let card_path = top_file(root, &files, snapshot.as_ref(), "README.md");
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
    // A link is followed when `list_files` would; any other link is refused by the read (not
    // a regular file).
    let mut adapter_path = top_file(root, &files, snapshot.as_ref(), crate::ADAPTER_CONFIG_FILE);
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
        source: snapshot.map(|s| s.source),
    })
}
