"""Strict base64 shared by the key, record and checkpoint parsers."""

import base64
from typing import Any, Optional


def encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_exact(text: Any, length: int) -> Optional[bytes]:
    """Standard padded base64 of exactly ``length`` bytes in its one canonical spelling, else None."""
    if not isinstance(text, str):
        return None
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        return None
    return raw if len(raw) == length and encode(raw) == text else None
