"""Leak scan: is any of a list of personal data values anywhere tuneloop keeps or logs things?

    scanner = LeakScanner([Pii("PHONE", "099 123 4567"), Pii("EMAIL", "ana@mail.com")])
    scanner.scan_redis(conn, "tuneloop:", queue="tuneloop")    # tuneloop's keys + its RQ queue's
    scanner.scan_dir(data_dir)                                 # exports, spill journal, anything
    scanner.scan_logs(lines)                                   # captured log messages
    report = scanner.report()                                  # report.findings, report.summary()

What counts as found (invariant 2 of ARCHITECTURE.md):

- the exact value, case-insensitively, as a whole (not glued to letters or digits on either
  side); for digit-based values also their compact form ("ES91 2100 ..." -> "ES912100...");
- for digit-based values (phones, accounts, IDs, cards, IBANs, raw user ids) with 7 digits or
  more: 7 consecutive digits of the value inside one number of the scanned text, comparing
  digits only. A number is digits joined by at most two of ``-.()/`` ("098-337-4068"), and such
  groups one space apart ("098 337 4068", "ES91 2100 0418 ...") unless the next group is glued
  to letters ("200 121.8ms" is two numbers). Not numbers people type, so skipped: ISO-8601
  times, UUIDs, hex words, digits inside long letter-and-digit words (pseudonyms, ULIDs), and JSON
  numbers (timestamps, counts), which count only when their digits and the value's contain one
  another whole. A number is evidence for the value(s) it shares the longest run with (a leaked
  IBAN is not also a leak of every IBAN of its bank), and runs that the messages' own
  non-personal numbers hold (``allowed_texts``: an invoice "001-003-000078911" beside an IBAN
  with "0000789") are no evidence.

Redis values are read whatever their type; RQ job payloads are zlib-inflated first; the
HyperLogLog of users seen is binary by design (countable, not listable) and skipped.

`python -m bot.leakscan --dev FILE.jsonl` runs the live pipeline (the app of `bot.serve.build`,
its Telegram and Twilio webhooks, the worker, the export) on labeled messages (`text`, `pii` as
[{type, value}]), each from a synthetic user of its own, half Telegram half WhatsApp, in a
temporary key prefix and data directory that are removed afterwards, and prints how many of the
values (and of the synthetic users' raw ids and profile names) were found, by type and place.
Needs REDIS_URL and TUNELOOP_SECRET. Nothing it reads is written anywhere but that temporary
prefix and directory; OpenAI is never called (the offline rules analyzer runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import shutil
import sys
import tempfile
import time
import unicodedata
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

DIGIT_TYPES = frozenset({"PHONE", "ACCOUNT", "ID", "CARD", "IBAN", "CEDULA", "USER_ID"})
MIN_RUN = 7
_CONTEXT = 40

_WORD = re.compile(r"\w+")
_NON_DIGIT = re.compile(r"\D+")
_COMPACT = re.compile(r"[\s\-.()/]+")
_SPAN = re.compile(r"\d(?:\d|[\-.()/]{1,2}(?=\d))*")     # digits joined by at most two of -.()/
_GAP = re.compile(r"\)?[ \t]\(?")                          # one space between groups: "(04) 238"
# Machine-made, never typed: ISO-8601 times, UUIDs (RQ's job ids), hex words (hashes, SIDs).
_MACHINE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+\-]\d{2}:?\d{2})?)?"
    r"|(?<!\w)[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?!\w)"
    r"|(?<!\w)(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}(?!\w)")
_JSON_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+\-]?\d+)?")
_MACHINE_WORD = 16   # a letter-and-digit word this long is a hash, a pseudonym, an id: not typed


@dataclass(frozen=True)
class Pii:
    type: str
    value: str


@dataclass(frozen=True)
class Finding:
    type: str
    value: str
    where: str       # redis | rq | data | logs
    location: str    # the key, the file (relative), the logger
    rule: str        # exact | digits
    context: str     # the scanned text around it

    def __str__(self) -> str:
        return f"{self.type} {self.value!r} in {self.where}:{self.location} ({self.rule}): …{self.context}…"


@dataclass
class Report:
    scanned_for: int
    findings: list[Finding] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)   # characters scanned per place

    @property
    def found(self) -> set[Pii]:
        return {Pii(f.type, f.value) for f in self.findings}

    def summary(self) -> dict[str, Any]:
        found = self.found
        by_where: dict[str, set[Pii]] = defaultdict(set)
        for f in self.findings:
            by_where[f.where].add(Pii(f.type, f.value))
        return {"scanned_for": self.scanned_for, "found": len(found),
                "by_type": dict(Counter(p.type for p in found)),
                "by_where": {w: len(v) for w, v in sorted(by_where.items())},
                "chars_scanned": dict(self.sizes)}

    def describe(self, limit: int = 40) -> str:
        seen: set[tuple[str, str, str]] = set()
        lines = []
        for f in self.findings:
            k = (f.type, f.value, f.where)
            if k in seen:
                continue
            seen.add(k)
            lines.append(str(f))
            if len(lines) >= limit:
                lines.append(f"... ({len(self.findings)} findings in all)")
                break
        return "\n".join(lines)


def _nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


def _digits(s: str) -> str:
    return _NON_DIGIT.sub("", s)


def _is_word(c: str) -> bool:
    return c.isalnum() or c == "_"


def as_pii(items: Iterable[Pii | tuple[str, str] | dict[str, Any]]) -> list[Pii]:
    out: list[Pii] = []
    seen: set[Pii] = set()
    for it in items:
        if isinstance(it, Pii):
            p = it
        elif isinstance(it, dict):
            p = Pii(str(it["type"]), str(it["value"]))
        else:
            p = Pii(str(it[0]), str(it[1]))
        p = Pii(p.type.upper(), _nfc(p.value.strip()))
        if p.value and p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _machine_glued(text: str, s: int, e: int) -> bool:
    """The number is part of a long word of letters and digits (a hash, a pseudonym, an id)."""
    n = len(text)
    for pos in (s, e - 1):
        a = pos
        while a > 0 and _is_word(text[a - 1]):
            a -= 1
        b = pos + 1
        while b < n and _is_word(text[b]):
            b += 1
        if b - a >= _MACHINE_WORD and not text[a:b].isdigit():
            return True
    return False


def numbers(text: str, min_digits: int = MIN_RUN) -> Iterator[tuple[int, int, str]]:
    """The numbers people type in ``text``, as (start, end, digits), those of ``min_digits`` or more.

    A number: digits joined by at most two of ``-.()/`` ("098-337-4068", "(04)2388368"); and
    such numbers written in groups, one space apart ("098 337 4068", "+593 98 337 4068",
    "ES91 2100 0418 ...", "(04) 2388368"), unless the next group is glued to letters ("200
    121.8ms" is two numbers). ISO-8601 times, UUIDs, hex words and numbers inside long
    letter-and-digit words (hashes, pseudonyms, ULIDs) are machine-made and skipped.
    """
    scan = _MACHINE.sub(lambda m: "#" * len(m.group()), text)
    n = len(scan)
    run: list[tuple[int, int, str]] = []

    def flush() -> Iterator[tuple[int, int, str]]:
        if len(run) > 1:
            d = "".join(x[2] for x in run)
            if len(d) >= min_digits:
                yield run[0][0], run[-1][1], d
        run.clear()

    for m in _SPAN.finditer(scan):
        s, e = m.span()
        if _machine_glued(scan, s, e):
            yield from flush()
            continue
        d = _digits(m.group())
        if len(d) >= min_digits:
            yield s, e, d
        right_glued = e < n and _is_word(scan[e])
        if run and _GAP.fullmatch(scan, run[-1][1], s) and not right_glued:
            run.append((s, e, d))
        else:
            yield from flush()
            run.append((s, e, d))
        if right_glued:
            yield from flush()
    yield from flush()


def _longest_common_run(a: str, b: str, allowed: set[str], min_run: int) -> int:
    """The longest run of digits ``a`` and ``b`` share, not counting runs made only of allowed grams."""
    best = 0
    prev = [0] * (len(b) + 1)
    for i in range(1, len(a) + 1):
        cur = [0] * (len(b) + 1)
        ai = a[i - 1]
        for j in range(1, len(b) + 1):
            if ai == b[j - 1]:
                n = cur[j] = prev[j - 1] + 1
                if n > best and (n < min_run or any(a[k:k + min_run] not in allowed
                                                     for k in range(i - n, i - min_run + 1))):
                    best = n
        prev = cur
    return best if best >= min_run else 0


def _fetch(pipe: Any, t: bytes, k: bytes) -> None:
    """Queue the read of one key of Redis type ``t`` on a pipeline."""
    if t == b"string":
        pipe.get(k)
    elif t == b"hash":
        pipe.hgetall(k)
    elif t == b"set":
        pipe.smembers(k)
    elif t in (b"list", b"zset"):
        (pipe.lrange if t == b"list" else pipe.zrange)(k, 0, -1)
    elif t == b"stream":
        pipe.xrange(k)
    else:
        pipe.exists(k)


def _flatten(t: bytes, v: Any) -> Iterator[bytes]:
    """The bytes of one Redis value of type ``t`` as fetched."""
    if t == b"string":
        yield v or b""
    elif t == b"hash":
        for f, x in v.items():
            yield f
            yield x
    elif t in (b"list", b"set", b"zset"):
        yield from v
    elif t == b"stream":
        for _id, fields in v:
            for f, x in fields.items():
                yield f
                yield x


class LeakScanner:
    """Scans texts, JSON, Redis, directories and logs for a fixed list of values."""

    def __init__(self, pii: Iterable[Pii | tuple[str, str] | dict[str, Any]], min_run: int = MIN_RUN,
                 ignore: Iterable[str] = (), allowed_texts: Iterable[str] = ()) -> None:
        """``ignore``: public values of the operator (config anonymizer.keep_values), blanked before
        a scan. ``allowed_texts``: the scanned messages with their personal data cut out; a digit
        run that their numbers hold (an invoice "001-003-000078911" beside an IBAN's "0000789")
        is what the user wrote besides personal data, kept by design, and no evidence of a leak."""
        self.pii = as_pii(pii)
        self.min_run = min_run
        self.ignore = [_nfc(v) for v in ignore if v and v.strip()]
        self._allowed: set[str] = set()
        for t in allowed_texts:
            for _s, _e, d in numbers(_nfc(t), min_run):
                self._allowed.update(d[k:k + min_run] for k in range(len(d) - min_run + 1))
        self._exact: dict[str, list[tuple[int, str, int]]] = defaultdict(list)   # first word -> (i, variant, offset)
        self._grams: dict[str, set[int]] = defaultdict(set)
        self._vdigits: dict[int, str] = {}
        for i, p in enumerate(self.pii):
            variants = {p.value}
            if p.type in DIGIT_TYPES:
                compact = _COMPACT.sub("", p.value)
                if len(compact) >= 5:
                    variants.add(compact)
                d = _digits(p.value)
                if len(d) >= min_run:
                    self._vdigits[i] = d
                    for k in range(len(d) - min_run + 1):
                        self._grams[d[k:k + min_run]].add(i)
            for v in variants:
                m = _WORD.search(v)
                if m:
                    self._exact[m.group().lower()].append((i, v.lower(), m.start()))
        self._found: dict[tuple[int, str, str, str], Finding] = {}
        self.sizes: Counter[str] = Counter()

    # ------------------------------------------------------------------------------ core rules
    def _add(self, i: int, where: str, location: str, rule: str, text: str, s: int, e: int) -> None:
        key = (i, where, location, rule)
        if key not in self._found:
            p = self.pii[i]
            ctx = text[max(0, s - _CONTEXT):e + _CONTEXT].replace("\n", "⏎")
            self._found[key] = Finding(p.type, p.value, where, location, rule, ctx)

    def _blank_ignored(self, text: str) -> str:
        for v in self.ignore:
            if v in text:
                text = text.replace(v, " " * len(v))
        return text

    def scan_text(self, text: str, where: str, location: str) -> None:
        """Exact values and digit runs in free text."""
        if not text:
            return
        text = self._blank_ignored(_nfc(text))
        self.sizes[where] += len(text)
        variants = [text]
        if "%" in text:
            un = unquote(text)
            if un != text:
                variants.append(un)
        for t in variants:
            self._scan_exact(t, where, location)
            if self._grams:
                self._scan_digits(t, where, location)

    def _scan_exact(self, text: str, where: str, location: str) -> None:
        n = len(text)
        for m in _WORD.finditer(text):
            cands = self._exact.get(m.group().lower())
            if not cands:
                continue
            for i, v, off in cands:
                s = m.start() - off
                e = s + len(v)
                if s < 0 or e > n or text[s:e].lower() != v:
                    continue
                if s > 0 and _is_word(v[0]) and _is_word(text[s - 1]):
                    continue
                if e < n and _is_word(v[-1]) and _is_word(text[e]):
                    continue
                self._add(i, where, location, "exact", text, s, e)

    def _scan_digits(self, text: str, where: str, location: str) -> None:
        mr = self.min_run
        for s, e, d in numbers(text, mr):
            cands: set[int] = set()
            for k in range(len(d) - mr + 1):
                g = d[k:k + mr]
                if g not in self._allowed:
                    cands |= self._grams.get(g, set())
            if not cands:
                continue
            # the number is evidence for the values it shares the longest run with: a leaked
            # IBAN is not also a leak of every IBAN of the same bank
            runs = {i: _longest_common_run(d, self._vdigits[i], self._allowed, mr) for i in cands}
            best = max(runs.values())
            for i, r in runs.items():
                if r >= mr and r == best:
                    self._add(i, where, location, "digits", text, s, e)

    def scan_number(self, raw: str, where: str, location: str) -> None:
        """A machine number (a JSON number, a Redis integer): found only when its digits and a
        value's digits contain one another whole."""
        d = _digits(raw.split("e")[0].split("E")[0])
        self.sizes[where] += len(raw)
        mr = self.min_run
        if len(d) < mr:
            return
        cands: set[int] = set()
        for k in range(len(d) - mr + 1):
            cands |= self._grams.get(d[k:k + mr], set())
        for i in cands:
            vd = self._vdigits[i]
            if d in vd or vd in d:
                self._add(i, where, location, "digits", raw, 0, len(raw))

    def scan_json(self, obj: Any, where: str, location: str) -> None:
        stack = [obj]
        while stack:
            o = stack.pop()
            if isinstance(o, str):
                self.scan_text(o, where, location)
            elif isinstance(o, bool) or o is None:
                continue
            elif isinstance(o, int | float):
                self.scan_number(repr(o), where, location)
            elif isinstance(o, dict):
                for k, v in o.items():
                    stack.append(str(k))
                    stack.append(v)
            elif isinstance(o, list | tuple):
                stack.extend(o)

    def scan_string(self, s: str, where: str, location: str) -> None:
        """A stored string: a number, JSON, or text."""
        st = s.strip()
        if _JSON_NUMBER.fullmatch(st):
            self.scan_number(st, where, location)
            return
        if st[:1] in ("{", "[", '"'):
            try:
                obj = json.loads(st)
            except (ValueError, RecursionError):
                pass
            else:
                self.scan_json(obj, where, location)
                return
        self.scan_text(s, where, location)

    def scan_bytes(self, b: bytes, where: str, location: str) -> None:
        if not b or b.startswith(b"HYLL"):   # a HyperLogLog: registers, no values
            return
        if b[:1] == b"\x78":
            try:
                b = zlib.decompress(b)   # RQ compresses job payloads
            except zlib.error:
                pass
        self.scan_string(b.decode("utf-8", errors="replace"), where, location)

    # ------------------------------------------------------------------------------ places
    def scan_redis(self, conn: Any, prefix: str, queue: str | None = None) -> int:
        """Every key under ``prefix`` and RQ's keys for ``queue``; returns how many keys."""
        # the key prefix and queue name are random test names, not data: never evidence
        self.ignore.extend(v for v in (prefix.rstrip(":"), queue) if v and v not in self.ignore)
        self.ignore.sort(key=len, reverse=True)
        keys: dict[bytes, str] = {}
        for k in conn.scan_iter(match=f"{prefix}*", count=1000):
            keys[k] = "redis"
        if queue:
            for k in rq_keys(conn, queue):
                keys[k] = "rq"
        items = list(keys.items())
        for c in range(0, len(items), 500):
            chunk = items[c:c + 500]
            pipe = conn.pipeline(transaction=False)
            for k, _ in chunk:
                pipe.type(k)
            types = pipe.execute()
            pipe = conn.pipeline(transaction=False)
            for (k, _), t in zip(chunk, types, strict=True):
                _fetch(pipe, t, k)
            for (k, where), t, v in zip(chunk, types, pipe.execute(), strict=True):
                loc = k.decode("utf-8", errors="replace")
                self.scan_text(loc, where, loc)
                for b in _flatten(t, v):
                    self.scan_bytes(b, where, loc)
        return len(items)

    def scan_dir(self, root: str | Path, where: str = "data") -> int:
        """Every regular file under ``root`` (symlinks not followed); returns how many files."""
        root = Path(root)
        n = 0
        if not root.exists():
            return 0
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                p = Path(dirpath) / name
                if p.is_symlink() or not p.is_file():
                    continue
                n += 1
                loc = str(p.relative_to(root))
                self.scan_text(loc, where, loc)
                raw = p.read_bytes()
                if raw[:2] == b"\x1f\x8b":
                    import gzip

                    raw = gzip.decompress(raw)
                text = raw.decode("utf-8", errors="replace")
                if name.endswith(".jsonl"):
                    for line in text.splitlines():
                        self.scan_string(line, where, loc)
                else:
                    self.scan_string(text, where, loc)
        return n

    def scan_logs(self, lines: Iterable[str] | str, where: str = "logs", location: str = "log") -> None:
        if isinstance(lines, str):
            lines = [lines]
        for line in lines:
            self.scan_text(line, where, location)

    def scan_log_records(self, records: Iterable[logging.LogRecord], where: str = "logs") -> None:
        """Log records as they would be written: message, exception and stack text."""
        for r in records:
            parts = [r.getMessage()]
            if r.exc_info and not r.exc_text:
                parts.append(logging.Formatter().formatException(r.exc_info))
            if r.exc_text:
                parts.append(r.exc_text)
            if r.stack_info:
                parts.append(r.stack_info)
            self.scan_text("\n".join(parts), where, r.name)

    def report(self) -> Report:
        return Report(len(self.pii), list(self._found.values()), dict(self.sizes))


def scan(pii: Iterable[Pii | tuple[str, str] | dict[str, Any]], *, redis: Any = None, prefix: str | None = None,
         queue: str | None = None, data_dir: str | Path | None = None,
         logs: Iterable[str] | str | None = None, log_records: Iterable[logging.LogRecord] | None = None,
         ignore: Iterable[str] = (), allowed_texts: Iterable[str] = ()) -> Report:
    """One call: scan a Redis prefix (+ its RQ queue), a directory and log text for the values."""
    s = LeakScanner(pii, ignore=ignore, allowed_texts=allowed_texts)
    if redis is not None and prefix:
        s.scan_redis(redis, prefix, queue)
    if data_dir is not None:
        s.scan_dir(data_dir)
    if logs is not None:
        s.scan_logs(logs)
    if log_records is not None:
        s.scan_log_records(log_records)
    return s.report()


# ---------------------------------------------------------------------------------- the live pipeline

@dataclass(frozen=True)
class Message:
    """One synthetic user's message: ``user`` is a Telegram id (digits) or an E.164 number."""

    channel: str              # telegram | whatsapp
    user: str
    text: str
    first_name: str = "Ana"
    last_name: str | None = None
    lang: str = "es"

    def user_pii(self) -> list[Pii]:
        """The raw id and the profile name: personal data of their own."""
        out = [Pii("USER_ID", self.user)]
        full = " ".join(n for n in (self.first_name, self.last_name) if n)
        if " " in full:
            out.append(Pii("PROFILE_NAME", full))
        return out


TELEGRAM_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def synthetic_telegram_id(rng: random.Random) -> str:
    """Telegram user ids as they are today: 9 or 10 digits."""
    return str(rng.randrange(100_000_000, 8_000_000_000))


def synthetic_whatsapp_number(rng: random.Random, regions: tuple[str, ...] = ("EC", "ES", "US", "MX")) -> str:
    """A valid mobile number (phonenumbers' metadata) in E.164."""
    import phonenumbers

    region = rng.choice(regions)
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    nsn = str(example.national_number)
    while True:
        cand = nsn[:2] + "".join(rng.choice("0123456789") for _ in range(len(nsn) - 2))
        num = phonenumbers.parse("+" + str(example.country_code) + cand)
        if phonenumbers.is_valid_number(num):
            return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def inbound_form(number: str, body: str, name: str | None, n: int) -> dict[str, str]:
    """The form Twilio posts for an inbound WhatsApp text message."""
    sid = f"SM{uuid.UUID(int=n).hex}"
    form = {"SmsMessageSid": sid, "NumMedia": "0", "MessageType": "text", "SmsSid": sid,
            "WaId": number.lstrip("+"), "SmsStatus": "received", "Body": body, "To": "whatsapp:+14155238886",
            "NumSegments": "1", "ReferralNumMedia": "0", "MessageSid": sid,
            "AccountSid": "AC" + "0" * 30 + "01", "From": f"whatsapp:{number}", "ApiVersion": "2010-04-01"}
    if name:
        form["ProfileName"] = name
    return form


def telegram_update(user_id: int, text: str, first_name: str, last_name: str | None, lang: str) -> dict[str, Any]:
    from bot.standins.botapi import message_update

    return message_update(user_id, text, first_name=first_name, last_name=last_name, lang=lang)


def _telegram_request_handler(app: Any) -> Any:
    from bot.app import TELEGRAM_PATH

    for route in app.router.routes():
        if route.method == "POST" and route.resource is not None and route.resource.canonical == TELEGRAM_PATH:
            return getattr(route.handler, "__self__", None)
    return None


@dataclass
class PipelineResult:
    statuses: Counter[str] = field(default_factory=Counter)
    stats: dict[str, int] = field(default_factory=dict)
    processed: dict[str, int] = field(default_factory=dict)
    exports: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


class LivePipeline:
    """The app `tuneloop serve` runs (`bot.serve.build`), driven over HTTP as Telegram and Twilio
    would: ``rt.env`` needs telegram_webhook_secret, twilio_auth_token, public_url, and a
    telegram_api_server answering the bot's sends (bot.standins.botapi)."""

    def __init__(self, rt: Any, concurrency: int = 24) -> None:
        self.rt = rt
        self.concurrency = concurrency
        self.result = PipelineResult()
        self._n = 0

    async def __aenter__(self) -> LivePipeline:
        from aiohttp.test_utils import TestClient, TestServer

        from bot.serve import build

        self.app, self.capture, self.dp, self.bot = build(self.rt)
        await self.capture.start()
        deadline = time.monotonic() + 15
        while not self.capture.core.ready and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if not self.capture.core.ready:
            raise RuntimeError(f"capture is not ready: {self.capture.core.last_check_error}")
        await self.capture.core.cache.wait_subscribed()
        self.client = TestClient(TestServer(self.app))
        await self.client.start_server()
        self.tg_handler = _telegram_request_handler(self.app)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.client.close()
        await self.capture.close()
        if self.bot is not None:
            await self.bot.session.close()

    # ------------------------------------------------------------------------------ sending
    async def post_telegram(self, update: dict[str, Any]) -> int:
        r = await self.client.post("/telegram/webhook", json=update,
                                   headers={TELEGRAM_SECRET_HEADER: self.rt.env.telegram_webhook_secret})
        await r.read()
        self.result.statuses[f"telegram {r.status}"] += 1
        return r.status

    async def post_whatsapp(self, form: dict[str, str]) -> int:
        from twilio.request_validator import RequestValidator

        from bot.app import WHATSAPP_PATH

        url = self.rt.env.public_url.rstrip("/") + WHATSAPP_PATH
        sig = RequestValidator(self.rt.env.twilio_auth_token).compute_signature(url, form)
        r = await self.client.post(WHATSAPP_PATH, data=urlencode(form), headers={
            "X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"})
        await r.read()
        self.result.statuses[f"whatsapp {r.status}"] += 1
        return r.status

    async def say(self, m: Message, text: str) -> int:
        self._n += 1
        if m.channel == "telegram":
            return await self.post_telegram(telegram_update(int(m.user), text, m.first_name, m.last_name, m.lang))
        name = " ".join(n for n in (m.first_name, m.last_name) if n) or None
        return await self.post_whatsapp(inbound_form(m.user, text, name, self._n))

    async def background_done(self, timeout: float = 60.0) -> None:
        """Wait for the Telegram updates aiogram handles in the background."""
        deadline = time.monotonic() + timeout
        tasks = getattr(self.tg_handler, "_background_feed_update_tasks", None)
        while tasks and time.monotonic() < deadline:
            await asyncio.wait(list(tasks), timeout=max(0.01, deadline - time.monotonic()))

    async def send_all(self, messages: list[Message], consent: bool = True) -> None:
        """Consent first (command on Telegram, keyword on WhatsApp), then each user's message."""
        sem = asyncio.Semaphore(self.concurrency)

        async def one(m: Message, text: str) -> None:
            async with sem:
                await self.say(m, text)

        t0 = time.monotonic()
        if consent:
            await asyncio.gather(*(one(m, "/consent yes" if m.channel == "telegram" else "ACEPTO")
                                   for m in messages))
            await self.background_done()
        await asyncio.gather(*(one(m, m.text) for m in messages))
        await self.background_done()
        await self.capture.flush(30)
        self.result.seconds["send"] = time.monotonic() - t0

    # ------------------------------------------------------------------------------ worker, export
    def process(self) -> None:
        from workers.tasks import Processor

        t0 = time.monotonic()
        p = Processor(self.rt)
        total: Counter[str] = Counter()
        for _ in range(10):   # transient analyzer errors come back; the rules analyzer has none
            r = p.process_pending(max_items=100_000).public()
            total.update(r)
            if not r["processed"]:
                break
        self.result.processed = dict(total)
        self.result.seconds["process"] = time.monotonic() - t0

    def export(self) -> None:
        from workers.export import FORMATS, export

        t0 = time.monotonic()
        for fmt in FORMATS:
            out = None if fmt == "chat" else Path(self.rt.env.data_dir) / "exports" / fmt
            res = export(self.rt, min_confidence=0.0, fmt=fmt, source="both", out_dir=out)
            self.result.exports.append({k: res.get(k) for k in ("success", "train_examples", "valid_examples")})
        self.result.seconds["export"] = time.monotonic() - t0

    def counters(self) -> dict[str, int]:
        h = self.rt.handle.sync.hgetall(self.rt.keys.stats)
        self.result.stats = {k.decode(): int(v) for k, v in h.items()}
        return self.result.stats


def run_messages(rt: Any, messages: list[Message], concurrency: int = 24) -> PipelineResult:
    """Send (consent, then each message), process, export. Synchronous: call it off the event loop.
    Without ``rt.env.telegram_api_server`` a Bot API stand-in of its own answers the bot's sends."""
    async def send() -> LivePipeline:
        async with LivePipeline(rt, concurrency) as lp:
            await lp.send_all(messages)
        return lp

    async def main() -> LivePipeline:
        if rt.env.telegram_api_server:
            return await send()
        from bot.standins.botapi import BotAPIStub

        async with BotAPIStub() as stub:
            stub.record = False
            rt.env = rt.env.model_copy(update={"telegram_api_server": stub.base_url})
            try:
                return await send()
            finally:
                rt.env = rt.env.model_copy(update={"telegram_api_server": None})

    lp = asyncio.run(main())
    lp.process()
    lp.export()
    lp.counters()
    return lp.result


# ---------------------------------------------------------------------------------- the dev set CLI

def rq_keys(conn: Any, queue: str) -> list[bytes]:
    """RQ's keys for one queue: its queue and registries, its jobs and their sub-keys and results
    (one SCAN over ``rq:*``, not one per job)."""
    all_rq = list(conn.scan_iter(match="rq:*", count=1000))
    out = [k for k in all_rq if queue.encode() in k]
    jobs = [k for k in all_rq if k.startswith(b"rq:job:") and k.count(b":") == 2]
    pipe = conn.pipeline(transaction=False)
    for k in jobs:
        pipe.hget(k, "origin")
    mine = {k.split(b":", 2)[2] for k, origin in zip(jobs, pipe.execute(), strict=True) if origin == queue.encode()}
    for k in all_rq:
        parts = k.split(b":")
        if len(parts) >= 3 and parts[1] in (b"job", b"results") and parts[2] in mine and k not in out:
            out.append(k)
    return out


def cleanup_redis(conn: Any, prefix: str, queue: str) -> None:
    """Remove every key under ``prefix`` and RQ's keys for ``queue``."""
    from workers.bench_export import cleanup

    cleanup(conn, prefix)
    keys = rq_keys(conn, queue)
    for i in range(0, len(keys), 500):
        conn.unlink(*keys[i:i + 500])
    conn.srem("rq:queues", f"rq:queue:{queue}")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        self.records.append(record)


def without_pii(text: str, pii: Iterable[Pii | tuple[str, str] | dict[str, Any]]) -> str:
    """The message with its personal data cut out (each value becomes a line break)."""
    for p in sorted(as_pii(pii), key=lambda p: -len(p.value)):
        text = _nfc(text).replace(p.value, "\n")
    return text


def load_dev(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
                if limit and len(rows) >= limit:
                    break
    return rows


def dev_messages(rows: list[dict[str, Any]], seed: int = 20240) -> list[Message]:
    """Each row from a synthetic user of its own: even rows Telegram, odd rows WhatsApp."""
    rng = random.Random(seed)
    firsts = ["Lucía", "Mateo", "Valentina", "Santiago", "Camila", "Sebastián", "Emma", "Daniel", "Olivia",
              "Joaquín", "Grace", "Ethan", "Isabella", "Marcus"]
    lasts = ["Zambrano", "Quiñónez", "Villacís", "Carranza", "Ordóñez", "Mendieta", "Holloway", "Whitfield",
             "Benavides", "Arboleda", None]
    out = []
    for i, row in enumerate(rows):
        channel = "telegram" if i % 2 == 0 else "whatsapp"
        user = synthetic_telegram_id(rng) if channel == "telegram" else synthetic_whatsapp_number(rng)
        out.append(Message(channel, user, row["text"], rng.choice(firsts), rng.choice(lasts),
                           row.get("lang") or "es"))
    return out


def run_dev(path: str | Path, limit: int | None = None, show: int = 0, keep: bool = False) -> dict[str, Any]:
    import redis as redis_lib

    from middleware.config import load_config, load_env
    from middleware.redis_conn import connect
    from workers.runtime import Runtime

    env = load_env()
    if not env.redis_url:
        raise SystemExit("leakscan --dev needs REDIS_URL (the machine's Redis)")
    if not env.secret:
        raise SystemExit("leakscan --dev needs TUNELOOP_SECRET")
    rows = load_dev(path, limit)
    messages = dev_messages(rows)
    config_path = env.config_path if os.environ.get("TUNELOOP_CONFIG") else Path(__file__).resolve().parent.parent / "config.yaml"
    cfg = load_config(config_path)
    prefix = f"tlleak{uuid.uuid4().hex[:10]}:"
    queue = prefix.rstrip(":") + "-q"
    cfg.redis.prefix = prefix
    cfg.redis.queue = queue
    cfg.capture.max_delay_ms = 20
    tmp = Path(tempfile.mkdtemp(prefix="tuneloop-leakscan-"))
    env = env.model_copy(update={
        "data_dir": tmp / "data", "telegram_bot_token": "123456:LEAKSCAN-token",
        "telegram_webhook_secret": uuid.uuid4().hex, "twilio_auth_token": uuid.uuid4().hex,
        "public_url": "https://leakscan.invalid", "openai_api_key": None, "openai_base_url": None,
        "admin_token": None})
    collector = _Collect()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    conn = redis_lib.Redis.from_url(env.redis_url)
    t0 = time.monotonic()
    try:
        rt = Runtime(cfg, env, connect(env))
        result = run_messages(rt, messages)
        dev_pii = as_pii(p for row in rows for p in row.get("pii", ()))
        user_pii = as_pii(p for m in messages for p in m.user_pii())
        # the rows' non-personal phrases ("keep"): found in Redis, they show the scan read the records
        controls = [Pii("CONTROL", k) for k in {k for row in rows for k in row.get("keep", ())}]
        scanner = LeakScanner([*dev_pii, *user_pii, *controls], ignore=cfg.anonymizer.keep_values,
                              allowed_texts=[without_pii(r["text"], r.get("pii", ())) for r in rows])
        scanner.scan_redis(conn, prefix, queue)
        scanner.scan_dir(env.data_dir)
        root.removeHandler(collector)
        scanner.scan_log_records([r for r in collector.records])
        report = scanner.report()
    finally:
        root.removeHandler(collector)
        root.setLevel(old_level)
        if not keep:
            cleanup_redis(conn, prefix, queue)
            shutil.rmtree(tmp, ignore_errors=True)
        conn.close()
    dev_set = set(dev_pii)
    control_hits = {f.value for f in report.findings if f.type == "CONTROL" and f.where == "redis"}
    report.findings = [f for f in report.findings if f.type != "CONTROL"]
    found = report.found
    dev_found = [p for p in found if p in dev_set]
    by_where: dict[str, Counter[str]] = defaultdict(Counter)
    for f in {(f.type, f.value, f.where) for f in report.findings if Pii(f.type, f.value) in dev_set}:
        by_where[f[2]][f[0]] += 1
    out = {
        "messages": len(rows), "dev_pii_values": len(dev_pii),
        "dev_pii_found": len(dev_found), "dev_found_by_type": dict(Counter(p.type for p in dev_found)),
        "dev_found_by_where": {w: dict(c) for w, c in by_where.items()},
        "dev_pii_by_type": dict(Counter(p.type for p in dev_pii)),
        "user_values": len(user_pii), "user_values_found": len(found - dev_set),
        "user_found_by_type": dict(Counter(p.type for p in found - dev_set)),
        "controls_found_in_redis": f"{len(control_hits)} of {len(controls)}",
        "http": dict(result.statuses), "counters": {k: result.stats.get(k, 0) for k in (
            "captured", "filtered_out", "analyzed", "qa_passed", "qa_failed", "needs_review", "exported",
            "dropped", "capture_errors")},
        "exports": result.exports, "chars_scanned": report.sizes,
        "seconds": {**{k: round(v, 1) for k, v in result.seconds.items()}, "total": round(time.monotonic() - t0, 1)},
    }
    if show:
        out["examples"] = [str(f) for f in report.findings[:show]]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bot.leakscan", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dev", required=True, help="labeled JSONL (text, pii: [{type, value}])")
    ap.add_argument("--limit", type=int, default=None, help="only the first N messages")
    ap.add_argument("--show", type=int, default=0, help="print up to N findings (values and context)")
    ap.add_argument("--keep", action="store_true", help="leave the temporary keys and directory (debugging)")
    a = ap.parse_args(argv)
    logging.getLogger("tuneloop").setLevel(logging.DEBUG)
    out = run_dev(a.dev, a.limit, a.show, a.keep)
    examples = out.pop("examples", [])
    print(json.dumps(out, ensure_ascii=False, indent=2))
    for e in examples:
        print(e)
    print(f"PII values found anywhere: {out['dev_pii_found']} of {out['dev_pii_values']} "
          f"(+ {out['user_values_found']} of {out['user_values']} raw user ids / profile names)")
    return 0 if out["dev_pii_found"] == 0 and out["user_values_found"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
