//! The shoulders engine: one writer per data directory that verifies, folds and durably appends
//! signed records with group commit, and serves proofs, checkpoints, exports and state.
//!
//! It knows nothing of HTTP or the command line; the CLI and the server are thin layers over
//! [`Ledger`] and [`Reader`].

mod datadir;
mod error;
pub mod export;
mod reader;
mod replay;
mod writer;

pub use datadir::{write_new_file, DataDir};
pub use error::LedgerError;
pub use export::{verify_export, VerifyFailure, VerifyReport, EXPORT_MAGIC};
pub use reader::{ConsistencyProof, InclusionProof, Reader};
pub use replay::replay;
pub use writer::{Appended, Ledger, LedgerConfig};

use rand_core::CryptoRngCore;
use shoulders_log::{generate_log_key, LogSigner};
use shoulders_store::{SqliteStore, Store};

/// Metadata keys in the store.
pub(crate) const META_ORIGIN: &str = "origin";
pub(crate) const META_VERIFIER_KEY: &str = "verifier_key";
pub(crate) const META_FORMAT: &str = "format";
pub(crate) const FORMAT: &str = "shoulders-ledger/v1";

/// Create a new ledger in `dir` with a fresh log key for `origin`. Returns the verifier key.
pub fn init<R: CryptoRngCore + ?Sized>(
    dir: &DataDir,
    origin: &str,
    rng: &mut R,
) -> Result<String, LedgerError> {
    if dir.exists() || dir.signer_key().exists() {
        return Err(LedgerError::AlreadyInitialised(
            dir.root().display().to_string(),
        ));
    }
    let (signer_key, verifier_key) = generate_log_key(rng, origin)?;
    std::fs::create_dir_all(dir.root()).map_err(|e| LedgerError::io(dir.root(), e))?;
    let _lock = dir.lock()?;
    write_new_file(
        &dir.signer_key(),
        format!("{signer_key}\n").as_bytes(),
        0o600,
    )?;
    write_new_file(
        &dir.verifier_key(),
        format!("{verifier_key}\n").as_bytes(),
        0o644,
    )?;
    let mut store = SqliteStore::create(&dir.database())?;
    store.set_meta(META_FORMAT, FORMAT)?;
    store.set_meta(META_ORIGIN, origin)?;
    store.set_meta(META_VERIFIER_KEY, &verifier_key)?;
    Ok(verifier_key)
}

/// Load the log signer and check it belongs to this store.
pub(crate) fn load_signer(
    dir: &DataDir,
    store: &dyn Store,
) -> Result<(LogSigner, String), LedgerError> {
    let text = dir.read_text(&dir.signer_key())?;
    let signer = LogSigner::new(&text)
        .map_err(|e| LedgerError::KeyFile(format!("{}: {e}", dir.signer_key().display())))?;
    let verifier_key = store
        .meta(META_VERIFIER_KEY)?
        .ok_or_else(|| LedgerError::KeyFile("the store has no verifier key".into()))?;
    // The signer must produce signatures the recorded verifier key accepts.
    let probe = signer.sign(0, shoulders_log::EMPTY_HASH)?;
    shoulders_log::LogVerifier::new(&verifier_key)?
        .open(&probe)
        .map_err(|_| {
            LedgerError::KeyFile(format!(
                "{} does not match the ledger's verifier key",
                dir.signer_key().display()
            ))
        })?;
    if store.meta(META_FORMAT)?.as_deref() != Some(FORMAT) {
        return Err(LedgerError::KeyFile("unknown ledger format".into()));
    }
    Ok((signer, verifier_key))
}
