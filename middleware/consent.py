"""Consent: the texts users are shown, their versions, and each bot process's consent cache.

The ledger itself (grants, withdrawals, events, erasure) is written by middleware.store's atomic
scripts. Here: what a user is asked, which command or keyword means what, and a cache that every
bot process keeps in memory and drops entries from the moment any process publishes a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from .config import ConsentConfig, ConsentTexts
from .keys import Keys
from .store import ConsentRecord

log = logging.getLogger("tuneloop.consent")


@dataclass(frozen=True)
class ConsentText:
    lang: str
    text: str
    version: str
    labels: ConsentTexts


def _version(lang: str, text: str) -> str:
    import hashlib

    return f"{lang}:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}"


class ConsentTextBook:
    """The rendered consent texts per language, with the version (hash) of each."""

    def __init__(self, cfg: ConsentConfig, processors: list[str]) -> None:
        self.cfg = cfg
        proc = ", ".join(processors) if processors else "—"
        self._texts: dict[str, ConsentText] = {}
        for lang, t in cfg.texts.items():
            purpose = cfg.purpose.get(lang) or cfg.purpose.get(cfg.default_lang, "")
            rendered = " ".join(t.text.format_map(_Defaults(
                controller=cfg.controller.name, contact=cfg.controller.contact,
                purpose=purpose, processors=proc)).split())
            self._texts[lang] = ConsentText(lang, rendered, _version(lang, rendered), t)

    def lang_for(self, hint: str | None) -> str:
        if hint:
            base = hint.lower().split("-")[0].split("_")[0]
            if base in self._texts:
                return base
        return self.cfg.default_lang

    def get(self, lang: str | None) -> ConsentText:
        return self._texts[self.lang_for(lang)]

    def current_version(self, lang: str | None) -> str:
        return self.get(lang).version

    @property
    def versions(self) -> set[str]:
        return {t.version for t in self._texts.values()}


class _Defaults(dict):
    def __missing__(self, key: str) -> str:  # an unknown {placeholder} stays as written
        return "{" + key + "}"


# --------------------------------------------------------------------------------------------
# commands and keywords

@dataclass(frozen=True)
class ConsentCommand:
    action: str            # ask | yes | no | status | forget | mydata
    lang: str | None = None
    mechanism: str = "command"


_CMD_RE = re.compile(r"^/(consent|forget|mydata)(?:@\w+)?(?:\s+(\S+))?\s*$", re.IGNORECASE)
_ARG = {"yes": "yes", "si": "yes", "sí": "yes", "y": "yes", "accept": "yes", "acepto": "yes",
        "no": "no", "n": "no", "withdraw": "no", "status": "status", "estado": "status"}


def _fold(s: str) -> str:
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if not unicodedata.combining(c))
    s = re.sub(r"^[\W_]+|[\W_]+$", "", s.casefold())
    return " ".join(s.split())


def parse_command(text: str | None) -> ConsentCommand | None:
    """/consent, /consent yes|no|status, /forget, /mydata (with an optional @botname)."""
    if not text or text[0] != "/":
        return None
    m = _CMD_RE.match(text.strip())
    if not m:
        return None
    cmd, arg = m.group(1).lower(), (m.group(2) or "").lower()
    if cmd == "consent":
        if not arg:
            return ConsentCommand("ask")
        action = _ARG.get(arg)
        return ConsentCommand(action) if action else ConsentCommand("ask")
    return ConsentCommand(cmd)


class KeywordMatcher:
    """WhatsApp keywords: they count only as the whole message (case, accents, punctuation ignored)."""

    def __init__(self, cfg: ConsentConfig) -> None:
        self._map: dict[str, tuple[str, str]] = {}
        for lang, kw in cfg.keywords.items():
            for action, words in (("yes", kw.yes), ("no", kw.no), ("status", kw.status)):
                for w in words:
                    f = _fold(w)
                    if f:
                        self._map.setdefault(f, (action, lang))

    def match(self, text: str | None) -> ConsentCommand | None:
        if not text or len(text) > 64:
            return None
        hit = self._map.get(_fold(text))
        return ConsentCommand(hit[0], hit[1], "keyword") if hit else None


# --------------------------------------------------------------------------------------------
# the per-process cache


def task_cancelling() -> bool:
    """True once someone asked the current task to stop. Loops check it because a library may
    swallow a CancelledError in a timeout (seen with redis-py's asyncio reads)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class ConsentCache:
    """Consent per pseudonym, in memory, invalidated through Redis pub/sub.

    A hit costs a dict look-up on the event loop. A miss awaits one HGETALL on the asyncio client.
    Any process's change (grant, withdrawal, erasure) publishes on ``keys.consent_channel``; every
    process drops the entry and runs ``on_change`` (the capture core purges its buffer). After a
    pub/sub disconnect the whole cache is dropped, since changes may have been missed meanwhile.
    """

    def __init__(self, keys: Keys, client_factory: Callable[[], aioredis.Redis],
                 max_entries: int = 100_000) -> None:
        self.keys = keys
        self._client_factory = client_factory
        self._cache: dict[str, ConsentRecord] = {}
        self._changes = 0   # invalidations so far: a read that spans one is not cached
        self._max = max_entries
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.on_change: list[Callable[[str, str], None]] = []

    def peek(self, pseudonym: str) -> ConsentRecord | None:
        return self._cache.get(pseudonym)

    async def get(self, pseudonym: str, timeout: float = 1.0) -> ConsentRecord:
        hit = self._cache.get(pseudonym)
        if hit is not None:
            return hit
        client = self._client_factory()
        changes = self._changes
        h = await asyncio.wait_for(client.hgetall(self.keys.consent(pseudonym)), timeout)
        rec = ConsentRecord.from_hash(h)
        # only cache while the invalidation channel is live (otherwise a change could be missed)
        # and when no change arrived while the read was in flight: the value read may predate
        # it ("/consent yes" handled while the user's next message looked consent up)
        if self._subscribed.is_set() and changes == self._changes:
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[pseudonym] = rec
        return rec

    def invalidate(self, pseudonym: str, event: str = "change") -> None:
        self._changes += 1
        self._cache.pop(pseudonym, None)
        for cb in self.on_change:
            try:
                cb(pseudonym, event)
            except Exception:  # a callback's bug must not stop invalidation
                log.exception("consent change callback failed")

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._listen(), name="tuneloop-consent")

    async def wait_subscribed(self, timeout: float = 5.0) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout)
        return self._subscribed.is_set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5.0)
            self._task = None
        self._subscribed.clear()

    async def _listen(self) -> None:
        delay = 0.2
        while not task_cancelling():
            pubsub = None
            try:
                pubsub = self._client_factory().pubsub()
                await pubsub.subscribe(self.keys.consent_channel)
                self._cache.clear()  # changes may have been missed while unsubscribed
                self._changes += 1
                self._subscribed.set()
                delay = 0.2
                # get_message, not listen(): an abandoned listen() async generator is finalized
                # at loop shutdown, where it can hang on the closed connection.
                while not task_cancelling():
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if msg is None or msg.get("type") != "message":
                        continue
                    try:
                        data = json.loads(msg["data"])
                        self.invalidate(str(data["u"]), str(data.get("e", "change")))
                    except (ValueError, KeyError, TypeError):
                        log.warning("ignored a malformed consent change message")
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Redis down: no cache until we are subscribed again
                log.warning("consent channel lost (%s); retrying", type(e).__name__)
            finally:
                # Entries stay while Redis is away: the flush re-checks consent atomically with
                # its write, so a stale entry can delay nothing worse than a refused write.
                self._subscribed.clear()
                if pubsub is not None:
                    # bounded: closing a connection to a dead server must not hold up shutdown
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(pubsub.aclose(), 2.0)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
