"""Review in the store (workers.review) and in the terminal (`tuneloop review`), on a real Redis."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from rich.console import Console

from bot.review_cli import cli_reviewer, review_loop
from middleware.redis_conn import connect
from tests.conftest import ROOT, SECRET
from tests.harness import sums_hold
from tests.records import seed
from workers import review
from workers.analyzers.base import Outcome
from workers.runtime import Runtime
from workers.stats import daily
from workers.tasks import Processor

ANALYSIS = {"intent": "proforma", "product": "HLSO", "size": "16/20", "glaseo_percentage": 20,
            "incoterm": None, "destination": None, "quantity": None, "confidence": 0.7}


class FixedAnalyzer:
    """Every text gets the same analysis (confidence 0.7: between the review and approve
    thresholds, so QA routes it to needs_review), or the analyzer gives up on it."""

    name = "fixed"

    def __init__(self, give_up: bool = False, confidence: float = 0.7) -> None:
        self.give_up = give_up
        self.analysis = {**ANALYSIS, "confidence": confidence}

    async def analyze_batch(self, texts: list[str]) -> list[Outcome]:
        return [Outcome.review("analyzer_refused") if self.give_up else Outcome.ok(dict(self.analysis))
                for _ in texts]


def to_review(rt: Runtime, n: int, users: list[str] | None = None, give_up: bool = False) -> list[str]:
    ids = seed(rt.store, users or [rt.pseudonymizer("telegram:1"), rt.pseudonymizer("telegram:2")], n)
    res = Processor(rt, FixedAnalyzer(give_up)).process(ids)
    assert res.needs_review == n
    return ids


@pytest.fixture
def rt(config, env) -> Runtime:
    return Runtime(config, env, connect(env))


def test_claims_keep_two_reviewers_apart(rt, rconn):
    ids = to_review(rt, 3)
    a = review.next_for_review(rt, "u_alice")
    b = review.next_for_review(rt, "u_bob")
    assert a is not None and b is not None and a.id != b.id
    assert a.id == min(ids)   # oldest first
    # asking again shows a reviewer their own record, not a new one
    assert review.next_for_review(rt, "u_alice").id == a.id
    assert rconn.get(rt.keys.review_claim(a.id)) == b"u_alice"
    assert 0 < rconn.ttl(rt.keys.review_claim(a.id)) <= 600
    c = review.next_for_review(rt, "u_carol")
    assert c is not None and c.id not in (a.id, b.id)
    assert review.next_for_review(rt, "u_dave") is None   # all three claimed
    # an expired claim frees the record
    rconn.delete(rt.keys.review_claim(a.id))
    assert review.next_for_review(rt, "u_dave").id == a.id
    # another reviewer cannot decide a claimed record
    with pytest.raises(review.ClaimedElsewhere):
        review.decide(rt, b.id, "u_alice", "approve")
    assert rt.store.get(b.id).status == "needs_review"


def test_concurrent_reviewers_never_share_a_record(rt):
    from concurrent.futures import ThreadPoolExecutor

    to_review(rt, 5)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: review.next_for_review(rt, f"u_rev{i}"), range(8)))
    ids = [r.id for r in got if r is not None]
    assert len(ids) == 5 and len(set(ids)) == 5


def test_decisions_move_stamp_and_keep_counters(rt, rconn):
    ids = to_review(rt, 4)
    before = sums_hold(rt)
    first = review.next_for_review(rt, "u_rev")
    rec = review.decide(rt, first.id, "u_rev", "approve")
    assert rec.status == "approved" and rec.reviewed_by == "u_rev" and rec.reviewed_at.endswith("Z")
    stored = rt.store.get(first.id)
    assert stored.status == "approved" and stored.reviewed_by == "u_rev"
    assert stored.analysis == ANALYSIS and stored.qa_errors == ["low_confidence"]   # QA's reasons stay
    assert rconn.sismember(rt.keys.status("approved"), first.id)
    assert not rconn.sismember(rt.keys.status("needs_review"), first.id)
    assert not rconn.exists(rt.keys.review_claim(first.id))

    second = review.next_for_review(rt, "u_rev")
    rec = review.decide(rt, second.id, "u_rev", "reject")
    assert rec.status == "rejected" and rt.store.get(second.id).reviewed_by == "u_rev"
    assert rconn.sismember(rt.keys.status("rejected"), second.id)

    third = review.next_for_review(rt, "u_rev")
    rec = review.decide(rt, third.id, "u_rev", "approve", intent="price_quote")
    stored = rt.store.get(third.id)
    assert stored.status == "approved" and stored.analysis == {**ANALYSIS, "intent": "price_quote"}

    fourth = review.next_for_review(rt, "u_rev")
    assert review.decide(rt, fourth.id, "u_rev", "skip").status == "needs_review"
    assert not rconn.exists(rt.keys.review_claim(fourth.id))   # skip gives the claim back
    assert review.next_for_review(rt, "u_other").id == fourth.id

    # a decided record cannot be decided again
    assert review.decide(rt, first.id, "u_rev", "reject") is None
    assert rt.store.get(first.id).status == "approved"
    # cumulative counters count the first routing only; the "now" sizes follow the sets
    after = sums_hold(rt)
    for k in ("captured", "analyzed", "qa_passed", "qa_failed", "needs_review"):
        assert after[k] == before[k]
    assert (after["processed_size"], after["rejected_size"], after["review_size"]) == (2, 1, 1)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    d = daily(rt.handle.sync, rt.keys, [day])[day]
    assert d["reviewed"] == 3 and d["review_approved"] == 2
    assert sorted(i.decode() for i in rconn.zrange(rt.keys.time_index, 0, -1)) == sorted(ids)


def test_record_erased_while_claimed(rt, rconn):
    users = [rt.pseudonymizer("telegram:7")]
    to_review(rt, 1, users)
    rec = review.next_for_review(rt, "u_rev")
    rt.store.withdraw(users[0], "cli")          # the user withdraws while the reviewer looks
    assert not rconn.exists(rt.keys.review_claim(rec.id))
    for action in ("approve", "reject", "skip"):
        assert review.decide(rt, rec.id, "u_rev", action) is None
    assert review.next_for_review(rt, "u_rev") is None
    s = sums_hold(rt)
    assert s["erased"] == 1 and s["review_size"] == 0


def test_bad_decisions_are_refused(rt):
    ids = to_review(rt, 1, give_up=True)      # no analysis: the analyzer gave up
    rec = review.next_for_review(rt, "u_rev")
    assert rec.analysis is None and rec.qa_errors == ["analyzer_refused"]
    with pytest.raises(review.ReviewError, match="intent"):
        review.decide(rt, rec.id, "u_rev", "approve")
    with pytest.raises(review.ReviewError, match="unknown intent"):
        review.decide(rt, rec.id, "u_rev", "approve", intent="shrimp_party")
    with pytest.raises(review.ReviewError):
        review.decide(rt, rec.id, "u_rev", "maybe")   # type: ignore[arg-type]
    assert rt.store.get(ids[0]).status == "needs_review"
    out = review.decide(rt, rec.id, "u_rev", "approve", intent="logistics")
    assert out.status == "approved" and out.analysis["intent"] == "logistics"
    assert out.analysis["confidence"] == 1.0   # the reviewer's own label
    sums_hold(rt)


def test_terminal_review_reads_lines(rt):
    to_review(rt, 5)
    reviewer = cli_reviewer(rt)
    assert reviewer.startswith("cli:") and len(reviewer) == 12
    out = io.StringIO()
    # approve, an unknown answer then reject, skip, intent by number after a bad one, then q
    answers = io.StringIO("a\nx\nr\ns\ni\nnine\n2\nq\n")
    tally = review_loop(rt, reviewer, answers, Console(file=out, width=120))
    assert tally == {"approved": 2, "rejected": 1, "skipped": 1}
    text = out.getvalue()
    assert "low_confidence" in text and "¡Perfecto!" in text and "unknown intent 'nine'" in text
    s = sums_hold(rt)
    assert (s["processed_size"], s["rejected_size"], s["review_size"]) == (2, 1, 2)
    approved = [r for r in rt.store.get_many(rt.store.status_ids("approved")[1]) if r]
    assert {r.reviewed_by for r in approved} == {reviewer}
    assert sorted(r.analysis["intent"] for r in approved) == ["price_quote", "proforma"]
    # quitting gave the claim back: nothing of this reviewer stays claimed
    assert not list(rt.handle.sync.scan_iter(match=f"{rt.keys.prefix}review:claim:*"))


def test_tuneloop_review_with_piped_stdin(rt, config, env, tmp_path):
    import os

    import yaml

    to_review(rt, 2)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True))
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TUNELOOP_"))}
    e.update(REDIS_URL=env.redis_url or "", TUNELOOP_SECRET=SECRET, TUNELOOP_CONFIG=str(cfg),
             TUNELOOP_DATA_DIR=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "bot.cli", "review"], input="r\nr\n", env=e, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "approved 0, rejected 2, skipped 0" in p.stdout
    assert "Nothing else waits for review" in p.stdout
    assert sums_hold(rt)["rejected_size"] == 2
