"""The record schema (SURFACE.md, "The record"): one module owns it.

A record is written once as a Redis hash with a few compact fields, then moves between statuses
by id. ``to_hash``/``from_hash`` are the only place that knows the field layout.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["pending", "approved", "needs_review", "rejected"]
PII_TYPES = ("PHONE", "EMAIL", "ADDRESS", "ID", "ACCOUNT", "NAME")

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


_last_in_ms: dict[int, int] = {}   # ms -> the last id made in it (the most recent few ms)
_ulid_lock = threading.Lock()


def new_record_id(now_ms: int | None = None) -> str:
    """A ULID (time-ordered, 48-bit ms + 80 random bits) as ``r_<26 chars>``.

    Monotonic within a millisecond, as the ULID spec's monotonic mode: ids this process makes for
    the same millisecond (of the last 256 it saw) sort in the order they were made, so the time
    index (ties broken by id) keeps a user's turns in order for context rebuilding. Written out
    rather than adding a dependency for 20 lines.
    """
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _ulid_lock:
        last = _last_in_ms.get(ms)
        n = last + 1 if last is not None else (ms << 80) | int.from_bytes(os.urandom(10), "big")
        _last_in_ms[ms] = n
        if len(_last_in_ms) > 256:
            del _last_in_ms[next(iter(_last_in_ms))]
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[n & 31])
        n >>= 5
    return "r_" + "".join(reversed(out))


def iso_z(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


class Analysis(BaseModel):
    """The seed's flat analysis object."""

    model_config = ConfigDict(extra="allow")

    intent: str
    product: str | None = None
    size: str | None = None
    glaseo_percentage: int | None = None
    incoterm: str | None = None
    destination: str | None = None
    quantity: str | None = None
    confidence: float = Field(ge=0, le=1)


class Record(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    user_id: str                      # the pseudonym (the seed's field name)
    channel: str
    role: str = "user"
    content: str
    original_length: int
    reply: list[str] = Field(default_factory=list)
    pii: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(PII_TYPES, 0))
    metadata: dict[str, Any] = Field(default_factory=dict)
    consent_version: str | None = None
    captured_at: str
    status: Status = "pending"
    detector_version: str | None = None
    analysis: dict[str, Any] | None = None
    analyzer: str | None = None
    qa_passed: bool | None = None
    qa_errors: list[str] = Field(default_factory=list)
    processed_at: str | None = None
    reviewed_by: str | None = None
    reviewed_at: str | None = None

    @property
    def captured_ms(self) -> int:
        return int(parse_iso(self.captured_at) * 1000)

    def public(self) -> dict[str, Any]:
        """What `tuneloop records` and the API show: the record without empty review fields."""
        d = self.model_dump()
        for k in ("reviewed_by", "reviewed_at"):
            if d[k] is None:
                d.pop(k)
        return d


# Hash fields. Short names keep Redis memory per record near its JSON size.
F_USER, F_TIME, F_STATUS, F_CAPTURE, F_RESULT = "u", "t", "s", "c", "a"
_CAPTURE_KEYS = ("channel", "role", "content", "original_length", "reply", "pii", "metadata",
                 "consent_version", "captured_at", "detector_version")
_RESULT_KEYS = ("analysis", "analyzer", "qa_passed", "qa_errors", "processed_at", "reviewed_by",
                "reviewed_at")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def capture_fields(rec: Record) -> dict[str, str]:
    """The fields written once at capture time."""
    d = rec.model_dump(include=set(_CAPTURE_KEYS))
    return {F_USER: rec.user_id, F_TIME: str(rec.captured_ms), F_STATUS: rec.status,
            F_CAPTURE: _dumps(d)}


def result_field(rec: Record, **override: Any) -> str:
    """The analysis/QA/review part, rewritten when a worker or a reviewer acts (``override``
    replaces fields in the output without touching the record)."""
    d = {k: getattr(rec, k) for k in _RESULT_KEYS}
    d.update(override)
    return _dumps({k: v for k, v in d.items() if v not in (None, [])})


def to_hash(rec: Record) -> dict[str, str]:
    h = capture_fields(rec)
    if rec.status != "pending" or rec.analysis is not None:
        h[F_RESULT] = result_field(rec)
    return h


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def from_hash(record_id: str, h: dict[Any, Any]) -> Record | None:
    """Rebuild a record from its hash; None for an empty (missing) hash."""
    if not h:
        return None
    g = {_s(k): v for k, v in h.items()}
    data: dict[str, Any] = json.loads(_s(g[F_CAPTURE]))
    if F_RESULT in g:
        data.update(json.loads(_s(g[F_RESULT])))
    data["id"] = record_id
    data["user_id"] = _s(g[F_USER])
    data["status"] = _s(g[F_STATUS])
    return Record.model_validate(data)
