//! `Frontier` (the append path that reads no storage) against `MemoryHashes` (every stored
//! hash), and the documented error codes of the proof functions.

use proptest::prelude::*;
use shoulders_log::{
    consistency_proof, inclusion_proof, leaf_hash, stored_hash_count, stored_hash_index,
    verify_consistency, verify_inclusion, Frontier, Hash, LogError, MemoryHashes, EMPTY_HASH,
};

fn leaves_strategy(max: usize) -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..=max)
}

/// Appends every leaf to both stores, checking them against each other after each append.
fn build_both(leaves: &[Vec<u8>]) -> (MemoryHashes, Frontier, Vec<Hash>) {
    let mut mem = MemoryHashes::new();
    let mut frontier = Frontier::new();
    let mut written = Vec::new();
    for (i, leaf) in leaves.iter().enumerate() {
        let i = i as u64;
        let h = mem.append(leaf);
        assert_eq!(h, leaf_hash(leaf));
        let new = frontier.append(h);
        // The hashes handed back start at the new leaf's stored index and cover exactly what
        // the in-memory store added.
        assert_eq!(written.len() as u64, stored_hash_index(0, i));
        assert_eq!(new[0], h);
        written.extend(new);
        assert_eq!(written.len() as u64, stored_hash_count(i + 1));
        assert_eq!(frontier.size(), i + 1);
        assert_eq!(frontier.root(), mem.root(), "root after {} leaves", i + 1);
    }
    (mem, frontier, written)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn frontier_matches_memory_hashes(leaves in leaves_strategy(2000)) {
        let (mem, frontier, written) = build_both(&leaves);
        let n = leaves.len() as u64;
        prop_assert_eq!(written.as_slice(), mem.stored());
        prop_assert_eq!(frontier.root(), mem.root());
        prop_assert_eq!(frontier.size(), n);
        prop_assert_eq!(mem.size(), n);
        prop_assert_eq!(&Frontier::load(n, &mem).unwrap(), &frontier);
        if n == 0 {
            prop_assert_eq!(mem.root(), EMPTY_HASH);
            prop_assert_eq!(&frontier, &Frontier::new());
        }
    }

    #[test]
    fn load_equals_incremental_frontier_at_every_size(leaves in leaves_strategy(600)) {
        // Stored hashes never change once written, so the frontier for any earlier size can be
        // loaded from the final store and must equal the one that was live at that size.
        let mut full = MemoryHashes::new();
        for leaf in &leaves {
            full.append(leaf);
        }
        let mut prefix = MemoryHashes::new();
        let mut frontier = Frontier::new();
        prop_assert_eq!(&Frontier::load(0, &full).unwrap(), &frontier);
        for (i, leaf) in leaves.iter().enumerate() {
            frontier.append(prefix.append(leaf));
            let size = i as u64 + 1;
            prop_assert_eq!(&Frontier::load(size, &prefix).unwrap(), &frontier, "size {}", size);
            prop_assert_eq!(&Frontier::load(size, &full).unwrap(), &frontier, "size {}", size);
        }
    }

    #[test]
    fn loaded_frontier_continues_like_memory(
        leaves in leaves_strategy(1500),
        cut in any::<prop::sample::Index>(),
    ) {
        // A writer restarting at `cut` loads its frontier from storage and carries on; what it
        // writes must be exactly what an uninterrupted in-memory store holds.
        let cut = cut.index(leaves.len() + 1);
        let mut mem = MemoryHashes::new();
        for leaf in &leaves[..cut] {
            mem.append(leaf);
        }
        let mut frontier = Frontier::load(cut as u64, &mem).unwrap();
        let mut written = mem.stored().to_vec();
        for leaf in &leaves[cut..] {
            written.extend(frontier.append(leaf_hash(leaf)));
            mem.append(leaf);
        }
        prop_assert_eq!(written.as_slice(), mem.stored());
        prop_assert_eq!(frontier.root(), mem.root());
    }

    #[test]
    fn indexes_for_matches_tree_hash_reads(size in 0u64..(1 << 60)) {
        // The frontier must hold exactly the hashes `tree_root` reads for that size, left to
        // right, one per set bit.
        let want = tlog_tiles::sub_tree_index(0, size, vec![]);
        let got = Frontier::indexes_for(size);
        prop_assert_eq!(got.len() as u32, size.count_ones());
        prop_assert_eq!(got, want);
    }
}

#[test]
fn indexes_for_small_sizes() {
    assert_eq!(Frontier::indexes_for(0), Vec::<u64>::new());
    for size in 1..=4096u64 {
        assert_eq!(
            Frontier::indexes_for(size),
            tlog_tiles::sub_tree_index(0, size, vec![]),
            "size {size}"
        );
    }
}

#[test]
fn load_reports_missing_hashes_as_storage_error() {
    let mut mem = MemoryHashes::new();
    for i in 0u32..5 {
        mem.append(&i.to_le_bytes());
    }
    let err = Frontier::load(6, &mem).unwrap_err();
    assert_eq!(err.code(), "E_STORAGE", "{err}");
    assert!(Frontier::load(5, &mem).is_ok());
}

fn small_tree(n: u32) -> MemoryHashes {
    let mut mem = MemoryHashes::new();
    for i in 0..n {
        mem.append(&i.to_le_bytes());
    }
    mem
}

#[test]
fn inclusion_index_out_of_range() {
    let mem = small_tree(8);
    for (index, size) in [(0u64, 0u64), (8, 8), (9, 8), (3, 3), (u64::MAX, 8), (5, 1)] {
        let err = inclusion_proof(index, size, &mem).unwrap_err();
        assert_eq!(err, LogError::IndexOutOfRange { index, size });
        assert_eq!(err.code(), "E_PROOF_INDEX_OUT_OF_RANGE");

        let root = mem.root();
        let err = verify_inclusion(&[], index, size, leaf_hash(b"x"), root).unwrap_err();
        assert_eq!(err, LogError::IndexOutOfRange { index, size });
        assert_eq!(err.code(), "E_PROOF_INDEX_OUT_OF_RANGE");
    }
    // The valid edge still works.
    let proof = inclusion_proof(7, 8, &mem).unwrap();
    verify_inclusion(&proof, 7, 8, mem.leaf(7).unwrap(), mem.root()).unwrap();
}

#[test]
fn consistency_bad_range() {
    let mem = small_tree(8);
    let root = mem.root();
    for (old, new) in [
        (0u64, 0u64),
        (0, 1),
        (0, 8),
        (2, 1),
        (8, 7),
        (9, 8),
        (u64::MAX, 8),
    ] {
        let err = consistency_proof(old, new, &mem).unwrap_err();
        assert_eq!(err, LogError::BadConsistencyRange { old, new });
        assert_eq!(err.code(), "E_PROOF_BAD_RANGE");

        let err = verify_consistency(&[], old, root, new, root).unwrap_err();
        assert_eq!(err, LogError::BadConsistencyRange { old, new });
        assert_eq!(err.code(), "E_PROOF_BAD_RANGE");
    }
    // old == new is allowed and gives an empty proof.
    assert_eq!(consistency_proof(8, 8, &mem).unwrap(), Vec::<Hash>::new());
    verify_consistency(&[], 8, root, 8, root).unwrap();
}

#[test]
fn other_error_codes() {
    let mem = small_tree(5);
    // A size past what the store holds.
    let err = mem.root_at(6).unwrap_err();
    assert_eq!(
        err,
        LogError::SizeBeyondLog {
            requested: 6,
            current: 5
        }
    );
    assert_eq!(err.code(), "E_PROOF_SIZE_BEYOND_LOG");
    // Proofs that need hashes the store lacks are storage errors, not panics.
    assert_eq!(
        inclusion_proof(0, 10, &mem).unwrap_err().code(),
        "E_STORAGE"
    );
    assert_eq!(
        consistency_proof(3, 10, &mem).unwrap_err().code(),
        "E_STORAGE"
    );
    assert_eq!(
        shoulders_log::tree_root(10, &mem).unwrap_err().code(),
        "E_STORAGE"
    );
    // A tampered proof is an invalid proof.
    let mut proof = inclusion_proof(1, 5, &mem).unwrap();
    proof[0].0[3] ^= 1;
    let err = verify_inclusion(&proof, 1, 5, mem.leaf(1).unwrap(), mem.root()).unwrap_err();
    assert_eq!(err, LogError::InvalidProof);
    assert_eq!(err.code(), "E_PROOF_INVALID");
    let mut proof = consistency_proof(2, 5, &mem).unwrap();
    proof[1].0[0] ^= 0x80;
    let err = verify_consistency(&proof, 2, mem.root_at(2).unwrap(), 5, mem.root()).unwrap_err();
    assert_eq!(err.code(), "E_PROOF_INVALID");
}

#[test]
fn verifiers_reject_extreme_sizes_without_panicking() {
    let mem = small_tree(8);
    let proof = inclusion_proof(3, 8, &mem).unwrap();
    let (leaf, root) = (mem.leaf(3).unwrap(), mem.root());
    for size in [9, 1 << 32, 1 << 62, u64::MAX] {
        let err = verify_inclusion(&proof, 3, size, leaf, root).unwrap_err();
        assert_eq!(err.code(), "E_PROOF_INVALID", "size {size}");
        let err = verify_inclusion(&proof, size - 1, size, leaf, root).unwrap_err();
        assert_eq!(err.code(), "E_PROOF_INVALID", "last leaf of size {size}");
    }
    let proof = consistency_proof(3, 8, &mem).unwrap();
    let old = mem.root_at(3).unwrap();
    for new in [9, 1 << 32, 1 << 62, u64::MAX] {
        let err = verify_consistency(&proof, 3, old, new, root).unwrap_err();
        assert_eq!(err.code(), "E_PROOF_INVALID", "new {new}");
        let err = verify_consistency(&proof, new - 1, old, new, root).unwrap_err();
        assert_eq!(err.code(), "E_PROOF_INVALID", "old {} new {new}", new - 1);
    }
}
