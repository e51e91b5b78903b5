"""Actor keys, canonical record bytes and signatures, byte for byte as ``shoulders_record`` makes them.

A record is ``{"body","id","kind","log","sig","signer","ts_ms","v"}`` as canonical JSON (keys
sorted by their UTF-8 bytes, no whitespace, strings escaped as ``serde_json`` does, which for
these ASCII keys is RFC 8785), and its signature is Ed25519 over ``"shoulders/record/v1\\n"``
followed by the same envelope without ``sig``. Ed25519 is deterministic, so the same key,
content and timestamp give the same bytes as ``shoulders sign``.
"""

import json
import os
import secrets
import time
from typing import Any, Optional

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._b64 import decode_exact as _b64decode, encode as _b64
from .errors import ShouldersError

#: Envelope format version (2 signs the ledger's origin in ``log``).
FORMAT_VERSION = 2
#: Prefix of every signed message, so a record signature is never valid for anything else.
SIGNING_DOMAIN = b"shoulders/record/v1\n"
#: Largest record the ledger accepts (``MAX_RECORD_BYTES``): one C2SP tile bundle entry.
MAX_RECORD_BYTES = 65_535
#: Largest integer a record may hold; money is a decimal string of micro-units instead.
MAX_SAFE_INTEGER = 2**53 - 1
#: Longest client id (printable ASCII, no spaces).
MAX_CLIENT_ID_BYTES = 128
#: Deepest nesting canonicalised: no record kind comes close, and it bounds the recursion.
MAX_JSON_DEPTH = 32
#: Largest key file read: a key file is about 150 bytes.
MAX_KEY_FILE_BYTES = 4096
#: Record kinds the ledger defines (``shoulders_record::Kind``).
KINDS = frozenset([
    "actor.register", "actor.update", "dataset.create", "data.contribute", "model.register",
    "license.define", "license.grant", "ledger.config", "ledger.clock", "funds.deposit",
    "funds.withdraw", "usage.receipt", "dispute.open", "dispute.rule", "contribution.review",
])

KEY_FILE_FORMAT = "shoulders-actor-key/v1"


def _check(value: Any, path: str, depth: int) -> Any:
    """A copy of ``value`` the canonical encoder can take, with None-valued members dropped."""
    if depth > MAX_JSON_DEPTH:
        raise ShouldersError("E_RECORD_MALFORMED", f"{path}: nested deeper than {MAX_JSON_DEPTH}")
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, int):
        if value < 0 or value > MAX_SAFE_INTEGER:
            raise ShouldersError(
                "E_RECORD_BAD_NUMBER",
                f"{path}: {value} is outside 0..2^53-1; write money as a decimal string of micro-units")
        return value
    if isinstance(value, float):
        raise ShouldersError(
            "E_RECORD_BAD_NUMBER", f"{path}: {value!r} is a float; records hold integers only")
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ShouldersError("E_RECORD_SCHEMA", f"{path}: object key {k!r} is not a string")
            if v is None:
                continue  # Optional fields that are absent are omitted from canonical bytes.
            out[k] = _check(v, f"{path}.{k}", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_check(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    raise ShouldersError(
        "E_RECORD_SCHEMA", f"{path}: a {type(value).__name__} cannot be written in a record")


def canonical_json(value: Any) -> bytes:
    """Canonical bytes of a JSON value (as ``shoulders_record::canonical_bytes``).

    ``None`` object members are omitted (absent optional fields are not written); floats,
    negative and over-large integers are refused (``E_RECORD_BAD_NUMBER``).
    """
    checked = _check(value, "$", 0)
    # Python escapes exactly what serde_json escapes when ensure_ascii is off: '"', '\\' and
    # the C0 controls (\b \f \n \r \t, the rest as lowercase \u00XX); everything else is UTF-8.
    text = json.dumps(checked, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                      allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ShouldersError("E_RECORD_NOT_UTF8", f"a string holds a lone surrogate: {e}") from None


class ActorKey:
    """An actor's Ed25519 signing key; ``repr`` shows only the public half."""

    def __init__(self, private: Ed25519PrivateKey):
        self._private = private

    @classmethod
    def generate(cls) -> "ActorKey":
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> "ActorKey":
        if not isinstance(seed, (bytes, bytearray)) or len(seed) != 32:
            raise ShouldersError("E_KEY_FILE", "an Ed25519 seed is exactly 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(bytes(seed)))

    def seed(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption())

    def public_key(self) -> bytes:
        return self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def public_key_b64(self) -> str:
        """The key as records name it (``signer``): standard base64 of its 32 bytes."""
        return _b64(self.public_key())

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def to_file_text(self) -> str:
        """The key file ``shoulders key new`` writes (same bytes, so either reads the other's)."""
        return ('{"format":"%s","public_key":"%s","secret_seed":"%s"}\n'
                % (KEY_FILE_FORMAT, self.public_key_b64(), _b64(self.seed())))

    @classmethod
    def from_file_text(cls, text: str) -> "ActorKey":
        try:
            data = json.loads(text.strip())
        except ValueError as e:
            raise ShouldersError("E_KEY_FILE", f"not a shoulders key file: {e}") from None
        if not isinstance(data, dict) or set(data) != {"format", "public_key", "secret_seed"}:
            raise ShouldersError(
                "E_KEY_FILE", "a key file holds exactly format, public_key and secret_seed")
        if data["format"] != KEY_FILE_FORMAT:
            raise ShouldersError("E_KEY_FILE", f"unsupported key file format {data['format']!r}")
        seed = _b64decode(data["secret_seed"], 32)
        if seed is None:
            raise ShouldersError("E_KEY_FILE", "secret_seed must be base64 of 32 bytes")
        key = cls.from_seed(seed)
        if _b64decode(data["public_key"], 32) != key.public_key():
            raise ShouldersError("E_KEY_FILE", "public_key does not match secret_seed")
        return key

    @classmethod
    def load(cls, path: str) -> "ActorKey":
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_KEY_FILE_BYTES + 1)
        except OSError as e:
            raise ShouldersError("E_KEY_FILE", f"{path}: {e.strerror}") from None
        if len(raw) > MAX_KEY_FILE_BYTES:
            raise ShouldersError("E_KEY_FILE", f"{path} is over {MAX_KEY_FILE_BYTES} bytes")
        try:
            return cls.from_file_text(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ShouldersError("E_KEY_FILE", f"{path} is not UTF-8") from None

    def save(self, path: str) -> None:
        """Write the key file with mode 0600; never overwrites an existing file."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as e:
            raise ShouldersError("E_KEY_FILE", f"{path}: {e.strerror}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(self.to_file_text())
            f.flush()
            os.fsync(f.fileno())

    def __repr__(self) -> str:
        return f"ActorKey(public: {self.public_key_b64()})"


def random_client_id() -> str:
    """A fresh idempotency key, as the CLI makes them: 32 hex digits."""
    return secrets.token_hex(16)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _envelope(key: ActorKey, log: str, kind: str, body: Any, client_id: str, ts_ms: int) -> dict:
    if kind not in KINDS:
        raise ShouldersError("E_KIND_UNKNOWN", f"no record kind {kind!r}")
    if not isinstance(body, dict):
        raise ShouldersError("E_RECORD_SCHEMA", "a record body is a JSON object")
    if (not isinstance(client_id, str) or not 1 <= len(client_id) <= MAX_CLIENT_ID_BYTES
            or not all("!" <= c <= "~" for c in client_id)):
        raise ShouldersError(
            "E_FIELD_INVALID",
            f"id: must be 1-{MAX_CLIENT_ID_BYTES} printable ASCII characters without spaces")
    if not isinstance(log, str) or not log:
        raise ShouldersError("E_FIELD_INVALID", "log: the ledger's origin (its checkpoint's first line)")
    if isinstance(ts_ms, bool) or not isinstance(ts_ms, int) or not 0 <= ts_ms <= MAX_SAFE_INTEGER:
        raise ShouldersError("E_FIELD_INVALID", "ts_ms: milliseconds since the epoch, 0..2^53-1")
    return {"v": FORMAT_VERSION, "kind": kind, "log": log, "signer": key.public_key_b64(),
            "id": client_id, "ts_ms": ts_ms, "body": body}


def signing_payload(key: ActorKey, log: str, kind: str, body: Any, client_id: str,
                    ts_ms: int) -> bytes:
    """The exact message a record's signature covers."""
    return SIGNING_DOMAIN + canonical_json(_envelope(key, log, kind, body, client_id, ts_ms))


def sign_record(key: ActorKey, log: str, kind: str, body: Any, client_id: Optional[str] = None,
                ts_ms: Optional[int] = None) -> bytes:
    """Sign ``body`` as a record of ``kind`` for the ledger whose origin is ``log``.

    Returns the record's exact bytes, to POST as they are (``Client.submit``). The body is
    written as given (less ``None`` members): give it in its canonical shape, as the server
    refuses any other encoding of the same content (``E_RECORD_NOT_CANONICAL``): leave out
    absent fields, empty optional lists and ``false`` flags.
    """
    client_id = random_client_id() if client_id is None else client_id
    ts_ms = now_ms() if ts_ms is None else ts_ms
    envelope = _envelope(key, log, kind, body, client_id, ts_ms)
    envelope["sig"] = _b64(key.sign(SIGNING_DOMAIN + canonical_json(envelope)))
    record = canonical_json(envelope)
    if len(record) > MAX_RECORD_BYTES:
        raise ShouldersError(
            "E_RECORD_TOO_LARGE", f"the record is {len(record)} bytes; the limit is {MAX_RECORD_BYTES}")
    return record
