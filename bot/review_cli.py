"""`tuneloop review`: review needs_review records in the terminal.

Each record shows its anonymized content and replies, the analysis and QA's reasons; the
reviewer answers a(pprove), r(eject), s(kip), i(ntent) or q(uit). Answers are read as lines, so
it works with stdin piped as well as on a terminal. Reviews are recorded as ``cli:<8 hex>``, a
keyed hash of the operator's login: stable per operator, never the login itself.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections import Counter
from typing import TextIO

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from middleware.record import Record
from workers import review
from workers.runtime import Runtime

PROMPT = "[a]pprove  [r]eject  [s]kip  [i]ntent  [q]uit > "


def cli_reviewer(rt: Runtime) -> str:
    try:
        login = getpass.getuser()
    except Exception:   # no login name in this environment (a bare container)
        login = "unknown"
    return "cli:" + rt.pseudonymizer(f"cli:{login}")[2:10]


def render(rec: Record, waiting: int) -> Panel:
    # Text objects, not markup: content such as "[PHONE]" must print as it is
    t = Table.grid(padding=(0, 1))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    t.add_row("user", Text(rec.content))
    for r in rec.reply:
        t.add_row("bot", Text(r))
    a = rec.analysis
    if a:
        t.add_row("analysis", Text(", ".join(f"{k}={v}" for k, v in a.items() if v is not None)))
    else:
        t.add_row("analysis", Text("none (the analyzer gave up): approve by choosing an intent"))
    t.add_row("QA", Text(", ".join(rec.qa_errors) or "no reasons recorded"))
    title = Text(f"{rec.id} · {rec.channel} · {rec.captured_at} · {waiting} waiting")
    return Panel(t, title=title, title_align="left")


def _ask(console: Console, inp: TextIO, prompt: str) -> str | None:
    console.print(Text(prompt), end="")
    try:
        line = inp.readline()
    except KeyboardInterrupt:   # Ctrl-C: quit cleanly, giving the claim back
        line = ""
    if not line:   # end of input: stop, as q would
        console.print()
        return None
    return line.strip()


def _pick_intent(console: Console, inp: TextIO, intents: list[str], given: str) -> str | None:
    """An intent by name or number; asks when none was given on the line. None: back."""
    while True:
        if not given:
            console.print(Text("  ".join(f"{i + 1}) {n}" for i, n in enumerate(intents))))
            got = _ask(console, inp, "intent (name or number, empty to go back) > ")
            if not got:
                return None
            given = got
        if given.isdigit() and 1 <= int(given) <= len(intents):
            return intents[int(given) - 1]
        if given in intents:
            return given
        console.print(Text(f"unknown intent {given!r}", style="red"))
        given = ""


def review_loop(rt: Runtime, reviewer: str, inp: TextIO, console: Console) -> Counter[str]:
    """Review until nothing is left, q, or end of input; the tally of decisions."""
    tally: Counter[str] = Counter()
    skipped: set[str] = set()
    intents = rt.config.analysis.intent_names
    while True:
        rec = review.next_for_review(rt, reviewer, exclude=skipped)
        if rec is None:
            console.print("Nothing " + ("else " if tally else "") + "waits for review."
                          + (f" ({len(skipped)} skipped)" if skipped else ""))
            return tally
        console.print(render(rec, review.pending_count(rt)))
        while True:
            line = _ask(console, inp, PROMPT)
            if line is None or line.lower() in ("q", "quit"):
                review.release(rt, rec.id, reviewer)   # someone else may take it at once
                return tally
            word, _, rest = line.partition(" ")
            word = word.lower()
            action, intent = {"a": "approve", "approve": "approve", "r": "reject", "reject": "reject",
                              "s": "skip", "skip": "skip", "i": "intent", "intent": "intent"}.get(word), None
            if action is None:
                console.print(Text("answer a, r, s, i or q", style="yellow"))
                continue
            if action == "intent":
                intent = _pick_intent(console, inp, intents, rest.strip())
                if intent is None:
                    continue
                action = "approve"
            try:
                out = review.decide(rt, rec.id, reviewer, action, intent)  # type: ignore[arg-type]
            except review.ReviewError as e:
                console.print(Text(str(e), style="yellow"))
                continue
            if action == "skip":
                skipped.add(rec.id)
                tally["skipped"] += 1
            elif out is None:
                console.print(Text("gone: erased or reviewed by someone else meanwhile", style="yellow"))
            else:
                key = "approved" if out.status == "approved" else "rejected"
                tally[key] += 1
                console.print(Text(f"{key}" + (f" as {intent}" if intent else ""), style="green"))
            break


def cmd_review(a: argparse.Namespace) -> int:
    rt = Runtime.load(check=True)
    console = Console(highlight=False)
    tally = review_loop(rt, cli_reviewer(rt), sys.stdin, console)
    console.print(f"approved {tally['approved']}, rejected {tally['rejected']}, skipped {tally['skipped']}")
    return 0
