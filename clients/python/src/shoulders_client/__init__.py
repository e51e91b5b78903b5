"""Python client for a shoulders ledger.

Signs records byte for byte as the ``shoulders`` CLI does, uploads contributions, reads account
statements and proves each line against the log's signed checkpoint, and asks for attribution.
Every refusal is a :class:`ShouldersError` with the ledger's stable ``E_…`` code.
"""

from .client import (DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_TIMEOUT_MS, MAX_ATTRIBUTE_TEXT_BYTES,
                     MAX_CONTENT_BYTES, MAX_PAGE_LINES, Client, VerifiedStatement, content_hash)
from .errors import ApiError, ShouldersError
from .records import (FORMAT_VERSION, KINDS, MAX_CLIENT_ID_BYTES, MAX_RECORD_BYTES,
                      MAX_SAFE_INTEGER, SIGNING_DOMAIN, ActorKey, canonical_json,
                      random_client_id, sign_record, signing_payload)
from .verify import (MAX_NOTE_BYTES, MAX_PROOF_HASHES, Checkpoint, VerifierKey, leaf_hash,
                     node_hash, root_from_inclusion, verify_checkpoint, verify_inclusion)

__version__ = "0.1.0"

__all__ = [
    "ActorKey", "ApiError", "Checkpoint", "Client", "ShouldersError", "VerifiedStatement",
    "VerifierKey", "canonical_json", "content_hash", "leaf_hash", "node_hash",
    "random_client_id", "root_from_inclusion", "sign_record", "signing_payload",
    "verify_checkpoint", "verify_inclusion", "DEFAULT_MAX_RESPONSE_BYTES", "DEFAULT_TIMEOUT_MS",
    "FORMAT_VERSION", "KINDS", "MAX_ATTRIBUTE_TEXT_BYTES", "MAX_CLIENT_ID_BYTES",
    "MAX_CONTENT_BYTES", "MAX_NOTE_BYTES", "MAX_PAGE_LINES", "MAX_PROOF_HASHES",
    "MAX_RECORD_BYTES", "MAX_SAFE_INTEGER", "SIGNING_DOMAIN",
]
