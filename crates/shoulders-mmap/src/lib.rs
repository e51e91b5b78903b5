//! Read-only memory maps of immutable index files: the only code in the workspace allowed
//! `unsafe` (one function, [`MappedFile::open`], around `memmap2::Mmap::map`).
//!
//! # Why map
//!
//! A suffix-array query touches `O(log N)` entries of the table and of the token array. Mapped,
//! those are the only pages that become resident, they live in the page cache (shared between
//! processes and indexes, evicted by the kernel under pressure, not counted as the process's
//! anonymous memory), and opening an index reads no per-token byte. Read into `Vec`s, an index
//! cost its full size in RAM per process and a full read at every open.
//!
//! # Invariants (what makes the mapping sound)
//!
//! A `&[u8]` over a file mapping is sound only while nobody changes the file's bytes or
//! shrinks it under the mapping. Shoulders keeps that true by how it writes index files:
//!
//! 1. **Written once, then immutable.** Index files are written in a fresh temporary directory,
//!    each file fsynced, the directory fsynced and then renamed into place (the old directory
//!    renamed away and removed). No code path opens an index file for writing after that:
//!    files are never modified, appended to or truncated in place. A rebuild makes new files
//!    (new inodes).
//! 2. **Replacing or deleting is safe.** On Linux (and every Unix), a mapping holds a reference
//!    to the inode: renaming the directory away, deleting its files or replacing the directory
//!    with a rebuilt one leaves the mapped bytes as they were until the last mapping is
//!    dropped. Readers of an old index keep reading the old bytes; the space is freed after.
//! 3. **Opened read-only.** The file is opened with `O_RDONLY` and mapped `PROT_READ`,
//!    `MAP_SHARED`: this process cannot write through the mapping.
//! 4. **The data directory belongs to shoulders.** A *foreign* process truncating a mapped
//!    file in place would make later reads of the lost pages raise `SIGBUS` (the process dies;
//!    memory safety is not at stake in practice, but availability is), and one writing into it
//!    would change bytes under a `&[u8]`. Operators must not edit index files in place; to
//!    replace an index, rebuild it (`shoulders index build`), which swaps directories as in 1.
//!
//! Readers must still treat the bytes as untrusted (a file may be corrupt on disk): the
//! mapping only promises the bytes do not change, not that they make sense.

use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// Errors of [`MappedFile::open`]; [`MapError::code`] gives a stable code. Callers usually
/// convert them into their own (the attribution index reports a missing or wrongly sized file
/// as `E_INDEX_CORRUPT`).
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The file does not exist.
    #[error("missing {}", path.display())]
    Missing { path: PathBuf },
    /// The path is not a regular file (a directory, a device, a FIFO...).
    #[error("{} is not a regular file", path.display())]
    NotRegular { path: PathBuf },
    /// The file's length is not the expected one.
    #[error("{} has {len} bytes, expected {expected}", path.display())]
    WrongLength {
        path: PathBuf,
        len: u64,
        expected: u64,
    },
    /// The file does not fit in this platform's address space.
    #[error("{} ({len} bytes) does not fit in the address space", path.display())]
    TooLarge { path: PathBuf, len: u64 },
    /// Opening, inspecting or mapping the file failed.
    #[error("cannot map {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl MapError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            MapError::Missing { .. } => "E_MAP_MISSING",
            MapError::NotRegular { .. } => "E_MAP_NOT_REGULAR",
            MapError::WrongLength { .. } => "E_MAP_LENGTH",
            MapError::TooLarge { .. } => "E_MAP_TOO_LARGE",
            MapError::Io { .. } => "E_MAP_IO",
        }
    }
}

/// How a mapping will be read: passed to the kernel as `madvise` advice, so it reads ahead
/// only where that helps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Scattered reads (binary search over a suffix array or its text): no read-ahead, so a
    /// query makes resident only the pages it touches.
    Random,
    /// Front-to-back scans (verification): aggressive read-ahead.
    Sequential,
    /// The kernel's default.
    Normal,
}

/// A read-only mapping of a whole immutable file (see the module docs for the invariants),
/// dereferencing to its bytes. A zero-length file is not mapped (`mmap` rejects length 0) and
/// reads as an empty slice.
#[derive(Debug)]
pub struct MappedFile {
    map: Option<memmap2::Mmap>,
    path: PathBuf,
}

impl MappedFile {
    /// Maps `path` read-only after checking it is a regular file of exactly `expected_len`
    /// bytes. Reads none of its bytes (pages come in on first access).
    pub fn open(path: &Path, expected_len: u64) -> Result<MappedFile, MapError> {
        let io = |source| MapError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                MapError::Missing {
                    path: path.to_path_buf(),
                }
            } else {
                io(e)
            }
        })?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(MapError::NotRegular {
                path: path.to_path_buf(),
            });
        }
        let len = meta.len();
        if len != expected_len {
            return Err(MapError::WrongLength {
                path: path.to_path_buf(),
                len,
                expected: expected_len,
            });
        }
        if usize::try_from(len).is_err() || len > isize::MAX as u64 {
            return Err(MapError::TooLarge {
                path: path.to_path_buf(),
                len,
            });
        }
        let map = if len == 0 {
            None
        } else {
            let map = map_read_only(&file).map_err(io)?;
            // A file that changed length between `metadata` and `mmap` breaks invariant 1.
            if map.len() as u64 != len {
                return Err(MapError::WrongLength {
                    path: path.to_path_buf(),
                    len: map.len() as u64,
                    expected: expected_len,
                });
            }
            Some(map)
        };
        Ok(MappedFile {
            map,
            path: path.to_path_buf(),
        })
    }

    /// Tells the kernel how the mapping will be read. Advice is a hint: failing to give it
    /// changes performance, not results, so the error is only returned for the caller to log
    /// or ignore.
    pub fn advise(&self, access: Access) -> Result<(), MapError> {
        let Some(map) = &self.map else {
            return Ok(());
        };
        let advice = match access {
            Access::Random => memmap2::Advice::Random,
            Access::Sequential => memmap2::Advice::Sequential,
            Access::Normal => memmap2::Advice::Normal,
        };
        // `Mmap::advise` is safe for these (`memmap2::Advice`, unlike `UncheckedAdvice`, holds
        // only advice that cannot change the mapping's contents).
        map.advise(advice).map_err(|source| MapError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// The mapped file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

impl Deref for MappedFile {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}

/// Maps all of `file` read-only (`PROT_READ`, `MAP_SHARED`).
#[allow(unsafe_code)]
fn map_read_only(file: &File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: `Mmap::map` is unsafe because the returned `&[u8]` is undefined behaviour if the
    // file is modified or truncated while mapped. Callers only map files that are immutable
    // once written (module docs, invariants 1-4): written in a temporary directory, fsynced,
    // renamed into place and never opened for writing again; replacing or deleting them keeps
    // the mapped inode intact. The file was opened read-only and the mapping is read-only.
    unsafe { memmap2::Mmap::map(file) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_exact_length_and_checks_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello world").unwrap();
        let m = MappedFile::open(&path, 11).unwrap();
        assert_eq!(&*m, b"hello world");
        m.advise(Access::Random).unwrap();
        m.advise(Access::Sequential).unwrap();
        let err = MappedFile::open(&path, 12).unwrap_err();
        assert_eq!(err.code(), "E_MAP_LENGTH");
        let err = MappedFile::open(&dir.path().join("nope"), 0).unwrap_err();
        assert_eq!(err.code(), "E_MAP_MISSING");
        let err = MappedFile::open(dir.path(), 0).unwrap_err();
        assert_eq!(err.code(), "E_MAP_NOT_REGULAR");
    }

    #[test]
    fn empty_file_is_an_empty_slice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        std::fs::write(&path, b"").unwrap();
        let m = MappedFile::open(&path, 0).unwrap();
        assert!(m.is_empty());
        m.advise(Access::Random).unwrap();
    }

    /// Invariant 2: replacing a mapped file by rename (what an index rebuild does) leaves the
    /// mapped bytes as they were.
    #[test]
    fn mapping_survives_replace_by_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"old bytes").unwrap();
        let m = MappedFile::open(&path, 9).unwrap();
        let tmp = dir.path().join("f.tmp");
        std::fs::write(&tmp, b"new bytes!").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(&*m, b"old bytes");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(&*m, b"old bytes");
    }
}
