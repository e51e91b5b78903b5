//! An ∞-gram language model over an [`Index`]: text generation that needs no weights and no
//! network, and whose every character is copied from a contributed document, so an answer's
//! sources can always be traced.
//!
//! # Model
//!
//! At each step the context is the prompt followed by everything generated so far. The model
//! finds the **longest suffix** of the context (at most [`GenerateParams::max_suffix_bytes`]
//! bytes) that occurs in the index followed by something, picks **one of its occurrences
//! uniformly at random** (so a continuation is drawn with probability proportional to its
//! count, exactly infini-gram's ∞-gram estimate), and appends what follows that occurrence:
//!
//! * the separator `0xFF` (end of a document) ends the generation (`FinishReason::Stop`);
//! * otherwise one whole UTF-8 character is appended (1–4 bytes, copied from the document), so
//!   the output is always valid UTF-8.
//!
//! A suffix shorter than the context's last character could end inside a character and be
//! followed by a continuation byte; such lengths are skipped (the empty suffix, which samples
//! from the whole index, is the last resort). Since the index holds only valid UTF-8, every
//! other length is followed by a character start or a separator.
//!
//! # Cost
//!
//! If a suffix of length `L` has a continuation now, the suffix of length `L - k` had one a
//! step earlier (`k` = bytes appended), so the search starts at `max(previous L, 3) + k` and
//! goes down: at most `max_suffix_bytes` binary searches of at most `max_suffix_bytes` bytes
//! per step, `O(max_suffix_bytes² · log N)` in the worst case, usually a handful.
//!
//! # Determinism
//!
//! The only randomness is a ChaCha8 stream seeded with [`GenerateParams::seed`]: the same
//! index, prompt and parameters always give the same text.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::index::{Hit, Index, DOC_SEP};

/// Longest suffix of the context searched, by default (bytes).
pub const DEFAULT_MAX_SUFFIX_BYTES: usize = 64;
/// Upper bound on [`GenerateParams::max_suffix_bytes`].
pub const MAX_SUFFIX_BYTES_LIMIT: usize = 1024;
/// Upper bound on [`GenerateParams::max_tokens`] (bytes of output).
pub const MAX_GENERATE_TOKENS: usize = 1 << 16;
/// Most stop sequences.
pub const MAX_STOP_SEQUENCES: usize = 8;
/// Longest stop sequence, in bytes.
pub const MAX_STOP_BYTES: usize = 256;
/// Most draws of an occurrence per suffix length in a step.
const MAX_DRAWS: usize = 64;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateParams {
    /// Most output bytes (tokens are bytes); a character that would pass it is not added.
    pub max_tokens: usize,
    /// Seed of the sampler.
    pub seed: u64,
    /// Generation stops as soon as the output ends with one of these (which is cut off).
    pub stop: Vec<String>,
    /// Longest context suffix looked up, in bytes.
    pub max_suffix_bytes: usize,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 256,
            seed: 0,
            stop: Vec::new(),
            max_suffix_bytes: DEFAULT_MAX_SUFFIX_BYTES,
        }
    }
}

/// Why generation ended (the OpenAI `finish_reason` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The sampled occurrence ended its document, or a stop sequence was produced.
    Stop,
    /// `max_tokens` was reached.
    Length,
}

impl FinishReason {
    /// The OpenAI API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One generated character and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The character appended (one UTF-8 character).
    pub text: String,
    /// Length of the context suffix that was matched (0: sampled from the whole index).
    pub suffix_len: usize,
    /// Occurrences of that suffix in the index.
    pub occurrences: u64,
    /// The document occurrence the character was copied from.
    pub source: Option<Hit>,
}

/// The result of [`generate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The output (valid UTF-8; a matched stop sequence is removed).
    pub text: String,
    pub finish_reason: FinishReason,
    /// Every step, in order (those that produced a stop sequence's first characters included).
    pub steps: Vec<Step>,
}

/// Invalid parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    #[error("{0}")]
    Params(String),
}

impl GenerateError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        "E_GENERATE_PARAMS"
    }
}

fn uniform(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    assert!(n > 0);
    // Rejection sampling: exactly uniform.
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let x = rng.next_u64();
        if x < zone {
            return x % n;
        }
    }
}

/// Bytes of the UTF-8 character whose first byte is `b` (1 for anything that is not a lead).
fn char_len(b: u8) -> usize {
    match b {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    }
}

fn is_continuation(b: u8) -> bool {
    (0x80..0xC0).contains(&b)
}

/// Length in bytes of the last character of UTF-8 `s` (0 when empty).
fn last_char_len(s: &[u8]) -> usize {
    s.iter()
        .rev()
        .position(|&b| !is_continuation(b))
        .map_or(0, |p| p + 1)
}

/// Generate a continuation of `prompt` (see the module docs).
pub fn generate(
    index: &Index,
    prompt: &str,
    params: &GenerateParams,
) -> Result<Generation, GenerateError> {
    let mut gen = Generator::new(index, prompt, params)?;
    let mut steps = Vec::new();
    while let Some(step) = gen.next_step() {
        steps.push(step);
    }
    Ok(Generation {
        text: gen.output().to_string(),
        finish_reason: gen.finish_reason().unwrap_or(FinishReason::Stop),
        steps,
    })
}

/// Step-by-step generation, for streaming.
pub struct Generator<'a> {
    index: &'a Index,
    rng: ChaCha8Rng,
    /// Prompt followed by the output, in the index's form (normalised for an attribution
    /// index): what suffixes are matched against.
    context: Vec<u8>,
    /// The output, in the documents' original bytes.
    output: String,
    params: GenerateParams,
    prev_suffix: usize,
    finished: Option<FinishReason>,
}

impl<'a> Generator<'a> {
    pub fn new(
        index: &'a Index,
        prompt: &str,
        params: &GenerateParams,
    ) -> Result<Self, GenerateError> {
        if params.max_tokens > MAX_GENERATE_TOKENS {
            return Err(GenerateError::Params(format!(
                "max_tokens {} is over the limit {MAX_GENERATE_TOKENS}",
                params.max_tokens
            )));
        }
        if params.max_suffix_bytes > MAX_SUFFIX_BYTES_LIMIT {
            return Err(GenerateError::Params(format!(
                "max_suffix_bytes {} is over the limit {MAX_SUFFIX_BYTES_LIMIT}",
                params.max_suffix_bytes
            )));
        }
        if params.stop.len() > MAX_STOP_SEQUENCES {
            return Err(GenerateError::Params(format!(
                "{} stop sequences; at most {MAX_STOP_SEQUENCES}",
                params.stop.len()
            )));
        }
        if params
            .stop
            .iter()
            .any(|s| s.is_empty() || s.len() > MAX_STOP_BYTES)
        {
            return Err(GenerateError::Params(format!(
                "stop sequences must be 1 to {MAX_STOP_BYTES} bytes"
            )));
        }
        let context = if index.window().is_some() {
            crate::normalize::normalize(prompt).bytes
        } else {
            prompt.as_bytes().to_vec()
        };
        Ok(Generator {
            index,
            rng: ChaCha8Rng::seed_from_u64(params.seed),
            prev_suffix: context.len(),
            context,
            output: String::new(),
            params: params.clone(),
            finished: if params.max_tokens == 0 {
                Some(FinishReason::Length)
            } else {
                None
            },
        })
    }

    /// The output so far (a produced stop sequence is already cut off).
    pub fn output(&self) -> &str {
        &self.output
    }

    /// Why generation ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finished
    }

    /// Appends one character and returns it, or `None` once generation has ended. A step that
    /// completes a stop sequence ends the generation and is not returned; the stop sequence's
    /// earlier characters were already returned, so a streaming caller that must not show a stop
    /// sequence sends [`Generator::output`] once generation has ended.
    pub fn next_step(&mut self) -> Option<Step> {
        loop {
            if self.finished.is_some() {
                return None;
            }
            match self.step() {
                // A normalised character that adds no original bytes (the first half of a
                // folded ligature, say): keep going.
                Some(step) if step.text.is_empty() => continue,
                other => return other,
            }
        }
    }

    fn step(&mut self) -> Option<Step> {
        let text = self.index.tokens();
        let n = text.len() as u64;
        let ctx = self.context.as_slice();
        let min_len = last_char_len(ctx).max(1);
        let start = self
            .prev_suffix
            .min(self.params.max_suffix_bytes)
            .min(ctx.len());
        let mut chosen = None;
        for len in (min_len..=start).rev() {
            let suffix = &ctx[ctx.len() - len..];
            let (lo, hi) = self.index.rank_range(suffix);
            if lo >= hi {
                continue;
            }
            // Only the occurrence at the very end of the token array lacks a continuation.
            let valid = (hi - lo) - u64::from(text.ends_with(suffix));
            if valid == 0 {
                continue;
            }
            // Draw until an occurrence has a continuation: all but at most one have, so on a
            // consistent index each draw fails with probability at most 1/2 and [`MAX_DRAWS`]
            // all fail with probability at most 2^-64; a corrupt suffix array (pointers
            // outside the token array) makes this suffix length be skipped, not loop forever.
            let Some(pos) = (0..MAX_DRAWS)
                .map(|_| self.index.position(lo + uniform(&mut self.rng, hi - lo)))
                .find(|&pos| pos.saturating_add(len as u64) < n)
            else {
                continue;
            };
            chosen = Some((len, hi - lo, pos + len as u64));
            break;
        }
        let (suffix_len, occurrences, mut at) = chosen.unwrap_or_else(|| {
            // The empty suffix: any position of the index, moved to the next character start.
            let mut at = self.index.position(uniform(&mut self.rng, n));
            while (at as usize) < text.len() && is_continuation(text[at as usize]) {
                at += 1;
            }
            (0, n, at)
        });
        if at >= n || text[at as usize] == DOC_SEP {
            self.finished = Some(FinishReason::Stop);
            return None;
        }
        let width = char_len(text[at as usize]).min(text.len() - at as usize);
        let bytes = &text[at as usize..at as usize + width];
        let original = self.index.original_bytes(at, width as u64);
        let (Ok(_), Ok(ch)) = (std::str::from_utf8(bytes), std::str::from_utf8(original)) else {
            // Unreachable for an index of valid UTF-8; end rather than emit invalid text.
            self.finished = Some(FinishReason::Stop);
            return None;
        };
        if self.output.len() + ch.len() > self.params.max_tokens {
            self.finished = Some(FinishReason::Length);
            return None;
        }
        let source = self.index.locate_position(at);
        let ch = ch.to_string();
        self.context.extend_from_slice(bytes);
        self.output.push_str(&ch);
        self.prev_suffix = suffix_len.max(3) + width;
        at += width as u64;
        debug_assert!(at <= n);
        if let Some(stop) = self
            .params
            .stop
            .iter()
            .find(|s| self.output.ends_with(s.as_str()))
        {
            let cut = self.output.len() - stop.len();
            self.output.truncate(cut);
            self.finished = Some(FinishReason::Stop);
            return None;
        }
        if self.output.len() == self.params.max_tokens {
            self.finished = Some(FinishReason::Length);
        }
        Some(Step {
            text: ch,
            suffix_len,
            occurrences,
            source,
        })
    }
}
