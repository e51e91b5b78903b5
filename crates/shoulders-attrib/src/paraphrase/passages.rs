//! Passage splitting: byte ranges of the original document (see the module docs of
//! [`super`]).

use std::ops::Range;

use super::{MAX_PASSAGE_BYTES, MIN_PASSAGE_BYTES};

fn is_blank(line: &str) -> bool {
    line.chars().all(char::is_whitespace)
}

/// `[start, end)` of `text` trimmed of whitespace (empty range at `end` if all whitespace).
fn trim(text: &str, start: usize, end: usize) -> (usize, usize) {
    let s = &text[start..end];
    let lead = s.len() - s.trim_start().len();
    let trail = s.len() - s.trim_end().len();
    if lead == s.len() {
        return (end, end);
    }
    (start + lead, end - trail)
}

/// Paragraphs of `text`: maximal runs of non-blank lines, trimmed.
fn paragraphs(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let (start, end) = (pos, pos + line.len());
        pos = end;
        if is_blank(line) {
            if let Some(p) = current.take() {
                out.push(p);
            }
        } else {
            current = Some(match current {
                Some((s, _)) => (s, end),
                None => (start, end),
            });
        }
    }
    if let Some(p) = current {
        out.push(p);
    }
    out.into_iter()
        .map(|(s, e)| trim(text, s, e))
        .filter(|(s, e)| s < e)
        .collect()
}

/// Cuts `[start, end)` of `text` into pieces of at most [`MAX_PASSAGE_BYTES`] and about equal
/// length: each cut is made at the whitespace nearest to `start + remaining / pieces_left`
/// within the cap, preferring the end of a sentence (after `.`, `!`, `?`, `;` or `:`) when one
/// lies within a quarter of the cap from that target; a single word longer than the cap is cut
/// at the last character boundary before it.
fn cap(text: &str, mut start: usize, end: usize, out: &mut Vec<Range<usize>>) {
    while end - start > MAX_PASSAGE_BYTES {
        let remaining = end - start;
        let target = start + remaining / remaining.div_ceil(MAX_PASSAGE_BYTES);
        let mut limit = start + MAX_PASSAGE_BYTES;
        while !text.is_char_boundary(limit) {
            limit -= 1;
        }
        let (mut best_ws, mut best_sentence): (Option<usize>, Option<usize>) = (None, None);
        let mut prev: Option<char> = None;
        for (i, c) in text[start..limit].char_indices() {
            let at = start + i;
            if i > 0 && c.is_whitespace() {
                let closer =
                    |b: Option<usize>| b.is_none_or(|b| at.abs_diff(target) < b.abs_diff(target));
                if closer(best_ws) {
                    best_ws = Some(at);
                }
                if matches!(prev, Some('.' | '!' | '?' | ';' | ':')) && closer(best_sentence) {
                    best_sentence = Some(at);
                }
            }
            prev = Some(c);
        }
        let cut = match (best_sentence, best_ws) {
            (Some(s), _) if s.abs_diff(target) <= MAX_PASSAGE_BYTES / 4 => s,
            (_, Some(w)) => w,
            _ => limit,
        };
        let (s, e) = trim(text, start, cut);
        if s < e {
            out.push(s..e);
        }
        let (next, _) = trim(text, cut, end);
        start = next;
    }
    if start < end {
        out.push(start..end);
    }
}

/// The passages of a document, as byte ranges of `text` (see the module docs): in order, not
/// overlapping, non-empty, trimmed, at most [`MAX_PASSAGE_BYTES`] long, on UTF-8 boundaries.
pub fn split_passages(text: &str) -> Vec<Range<usize>> {
    let mut packed: Vec<(usize, usize)> = Vec::new();
    for (s, e) in paragraphs(text) {
        match packed.last_mut() {
            Some(last)
                if last.1 - last.0 < MIN_PASSAGE_BYTES
                    && e - s < MIN_PASSAGE_BYTES
                    && e - last.0 <= MAX_PASSAGE_BYTES =>
            {
                last.1 = e;
            }
            _ => packed.push((s, e)),
        }
    }
    let mut out = Vec::with_capacity(packed.len());
    for (s, e) in packed {
        cap(text, s, e, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Checks the documented invariants of `split_passages`.
    fn check_passages(text: &str) {
        let passages = split_passages(text);
        let mut prev_end = 0;
        for r in &passages {
            assert!(r.start < r.end, "non-empty: {r:?}");
            assert!(r.start >= prev_end, "in order, not overlapping: {r:?}");
            assert!(r.end - r.start <= MAX_PASSAGE_BYTES, "capped: {r:?}");
            assert!(text.is_char_boundary(r.start) && text.is_char_boundary(r.end));
            let p = &text[r.clone()];
            assert_eq!(p, p.trim(), "trimmed: {p:?}");
            prev_end = r.end;
        }
        // Every non-whitespace character of the text is in exactly one passage.
        let covered: usize = passages
            .iter()
            .map(|r| {
                text[r.clone()]
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .count()
            })
            .sum();
        assert_eq!(
            covered,
            text.chars().filter(|c| !c.is_whitespace()).count(),
            "no text lost"
        );
    }

    #[test]
    fn passages_break_at_blank_lines_and_map_back() {
        let first = "First paragraph, long enough to stand on its own as a passage of \
                     this document because it has well over two hundred bytes of text in \
                     it: it goes on and on about nothing in particular, then a little \
                     more, and ends here.";
        let second = "Second paragraph, also long enough to be a passage by itself, since \
                      it too runs past the packing size of two hundred bytes by rambling \
                      about the weather, the sea, the hills, and the long road home.";
        let text = format!("\n  {first}\n \t\n\n{second}\r\n");
        let p = split_passages(&text);
        assert_eq!(p.len(), 2);
        assert_eq!(&text[p[0].clone()], first);
        assert_eq!(&text[p[1].clone()], second);
    }

    #[test]
    fn short_paragraphs_pack_long_ones_do_not() {
        let heading = "OPTIONS";
        let opt = "-a, --all\n       do not ignore entries starting with .";
        let long = "x".repeat(250);
        let text = format!("{heading}\n\n{opt}\n\n{long}\n");
        let p = split_passages(&text);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(&text[p[0].clone()], format!("{heading}\n\n{opt}"));
        assert_eq!(&text[p[1].clone()], long);
    }

    #[test]
    fn long_paragraphs_are_cut_evenly_at_sentence_ends() {
        let sentence = "The quick brown fox jumps over the lazy dog near the river bank. ";
        let text = sentence.repeat(15); // 975 bytes, one paragraph
        let p = split_passages(&text);
        assert_eq!(p.len(), 2, "{p:?}");
        for r in &p {
            assert!(text[r.clone()].ends_with('.'), "{:?}", &text[r.clone()]);
            assert!(r.end - r.start > 300, "about equal halves: {r:?}");
        }
        check_passages(&text);
    }

    #[test]
    fn words_longer_than_the_cap_are_cut_on_char_boundaries() {
        let text = "é".repeat(1000); // 2000 bytes, no whitespace
        let p = split_passages(&text);
        assert!(p.len() >= 4);
        check_passages(&text);
        let joined: String = p.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(joined, text);
    }

    #[test]
    fn empty_and_blank_documents_have_no_passage() {
        assert!(split_passages("").is_empty());
        assert!(split_passages(" \n\t\r\n \u{3000}\n").is_empty());
    }

    proptest! {
        #[test]
        fn passages_hold_their_invariants(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("\n".to_string()),
                    Just("\n\n".to_string()),
                    Just(" \t\n  \n".to_string()),
                    Just(". ".to_string()),
                    "[a-z]{1,12}",
                    "[a-zé日本 ]{1,30}",
                    "[a-z]{700,900}",
                    Just("\u{2028}\u{3000}".to_string()),
                ],
                0..200,
            )
        ) {
            let text: String = parts.concat();
            check_passages(&text);
        }
    }
}
