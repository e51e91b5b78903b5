"""One exception type carrying the ledger's stable ``E_…`` codes (ARCHITECTURE.md, Error codes).

Callers branch on ``code``, never on the message: codes are stable, messages are for people.
"""

from typing import Optional


class ShouldersError(Exception):
    """A refusal with its stable code; ``status`` is the HTTP status when the server answered."""

    def __init__(self, code: str, message: str, status: Optional[int] = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class ApiError(ShouldersError):
    """The server refused the request: its ``{"error": {"code", "message"}}`` answer."""


# Codes only the client raises (the rest are the server's and the record crate's own).
E_CLIENT_TRANSPORT = "E_CLIENT_TRANSPORT"
E_CLIENT_RESPONSE = "E_CLIENT_RESPONSE"
E_STATEMENT_MISMATCH = "E_STATEMENT_MISMATCH"
