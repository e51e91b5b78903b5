//! Pure Merkle-log math for the shoulders ledger.
//!
//! Hashing is RFC 6962 / RFC 9162 (`SHA-256(0x00 || leaf)`, `SHA-256(0x01 || l || r)`); tree
//! arithmetic, proofs and checkpoint text come from the well-kept `tlog_tiles` and `signed_note`
//! crates (a port of Go's `sumdb/tlog` and `sumdb/note`). This crate adds the narrow pieces the
//! ledger needs on top of them: a typed error with stable codes, an in-memory hash store, the
//! append [`Frontier`] that lets a writer extend the tree without reading storage, and C2SP
//! checkpoint signing/verification with the log's ed25519 key, C2SP tiles ([`tiles`]) and
//! witness cosignatures with k-of-n policies ([`WitnessPolicy`]).
//!
//! Nothing here touches the filesystem, the clock or the network: storage is reached only
//! through [`HashReader`], exactly like Go's `tlog.HashReader`.

mod checkpoint;
mod cosignature;
mod frontier;
mod memory;
mod monitor;
pub mod tiles;

pub use checkpoint::{
    generate_log_key, verifier_key_for, CheckpointView, LogSigner, LogVerifier, MAX_ORIGIN_BYTES,
};
pub use cosignature::{
    add_cosignatures, cosigned_message, cosigner_verifier_key, CosignatureVerifier, Cosigner,
    WitnessPolicy, COSIGNATURE_ALG, MAX_POLICY_WITNESSES,
};
pub use frontier::Frontier;
pub use memory::MemoryHashes;
pub use monitor::{check_advance, needs_proof, Alert};
pub use tlog_tiles::Error as TlogError;
pub use tlog_tiles::{
    node_hash, record_hash as leaf_hash, split_stored_hash_index, stored_hash_count,
    stored_hash_index, Hash, HashReader, EMPTY_HASH, HASH_SIZE,
};

/// Errors from proof generation/verification and checkpoint handling, each with a stable code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LogError {
    #[error("index {index} is not inside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("consistency needs 1 <= old ({old}) <= new ({new})")]
    BadConsistencyRange { old: u64, new: u64 },
    #[error("tree size {requested} is larger than the log ({current})")]
    SizeBeyondLog { requested: u64, current: u64 },
    #[error("the proof does not verify against the given root")]
    InvalidProof,
    #[error("hash storage failed: {0}")]
    Storage(String),
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    #[error("checkpoint signature does not verify with the given key: {0}")]
    BadCheckpointSignature(String),
    #[error("malformed key: {0}")]
    MalformedKey(String),
    #[error("not a C2SP tile path: {0:?}")]
    BadTilePath(String),
    #[error("tile {0} is not in the tree")]
    TileNotInTree(String),
    #[error("entry {position} is {len_bytes} bytes; an entry bundle frames at most 65535")]
    EntryTooLarge { position: u64, len_bytes: usize },
    #[error("malformed entry bundle: {0}")]
    MalformedBundle(String),
    #[error("tile does not match the checkpoint's tree: {0}")]
    TileInvalid(String),
    #[error("tile {path} is over {limit_bytes} bytes")]
    TileTooLarge { path: String, limit_bytes: usize },
    #[error("cannot fetch {0}")]
    TileFetch(String),
    #[error("cosignature does not verify: {0}")]
    BadCosignature(String),
    #[error("only {have} of the {need} witness cosignatures the policy needs")]
    WitnessQuorum { have: usize, need: usize },
    #[error("bad witness policy: {0}")]
    MalformedPolicy(String),
}

impl LogError {
    /// Stable machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            LogError::IndexOutOfRange { .. } => "E_PROOF_INDEX_OUT_OF_RANGE",
            LogError::BadConsistencyRange { .. } => "E_PROOF_BAD_RANGE",
            LogError::SizeBeyondLog { .. } => "E_PROOF_SIZE_BEYOND_LOG",
            LogError::InvalidProof => "E_PROOF_INVALID",
            LogError::Storage(_) => "E_STORAGE",
            LogError::MalformedCheckpoint(_) => "E_CHECKPOINT_MALFORMED",
            LogError::BadCheckpointSignature(_) => "E_CHECKPOINT_SIGNATURE",
            LogError::MalformedKey(_) => "E_KEY_MALFORMED",
            LogError::BadTilePath(_) => "E_TILE_PATH",
            LogError::TileNotInTree(_) => "E_TILE_NOT_FOUND",
            LogError::EntryTooLarge { .. } => "E_TILE_ENTRY_TOO_LARGE",
            LogError::MalformedBundle(_) => "E_TILE_BUNDLE_MALFORMED",
            LogError::TileInvalid(_) => "E_TILE_INVALID",
            LogError::TileTooLarge { .. } => "E_TILE_TOO_LARGE",
            LogError::TileFetch(_) => "E_TILE_FETCH",
            LogError::BadCosignature(_) => "E_COSIGNATURE_INVALID",
            LogError::WitnessQuorum { .. } => "E_WITNESS_QUORUM",
            LogError::MalformedPolicy(_) => "E_WITNESS_POLICY",
        }
    }
}

pub(crate) fn map_tlog(err: tlog_tiles::Error) -> LogError {
    match err {
        tlog_tiles::Error::InvalidProof => LogError::InvalidProof,
        other => LogError::Storage(other.to_string()),
    }
}

/// Root hash of the tree with `size` leaves.
pub fn tree_root<R: HashReader>(size: u64, reader: &R) -> Result<Hash, LogError> {
    tlog_tiles::tree_hash(size, reader).map_err(map_tlog)
}

/// The stored hashes (leaf, then each completed subtree) that appending leaf number `index`
/// adds; they belong at `stored_hash_index(0, index)` onward.
pub fn hashes_for_append<R: HashReader>(
    index: u64,
    leaf: Hash,
    reader: &R,
) -> Result<Vec<Hash>, LogError> {
    tlog_tiles::stored_hashes_for_record_hash(index, leaf, reader).map_err(map_tlog)
}

/// RFC 6962 audit path proving leaf `index` is in the tree of size `size`, bottom-up.
pub fn inclusion_proof<R: HashReader>(
    index: u64,
    size: u64,
    reader: &R,
) -> Result<Vec<Hash>, LogError> {
    if index >= size {
        return Err(LogError::IndexOutOfRange { index, size });
    }
    tlog_tiles::prove_record(size, index, reader).map_err(map_tlog)
}

/// Verify an inclusion proof of `leaf` at `index` in the tree `(size, root)`.
pub fn verify_inclusion(
    proof: &[Hash],
    index: u64,
    size: u64,
    leaf: Hash,
    root: Hash,
) -> Result<(), LogError> {
    if index >= size {
        return Err(LogError::IndexOutOfRange { index, size });
    }
    tlog_tiles::check_record(&proof.to_vec(), size, root, index, leaf)
        .map_err(|_| LogError::InvalidProof)
}

/// RFC 6962 consistency proof that the tree of size `old` is a prefix of the tree of size `new`.
/// An empty proof is returned when `old == new`.
pub fn consistency_proof<R: HashReader>(
    old: u64,
    new: u64,
    reader: &R,
) -> Result<Vec<Hash>, LogError> {
    if old == 0 || old > new {
        return Err(LogError::BadConsistencyRange { old, new });
    }
    tlog_tiles::prove_tree(new, old, reader).map_err(map_tlog)
}

/// Verify that `(old, old_root)` is a prefix of `(new, new_root)`.
pub fn verify_consistency(
    proof: &[Hash],
    old: u64,
    old_root: Hash,
    new: u64,
    new_root: Hash,
) -> Result<(), LogError> {
    if old == 0 || old > new {
        return Err(LogError::BadConsistencyRange { old, new });
    }
    tlog_tiles::check_tree(&proof.to_vec(), new, new_root, old, old_root)
        .map_err(|_| LogError::InvalidProof)
}
