"""Pseudonymous user ids: the raw channel id never reaches Redis, disk or logs.

The default is HMAC-SHA256(TUNELOOP_SECRET, "<channel>:<id>") rendered ``u_<32 hex>`` (128 bits:
no collisions in practice, half the bytes of the full digest in every key and record). The
function is pluggable (``TrainingCapture(pseudonymize=...)``): WhatsApp is moving to
business-scoped user ids, and an operator may already have a stable id of their own.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable

from .config import normalize_user_id

Pseudonymize = Callable[[str], str]  # canonical user id ("telegram:42") -> "u_..."

PSEUDONYM_RE = re.compile(r"^u_[0-9a-f]{8,64}$")


class HmacPseudonymizer:
    def __init__(self, secret: str | bytes) -> None:
        self._key = secret.encode() if isinstance(secret, str) else secret

    def __call__(self, user_id: str) -> str:
        return "u_" + hmac.new(self._key, user_id.encode(), hashlib.sha256).hexdigest()[:32]

    def fingerprint(self) -> str:
        """What is stored in Redis to tell whether the same secret wrote the data."""
        return hmac.new(self._key, b"tuneloop fingerprint v1", hashlib.sha256).hexdigest()[:16]


def is_pseudonym(s: str) -> bool:
    return bool(PSEUDONYM_RE.match(s))


def resolve_user(user_id: str, pseudonymize: Pseudonymize) -> str:
    """Accept a user id (``telegram:42``, ``whatsapp:+593...``) or a pseudonym (``u_...``).

    Raises ValueError saying what is wrong.
    """
    s = user_id.strip()
    if is_pseudonym(s):
        return s
    return pseudonymize(normalize_user_id(s))
