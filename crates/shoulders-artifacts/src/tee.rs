//! A front-to-back reader that also hashes the whole file on a second thread.
//!
//! Format parsers (safetensors, GGUF) consume the file through [`Tee`] in whatever pieces they
//! need (header fields, tensor byte ranges); every buffer read goes, once consumed, to a
//! whole-file SHA-256 running on another thread. On two cores, per-tensor plus whole-file
//! hashing then costs about the wall time of one hash, and memory stays at [`POOL`] buffers.

use crate::hash::{Progress, WholeDigest, WholeHash, CHUNK_BYTES};
use crate::ArtifactError;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender};

/// Buffers in flight between the reader and the whole-file hashing thread.
const POOL: usize = 4;

/// Builds the format's error (`BadSafetensors`, `BadGguf`) for a file.
pub(crate) type FormatError = fn(&Path, String) -> ArtifactError;

/// Reads the file front to back in pooled buffers. Every buffer read goes, once consumed, to
/// the whole-file hashing thread, so the whole-file hash covers exactly the bytes read, in
/// order, however the parser consumes them.
pub(crate) struct Tee<'a> {
    file: File,
    path: &'a Path,
    pub(crate) size: u64,
    /// Bytes read from the file so far.
    read: u64,
    buf: Vec<u8>,
    /// Filled bytes of `buf`.
    len: usize,
    /// Consumed bytes of `buf`.
    at: usize,
    free: Receiver<Vec<u8>>,
    full: SyncSender<(Vec<u8>, usize)>,
    progress: &'a mut dyn FnMut(u64),
    error: FormatError,
}

/// Open `path`, run `parse` over it through a [`Tee`], consume whatever `parse` left, and return
/// its result with the file size and the whole-file digests (`sha256:<hex>`, and the git blob
/// id when `git_blob` is set).
pub(crate) fn read_teed<T>(
    path: &Path,
    progress: &mut Progress<'_>,
    error: FormatError,
    git_blob: bool,
    parse: impl FnOnce(&mut Tee<'_>) -> Result<T, ArtifactError>,
) -> Result<(T, u64, WholeDigest), ArtifactError> {
    let (file, size) = crate::files::open_regular(path, u64::MAX)?;
    let chunk = (CHUNK_BYTES as u64).min(size.max(1)) as usize;
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(POOL);
    let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(POOL);
    for _ in 1..POOL {
        free_tx
            .send(vec![0u8; chunk])
            .expect("the pool fits its channel");
    }
    let progress: &mut dyn FnMut(u64) = &mut **progress;
    let (value, whole) = std::thread::scope(|s| {
        let worker = s.spawn(move || {
            let mut whole = WholeHash::new(git_blob.then_some(size));
            for (buf, len) in full_rx {
                whole.update(&buf[..len]);
                // After an error nobody takes buffers back; that is fine.
                let _ = free_tx.send(buf);
            }
            whole
        });
        let mut tee = Tee {
            file,
            path,
            size,
            read: 0,
            buf: vec![0u8; chunk],
            len: 0,
            at: 0,
            free: free_rx,
            full: full_tx,
            progress,
            error,
        };
        let result = parse(&mut tee).and_then(|value| tee.finish().map(|()| value));
        drop(tee);
        let whole = worker.join().expect("the hashing thread does not panic");
        result.map(|value| (value, whole))
    })?;
    Ok((value, size, whole.finish()))
}

impl Tee<'_> {
    /// The format's error for this file.
    pub(crate) fn bad(&self, reason: impl Into<String>) -> ArtifactError {
        (self.error)(self.path, reason.into())
    }

    /// Offset of the next byte the parser will consume.
    pub(crate) fn pos(&self) -> u64 {
        self.read - (self.len - self.at) as u64
    }

    pub(crate) fn left(&self) -> u64 {
        self.size - self.pos()
    }

    pub(crate) fn need(&self, n: u64, what: &str) -> Result<(), ArtifactError> {
        if n > self.left() {
            return Err(self.bad(format!(
                "truncated: {what} at byte {} needs {n} bytes but the file ends at byte {}",
                self.pos(),
                self.size
            )));
        }
        Ok(())
    }

    /// Precondition: the current buffer is fully consumed.
    fn refill(&mut self) -> Result<(), ArtifactError> {
        if self.read >= self.size {
            return Err(self.bad(format!("truncated at byte {}", self.size)));
        }
        if self.len > 0 {
            let done = std::mem::take(&mut self.buf);
            self.full
                .send((done, self.len))
                .expect("the hashing thread runs until the sender is dropped");
            self.buf = self
                .free
                .recv()
                .expect("the hashing thread returns buffers while it runs");
        }
        let want = (self.size - self.read).min(self.buf.len() as u64) as usize;
        self.file
            .read_exact(&mut self.buf[..want])
            .map_err(|e| ArtifactError::io(self.path, e))?;
        (self.progress)(want as u64);
        self.read += want as u64;
        self.len = want;
        self.at = 0;
        Ok(())
    }

    /// Consume `n` bytes, handing them to `sink` in pieces.
    pub(crate) fn take(
        &mut self,
        mut n: u64,
        what: &str,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), ArtifactError> {
        self.need(n, what)?;
        while n > 0 {
            if self.at == self.len {
                self.refill()?;
            }
            let k = ((self.len - self.at) as u64).min(n) as usize;
            sink(&self.buf[self.at..self.at + k]);
            self.at += k;
            n -= k as u64;
        }
        Ok(())
    }

    pub(crate) fn skip(&mut self, n: u64, what: &str) -> Result<(), ArtifactError> {
        self.take(n, what, |_| {})
    }

    pub(crate) fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ArtifactError> {
        let mut out = [0u8; N];
        let mut done = 0;
        self.take(N as u64, what, |b| {
            out[done..done + b.len()].copy_from_slice(b);
            done += b.len();
        })?;
        Ok(out)
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, ArtifactError> {
        self.bytes(what).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, ArtifactError> {
        self.bytes(what).map(u64::from_le_bytes)
    }

    /// Consume the rest of the file (whole-file hash only) and hand the last buffer over.
    pub(crate) fn finish(&mut self) -> Result<(), ArtifactError> {
        let rest = self.left();
        self.skip(rest, "trailing bytes")?;
        if self.len > 0 {
            let done = std::mem::take(&mut self.buf);
            self.full
                .send((done, self.len))
                .expect("the hashing thread runs until the sender is dropped");
            self.len = 0;
            self.at = 0;
        }
        Ok(())
    }
}
