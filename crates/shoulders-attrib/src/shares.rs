//! From evidence to shares: who gets credit for an output, in integer parts per million that
//! sum to exactly 1 000 000.
//!
//! The rules, each chosen so that the cheapest attack earns nothing:
//!
//! * **Credit follows content, first contributor wins.** Evidence is counted in *windows*: every
//!   `window`-byte piece of the (normalised) output that occurs in the index. A window is
//!   credited to its **owner**, the earliest contribution holding that exact piece
//!   ([`crate::copymap`]). Copies, edited copies, chunked copies and quoted paragraphs own
//!   nothing they copied, so re-contributing someone's text, in any cut or case, takes nothing
//!   from them; and since ownership is decided by log order alone, it cannot be moved by adding
//!   documents.
//! * **Every output byte counts once, for its first contributor.** A byte covered by windows
//!   of several owners goes to the earliest of them: overlapping spans never count a byte
//!   twice, a paragraph found in several documents is credited to whoever contributed it first,
//!   and a match that runs a few bytes past old text (a copy's edge, a junction with a common
//!   word) earns only the bytes that are new.
//! * **Short runs earn nothing.** Credited bytes come in runs of one owner; a run shorter than
//!   [`MIN_RUN_BYTES`] (a few new bytes at the edge of someone else's text) or touching fewer
//!   than [`MIN_RUN_WORDS`] words is not credited. The word count matters where bytes alone
//!   mislead: one long token (an e-mail address, a URL) next to a common word is 32 bytes that
//!   word salad contributed in bulk matches by chance, and evidence of nothing.
//! * **Chance matches earn nothing.** A window is at least `window` bytes (32 by default, a
//!   fixed length: a threshold that grew with the corpus could be pushed up by junk), and a
//!   window of low-information text (fewer than [`MIN_DISTINCT_BYTES`] distinct bytes, e.g. a
//!   line of dashes) does not count.
//! * **No evidence, no payout.** An output with no credited byte has no shares at all
//!   ([`Rule::NoEvidence`]); nothing is handed out by contributed volume, so adding junk or
//!   copies can never raise anyone's share. (The money fold then pays the data pool to the
//!   model's owner.)

use std::collections::BTreeMap;

use serde::Serialize;

/// Parts per million that make a whole.
pub const PPM: u64 = 1_000_000;
/// A window with fewer distinct bytes than this is too repetitive to be evidence.
pub const MIN_DISTINCT_BYTES: usize = 8;
/// A run of output bytes credited to one owner that is shorter than this is not credited.
pub const MIN_RUN_BYTES: usize = 16;
/// A credited run must touch at least this many words (see [`words_in`]).
pub const MIN_RUN_WORDS: usize = 4;

/// Words a piece of normalised text touches: a word starts at a non-space byte after a space
/// (or at the piece's start), and every character of three or four UTF-8 bytes counts as a
/// word of its own, so scripts written without spaces (Chinese, Japanese, Thai) are not
/// penalised.
pub fn words_in(text: &[u8]) -> usize {
    let mut words = 0;
    let mut after_space = true;
    for &b in text {
        if b == b' ' {
            after_space = true;
            continue;
        }
        if b >= 0xE0 || after_space {
            words += 1;
        }
        after_space = false;
    }
    words
}

/// Split `total` over `weights` in proportion, by largest remainder (ties to the earlier key);
/// the parts sum to exactly `total`.
pub fn largest_remainder<K: Ord + Clone>(
    weights: &BTreeMap<K, u128>,
    total: u64,
) -> BTreeMap<K, u64> {
    let sum: u128 = weights.values().sum();
    assert!(sum > 0, "at least one positive weight");
    let mut out = BTreeMap::new();
    let mut remainders: Vec<(u128, K)> = Vec::with_capacity(weights.len());
    let mut given: u64 = 0;
    for (k, &w) in weights {
        let exact = w * u128::from(total);
        let floor = (exact / sum) as u64;
        given += floor;
        out.insert(k.clone(), floor);
        remainders.push((exact % sum, k.clone()));
    }
    // Larger remainder first; equal remainders go to the earlier key.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    for (_, k) in remainders.into_iter().take((total - given) as usize) {
        *out.get_mut(&k).expect("key present") += 1;
    }
    debug_assert_eq!(out.values().sum::<u64>(), total);
    out
}

/// Whether a window's bytes carry enough information to be evidence.
pub fn informative(window: &[u8]) -> bool {
    let mut seen = [false; 256];
    let mut distinct = 0;
    for &b in window {
        if !seen[b as usize] {
            seen[b as usize] = true;
            distinct += 1;
            if distinct >= MIN_DISTINCT_BYTES {
                return true;
            }
        }
    }
    false
}

/// One credited window of the output: it starts at `start` (normalised output offset) and is
/// owned by contribution `owner`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowCredit {
    pub start: usize,
    pub owner: u64,
}

/// Credit per contribution (in output bytes) from the credited windows of the normalised
/// output `text` (see the module docs), and the number of output bytes credited. `windows`
/// must be sorted by `start`, at most one per start.
pub fn byte_credit(
    windows: &[WindowCredit],
    window: usize,
    text: &[u8],
) -> (BTreeMap<u64, u128>, u64) {
    assert!(window >= 1);
    let len = text.len();
    debug_assert!(windows.windows(2).all(|w| w[0].start < w[1].start));
    // Owner of each byte: the earliest owner among the windows covering it.
    let mut owner_of: Vec<Option<u64>> = vec![None; len];
    let mut active: BTreeMap<u64, u32> = BTreeMap::new();
    let (mut add, mut remove) = (0usize, 0usize);
    for (j, slot) in owner_of.iter_mut().enumerate() {
        // Windows covering byte j start in [j + 1 - window, j].
        while add < windows.len() && windows[add].start <= j {
            *active.entry(windows[add].owner).or_insert(0) += 1;
            add += 1;
        }
        while remove < add && windows[remove].start + window <= j {
            let owner = windows[remove].owner;
            let count = active.get_mut(&owner).expect("active owner");
            *count -= 1;
            if *count == 0 {
                active.remove(&owner);
            }
            remove += 1;
        }
        *slot = active.keys().next().copied();
    }
    // Runs of one owner; short runs are not credited.
    let mut weights: BTreeMap<u64, u128> = BTreeMap::new();
    let mut credited_bytes = 0u64;
    let mut j = 0;
    while j < len {
        let owner = owner_of[j];
        let start = j;
        while j < len && owner_of[j] == owner {
            j += 1;
        }
        if let Some(o) = owner {
            if j - start >= MIN_RUN_BYTES && words_in(&text[start..j]) >= MIN_RUN_WORDS {
                *weights.entry(o).or_insert(0) += (j - start) as u128;
                credited_bytes += (j - start) as u64;
            }
        }
    }
    (weights, credited_bytes)
}

/// Which rule produced the shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Exact windows of the output found in the index.
    Spans,
    /// No exact evidence; sources retrieved for a paraphrase above the confidence threshold.
    Paraphrase,
    /// No evidence: nobody is credited.
    NoEvidence,
}

/// Shares of one output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Shares {
    pub rule: Rule,
    /// Output bytes (normalised) that earned credit.
    pub evidence_bytes: u64,
    /// Contribution → ppm (sums to exactly 1 000 000, or empty for no evidence).
    pub contributions_ppm: BTreeMap<u64, u64>,
    /// Contributor handle → ppm (sums to exactly 1 000 000, or empty for no evidence).
    pub contributors_ppm: BTreeMap<String, u64>,
}

impl Shares {
    /// No evidence: nobody is credited.
    pub fn none() -> Self {
        Shares {
            rule: Rule::NoEvidence,
            evidence_bytes: 0,
            contributions_ppm: BTreeMap::new(),
            contributors_ppm: BTreeMap::new(),
        }
    }

    /// Shares in proportion to `weights` (contribution → weight); contributors looked up with
    /// `contributor_of`. All-zero or empty weights give [`Shares::none`].
    pub fn from_weights(
        rule: Rule,
        evidence_bytes: u64,
        weights: &BTreeMap<u64, u128>,
        contributor_of: impl Fn(u64) -> String,
    ) -> Self {
        let weights: BTreeMap<u64, u128> = weights
            .iter()
            .filter(|(_, &w)| w > 0)
            .map(|(&c, &w)| (c, w))
            .collect();
        if weights.is_empty() {
            return Shares::none();
        }
        let contributions_ppm = largest_remainder(&weights, PPM);
        let mut contributors_ppm: BTreeMap<String, u64> = BTreeMap::new();
        for (c, ppm) in &contributions_ppm {
            *contributors_ppm.entry(contributor_of(*c)).or_default() += ppm;
        }
        contributors_ppm.retain(|_, ppm| *ppm > 0);
        let mut contributions_ppm = contributions_ppm;
        contributions_ppm.retain(|_, ppm| *ppm > 0);
        assert_eq!(contributors_ppm.values().sum::<u64>(), PPM);
        assert_eq!(contributions_ppm.values().sum::<u64>(), PPM);
        Shares {
            rule,
            evidence_bytes,
            contributions_ppm,
            contributors_ppm,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_remainder_conserves_and_is_deterministic() {
        let w: BTreeMap<u32, u128> = [(1, 1), (2, 1), (3, 1)].into();
        let out = largest_remainder(&w, PPM);
        assert_eq!(out.values().sum::<u64>(), PPM);
        assert_eq!(out[&1], 333_334);
        assert_eq!(out[&2], 333_333);
    }

    #[test]
    fn each_byte_counts_once_for_its_first_contributor() {
        // Windows of 20 bytes: owner 9 at 0..=9 (bytes 0..29), owner 7 at 10..=29 (bytes
        // 10..49), owner 9 again at 45 (bytes 45..65), owner 3 at 60 (bytes 60..80).
        let w = |start, owner| WindowCredit { start, owner };
        let mut windows: Vec<WindowCredit> = (0..10).map(|s| w(s, 9)).collect();
        windows.extend((10..30).map(|s| w(s, 7)));
        windows.push(w(45, 9));
        windows.push(w(60, 3));
        let text = "so many words in this text ".repeat(4);
        let (weights, bytes) = byte_credit(&windows, 20, &text.as_bytes()[..100]);
        // 0..10: 9 alone (10 bytes, too short); 10..49: 7, earlier than 9; 49..60: 9 (11 bytes,
        // too short); 60..80: 3.
        assert_eq!(weights.get(&9), None);
        assert_eq!(weights[&7], 39);
        assert_eq!(weights[&3], 20);
        assert_eq!(bytes, 59);
    }

    #[test]
    fn runs_of_few_words_are_not_evidence() {
        assert_eq!(words_in(b" <someone@example.org> use"), 2);
        assert_eq!(words_in(b"shall i compare thee"), 4);
        assert_eq!(
            words_in(b"ompare thee to"),
            3,
            "a partial first word counts"
        );
        assert_eq!(
            words_in("春眠不覺曉".as_bytes()),
            5,
            "each CJK character is a word"
        );
        // One 33-byte run of two words: long enough in bytes, not in words.
        let text = b" <nicolas.example@example.fr> use";
        let windows: Vec<WindowCredit> = (0..2)
            .map(|start| WindowCredit { start, owner: 4 })
            .collect();
        assert_eq!(byte_credit(&windows, 32, text), (BTreeMap::new(), 0));
        let text = b"shall i compare thee to a summer's";
        let (weights, bytes) = byte_credit(&windows, 32, text);
        assert_eq!((weights[&4], bytes), (33, 33));
    }

    #[test]
    fn low_information_windows_are_not_evidence() {
        assert!(!informative(b"--------------------------------"));
        assert!(!informative(b"ab ab ab ab ab ab ab ab ab ab ab "));
        assert!(informative(b"shall i compare thee to a summer"));
    }
}
