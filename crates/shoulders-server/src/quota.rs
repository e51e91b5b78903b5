//! Per-actor write quotas: each signer key may append at most so many records and so many
//! bytes per window over HTTP (`POST /api/records`, `POST /api/contributions`). Past it the
//! write is refused with `429 E_QUOTA_EXCEEDED` and `Retry-After` (seconds to the window's
//! end), before the ledger sees it: nothing is appended.
//!
//! Only records whose signature verifies are counted, against their signer, so nobody can spend
//! another actor's quota by sending garbage under their key (unverifiable bodies are bounded
//! by the per-IP rate limit instead). A verified record counts whether the fold then accepts
//! it or not: the work was done. The operator's key is exempt (deposits, and the gateway's
//! receipts, which do not pass through these routes anyway).
//!
//! Windows are fixed (they start at a signer's first counted write), so counts are exact
//! integers: within one window a signer never gets more than its quota. A signer with many
//! keys gets many quotas: registering actors is itself a write, and the per-IP rate limit
//! bounds how fast keys can be used.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shoulders_record::PublicKey;

/// Default records per signer per window (`--quota-records`).
pub const DEFAULT_QUOTA_RECORDS: u64 = 600;
/// Default bytes per signer per window (`--quota-bytes`): the records' bytes plus, for
/// contributions, their documents'. 64 MiB, so one document of the default largest size
/// (16 MiB, `--max-content-bytes`) fits several times.
pub const DEFAULT_QUOTA_BYTES: u64 = 64 << 20;
/// Default window length (`--quota-window-ms`).
pub const DEFAULT_QUOTA_WINDOW_MS: u64 = 60_000;
/// Most signers tracked at once. When full, windows that have ended are dropped; if every one
/// is still running, a new signer waits for the oldest to end (refused with `Retry-After`)
/// rather than anyone's count being forgotten.
pub const MAX_TRACKED_WRITERS: usize = 100_000;

/// The quota each signer gets.
#[derive(Debug, Clone, Copy)]
pub struct WriteQuota {
    pub records: u64,
    pub bytes: u64,
    pub window_ms: u64,
}

impl Default for WriteQuota {
    fn default() -> Self {
        WriteQuota {
            records: DEFAULT_QUOTA_RECORDS,
            bytes: DEFAULT_QUOTA_BYTES,
            window_ms: DEFAULT_QUOTA_WINDOW_MS,
        }
    }
}

/// A refused write: why, and when to retry (`None`: never, it is larger than a whole window's
/// quota).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub message: String,
    pub retry_after_s: Option<u64>,
}

struct Window {
    start: Instant,
    records: u64,
    bytes: u64,
}

/// Every signer's current window.
#[derive(Default)]
pub struct Quotas {
    writers: Mutex<HashMap<[u8; 32], Window>>,
}

impl Quotas {
    /// Count one record of `bytes` bytes against `signer`, or refuse it (counting nothing).
    pub fn charge(
        &self,
        signer: &PublicKey,
        bytes: u64,
        quota: &WriteQuota,
        now: Instant,
    ) -> Result<(), Exceeded> {
        let window = Duration::from_millis(quota.window_ms.max(1));
        let retry = |start: Instant| {
            let left = (start + window).saturating_duration_since(now);
            Some(left.as_millis().div_ceil(1000).max(1) as u64)
        };
        if bytes > quota.bytes {
            return Err(Exceeded {
                message: format!(
                    "this write is {bytes} bytes, more than a signer may write in a whole window ({} bytes per {} ms)",
                    quota.bytes, quota.window_ms
                ),
                retry_after_s: None,
            });
        }
        let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        if writers.len() >= MAX_TRACKED_WRITERS && !writers.contains_key(&signer.0) {
            writers.retain(|_, w| now.saturating_duration_since(w.start) < window);
            if writers.len() >= MAX_TRACKED_WRITERS {
                let oldest = writers.values().map(|w| w.start).min().unwrap_or(now);
                return Err(Exceeded {
                    message: format!(
                        "{MAX_TRACKED_WRITERS} signers are writing in this window; retry when the oldest window ends"
                    ),
                    retry_after_s: retry(oldest),
                });
            }
        }
        let w = writers.entry(signer.0).or_insert(Window {
            start: now,
            records: 0,
            bytes: 0,
        });
        if now.saturating_duration_since(w.start) >= window {
            *w = Window {
                start: now,
                records: 0,
                bytes: 0,
            };
        }
        if w.records >= quota.records || w.bytes.saturating_add(bytes) > quota.bytes {
            return Err(Exceeded {
                message: format!(
                    "signer {signer} has written {} records and {} bytes in this window; the quota is {} records and {} bytes per {} ms",
                    w.records, w.bytes, quota.records, quota.bytes, quota.window_ms
                ),
                retry_after_s: retry(w.start),
            });
        }
        w.records += 1;
        w.bytes = w.bytes.saturating_add(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_records_and_bytes_per_signer_and_window() {
        let q = Quotas::default();
        let quota = WriteQuota {
            records: 3,
            bytes: 100,
            window_ms: 1000,
        };
        let (a, b) = (PublicKey([1; 32]), PublicKey([2; 32]));
        let t0 = Instant::now();
        for _ in 0..3 {
            q.charge(&a, 10, &quota, t0).unwrap();
        }
        let e = q.charge(&a, 10, &quota, t0).unwrap_err();
        assert_eq!(e.retry_after_s, Some(1));
        // Another signer has its own window; bytes are counted too.
        q.charge(&b, 60, &quota, t0).unwrap();
        assert!(q.charge(&b, 41, &quota, t0).is_err());
        q.charge(&b, 40, &quota, t0).unwrap();
        // Larger than a whole window: never (no Retry-After).
        assert_eq!(
            q.charge(&b, 101, &quota, t0).unwrap_err().retry_after_s,
            None
        );
        // The next window starts afresh.
        let t1 = t0 + Duration::from_millis(1000);
        q.charge(&a, 100, &quota, t1).unwrap();
        assert!(q.charge(&a, 1, &quota, t1).is_err());
    }
}
