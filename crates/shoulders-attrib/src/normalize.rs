//! Text normalisation for attribution, with a map back to the original bytes.
//!
//! Attribution compares *content*, not spelling: a copy re-contributed with CRLF line endings,
//! re-wrapped lines, changed letter case, typographic quotes or invisible characters must still
//! be recognised as a copy, and an output that a model re-wrapped must still match its source.
//! Documents and outputs are therefore matched in a normalised form ([`NORMALIZATION`]):
//!
//! 1. **Unicode NFKC**, applied per combining character sequence (a starter and the marks that
//!    follow it), so compatibility forms (ligatures, full-width letters, `…`) fold together;
//! 2. **lower case** (`char::to_lowercase`);
//! 3. **typographic variants**: curly single quotes and primes become `'`, curly double quotes
//!    `"`, hyphens and dashes (U+2010–U+2015, U+2212) `-`;
//! 4. **invisible characters** (default-ignorable code points: soft hyphen, zero-width space
//!    and joiners, bidi controls, variation selectors, BOM) are dropped;
//! 5. **whitespace**: every run of Unicode white space (spaces, tabs, CR, LF, NBSP, …) becomes
//!    one ASCII space.
//!
//! The result is valid UTF-8 (so it never contains the index's `0xFF` separator).
//!
//! [`OffsetMap`] maps each normalised byte back to the original: spans are found in normalised
//! text and shown in the original bytes. A run of the map is *linear* (normalised and original
//! bytes correspond one to one, as for ASCII letters or a single space for a single newline)
//! or *clamped* (every normalised byte of the run maps to the start of the original sequence
//! that produced it: a collapsed whitespace run, a character whose folded form has another
//! length). Plain ASCII prose needs one run per document plus two per collapsed whitespace run.

use unicode_normalization::char::canonical_combining_class;
use unicode_normalization::UnicodeNormalization;

/// Name of the normalisation, recorded in index metadata: indexes and queries must agree.
pub const NORMALIZATION: &str = "nfkc-lower-typo-ws/v1";

/// One run of an [`OffsetMap`]: from normalised offset `norm` on (until the next run), bytes
/// map to `orig + (x - norm)` when `linear`, else all to `orig`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRun {
    pub norm: u64,
    pub orig: u64,
    pub linear: bool,
}

/// Normalised offsets → original offsets (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetMap {
    runs: Vec<MapRun>,
}

impl OffsetMap {
    /// A map from its runs (sorted by `norm`, strictly increasing).
    pub fn from_runs(runs: Vec<MapRun>) -> Self {
        debug_assert!(runs.windows(2).all(|w| w[0].norm < w[1].norm));
        OffsetMap { runs }
    }

    pub fn runs(&self) -> &[MapRun] {
        &self.runs
    }

    /// The original offset of normalised offset `x`.
    pub fn orig(&self, x: u64) -> u64 {
        orig_in(&self.runs, x)
    }
}

/// [`OffsetMap::orig`] over a slice of runs (sorted by `norm`).
pub fn orig_in(runs: &[MapRun], x: u64) -> u64 {
    let i = runs.partition_point(|r| r.norm <= x);
    match i.checked_sub(1).map(|i| runs[i]) {
        Some(r) if r.linear => r.orig + (x - r.norm),
        Some(r) => r.orig,
        None => x,
    }
}

/// The original byte range of the normalised range `[start, end)`: from the original start of
/// `start` to the original start of `end` (`orig_end` when `end` is the end of the text).
pub fn orig_range(
    runs: &[MapRun],
    start: u64,
    end: u64,
    norm_len: u64,
    orig_end: u64,
) -> (u64, u64) {
    let s = orig_in(runs, start);
    let e = if end >= norm_len {
        orig_end
    } else {
        orig_in(runs, end)
    };
    (s, e.max(s))
}

/// Normalises documents one after another into one buffer, recording the map.
///
/// Offsets in the map are global: `out` positions and original positions counted from
/// `orig_base` of each call, so many documents can share one map (as in an index, where the
/// original documents are concatenated the same way).
pub struct Normalizer<'a> {
    pub out: &'a mut Vec<u8>,
    pub runs: &'a mut Vec<MapRun>,
}

fn is_ignorable(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

fn typographic(c: char) -> Option<char> {
    match c {
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' => Some('\''),
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' => Some('"'),
        '\u{2010}'..='\u{2015}' | '\u{2212}' => Some('-'),
        _ => None,
    }
}

impl Normalizer<'_> {
    /// Append the normalised form of `text`, whose first byte is original offset `orig_base`.
    /// Whitespace runs never continue across calls (each call is one document).
    pub fn push(&mut self, text: &str, orig_base: u64) {
        let bytes = text.as_bytes();
        let mut last_space = false;
        // Where the current run predicts the next original offset (None: start a new run).
        let mut predicted: Option<u64> = None;
        let mut i = 0usize;
        let mut folded = String::new();
        while i < bytes.len() {
            let b = bytes[i];
            // Fast path: an ASCII byte not followed by a combining mark.
            if b.is_ascii() && bytes.get(i + 1).is_none_or(|n| n.is_ascii()) {
                let at = orig_base + i as u64;
                if b.is_ascii_whitespace() || b == 0x0B {
                    // A run of ASCII white space (other white space goes the slow way).
                    let mut j = i + 1;
                    while j < bytes.len() && (bytes[j].is_ascii_whitespace() || bytes[j] == 0x0B) {
                        j += 1;
                    }
                    // A run followed by a non-ASCII space joins it on the slow path.
                    self.space(at, (j - i) as u64, &mut last_space, &mut predicted);
                    i = j;
                    continue;
                }
                self.emit_linear(&[b.to_ascii_lowercase()], at, &mut predicted);
                last_space = false;
                i += 1;
                continue;
            }
            // A combining character sequence: this character and the marks after it.
            let start = i;
            let first = text[i..].chars().next().expect("in bounds");
            i += first.len_utf8();
            for c in text[i..].chars() {
                if canonical_combining_class(c) == 0 {
                    break;
                }
                i += c.len_utf8();
            }
            let seq = &text[start..i];
            let at = orig_base + start as u64;
            folded.clear();
            let mut had_space = false;
            let mut only_space = true;
            for c in seq.nfkc() {
                if c.is_whitespace() {
                    had_space = true;
                    continue;
                }
                if is_ignorable(c) {
                    continue;
                }
                only_space = false;
                if let Some(t) = typographic(c) {
                    folded.push(t);
                } else {
                    folded.extend(c.to_lowercase());
                }
            }
            if only_space {
                if had_space {
                    self.space(at, seq.len() as u64, &mut last_space, &mut predicted);
                }
                // An invisible character: dropped; the next byte starts a new run.
                else {
                    predicted = None;
                }
                continue;
            }
            // Rare: a compatibility form that folds to text *and* spaces; the spaces are
            // dropped so a sequence is one unit (it maps to one original position anyway).
            let _ = had_space;
            if folded.len() == seq.len() {
                self.emit_linear(folded.as_bytes(), at, &mut predicted);
            } else {
                self.runs.push(MapRun {
                    norm: self.out.len() as u64,
                    orig: at,
                    linear: false,
                });
                self.out.extend_from_slice(folded.as_bytes());
                predicted = None;
            }
            last_space = false;
        }
    }

    /// Bytes that map one to one onto the original bytes from `at`.
    fn emit_linear(&mut self, b: &[u8], at: u64, predicted: &mut Option<u64>) {
        if *predicted != Some(at) {
            self.push_run(at, true);
        }
        self.out.extend_from_slice(b);
        *predicted = Some(at + b.len() as u64);
    }

    /// A white-space run of `len` original bytes at `at`: one space, unless one was just
    /// written (runs separated only by invisible characters are one run).
    fn space(&mut self, at: u64, len: u64, last_space: &mut bool, predicted: &mut Option<u64>) {
        if *last_space {
            *predicted = None;
            return;
        }
        if len == 1 {
            self.emit_linear(b" ", at, predicted);
        } else {
            self.push_run(at, false);
            self.out.push(b' ');
            *predicted = None;
        }
        *last_space = true;
    }

    fn push_run(&mut self, orig: u64, linear: bool) {
        let norm = self.out.len() as u64;
        if let Some(last) = self.runs.last_mut() {
            if last.norm == norm {
                // Nothing was written under the previous run: replace it.
                *last = MapRun { norm, orig, linear };
                return;
            }
        }
        self.runs.push(MapRun { norm, orig, linear });
    }
}

/// A normalised text and its map back to the original.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Normalized {
    pub bytes: Vec<u8>,
    pub map: OffsetMap,
    /// Length of the original text.
    pub orig_len: u64,
}

impl Normalized {
    /// The original byte range of normalised `[start, end)`.
    pub fn orig_range(&self, start: u64, end: u64) -> (u64, u64) {
        orig_range(
            self.map.runs(),
            start,
            end,
            self.bytes.len() as u64,
            self.orig_len,
        )
    }
}

/// Normalise one text (see the module docs).
pub fn normalize(text: &str) -> Normalized {
    let mut bytes = Vec::with_capacity(text.len());
    let mut runs = Vec::new();
    Normalizer {
        out: &mut bytes,
        runs: &mut runs,
    }
    .push(text, 0);
    Normalized {
        bytes,
        map: OffsetMap::from_runs(runs),
        orig_len: text.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        String::from_utf8(normalize(s).bytes).unwrap()
    }

    #[test]
    fn trivial_edits_fold_together() {
        let base = "The Quick  brown\r\nfox — “jumps”\tover the lazy dog.";
        assert_eq!(
            n(base),
            "the quick brown fox - \"jumps\" over the lazy dog."
        );
        assert_eq!(n(&base.to_uppercase()), n(base));
        assert_eq!(n(&base.replace(' ', "\n")), n(&base.replace(' ', "  ")));
        assert_eq!(n("ﬁne\u{00A0}café"), "fine café");
        assert_eq!(n("cafe\u{301}"), "café");
        assert_eq!(n("in\u{200B}vis\u{00AD}ible"), "invisible");
        assert_eq!(n("a \u{200B} b"), "a b");
        assert_eq!(n("  lead"), " lead");
    }

    #[test]
    fn map_points_back_into_the_original() {
        let text = "Hello,\r\n\r\n  World! Ça va? ﬁn";
        let norm = normalize(text);
        let s = String::from_utf8(norm.bytes.clone()).unwrap();
        assert_eq!(s, "hello, world! ça va? fin");
        let at = s.find("world").unwrap() as u64;
        let (a, b) = norm.orig_range(at, at + 5);
        assert_eq!(&text[a as usize..b as usize], "World");
        let at = s.find("ça").unwrap() as u64;
        let (a, b) = norm.orig_range(at, at + "ça va".len() as u64);
        assert_eq!(&text[a as usize..b as usize], "Ça va");
        let at = s.find("fin").unwrap() as u64;
        let (a, b) = norm.orig_range(at, s.len() as u64);
        assert_eq!(&text[a as usize..b as usize], "ﬁn");
        // Every normalised character boundary maps to one in the original, monotonically.
        let mut last = 0;
        for x in s
            .char_indices()
            .map(|(i, _)| i as u64)
            .chain([s.len() as u64])
        {
            let (o, _) = norm.orig_range(x, x);
            assert!(text.is_char_boundary(o as usize) && o >= last, "offset {x}");
            last = o;
        }
    }

    #[test]
    fn output_is_utf8_without_separator() {
        for s in [
            "",
            "\u{10FFFF}x",
            "İstanbul",
            "ǅ",
            "\u{FF21}\u{FF22}",
            "a\u{0301}\u{0316}",
        ] {
            let b = normalize(s).bytes;
            assert!(
                std::str::from_utf8(&b).is_ok() && !b.contains(&0xFF),
                "{s:?}"
            );
        }
    }
}
