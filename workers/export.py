"""Export for fine-tuning: approved records -> train/valid JSONL that OpenAI accepts first time.

How it stays fast and flat on millions of records:

1. One pass over the store in capture-time order (:class:`StoreScanner`: one Lua call per chunk
   returns just the fields needed, consent already applied; a reader thread keeps a chunk
   ahead). Each candidate line is built, checked (PII residue, the cookbook's format checks,
   tokens, duplicates) and appended to a scratch file. Memory holds the users' turns still
   inside the context window (evicted as the scan moves on; a turn's JSON, tokens and checks are
   computed once and reused by every later line that has it as context), per-user counters,
   10 bytes per line (user, intent, tokens) and 8 bytes per line for deduplication.
2. Users are assigned to train or valid (seeded hash of the pseudonym, stratified by each
   user's dominant intent), so no user is ever on both sides.
3. A second, sequential pass moves the lines as bytes to the train/valid temp files, which
   become visible only when complete (:class:`Staging`).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import sys
import time
from array import array
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from middleware.record import iso_z

from .export_check import FORMAT_ERRORS, TokenCounter, chat_errors, message_errors, prompt_completion_errors
from .export_io import Row, SeenSet, Staging, StoreScanner, point_latest, sweep_stale
from .runtime import Runtime

log = logging.getLogger("tuneloop.export")

FORMATS = ("chat", "prompt-completion", "nlu")
SOURCES = ("processed", "reviewed", "both")
MIN_EXAMPLES = 10      # OpenAI refuses a training file with fewer
WARN_EXAMPLES = 50     # the cookbook's advice: fewer rarely improve a model
SPLITS = ("train", "valid")
Progress = Callable[[int, int], None]

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_enc_str = json.encoder.encode_basestring        # what _dumps uses for a str (ensure_ascii=False)


@dataclass
class Options:
    min_confidence: float
    train_split: float
    fmt: str
    source: str
    seed: int
    max_examples: int | None
    since_ms: int | None
    until_ms: int | None

    def public(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = d.pop("fmt")
        d["since"] = iso_z(self.since_ms / 1000) if self.since_ms is not None else None
        d["until"] = iso_z(self.until_ms / 1000) if self.until_ms is not None else None
        del d["since_ms"], d["until_ms"]
        return d


def _time_ms(v: Any, name: str) -> int | None:
    """A date bound: None, a date, a datetime (naive = UTC), 'YYYY-MM-DD', an ISO time, epoch s."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise ValueError(f"{name} must be a date (YYYY-MM-DD) or an ISO time, got {v!r}")
    if isinstance(v, int | float):
        return int(v * 1000)
    if isinstance(v, str):
        try:
            v = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{name} must be a date (YYYY-MM-DD) or an ISO time, got {v!r}") from None
    if isinstance(v, datetime):
        dt = v if v.tzinfo else v.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    if isinstance(v, date):
        return int(datetime(v.year, v.month, v.day, tzinfo=UTC).timestamp() * 1000)
    raise ValueError(f"{name} must be a date (YYYY-MM-DD) or an ISO time, got {v!r}")


def _fraction(v: Any, name: str, low_open: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{name} must be a number between 0 and 1, got {v!r}")
    v = float(v)
    if not (0 < v <= 1 if low_open else 0 <= v <= 1):
        raise ValueError(f"{name} must be {'greater than 0 and at most 1' if low_open else 'between 0 and 1'}"
                         f", got {v}")
    return v


def make_options(rt: Runtime, min_confidence: Any, train_split: Any, fmt: Any, source: Any, seed: Any,
                 max_examples: Any, since: Any, until: Any) -> Options:
    """Validated options; ValueError naming the bad one."""
    cfg = rt.config.export
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be a whole number, got {seed!r}")
    if max_examples is not None and (isinstance(max_examples, bool) or not isinstance(max_examples, int)
                                     or max_examples <= 0):
        raise ValueError(f"max_examples must be a whole number greater than 0, got {max_examples!r}")
    since_ms, until_ms = _time_ms(since, "since"), _time_ms(until, "until")
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise ValueError("since must be earlier than until")
    return Options(
        min_confidence=_fraction(cfg.min_confidence if min_confidence is None else min_confidence,
                                 "min_confidence"),
        train_split=_fraction(cfg.train_split if train_split is None else train_split, "train_split", True),
        fmt=fmt, source=source, seed=seed, max_examples=max_examples, since_ms=since_ms, until_ms=until_ms)


# ---------------------------------------------------------------------------------- the split

def user_hash(seed: int, pseudonym: str) -> int:
    """The seeded hash that orders users for the split (stable across runs and machines)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{pseudonym}".encode(), digest_size=8).digest(), "big")


def assign_valid(users: list[str], strata: list[int], examples: list[int], split: float,
                 seed: int) -> tuple[bytearray, list[str]]:
    """Which users go to valid (1) or train (0), and warnings.

    Valid gets round(users x (1 - split)) users, at least one and never all of them when there
    are two or more, spread over strata (each user's dominant intent) by largest remainder and
    taken within a stratum by seeded hash. If train would then hold fewer than MIN_EXAMPLES
    examples, valid users move back to train until it does (OpenAI refuses smaller files).
    """
    n = len(users)
    valid = bytearray(n)
    warnings: list[str] = []
    if n == 0:
        return valid, warnings
    frac = 1.0 - split
    if frac <= 0:
        return valid, warnings
    if n == 1:
        warnings.append("the valid split is empty: only one user contributed, and a user is never on "
                        "both sides")
        return valid, warnings
    target = min(max(round(n * frac), 1), n - 1)
    by_stratum: dict[int, list[int]] = {}
    for i, s in enumerate(strata):
        by_stratum.setdefault(s, []).append(i)
    quota = {s: len(m) * frac for s, m in by_stratum.items()}
    take = {s: int(q) for s, q in quota.items()}
    rest = target - sum(take.values())
    order = sorted(by_stratum, key=lambda s: (-(quota[s] - take[s]), user_hash(seed, f"stratum:{s}")))
    while rest > 0:
        moved = False
        for s in order:
            if rest > 0 and take[s] < len(by_stratum[s]):
                take[s] += 1
                rest -= 1
                moved = True
        if not moved:
            break
    for s, members in by_stratum.items():
        members.sort(key=lambda i: user_hash(seed, users[i]))
        for i in members[: take[s]]:
            valid[i] = 1
    train_n = sum(e for i, e in enumerate(examples) if not valid[i])
    if train_n < MIN_EXAMPLES and sum(examples) >= MIN_EXAMPLES:
        back = sorted((i for i in range(n) if valid[i]), key=lambda i: (examples[i], user_hash(seed, users[i])))
        moved = 0
        for i in back:
            if train_n >= MIN_EXAMPLES:
                break
            valid[i] = 0
            train_n += examples[i]
            moved += 1
        warnings.append(f"moved {moved} user(s) from valid to train so that train holds at least "
                        f"{MIN_EXAMPLES} examples")
    if not any(valid):
        warnings.append(f"the valid split is empty: too few users ({n}) to hold out one without leaving "
                        f"train under {MIN_EXAMPLES} examples; a user is never on both sides")
    return valid, warnings


# ---------------------------------------------------------------------------------- statistics

def _token_stats(tokens: array) -> dict[str, Any]:
    # a histogram, not a sorted copy: a million lines would be a 36 MB list of ints
    n = len(tokens)
    if not n:
        return {"examples": 0, "total": 0, "min": 0, "max": 0, "mean": 0.0, "p50": 0, "p95": 0}
    hist = sorted(Counter(tokens).items())
    total = sum(v * c for v, c in hist)

    def rank(k: int) -> int:   # the k-th smallest (0-based)
        seen = 0
        for v, c in hist:
            seen += c
            if seen > k:
                return v
        return hist[-1][0]

    return {"examples": n, "total": total, "min": hist[0][0], "max": hist[-1][0], "mean": round(total / n, 1),
            "p50": rank((n - 1) // 2), "p95": rank(min(n - 1, int(n * 0.95)))}


@dataclass
class SplitStats:
    examples: int = 0
    intents: dict[str, int] = field(default_factory=dict)
    tokens: array = field(default_factory=lambda: array("I"))
    users: set[int] = field(default_factory=set)
    n_users: int | None = None     # when known without listing them

    def add(self, pidx: int, intent: str, tok: int) -> None:
        self.examples += 1
        self.intents[intent] = self.intents.get(intent, 0) + 1
        self.tokens.append(min(tok, 0xFFFFFFFF))
        self.users.add(pidx)

    def public(self) -> dict[str, Any]:
        return {"examples": self.examples, "users": len(self.users) if self.n_users is None else self.n_users,
                "intents": dict(sorted(self.intents.items())), "tokens": _token_stats(self.tokens)}


# ---------------------------------------------------------------------------------- the builder

class Turn:
    """One record as the export sees it. A chat turn's messages are serialized, counted and
    checked once, then reused by each later line that has it as context."""

    __slots__ = ("ms", "content", "replies", "older", "residue", "frag", "tokens", "errors")

    def __init__(self, ms: int, content: str, replies: list[str], older: bool) -> None:
        self.ms = ms
        self.content = content
        self.replies = replies
        self.older = older                    # QA ran with an older detector than today's
        self.residue: bool | None = None      # the strict scan's verdict, once run
        self.frag: str | None = None          # its messages as JSON, comma-joined; then:
        self.tokens: int                      # their tokens
        self.errors: set[str]                 # their format errors


class LineBuilder:
    """Turns one approved record (plus the user's recent turns) into one line of the format."""

    def __init__(self, rt: Runtime, fmt: str) -> None:
        cfg = rt.config.export
        self.fmt = fmt
        self.counter = TokenCounter()
        if fmt == "nlu":
            prompt = (cfg.nlu_system_prompt or rt.config.analysis.system_prompt).strip()
        else:
            prompt = cfg.system_prompt.strip()
        self.system = [{"role": "system", "content": prompt}] if prompt else []
        self.user_label, self.assistant_label = cfg.user_label, cfg.assistant_label
        self._user_tokens = 3 + self.counter.count("user")            # per message: 3 + its role
        self._assistant_tokens = 3 + self.counter.count("assistant")
        self._sys_frags = [_dumps(m) for m in self.system]
        self._sys_tokens = 3 + sum(self._message_tokens(m) for m in self.system)   # 3: reply priming
        self._sys_errors: set[str] = set().union(*(message_errors(m) for m in self.system))

    def _message_tokens(self, m: dict[str, Any]) -> int:
        count = self.counter.count
        return 3 + count(m["role"]) + count(m["content"])

    def _prepare(self, t: Turn) -> None:
        # The same text _dumps gives for {"role": ..., "content": ...}, without building dicts:
        # ensure_ascii=False encodes strings with encode_basestring.
        count = self.counter.count
        t.frag = '{"role":"user","content":' + _enc_str(t.content) + "}"
        t.tokens = self._user_tokens + count(t.content)
        t.errors = set() if t.content else {"missing_content"}
        if t.replies:
            answer = "\n".join(t.replies)
            t.frag += ',{"role":"assistant","content":' + _enc_str(answer) + "}"
            t.tokens += self._assistant_tokens + count(answer)
            if not answer:
                t.errors.add("missing_content")

    def chat(self, t: Turn, context: list[Turn]) -> tuple[str, int, list[str]]:
        """(line, tokens, format errors): exactly _dumps({"messages": [...]}), built from the
        turns' cached pieces."""
        frags = self._sys_frags.copy()
        tokens = self._sys_tokens
        errs = self._sys_errors
        turns = (*context, t) if context else (t,)
        for c in turns:
            if c.frag is None:
                self._prepare(c)
            frags.append(c.frag)  # type: ignore[arg-type]
            tokens += c.tokens
            if c.errors:
                errs = errs | c.errors
        line = '{"messages":[' + ",".join(frags) + "]}"
        if not errs and t.replies:   # the usual case
            return line, tokens, []
        out = [e for e in FORMAT_ERRORS if e in errs]
        if not any(c.replies for c in turns):
            out.append("example_missing_assistant_message")
        return line, tokens, out

    def other(self, t: Turn, analysis: dict[str, Any]) -> tuple[str, int, list[str]]:
        """prompt-completion and nlu lines: no context, nothing to reuse."""
        if self.fmt == "prompt-completion":
            ex: dict[str, Any] = {"prompt": f"{self.user_label}: {t.content}\n{self.assistant_label}:",
                                  "completion": f" {chr(10).join(t.replies)}\n"}
            count = self.counter.count
            return _dumps(ex), count(ex["prompt"]) + count(ex["completion"]), prompt_completion_errors(ex)
        # nlu: the flat analysis object; confidence is the labeler's, not something to learn
        answer = {k: v for k, v in analysis.items() if k != "confidence"}
        msgs = [*self.system, {"role": "user", "content": t.content},
                {"role": "assistant", "content": _dumps(answer)}]
        ex = {"messages": msgs}
        return _dumps(ex), self.counter.messages(msgs), chat_errors(ex)


class ResidueScan:
    """The strict PII scan for records whose QA ran with an older detector than today's."""

    def __init__(self, anonymizer: Any) -> None:
        self.anonymizer = anonymizer
        # The instance's version, else its module's (or package's) DETECTOR_VERSION; None (an
        # anonymizer that does not say): every record counts as older and is scanned.
        version = getattr(anonymizer, "version", None)
        mod = type(anonymizer).__module__
        for name in (mod, mod.rpartition(".")[0]):
            if version is None:
                version = getattr(sys.modules.get(name), "DETECTOR_VERSION", None)
        self.version: str | None = version
        self.scanned = 0

    def found(self, content: str, replies: list[str]) -> bool:
        self.scanned += 1
        detect = self.anonymizer.detect
        return bool(detect(content, profile="strict")) or any(detect(r, profile="strict") for r in replies)


# ---------------------------------------------------------------------------------- export

def export(rt: Runtime, *, min_confidence: float | None = None, train_split: float | None = None,
           fmt: str = "chat", source: str = "processed", seed: int = 0, max_examples: int | None = None,
           since: Any = None, until: Any = None, out_dir: str | Path | None = None,
           progress: Progress | None = None) -> dict[str, Any]:
    """Write train/valid JSONL (+ manifest) and return the seed's export response plus warnings.

    ``out_dir``: write the files into it directly (the CLI's --out); default a new
    ``TUNELOOP_DATA_DIR/finetune/<timestamp>/`` and the ``latest`` link. Fewer than 10 examples is
    ``success: false`` with ``error``; bad options raise ValueError.
    """
    opts = make_options(rt, min_confidence, train_split, fmt, source, seed, max_examples, since, until)
    started = time.time()
    root = Path(rt.env.data_dir) / "finetune"
    if out_dir is not None:
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise ValueError(f"out_dir {str(out)!r} exists and is not a directory")
        stage = Staging(out, fresh=False)
    else:
        from .export_rebuild import recover

        recover(root)
        sweep_stale(root)
        stage = Staging(root / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"), fresh=True)
    # The scan allocates a few short-lived containers per record; at the default thresholds
    # the collector runs every ~150 records and costs ~15% of the export. Nothing it makes forms
    # cycles, so collect less often while it runs (restored after; it is process-wide, mildly).
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], 100_000), *thresholds[1:])
    try:
        result = _run(rt, opts, stage, progress)
        if not result["success"]:
            stage.abort()
        else:
            final = stage.commit()
            if out_dir is None:
                point_latest(root, final)
                _drop_erased_meanwhile(rt, final)
            result["files"] = {s: str(final / f"{s}.jsonl") for s in SPLITS}
            result["files"]["manifest"] = str(final / "manifest.json")
    except BaseException:
        stage.abort()
        raise
    finally:
        gc.set_threshold(*thresholds)
    seconds = time.time() - started
    _record(rt, opts, result, seconds)
    log.info("export %s: success=%s train=%d valid=%d in %.1fs", opts.fmt, result["success"],
             result["train_examples"], result["valid_examples"], seconds)
    return result


class _Collector:
    """The first pass: each approved record in range is checked and its line appended, tagged
    with its user, to the scratch file; every record with text feeds its user's context."""

    def __init__(self, rt: Runtime, opts: Options, write: Callable[[str], Any]) -> None:
        cfg = rt.config.export
        self.opts = opts
        self.builder = LineBuilder(rt, opts.fmt)
        self.residue = ResidueScan(rt.anonymizer)
        self.seen = SeenSet()
        self.max_tokens = cfg.max_tokens_per_example
        self.write = write
        self.use_context = opts.fmt == "chat" and cfg.context_minutes > 0 and cfg.context_turns > 0
        self.window = cfg.context_minutes * 60_000 if self.use_context else 0
        self.turns = cfg.context_turns
        self.since = opts.since_ms if opts.since_ms is not None else 0
        # each user's turns still inside the window, least recently active first
        self.recent: OrderedDict[str, deque[Turn]] = OrderedDict()
        self.skipped = dict.fromkeys(("not_approved", "source", "low_confidence", "no_reply",
                                      "consent_inactive", "erased", "pii_residue", "format_error",
                                      "too_many_tokens", "duplicate"), 0)
        self.format_errors: dict[str, int] = {}
        self.intent_names: list[str] = list(rt.config.analysis.intent_names)
        self.intents = {name: i for i, name in enumerate(self.intent_names)}
        self.slots = len(self.intent_names) + 1        # the catalog's intents + anything else
        self.user_index: dict[str, int] = {}
        self.users: list[str] = []
        self.user_intents = array("I")                 # per user, examples per intent slot (flat)
        # per example, in file order (10 bytes): the second pass then only moves lines
        self.ex_user, self.ex_intent, self.ex_tokens = array("I"), array("H"), array("I")
        self.accepted = 0

    def feed(self, rows: list[Row]) -> bool:
        """One chunk, in capture order. False once max_examples lines are written."""
        # hot loop: a million iterations, so attributes are read once per chunk
        skipped, since, window, recent = self.skipped, self.since, self.window, self.recent
        use_context, current, turns = self.use_context, self.residue.version, self.turns
        want = {0: self.opts.source in ("processed", "both"), 1: self.opts.source in ("reviewed", "both")}
        min_conf = self.opts.min_confidence
        need_reply = self.opts.fmt != "nlu"
        limit = self.opts.max_examples
        for ms, user, status, content, replies, ver, intent, conf, reviewed, result in rows:
            approved = status == "approved" and ms >= since
            if not approved and ms >= since:
                skipped["not_approved"] += 1
            if content.__class__ is int:
                # never exported, never context: erased after capture (1), or consent off (2)
                if approved:
                    skipped["erased" if content == 1 else "consent_inactive"] += 1
                continue
            turn = Turn(ms, content, replies, not ver or ver != current)
            q = recent.get(user) if use_context else None
            if approved:
                if not want[reviewed]:
                    skipped["source"] += 1
                elif not reviewed and (not conf or float(conf) < min_conf):
                    skipped["low_confidence"] += 1    # a person's approval stands whatever it
                elif need_reply and not replies:
                    skipped["no_reply"] += 1
                else:
                    self._line(user, turn, intent, result, [t for t in q if t.ms >= ms - window] if q else [])
                    if limit is not None and self.accepted >= limit:
                        return False
            if use_context and content:
                if q is None:
                    recent[user] = q = deque(maxlen=turns)
                else:
                    recent.move_to_end(user)
                q.append(turn)
        if recent and rows:
            # users idle for longer than the window can never give context again
            horizon = rows[-1][0] - window
            while recent and next(iter(recent.values()))[-1].ms < horizon:
                recent.popitem(last=False)
        return True

    def _line(self, user: str, turn: Turn, intent: str, result: str, context: list[Turn]) -> None:
        """The checks of a line that exists: PII residue, format, tokens, duplicates."""
        skipped = self.skipped
        if turn.older or context:
            for t in (turn, *context):
                if t.older and t.residue is None:
                    t.residue = self.residue.found(t.content, t.replies if self.opts.fmt != "nlu" else [])
                if t.residue:
                    skipped["pii_residue"] += 1
                    return
        if self.opts.fmt == "chat":
            line, tokens, errs = self.builder.chat(turn, context)
        else:
            line, tokens, errs = self.builder.other(turn, _analysis(result))
        if errs:
            skipped["format_error"] += 1
            for e in errs:
                self.format_errors[e] = self.format_errors.get(e, 0) + 1
            return
        if tokens > self.max_tokens:
            skipped["too_many_tokens"] += 1
            return
        if not self.seen.add(hash(line)):   # str hash: 64-bit, stable within this process
            skipped["duplicate"] += 1
            return
        ui = self.user_index.get(user)
        if ui is None:
            ui = self.user_index[user] = len(self.users)
            self.users.append(user)
            self.user_intents.extend([0] * self.slots)
        ii = self.intents.get(intent)
        if ii is None:
            name = intent or "unknown"
            ii = self.intents.get(name)
            if ii is None:
                ii = self.intents[name] = len(self.intent_names)
                self.intent_names.append(name)
        self.user_intents[ui * self.slots + min(ii, self.slots - 1)] += 1
        self.ex_user.append(ui)
        self.ex_intent.append(ii)
        self.ex_tokens.append(min(tokens, 0xFFFFFFFF))
        self.write(f"{ui}\t{line}\n")
        self.accepted += 1

    def strata(self) -> tuple[list[int], list[int]]:
        """Each user's dominant intent slot and example count."""
        strata, examples = [], []
        k = self.slots
        for i in range(len(self.users)):
            row = self.user_intents[i * k:(i + 1) * k]
            strata.append(max(range(k), key=lambda j: (row[j], -j)))
            examples.append(sum(row))
        return strata, examples


def _drop_erased_meanwhile(rt: Runtime, final: Path) -> None:
    """A user erased while the export was scanning: rewrite it without them before it is used
    (the erasure answer could not list an export that was not on disk yet)."""
    from .export_rebuild import _erased_after, rebuild

    manifest = json.loads((final / "manifest.json").read_text(encoding="utf-8"))
    if _erased_after(rt, manifest.get("pseudonyms") or [], int(manifest["scan_started_at_ms"])):
        rebuild(rt)


def _run(rt: Runtime, opts: Options, stage: Staging, progress: Progress | None) -> dict[str, Any]:
    scan_started = time.time()
    cfg = rt.config.export
    scanner = StoreScanner(rt.handle.sync, rt.keys, want_result=opts.fmt == "nlu")
    cand_path = stage.scratch_path("candidates")
    buf: list[str] = []   # a chunk's lines, written at once: one call instead of thousands
    with open(cand_path, "w", encoding="utf-8", newline="\n") as cand:
        col = _Collector(rt, opts, buf.append)
        lo = max(col.since - col.window, 0)   # turns before `since` still serve as context
        total_hint = scanner.count(lo, opts.until_ms)
        scanned = 0
        truncated = False
        for n_ids, rows in scanner.scan(lo, opts.until_ms):
            scanned += n_ids
            truncated = not col.feed(rows)
            cand.write("".join(buf))
            buf.clear()
            if progress is not None:
                progress(scanned, max(total_hint, scanned))
            if truncated:
                break
    skipped = col.skipped
    use_context = col.use_context
    total = col.accepted
    max_tokens = col.max_tokens
    warnings: list[str] = []
    if skipped["no_reply"]:
        warnings.append(f"{skipped['no_reply']} record(s) without a reply skipped ({opts.fmt} needs the "
                        "bot's reply)")
    if skipped["pii_residue"]:
        warnings.append(f"{skipped['pii_residue']} line(s) blocked: the strict PII scan found residue "
                        "(records checked by an older detector)")
    if skipped["too_many_tokens"]:
        warnings.append(f"{skipped['too_many_tokens']} example(s) over {max_tokens} tokens left out")
    if skipped["format_error"]:
        warnings.append(f"{skipped['format_error']} example(s) failed the format checks: {col.format_errors}")
    if truncated:
        warnings.append(f"stopped at max_examples={opts.max_examples}")
    base = {"train_examples": 0, "valid_examples": 0, "total": total, "files": {}, "format": opts.fmt}
    if total < MIN_EXAMPLES:
        reason = (f"only {total} example(s) to export; OpenAI fine-tuning needs at least {MIN_EXAMPLES}"
                  + _why(skipped))
        return {"success": False, "error": reason, **base, "warnings": warnings, "skipped": skipped}

    # -- the split, by user
    users = col.users
    strata, examples = col.strata()
    valid, split_warnings = assign_valid(users, strata, examples, opts.train_split, opts.seed)
    warnings += split_warnings
    if total < WARN_EXAMPLES:
        warnings.append(f"only {total} examples: OpenAI recommends at least {WARN_EXAMPLES} for a useful "
                        "fine-tune")

    stats = _route(col, valid, cand_path, stage)
    builder = col.builder
    created = time.time()
    manifest = {
        "version": 1,
        "created_at": iso_z(created),
        "created_at_ms": int(created * 1000),
        # erasures after this instant may have missed the scan: --rebuild compares against it
        "scan_started_at_ms": int(scan_started * 1000),
        "format": opts.fmt,
        "options": opts.public(),
        "config": {"system_prompt": builder.system[0]["content"] if builder.system else "",
                   "context_minutes": cfg.context_minutes if use_context else 0,
                   "context_turns": cfg.context_turns if use_context else 0,
                   "max_tokens_per_example": max_tokens},
        "counts": {"scanned": scanned, "written": total, "train": stats["train"].examples,
                   "valid": stats["valid"].examples, "skipped": skipped, "format_errors": col.format_errors,
                   "residue_scanned": col.residue.scanned},
        "splits": {s: stats[s].public() for s in SPLITS},
        "tokens": {"method": builder.counter.method, "exact": builder.counter.exact},
        "detector_version": col.residue.version,
        "warnings": warnings,
        "files": {"train": "train.jsonl", "valid": "valid.jsonl",
                  "line_users": {s: f"{s}.users.tsv" for s in SPLITS}},
        # who contributed (erasure audits, --rebuild); the *.users.tsv files map lines to them
        "pseudonyms": sorted(users),
    }
    write_manifest(stage.path("manifest.json"), manifest)
    return {"success": True, "train_examples": stats["train"].examples,
            "valid_examples": stats["valid"].examples, "total": total, "files": {}, "format": opts.fmt,
            "warnings": warnings, "users": {s: stats[s].public()["users"] for s in SPLITS}, "skipped": skipped}


def _route(col: _Collector, valid: bytearray, cand_path: Path, stage: Staging) -> dict[str, SplitStats]:
    """The second pass: each line to its user's side, in the order read, plus the sidecars.

    Bytes in, bytes out: a line is never decoded again; its user, intent and tokens are in the
    collector's arrays.
    """
    users = col.users
    order = sorted(range(len(users)), key=lambda i: users[i])
    pidx = array("I", bytes(4 * len(users)))     # user -> position in the manifest's sorted list
    for p, i in enumerate(order):
        pidx[i] = p
    picked = (array("I"), array("I"))            # example numbers on each side
    outs = [open(stage.path(f"{s}.jsonl"), "wb") for s in SPLITS]
    try:
        with open(cand_path, "rb") as cand:
            bufs: list[list[bytes]] = [[], []]
            for j, raw in enumerate(cand):
                ui, line = raw.split(b"\t", 1)
                k = valid[int(ui)]
                bufs[k].append(line)
                picked[k].append(j)
                if len(bufs[k]) >= 2000:
                    outs[k].write(b"".join(bufs[k]))
                    bufs[k].clear()
            for k in (0, 1):
                outs[k].write(b"".join(bufs[k]))
        for f in outs:
            f.flush()
            os.fsync(f.fileno())
    finally:
        for f in outs:
            f.close()
    names = col.intent_names
    ex_user, ex_intent, ex_tokens = col.ex_user, col.ex_intent, col.ex_tokens
    n_valid_users = sum(valid)
    stats = {}
    for k, s in enumerate(SPLITS):
        js = picked[k]
        # line i of <split>.jsonl: its user (index into the manifest's pseudonyms), intent, tokens
        with open(stage.path(f"{s}.users.tsv"), "w", encoding="utf-8", newline="\n") as f:
            for start in range(0, len(js), 10_000):
                f.write("".join(f"{pidx[ex_user[j]]}\t{names[ex_intent[j]]}\t{ex_tokens[j]}\n"
                                for j in js[start:start + 10_000]))
            f.flush()
            os.fsync(f.fileno())
        counts = [0] * len(names)
        for j in js:
            counts[ex_intent[j]] += 1
        stats[s] = SplitStats(examples=len(js), intents={names[i]: n for i, n in enumerate(counts) if n},
                              tokens=array("I", (ex_tokens[j] for j in js)),
                              n_users=len(users) - n_valid_users if k == 0 else n_valid_users)
    return stats


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())


def _analysis(result: str) -> dict[str, Any]:
    try:
        res = json.loads(result) if result else {}
    except ValueError:
        return {}
    an = res.get("analysis") if isinstance(res, dict) else None
    return an if isinstance(an, dict) else {}


def _why(skipped: dict[str, int]) -> str:
    parts = [f"{k}={v}" for k, v in sorted(skipped.items(), key=lambda kv: -kv[1]) if v]
    return f" (records left out: {', '.join(parts)})" if parts else " (no approved records matched)"


def _record(rt: Runtime, opts: Options, result: dict[str, Any], seconds: float) -> None:
    """The `exported` counter and the history list."""
    summary = {"at": iso_z(time.time()), "success": result["success"], "format": opts.fmt,
               "source": opts.source, "min_confidence": opts.min_confidence, "train_split": opts.train_split,
               "train": result["train_examples"], "valid": result["valid_examples"], "total": result["total"],
               "dir": str(Path(result["files"]["train"]).parent) if result.get("files") else None,
               "seconds": round(seconds, 3)}
    if not result["success"]:
        summary["error"] = result.get("error")
    written = result["train_examples"] + result["valid_examples"] if result["success"] else 0
    pipe = rt.handle.sync.pipeline(transaction=True)
    if written:
        pipe.hincrby(rt.keys.stats, "exported", written)
        pipe.hincrby(rt.keys.daily(datetime.now(UTC).strftime("%Y-%m-%d")), "exported", written)
    pipe.lpush(rt.keys.exports, json.dumps(summary, ensure_ascii=False))
    pipe.ltrim(rt.keys.exports, 0, rt.config.export.history_keep - 1)
    pipe.execute()


def history(rt: Runtime, limit: int = 20) -> list[dict[str, Any]]:
    """The newest export summaries."""
    return [json.loads(x) for x in rt.handle.sync.lrange(rt.keys.exports, 0, limit - 1)]
