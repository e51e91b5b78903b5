//! The signature rule set, one for single and batch verification.
//!
//! Ed25519 implementations disagree on edge cases (non-canonical point encodings, small-order
//! points, cofactored or cofactorless equations; see "Taming the many EdDSAs", Chalkias et
//! al. 2020). Batch verification is only sound against the cofactored equation, so the rules
//! are chosen so that a batch accepts exactly what one-by-one verification accepts:
//!
//! 1. `s` is canonical: `s < L` (else a second valid `s + L` would exist);
//! 2. `A` (the signer's key) and `R` (the signature's first half) are canonical encodings: the
//!    y coordinate is below p = 2^255 − 19, and the sign bit is clear when x = 0. Decoders
//!    would otherwise accept several byte strings for one point;
//! 3. neither `A` nor `R` is of small order (one of the eight torsion points), so no key
//!    verifies everything and no signature is independent of its key;
//! 4. the cofactored equation `[8][s]B = [8]R + [8][k]A` holds, with `k = SHA-512(R ‖ A ‖ M)`
//!    over the bytes as given: ZIP-215, as `ed25519-zebra` implements it, one at a time or
//!    in a batch.
//!
//! Rules 1–3 are byte checks made before either equation, identically for both paths; under
//! rule 4 single and batch verification agree except with probability below 2^-128 per batch.
//! Every signature `verify_strict` accepts is accepted here too (its cofactorless equation
//! implies the cofactored one, and it needs canonical `R` and non-small-order `A`, `R`), except
//! under a key written in a non-canonical encoding (y ≥ p), which no key generator produces; so
//! honest signers see no change. Records have exactly one valid byte string still: a third
//! party cannot turn a valid signature into another (rules 1–2 fix the encodings; a torsion
//! point added to `R` changes `k`).
//!
//! The batch's random coefficients are drawn from a SHA-512 stream seeded with every item of
//! the batch (keys, signatures and messages), as BIP-340 recommends: changing any item
//! changes every coefficient, so a forger cannot pick invalid signatures whose errors cancel,
//! and verification stays deterministic and free of I/O.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::traits::IsIdentity;
use ed25519_zebra::{batch, Signature, VerificationKey, VerificationKeyBytes};
use sha2::{Digest, Sha512};
use std::sync::OnceLock;

/// Domain separation of the batch coefficients' seed.
const BATCH_SEED_DOMAIN: &[u8] = b"shoulders/ed25519-batch/v1\0";

/// Whether `bytes` is the canonical encoding of a curve point's y coordinate and sign, judged
/// on the bytes alone: y < p, and no sign bit on a point with x = 0 (y = 1 or y = p − 1). It
/// says nothing about whether a point with that y exists (decompression does).
pub fn is_canonical_encoding(bytes: &[u8; 32]) -> bool {
    let sign = bytes[31] >> 7;
    let top = bytes[31] & 0x7f;
    // y as 255 bits; p = 2^255 - 19 is 0x7fff…ffed (little-endian: ed ff … ff 7f).
    let high_all_ones = top == 0x7f && bytes[1..31].iter().all(|&b| b == 0xff);
    if high_all_ones && bytes[0] >= 0xed {
        return false; // y >= p
    }
    if sign == 1 {
        let y_is_one = bytes[0] == 1 && top == 0 && bytes[1..31].iter().all(|&b| b == 0);
        let y_is_minus_one = high_all_ones && bytes[0] == 0xec;
        if y_is_one || y_is_minus_one {
            return false; // x = 0 has no negative form
        }
    }
    true
}

/// The canonical encodings of the eight points of small order (the 8-torsion).
fn small_order_encodings() -> &'static [[u8; 32]; 8] {
    static ENCODINGS: OnceLock<[[u8; 32]; 8]> = OnceLock::new();
    ENCODINGS.get_or_init(|| {
        curve25519_dalek::constants::EIGHT_TORSION.map(|p: EdwardsPoint| p.compress().to_bytes())
    })
}

/// Rules 2–3 for a signer key: its decompressed, batch-ready form, or `None` when the bytes
/// are not a canonical encoding of a point, or the point is of small order.
pub fn acceptable_key(bytes: &[u8; 32]) -> Option<VerificationKey> {
    if !is_canonical_encoding(bytes) {
        return None;
    }
    let point = CompressedEdwardsY(*bytes).decompress()?;
    if point.mul_by_cofactor().is_identity() {
        return None;
    }
    VerificationKey::try_from(*bytes).ok()
}

/// Rules 2–3 for a signature's `R`: canonical and not of small order. Byte checks only (a
/// canonical small-order point has one of eight encodings).
fn acceptable_r(signature: &[u8; 64]) -> bool {
    let r: &[u8; 32] = signature[..32].try_into().expect("64 = 32 + 32");
    is_canonical_encoding(r) && !small_order_encodings().contains(r)
}

/// One signature: rules 1–4 for `key` (from [`acceptable_key`]) over `message`.
pub fn verify(key: &VerificationKey, message: &[u8], signature: &[u8; 64]) -> bool {
    acceptable_r(signature)
        && key
            .verify(&Signature::from_bytes(signature), message)
            .is_ok()
}

/// One item of a batch: a key that passed [`acceptable_key`], a message, a signature.
pub struct BatchItem<'a> {
    pub key: &'a VerificationKey,
    pub message: &'a [u8],
    pub signature: &'a [u8; 64],
}

/// Many signatures at once: the verdict of [`verify`] for each item, in order. One batch
/// equation checks all items whose `R` passes the byte rules; only if it fails is each of them
/// checked alone, so one bad signature costs the batch its speed but never another item its
/// verdict.
pub fn verify_batch(items: &[BatchItem<'_>]) -> Vec<bool> {
    let mut verdicts: Vec<bool> = items.iter().map(|i| acceptable_r(i.signature)).collect();
    let candidates: Vec<usize> = (0..items.len()).filter(|&i| verdicts[i]).collect();
    match candidates.len() {
        0 => return verdicts,
        1 => {
            let i = &items[candidates[0]];
            verdicts[candidates[0]] = verify(i.key, i.message, i.signature);
            return verdicts;
        }
        _ => {}
    }
    let mut seed = Sha512::new();
    seed.update(BATCH_SEED_DOMAIN);
    seed.update((candidates.len() as u64).to_le_bytes());
    let mut verifier = batch::Verifier::new();
    for &at in &candidates {
        let item = &items[at];
        let key_bytes: [u8; 32] = VerificationKeyBytes::from(*item.key).into();
        seed.update(key_bytes);
        seed.update(item.signature);
        seed.update((item.message.len() as u64).to_le_bytes());
        seed.update(item.message);
        verifier.queue((
            VerificationKeyBytes::from(key_bytes),
            Signature::from_bytes(item.signature),
            item.message,
        ));
    }
    let rng = SeededStream::new(seed.finalize().into());
    if verifier.verify(rng).is_err() {
        for &at in &candidates {
            let i = &items[at];
            verdicts[at] = verify(i.key, i.message, i.signature);
        }
    }
    verdicts
}

/// SHA-512 in counter mode over a seed: the batch's coefficient source (see the module docs).
struct SeededStream {
    seed: [u8; 64],
    counter: u64,
    block: [u8; 64],
    used: usize,
}

impl SeededStream {
    fn new(seed: [u8; 64]) -> Self {
        SeededStream {
            seed,
            counter: 0,
            block: [0; 64],
            used: 64,
        }
    }
}

impl rand_core::RngCore for SeededStream {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }

    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest {
            if self.used == self.block.len() {
                let mut h = Sha512::new();
                h.update(self.seed);
                h.update(self.counter.to_le_bytes());
                self.block = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// The stream is unpredictable to anyone who cannot find SHA-512 preimages of the batch.
impl rand_core::CryptoRng for SeededStream {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_order_encodings_are_canonical_and_distinct() {
        let e = small_order_encodings();
        for (i, a) in e.iter().enumerate() {
            assert!(is_canonical_encoding(a));
            assert!(e[i + 1..].iter().all(|b| b != a));
        }
    }

    #[test]
    fn the_stream_depends_on_its_seed() {
        use rand_core::RngCore as _;
        let mut a = SeededStream::new([1; 64]);
        let mut b = SeededStream::new([2; 64]);
        let (x, y) = (a.next_u64(), b.next_u64());
        assert_ne!(x, y);
        let mut a2 = SeededStream::new([1; 64]);
        assert_eq!(a2.next_u64(), x);
    }
}
