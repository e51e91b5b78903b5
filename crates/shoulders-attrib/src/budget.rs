//! What one attribution may spend: a step budget, a deadline and a cancellation flag.
//!
//! A span search ([`crate::index::Index::longest_matches_within`]) is `O(|output| · log N)`
//! on ordinary text, but text that repeats an indexed passage many ways can make its
//! comparisons long. Two bounds keep any one request finite, whoever wrote the text and the
//! documents: a deterministic step budget proportional to the text's length (the same text
//! against the same index always passes or always fails), and a wall-clock deadline with a
//! cancellation flag, so the search stops when the HTTP request that asked for it has timed
//! out instead of running on, unseen, on a blocking thread (issue 15: a 1 MiB copy ran ~100 s
//! past the 30 s timeout).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::index::IndexError;

/// Bytes of a comparison that count as one step (besides one step per comparison): a
/// comparison runs over 64-byte blocks with `memcmp`, so a long common prefix costs in
/// proportion to its length.
pub const STEP_BYTES: usize = 64;

/// Steps allowed per byte of the text attributed ([`Budget::for_output`]). An ordinary text
/// needs about `2 · log2(N)` comparisons per byte to re-find its carried match plus a few to
/// extend it: under 200 at any index size this crate supports (N ≤ 2^40). 2048 leaves an
/// order of magnitude for long shared prefixes (near-duplicate documents) while a 1 MiB text
/// stays under ~2·10^9 steps, a few seconds of CPU at worst.
pub const STEPS_PER_OUTPUT_BYTE: u64 = 2048;

/// Steps every search may take whatever its length (a short text against a big index).
pub const BASE_STEPS: u64 = 1 << 20;

/// Steps between two checks of the deadline and the cancellation flag (and two updates of the
/// shared progress counter): a check reads the clock, a few thousand steps take well under a
/// millisecond.
pub const CHECK_EVERY_STEPS: u64 = 4096;

/// The budget of one search. Not shared: each search gets its own; the `cancel` flag and the
/// `progress` counter are what other threads see.
#[derive(Debug, Clone)]
pub struct Budget {
    max_steps: u64,
    steps: u64,
    next_check: u64,
    deadline: Option<Instant>,
    cancel: Option<Arc<AtomicBool>>,
    progress: Option<Arc<AtomicU64>>,
}

impl Budget {
    /// No step limit, no deadline (one bounded query such as `count`).
    pub fn unlimited() -> Self {
        Budget::steps(u64::MAX)
    }

    /// At most `max_steps` steps.
    pub fn steps(max_steps: u64) -> Self {
        Budget {
            max_steps,
            steps: 0,
            next_check: CHECK_EVERY_STEPS,
            deadline: None,
            cancel: None,
            progress: None,
        }
    }

    /// The default budget for a text of `len` bytes:
    /// `BASE_STEPS + STEPS_PER_OUTPUT_BYTE · len`.
    pub fn for_output(len: usize) -> Self {
        Budget::steps(BASE_STEPS.saturating_add(STEPS_PER_OUTPUT_BYTE.saturating_mul(len as u64)))
    }

    /// Stop with `E_ATTRIBUTION_TIMEOUT` once `deadline` has passed.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Stop with `E_ATTRIBUTION_TIMEOUT` once `cancel` is set (by another thread).
    pub fn with_cancel(mut self, cancel: Arc<AtomicBool>) -> Self {
        self.cancel = Some(cancel);
        self
    }

    /// Publish the steps taken so far to `progress` at every check (to watch a search stop).
    pub fn with_progress(mut self, progress: Arc<AtomicU64>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Steps taken so far.
    pub fn used(&self) -> u64 {
        self.steps
    }

    /// The step limit.
    pub fn limit(&self) -> u64 {
        self.max_steps
    }

    /// Take `n` steps; fails when the budget is spent, the deadline passed or the search was
    /// cancelled (the last two checked every [`CHECK_EVERY_STEPS`]).
    pub fn charge(&mut self, n: u64) -> Result<(), IndexError> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.max_steps {
            return Err(IndexError::BudgetExceeded {
                limit: self.max_steps,
            });
        }
        if self.steps >= self.next_check {
            self.next_check = self.steps.saturating_add(CHECK_EVERY_STEPS);
            self.check()?;
        }
        Ok(())
    }

    /// Checks the deadline and the cancellation flag now.
    pub fn check(&self) -> Result<(), IndexError> {
        if let Some(p) = &self.progress {
            p.store(self.steps, Ordering::Relaxed);
        }
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(IndexError::Cancelled {
                steps: self.steps,
                reason: "cancelled",
            });
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(IndexError::Cancelled {
                steps: self.steps,
                reason: "deadline passed",
            });
        }
        Ok(())
    }
}
