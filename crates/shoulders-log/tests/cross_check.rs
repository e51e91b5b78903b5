//! Exhaustive cross-check against the independent `ct-merkle` implementation of RFC 6962.
//!
//! For every tree size `n` in `1..=MAX` and every leaf `i < n`, and for every pair
//! `1 <= m <= n`, our roots and proof bytes must equal ct-merkle's, both verifiers must accept
//! them, and a proof with one byte flipped must be rejected by both.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use sha2_011::Sha256;
use shoulders_log::{
    consistency_proof, inclusion_proof, leaf_hash, tree_root, verify_consistency, verify_inclusion,
    Frontier, Hash, MemoryHashes,
};

const MAX: u64 = 300;

type CtTree = MemoryBackedTree<Sha256, Vec<u8>>;

/// Leaf `i`: distinct per index, and of varying length (0..=7 extra bytes).
fn leaf_bytes(i: u64) -> Vec<u8> {
    let mut out = i.to_be_bytes().to_vec();
    out.extend(std::iter::repeat_n(0xa5, (i % 8) as usize));
    out
}

fn flat(proof: &[Hash]) -> Vec<u8> {
    proof.iter().flat_map(|h| h.0).collect()
}

fn root_bytes(root: &RootHash<Sha256>) -> &[u8] {
    root.as_bytes().as_slice()
}

/// Flip one byte of a flattened proof, at a position chosen from `salt`.
fn flip_one(bytes: &[u8], salt: u64) -> (Vec<u8>, usize) {
    let mut out = bytes.to_vec();
    let at = (salt.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 7) as usize % out.len();
    out[at] ^= 1 << (salt % 8);
    (out, at)
}

fn unflat(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .map(|c| Hash(c.try_into().unwrap()))
        .collect()
}

/// Grows both trees together to `MAX` and calls `check` at every size.
fn for_each_size(mut check: impl FnMut(u64, &MemoryHashes, &CtTree, &[Hash], &[RootHash<Sha256>])) {
    let mut ours = MemoryHashes::new();
    let mut theirs = CtTree::new();
    // roots[k] is the root of the tree of size k, from each side.
    let mut our_roots = vec![ours.root()];
    let mut their_roots = vec![theirs.root()];
    assert_eq!(
        our_roots[0].0.as_slice(),
        root_bytes(&their_roots[0]),
        "empty tree root"
    );
    for n in 1..=MAX {
        let leaf = leaf_bytes(n - 1);
        ours.append(&leaf);
        theirs.push(leaf);
        our_roots.push(ours.root());
        their_roots.push(theirs.root());
        check(n, &ours, &theirs, &our_roots, &their_roots);
    }
}

#[test]
fn roots_and_stored_hashes_agree() {
    let mut frontier = Frontier::new();
    let mut stored = Vec::new();
    for_each_size(|n, ours, theirs, our_roots, their_roots| {
        let root = our_roots[n as usize];
        assert_eq!(
            root.0.as_slice(),
            root_bytes(&their_roots[n as usize]),
            "root of size {n}"
        );
        assert_eq!(their_roots[n as usize].num_leaves(), n);
        assert_eq!(tree_root(n, ours).unwrap(), root);
        assert_eq!(theirs.len(), n);
        // Every earlier root is still readable from the grown store.
        for (k, want) in our_roots.iter().enumerate() {
            assert_eq!(
                ours.root_at(k as u64).unwrap(),
                *want,
                "root_at({k}) at size {n}"
            );
        }
        stored.extend(frontier.append(leaf_hash(&leaf_bytes(n - 1))));
        assert_eq!(frontier.root(), root, "frontier root at size {n}");
        assert_eq!(
            stored.as_slice(),
            ours.stored(),
            "stored hashes at size {n}"
        );
    });
}

#[test]
fn inclusion_proofs_agree_for_every_leaf() {
    let mut checked = 0u64;
    for_each_size(|n, ours, theirs, our_roots, their_roots| {
        let (root, their_root) = (our_roots[n as usize], &their_roots[n as usize]);
        for i in 0..n {
            let leaf = leaf_bytes(i);
            let proof = inclusion_proof(i, n, ours).unwrap();
            let bytes = flat(&proof);
            let theirs_proof = theirs.prove_inclusion(i as usize);
            assert_eq!(
                bytes,
                theirs_proof.as_bytes(),
                "inclusion proof of {i} in {n}"
            );

            // Both verifiers accept the (identical) proof.
            verify_inclusion(&proof, i, n, leaf_hash(&leaf), root)
                .unwrap_or_else(|e| panic!("we reject our proof of {i} in {n}: {e}"));
            their_root
                .verify_inclusion(&leaf, i, &InclusionProof::from_bytes(bytes.clone()))
                .unwrap_or_else(|e| panic!("ct-merkle rejects our proof of {i} in {n}: {e:?}"));

            if bytes.is_empty() {
                // Single-leaf tree: the leaf hash is the root; a different leaf must fail.
                assert_eq!(n, 1);
                assert!(verify_inclusion(&proof, i, n, leaf_hash(b"other"), root).is_err());
            } else {
                let (bad, at) = flip_one(&bytes, n * 1000 + i);
                let err = verify_inclusion(&unflat(&bad), i, n, leaf_hash(&leaf), root).expect_err(
                    &format!("accepted flipped byte {at} of proof of {i} in {n}"),
                );
                assert_eq!(err.code(), "E_PROOF_INVALID");
                assert!(
                    their_root
                        .verify_inclusion(&leaf, i, &InclusionProof::from_bytes(bad))
                        .is_err(),
                    "ct-merkle accepted flipped byte {at} of proof of {i} in {n}"
                );
            }
            checked += 1;
        }
    });
    assert_eq!(checked, MAX * (MAX + 1) / 2);
}

#[test]
fn consistency_proofs_agree_for_every_pair() {
    let mut checked = 0u64;
    for_each_size(|n, ours, theirs, our_roots, their_roots| {
        let (new_root, their_new) = (our_roots[n as usize], &their_roots[n as usize]);
        for m in 1..=n {
            let (old_root, their_old) = (our_roots[m as usize], &their_roots[m as usize]);
            let proof = consistency_proof(m, n, ours).unwrap();
            let bytes = flat(&proof);
            let theirs_proof = theirs.prove_consistency((n - m) as usize);
            assert_eq!(
                bytes,
                theirs_proof.as_bytes(),
                "consistency proof {m} -> {n}"
            );

            verify_consistency(&proof, m, old_root, n, new_root)
                .unwrap_or_else(|e| panic!("we reject our proof {m} -> {n}: {e}"));
            let parsed = ConsistencyProof::<Sha256>::try_from_bytes(bytes.clone()).unwrap();
            their_new
                .verify_consistency(their_old, &parsed)
                .unwrap_or_else(|e| panic!("ct-merkle rejects our proof {m} -> {n}: {e:?}"));

            if bytes.is_empty() {
                // Equal sizes: nothing to flip; a different root must fail instead.
                assert_eq!(m, n);
                let other = our_roots[(n - 1) as usize];
                let err = verify_consistency(&proof, m, old_root, n, other).unwrap_err();
                assert_eq!(err.code(), "E_PROOF_INVALID");
            } else {
                let (bad, at) = flip_one(&bytes, n * 1000 + m);
                let err = verify_consistency(&unflat(&bad), m, old_root, n, new_root)
                    .expect_err(&format!("accepted flipped byte {at} of proof {m} -> {n}"));
                assert_eq!(err.code(), "E_PROOF_INVALID");
                let bad = ConsistencyProof::<Sha256>::try_from_bytes(bad).unwrap();
                assert!(
                    their_new.verify_consistency(their_old, &bad).is_err(),
                    "ct-merkle accepted flipped byte {at} of proof {m} -> {n}"
                );
            }
            checked += 1;
        }
    });
    assert_eq!(checked, MAX * (MAX + 1) / 2);
}

#[test]
fn flipping_each_byte_of_some_proofs_is_rejected() {
    // The exhaustive tests above flip one byte per proof; here every byte of every proof of a
    // few irregular sizes is flipped in turn.
    let mut ours = MemoryHashes::new();
    for i in 0..300 {
        ours.append(&leaf_bytes(i));
    }
    for &(m, n) in &[
        (1u64, 300u64),
        (7, 13),
        (100, 255),
        (129, 300),
        (256, 257),
        (299, 300),
    ] {
        let (old_root, new_root) = (ours.root_at(m).unwrap(), ours.root_at(n).unwrap());
        let bytes = flat(&consistency_proof(m, n, &ours).unwrap());
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(
                verify_consistency(&unflat(&bad), m, old_root, n, new_root).is_err(),
                "accepted consistency {m} -> {n} with byte {at} flipped"
            );
        }
        let i = m - 1;
        let leaf = leaf_hash(&leaf_bytes(i));
        let bytes = flat(&inclusion_proof(i, n, &ours).unwrap());
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x02;
            assert!(
                verify_inclusion(&unflat(&bad), i, n, leaf, new_root).is_err(),
                "accepted inclusion of {i} in {n} with byte {at} flipped"
            );
        }
    }
}
