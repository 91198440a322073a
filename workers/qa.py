"""QA: each check a small function returning reason codes; routing from the reasons.

A reason is either blocking (the record is rejected) or a review reason (a person looks at it).
Thresholds come from config (``qa``); the catalog from ``analysis``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from middleware.config import Config
from middleware.record import Record

REJECT = "rejected"
REVIEW = "needs_review"
APPROVE = "approved"

_SIZE_RE = re.compile(r"^(?:\d{1,3}/\d{1,3}|U\d{1,2})$")
_COMBINING = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
_NON_WORD = re.compile(r"[^\w\[\]]+")


@dataclass
class Verdict:
    status: str
    errors: list[str] = field(default_factory=list)
    masked_content: str | None = None      # set when PII residue was found and masked
    masked_reply: list[str] | None = None


Check = Callable[[Record, dict[str, Any], Config], list[str]]


def check_schema(rec: Record, a: dict[str, Any], cfg: Config) -> list[str]:
    """The analysis fits the schema and the catalog."""
    errs: list[str] = []
    if a.get("intent") not in cfg.analysis.intent_names:
        errs.append("schema:intent")
    conf = a.get("confidence")
    if not isinstance(conf, int | float) or isinstance(conf, bool) or not 0 <= conf <= 1:
        errs.append("schema:confidence")
    product = a.get("product")
    if product is not None and product not in {p.code for p in cfg.analysis.products}:
        errs.append("catalog:product")
    size = a.get("size")
    if size is not None and not (isinstance(size, str) and _SIZE_RE.match(size)):
        errs.append("catalog:size")
    inc = a.get("incoterm")
    if inc is not None and inc not in cfg.analysis.incoterms:
        errs.append("catalog:incoterm")
    g = a.get("glaseo_percentage")
    if g is not None and (not isinstance(g, int) or isinstance(g, bool) or not 0 <= g <= cfg.analysis.glaseo_max):
        errs.append("catalog:glaseo_percentage")
    for k in ("destination", "quantity"):
        v = a.get(k)
        if v is not None and not isinstance(v, str):
            errs.append(f"schema:{k}")
    return errs


def check_length(rec: Record, a: dict[str, Any], cfg: Config) -> list[str]:
    n = len(rec.content.strip())
    if n < cfg.qa.min_length:
        return ["too_short"]
    if n > cfg.qa.max_length:
        return ["too_long"]
    return []


def confidence_status(conf: float, cfg: Config) -> tuple[str, list[str]]:
    if conf >= cfg.qa.approve_confidence:
        return APPROVE, []
    if conf >= cfg.qa.review_confidence:
        return REVIEW, ["low_confidence"]
    return REJECT, ["confidence_below_threshold"]


def normalized_hash(text: str) -> str:
    """Exact and near duplicates share it: case, accents, punctuation and spacing ignored."""
    t = text.casefold()
    if not t.isascii():   # accents off; a regex over the combining marks (C speed, not per char)
        t = _COMBINING.sub("", unicodedata.normalize("NFKD", t))
    t = " ".join(_NON_WORD.sub(" ", t).split())
    return hashlib.blake2b(t.encode(), digest_size=12).hexdigest()


def mask_spans(text: str, spans: list[Any]) -> str:
    out, pos = [], 0
    for s in sorted(spans, key=lambda s: s.start):
        if s.start < pos:
            continue
        out.append(text[pos:s.start])
        out.append(f"[{s.type}]")
        pos = s.end
    out.append(text[pos:])
    return "".join(out)


class StrictScan:
    """The anonymizer's strict profile, remembering recent reply texts: a bot's replies are
    mostly templates, so the same reply is scanned once, not once per record."""

    def __init__(self, anonymizer: Any, cache_size: int = 4096) -> None:
        self.anonymizer = anonymizer
        self.reply = lru_cache(maxsize=cache_size)(self._scan)

    def _scan(self, text: str) -> tuple[Any, ...]:
        return tuple(self.anonymizer.detect(text, profile="strict"))

    def content(self, text: str) -> list[Any]:
        return list(self.anonymizer.detect(text, profile="strict"))


def residue(rec: Record, scan: Any) -> tuple[str | None, list[str] | None]:
    """The strict detector over content and replies; masked copies when anything is found."""
    if not isinstance(scan, StrictScan):
        scan = StrictScan(scan, cache_size=0)
    found = False
    spans = scan.content(rec.content)
    content = mask_spans(rec.content, spans) if spans else None
    found |= bool(spans)
    replies = []
    for r in rec.reply:
        sp = list(scan.reply(r))
        found |= bool(sp)
        replies.append(mask_spans(r, sp) if sp else r)
    if not found:
        return None, None
    return content, replies


CHECKS: tuple[Check, ...] = (check_schema, check_length)


def judge(rec: Record, analysis: dict[str, Any], cfg: Config, scan: Any) -> tuple[Verdict, Verdict]:
    """Run every check once; returns the verdict if the record is unique and if it turns out to
    be a duplicate (the store decides which applies, atomically with its duplicate index)."""
    errors: list[str] = []
    for check in CHECKS:
        errors += check(rec, analysis, cfg)
    status = REJECT if errors else APPROVE
    conf = analysis.get("confidence")
    if isinstance(conf, int | float) and not isinstance(conf, bool):
        cstatus, cerr = confidence_status(float(conf), cfg)
        errors += cerr
        status = _worst(status, cstatus)
    content, replies = residue(rec, scan)
    v = Verdict(status, errors)
    if content is not None or replies is not None:
        # masked at once, so no residue is ever stored; a person checks the record
        v.errors.append("pii_residue")
        v.status = _worst(v.status, REVIEW)
        v.masked_content = content if content is not None else rec.content
        v.masked_reply = replies if replies is not None else rec.reply
    dup = Verdict(REJECT, [*v.errors, "duplicate"], v.masked_content, v.masked_reply)
    return v, dup


_RANK = {APPROVE: 0, REVIEW: 1, REJECT: 2}


def _worst(a: str, b: str) -> str:
    return a if _RANK[a] >= _RANK[b] else b
