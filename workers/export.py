"""Export for fine-tuning: approved records -> train/valid JSONL that OpenAI accepts first time.

How it stays fast, and flat (memory grows neither with the records nor with the users), on
millions of records:

1. One pass over the store in capture-time order (:class:`StoreScanner`: one Lua call per chunk
   returns just the fields needed, consent already applied; the next chunk is requested before
   this one is worked on). Each candidate line is built and checked (PII residue, the cookbook's
   format checks, tokens). Memory holds the users' turns still inside the context window
   (evicted as the scan moves on; a turn's JSON, tokens and checks are computed once and reused
   by every later line that has it as context) and one chunk of candidate lines. Which lines are
   duplicates, and which users contributed, is known to Redis, not to the process
   (:class:`RunLedger`, the export's own keys for its duration), answered one chunk behind so
   that both work at once. Lines that pass go, tagged with their user, to a scratch file; (user,
   intent) pairs to a small binary one.
2. Users are assigned to train or valid (seeded hash of the pseudonym, stratified by each
   user's dominant intent: :mod:`export_split`), so no user is ever on both sides; their intent
   counts are summed from the binary scratch file a range of users at a time (RANGE_BYTES).
3. A second, sequential pass moves the lines as bytes to the train/valid temp files (each
   batch's users' sides and manifest ranks asked of Redis a batch ahead), which become visible
   only when complete (:class:`Staging`). The manifest's pseudonyms are streamed from Redis, sorted.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import time
import uuid
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from middleware.record import iso_z

from .export_check import FORMAT_ERRORS, TokenCounter, chat_errors, message_errors, prompt_completion_errors
from .export_io import Row, Staging, StoreScanner, point_latest, sweep_stale
from .export_ledger import RunLedger
from .export_split import MIN_EXAMPLES, SplitPlanner, user_hash
from .runtime import Runtime

log = logging.getLogger("tuneloop.export")

FORMATS = ("chat", "prompt-completion", "nlu")
SOURCES = ("processed", "reviewed", "both")
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


# ---------------------------------------------------------------------------------- statistics

def _token_stats(hist: dict[int, int]) -> dict[str, Any]:
    # a histogram (tokens -> examples), never a list per line: it has at most one entry per
    # token count up to max_tokens_per_example, however many lines there are
    n = sum(hist.values())
    if not n:
        return {"examples": 0, "total": 0, "min": 0, "max": 0, "mean": 0.0, "p50": 0, "p95": 0}
    items = sorted(hist.items())
    total = sum(v * c for v, c in items)

    def rank(k: int) -> int:   # the k-th smallest (0-based)
        seen = 0
        for v, c in items:
            seen += c
            if seen > k:
                return v
        return items[-1][0]

    return {"examples": n, "total": total, "min": items[0][0], "max": items[-1][0], "mean": round(total / n, 1),
            "p50": rank((n - 1) // 2), "p95": rank(min(n - 1, int(n * 0.95)))}


@dataclass
class SplitStats:
    examples: int = 0
    intents: dict[str, int] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)     # tokens -> examples
    users: set[int] = field(default_factory=set)
    n_users: int | None = None     # when known without listing them

    def add(self, pidx: int, intent: str, tok: int) -> None:
        self.examples += 1
        self.intents[intent] = self.intents.get(intent, 0) + 1
        self.tokens[tok] = self.tokens.get(tok, 0) + 1
        self.users.add(pidx)

    def public(self) -> dict[str, Any]:
        return {"examples": self.examples, "users": len(self.users) if self.n_users is None else self.n_users,
                "intents": dict(sorted(self.intents.items())), "tokens": _token_stats(self.tokens)}


# ---------------------------------------------------------------------------------- the builder

_NO_ERRORS: frozenset[str] = frozenset()
_NO_CONTENT = frozenset({"missing_content"})
_REPLIED = ["(in frag)"]     # a prepared turn's replies: only ever tested for truth


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
        self.errors: frozenset[str]           # their format errors (shared sets: thousands of turns)


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
        self._sys_errors: frozenset[str] = frozenset().union(*(message_errors(m) for m in self.system))

    def _message_tokens(self, m: dict[str, Any]) -> int:
        count = self.counter.count
        return 3 + count(m["role"]) + count(m["content"])

    def _prepare(self, t: Turn) -> None:
        # The same text _dumps gives for {"role": ..., "content": ...}, without building dicts:
        # ensure_ascii=False encodes strings with encode_basestring.
        count = self.counter.count
        t.frag = '{"role":"user","content":' + _enc_str(t.content) + "}"
        t.tokens = self._user_tokens + count(t.content)
        t.errors = _NO_ERRORS if t.content else _NO_CONTENT
        if t.replies:
            answer = "\n".join(t.replies)
            t.frag += ',{"role":"assistant","content":' + _enc_str(answer) + "}"
            t.tokens += self._assistant_tokens + count(answer)
            if not answer:
                t.errors = _NO_CONTENT
        # The texts are in frag now, and the residue verdict, when one is needed, was reached
        # before any line used this turn: keep only whether it had a reply (the context window
        # holds thousands of turns).
        t.content = ""
        t.replies = _REPLIED if t.replies else []

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

RANGE_BYTES = 1 << 20   # the split's intent counters for one range of users: its only per-user memory
USER_CHUNK = 8192       # users read, decided and written back at a time


def users_per_range(slots: int) -> int:
    """Users whose intent counters (``slots`` each, 4 bytes) fit RANGE_BYTES, a multiple of USER_CHUNK."""
    return max(USER_CHUNK, RANGE_BYTES // (4 * slots) // USER_CHUNK * USER_CHUNK)


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
    # the export's keys: derived from its history key, which only the export writes
    ledger = RunLedger(rt.handle.sync, rt.keys.export_run(uuid.uuid4().hex[:12]))
    # The scan allocates a few short-lived containers per record; at the default thresholds
    # the collector runs every ~150 records and costs ~15% of the export. Nothing it makes forms
    # cycles, so collect less often while it runs (restored after; it is process-wide, mildly).
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], 100_000), *thresholds[1:])
    try:
        result, scan_started_ms = _run(rt, opts, stage, ledger, progress)
        if not result["success"]:
            stage.abort()
        else:
            final = stage.commit()
            if out_dir is None:
                point_latest(root, final)
                # A user erased while the export was scanning: rewrite it without them before it
                # is used (the erasure answer could not list an export that was not on disk yet).
                if ledger.erased_since(rt.keys.consent_prefix, scan_started_ms):
                    from .export_rebuild import rebuild

                    rebuild(rt)
            result["files"] = {s: str(final / f"{s}.jsonl") for s in SPLITS}
            result["files"]["manifest"] = str(final / "manifest.json")
    except BaseException:
        stage.abort()
        raise
    finally:
        gc.set_threshold(*thresholds)
        ledger.close()
    seconds = time.time() - started
    _record(rt, opts, result, seconds)
    log.info("export %s: success=%s train=%d valid=%d in %.1fs", opts.fmt, result["success"],
             result["train_examples"], result["valid_examples"], seconds)
    return result


class _Batch:
    """One chunk's candidate lines, waiting for the ledger's verdict: line i, its hash, its
    user (1-based into ``users``, the chunk's distinct pseudonyms as JSON string literals),
    intent index and tokens."""

    __slots__ = ("lines", "hashes", "refs", "users", "intents", "tokens")

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.hashes: list[int] = []
        self.refs: list[int] = []
        self.users: list[str] = []
        self.intents: list[int] = []
        self.tokens: list[int] = []


class _Collector:
    """The first pass: each approved record in range is checked and its line becomes a candidate;
    every record with text feeds its user's context. The ledger's verdict on a chunk's candidates
    (:meth:`accept`) writes the new ones, tagged with their user, to the scratch file."""

    def __init__(self, rt: Runtime, opts: Options, write: Callable[[str], Any]) -> None:
        cfg = rt.config.export
        self.opts = opts
        self.builder = LineBuilder(rt, opts.fmt)
        self.residue = ResidueScan(rt.anonymizer)
        self.max_tokens = cfg.max_tokens_per_example
        self.write = write
        self.use_context = opts.fmt == "chat" and cfg.context_minutes > 0 and cfg.context_turns > 0
        self.window = cfg.context_minutes * 60_000 if self.use_context else 0
        self.turns = cfg.context_turns
        self.since = opts.since_ms if opts.since_ms is not None else 0
        # each user's last turns (at most context_turns; a list: a deque allocates 64 slots),
        # least recently active first, while still inside the window
        self.recent: OrderedDict[str, list[Turn]] = OrderedDict()
        self.skipped = dict.fromkeys(("not_approved", "source", "low_confidence", "no_reply",
                                      "consent_inactive", "erased", "pii_residue", "format_error",
                                      "too_many_tokens", "duplicate"), 0)
        self.format_errors: dict[str, int] = {}
        self.intent_names: list[str] = list(rt.config.analysis.intent_names)
        self.intents = {name: i for i, name in enumerate(self.intent_names)}
        self.slots = len(self.intent_names) + 1        # the catalog's intents + anything else
        self.batch = _Batch()
        self._refs: dict[str, int] = {}
        # per line written: (user index within its range) x slots + intent slot, by range of
        # users (the split's input: a range's counters are summed from its own file), moved to
        # the files after each chunk
        self.span = users_per_range(self.slots)
        self.tags: dict[int, array] = {}
        self.accepted = 0

    def feed(self, rows: list[Row], start: int = 0, enough: int | None = None) -> int:
        """A chunk's rows from ``start``, in capture order; with ``enough``, only until the batch
        holds that many candidates (max_examples: what lies past the limit is not counted).
        Returns where it stopped."""
        # hot loop: a million iterations, so attributes are read once per chunk
        skipped, since, window, recent = self.skipped, self.since, self.window, self.recent
        use_context, current, turns = self.use_context, self.residue.version, self.turns
        want = {0: self.opts.source in ("processed", "both"), 1: self.opts.source in ("reviewed", "both")}
        min_conf = self.opts.min_confidence
        need_reply = self.opts.fmt != "nlu"
        lines = self.batch.lines
        n = start
        for ms, user, status, content, replies, ver, intent, conf, reviewed, result in (
                rows if start == 0 else rows[start:]):
            n += 1
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
            if use_context and content:
                if q is None:
                    recent[user] = [turn]
                else:
                    recent.move_to_end(user)
                    q.append(turn)
                    if len(q) > turns:
                        del q[0]
            if enough is not None and len(lines) >= enough:
                break
        if recent and n > start:
            # users idle for longer than the window can never give context again
            horizon = rows[n - 1][0] - window
            while recent and next(iter(recent.values()))[-1].ms < horizon:
                recent.popitem(last=False)
        return n

    def _line(self, user: str, turn: Turn, intent: str, result: str, context: list[Turn]) -> None:
        """The checks of a line that exists: PII residue, format, tokens (duplicates: the ledger)."""
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
        b = self.batch
        ref = self._refs.get(user)
        if ref is None:
            b.users.append(_enc_str(user))   # JSON literals: never a tab or newline, whatever it holds
            ref = self._refs[user] = len(b.users)
        ii = self.intents.get(intent)
        if ii is None:
            name = intent or "unknown"
            ii = self.intents.get(name)
            if ii is None:
                ii = self.intents[name] = len(self.intent_names)
                self.intent_names.append(name)
        b.lines.append(line)
        b.hashes.append(hash(line))   # str hash: 64-bit, stable within this process (and run)
        b.refs.append(ref)
        b.intents.append(ii)
        b.tokens.append(tokens)

    def take(self) -> _Batch:
        """The chunk's candidates, and a fresh batch for the next chunk."""
        b, self.batch = self.batch, _Batch()
        self._refs = {}
        return b

    def accept(self, b: _Batch, verdicts: list[int]) -> None:
        """The ledger's verdict per line: a user index (new: written), -1 (a duplicate), -2 (past
        max_examples)."""
        write, tags, k, span = self.write, self.tags, self.slots, self.span
        last = k - 1
        users = b.users
        n = dups = 0
        for line, ref, ii, tok, p in zip(b.lines, b.refs, b.intents, b.tokens, verdicts, strict=True):
            if p >= 0:
                write(f"{p}\t{ii}\t{tok}\t{users[ref - 1]}\t{line}\n")
                j, q = divmod(p, span)
                t = tags.get(j)
                if t is None:
                    t = tags[j] = array("I")
                t.append(q * k + (ii if ii < last else last))
                n += 1
            elif p == -1:
                dups += 1
        self.accepted += n
        self.skipped["duplicate"] += dups

    def flush_tags(self, path: Callable[[int], Path]) -> None:
        """Append each range's new tags to its file (``path(range number)``)."""
        for j, t in self.tags.items():
            with open(path(j), "ab") as f:
                t.tofile(f)
        self.tags.clear()


def _run(rt: Runtime, opts: Options, stage: Staging, ledger: RunLedger,
         progress: Progress | None) -> tuple[dict[str, Any], int]:
    """(the response, the time the scan started, ms)."""
    scan_started = time.time()
    cfg = rt.config.export
    scanner = StoreScanner(rt.handle.sync, rt.keys, want_result=opts.fmt == "nlu")
    cand_path = stage.scratch_path("candidates")
    tag_files: dict[int, Path] = {}

    def tags_path(j: int) -> Path:
        p = tag_files.get(j)
        if p is None:
            p = tag_files[j] = stage.scratch_path(f"tags{j}")
        return p

    buf: list[str] = []   # a chunk's lines, written at once: one call instead of thousands
    col = _Collector(rt, opts, buf.append)
    lo = max(col.since - col.window, 0)   # turns before `since` still serve as context
    total_hint = scanner.count(lo, opts.until_ms)
    ledger.open(total_hint)
    limit = opts.max_examples
    scanned = 0
    truncated = False
    with open(cand_path, "w", encoding="utf-8", newline="\n") as cand:

        def settle(b: _Batch, verdicts: list[int]) -> None:
            col.accept(b, verdicts)
            cand.write("".join(buf))
            buf.clear()
            col.flush_tags(tags_path)

        waiting: deque[_Batch] = deque()
        for n_ids, rows in scanner.scan(lo, opts.until_ms):
            scanned += n_ids
            if limit is None:
                col.feed(rows)
                b = col.take()
                # answered one chunk behind: Redis checks this chunk while Python builds the next
                if b.lines:
                    ledger.send(b.hashes, b.refs, b.users)
                    waiting.append(b)
                while len(waiting) > 1:
                    settle(waiting.popleft(), ledger.recv())
            else:
                # max_examples: settled as it goes, in pieces of at most the lines still allowed,
                # so that the limit falls exactly where one record at a time would put it
                i = 0
                while i < len(rows) and not truncated:
                    i = col.feed(rows, i, limit - col.accepted)
                    b = col.take()
                    if b.lines:
                        ledger.send(b.hashes, b.refs, b.users, limit - col.accepted)
                        settle(b, ledger.recv())
                    truncated = col.accepted >= limit
            ledger.keep_alive()
            if progress is not None:
                progress(scanned, max(total_hint, scanned))
            if truncated:
                break
        while waiting:
            settle(waiting.popleft(), ledger.recv())
    ledger.check(users_expected=col.accepted > 0)
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
    scan_started_ms = int(scan_started * 1000)
    base = {"train_examples": 0, "valid_examples": 0, "total": total, "files": {}, "format": opts.fmt}
    if total < MIN_EXAMPLES:
        reason = (f"only {total} example(s) to export; OpenAI fine-tuning needs at least {MIN_EXAMPLES}"
                  + _why(skipped))
        return {"success": False, "error": reason, **base, "warnings": warnings, "skipped": skipped}, scan_started_ms

    # -- the split, by user
    planner = _assign(col.slots, ledger, opts, tags_path, stage.scratch_path("users"))
    warnings += planner.warnings
    if total < WARN_EXAMPLES:
        warnings.append(f"only {total} examples: OpenAI recommends at least {WARN_EXAMPLES} for a useful "
                        "fine-tune")

    stats = _route(col.intent_names, planner, ledger, cand_path, stage)
    builder = col.builder
    created = time.time()
    manifest = {
        "version": 1,
        "created_at": iso_z(created),
        "created_at_ms": int(created * 1000),
        # erasures after this instant may have missed the scan: --rebuild compares against it
        "scan_started_at_ms": scan_started_ms,
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
    }
    # who contributed (erasure audits, --rebuild), sorted; the *.users.tsv files map lines to them
    write_manifest(stage.path("manifest.json"), manifest, pseudonyms=ledger.sorted_pseudonyms())
    return {"success": True, "train_examples": stats["train"].examples,
            "valid_examples": stats["valid"].examples, "total": total, "files": {}, "format": opts.fmt,
            "warnings": warnings, "users": {s: stats[s].public()["users"] for s in SPLITS},
            "skipped": skipped}, scan_started_ms


def _intent_counts(path: Path, users: int, k: int) -> array:
    """Examples per (user, intent slot) of one range's users, summed from its tags file."""
    counts = array("I", bytes(4 * k * users))
    with open(path, "rb") as f:
        while raw := f.read(4 * 65536):
            for v in array("I", raw):
                counts[v] += 1
    return counts


def _assign(k: int, ledger: RunLedger, opts: Options, tags_path: Callable[[int], Path],
            users_path: Path) -> SplitPlanner:
    """Each user's side, into the ledger. Users are read in index order, a range at a time: their
    intent counts (k slots) from the range's tags file, their pseudonyms from the ledger; each
    one's stratum, examples and hash go to a scratch file for the planner's second pass."""
    n = ledger.users()
    span = users_per_range(k)
    planner = SplitPlanner(opts.train_split, opts.seed)
    seed = opts.seed
    with open(users_path, "wb") as uf:
        for lo in range(0, n, span):
            hi = min(n, lo + span)
            counts = _intent_counts(tags_path(lo // span), hi - lo, k)
            for a in range(lo, hi, USER_CHUNK):
                b = min(hi, a + USER_CHUNK)
                strata, examples, hashes = array("H"), array("I"), array("Q")
                off = (a - lo) * k
                for p in ledger.pseudonyms(a, b):
                    row = counts[off:off + k]
                    off += k
                    s = max(range(k), key=row.__getitem__)   # the first of the most frequent
                    e = sum(row)
                    h = user_hash(seed, p)
                    planner.count(s, h, e)
                    strata.append(s)
                    examples.append(e)
                    hashes.append(h)
                if len(strata) != b - a:
                    raise RuntimeError("the export's user list in Redis changed while it ran")
                uf.write(strata.tobytes() + examples.tobytes() + hashes.tobytes())
    planner.plan()
    decide = planner.decide
    with open(users_path, "rb") as uf:
        for a in range(0, n, USER_CHUNK):
            m = min(n, a + USER_CHUNK) - a
            strata, examples, hashes = array("H"), array("I"), array("Q")
            strata.fromfile(uf, m)
            examples.fromfile(uf, m)
            hashes.fromfile(uf, m)
            bits = bytearray((m + 7) >> 3)
            for i in range(m):
                if decide(a + i, strata[i], hashes[i], examples[i]):
                    bits[i >> 3] |= 0x80 >> (i & 7)
            if any(bits):
                ledger.write_sides(a, bytes(bits))
            ledger.keep_alive()
    for index, side in planner.finish():
        ledger.set_side(index, side)
    return planner


def _route(intent_names: list[str], planner: SplitPlanner, ledger: RunLedger, cand_path: Path,
           stage: Staging) -> dict[str, SplitStats]:
    """The second pass: each line to its user's side, in the order read, plus the sidecars.

    Bytes in, bytes out: a line is never decoded again. Lines are read a batch at a time; the
    sides and manifest ranks of a batch's users are asked of the ledger a batch ahead.
    """
    name_of = {str(i).encode(): n.encode() for i, n in enumerate(intent_names)}
    examples = [0, 0]
    intents: list[dict[bytes, int]] = [{}, {}]
    tokens: list[dict[bytes, int]] = [{}, {}]
    outs = [open(stage.path(f"{s}.jsonl"), "wb") for s in SPLITS]
    # line i of <split>.jsonl: its user (index into the manifest's pseudonyms), intent, tokens
    sidecars = [open(stage.path(f"{s}.users.tsv"), "wb") for s in SPLITS]

    def route(rows: list[list[bytes]], keys: list[bytes], answer: list[int]) -> None:
        look = {p: (v & 1, b"%d\t" % (v >> 1)) for p, v in zip(keys, answer, strict=True)}
        data: tuple[list[bytes], list[bytes]] = ([], [])
        tags: tuple[list[bytes], list[bytes]] = ([], [])
        for p, ii, tok, _, line in rows:
            k, rank = look[p]
            data[k].append(line)
            tags[k].append(rank + name_of[ii] + b"\t" + tok + b"\n")
            d = intents[k]
            d[ii] = d.get(ii, 0) + 1
            d = tokens[k]
            d[tok] = d.get(tok, 0) + 1
        for k in (0, 1):
            if data[k]:
                examples[k] += len(data[k])
                outs[k].write(b"".join(data[k]))
                sidecars[k].write(b"".join(tags[k]))

    try:
        with open(cand_path, "rb") as cand:
            ahead: tuple[list[list[bytes]], list[bytes]] | None = None
            while True:
                rows = [raw.split(b"\t", 4) for raw in cand.readlines(1 << 20)]
                if rows:
                    users: dict[bytes, bytes] = {}
                    for r in rows:
                        if r[0] not in users:
                            users[r[0]] = r[3]
                    keys = list(users)
                    ledger.send_sides(keys, list(users.values()))
                if ahead is not None:
                    route(ahead[0], ahead[1], ledger.recv_sides())
                if not rows:
                    break
                ahead = (rows, keys)
                ledger.keep_alive()
        for f in (*outs, *sidecars):
            f.flush()
            os.fsync(f.fileno())
    finally:
        for f in (*outs, *sidecars):
            f.close()
    n_valid = planner.valid_users
    return {s: SplitStats(examples=examples[k],
                          intents={intent_names[int(ii)]: c for ii, c in intents[k].items()},
                          tokens={int(t): c for t, c in tokens[k].items()},
                          n_users=planner.n - n_valid if k == 0 else n_valid)
            for k, s in enumerate(SPLITS)}


def write_manifest(path: Path, manifest: dict[str, Any], pseudonyms: Iterable[list[str]] | None = None) -> None:
    """The manifest; ``pseudonyms``, when given, is streamed in as its last key (per-user data,
    never held whole): the same text as json.dump with the list inside."""
    with open(path, "w", encoding="utf-8") as f:
        if pseudonyms is None:
            json.dump(manifest, f, ensure_ascii=False, indent=1)
        else:
            head = json.dumps(manifest, ensure_ascii=False, indent=1)
            f.write((head[:-2] + ",\n" if manifest else "{\n") + ' "pseudonyms": [')
            sep = "\n  "
            for chunk in pseudonyms:
                if chunk:
                    f.write(sep + ",\n  ".join(_enc_str(p) for p in chunk))
                    sep = ",\n  "
            f.write("]\n}" if sep == "\n  " else "\n ]\n}")
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
