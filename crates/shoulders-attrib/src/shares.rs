//! From span evidence to contributor shares, in integer parts per million that sum to exactly
//! 1 000 000, with duplicate contributions collapsed so copying data earns nothing extra.
//!
//! **Clusters.** Contributions with the same bytes, or near-duplicates (estimated Jaccard
//! similarity of their 8-byte shingle sets ≥ [`NEAR_DUPLICATE_JACCARD_PERCENT`]%, by MinHash with
//! [`MINHASH_PERMUTATIONS`] hash functions and LSH banding), form one cluster represented by its
//! earliest contribution (lowest log index). A cluster is credited to the representative's
//! contributor, once, however many copies exist.
//!
//! **Weights.** Each span of the output found in the index weighs `length × 1 000 000 / k`,
//! where `k` is the number of distinct clusters it occurs in (long spans from few independent
//! sources count most; copies of a document neither dilute nor add weight), split equally
//! (largest remainder) among those `k` clusters. Each cluster's ppm is its share of the total weight,
//! rounded by largest remainder (ties to the lower cluster id), so the result always sums to
//! exactly 1 000 000.
//!
//! **Fallback.** An output with no attributable span is credited in proportion to each
//! cluster's representative's contributed tokens.

use std::collections::{BTreeMap, BTreeSet};

/// Parts per million that make a whole.
pub const PPM: u64 = 1_000_000;
/// MinHash signature length.
pub const MINHASH_PERMUTATIONS: usize = 64;
/// LSH bands × rows = permutations.
const BANDS: usize = 16;
const ROWS: usize = MINHASH_PERMUTATIONS / BANDS;
/// Similarity at or above which two contributions are near-duplicates.
pub const NEAR_DUPLICATE_JACCARD_PERCENT: u64 = 80;
/// Shingle width in bytes.
const SHINGLE_BYTES: usize = 8;

/// One contributed document, in log order.
pub struct Doc<'a> {
    pub contribution: u64,
    pub bytes: &'a [u8],
}

fn mix(mut x: u64) -> u64 {
    // SplitMix64 finaliser: a fixed, well-distributed 64-bit mixing function.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn shingle_hash(window: &[u8]) -> u64 {
    // FNV-1a then mixed: deterministic across platforms and runs.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in window {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// The MinHash signature of a document's 8-byte shingles (the whole document if shorter).
pub fn minhash(bytes: &[u8]) -> [u64; MINHASH_PERMUTATIONS] {
    let mut sig = [u64::MAX; MINHASH_PERMUTATIONS];
    let mut visit = |h: u64| {
        for (i, slot) in sig.iter_mut().enumerate() {
            let v = mix(h ^ mix(i as u64 + 1));
            if v < *slot {
                *slot = v;
            }
        }
    };
    if bytes.len() <= SHINGLE_BYTES {
        visit(shingle_hash(bytes));
    } else {
        for w in bytes.windows(SHINGLE_BYTES) {
            visit(shingle_hash(w));
        }
    }
    sig
}

fn similar(a: &[u64; MINHASH_PERMUTATIONS], b: &[u64; MINHASH_PERMUTATIONS]) -> bool {
    let equal = a.iter().zip(b).filter(|(x, y)| x == y).count() as u64;
    equal * 100 >= NEAR_DUPLICATE_JACCARD_PERCENT * MINHASH_PERMUTATIONS as u64
}

/// Assigns documents to duplicate clusters one at a time, in log order, keeping only a digest
/// and a MinHash signature per document (about 600 bytes), so a dataset can be clustered while
/// its documents stream past.
#[derive(Default)]
pub struct Clusterer {
    representative: BTreeMap<u64, u64>,
    exact: BTreeMap<[u8; 32], u64>,
    signatures: Vec<(u64, [u64; MINHASH_PERMUTATIONS])>,
    buckets: BTreeMap<(usize, [u64; ROWS]), Vec<usize>>,
    last: Option<u64>,
}

fn band_key(sig: &[u64; MINHASH_PERMUTATIONS], band: usize) -> [u64; ROWS] {
    sig[band * ROWS..(band + 1) * ROWS]
        .try_into()
        .expect("band width")
}

impl Clusterer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add the next document (contribution ids must increase); returns its representative.
    pub fn add(&mut self, contribution: u64, bytes: &[u8]) -> u64 {
        assert!(
            self.last.is_none_or(|l| l < contribution),
            "documents must come in log order"
        );
        self.last = Some(contribution);
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(bytes).into();
        if let Some(&first) = self.exact.get(&digest) {
            let rep = self.representative[&first];
            self.representative.insert(contribution, rep);
            return rep;
        }
        self.exact.insert(digest, contribution);
        let sig = minhash(bytes);
        // Candidates share at least one band; confirm with the full signature. The earliest
        // similar representative wins.
        let mut found: Option<u64> = None;
        for band in 0..BANDS {
            for &m in self
                .buckets
                .get(&(band, band_key(&sig, band)))
                .into_iter()
                .flatten()
            {
                let (other, other_sig) = &self.signatures[m];
                if similar(&sig, other_sig) {
                    let rep = self.representative[other];
                    found = Some(found.map_or(rep, |f: u64| f.min(rep)));
                }
            }
        }
        let rep = found.unwrap_or(contribution);
        self.representative.insert(contribution, rep);
        let at = self.signatures.len();
        self.signatures.push((contribution, sig));
        for band in 0..BANDS {
            self.buckets
                .entry((band, band_key(&sig, band)))
                .or_default()
                .push(at);
        }
        rep
    }

    /// Every contribution added, mapped to its cluster's representative.
    pub fn finish(self) -> BTreeMap<u64, u64> {
        self.representative
    }
}

/// Map each contribution to its cluster's representative (the earliest member).
/// `docs` must be in log order (increasing contribution index).
pub fn clusters(docs: &[Doc<'_>]) -> BTreeMap<u64, u64> {
    let mut c = Clusterer::new();
    for doc in docs {
        c.add(doc.contribution, doc.bytes);
    }
    c.finish()
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

/// One span of the output found in the index.
pub struct SpanEvidence {
    pub len: u64,
    /// Contributions the span occurs in (any order, repeats allowed).
    pub contributions: Vec<u64>,
}

/// Shares of one output.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Shares {
    /// `spans` or `fallback_contributed_tokens`.
    pub rule: &'static str,
    /// Cluster representative → ppm.
    pub clusters_ppm: BTreeMap<u64, u64>,
    /// Contributor handle → ppm (sums to exactly 1 000 000).
    pub contributors_ppm: BTreeMap<String, u64>,
}

/// Compute shares. `cluster_of` maps every contribution to its representative, `contributor_of`
/// maps representatives to contributor handles, `tokens_of` gives contributed tokens per
/// contribution (for the fallback). Returns `None` only for an empty index.
pub fn shares(
    spans: &[SpanEvidence],
    cluster_of: &BTreeMap<u64, u64>,
    contributor_of: &BTreeMap<u64, String>,
    tokens_of: &BTreeMap<u64, u64>,
) -> Option<Shares> {
    let mut weights: BTreeMap<u64, u128> = BTreeMap::new();
    for span in spans {
        let clusters: BTreeSet<u64> = span
            .contributions
            .iter()
            .filter_map(|c| cluster_of.get(c).copied())
            .collect();
        if clusters.is_empty() {
            continue;
        }
        let weight = u64::try_from(u128::from(span.len) * u128::from(PPM) / clusters.len() as u128)
            .unwrap_or(u64::MAX);
        let per: BTreeMap<u64, u128> = clusters.iter().map(|&c| (c, 1)).collect();
        if weight == 0 {
            continue;
        }
        for (c, w) in largest_remainder(&per, weight) {
            *weights.entry(c).or_default() += u128::from(w);
        }
    }
    let (rule, weights) = if weights.values().any(|&w| w > 0) {
        ("spans", weights)
    } else {
        let mut fallback: BTreeMap<u64, u128> = BTreeMap::new();
        for (&c, &rep) in cluster_of {
            if c == rep {
                fallback.insert(rep, u128::from(tokens_of.get(&rep).copied().unwrap_or(0)));
            }
        }
        if fallback.values().all(|&w| w == 0) {
            // No tokens anywhere: equal shares per cluster.
            fallback.values_mut().for_each(|w| *w = 1);
        }
        if fallback.is_empty() {
            return None;
        }
        ("fallback_contributed_tokens", fallback)
    };
    let clusters_ppm = largest_remainder(&weights, PPM);
    let mut by_contributor: BTreeMap<String, u64> = BTreeMap::new();
    for (rep, ppm) in &clusters_ppm {
        let who = contributor_of
            .get(rep)
            .cloned()
            .unwrap_or_else(|| format!("contribution-{rep}"));
        *by_contributor.entry(who).or_default() += ppm;
    }
    by_contributor.retain(|_, ppm| *ppm > 0);
    debug_assert_eq!(by_contributor.values().sum::<u64>(), PPM);
    Some(Shares {
        rule,
        clusters_ppm,
        contributors_ppm: by_contributor,
    })
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
    fn exact_and_near_duplicates_join_the_earliest_cluster() {
        let base =
            "The quick brown fox jumps over the lazy dog, again and again, all day long.".repeat(4);
        let near = base.replacen("lazy", "lazzy", 1);
        let other = "Completely different text about suffix arrays and their many uses in search."
            .repeat(4);
        let docs = [
            Doc {
                contribution: 3,
                bytes: base.as_bytes(),
            },
            Doc {
                contribution: 5,
                bytes: other.as_bytes(),
            },
            Doc {
                contribution: 7,
                bytes: base.as_bytes(),
            },
            Doc {
                contribution: 9,
                bytes: near.as_bytes(),
            },
        ];
        let c = clusters(&docs);
        assert_eq!((c[&3], c[&5], c[&7], c[&9]), (3, 5, 3, 3));
    }
}
