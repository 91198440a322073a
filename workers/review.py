"""Human review of needs_review records: claims and decisions (sync; used by /review, the terminal
and the REST API).

A reviewer first claims a record (``keys.review_claim(id)``, SET NX EX) so two reviewers never
see it at once; a decision is one Lua script (the style of middleware/store.py): the record must
still exist and be needs_review, and nobody else may hold its claim. Cumulative counters count a
record's FIRST routing (analyzed = qa_passed + qa_failed + needs_review), so a review changes
none of them; the "now" sizes follow the status sets by themselves. The day's ``reviewed`` and
``review_approved`` fields feed the funnel chart.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Literal

from middleware.record import Record, from_hash, iso_z, result_field

from .runtime import Runtime

Action = Literal["approve", "reject", "skip"]
ACTIONS: tuple[str, ...] = ("approve", "reject", "skip")

# Claim a record for a reviewer: only a needs_review record, and a reviewer's own claim is
# renewed (asking again shows the same record instead of stranding it).
# ARGV: prefix, id, reviewer, seconds. Returns 1 when the reviewer holds the claim now.
CLAIM_LUA = r"""
local p, id, who = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', p .. 'r:' .. id, 's') ~= 'needs_review' then return 0 end
local ck = p .. 'review:claim:' .. id
local cur = redis.call('GET', ck)
if cur and cur ~= who then return 0 end
redis.call('SET', ck, who, 'EX', tonumber(ARGV[4]))
return 1
"""

# Drop a reviewer's own claim (skip, quit). ARGV: prefix, id, reviewer.
RELEASE_LUA = r"""
local ck = ARGV[1] .. 'review:claim:' .. ARGV[2]
if redis.call('GET', ck) == ARGV[3] then return redis.call('DEL', ck) end
return 0
"""

# A decision. The new result field is built in Python (middleware.record owns its layout); the
# script applies it only if the result field is still the one it was built from (compare and
# set), the record still exists and is needs_review, and no other reviewer holds the claim.
# ARGV: prefix, id, reviewer, status (approved|rejected), expected a, new a, day.
# Returns 'ok', 'gone' (erased), 'moved' (not needs_review any more), 'claimed' or 'changed'.
DECIDE_LUA = r"""
local p, id, who, status = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local rk = p .. 'r:' .. id
local h = redis.call('HMGET', rk, 's', 'a')
if not h[1] then return 'gone' end
if h[1] ~= 'needs_review' then return 'moved' end
local ck = p .. 'review:claim:' .. id
local cur = redis.call('GET', ck)
if cur and cur ~= who then return 'claimed' end
if (h[2] or '') ~= ARGV[5] then return 'changed' end
redis.call('HSET', rk, 's', status, 'a', ARGV[6])
redis.call('SMOVE', p .. 'status:needs_review', p .. 'status:' .. status, id)
redis.call('DEL', ck)
local daily = p .. 'stats:day:' .. ARGV[7]
redis.call('HINCRBY', daily, 'reviewed', 1)
if status == 'approved' then redis.call('HINCRBY', daily, 'review_approved', 1) end
return 'ok'
"""


class ReviewError(ValueError):
    """A decision that cannot be made as asked (the message says why)."""


class ClaimedElsewhere(ReviewError):
    """Another reviewer holds the record's claim."""


def _call(rt: Runtime, script: str, *args: object) -> object:
    # register_script only hashes the text; EVALSHA loads it on the server's first miss
    return rt.handle.sync.register_script(script)(keys=[], args=[rt.keys.prefix, *args])


def pending_count(rt: Runtime) -> int:
    """How many records wait for review (claimed ones included)."""
    return int(rt.handle.sync.scard(rt.keys.status("needs_review")))


def claim(rt: Runtime, record_id: str, reviewer: str, claim_seconds: int = 600) -> bool:
    return bool(_call(rt, CLAIM_LUA, record_id, reviewer, int(claim_seconds)))


def release(rt: Runtime, record_id: str, reviewer: str) -> bool:
    """Give back a reviewer's claim (another reviewer may take the record at once)."""
    return bool(_call(rt, RELEASE_LUA, record_id, reviewer))


def next_for_review(rt: Runtime, reviewer: str, claim_seconds: int = 600,
                    exclude: Collection[str] = ()) -> Record | None:
    """Claim and return the oldest needs_review record nobody else holds (the reviewer's own
    claim counts as free), skipping ``exclude``; None when there is none."""
    cursor = 0
    while True:
        cursor, ids = rt.store.status_ids("needs_review", cursor, count=200)
        for rid in sorted(i for i in ids if i not in exclude):   # ULIDs: oldest first in a batch
            if not claim(rt, rid, reviewer, claim_seconds):
                continue
            rec = rt.store.get(rid)
            if rec is not None and rec.status == "needs_review":
                return rec
            release(rt, rid, reviewer)   # decided or erased between the claim and the read
        if cursor == 0:
            return None


def decide(rt: Runtime, record_id: str, reviewer: str, action: Action,
           intent: str | None = None) -> Record | None:
    """Apply a reviewer's decision; the record as it is now, or None when it is gone or no
    longer waits for review (erased, or decided by someone else meanwhile).

    approve (with ``intent``: the corrected ``analysis.intent``) moves it to approved, reject to
    rejected, both stamped with ``reviewed_by``/``reviewed_at``; skip only gives back the claim.
    Raises ClaimedElsewhere when another reviewer holds the record, ReviewError for a bad intent
    or an approval that needs one.
    """
    if action not in ACTIONS:
        raise ReviewError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    if intent is not None:
        if action != "approve":
            raise ReviewError("an intent correction approves the record; use action 'approve'")
        if intent not in rt.config.analysis.intent_names:
            raise ReviewError(f"unknown intent {intent!r} (one of {', '.join(rt.config.analysis.intent_names)})")
    if action == "skip":
        release(rt, record_id, reviewer)
        rec = rt.store.get(record_id)
        return rec if rec is not None and rec.status == "needs_review" else None
    for _ in range(5):   # 'changed' only when a concurrent write slipped in: read again
        h = rt.handle.sync.hgetall(rt.keys.record(record_id))
        rec = from_hash(record_id, h)
        if rec is None or rec.status != "needs_review":
            return None
        _apply(rec, reviewer, action, intent)
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        out = _call(rt, DECIDE_LUA, record_id, reviewer, rec.status, h.get(b"a", b"").decode(),
                    result_field(rec), day)
        out = out.decode() if isinstance(out, bytes) else str(out)
        if out == "ok":
            return rec
        if out in ("gone", "moved"):
            return None
        if out == "claimed":
            raise ClaimedElsewhere("another reviewer is looking at this record")
    raise ReviewError("the record keeps changing; try again")


def _apply(rec: Record, reviewer: str, action: str, intent: str | None) -> None:
    if action == "approve":
        if intent is not None:
            if rec.analysis is None:
                # no analysis to correct (the analyzer gave up): the reviewer's label is the analysis
                rec.analysis = {"intent": intent, "product": None, "size": None, "glaseo_percentage": None,
                                "incoterm": None, "destination": None, "quantity": None, "confidence": 1.0}
            else:
                rec.analysis = {**rec.analysis, "intent": intent}
        elif rec.analysis is None:
            raise ReviewError("this record has no analysis: approve it by choosing its intent")
        rec.status = "approved"
    else:
        rec.status = "rejected"
    rec.reviewed_by = reviewer
    rec.reviewed_at = iso_z(time.time())


__all__ = ["ACTIONS", "ClaimedElsewhere", "ReviewError", "claim", "decide", "next_for_review",
           "pending_count", "release"]
