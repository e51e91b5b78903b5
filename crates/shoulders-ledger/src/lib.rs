//! The shoulders engine: one writer per data directory that verifies, folds and durably appends
//! signed records with group commit, and serves proofs, checkpoints, exports and state.
//!
//! It knows nothing of HTTP or the command line; the CLI and the server are thin layers over
//! [`Ledger`] (the writer), [`Follower`] (a read-only node that follows the writer) and
//! [`Reader`]; the first two serve reads through the same [`View`].

pub mod content;
mod contribute;
mod datadir;
mod error;
pub mod export;
mod follower;
mod migrate;
mod pipeline;
pub mod query;
mod reader;
mod replay;
mod stored;
mod view;
mod writer;

pub use content::{
    content_ref, parse_training_config, ContentStore, Measured, MAX_TRAINING_CONFIG_BYTES,
};
pub use contribute::Contributed;
pub use datadir::{write_new_file, DataDir};
pub use error::LedgerError;
pub use export::{
    verify_content, verify_entries, verify_export, ContentReport, VerifyFailure, VerifyReport,
    EXPORT_MAGIC,
};
pub use follower::{Follower, MAX_FOLLOW_BATCH_BYTES, MAX_FOLLOW_BATCH_RECORDS};
pub use migrate::{migrate, MigrateReport};
pub use reader::{ConsistencyProof, InclusionProof, Reader};
pub use replay::replay;
pub use shoulders_store::StoreLocation;
pub use view::View;
pub use writer::{Appended, Charged, CommitObserver, Ledger, LedgerConfig, MAX_SUBMIT_BATCH};

use rand_core::CryptoRngCore;
use shoulders_log::{generate_log_key, LogSigner};
use shoulders_record::{sign_record, ActorKey, ActorRegister, Body};
use shoulders_store::Store;

/// Metadata keys in the store.
pub(crate) const META_ORIGIN: &str = "origin";
pub(crate) const META_VERIFIER_KEY: &str = "verifier_key";
pub(crate) const META_FORMAT: &str = "format";
pub(crate) const FORMAT: &str = "shoulders-ledger/v1";

/// The operator a new ledger starts with: `init` writes its key to `D/operator.key` and appends
/// its `actor.register` and the first `ledger.config` as records 0 and 1.
#[derive(Clone, Debug)]
pub struct OperatorInit {
    pub handle: String,
    pub name: String,
    pub protocol_fee_bps: u32,
    /// Signer timestamp of the two records.
    pub ts_ms: u64,
}

/// Create a new ledger in `dir` with a fresh log key for `origin`. Returns the verifier key.
///
/// `dir` must not exist or be an empty directory. Everything is written into a hidden sibling
/// staging directory first and renamed into place, so a failed `init` leaves nothing behind
/// and can simply be retried.
///
/// When `dir` carries a database location ([`DataDir::with_database`], e.g. PostgreSQL), the
/// log is created there instead of `ledger.sqlite` and the location is recorded in
/// `database.url`; that database must hold no ledger yet (`E_DATABASE_NOT_EMPTY`). The log key
/// and content store stay in `dir`.
pub fn init<R: CryptoRngCore + ?Sized>(
    dir: &DataDir,
    origin: &str,
    rng: &mut R,
) -> Result<String, LedgerError> {
    init_with(dir, origin, None, rng)
}

/// [`init`], optionally with an operator (needed before deposits and usage receipts).
pub fn init_with<R: CryptoRngCore + ?Sized>(
    dir: &DataDir,
    origin: &str,
    operator: Option<&OperatorInit>,
    rng: &mut R,
) -> Result<String, LedgerError> {
    let root = dir.root();
    if dir.exists() {
        return Err(LedgerError::AlreadyInitialised(root.display().to_string()));
    }
    if root.exists() {
        let mut entries = std::fs::read_dir(root).map_err(|e| LedgerError::io(root, e))?;
        if entries.next().is_some() {
            return Err(LedgerError::DirNotEmpty(root.display().to_string()));
        }
    }
    let (signer_key, verifier_key) = generate_log_key(rng, origin)?;
    let parent = match root.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| LedgerError::io(&parent, e))?;
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = DataDir::new(parent.join(format!(".{name}.init-{:016x}", rng.next_u64())));
    let recorded = dir
        .database_override()
        .filter(|l| **l != StoreLocation::Sqlite(dir.database()));
    let location = match recorded {
        Some(l) => l.clone(),
        None => StoreLocation::Sqlite(staging.database()),
    };
    std::fs::create_dir(staging.root()).map_err(|e| LedgerError::io(staging.root(), e))?;
    let staged = (|| {
        write_new_file(
            &staging.signer_key(),
            format!("{signer_key}\n").as_bytes(),
            0o600,
        )?;
        write_new_file(
            &staging.verifier_key(),
            format!("{verifier_key}\n").as_bytes(),
            0o644,
        )?;
        if let Some(l) = recorded {
            // May hold a password: readable by the owner only.
            write_new_file(
                &staging.database_location_file(),
                format!("{}\n", l.to_config_string()).as_bytes(),
                0o600,
            )?;
        }
        let mut store = location.create()?;
        if store.size()? > 0 || store.meta(META_FORMAT)?.is_some() {
            return Err(LedgerError::DatabaseNotEmpty(location.describe()));
        }
        store.set_meta(META_FORMAT, FORMAT)?;
        store.set_meta(META_ORIGIN, origin)?;
        store.set_meta(META_VERIFIER_KEY, &verifier_key)?;
        drop(store);
        if let Some(op) = operator {
            let key = ActorKey::generate(rng);
            write_new_file(
                &staging.operator_key(),
                key.to_file_text().as_bytes(),
                0o600,
            )?;
            let records = [
                sign_record(
                    &key,
                    origin,
                    "operator-register",
                    op.ts_ms,
                    Body::ActorRegister(ActorRegister {
                        handle: op.handle.clone(),
                        name: op.name.clone(),
                        url: None,
                        payout_address: None,
                    }),
                )?,
                sign_record(
                    &key,
                    origin,
                    "operator-config",
                    op.ts_ms,
                    Body::LedgerConfig(shoulders_record::LedgerConfig {
                        operator: op.handle.clone(),
                        protocol_fee_bps: op.protocol_fee_bps,
                        dispute_bond: None,
                    }),
                )?,
            ];
            let ledger = Ledger::open(&staging)?;
            for rec in records {
                ledger.submit(rec.bytes().to_vec())?;
            }
        }
        // Renaming over an empty directory is allowed; over a non-empty one it fails, which is
        // what makes two racing `init`s safe.
        std::fs::rename(staging.root(), root).map_err(|e| LedgerError::io(root, e))?;
        std::fs::File::open(&parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| LedgerError::io(&parent, e))
    })();
    if staged.is_err() {
        let _ = std::fs::remove_dir_all(staging.root());
    }
    staged.map(|()| verifier_key)
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
