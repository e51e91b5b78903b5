//! The copy map: who contributed each piece of content first.
//!
//! Credit follows content, not documents. Content is cut into **windows** of `window` bytes of
//! normalised text (every start position inside a document whose window does not cross the
//! document's end). The **owner** of a window is the earliest document (lowest ordinal = lowest
//! log index, since documents are indexed in log order) in which that exact window occurs.
//! A document's own new content is owned by itself; every window it shares with an earlier
//! document — a copy, an edited copy (the text is normalised first), a chunk of an earlier
//! document, a quoted paragraph — is owned by that earlier document, however it was re-cut or
//! padded. This is the suffix-array deduplication of training corpora (Lee et al., 2022,
//! "Deduplicating Training Data Makes Language Models Better") turned into an ownership map.
//!
//! **Computation**, `O(n)` after the suffix array: suffixes whose first `window` bytes are equal
//! are contiguous in the suffix array, and two neighbours share them exactly when their LCP is
//! at least `window`. One pass over the ranks groups them (LCP from libsais' PLCP array:
//! `lcp[r] = plcp[sa[r]]`), takes the smallest document in each group, and writes it for every
//! position of the group. The owners are written over the PLCP array in place (each position's
//! PLCP value is read once, at its rank, before its group closes and overwrites it), so the
//! pass needs no memory beyond the text, the suffix array and the PLCP array.
//!
//! **Storage**: owners are run-length encoded in position order ([`OwnerRun`]): one run per
//! document of new content plus one per copied region.

/// Owner of the windows starting at positions `[pos, next run's pos)` (only positions where a
/// full window starts are meaningful).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerRun {
    pub pos: u64,
    /// Document ordinal of the owner.
    pub doc: u32,
}

/// The owner of the window starting at `pos`.
pub fn owner_at(runs: &[OwnerRun], pos: u64) -> Option<u32> {
    let i = runs.partition_point(|r| r.pos <= pos);
    i.checked_sub(1).map(|i| runs[i].doc)
}

/// Per-document window counts from the copy map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocWindows {
    /// Windows that start in the document.
    pub windows: u64,
    /// Of those, windows the document was first to contribute.
    pub own: u64,
}

/// The copy map of one index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CopyMap {
    pub runs: Vec<OwnerRun>,
    /// Indexed by document ordinal.
    pub docs: Vec<DocWindows>,
}

/// A suffix-array word (libsais gives `i32` up to 2 GiB of text, `i64` above). The PLCP array's
/// words are reused to hold packed per-position facts, then owners, so both widths carry at
/// least 32 bits.
pub trait SaWord: Copy {
    fn to_u64(self) -> u64;
    /// The low 32 bits, as stored.
    fn bits(self) -> u32;
    fn from_bits(v: u32) -> Self;
}

impl SaWord for i32 {
    fn to_u64(self) -> u64 {
        self as u32 as u64
    }
    fn bits(self) -> u32 {
        self as u32
    }
    fn from_bits(v: u32) -> Self {
        v as i32
    }
}

impl SaWord for i64 {
    fn to_u64(self) -> u64 {
        self as u64
    }
    fn bits(self) -> u32 {
        self as u32
    }
    fn from_bits(v: u32) -> Self {
        i64::from(v)
    }
}

/// Marks a position where no full window starts (near a document's end, or a separator).
const NO_WINDOW: u32 = u32::MAX;
/// Most documents a copy map handles: the document ordinal shares a 32-bit word with two flags.
pub const MAX_DOCS: usize = 1 << 30;
/// Packed flag: a full window starts at this position.
const FULL: u32 = 0b10;
/// Packed flag: the suffix here shares at least a window with its suffix-array predecessor.
const SHARES: u32 = 0b01;

/// Compute the copy map of `text` (the token array: `0xFF` before each document, documents in
/// log order, starting at `offsets`), given its suffix array `sa` and PLCP array `plcp`
/// (overwritten). `window` ≥ 1; at most [`MAX_DOCS`] documents.
///
/// Three passes, two of them sequential: (1) over positions, pack each position's document,
/// whether a full window starts there and whether its LCP reaches `window` into its PLCP word;
/// (2) over ranks, group suffixes sharing a window and write each group's smallest document
/// into its positions' words (one random read and one random write per rank: the whole cost);
/// (3) over positions, run-length encode the owners and count each document's windows.
pub fn compute<O: SaWord>(
    text: &[u8],
    sa: &[O],
    plcp: &mut [O],
    offsets: &[u64],
    window: usize,
) -> CopyMap {
    let n = text.len();
    assert!(window >= 1 && sa.len() >= n && plcp.len() >= n && !offsets.is_empty());
    assert!(
        offsets.len() <= MAX_DOCS,
        "too many documents for a copy map"
    );
    let w = window as u64;
    // (1) Pack, in position order.
    let mut doc = 0usize;
    let mut end = offsets.get(1).copied().unwrap_or(n as u64);
    for (p, word) in plcp.iter_mut().take(n).enumerate() {
        let p = p as u64;
        while p >= end {
            doc += 1;
            end = offsets.get(doc + 1).copied().unwrap_or(n as u64);
        }
        let full = p != offsets[doc] && p + w <= end;
        let shares = word.to_u64() >= w;
        *word = O::from_bits(
            ((doc as u32) << 2) | if full { FULL } else { 0 } | if shares { SHARES } else { 0 },
        );
    }
    // (2) Group by window in rank order; each slot is read at its own rank, before its group
    // closes and overwrites it with the owner.
    let mut r = 0usize;
    while r < n {
        let first = plcp[sa[r].to_u64() as usize].bits();
        if first & FULL == 0 {
            plcp[sa[r].to_u64() as usize] = O::from_bits(NO_WINDOW);
            r += 1;
            continue;
        }
        let start = r;
        let mut min_doc = first >> 2;
        r += 1;
        while r < n {
            let v = plcp[sa[r].to_u64() as usize].bits();
            // Shares a window with a full-window predecessor, so its window is full too.
            if v & SHARES == 0 || v & FULL == 0 {
                break;
            }
            min_doc = min_doc.min(v >> 2);
            r += 1;
        }
        for k in start..r {
            plcp[sa[k].to_u64() as usize] = O::from_bits(min_doc);
        }
    }
    // (3) Run-length encode in position order, counting each document's windows.
    let mut runs: Vec<OwnerRun> = Vec::new();
    let mut docs = vec![DocWindows::default(); offsets.len()];
    let mut doc = 0usize;
    for (p, word) in plcp.iter().take(n).enumerate() {
        let owner = word.bits();
        if owner == NO_WINDOW {
            continue;
        }
        while doc + 1 < offsets.len() && offsets[doc + 1] <= p as u64 {
            doc += 1;
        }
        docs[doc].windows += 1;
        if owner as usize == doc {
            docs[doc].own += 1;
        }
        if runs.last().is_none_or(|r| r.doc != owner) {
            runs.push(OwnerRun {
                pos: p as u64,
                doc: owner,
            });
        }
    }
    CopyMap { runs, docs }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn build(docs: &[&str]) -> (Vec<u8>, Vec<u64>) {
        let mut text = Vec::new();
        let mut offsets = Vec::new();
        for d in docs {
            offsets.push(text.len() as u64);
            text.push(0xFF);
            text.extend_from_slice(d.as_bytes());
        }
        (text, offsets)
    }

    fn brute(text: &[u8], offsets: &[u64], w: usize) -> BTreeMap<u64, u32> {
        let n = text.len();
        let doc_of = |p: usize| offsets.partition_point(|&o| o as usize <= p) - 1;
        let full = |p: usize| {
            let d = doc_of(p);
            let end = offsets.get(d + 1).map_or(n, |&o| o as usize);
            text[p] != 0xFF && p + w <= end
        };
        let mut out = BTreeMap::new();
        for p in (0..n).filter(|&p| full(p)) {
            let win = &text[p..p + w];
            let owner = (0..n)
                .filter(|&q| full(q) && &text[q..q + w] == win)
                .map(doc_of)
                .min()
                .unwrap();
            out.insert(p as u64, owner as u32);
        }
        out
    }

    fn fast(text: &[u8], offsets: &[u64], w: usize) -> CopyMap {
        let sa = libsais::SuffixArrayConstruction::for_text(text)
            .in_owned_buffer32()
            .single_threaded()
            .run()
            .unwrap();
        let (sa, mut plcp, _) = sa
            .plcp_construction()
            .single_threaded()
            .run()
            .unwrap()
            .into_parts();
        compute(text, &sa, &mut plcp, offsets, w)
    }

    #[test]
    fn owners_match_brute_force() {
        let docs = [
            "the licence paragraph applies to all files here",
            "novel words then the licence paragraph applies to all files",
            "copy: the licence paragraph applies to all files here",
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "xaaaaaaaaaaa",
            "",
            "short",
            "novel words then something else",
        ];
        let (text, offsets) = build(&docs);
        for w in [1usize, 3, 8, 16] {
            let map = fast(&text, &offsets, w);
            for (p, owner) in brute(&text, &offsets, w) {
                assert_eq!(owner_at(&map.runs, p), Some(owner), "w {w} pos {p}");
            }
        }
        let map = fast(&text, &offsets, 8);
        // The first document owns all of its windows; the third copies all of them (and " the
        // lic", which the second document had first), and owns only what starts with "copy:".
        assert_eq!(map.docs[0].own, map.docs[0].windows);
        assert_eq!(
            map.docs[2].windows - map.docs[2].own,
            map.docs[0].windows + 1
        );
        assert_eq!(map.docs[2].own, "copy:".len() as u64);
    }

    proptest::proptest! {
        #[test]
        fn random_corpora_match_brute_force(
            docs in proptest::collection::vec("[ab ]{0,40}", 1..8),
            w in 1usize..10,
        ) {
            let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
            let (text, offsets) = build(&refs);
            let map = fast(&text, &offsets, w);
            for (p, owner) in brute(&text, &offsets, w) {
                proptest::prop_assert_eq!(owner_at(&map.runs, p), Some(owner));
            }
        }
    }
}
