//! The log as C2SP `tlog-tiles`: `shoulders publish --out DIR` writes it as static files, and
//! `verify --tiles` / `watch --tiles` read a log back from such files alone (a directory or an
//! `http(s)://…/log/` prefix), checking every tile against the signed checkpoint.

use crate::{print_json, CliError};
use anyhow::{Context, Result};
use shoulders_ledger::{Reader, VerifyFailure, VerifyReport};
use shoulders_log::tiles::{new_tiles, TileCoord, TileFetch, TiledTree, TILE_WIDTH};
use shoulders_log::{CheckpointView, LogError, LogVerifier};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest checkpoint note read (the `signed_note` limit; a note is a few hundred bytes).
pub const MAX_CHECKPOINT_BYTES: usize = 1 << 20;
/// Entry bundles `verify --tiles` hands the verifier at once: one chunk of 256 records.
const BUNDLES_PER_CHUNK: u64 = 1;

fn cli_error(code: &'static str, message: String) -> anyhow::Error {
    CliError { code, message }.into()
}

/// Where tiles come from: a directory written by `publish`, or an HTTP(S) tlog-tiles prefix.
///
/// It keeps nothing: [`TiledTree`] keeps the tiles it has authenticated, for one tree.
pub struct TileSource {
    at: Location,
}

enum Location {
    Dir(PathBuf),
    Http { base: String, agent: ureq::Agent },
}

impl TileSource {
    /// `http://…` or `https://…` is a URL prefix (`/log/` as `serve` has it); anything else a
    /// directory.
    pub fn parse(location: &str, timeout_ms: u64) -> Self {
        let at = if location.starts_with("http://") || location.starts_with("https://") {
            let agent = ureq::AgentBuilder::new()
                .timeout(Duration::from_millis(timeout_ms))
                .build();
            Location::Http {
                base: location.trim_end_matches('/').to_string(),
                agent,
            }
        } else {
            Location::Dir(PathBuf::from(location))
        };
        TileSource { at }
    }

    fn dir(path: &Path) -> Self {
        TileSource {
            at: Location::Dir(path.to_path_buf()),
        }
    }

    fn fetch_one(&self, tile: &TileCoord) -> Result<Vec<u8>, LogError> {
        self.read(&tile.path(), tile.max_bytes())
    }

    /// Read `path` (relative to the prefix), at most `limit` bytes.
    fn read(&self, path: &str, limit: usize) -> Result<Vec<u8>, LogError> {
        let too_large = || LogError::TileTooLarge {
            path: path.to_string(),
            limit_bytes: limit,
        };
        let mut body = Vec::new();
        match &self.at {
            Location::Dir(dir) => {
                let file = dir.join(path);
                let f = std::fs::File::open(&file).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        LogError::TileNotInTree(path.to_string())
                    } else {
                        LogError::TileFetch(format!("{}: {e}", file.display()))
                    }
                })?;
                if !f.metadata().map(|m| m.is_file()).unwrap_or(false) {
                    return Err(LogError::TileFetch(format!(
                        "{} is not a regular file",
                        file.display()
                    )));
                }
                f.take(limit as u64 + 1)
                    .read_to_end(&mut body)
                    .map_err(|e| LogError::TileFetch(format!("{}: {e}", file.display())))?;
            }
            Location::Http { base, agent } => {
                let url = format!("{base}/{path}");
                let response = agent.get(&url).call().map_err(|e| match e {
                    ureq::Error::Status(404, _) => LogError::TileNotInTree(path.to_string()),
                    e => LogError::TileFetch(format!("GET {url}: {e}")),
                })?;
                response
                    .into_reader()
                    .take(limit as u64 + 1)
                    .read_to_end(&mut body)
                    .map_err(|e| LogError::TileFetch(format!("GET {url}: {e}")))?;
            }
        }
        if body.len() > limit {
            return Err(too_large());
        }
        Ok(body)
    }

    /// The checkpoint note at the prefix.
    pub fn checkpoint(&self) -> Result<Vec<u8>, LogError> {
        self.read("checkpoint", MAX_CHECKPOINT_BYTES)
    }
}

impl TileFetch for TileSource {
    fn fetch(&self, tiles: &[TileCoord]) -> Result<Vec<Vec<u8>>, LogError> {
        tiles.iter().map(|t| self.fetch_one(t)).collect()
    }
}

fn open_note(verifier: &LogVerifier, note: &[u8], what: &str) -> Result<CheckpointView> {
    verifier.open(note).map_err(|e| {
        cli_error(
            e.code(),
            format!("{what} checkpoint rejected: {e}; it is not a checkpoint of this log, or the log's key was misused"),
        )
    })
}

/// The consistency proof from `old` to `new`, computed from `new`'s tiles (every tile
/// authenticated against `new`'s root), so no proof endpoint is needed.
pub fn tiled_consistency(
    source: &TileSource,
    old: &CheckpointView,
    new: &CheckpointView,
) -> Result<Vec<shoulders_log::Hash>> {
    let tree = TiledTree::new(new.size, new.root, source);
    Ok(shoulders_log::consistency_proof(old.size, new.size, &tree).map_err(|e| tree.explain(e))?)
}

/// The checkpoint at `source`, checked with the log's key.
pub fn fetch_checkpoint(
    source: &TileSource,
    verifier: &LogVerifier,
) -> Result<(CheckpointView, Vec<u8>)> {
    let note = source.checkpoint()?;
    Ok((open_note(verifier, &note, "the published")?, note))
}

/// `verify --tiles`: fetch every entry through [`TiledTree::entries`] (each checked against its
/// leaf in an authenticated tile), one bundle at a time, and run the export verifier on them.
pub fn verify(
    location: &str,
    key: &str,
    timeout_ms: u64,
) -> Result<(VerifyReport, shoulders_state::State)> {
    let source = TileSource::parse(location, timeout_ms);
    let verifier = LogVerifier::new(key)?;
    let (checkpoint, note) = fetch_checkpoint(&source, &verifier)?;
    let tree = TiledTree::new(checkpoint.size, checkpoint.root, &source);
    let step = BUNDLES_PER_CHUNK * u64::from(TILE_WIDTH);
    let mut at = 0u64;
    let chunks = std::iter::from_fn(|| {
        if at >= checkpoint.size {
            return None;
        }
        let end = (at + step).min(checkpoint.size);
        let chunk = tree.entries(at..end).map_err(|e| VerifyFailure {
            code: e.code(),
            index: Some(at),
            message: format!("records {at}..{end}: {e}"),
        });
        at = if chunk.is_ok() { end } else { checkpoint.size };
        Some(chunk)
    });
    Ok(shoulders_ledger::verify_entries(&note, key, chunks)?)
}

/// Write `data` to `path` atomically: a temporary file in the same directory, fsynced, renamed
/// over `path`. The directory itself is fsynced by the caller.
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().context("a tile path has a parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .context("a tile path has a file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// `shoulders publish --out DIR`: write the committed tree as a static tlog-tiles directory.
/// If DIR already holds a checkpoint of this log, only the tiles that are new since it are
/// written, after checking that it is a prefix of the ledger. Tiles are written (and their
/// directories fsynced) before the checkpoint, so a crash leaves a directory whose checkpoint's
/// tiles all exist.
///
/// With `cosigned`, the tree published is the one of `D/cosigned-checkpoint` (written by
/// `serve --witness-policy` once a quorum cosigned it), and that note, cosignatures included, is
/// the directory's checkpoint: a client demanding the witnesses' quorum can follow the mirror.
/// Its tiles are those of that size, not of the (possibly larger) ledger, because a static
/// directory can only serve the partial tiles a checkpoint names.
pub fn publish(dir: &shoulders_ledger::DataDir, out: &Path, cosigned: bool) -> Result<()> {
    let reader = Reader::open(dir)?;
    let verifier = LogVerifier::new(reader.verifier_key())?;
    let (size, note) = if cosigned {
        let path = dir.root().join(shoulders_server::witness::COSIGNED_FILE);
        if !path.exists() {
            return Err(cli_error(
                "E_NOT_COSIGNED",
                format!(
                    "{} is missing: no checkpoint of this ledger has reached its witnesses' quorum (run `serve --witness-policy`)",
                    path.display()
                ),
            ));
        }
        let note =
            crate::read_limited(&path, 64 * 1024, "cosigned checkpoint", "E_FILE_TOO_LARGE")?;
        let view = open_note(&verifier, &note, "the cosigned")?;
        if view.size > reader.size() || reader.root(view.size)? != view.root {
            return Err(cli_error(
                "E_PUBLISH_NOT_PREFIX",
                format!(
                    "{} names a tree of size {} that is not a prefix of this ledger",
                    path.display(),
                    view.size
                ),
            ));
        }
        (view.size, note)
    } else {
        (reader.size(), reader.checkpoint_at(reader.size())?)
    };
    let old_size = match TileSource::dir(out).checkpoint() {
        Err(LogError::TileNotInTree(_)) => 0,
        Err(e) => return Err(e.into()),
        Ok(old_note) => {
            let old = verifier.open(&old_note).map_err(|e| {
                cli_error(
                    "E_PUBLISH_OTHER_LOG",
                    format!(
                        "{} holds a checkpoint this log's key does not verify ({e}); publish to a new directory",
                        out.join("checkpoint").display()
                    ),
                )
            })?;
            let not_prefix = |why: String| {
                cli_error(
                    "E_PUBLISH_NOT_PREFIX",
                    format!(
                        "{} holds a checkpoint of size {} that is not a prefix of the ledger ({why}); publish to a new directory",
                        out.join("checkpoint").display(),
                        old.size
                    ),
                )
            };
            if old.size > size {
                return Err(not_prefix(format!(
                    "the tree being published holds only {size} records"
                )));
            }
            // The ledger's own root at the old size: equal exactly when the old tree is a prefix
            // (what a consistency proof from the old checkpoint to the ledger would show).
            let root = reader.root(old.size)?;
            if root != old.root {
                return Err(not_prefix(format!(
                    "the ledger's first {} records hash to {root}, the checkpoint says {}",
                    old.size, old.root
                )));
            }
            old.size
        }
    };
    let tiles = new_tiles(old_size, size);
    let mut dirs = std::collections::BTreeSet::new();
    for t in &tiles {
        let path = out.join(t.path());
        write_atomic(&path, &reader.tile(t, size)?)?;
        if let Some(parent) = path.parent() {
            dirs.insert(parent.to_path_buf());
        }
    }
    // Every directory on the way down, so each new tile's name is durable.
    let mut all_dirs = std::collections::BTreeSet::new();
    for d in &dirs {
        let mut at = d.as_path();
        while at != out {
            all_dirs.insert(at.to_path_buf());
            match at.parent() {
                Some(p) => at = p,
                None => break,
            }
        }
    }
    // Deepest first: a directory's entry in its parent is synced after its own contents.
    for d in all_dirs.iter().rev() {
        sync_dir(d)?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    sync_dir(out)?;
    write_atomic(&out.join("checkpoint"), &note)?;
    sync_dir(out)?;
    print_json(&serde_json::json!({
        "out": out,
        "tree_size": size,
        "previous_size": old_size,
        "tiles_written": tiles.len(),
    }))
}
