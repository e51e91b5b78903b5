"""The HTTP client: one method per use case, over the server's REST API (ARCHITECTURE.md,
Server and gateway). Only the standard library's urllib speaks HTTP.
"""

import hashlib
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Union

from ._b64 import encode as _b64
from .errors import (E_CLIENT_RESPONSE, E_CLIENT_TRANSPORT, E_STATEMENT_MISMATCH, ApiError,
                     ShouldersError)
from .records import ActorKey, sign_record
from .verify import Checkpoint, leaf_hash, proof_from_json, verify_checkpoint, verify_inclusion

#: How long one request may take, connecting included, unless the caller says otherwise.
DEFAULT_TIMEOUT_MS = 30_000
#: Largest answer read: a list page is at most the server's 4 MiB budget plus one record.
DEFAULT_MAX_RESPONSE_BYTES = 16 << 20
#: Largest document ``contribute`` sends: the ledger's own limit (``MAX_CONTENT_BYTES``); the
#: server's ``--max-content-bytes`` (16 MiB by default) may be lower and answers E_BODY_TOO_LARGE.
MAX_CONTENT_BYTES = 1 << 30
#: Largest text ``attribute`` sends (the server's ``MAX_ATTRIBUTE_TEXT_BYTES``).
MAX_ATTRIBUTE_TEXT_BYTES = 1 << 20
#: Most lines a statement page holds (the server's page limit).
MAX_PAGE_LINES = 1000


@dataclass(frozen=True)
class VerifiedStatement:
    """A statement page whose every line's cause record is proved to be in the signed log."""

    statement: dict
    next: Optional[str]
    checkpoint: Checkpoint
    #: Log index -> base64 leaf hash of every record the page's lines name, each proved.
    proved: Dict[int, str]


class Client:
    """A ledger server at ``base_url`` (``http://host:port``).

    ``api_key`` (``sk-shoulders-…``, from ``shoulders apikey new``) is needed only by
    ``attribute``; every other read is public and writes carry their own signatures.
    """

    def __init__(self, base_url: str, api_key: Optional[str] = None,
                 timeout_ms: int = DEFAULT_TIMEOUT_MS,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_ms = timeout_ms
        self.max_response_bytes = max_response_bytes
        self._origin: Optional[str] = None

    # -- transport -------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: Optional[bytes] = None,
                 auth: bool = False) -> bytes:
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        if auth and self.api_key:
            headers["authorization"] = "Bearer " + self.api_key
        req = urllib.request.Request(self.base_url + path, data=body, method=method,
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_ms / 1000) as resp:
                return self._read(resp, path)
        except urllib.error.HTTPError as e:
            raise self._api_error(e, path) from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as e:
            raise ShouldersError(
                E_CLIENT_TRANSPORT,
                f"{method} {self.base_url}{path} failed: {getattr(e, 'reason', e)}") from None

    def _read(self, resp, path: str) -> bytes:
        data = resp.read(self.max_response_bytes + 1)
        if len(data) > self.max_response_bytes:
            raise ShouldersError(
                E_CLIENT_RESPONSE,
                f"the answer to {path} is over {self.max_response_bytes} bytes (max_response_bytes)")
        return data

    def _api_error(self, e: "urllib.error.HTTPError", path: str) -> ShouldersError:
        try:
            raw = e.read(self.max_response_bytes + 1)
            err = json.loads(raw)["error"]
            code, message = err["code"], err["message"]
            if isinstance(code, str) and code.startswith("E_") and isinstance(message, str):
                return ApiError(code, message, e.code)
        except (ValueError, KeyError, TypeError, OSError):
            pass
        return ApiError(E_CLIENT_RESPONSE, f"{path} answered HTTP {e.code} without an error code",
                        e.code)

    def _json(self, method: str, path: str, body: Any = None, auth: bool = False) -> Any:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        raw = self._request(method, path, data, auth)
        try:
            return json.loads(raw)
        except ValueError:
            raise ShouldersError(E_CLIENT_RESPONSE, f"the answer to {path} is not JSON") from None

    # -- the log ---------------------------------------------------------------------------

    def checkpoint_note(self) -> bytes:
        """The current signed checkpoint, unverified (a C2SP signed note)."""
        return self._request("GET", "/api/checkpoint")

    def checkpoint(self, verifier_key: str) -> Checkpoint:
        """The current checkpoint, its signature checked with the log's verifier key
        (``D/log.pub``, printed by ``shoulders init``)."""
        return verify_checkpoint(self.checkpoint_note(), verifier_key)

    def origin(self) -> str:
        """The ledger's origin (its checkpoint's first line): every record signs it."""
        if self._origin is None:
            self._origin = self.checkpoint_note().split(b"\n", 1)[0].decode("utf-8", "replace")
        return self._origin

    def record(self, index: int) -> bytes:
        """A record's exact bytes (hash them for its leaf)."""
        return self._request("GET", f"/api/records/{int(index)}")

    def inclusion_proof(self, index: int, size: int) -> dict:
        return self._json("GET", f"/api/proofs/inclusion?index={int(index)}&size={int(size)}")

    def prove_record(self, index: int, checkpoint: Checkpoint) -> bytes:
        """The record at ``index``, proved to be in the tree ``checkpoint`` signs."""
        record = self.record(index)
        proof = proof_from_json(self.inclusion_proof(index, checkpoint.size), index,
                                checkpoint.size)
        verify_inclusion(leaf_hash(record), index, checkpoint.size, proof, checkpoint.root)
        return record

    # -- writes ----------------------------------------------------------------------------

    def submit(self, record: bytes) -> dict:
        """Append a signed record: ``{index, leaf_hash, duplicate}`` once it is durable."""
        return self._json_raw("POST", "/api/records", record)

    def _json_raw(self, method: str, path: str, data: bytes) -> Any:
        raw = self._request(method, path, data)
        try:
            return json.loads(raw)
        except ValueError:
            raise ShouldersError(E_CLIENT_RESPONSE, f"the answer to {path} is not JSON") from None

    def sign_and_submit(self, key: ActorKey, kind: str, body: dict,
                        client_id: Optional[str] = None, ts_ms: Optional[int] = None) -> dict:
        """Sign ``body`` for this server's ledger and append it."""
        return self.submit(sign_record(key, self.origin(), kind, body, client_id, ts_ms))

    def register_actor(self, key: ActorKey, handle: str, name: str, url: Optional[str] = None,
                       payout_address: Optional[str] = None, client_id: Optional[str] = None,
                       ts_ms: Optional[int] = None) -> dict:
        """Bind ``key`` to a new ``handle`` (``actor.register``, self-signed)."""
        body = {"handle": handle, "name": name, "url": url, "payout_address": payout_address}
        return self.sign_and_submit(key, "actor.register", body, client_id, ts_ms)

    def create_dataset(self, key: ActorKey, dataset_id: str, name: str, access: str = "open",
                       description: Optional[str] = None, license_id: Optional[str] = None,
                       client_id: Optional[str] = None, ts_ms: Optional[int] = None) -> dict:
        """Create ``<handle>/<name>`` (``dataset.create``); ``access``: open, owner or allowlist."""
        body = {"dataset_id": dataset_id, "name": name, "access": access,
                "description": description, "license_id": license_id}
        return self.sign_and_submit(key, "dataset.create", body, client_id, ts_ms)

    def contribute(self, key: ActorKey, dataset_id: str, content: Union[str, bytes],
                   title: Optional[str] = None, tdm_reservation: bool = False,
                   client_id: Optional[str] = None, ts_ms: Optional[int] = None) -> dict:
        """Upload a UTF-8 document with its signed ``data.contribute`` record, as
        ``shoulders contribute`` builds it (sizes measured, ``text/plain``).

        Answers ``{index, leaf_hash, duplicate, content_hash}`` once both are durable.
        """
        if isinstance(content, str):
            try:
                data = content.encode("utf-8")
            except UnicodeEncodeError:
                raise ShouldersError("E_CONTENT_NOT_UTF8", "the document holds a lone surrogate") from None
        elif isinstance(content, (bytes, bytearray, memoryview)):
            data = bytes(content)
        else:
            raise ShouldersError("E_FIELD_INVALID", "the document is a str or bytes")
        if not data:
            raise ShouldersError("E_FIELD_INVALID", "the document is empty")
        if len(data) > MAX_CONTENT_BYTES:
            raise ShouldersError(
                "E_CONTENT_TOO_LARGE", f"the document is {len(data)} bytes; the limit is {MAX_CONTENT_BYTES}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ShouldersError(
                "E_CONTENT_NOT_UTF8", "the document is not UTF-8 text; contributions are indexed as UTF-8 bytes") from None
        body = {"dataset_id": dataset_id,
                "content_hash": content_hash(data),
                # Byte-level tokens: every byte is one (infini-gram's u8 mode).
                "byte_size": len(data), "token_count": len(data),
                "media_type": "text/plain", "title": title,
                "tdm_reservation": True if tdm_reservation else None}
        record = sign_record(key, self.origin(), "data.contribute", body, client_id, ts_ms)
        payload = {"record": record.decode("utf-8"), "content": text}
        return self._json_raw("POST", "/api/contributions",
                              json.dumps(payload, ensure_ascii=False).encode("utf-8"))

    # -- money -----------------------------------------------------------------------------

    def statement(self, holder: str, from_ms: Optional[int] = None, to_ms: Optional[int] = None,
                  limit: Optional[int] = None, cursor: Optional[str] = None) -> dict:
        """One page of ``holder``'s statement: ``{holder, lines, by_source, totals, next?}``,
        amounts as decimal strings of micro-units."""
        if limit is not None and not 1 <= limit <= MAX_PAGE_LINES:
            raise ShouldersError("E_PAGE_TOO_LARGE", f"limit must be 1 to {MAX_PAGE_LINES}")
        q = {k: v for k, v in (("from", from_ms), ("to", to_ms), ("limit", limit),
                                ("cursor", cursor)) if v is not None}
        path = "/api/statements/" + urllib.parse.quote(holder, safe="")
        if q:
            path += "?" + urllib.parse.urlencode(q)
        return self._json("GET", path)

    def verified_statement(self, holder: str, verifier_key: str, from_ms: Optional[int] = None,
                           to_ms: Optional[int] = None, limit: Optional[int] = None,
                           cursor: Optional[str] = None) -> VerifiedStatement:
        """A statement page whose lines are each proved against a signed checkpoint.

        For every log index a line names: the record's bytes are fetched, their leaf hash is
        proved (RFC 6962 audit path) to be in the tree the log's key signed, and a line that
        names a usage id must be caused by the receipt of that id. Any failure raises
        (``E_PROOF_INVALID``, ``E_CHECKPOINT_SIGNATURE``, ``E_STATEMENT_MISMATCH``).
        """
        page = self.statement(holder, from_ms, to_ms, limit, cursor)
        # The checkpoint after the statement: the log only grows, so it covers every line.
        cp = self.checkpoint(verifier_key)
        lines = page.get("lines") if isinstance(page, dict) else None
        if not isinstance(lines, list) or len(lines) > MAX_PAGE_LINES:
            raise ShouldersError(E_CLIENT_RESPONSE, "the statement has no list of lines")
        proved: Dict[int, str] = {}
        records: Dict[int, Any] = {}
        for line in lines:
            index = line.get("index") if isinstance(line, dict) else None
            if not isinstance(index, int) or isinstance(index, bool):
                raise ShouldersError(E_CLIENT_RESPONSE, "a statement line names no log index")
            if index not in proved:
                if index >= cp.size:
                    raise ShouldersError(
                        "E_PROOF_INVALID", f"line at index {index} is beyond the signed tree ({cp.size})")
                record = self.prove_record(index, cp)
                proved[index] = _b64(leaf_hash(record))
                records[index] = _parse_record(record, index)
            _check_cause(line, records[index])
        return VerifiedStatement(statement=page, next=page.get("next"), checkpoint=cp,
                                 proved=proved)

    # -- attribution -----------------------------------------------------------------------

    def attribute(self, dataset_id: str, text: str, max_spans: Optional[int] = None) -> dict:
        """Which contributions of ``dataset_id`` a text quotes: spans, sources and shares (ppm).
        Needs the client's ``api_key`` (the server meters attribution per key)."""
        if not isinstance(text, str):
            raise ShouldersError("E_FIELD_INVALID", "text is a str")
        if not text:
            raise ShouldersError("E_TEXT_EMPTY", "text is empty")
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_ATTRIBUTE_TEXT_BYTES:
            raise ShouldersError(
                "E_TEXT_TOO_LARGE", f"text is {size} bytes; the limit is {MAX_ATTRIBUTE_TEXT_BYTES}")
        body: Dict[str, Any] = {"dataset_id": dataset_id, "text": text}
        if max_spans is not None:
            body["max_spans"] = max_spans
        return self._json("POST", "/api/attribute", body, auth=True)


def content_hash(data: bytes) -> str:
    """How records name a document: ``sha256:<hex>`` of its exact bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _parse_record(record: bytes, index: int) -> dict:
    try:
        value = json.loads(record)
    except ValueError:
        raise ShouldersError(E_STATEMENT_MISMATCH, f"the record at {index} is not JSON") from None
    if not isinstance(value, dict) or not isinstance(value.get("body"), dict):
        raise ShouldersError(E_STATEMENT_MISMATCH, f"the record at {index} is not a record")
    return value


def _check_cause(line: dict, record: dict) -> None:
    """A line naming a usage id is caused by the receipt of that id (so a server cannot pin a
    charge on an unrelated, merely included, record)."""
    usage_id = line.get("usage_id")
    if usage_id is None:
        return
    if record.get("kind") != "usage.receipt" or record["body"].get("usage_id") != usage_id:
        raise ShouldersError(
            E_STATEMENT_MISMATCH,
            f"line at index {line['index']} names usage {usage_id!r}, but that record is not its receipt")


__all__: List[str] = ["Client", "VerifiedStatement", "content_hash"]
