//! Reading a file someone named, safely: only regular files, with the size checked on the open
//! file before anything is allocated, and never more than the limit read.
//!
//! Why (issue 15, item 11): the commands that read user-given paths checked
//! `metadata(path).len()` and then read the path. `/dev/zero` reports 0 bytes and never ends,
//! a FIFO reports 0 bytes and blocks the open until a writer comes, and a symbolic link can
//! be swapped between the check and the read. So:
//!
//! * the path is opened with `O_NOFOLLOW` (a symbolic link as the last component is refused:
//!   pass the file it points to) and `O_NONBLOCK` (opening a FIFO does not wait for a writer;
//!   the flag does nothing to reads of a regular file);
//! * the *open file's* metadata must say regular file (not a device, FIFO, socket or
//!   directory), and its size must be within the limit: what is checked is what is read;
//! * the read goes through `take(limit + 1)`, so a file that grows meanwhile is still bounded
//!   and reported too large.
//!
//! Errors have stable codes: `E_NOT_A_REGULAR_FILE`, `E_FILE_TOO_LARGE` (callers with a more
//! specific code for their file map [`FileError::TooLarge`] to it), `E_IO`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Errors of [`open_regular`] and [`read_regular_file`].
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A symbolic link, device, FIFO, socket or directory.
    #[error("{path} is not a regular file ({kind}); pass a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    /// Over the caller's limit (by its metadata, or by growing while read).
    #[error("{path} is {len} bytes or more; the limit is {limit}")]
    TooLarge { path: PathBuf, len: u64, limit: u64 },
    /// Opening or reading failed.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FileError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            FileError::NotRegular { .. } => "E_NOT_A_REGULAR_FILE",
            FileError::TooLarge { .. } => "E_FILE_TOO_LARGE",
            FileError::Io { .. } => "E_IO",
        }
    }
}

fn kind_of(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// Open `path` for reading if it is a regular file (not through a final symbolic link) of at
/// most `max_bytes`; returns the file and its size. See the module docs.
pub fn open_regular(path: &Path, max_bytes: u64) -> Result<(File, u64), FileError> {
    let io = |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    #[cfg(not(unix))]
    {
        let meta = std::fs::symlink_metadata(path).map_err(io)?;
        if meta.file_type().is_symlink() {
            return Err(FileError::NotRegular {
                path: path.to_path_buf(),
                kind: "a symbolic link",
            });
        }
    }
    let file = match options.open(path) {
        Ok(f) => f,
        // O_NOFOLLOW on a symbolic link: ELOOP (Linux, macOS) or EMLINK (FreeBSD).
        Err(e) if is_symlink(path) => {
            let _ = e;
            return Err(FileError::NotRegular {
                path: path.to_path_buf(),
                kind: "a symbolic link",
            });
        }
        Err(e) => return Err(io(e)),
    };
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(meta.file_type()),
        });
    }
    if meta.len() > max_bytes {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            len: meta.len(),
            limit: max_bytes,
        });
    }
    Ok((file, meta.len()))
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// The whole of a regular file of at most `max_bytes` ([`open_regular`]), allocated for its
/// checked size and read through `take(max_bytes + 1)`.
pub fn read_regular_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>, FileError> {
    let (file, len) = open_regular(path, max_bytes)?;
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|source| FileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if out.len() as u64 > max_bytes {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            len: out.len() as u64,
            limit: max_bytes,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, b"hello").unwrap();
        assert_eq!(read_regular_file(&small, 5).unwrap(), b"hello");
        assert_eq!(
            read_regular_file(&small, 4).unwrap_err().code(),
            "E_FILE_TOO_LARGE"
        );
        let big = dir.path().join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(1 << 40)
            .unwrap();
        assert_eq!(
            read_regular_file(&big, 1 << 20).unwrap_err().code(),
            "E_FILE_TOO_LARGE"
        );
        assert_eq!(
            read_regular_file(dir.path(), 1 << 20).unwrap_err().code(),
            "E_NOT_A_REGULAR_FILE"
        );
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&small, &link).unwrap();
            assert_eq!(
                read_regular_file(&link, 1 << 20).unwrap_err().code(),
                "E_NOT_A_REGULAR_FILE"
            );
            assert_eq!(
                read_regular_file(Path::new("/dev/zero"), 1 << 20)
                    .unwrap_err()
                    .code(),
                "E_NOT_A_REGULAR_FILE"
            );
            let fifo = dir.path().join("fifo");
            assert!(std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success());
            // Returns at once: the open does not wait for a writer.
            assert_eq!(
                read_regular_file(&fifo, 1 << 20).unwrap_err().code(),
                "E_NOT_A_REGULAR_FILE"
            );
        }
    }
}
