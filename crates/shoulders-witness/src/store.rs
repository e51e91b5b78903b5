//! What a witness last cosigned for each log, one small file per log, loaded when it starts.
//!
//! `W/logs/<hex SHA-256 of the origin>.state` holds `origin\nsize\nbase64(root)\n`. A new
//! latest is written to a temporary file, fsynced, renamed over the old one and the directory
//! fsynced before the witness answers: a cosignature it handed out is never forgotten by a
//! crash, so a restarted witness still refuses an older or forked checkpoint.

use crate::protocol::Latest;
use crate::WitnessError;
use sha2::{Digest, Sha256};
use shoulders_log::Hash;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Largest state file read back (one is under 300 bytes).
const MAX_STATE_FILE_BYTES: u64 = 4096;

/// The latest cosigned tree of every log, on disk and in memory.
pub struct StateStore {
    dir: PathBuf,
    latest: HashMap<String, Latest>,
}

fn file_name(origin: &str) -> String {
    format!("{}.state", hex::encode(Sha256::digest(origin.as_bytes())))
}

fn parse(path: &Path, text: &str) -> Result<(String, Latest), WitnessError> {
    let bad = || WitnessError::State(format!("{} is not a witness state file", path.display()));
    let mut lines = text.lines();
    let (Some(origin), Some(size), Some(root), None) =
        (lines.next(), lines.next(), lines.next(), lines.next())
    else {
        return Err(bad());
    };
    let size: u64 = size.parse().map_err(|_| bad())?;
    let root = Hash::parse_hash(root).map_err(|_| bad())?;
    if path.file_name().and_then(|n| n.to_str()) != Some(file_name(origin).as_str()) {
        return Err(bad());
    }
    Ok((origin.to_string(), Latest { size, root }))
}

impl StateStore {
    /// Open (creating) `dir` and load every state file in it. A damaged file stops the
    /// witness from starting: guessing would let it cosign a fork.
    pub fn open(dir: &Path) -> Result<Self, WitnessError> {
        let io = |e: std::io::Error| WitnessError::Io(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut latest = HashMap::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("state") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).map_err(io)?;
            if !meta.is_file() || meta.len() > MAX_STATE_FILE_BYTES {
                return Err(WitnessError::State(format!(
                    "{} is not a regular file of at most {MAX_STATE_FILE_BYTES} bytes",
                    path.display()
                )));
            }
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let (origin, l) = parse(&path, &text)?;
            latest.insert(origin, l);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            latest,
        })
    }

    /// What was last cosigned for `origin`.
    pub fn latest(&self, origin: &str) -> Option<Latest> {
        self.latest.get(origin).copied()
    }

    /// Make `l` the latest for `origin`: durable on disk first, then in memory.
    pub fn record(&mut self, origin: &str, l: Latest) -> Result<(), WitnessError> {
        let path = self.dir.join(file_name(origin));
        let tmp = path.with_extension("tmp");
        let io = |e: std::io::Error| WitnessError::Io(format!("{}: {e}", path.display()));
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        file.write_all(format!("{origin}\n{}\n{}\n", l.size, l.root).as_bytes())
            .map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(io)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        self.latest.insert(origin.to_string(), l);
        Ok(())
    }
}
