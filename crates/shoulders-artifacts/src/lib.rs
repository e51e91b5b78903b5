//! Reading a Hugging Face-style model directory into what a `model.register` record commits to.
//!
//! * `*.safetensors` files are hashed **per tensor** (SHA-256 of each tensor's bytes) and as a
//!   whole, in one streaming pass with a fixed 1 MiB buffer: memory stays flat whatever the
//!   file size. The header is parsed with the `safetensors` crate's `Metadata` and checked
//!   (contiguous offsets, sizes matching dtype × shape, nothing after the last tensor).
//! * `*.gguf` files (llama.cpp) are hashed per tensor and as a whole in the same way; the
//!   header is parsed with explicit limits on every count and length, and its `general.*`
//!   metadata gives lineage hints (base models, licence). See [`hash_gguf`].
//! * Every other file is hashed as a whole.
//! * `README.md`'s YAML front matter (the model card) gives lineage hints: `license`,
//!   `base_model`, `base_model_relation`, `datasets`.
//! * A PEFT adapter's `adapter_config.json` gives its target modules and rank
//!   ([`parse_adapter_config`]).
//!
//! * A Hugging Face hub cache snapshot (`models--ORG--NAME/snapshots/<commit>/`) is read
//!   through its links into the entry's `blobs/`, each blob checked against its name, and
//!   yields the repository and commit ([`hf`]).
//!
//! [`compare`] re-checks a directory against registered artifacts and names exactly which
//! files and tensors differ.

mod adapter;
mod card;
mod compare;
pub mod files;
mod gguf;
mod hash;
pub mod hf;
mod tee;

pub use adapter::{
    parse_adapter_config, read_adapter_config, ADAPTER_CONFIG_FILE, MAX_ADAPTER_CONFIG_BYTES,
};
pub use card::{parse_front_matter, ModelCard};
pub use compare::{compare, Difference, Report};
pub use gguf::{ggml_type_name, hash_gguf, GgufHints};
pub use hash::{hash_file, hash_safetensors, scan_dir, total_bytes, ModelDir, Progress};
pub use hf::{detect_snapshot, resolve_snapshot, HfSnapshot};

/// Largest safetensors header we parse (the format's own limit is 100 MB).
pub const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;
/// Most files read from one model directory.
pub const MAX_FILES: usize = shoulders_record::MAX_ARTIFACTS;
/// Largest model card (`README.md`) parsed for front matter.
pub const MAX_CARD_BYTES: u64 = 1024 * 1024;
/// Largest `config.json` read.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;
/// Most tensors in one GGUF file.
pub const MAX_GGUF_TENSORS: u64 = 65_536;
/// Most metadata key/value pairs in one GGUF file.
pub const MAX_GGUF_KV: u64 = 65_536;
/// Longest GGUF string (metadata keys and values, tensor names), in bytes.
pub const MAX_GGUF_STRING_BYTES: u64 = 64 * 1024;
/// Most metadata array elements in one GGUF file, all arrays (nested ones too) together.
pub const MAX_GGUF_ARRAY_ELEMENTS: u64 = 16 * 1024 * 1024;
/// Deepest nesting of GGUF metadata arrays.
pub const MAX_GGUF_ARRAY_DEPTH: u32 = 8;
/// Most dimensions of one GGUF tensor (ggml itself uses 4).
pub const MAX_GGUF_DIMS: u32 = 8;
/// Longest GGUF tensor name, in bytes (what a `model.register` record accepts; ggml's own
/// limit is 63).
pub const MAX_GGUF_TENSOR_NAME_BYTES: u64 = 256;
/// Largest `general.base_model.count` read.
pub const MAX_GGUF_BASE_MODELS: u64 = 64;

/// Why a directory or file could not be read. Codes are stable.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("I/O error on {path}: {message}")]
    Io { path: String, message: String },
    #[error("{path} is not a valid safetensors file: {reason}")]
    BadSafetensors { path: String, reason: String },
    #[error("{path} is not a valid GGUF file: {reason}")]
    BadGguf { path: String, reason: String },
    #[error("model card {path}: {reason}")]
    BadCard { path: String, reason: String },
    #[error("{path}: {reason}")]
    BadConfig { path: String, reason: String },
    #[error("adapter configuration {path}: {reason}")]
    BadAdapterConfig { path: String, reason: String },
    #[error("{dir} holds more than {limit} files")]
    TooManyFiles { dir: String, limit: usize },
    #[error("{path}: {reason}")]
    BadPath { path: String, reason: String },
    /// A link in a Hugging Face cache snapshot that does not resolve to a file in the entry's
    /// `blobs/` ([`hf`]).
    #[error("{path} in a Hugging Face cache snapshot links to {target}, outside the entry's blobs directory {blobs}; only links into it are followed (re-download the snapshot, or import a plain copy of the files)")]
    HfLinkOutside {
        path: String,
        target: String,
        blobs: String,
    },
    /// A cache blob whose content does not hash to its name.
    #[error("{path}: the cache blob {blob} does not hold what its name says (its {kind} is {computed}); the cache is corrupt or was edited: re-download the file")]
    HfBlobMismatch {
        path: String,
        blob: String,
        kind: &'static str,
        computed: String,
    },
    /// A cache blob named by neither a SHA-256 nor a git blob id.
    #[error("{path} links to the cache blob {blob}, whose name is neither a SHA-256 (64 hex digits) nor a git blob id (40); it cannot be checked")]
    HfBlobName { path: String, blob: String },
    /// A Hugging Face cache laid out or named otherwise than `huggingface_hub` does, or a
    /// repository or revision not in it.
    #[error("Hugging Face cache {path}: {reason}")]
    HfCache { path: String, reason: String },
    /// A file that is not a regular file, or over its limit ([`files`]).
    #[error(transparent)]
    File(#[from] files::FileError),
}

impl ArtifactError {
    pub fn code(&self) -> &'static str {
        match self {
            ArtifactError::Io { .. } => "E_IO",
            ArtifactError::BadSafetensors { .. } => "E_SAFETENSORS_INVALID",
            ArtifactError::BadGguf { .. } => "E_GGUF_INVALID",
            ArtifactError::BadCard { .. } => "E_MODEL_CARD_INVALID",
            ArtifactError::BadConfig { .. } => "E_MODEL_CONFIG_INVALID",
            ArtifactError::BadAdapterConfig { .. } => "E_ADAPTER_CONFIG_INVALID",
            ArtifactError::TooManyFiles { .. } => "E_TOO_MANY_FILES",
            ArtifactError::BadPath { .. } => "E_PATH_INVALID",
            ArtifactError::HfLinkOutside { .. } => "E_HF_CACHE_LINK_OUTSIDE",
            ArtifactError::HfBlobMismatch { .. } => "E_HF_BLOB_HASH_MISMATCH",
            ArtifactError::HfBlobName { .. } => "E_HF_BLOB_NAME_INVALID",
            ArtifactError::HfCache { .. } => "E_HF_CACHE_INVALID",
            ArtifactError::File(e) => e.code(),
        }
    }

    pub(crate) fn io(path: &std::path::Path, e: std::io::Error) -> Self {
        ArtifactError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}
