"""Merkle inclusion proofs and signed-note checkpoints, checked in pure Python: against the RFC
6962 reference vectors, against the RFC's recursive definitions for every (index, size) up to
64 leaves, and against notes signed here."""

import base64
import hashlib
import json
import os
import unittest

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

from _server import REPO_ROOT
from shoulders_client import (ShouldersError, VerifierKey, leaf_hash, node_hash,
                              root_from_inclusion, verify_checkpoint, verify_inclusion)

VECTORS = os.path.join(REPO_ROOT, "crates", "shoulders-log", "tests", "data", "rfc6962_vectors.json")


def mth(leaves):
    """RFC 6962 section 2.1 Merkle Tree Hash, by its recursive definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m, leaves):
    """RFC 6962 section 2.1.1 PATH(m, D[n]), by its recursive definition."""
    if len(leaves) <= 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return path(m, leaves[:k]) + [mth(leaves[k:])]
    return path(m - k, leaves[k:]) + [mth(leaves[:k])]


class Inclusion(unittest.TestCase):
    def test_reference_vectors(self):
        with open(VECTORS, encoding="utf-8") as f:
            v = json.load(f)
        leaves = [bytes.fromhex(x) for x in v["leaves"]]
        for case in v["leaf_hashes"]:
            self.assertEqual(leaf_hash(bytes.fromhex(case["data"])).hex(), case["hash"])
        self.assertGreater(len(v["inclusion"]), 3)
        for case in v["inclusion"]:
            index, size = case["index"], case["size"]
            proof = [bytes.fromhex(h) for h in case["proof"]]
            root = bytes.fromhex(v["roots"][size])
            self.assertEqual(mth(leaves[:size]), root)
            verify_inclusion(leaf_hash(leaves[index]), index, size, proof, root)

    def test_every_index_and_size_up_to_64_and_every_tampering(self):
        leaves = [b"leaf %d" % i for i in range(64)]
        for size in range(1, len(leaves) + 1):
            root = mth(leaves[:size])
            for index in range(size):
                proof = path(index, leaves[:size])
                leaf = leaf_hash(leaves[index])
                verify_inclusion(leaf, index, size, proof, root)
                bad = []
                for i in range(len(proof)):  # Each hash of the path, one bit flipped.
                    flipped = bytes([proof[i][0] ^ 1]) + proof[i][1:]
                    bad.append((leaf, index, size, proof[:i] + [flipped] + proof[i + 1:]))
                bad.append((leaf_hash(leaves[index] + b"!"), index, size, proof))  # another leaf
                bad.append((leaf, index, size, proof + [root]))  # one hash too many
                if proof:
                    bad.append((leaf, index, size, proof[:-1]))  # one too few
                if size > 1:
                    bad.append((leaf, (index + 1) % size, size, proof))  # another position
                bad.append((leaf, size, size, proof))  # index beyond the tree
                for args in bad:
                    with self.assertRaises(ShouldersError) as e:
                        verify_inclusion(*args, root)
                    self.assertEqual(e.exception.code, "E_PROOF_INVALID")

    def test_malformed_paths_are_refused_not_crashed(self):
        for leaf, index, size, proof in ((b"short", 0, 1, []), (b"\0" * 32, 0, 2, [b"short"]),
                                         (b"\0" * 32, 0, 2, [b"\0" * 32] * 65), (b"\0" * 32, -1, 2, [])):
            with self.assertRaises(ShouldersError) as e:
                root_from_inclusion(leaf, index, size, proof)
            self.assertEqual(e.exception.code, "E_PROOF_INVALID")


def key_pair(name):
    """A signed-note key pair for ``name``: (private key, verifier key string)."""
    private = Ed25519PrivateKey.generate()
    raw = b"\x01" + private.public_key().public_bytes(serialization.Encoding.Raw,
                                                      serialization.PublicFormat.Raw)
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    return private, "%s+%s+%s" % (name, key_id.hex(), base64.b64encode(raw).decode())


def signed_note(text, name, private, key_id_hex):
    sig = bytes.fromhex(key_id_hex) + private.sign(text.encode())
    return (text + "\n\u2014 %s %s\n" % (name, base64.b64encode(sig).decode())).encode()


class Checkpoints(unittest.TestCase):
    NAME = "example.org/log"
    ROOT = base64.b64encode(hashlib.sha256(b"root").digest()).decode()

    def setUp(self):
        self.private, self.vkey = key_pair(self.NAME)
        self.key_id = self.vkey.split("+")[1]
        self.text = "%s\n42\n%s\n" % (self.NAME, self.ROOT)

    def test_a_signed_checkpoint_opens(self):
        note = signed_note(self.text, self.NAME, self.private, self.key_id)
        cp = verify_checkpoint(note, self.vkey)
        self.assertEqual((cp.origin, cp.size, base64.b64encode(cp.root).decode()),
                         (self.NAME, 42, self.ROOT))
        # A witness's co-signature beside ours is ignored, not refused.
        other, other_key = key_pair("witness.example")
        cosigned = note + signed_note(self.text, "witness.example", other,
                                      other_key.split("+")[1]).split(b"\n\n")[1]
        self.assertEqual(verify_checkpoint(cosigned, self.vkey).size, 42)

    def test_tampering_and_wrong_keys_are_refused(self):
        note = signed_note(self.text, self.NAME, self.private, self.key_id)
        other_private, other_vkey = key_pair(self.NAME)
        cases = [
            (note.replace(b"\n42\n", b"\n43\n"), self.vkey, "E_CHECKPOINT_SIGNATURE"),
            (note, other_vkey, "E_CHECKPOINT_SIGNATURE"),
            (signed_note(self.text, self.NAME, other_private, self.key_id), self.vkey,
             "E_CHECKPOINT_SIGNATURE"),
            (note.split(b"\n\n")[0] + b"\n", self.vkey, "E_CHECKPOINT_MALFORMED"),
            (b"\xff" + note, self.vkey, "E_CHECKPOINT_MALFORMED"),
            (b"x" * 1_000_001, self.vkey, "E_CHECKPOINT_MALFORMED"),
            (signed_note("other.org/log\n42\n%s\n" % self.ROOT, self.NAME, self.private,
                         self.key_id), self.vkey, "E_CHECKPOINT_MALFORMED"),
            (signed_note("%s\n042\n%s\n" % (self.NAME, self.ROOT), self.NAME, self.private,
                         self.key_id), self.vkey, "E_CHECKPOINT_MALFORMED"),
            (signed_note("%s\n42\nnot-base64\n" % self.NAME, self.NAME, self.private,
                         self.key_id), self.vkey, "E_CHECKPOINT_MALFORMED"),
            (note, "no-plus-signs", "E_KEY_MALFORMED"),
            (note, self.vkey.replace("+" + self.key_id + "+", "+00000000+"), "E_KEY_MALFORMED"),
        ]
        for note_bytes, vkey, code in cases:
            with self.assertRaises(ShouldersError) as e:
                verify_checkpoint(note_bytes, vkey)
            self.assertEqual(e.exception.code, code, note_bytes[:60])

    def test_verifier_key_parses_its_parts(self):
        key = VerifierKey.parse(self.vkey + "\n")
        self.assertEqual((key.name, key.key_id.hex()), (self.NAME, self.key_id))
        self.assertEqual(len(key.public_key), 32)


if __name__ == "__main__":
    unittest.main()
