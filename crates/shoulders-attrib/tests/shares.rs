//! Property tests of the share computation: always exactly 1 000 000 ppm, duplicates never add.

use proptest::prelude::*;
use shoulders_attrib::shares::{clusters, shares, Doc, SpanEvidence, PPM};
use std::collections::BTreeMap;

fn owners(n: u64) -> BTreeMap<u64, String> {
    (0..n).map(|c| (c, format!("actor{}", c % 3))).collect()
}

proptest! {
    #[test]
    fn shares_always_sum_to_one_million(
        spans in proptest::collection::vec((1u64..200, proptest::collection::vec(0u64..12, 1..6)), 0..20),
        tokens in proptest::collection::vec(0u64..10_000, 12),
    ) {
        let cluster_of: BTreeMap<u64, u64> = (0..12).map(|c| (c, c - c % 2)).collect(); // pairs are duplicates
        let tokens_of: BTreeMap<u64, u64> = tokens.iter().enumerate().map(|(i, t)| (i as u64, *t)).collect();
        let evidence: Vec<SpanEvidence> = spans
            .into_iter()
            .map(|(len, contributions)| SpanEvidence { len, contributions })
            .collect();
        let s = shares(&evidence, &cluster_of, &owners(12), &tokens_of).unwrap();
        prop_assert_eq!(s.contributors_ppm.values().sum::<u64>(), PPM);
        prop_assert_eq!(s.clusters_ppm.values().sum::<u64>(), PPM);
        // Only cluster representatives are ever credited.
        prop_assert!(s.clusters_ppm.keys().all(|c| cluster_of[c] == *c));
    }

    #[test]
    fn duplicating_a_contribution_never_raises_its_share(copies in 1usize..10, len in 5u64..100) {
        // Span found in contribution 0 and in `copies` exact copies of it, plus in contribution 1.
        let base = "a distinctive sentence that someone contributed first, long enough to shingle";
        let other = "a completely unrelated contribution about something else entirely, also long";
        let mut texts: Vec<&str> = vec![base, other];
        texts.extend(std::iter::repeat_n(base, copies));
        let docs: Vec<Doc> = texts.iter().enumerate().map(|(i, t)| Doc { contribution: i as u64, bytes: t.as_bytes() }).collect();
        let cluster_of = clusters(&docs);
        let tokens_of: BTreeMap<u64, u64> = (0..texts.len() as u64).map(|c| (c, 10)).collect();
        let owners: BTreeMap<u64, String> = (0..texts.len() as u64).map(|c| (c, format!("actor{c}"))).collect();
        let with_copies = SpanEvidence { len, contributions: (0..texts.len() as u64).filter(|&c| c != 1).chain([1]).collect() };
        let without = SpanEvidence { len, contributions: vec![0, 1] };
        let a = shares(&[with_copies], &cluster_of, &owners, &tokens_of).unwrap();
        let b = shares(&[without], &cluster_of, &owners, &tokens_of).unwrap();
        prop_assert_eq!(a.contributors_ppm.get("actor0"), b.contributors_ppm.get("actor0"));
        for c in 2..texts.len() {
            let copier = format!("actor{c}");
            prop_assert!(!a.contributors_ppm.contains_key(&copier), "a copier earned");
        }
    }
}

#[test]
fn no_span_falls_back_to_contributed_tokens_per_cluster() {
    let cluster_of: BTreeMap<u64, u64> = [(0, 0), (1, 1), (2, 0)].into();
    let tokens_of: BTreeMap<u64, u64> = [(0, 300), (1, 100), (2, 300)].into();
    let owners: BTreeMap<u64, String> = [
        (0, "ann".to_string()),
        (1, "ben".to_string()),
        (2, "cat".to_string()),
    ]
    .into();
    let s = shares(&[], &cluster_of, &owners, &tokens_of).unwrap();
    assert_eq!(s.rule, "fallback_contributed_tokens");
    assert_eq!(
        s.contributors_ppm,
        [("ann".to_string(), 750_000), ("ben".to_string(), 250_000)].into()
    );
}
