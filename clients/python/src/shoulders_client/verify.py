"""Checking what a server says, in pure Python: RFC 6962 / 9162 Merkle inclusion proofs and
C2SP signed-note checkpoints, so a client trusts the log's key, not the server that relays it.
"""

import base64
import hashlib
from dataclasses import dataclass
from typing import Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ._b64 import decode_exact as _b64
from .errors import ShouldersError

#: Largest checkpoint note read (the ``signed_note`` crate's limit).
MAX_NOTE_BYTES = 1_000_000
#: Most signature lines a note may carry (Go's ``sumdb/note`` limit).
MAX_NOTE_SIGNATURES = 100
#: Longest audit path: a tree of at most 2^64 leaves is 64 levels deep.
MAX_PROOF_HASHES = 64
#: Largest tree size a checkpoint may state (C2SP tlog-checkpoint: a 64-bit count; Go caps it
#: at 2^63 - 1).
MAX_TREE_SIZE = 2**63 - 1

_ED25519_ALG = 0x01
_SIG_PREFIX = "\u2014 "  # "— ": an em dash and a space start every signature line.


def leaf_hash(record: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || the record's exact bytes)."""
    return hashlib.sha256(b"\x00" + record).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes:
    """The root an audit path leads to (RFC 9162 section 2.1.3.2).

    Raises ``E_PROOF_INVALID`` when the path cannot be one for ``index`` in a tree of ``size``.
    """
    if not 0 <= index < size:
        raise ShouldersError("E_PROOF_INVALID", f"leaf index {index} is not below tree size {size}")
    if len(path) > MAX_PROOF_HASHES or any(len(h) != 32 for h in path) or len(leaf) != 32:
        raise ShouldersError("E_PROOF_INVALID", "an audit path is at most 64 SHA-256 hashes")
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ShouldersError("E_PROOF_INVALID", "the audit path is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ShouldersError("E_PROOF_INVALID", "the audit path is shorter than the tree is deep")
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes],
                     root: bytes) -> None:
    """Check that ``leaf`` is at ``index`` in the tree of ``size`` leaves whose root is ``root``."""
    if root_from_inclusion(leaf, index, size, path) != root:
        raise ShouldersError(
            "E_PROOF_INVALID", f"the inclusion proof of leaf {index} does not lead to the root")


def proof_from_json(proof: dict, index: int, size: int) -> list:
    """The audit path of the server's proof JSON, checked to be for ``(index, size)``."""
    if not isinstance(proof, dict) or proof.get("leaf_index") != index \
            or proof.get("tree_size") != size or not isinstance(proof.get("hashes"), list):
        raise ShouldersError("E_PROOF_INVALID", f"the proof is not for leaf {index} of tree {size}")
    path = []
    for h in proof["hashes"][:MAX_PROOF_HASHES + 1]:
        raw = _b64(h, 32)
        if raw is None:
            raise ShouldersError("E_PROOF_INVALID", "a proof hash is not base64 of 32 bytes")
        path.append(raw)
    return path


@dataclass(frozen=True)
class VerifierKey:
    """A log's signed-note verifier key ``<origin>+<8 hex key id>+<base64(0x01 || key)>``."""

    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def parse(cls, text: str) -> "VerifierKey":
        # The base64 key may itself hold "+": split at the first two only, as Go's note does.
        parts = text.strip().split("+", 2) if isinstance(text, str) else []
        if len(parts) != 3 or not parts[0] or len(parts[1]) != 8:
            raise ShouldersError("E_KEY_MALFORMED", "a verifier key is <origin>+<8 hex digits>+<base64>")
        name, id_hex, key_b64 = parts
        try:
            key_id = bytes.fromhex(id_hex)
        except ValueError:
            raise ShouldersError("E_KEY_MALFORMED", "the verifier key's id is not 8 hex digits") from None
        raw = _b64(key_b64, 33)
        if raw is None or raw[0] != _ED25519_ALG:
            raise ShouldersError("E_KEY_MALFORMED", "the verifier key is not an Ed25519 key (0x01 || 32 bytes)")
        if _key_id(name, raw) != key_id:
            raise ShouldersError("E_KEY_MALFORMED", "the verifier key's id does not match its name and key")
        return cls(name=name, key_id=key_id, public_key=raw[1:])


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint whose signature verified: the tree head everything else is checked against."""

    origin: str
    size: int
    root: bytes
    note: bytes


def verify_checkpoint(note: bytes, verifier_key: str) -> Checkpoint:
    """Parse a C2SP signed note holding a tlog checkpoint and check the log key's signature."""
    key = VerifierKey.parse(verifier_key)
    if len(note) > MAX_NOTE_BYTES:
        raise ShouldersError("E_CHECKPOINT_MALFORMED", f"the note is over {MAX_NOTE_BYTES} bytes")
    try:
        text_all = note.decode("utf-8")
    except UnicodeDecodeError:
        raise ShouldersError("E_CHECKPOINT_MALFORMED", "the note is not UTF-8") from None
    split = text_all.rfind("\n\n")
    if split < 0 or not text_all.endswith("\n"):
        raise ShouldersError("E_CHECKPOINT_MALFORMED", "the note has no signature block")
    text, sig_lines = text_all[:split + 1], text_all[split + 2:-1].split("\n")
    if len(sig_lines) > MAX_NOTE_SIGNATURES:
        raise ShouldersError("E_CHECKPOINT_MALFORMED", f"over {MAX_NOTE_SIGNATURES} signatures")
    verified = False
    for line in sig_lines:
        if not line.startswith(_SIG_PREFIX) or line.count(" ") != 2:
            raise ShouldersError("E_CHECKPOINT_MALFORMED", f"not a signature line: {line[:80]!r}")
        name, sig_b64 = line[len(_SIG_PREFIX):].split(" ")
        try:
            sig = base64.b64decode(sig_b64.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise ShouldersError("E_CHECKPOINT_MALFORMED", "a signature is not base64") from None
        if name != key.name or sig[:4] != key.key_id:
            continue  # Another witness's signature: not ours to judge.
        try:
            if len(sig) != 68:
                raise InvalidSignature()
            Ed25519PublicKey.from_public_bytes(key.public_key).verify(sig[4:], text.encode("utf-8"))
        except InvalidSignature:
            raise ShouldersError(
                "E_CHECKPOINT_SIGNATURE", f"the checkpoint's signature by {key.name} does not verify") from None
        verified = True
    if not verified:
        raise ShouldersError("E_CHECKPOINT_SIGNATURE", f"the checkpoint is not signed by {key.name}")
    return _parse_checkpoint(text, key.name, note)


def _parse_checkpoint(text: str, origin: str, note: bytes) -> Checkpoint:
    lines = text.split("\n")
    if len(lines) < 4:
        raise ShouldersError("E_CHECKPOINT_MALFORMED", "a checkpoint is origin, size and root lines")
    if lines[0] != origin:
        raise ShouldersError(
            "E_CHECKPOINT_MALFORMED", f"origin {lines[0]!r} does not match the key name {origin!r}")
    size_text = lines[1]
    if not size_text.isdigit() or not size_text.isascii() or (len(size_text) > 1 and size_text[0] == "0") \
            or int(size_text) > MAX_TREE_SIZE:
        raise ShouldersError("E_CHECKPOINT_MALFORMED", f"tree size {size_text[:40]!r} is not a decimal count")
    root = _b64(lines[2], 32)
    if root is None:
        raise ShouldersError("E_CHECKPOINT_MALFORMED", "the root is not base64 of 32 bytes")
    return Checkpoint(origin=origin, size=int(size_text), root=root, note=note)


def _key_id(name: str, alg_and_key: bytes) -> bytes:
    return hashlib.sha256(name.encode("utf-8") + b"\n" + alg_and_key).digest()[:4]
