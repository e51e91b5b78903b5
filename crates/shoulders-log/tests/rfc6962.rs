//! RFC 6962 known-answer tests, driven by `tests/data/rfc6962_vectors.json`.
//!
//! The vectors are the 8-leaf reference tree used by the certificate-transparency test suites
//! (`transparency-dev/merkle` `proof/verify_test.go`, `google/certificate-transparency`
//! `cpp/merkletree/merkle_tree_test.cc`): tree heads for every size 0..=8, audit paths and
//! consistency proofs. Our roots and proofs must equal them byte for byte, our verifiers must
//! accept them, and must reject every corruption probe the reference suites use.

use serde_json::Value;
use shoulders_log::{
    consistency_proof, inclusion_proof, leaf_hash, tree_root, verify_consistency, verify_inclusion,
    Frontier, Hash, LogError, MemoryHashes, EMPTY_HASH,
};

struct Vectors {
    leaves: Vec<Vec<u8>>,
    roots: Vec<Hash>,
    leaf_hashes: Vec<(Vec<u8>, Hash)>,
    inclusion: Vec<InclusionVector>,
    consistency: Vec<ConsistencyVector>,
}

struct InclusionVector {
    index: u64,
    size: u64,
    proof: Vec<Hash>,
}

struct ConsistencyVector {
    old: u64,
    new: u64,
    proof: Vec<Hash>,
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn hash(v: &Value) -> Hash {
    let b = bytes(v);
    Hash(b.try_into().expect("32-byte hash"))
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .expect("array of hashes")
        .iter()
        .map(hash)
        .collect()
}

fn num(v: &Value) -> u64 {
    v.as_u64().expect("unsigned number")
}

fn load() -> Vectors {
    let text = include_str!("data/rfc6962_vectors.json");
    let doc: Value = serde_json::from_str(text).expect("vectors file is valid JSON");
    let list = |key: &str| {
        doc[key]
            .as_array()
            .unwrap_or_else(|| panic!("missing {key}"))
            .clone()
    };
    Vectors {
        leaves: list("leaves").iter().map(bytes).collect(),
        roots: list("roots").iter().map(hash).collect(),
        leaf_hashes: list("leaf_hashes")
            .iter()
            .map(|v| (bytes(&v["data"]), hash(&v["hash"])))
            .collect(),
        inclusion: list("inclusion")
            .iter()
            .map(|v| InclusionVector {
                index: num(&v["index"]),
                size: num(&v["size"]),
                proof: hashes(&v["proof"]),
            })
            .collect(),
        consistency: list("consistency")
            .iter()
            .map(|v| ConsistencyVector {
                old: num(&v["old"]),
                new: num(&v["new"]),
                proof: hashes(&v["proof"]),
            })
            .collect(),
    }
}

/// The full 8-leaf reference tree.
fn reference_tree(v: &Vectors) -> MemoryHashes {
    let mut mem = MemoryHashes::new();
    for leaf in &v.leaves {
        mem.append(leaf);
    }
    mem
}

/// A hash that is no node of the reference tree (`sha256SomeHash` of the Go suite).
fn some_hash() -> Hash {
    let b =
        hex::decode("abacaba000000000000000000000000000000000000000000060061e00123456").unwrap();
    Hash(b.try_into().unwrap())
}

fn flip(h: Hash, byte: usize, mask: u8) -> Hash {
    let mut out = h;
    out.0[byte] ^= mask;
    out
}

#[test]
fn vectors_file_is_complete() {
    let v = load();
    assert_eq!(v.leaves.len(), 8);
    assert_eq!(v.roots.len(), 9, "one root per tree size 0..=8");
    assert_eq!(v.roots[0], EMPTY_HASH);
    assert!(v.inclusion.len() >= 5);
    assert!(v.consistency.len() >= 5);
}

#[test]
fn leaf_hashes_match() {
    let v = load();
    for (data, want) in &v.leaf_hashes {
        assert_eq!(leaf_hash(data), *want, "leaf hash of {}", hex::encode(data));
    }
    // Tree of one leaf: its root is the leaf hash.
    assert_eq!(leaf_hash(&v.leaves[0]), v.roots[1]);
}

#[test]
fn roots_match_for_every_size() {
    let v = load();
    let full = reference_tree(&v);
    assert_eq!(full.size(), 8);

    let mut incremental = MemoryHashes::new();
    let mut frontier = Frontier::new();
    for (size, want) in v.roots.iter().enumerate() {
        let size = size as u64;
        // Historical roots read from the complete tree.
        assert_eq!(tree_root(size, &full).unwrap(), *want, "tree_root({size})");
        assert_eq!(full.root_at(size).unwrap(), *want, "root_at({size})");
        // The current root while the tree grows, from both stores.
        assert_eq!(incremental.size(), size);
        assert_eq!(incremental.root(), *want, "incremental root at {size}");
        assert_eq!(frontier.size(), size);
        assert_eq!(frontier.root(), *want, "frontier root at {size}");

        if let Some(leaf) = v.leaves.get(size as usize) {
            let h = incremental.append(leaf);
            assert_eq!(h, leaf_hash(leaf));
            frontier.append(h);
        }
    }
    assert_eq!(incremental.stored(), full.stored());
    for (i, leaf) in v.leaves.iter().enumerate() {
        assert_eq!(full.leaf(i as u64), Some(leaf_hash(leaf)));
    }
    assert_eq!(full.leaf(8), None);
}

#[test]
fn inclusion_proofs_match_byte_for_byte() {
    let v = load();
    let full = reference_tree(&v);
    for t in &v.inclusion {
        let got = inclusion_proof(t.index, t.size, &full).unwrap();
        assert_eq!(
            got, t.proof,
            "inclusion proof for leaf {} in tree {}",
            t.index, t.size
        );
        let leaf = leaf_hash(&v.leaves[t.index as usize]);
        let root = v.roots[t.size as usize];
        verify_inclusion(&t.proof, t.index, t.size, leaf, root)
            .unwrap_or_else(|e| panic!("vector {}:{} rejected: {e}", t.index, t.size));
    }
}

#[test]
fn inclusion_verifier_rejects_corruptions() {
    let v = load();
    for t in &v.inclusion {
        let (i, n, p) = (t.index, t.size, &t.proof);
        let leaf = leaf_hash(&v.leaves[i as usize]);
        let root = v.roots[n as usize];
        let ctx = format!("leaf {i} in tree {n}");

        let mut probes: Vec<(String, u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (
                "index - 1".into(),
                i.wrapping_sub(1),
                n,
                leaf,
                root,
                p.clone(),
            ),
            ("index + 1".into(), i + 1, n, leaf, root, p.clone()),
            ("index ^ 2".into(), i ^ 2, n, leaf, root, p.clone()),
            ("size * 2".into(), i, n * 2, leaf, root, p.clone()),
            ("size / 2".into(), i, n / 2, leaf, root, p.clone()),
            (
                "wrong leaf".into(),
                i,
                n,
                leaf_hash(b"WrongLeaf"),
                root,
                p.clone(),
            ),
            ("empty root".into(), i, n, leaf, EMPTY_HASH, p.clone()),
            ("random root".into(), i, n, leaf, some_hash(), p.clone()),
            (
                "trailing garbage".into(),
                i,
                n,
                leaf,
                root,
                [p.clone(), vec![EMPTY_HASH]].concat(),
            ),
            (
                "trailing root".into(),
                i,
                n,
                leaf,
                root,
                [p.clone(), vec![root]].concat(),
            ),
            (
                "preceding garbage".into(),
                i,
                n,
                leaf,
                root,
                [vec![EMPTY_HASH], p.clone()].concat(),
            ),
            (
                "preceding root".into(),
                i,
                n,
                leaf,
                root,
                [vec![root], p.clone()].concat(),
            ),
        ];
        for k in 0..p.len() {
            let mut wrong = p.clone();
            wrong[k] = flip(wrong[k], 0, 8);
            probes.push((format!("proof[{k}] bit 3 flipped"), i, n, leaf, root, wrong));
            let mut wrong = p.clone();
            wrong[k] = flip(wrong[k], 31, 0x80);
            probes.push((
                format!("proof[{k}] last byte flipped"),
                i,
                n,
                leaf,
                root,
                wrong,
            ));
        }
        if !p.is_empty() {
            probes.push((
                "removed component".into(),
                i,
                n,
                leaf,
                root,
                p[..p.len() - 1].to_vec(),
            ));
        }
        if p.len() > 1 {
            let mut wrong = vec![p[0], some_hash()];
            wrong.extend_from_slice(&p[1..]);
            probes.push(("inserted component".into(), i, n, leaf, root, wrong));
        }

        for (desc, pi, pn, pleaf, proot, pproof) in probes {
            let err = verify_inclusion(&pproof, pi, pn, pleaf, proot)
                .expect_err(&format!("{ctx}: accepted probe {desc}"));
            let want = if pi >= pn {
                "E_PROOF_INDEX_OUT_OF_RANGE"
            } else {
                "E_PROOF_INVALID"
            };
            assert_eq!(err.code(), want, "{ctx}: probe {desc}: {err}");
        }
    }
}

#[test]
fn consistency_proofs_match_byte_for_byte() {
    let v = load();
    let full = reference_tree(&v);
    for t in &v.consistency {
        let got = consistency_proof(t.old, t.new, &full).unwrap();
        assert_eq!(got, t.proof, "consistency proof {} -> {}", t.old, t.new);
        let (r1, r2) = (v.roots[t.old as usize], v.roots[t.new as usize]);
        verify_consistency(&t.proof, t.old, r1, t.new, r2)
            .unwrap_or_else(|e| panic!("vector {} -> {} rejected: {e}", t.old, t.new));
    }
}

#[test]
fn consistency_verifier_rejects_corruptions() {
    let v = load();
    for t in &v.consistency {
        let (m, n, p) = (t.old, t.new, &t.proof);
        let (r1, r2) = (v.roots[m as usize], v.roots[n as usize]);
        let ctx = format!("consistency {m} -> {n}");

        if p.is_empty() {
            // Same size: only the same root is consistent, and only with an empty proof.
            assert_eq!(m, n);
            let err = verify_consistency(p, m, r1, n, some_hash()).unwrap_err();
            assert_eq!(err, LogError::InvalidProof, "{ctx}");
            let err = verify_consistency(p, m, some_hash(), n, r2).unwrap_err();
            assert_eq!(err, LogError::InvalidProof, "{ctx}");
            let err = verify_consistency(&[r1], m, r1, n, r2).unwrap_err();
            assert_eq!(
                err,
                LogError::InvalidProof,
                "{ctx}: non-empty proof for equal sizes"
            );
            continue;
        }

        let mut probes: Vec<(String, u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            ("old - 1".into(), m - 1, n, r1, r2, p.clone()),
            ("old + 1".into(), m + 1, n, r1, r2, p.clone()),
            ("old ^ 2".into(), m ^ 2, n, r1, r2, p.clone()),
            ("new * 2".into(), m, n * 2, r1, r2, p.clone()),
            ("new / 2".into(), m, n / 2, r1, r2, p.clone()),
            ("wrong old root".into(), m, n, some_hash(), r2, p.clone()),
            ("wrong new root".into(), m, n, r1, some_hash(), p.clone()),
            ("swapped roots".into(), m, n, r2, r1, p.clone()),
            ("empty proof".into(), m, n, r1, r2, vec![]),
            (
                "trailing garbage".into(),
                m,
                n,
                r1,
                r2,
                [p.clone(), vec![EMPTY_HASH]].concat(),
            ),
            (
                "trailing old root".into(),
                m,
                n,
                r1,
                r2,
                [p.clone(), vec![r1]].concat(),
            ),
            (
                "trailing new root".into(),
                m,
                n,
                r1,
                r2,
                [p.clone(), vec![r2]].concat(),
            ),
            (
                "preceding garbage".into(),
                m,
                n,
                r1,
                r2,
                [vec![EMPTY_HASH], p.clone()].concat(),
            ),
            (
                "preceding old root".into(),
                m,
                n,
                r1,
                r2,
                [vec![r1], p.clone()].concat(),
            ),
            (
                "preceding new root".into(),
                m,
                n,
                r1,
                r2,
                [vec![r2], p.clone()].concat(),
            ),
            (
                "preceding proof[0]".into(),
                m,
                n,
                r1,
                r2,
                [vec![p[0]], p.clone()].concat(),
            ),
            ("truncated".into(), m, n, r1, r2, p[..p.len() - 1].to_vec()),
        ];
        for k in 0..p.len() {
            let mut wrong = p.clone();
            wrong[k] = flip(wrong[k], 0, 16);
            probes.push((format!("proof[{k}] bit 4 flipped"), m, n, r1, r2, wrong));
            let mut wrong = p.clone();
            wrong[k] = flip(wrong[k], 17, 1);
            probes.push((format!("proof[{k}] byte 17 flipped"), m, n, r1, r2, wrong));
        }

        for (desc, pm, pn, pr1, pr2, pproof) in probes {
            let err = verify_consistency(&pproof, pm, pr1, pn, pr2)
                .expect_err(&format!("{ctx}: accepted probe {desc}"));
            let want = if pm == 0 || pm > pn {
                "E_PROOF_BAD_RANGE"
            } else {
                "E_PROOF_INVALID"
            };
            assert_eq!(err.code(), want, "{ctx}: probe {desc}: {err}");
        }
    }
}

#[test]
fn proofs_agree_when_read_from_a_larger_tree() {
    // The reference vectors are for trees of the given size; the same proofs must come out of
    // a store that has since grown (stored hashes never change once written).
    let v = load();
    let mut grown = reference_tree(&v);
    for i in 0u32..57 {
        grown.append(&i.to_be_bytes());
    }
    for t in &v.inclusion {
        assert_eq!(inclusion_proof(t.index, t.size, &grown).unwrap(), t.proof);
    }
    for t in &v.consistency {
        assert_eq!(consistency_proof(t.old, t.new, &grown).unwrap(), t.proof);
    }
    for (size, want) in v.roots.iter().enumerate() {
        assert_eq!(grown.root_at(size as u64).unwrap(), *want);
    }
}
