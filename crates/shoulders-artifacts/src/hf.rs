//! Hugging Face hub cache snapshots (`huggingface_hub`'s cache layout):
//!
//! ```text
//! <cache>/models--ORG--NAME/
//!     refs/main                  the commit hash `main` pointed at when last downloaded
//!     blobs/<sha256 or git sha1> file contents, named by their hash
//!     snapshots/<commit>/…       one tree per commit; each file a symbolic link into blobs/
//! ```
//!
//! A recognised snapshot is the one place where `model import` follows links out of the model
//! directory, and only into that entry's `blobs/`: every link must resolve to a regular file
//! directly inside it (else [`ArtifactError::HfLinkOutside`]), and every blob's content must
//! hash to its name (64 hex digits: SHA-256; 40: git's blob id, SHA-1 of `"blob <len>\0"` and
//! the content), computed in the same pass that hashes the file for the record (else
//! [`ArtifactError::HfBlobMismatch`]). So the repository and revision a registration records
//! are those the hub named the files by, and a cache whose blobs were edited is refused.

use crate::files::{read_regular_file, FileError};
use crate::ArtifactError;
use shoulders_record::{is_commit_id, validate_hub_repo, ModelHub, ModelSource};
use std::path::{Path, PathBuf};

/// Prefix of a model entry's directory name in the cache.
pub const HF_ENTRY_PREFIX: &str = "models--";
/// Largest `refs/<name>` file read (a commit hash and a newline).
pub const MAX_HF_REF_BYTES: u64 = 256;
/// Longest revision name (`--revision`) resolved through `refs/`, in bytes.
pub const MAX_HF_REVISION_NAME_BYTES: usize = 256;

/// A recognised snapshot directory of a Hugging Face cache entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HfSnapshot {
    /// The snapshot directory (`…/snapshots/<commit>`), canonical.
    pub dir: PathBuf,
    /// The entry's `blobs/` directory, canonical.
    pub blobs: PathBuf,
    /// The repository and commit, as the cache names them.
    pub source: ModelSource,
}

/// How a blob's name says its content hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BlobName {
    /// 64 lowercase hex digits: SHA-256 of the content (LFS files).
    Sha256(String),
    /// 40 lowercase hex digits: git's blob id (files kept in git itself).
    GitSha1(String),
}

impl BlobName {
    fn parse(name: &str) -> Option<BlobName> {
        let hex = name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        match name.len() {
            64 if hex => Some(BlobName::Sha256(name.to_string())),
            40 if hex => Some(BlobName::GitSha1(name.to_string())),
            _ => None,
        }
    }

    /// Compare against what reading the file computed: its `sha256:<hex>` and, when asked
    /// for, its git blob id.
    pub(crate) fn check(
        &self,
        rel: &str,
        whole: &crate::hash::WholeDigest,
    ) -> Result<(), ArtifactError> {
        let (kind, named, computed) = match self {
            BlobName::Sha256(n) => (
                "SHA-256",
                n,
                whole.sha256.strip_prefix("sha256:").unwrap_or_default(),
            ),
            BlobName::GitSha1(n) => ("git blob id", n, whole.git_blob.as_deref().unwrap_or("")),
        };
        if named == computed {
            Ok(())
        } else {
            Err(ArtifactError::HfBlobMismatch {
                path: rel.to_string(),
                blob: named.clone(),
                kind,
                computed: computed.to_string(),
            })
        }
    }

    pub(crate) fn wants_git_blob(&self) -> bool {
        matches!(self, BlobName::GitSha1(_))
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> ArtifactError {
    ArtifactError::HfCache {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// The repository id a cache entry's directory name spells: `models--ORG--NAME` is `ORG/NAME`
/// (`models--NAME` is `NAME`).
fn repo_of_entry(entry: &Path) -> Option<String> {
    let name = entry.file_name()?.to_str()?;
    let repo = name.strip_prefix(HF_ENTRY_PREFIX)?.replacen("--", "/", 1);
    validate_hub_repo("repo", &repo).ok().map(|()| repo)
}

/// Whether `root` is a snapshot of a Hugging Face cache entry: its parent is named
/// `snapshots` and its grandparent `models--…`. `None` for any other directory (it is then
/// read as an ordinary model directory). A directory laid out as a snapshot whose names are
/// not a repository id and a commit is refused (`E_HF_CACHE_INVALID`) rather than read
/// without its checks.
pub fn detect_snapshot(root: &Path) -> Result<Option<HfSnapshot>, ArtifactError> {
    let dir = std::fs::canonicalize(root).map_err(|e| ArtifactError::io(root, e))?;
    let (Some(snapshots), Some(entry)) = (dir.parent(), dir.parent().and_then(Path::parent)) else {
        return Ok(None);
    };
    let is_entry = entry
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(HF_ENTRY_PREFIX));
    if snapshots.file_name() != Some("snapshots".as_ref()) || !is_entry {
        return Ok(None);
    }
    let repo = repo_of_entry(entry).ok_or_else(|| {
        invalid(
            entry,
            "the cache entry's name is not models--ORG--NAME with a valid repository id",
        )
    })?;
    let revision = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| is_commit_id(n))
        .ok_or_else(|| {
            invalid(
                &dir,
                "a snapshot directory is named by its commit (40 lowercase hex digits)",
            )
        })?
        .to_string();
    let blobs_dir = entry.join("blobs");
    let blobs = std::fs::canonicalize(&blobs_dir).map_err(|e| {
        invalid(
            &blobs_dir,
            format!("the cache entry has no blobs directory: {e}"),
        )
    })?;
    Ok(Some(HfSnapshot {
        dir,
        blobs,
        source: ModelSource {
            hub: ModelHub::HuggingFace,
            repo,
            revision,
        },
    }))
}

/// The snapshot directory of `repo` at `revision` in the cache `cache` (`huggingface_hub`'s
/// `HF_HUB_CACHE`, e.g. `~/.cache/huggingface/hub`). `revision` is a commit hash, or a ref name
/// (`main`, `refs/main`, `refs/pr/1`) resolved through the entry's `refs/<name>` file;
/// `None` means `main`.
pub fn resolve_snapshot(
    cache: &Path,
    repo: &str,
    revision: Option<&str>,
) -> Result<PathBuf, ArtifactError> {
    validate_hub_repo("--repo", repo).map_err(|e| invalid(Path::new(repo), e.to_string()))?;
    let entry = cache.join(format!("{HF_ENTRY_PREFIX}{}", repo.replace('/', "--")));
    if !entry.is_dir() {
        return Err(invalid(
            &entry,
            format!("{repo} is not in this cache; download it first (e.g. `hf download {repo}`)"),
        ));
    }
    let revision = revision.unwrap_or("main");
    let commit = if is_commit_id(revision) {
        revision.to_string()
    } else {
        resolve_ref(&entry, revision)?
    };
    let dir = entry.join("snapshots").join(&commit);
    if !dir.is_dir() {
        return Err(invalid(
            &dir,
            format!("no snapshot of {repo} at commit {commit} in this cache"),
        ));
    }
    Ok(dir)
}

/// The commit the entry's `refs/<name>` file holds.
fn resolve_ref(entry: &Path, revision: &str) -> Result<String, ArtifactError> {
    let name = revision.strip_prefix("refs/").unwrap_or(revision);
    let name_ok = name.len() <= MAX_HF_REVISION_NAME_BYTES
        && shoulders_record::validate::relative_path("--revision", name).is_ok()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    if !name_ok {
        return Err(invalid(
            Path::new(revision),
            format!("--revision must be a commit hash or a ref name such as main or refs/pr/1 (at most {MAX_HF_REVISION_NAME_BYTES} characters of A-Z, a-z, 0-9, '.', '_', '-', '/')"),
        ));
    }
    let path = entry.join("refs").join(name);
    let bytes = match read_regular_file(&path, MAX_HF_REF_BYTES) {
        Ok(bytes) => bytes,
        Err(FileError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Err(invalid(
                &path,
                format!("no ref {name:?} in this cache entry; pass --revision COMMIT or a downloaded ref"),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    std::str::from_utf8(&bytes)
        .ok()
        .map(str::trim)
        .filter(|c| is_commit_id(c))
        .map(str::to_string)
        .ok_or_else(|| {
            invalid(
                &path,
                "a ref file holds one commit hash (40 lowercase hex digits)",
            )
        })
}

/// Where the link `link` (shown as `rel`) in a snapshot leads: a regular file directly inside
/// the entry's `blobs/`, named by a hash. Anything else is refused.
pub(crate) fn blob_target(
    snapshot: &HfSnapshot,
    link: &Path,
    rel: &str,
) -> Result<(PathBuf, BlobName), ArtifactError> {
    let outside = |target: String| ArtifactError::HfLinkOutside {
        path: rel.to_string(),
        target,
        blobs: snapshot.blobs.display().to_string(),
    };
    let target = std::fs::canonicalize(link)
        .map_err(|e| outside(format!("{} ({e})", read_link_text(link))))?;
    let shown = target.display().to_string();
    if target.parent() != Some(snapshot.blobs.as_path()) {
        return Err(outside(shown));
    }
    let is_file = std::fs::metadata(&target).is_ok_and(|m| m.file_type().is_file());
    if !is_file {
        return Err(outside(format!("{shown}, which is not a regular file")));
    }
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(BlobName::parse)
        .ok_or_else(|| ArtifactError::HfBlobName {
            path: rel.to_string(),
            blob: shown.clone(),
        })?;
    Ok((target, name))
}

fn read_link_text(link: &Path) -> String {
    std::fs::read_link(link)
        .map(|t| t.display().to_string())
        .unwrap_or_else(|_| "?".into())
}
