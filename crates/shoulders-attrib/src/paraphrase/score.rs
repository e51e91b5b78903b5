//! The integer arithmetic that decides credit: fixed-point `log2` and idf, the confidence of
//! an overlap, Jaccard similarity of term sets. No floats.

use super::{Overlap, IDF_FRAC_BITS, ORDER_WEIGHT, OVERLAP_WEIGHT, PPM};

/// `a · PPM / b` rounded down, `0` when `b == 0`, capped at [`PPM`].
pub fn ratio_ppm(a: u64, b: u64) -> u32 {
    if b == 0 {
        return 0;
    }
    let r = u128::from(a) * u128::from(PPM) / u128::from(b);
    r.min(u128::from(PPM)) as u32
}

/// Fixed-point `log2(x)` with [`IDF_FRAC_BITS`] fractional bits, rounded down, for `x >= 1`
/// (`log2_fp(0) = 0`). Integer operations only: the integer part is the position of the
/// highest set bit, the fraction is read bit by bit by squaring the mantissa (kept in Q2.62).
/// Monotone: `x <= y` implies `log2_fp(x) <= log2_fp(y)`.
pub fn log2_fp(x: u64) -> u32 {
    if x == 0 {
        return 0;
    }
    let int_part = 63 - x.leading_zeros();
    const ONE: u128 = 1 << 62;
    // Mantissa x / 2^int_part in [1, 2), as Q2.62.
    let mut m: u128 = if int_part <= 62 {
        u128::from(x) << (62 - int_part)
    } else {
        u128::from(x) >> (int_part - 62)
    };
    let mut frac: u32 = 0;
    for bit in (0..IDF_FRAC_BITS).rev() {
        m = (m * m) >> 62; // in [1, 4)
        if m >= 2 * ONE {
            m >>= 1;
            frac |= 1 << bit;
        }
    }
    (int_part << IDF_FRAC_BITS) | frac
}

/// Fixed-point idf of a term found in `df` of `n` passages: `log2(n + 1) − log2(max(df, 1))`,
/// at least 0. Decreasing in `df`, increasing in `n`, at most `64 << IDF_FRAC_BITS`.
pub fn idf_fp(df: u64, n: u64) -> u32 {
    log2_fp(n.saturating_add(1)).saturating_sub(log2_fp(df.max(1)))
}

/// The confidence (ppm) of an overlap:
///
/// * `overlap = 2 · matched_weight / (query_weight + passage_weight)` (the idf-weighted Dice
///   coefficient of the two term sets: the harmonic mean of the share of the output's
///   information found in the passage and the share of the passage's found in the output, so
///   neither a short output against a long passage nor the reverse scores high);
/// * `order = shared_pairs / query_pairs` (`= overlap` when the query has no pair);
/// * `confidence = (OVERLAP_WEIGHT · overlap + ORDER_WEIGHT · order) / (OVERLAP_WEIGHT +
///   ORDER_WEIGHT)`.
///
/// Each ratio is in ppm rounded down. Integer operations only; monotone in `matched_weight`
/// and `shared_pairs`; within `0..=PPM`.
pub fn confidence_ppm(o: &Overlap) -> u32 {
    let overlap = u64::from(ratio_ppm(
        o.matched_weight.saturating_mul(2),
        o.query_weight.saturating_add(o.passage_weight),
    ));
    let order = if o.query_pairs == 0 {
        overlap
    } else {
        u64::from(ratio_ppm(
            u64::from(o.shared_pairs),
            u64::from(o.query_pairs),
        ))
    };
    let c = (OVERLAP_WEIGHT * overlap + ORDER_WEIGHT * order) / (OVERLAP_WEIGHT + ORDER_WEIGHT);
    c.min(u64::from(PPM)) as u32
}

/// Jaccard similarity (ppm) of two sorted, deduplicated term lists.
pub fn jaccard_ppm(a: &[String], b: &[String]) -> u32 {
    let (mut i, mut j, mut both) = (0, 0, 0u64);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = (a.len() + b.len()) as u64 - both;
    if union == 0 {
        return PPM;
    }
    ratio_ppm(both, union)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {

        #[test]
        fn log2_is_close_and_monotone(a in 1u64.., b in 1u64..) {
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(log2_fp(lo) <= log2_fp(hi));
            let exact = (a as f64).log2() * f64::from(1u32 << IDF_FRAC_BITS);
            let got = f64::from(log2_fp(a));
            // Rounded down, at most a few units of the last place off.
            prop_assert!(got <= exact + 1.0 && exact - got < 4.0, "{a}: {got} vs {exact}");
        }

        #[test]
        fn idf_is_monotone_and_bounded(df1 in 0u64..1 << 40, df2 in 0u64..1 << 40, n in 0u64..1 << 40) {
            let (lo, hi) = (df1.min(df2), df1.max(df2));
            prop_assert!(idf_fp(lo, n) >= idf_fp(hi, n), "rarer terms weigh more");
            prop_assert!(idf_fp(df1, n) <= idf_fp(df1, n + 1), "a bigger index weighs more");
            prop_assert!(idf_fp(df1, n) <= 64 << IDF_FRAC_BITS);
            if df1 > n {
                prop_assert_eq!(idf_fp(df1, n), 0);
            }
        }

        #[test]
        fn confidence_is_monotone_and_bounded(
            q in 0u64..1 << 40, p in 0u64..1 << 40, m in 0u64..1 << 40, dm in 0u64..1 << 30,
            qp in 0u32..10_000, sp in 0u32..10_000, dsp in 0u32..1000,
        ) {
            // A consistent overlap: matched within both totals, shared pairs within pairs.
            let m = m.min(q).min(p);
            let sp = sp.min(qp);
            let o = Overlap { query_weight: q, matched_weight: m, passage_weight: p, query_pairs: qp, shared_pairs: sp };
            let c = confidence_ppm(&o);
            prop_assert!(c <= PPM);
            let more = Overlap { matched_weight: (m + dm).min(q).min(p), shared_pairs: (sp + dsp).min(qp), ..o };
            prop_assert!(confidence_ppm(&more) >= c);
        }
    }

    #[test]
    fn confidence_corners() {
        let full = Overlap {
            query_weight: 100,
            matched_weight: 100,
            passage_weight: 100,
            query_pairs: 9,
            shared_pairs: 9,
        };
        assert_eq!(confidence_ppm(&full), PPM);
        assert_eq!(confidence_ppm(&Overlap::default()), 0);
        let no_pairs = Overlap {
            query_pairs: 0,
            shared_pairs: 0,
            ..full
        };
        assert_eq!(confidence_ppm(&no_pairs), PPM);
        // Half of a passage twice the size of the output: Dice 2/3, order 1/3.
        let half = Overlap {
            query_weight: 100,
            matched_weight: 100,
            passage_weight: 200,
            query_pairs: 9,
            shared_pairs: 3,
        };
        assert_eq!(confidence_ppm(&half), (80 * 666_666 + 20 * 333_333) / 100);
        assert_eq!(log2_fp(1), 0);
        assert_eq!(log2_fp(2), 1 << IDF_FRAC_BITS);
        assert_eq!(log2_fp(1 << 40), 40 << IDF_FRAC_BITS);
        assert_eq!(log2_fp(u64::MAX), (64 << IDF_FRAC_BITS) - 1);
    }

    #[test]
    fn jaccard_of_term_sets() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(jaccard_ppm(&s(&["a", "b"]), &s(&["a", "b"])), PPM);
        assert_eq!(jaccard_ppm(&s(&["a", "b"]), &s(&["c"])), 0);
        assert_eq!(
            jaccard_ppm(&s(&["a", "b", "c", "d"]), &s(&["a", "b", "c", "e"])),
            600_000
        );
        assert_eq!(jaccard_ppm(&s(&[]), &s(&[])), PPM);
    }
}
