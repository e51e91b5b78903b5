//! The signature rules of `shoulders_record::sig`: single and batch verification accept exactly
//! the same signatures, over a corpus of edge cases (every small-order point and its
//! non-canonical encodings, mixed-order keys and `R`, `s = 0`, `s ≥ L`, cofactored-only
//! signatures), the published "Taming the many EdDSAs" vectors, and random batches. The
//! expected verdicts come from an independent oracle written here with curve arithmetic.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use proptest::prelude::*;
use sha2::{Digest, Sha512};
use shoulders_record::sig::{self, BatchItem};

/// The group order L, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// A deterministic scalar from a label.
fn scalar(label: &str) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&Sha512::digest(label.as_bytes()).into())
}

fn k(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(msg);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// The rules, written independently of the library: canonical means "re-compressing the
/// decompressed point gives the same bytes"; small order means "[8]P is the identity"; s must
/// be below L; the equation is the cofactored one.
fn oracle(a: &[u8; 32], sig: &[u8; 64], msg: &[u8]) -> bool {
    let r: [u8; 32] = sig[..32].try_into().unwrap();
    let s: [u8; 32] = sig[32..].try_into().unwrap();
    let point = |bytes: &[u8; 32]| {
        let p = CompressedEdwardsY(*bytes).decompress()?;
        (p.compress().to_bytes() == *bytes && !p.mul_by_cofactor().is_identity()).then_some(p)
    };
    let (Some(pa), Some(pr)) = (point(a), point(&r)) else {
        return false;
    };
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)) else {
        return false;
    };
    (B * s - pr - pa * k(&r, a, msg))
        .mul_by_cofactor()
        .is_identity()
}

/// What the library says alone and inside a batch (alone, and among honest signatures at
/// both ends of a batch).
fn library(a: &[u8; 32], sig: &[u8; 64], msg: &[u8]) -> (bool, bool) {
    let Some(key) = sig::acceptable_key(a) else {
        return (false, false);
    };
    let single = sig::verify(&key, msg, sig);
    let (hk, hmsg, hsig) = honest("batch neighbour");
    let hkey = sig::acceptable_key(&hk).unwrap();
    let items = [
        BatchItem {
            key: &hkey,
            message: &hmsg,
            signature: &hsig,
        },
        BatchItem {
            key: &key,
            message: msg,
            signature: sig,
        },
        BatchItem {
            key: &hkey,
            message: &hmsg,
            signature: &hsig,
        },
    ];
    let verdicts = sig::verify_batch(&items);
    assert!(
        verdicts[0] && verdicts[2],
        "an honest neighbour kept its verdict"
    );
    (single, verdicts[1])
}

/// An honest key, message and signature (ed25519-dalek's signer).
fn honest(label: &str) -> ([u8; 32], Vec<u8>, [u8; 64]) {
    use ed25519_dalek::Signer as _;
    let seed: [u8; 32] = Sha512::digest(label.as_bytes())[..32].try_into().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let msg = format!("message {label}").into_bytes();
    (
        key.verifying_key().to_bytes(),
        msg.clone(),
        key.sign(&msg).to_bytes(),
    )
}

fn strict(a: &[u8; 32], sig: &[u8; 64], msg: &[u8]) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(a) else {
        return false;
    };
    key.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
        .is_ok()
}

/// Every encoding of interest: the eight small-order points, their non-canonical encodings
/// (y + p for small y, and a set sign bit where x = 0), prime-order and mixed-order points.
fn encodings() -> Vec<([u8; 32], &'static str)> {
    let mut out = Vec::new();
    for t in EIGHT_TORSION {
        out.push((t.compress().to_bytes(), "small order"));
    }
    // y + p for y < 19 (the only y with a second encoding), both signs.
    for y in 0u8..19 {
        let mut bytes = [0xffu8; 32];
        bytes[31] = 0x7f;
        bytes[0] = 0xed + y;
        for sign in [0u8, 0x80] {
            let mut b = bytes;
            b[31] |= sign;
            if CompressedEdwardsY(b).decompress().is_some() {
                out.push((b, "non-canonical (y >= p)"));
            }
        }
    }
    // x = 0 with the sign bit set: y = 1 and y = p - 1.
    let mut one = [0u8; 32];
    one[0] = 1;
    one[31] |= 0x80;
    out.push((one, "non-canonical (negative zero x)"));
    let mut minus_one = [0xffu8; 32];
    minus_one[0] = 0xec;
    out.push((minus_one, "non-canonical (negative zero x)"));
    for i in 0..4 {
        let p = B * scalar(&format!("prime {i}"));
        out.push((p.compress().to_bytes(), "prime order"));
        for (j, t) in EIGHT_TORSION.iter().enumerate().skip(1) {
            if (i + j) % 3 == 0 {
                out.push(((p + t).compress().to_bytes(), "mixed order"));
            }
        }
    }
    out
}

#[test]
fn the_byte_check_of_canonical_encodings_matches_recompression() {
    let mut cases: Vec<[u8; 32]> = encodings().into_iter().map(|(b, _)| b).collect();
    for i in 0..2000u32 {
        let mut b: [u8; 32] = Sha512::digest(i.to_le_bytes())[..32].try_into().unwrap();
        // Push some towards the top of the range.
        if i % 4 == 0 {
            b[1..31].fill(0xff);
            b[31] |= 0x7f;
        }
        cases.push(b);
    }
    let mut seen_non_canonical = 0;
    for b in cases {
        if let Some(p) = CompressedEdwardsY(b).decompress() {
            let canonical = p.compress().to_bytes() == b;
            assert_eq!(
                sig::is_canonical_encoding(&b),
                canonical,
                "{}",
                hex::encode(b)
            );
            seen_non_canonical += usize::from(!canonical);
        }
    }
    assert!(
        seen_non_canonical >= 6,
        "the corpus has non-canonical encodings"
    );
}

#[test]
fn edge_case_corpus_single_batch_and_oracle_agree() {
    let points = encodings();
    // Discrete logs are known for the prime/mixed points made from `scalar`, so valid
    // signatures (including cofactored-only ones) can be forged for them here.
    let mut accepted = 0;
    let mut rejected = 0;
    let mut cofactored_only = 0;
    for (ai, (a, a_kind)) in points.iter().enumerate() {
        for (ri, (r, r_kind)) in points.iter().enumerate() {
            if (ai * 7 + ri) % 3 != 0 && !a_kind.starts_with("small") {
                continue; // keep the corpus at a few thousand cases
            }
            let msg = format!("corpus {ai} {ri}").into_bytes();
            let kk = k(r, a, &msg);
            let mut candidates: Vec<[u8; 32]> = vec![[0; 32], scalar("any").to_bytes(), L];
            // s that satisfies the cofactored equation when logs are known: for a = x·B + T,
            // r = y·B + T', s = y + k·x.
            if let (Some(x), Some(y)) = (log_of(a), log_of(r)) {
                let s = y + kk * x;
                candidates.push(s.to_bytes());
                candidates.push(add_l(&s.to_bytes())); // s + L: must be refused
            }
            for s in candidates {
                let mut signature = [0u8; 64];
                signature[..32].copy_from_slice(r);
                signature[32..].copy_from_slice(&s);
                let expected = oracle(a, &signature, &msg);
                let (single, batched) = library(a, &signature, &msg);
                assert_eq!(
                    (single, batched),
                    (expected, expected),
                    "A {a_kind} {}, R {r_kind} {}, s {}",
                    hex::encode(a),
                    hex::encode(r),
                    hex::encode(s)
                );
                if strict(a, &signature, &msg) {
                    assert!(expected, "everything verify_strict accepts is accepted");
                } else if expected {
                    cofactored_only += 1;
                }
                if expected {
                    accepted += 1;
                } else {
                    rejected += 1;
                }
            }
        }
    }
    assert!(accepted > 20 && rejected > 1000, "{accepted} / {rejected}");
    assert!(
        cofactored_only > 0,
        "mixed-order cases reach the cofactored-only path"
    );
}

/// The discrete log (mod L) of the prime-order part of a corpus point, if the corpus made it
/// (zero for the small-order points and their encodings).
fn log_of(p: &[u8; 32]) -> Option<Scalar> {
    let point = CompressedEdwardsY(*p).decompress()?;
    if point.mul_by_cofactor().is_identity() {
        return Some(Scalar::ZERO); // a torsion point: no prime-order part
    }
    (0..4).map(|i| scalar(&format!("prime {i}"))).find(|x| {
        let q: EdwardsPoint = B * x;
        (point - q).mul_by_cofactor().is_identity()
    })
}

/// s + L as 32 little-endian bytes (fits: s < L < 2^253).
fn add_l(s: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = s[i] as u16 + L[i] as u16 + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    out
}

#[test]
fn published_vectors_single_batch_and_oracle_agree() {
    #[derive(serde::Deserialize)]
    struct Case {
        message: String,
        pub_key: String,
        signature: String,
    }
    let text = include_str!("data/ed25519/speccheck_cases.json");
    let cases: Vec<Case> = serde_json::from_str(text).unwrap();
    assert_eq!(cases.len(), 11);
    let mut verdicts = Vec::new();
    for (n, c) in cases.iter().enumerate() {
        let msg = hex::decode(&c.message).unwrap();
        let a: [u8; 32] = hex::decode(&c.pub_key).unwrap().try_into().unwrap();
        let s: [u8; 64] = hex::decode(&c.signature).unwrap().try_into().unwrap();
        let expected = oracle(&a, &s, &msg);
        assert_eq!(library(&a, &s, &msg), (expected, expected), "vector {n}");
        verdicts.push(expected);
    }
    // Keys of small order (vectors 0-5) are refused whatever the signature; the
    // mixed-order and large-s vectors split by the rules.
    assert!(verdicts[..6].iter().all(|v| !v));
    assert!(verdicts.iter().any(|v| *v), "{verdicts:?}");
}

#[test]
fn honest_signatures_verify_and_every_field_matters() {
    for i in 0..20 {
        let (a, msg, s) = honest(&format!("h{i}"));
        assert!(oracle(&a, &s, &msg));
        assert_eq!(library(&a, &s, &msg), (true, true));
        let mut bad = s;
        bad[i % 64] ^= 1 << (i % 8);
        let mut bad_msg = msg.clone();
        bad_msg[0] ^= 1;
        assert_eq!(library(&a, &bad, &msg), (false, false));
        assert_eq!(library(&a, &s, &bad_msg), (false, false));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A batch of honest and damaged signatures gets, item by item, the single verdicts.
    #[test]
    fn batches_give_the_single_verdicts(
        damage in prop::collection::vec(0u8..6, 2..40),
        seed in any::<u32>(),
    ) {
        let corpus = encodings();
        let mut owned = Vec::new();
        for (i, d) in damage.iter().enumerate() {
            let (mut a, mut msg, mut s) = honest(&format!("{seed}/{}", i % 3));
            match d {
                0 | 1 => {}
                2 => s[(i * 5) % 64] ^= 0x10,
                3 => msg.push(b'!'),
                4 => {
                    let high = add_l(&s[32..].try_into().unwrap());
                    s[32..].copy_from_slice(&high);
                }
                _ => {
                    // A key from the edge corpus, with the honest R and s.
                    a = corpus[(seed as usize + i) % corpus.len()].0;
                }
            }
            owned.push((a, msg, s));
        }
        let keys: Vec<Option<_>> = owned.iter().map(|(a, _, _)| sig::acceptable_key(a)).collect();
        let mut items = Vec::new();
        let mut expected = Vec::new();
        for ((_, msg, s), key) in owned.iter().zip(&keys) {
            if let Some(key) = key {
                expected.push(sig::verify(key, msg, s));
                items.push(BatchItem { key, message: msg, signature: s });
            }
        }
        prop_assert_eq!(sig::verify_batch(&items), expected);
        for ((a, msg, s), key) in owned.iter().zip(&keys) {
            prop_assert_eq!(key.is_some() && sig::verify(key.as_ref().unwrap(), msg, s), oracle(a, s, msg));
        }
    }
}
