"""Log ids: the request ids (``req_id``) of the protocol.

Format ``YYYYMMDDHHMMSS_<nanoid>``: the UTC time to the second, an underscore, and 12
characters of nanoid's URL-safe alphabet drawn from the OS's cryptographic random source.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

__all__ = ["LOG_ID_PATTERN", "generate_log_id"]

_ALPHABET = "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SUFFIX_LENGTH = 12

LOG_ID_PATTERN = re.compile(r"^\d{14}_[A-Za-z0-9_-]{12}$")
"""A compiled pattern that every log id matches."""


def generate_log_id(now: datetime | None = None) -> str:
    """A new log id, e.g. ``20261123143022_AbC123XyZ456`` (``now`` defaults to the UTC clock)."""
    if now is None:
        now = datetime.now(timezone.utc)
    elif now.tzinfo is not None:
        now = now.astimezone(timezone.utc)
    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(_SUFFIX_LENGTH))
    return f"{now:%Y%m%d%H%M%S}_{suffix}"
