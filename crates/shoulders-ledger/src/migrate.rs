//! Copy a ledger's log from one store to another (SQLite to PostgreSQL, or back) and prove the
//! copy is the same log: the Merkle root recomputed from the copied records must equal the
//! source's stored root and the target's stored root.

use crate::{LedgerError, FORMAT, META_FORMAT, META_ORIGIN, META_VERIFIER_KEY};
use serde::Serialize;
use shoulders_log::{leaf_hash, tree_root, Frontier};
use shoulders_store::{AppendBatch, StoreHashes, StoreLocation};

/// Records copied per transaction.
const MIGRATE_BATCH_RECORDS: u64 = 5_000;

/// What `migrate` copied and checked.
#[derive(Clone, Debug, Serialize)]
pub struct MigrateReport {
    pub from: String,
    pub to: String,
    pub records: u64,
    /// The Merkle root of all `records`, equal in source and target (base64).
    pub root: String,
}

/// Copy every record of the ledger at `from` into the empty store at `to`, in order, then check
/// the roots. The source should have no writer running (records appended during the copy are
/// not copied). The target's metadata is written last, so an interrupted copy is never
/// mistaken for a ledger; it is refused as non-empty by the next attempt (empty it first).
pub fn migrate(from: &StoreLocation, to: &StoreLocation) -> Result<MigrateReport, LedgerError> {
    if from == to {
        return Err(LedgerError::DatabaseNotEmpty(format!(
            "{} is the source itself",
            to.describe()
        )));
    }
    let source = from.open_read_only()?;
    if source.meta(META_FORMAT)?.as_deref() != Some(FORMAT) {
        return Err(LedgerError::KeyFile(format!(
            "{} holds no shoulders ledger (unknown format)",
            from.describe()
        )));
    }
    let mut target = to.create()?;
    if target.size()? > 0 || target.meta(META_FORMAT)?.is_some() {
        return Err(LedgerError::DatabaseNotEmpty(to.describe()));
    }
    let size = source.size()?;
    let mut frontier = Frontier::new();
    let mut next = 0;
    while next < size {
        let end = size.min(next + MIGRATE_BATCH_RECORDS);
        let mut records: Vec<Vec<u8>> = Vec::with_capacity((end - next) as usize);
        source.scan(next, end, &mut |_, bytes| {
            records.push(bytes.to_vec());
            Ok(())
        })?;
        if records.len() as u64 != end - next {
            return Err(LedgerError::MigrateMismatch(format!(
                "the source returned {} records for {next}..{end}",
                records.len()
            )));
        }
        let mut hashes = Vec::new();
        for r in &records {
            hashes.extend(frontier.append(leaf_hash(r)));
        }
        target.append(&AppendBatch {
            state: None,
            first_index: next,
            records: records.iter().map(Vec::as_slice).collect(),
            hashes,
        })?;
        next = end;
    }
    let recomputed = frontier.root();
    let source_root = tree_root(size, &StoreHashes(&*source))?;
    if source_root != recomputed {
        return Err(LedgerError::MigrateMismatch(format!(
            "the source's stored root {source_root} does not match its records ({recomputed}); the source is corrupt"
        )));
    }
    // Read the copy back through a fresh handle, as a reader of the new store will.
    let check = to.open_read_only()?;
    let target_root = tree_root(check.size()?, &StoreHashes(&*check))?;
    if check.size()? != size || target_root != recomputed {
        return Err(LedgerError::MigrateMismatch(format!(
            "the target holds {} records with root {target_root}, expected {size} with root {recomputed}",
            check.size()?
        )));
    }
    for key in [META_ORIGIN, META_VERIFIER_KEY, META_FORMAT] {
        let value = source.meta(key)?.ok_or_else(|| {
            LedgerError::KeyFile(format!("{} has no {key} metadata", from.describe()))
        })?;
        target.set_meta(key, &value)?;
    }
    Ok(MigrateReport {
        from: from.describe(),
        to: to.describe(),
        records: size,
        root: recomputed.to_string(),
    })
}
