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

/// A suffix-array word (libsais gives `i32` up to 2 GiB of text, `i64` above).
pub trait SaWord: Copy {
    fn to_u64(self) -> u64;
    fn from_owner(doc: u32) -> Self;
    fn owner(self) -> u32;
}

impl SaWord for i32 {
    fn to_u64(self) -> u64 {
        self as u32 as u64
    }
    fn from_owner(doc: u32) -> Self {
        doc as i32
    }
    fn owner(self) -> u32 {
        self as u32
    }
}

impl SaWord for i64 {
    fn to_u64(self) -> u64 {
        self as u64
    }
    fn from_owner(doc: u32) -> Self {
        i64::from(doc)
    }
    fn owner(self) -> u32 {
        self as u32
    }
}

/// Marks a position where no full window starts (near a document's end, or a separator).
const NO_WINDOW: u32 = u32::MAX;

/// Maps positions to documents quickly: the document at the start of each 4 KiB block, then a
/// binary search among the few documents that start inside the block.
struct DocLookup<'a> {
    offsets: &'a [u64],
    block_first: Vec<u32>,
}

const BLOCK_SHIFT: u32 = 12;

impl<'a> DocLookup<'a> {
    fn new(offsets: &'a [u64], n: u64) -> Self {
        let blocks = (n >> BLOCK_SHIFT) as usize + 1;
        let mut block_first = Vec::with_capacity(blocks);
        let mut d = 0usize;
        for b in 0..blocks {
            let start = (b as u64) << BLOCK_SHIFT;
            while d + 1 < offsets.len() && offsets[d + 1] <= start {
                d += 1;
            }
            block_first.push(d as u32);
        }
        DocLookup {
            offsets,
            block_first,
        }
    }

    fn doc(&self, pos: u64) -> usize {
        let b = (pos >> BLOCK_SHIFT) as usize;
        let lo = self.block_first[b] as usize;
        let hi = self
            .block_first
            .get(b + 1)
            .map_or(self.offsets.len(), |&x| x as usize + 1);
        lo + self.offsets[lo..hi].partition_point(|&o| o <= pos) - 1
    }
}

/// Compute the copy map of `text` (the token array: `0xFF` before each document, documents in
/// log order, starting at `offsets`), given its suffix array `sa` and PLCP array `plcp`
/// (overwritten). `window` ≥ 1.
pub fn compute<O: SaWord>(
    text: &[u8],
    sa: &[O],
    plcp: &mut [O],
    offsets: &[u64],
    window: usize,
) -> CopyMap {
    let n = text.len();
    assert!(window >= 1 && sa.len() >= n && plcp.len() >= n && !offsets.is_empty());
    assert!(offsets.len() <= u32::MAX as usize);
    let lookup = DocLookup::new(offsets, n as u64);
    let w = window as u64;
    // `Some(doc)` when a full window starts at `p`.
    let window_doc = |p: u64| -> Option<u32> {
        if text[p as usize] == crate::index::DOC_SEP {
            return None;
        }
        let d = lookup.doc(p);
        let end = offsets.get(d + 1).copied().unwrap_or(n as u64);
        (p + w <= end).then_some(d as u32)
    };
    let mut r = 0usize;
    while r < n {
        let p = sa[r].to_u64();
        let Some(first) = window_doc(p) else {
            plcp[p as usize] = O::from_owner(NO_WINDOW);
            r += 1;
            continue;
        };
        let start = r;
        let mut min_doc = first;
        r += 1;
        while r < n {
            let q = sa[r].to_u64();
            if plcp[q as usize].to_u64() < w {
                break;
            }
            // LCP ≥ window with a full-window neighbour: this suffix shares the same window
            // (so its window is full too).
            let d = window_doc(q).expect("shares a full window");
            min_doc = min_doc.min(d);
            r += 1;
        }
        for k in start..r {
            plcp[sa[k].to_u64() as usize] = O::from_owner(min_doc);
        }
    }
    // Run-length encode in position order, counting each document's windows.
    let mut runs: Vec<OwnerRun> = Vec::new();
    let mut docs = vec![DocWindows::default(); offsets.len()];
    let mut doc = 0usize;
    for (p, word) in plcp.iter().take(n).enumerate() {
        let owner = word.owner();
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
