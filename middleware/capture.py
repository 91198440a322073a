"""The channel-agnostic capture core.

On the event loop it only decides (a dict look-up for consent, a few comparisons) and appends to
a bounded in-memory buffer. A background task hands full or aged batches to one writer thread,
which anonymizes them and writes each batch as one Redis transaction: the flush script (consent
re-checked atomically with the write) plus one RQ job carrying the batch's record ids. RQ and
redis-py are synchronous, hence the thread. Nothing here raises into the bot's handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Histogram

from .config import Config, Env
from .consent import ConsentCache, ConsentCommand, ConsentText, ConsentTextBook, task_cancelling
from .exchange import Exchange
from .journal import Journal
from .keys import Keys
from .record import PII_TYPES, Record, capture_fields, iso_z, new_record_id
from .redis_conn import CheckFailed, RedisHandle, run_checks
from .store import ANON_FIELD, ConsentRecord, Store

log = logging.getLogger("tuneloop.capture")

PROCESS_JOB = "workers.tasks.process_records"  # named by path: middleware never imports workers
BATCH_CHARS = 64_000


@dataclass(frozen=True)
class Decision:
    """What the adapter does around the bot's handler."""

    exchange: Exchange | None = None   # capture this exchange
    ask: ConsentText | None = None     # after the handler, ask for consent with this text


@dataclass(frozen=True)
class ConsentReply:
    text: str
    buttons: tuple[tuple[str, str], ...] = ()   # (label, action) pairs: action is "yes" / "no"
    erased: dict[str, int] | None = None


@dataclass
class _Item:
    kind: str                        # "r" record, "f" filtered
    pseudonym: str
    ms: int
    exchange: Exchange | None = None
    built: dict[str, Any] | None = None   # the flush item, once anonymized (kept across retries)


def detector_version(anonymizer: Any) -> str | None:
    """The detector version a record is scanned with (custom anonymizers may carry their own)."""
    v = getattr(anonymizer, "version", None)
    if v is None:
        from .anonymizer import DETECTOR_VERSION

        v = DETECTOR_VERSION
    return str(v)


def _safe_reason(e: BaseException) -> str:
    """An error's reason without any payload: Redis replies never echo values, but cut anyway."""
    return str(e).splitlines()[0][:120] if str(e) else ""


class CaptureCore:
    def __init__(self, config: Config, env: Env, handle: RedisHandle, anonymizer: Any,
                 pseudonymize: Callable[[str], str], check_fingerprint: Any = None) -> None:
        self.config = config
        self.env = env
        self.handle = handle
        self.keys = Keys(config.redis.prefix)
        self.store = Store(handle.sync, self.keys)
        self.anonymizer = anonymizer
        self.pseudonymize = pseudonymize
        self._fingerprint_source = check_fingerprint
        self.texts = ConsentTextBook(config.consent, ["OpenAI"] if env.openai_api_key else [])
        self.cache = ConsentCache(self.keys, handle.async_client)
        self.cache.on_change.append(self._on_consent_change)
        self._buf: deque[_Item] = deque()
        self._full = asyncio.Event()
        self._seen: set[str] = set()
        self._dropped = 0          # not yet reported to Redis
        self._errors = 0
        self.ready = False         # start-up checks passed
        self.redis_ok = True
        self.last_check_error: str | None = None
        self._exec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tuneloop-writer")
        ccfg = config.capture
        self.journal = (Journal(env.data_dir / "spill", int(ccfg.spill_max_mb * 1024 * 1024), ccfg.spill_fsync)
                        if ccfg.spill_max_mb > 0 else None)
        self._counts: dict[str, int] = {}   # spilled / replayed, reported with the next write
        self._tasks: list[asyncio.Task[Any]] = []
        self._started = False
        self.stats_local = {"dropped": 0, "capture_errors": 0, "written": 0, "batches": 0}
        # Per-core registry: several cores in one process (tests, two bots) never collide.
        self.registry = CollectorRegistry(auto_describe=True)
        self.capture_seconds = Histogram(
            "tuneloop_capture_seconds", "time tuneloop spends on the event loop per message",
            registry=self.registry,
            buckets=(0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05))

    # ------------------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.cache.start()
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._checker(), name="tuneloop-checks"))
        self._tasks.append(loop.create_task(self._flusher(), name="tuneloop-flusher"))

    async def flush(self, timeout: float = 10.0) -> bool:
        """Write everything buffered now; True when the buffer is empty afterwards."""
        deadline = time.monotonic() + timeout
        while self._buf and time.monotonic() < deadline:
            if not self.ready:
                await self._run_checks()
                if not self.ready:
                    return False
            ok = await self._write_some()
            if not ok:
                await asyncio.sleep(0.1)
        with contextlib.suppress(Exception):
            # The flusher may have a batch on the writer thread right now (already out of the
            # buffer): wait for it. One thread, FIFO, so this no-op runs after that write.
            await asyncio.get_running_loop().run_in_executor(self._exec, time.sleep, 0)
        return not self._buf

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.flush()
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        self._tasks.clear()
        await self.cache.stop()
        self._exec.shutdown(wait=True)
        if self.journal is not None:
            self.journal.close()
        if self._buf:
            log.warning("closing with %d records still buffered (Redis unreachable)", len(self._buf))
        self._started = False

    async def _run_checks(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._exec, run_checks, self.handle.sync, self.keys,
                                       self._fingerprint_source, self.config.redis.check_eviction)
            if not self.ready:
                log.info("capture is on")
            self.ready = True
            self.last_check_error = None
        except (redis.RedisError, OSError):
            pass   # Redis away: capture keeps buffering on the last verdict; the flusher retries
        except CheckFailed as e:
            if self.last_check_error != str(e):
                log.error("capture stays off: %s", e)
            self.ready = False
            self.last_check_error = str(e)

    async def _checker(self) -> None:
        while not task_cancelling():
            await self._run_checks()
            await asyncio.sleep(self.config.capture.recheck_seconds)

    # ------------------------------------------------------------------------------ hot path
    async def begin(self, channel: str, user_id: str, chat_key: str | int, text: str | None,
                    known_names: tuple[str, ...] = (), metadata: dict[str, Any] | None = None,
                    lang_hint: str | None = None) -> Decision:
        """Decide about one incoming message. Never raises."""
        t0 = time.perf_counter()
        try:
            d = await self._begin(channel, user_id, chat_key, text, known_names, metadata, lang_hint)
        except Exception:
            self.count_error("begin")
            d = Decision()
        if d.exchange is not None:
            d.exchange.spent = time.perf_counter() - t0
        else:
            self.capture_seconds.observe(time.perf_counter() - t0)
        return d

    async def _begin(self, channel: str, user_id: str, chat_key: str | int, text: str | None,
                     known_names: tuple[str, ...], metadata: dict[str, Any] | None,
                     lang_hint: str | None) -> Decision:
        if not self.config.capture.enabled or text is None:
            return Decision()
        if not self._started:
            await self.start()
        pseudonym = self.pseudonymize(user_id)
        self._seen.add(pseudonym)
        try:
            rec = await self.cache.get(pseudonym)
        except (redis.RedisError, OSError, TimeoutError):
            return Decision()   # consent unknown while Redis is away: capture nothing new
        ask = self._should_ask(rec, lang_hint)
        if not self.ready or not self._captures(rec):
            return Decision(ask=ask)
        now = int(time.time() * 1000)
        ccfg = self.config.capture
        # the length bound is checked before any other work
        if (len(text) > ccfg.max_length or not text.strip()
                or any(text.startswith(p) for p in ccfg.command_prefixes)):
            self._enqueue(_Item("f", pseudonym, now))
            return Decision(ask=ask)
        meta = dict(metadata or {})
        meta.setdefault("lang", rec.lang or self.texts.lang_for(lang_hint))
        ex = Exchange(channel=channel, pseudonym=pseudonym, chat_key=str(chat_key), text=text,
                      known_names=tuple(n for n in known_names if n), metadata=meta,
                      consent_version=rec.version, captured_ms=now)
        return Decision(exchange=ex, ask=ask)

    def seal(self, ex: Exchange) -> None:
        """The handler returned: the exchange is complete; buffer it. Never raises."""
        t0 = time.perf_counter()
        try:
            if ex.sealed:
                return
            ex.sealed = True
            self._enqueue(_Item("r", ex.pseudonym, ex.captured_ms, exchange=ex))
        except Exception:
            self.count_error("seal")
        self.capture_seconds.observe(ex.spent + time.perf_counter() - t0)

    def _enqueue(self, item: _Item) -> None:
        if len(self._buf) >= self.config.capture.buffer_max:
            self._dropped += 1
            self.stats_local["dropped"] += 1
            return
        self._buf.append(item)
        if len(self._buf) >= self.config.capture.batch_size:
            self._full.set()

    def _captures(self, rec: ConsentRecord) -> bool:
        if not rec.active:
            return False
        if self.config.consent.ask_again_on_new_version and rec.version not in self.texts.versions:
            return False   # agreed to an older text: not captured until they answer again
        return True

    def _should_ask(self, rec: ConsentRecord, lang_hint: str | None) -> ConsentText | None:
        ccfg = self.config.consent
        text = self.texts.get(rec.lang or lang_hint)
        if rec.active and rec.version in self.texts.versions:
            return None
        if rec.asked == text.version:
            return None
        if rec.state is None and rec.asked is None:
            return text if ccfg.ask_on_first_message else None
        return text if ccfg.ask_again_on_new_version else None

    def note_error(self) -> None:
        """Count one capture error (reported to Redis with the next write)."""
        self._errors += 1
        self.stats_local["capture_errors"] += 1

    def count_error(self, where: str) -> None:
        """Count and log the exception being handled: its type and where it was raised only,
        since an exception's message may quote the text (pydantic errors do)."""
        self.note_error()
        etype, _, tb = sys.exc_info()
        frame = traceback.extract_tb(tb)[-1] if tb is not None else None
        origin = f"{Path(frame.filename).name}:{frame.lineno}" if frame is not None else "?"
        log.error("capture error in %s: %s at %s (counted; the bot is unaffected)", where,
                  etype.__name__ if etype else "?", origin)


    @property
    def buffered(self) -> int:
        return len(self._buf)

    # ------------------------------------------------------------------------------ consent
    async def mark_asked(self, pseudonym: str, version: str) -> bool:
        """True when this process should ask (nobody asked this version yet)."""
        client = self.handle.async_client()
        res = await client.eval(
            "if redis.call('HGET', KEYS[1], 'asked') == ARGV[1] then return 0 end "
            "redis.call('HSET', KEYS[1], 'asked', ARGV[1]) return 1",
            1, self.keys.consent(pseudonym), version)
        self.cache.invalidate(pseudonym, "asked")
        return bool(res)

    async def consent_action(self, channel: str, user_id: str, cmd: ConsentCommand,
                             lang_hint: str | None = None) -> ConsentReply:
        """/consent [yes|no|status], buttons and keywords, on any channel."""
        pseudonym = self.pseudonymize(user_id)
        loop = asyncio.get_running_loop()
        rec = await loop.run_in_executor(None, self.store.consent, pseudonym)
        text = self.texts.get(cmd.lang or rec.lang or lang_hint)
        labels = text.labels
        if cmd.action == "ask":
            return ConsentReply(text.text, ((labels.accept, "yes"), (labels.decline, "no")))
        if cmd.action == "status":
            if rec.active and rec.ts:
                since = datetime.fromtimestamp(rec.ts / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
                return ConsentReply(labels.status_on.format(since=since))
            return ConsentReply(labels.status_off)
        if cmd.action == "yes":
            await loop.run_in_executor(None, self.store.grant, pseudonym, text.version, text.lang,
                                       cmd.mechanism)
            self.cache.invalidate(pseudonym, "grant")
            return ConsentReply(labels.granted)
        if cmd.action in ("no", "forget"):
            erased = await self.withdraw(pseudonym, cmd.mechanism)
            was_active = rec.state == "granted"
            return ConsentReply(labels.withdrawn if was_active or any(erased.values())
                                else labels.declined, erased=erased)
        raise ValueError(f"unknown consent action {cmd.action!r}")

    async def my_data(self, user_id: str, pseudonym: str | None = None) -> dict[str, Any]:
        """GDPR access (Art. 15/20): the user's consent events and stored, anonymized records."""
        pseudonym = pseudonym or self.pseudonymize(user_id)
        loop = asyncio.get_running_loop()

        def read() -> dict[str, Any]:
            ids = self.store.user_record_ids(pseudonym)
            recs = [r.public() for r in self.store.get_many(ids) if r is not None]
            c = self.store.consent(pseudonym)
            return {"user_id": pseudonym, "consent": {"active": c.active, "version": c.version,
                                                      "lang": c.lang, "mechanism": c.mechanism},
                    "consent_events": self.store.consent_events(pseudonym), "records": recs}

        return await loop.run_in_executor(None, read)

    async def withdraw(self, pseudonym: str, mechanism: str) -> dict[str, int]:
        loop = asyncio.get_running_loop()
        local = await self.erase_user_local(pseudonym)
        d, e, _ = await loop.run_in_executor(None, self.store.withdraw, pseudonym, mechanism)
        self.cache.invalidate(pseudonym, "withdraw")
        return {"store": d + e, **local}

    def erase_local(self, pseudonym: str) -> int:
        """Drop this process's buffered messages of a user (withdrawal, erasure)."""
        before = len(self._buf)
        if before:
            self._buf = deque(i for i in self._buf if i.pseudonym != pseudonym)
        return before - len(self._buf)

    async def erase_user_local(self, pseudonym: str) -> dict[str, int]:
        """This process's buffer and the spill journals it may touch."""
        buffered = self.erase_local(pseudonym)
        journal = 0
        if self.journal is not None:
            journal = await asyncio.get_running_loop().run_in_executor(self._exec, self.journal.erase, pseudonym)
        return {"buffer": buffered, "journal": journal}

    def _on_consent_change(self, pseudonym: str, event: str) -> None:
        if event == "withdraw":
            self.erase_local(pseudonym)
            if self.journal is not None and not self._exec._shutdown:  # type: ignore[attr-defined]
                self._exec.submit(self.journal.erase, pseudonym)

    # ------------------------------------------------------------------------------ writer
    async def _flusher(self) -> None:
        delay = self.config.capture.max_delay_ms / 1000
        backoff = 0.2
        while not task_cancelling():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), delay)
            self._full.clear()
            if not self.ready:
                continue
            while self._buf or self._seen or self._dropped or self._counts or self._journal_pending():
                ok = await self._replay_some() if self._journal_pending() else await self._write_some()
                if not ok:
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    break
                backoff = 0.2

    def _journal_pending(self) -> bool:
        return self.journal is not None and self.redis_ok and self._journal_dirty

    _journal_dirty = True   # until a replay finds the journal empty (startup: a dead process's)

    async def _replay_some(self) -> bool:
        """Hand a chunk of the spill journal to Redis (through the same flush script)."""
        assert self.journal is not None
        loop = asyncio.get_running_loop()
        journal = self.journal
        items, token = await loop.run_in_executor(self._exec, journal.take, self.config.capture.batch_size)
        if token is None:
            self._journal_dirty = False
            return True
        batch = [_Item(i["k"], i["u"], int(i["t"]), built=i) for i in items
                 if isinstance(i, dict) and i.get("k") in ("r", "f")]
        try:
            await loop.run_in_executor(self._exec, self._write_batch, batch, set(), 0)
        except (redis.RedisError, OSError) as e:
            self._redis_lost(e)
            return False
        await loop.run_in_executor(self._exec, journal.commit, token)
        self._counts["replayed"] = self._counts.get("replayed", 0) + len(batch)
        return True

    def _redis_lost(self, e: BaseException) -> None:
        if self.redis_ok:
            log.warning("Redis unreachable (%s: %s): %d records wait in the buffer",
                        type(e).__name__, _safe_reason(e), len(self._buf))
        self.redis_ok = False

    async def _write_some(self) -> bool:
        # A batch ends at batch_size records or about BATCH_CHARS of text, so the writer never
        # holds the GIL long packing one huge pipeline (long messages make smaller batches).
        batch: list[_Item] = []
        chars = 0
        while self._buf and len(batch) < self.config.capture.batch_size and chars < BATCH_CHARS:
            it = self._buf.popleft()
            batch.append(it)
            if it.exchange is not None:
                chars += len(it.exchange.text) + sum(len(r) for r in it.exchange.replies)
        seen, self._seen = self._seen, set()
        dropped, self._dropped = self._dropped, 0
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._exec, self._write_batch, batch, seen, dropped)
            self.redis_ok = True
            return True
        except (redis.RedisError, OSError) as e:
            # Redis away: the batch goes to the spill journal (anonymized) or, without one, back
            # into the buffer in order (bounded by buffer_max).
            self._seen |= seen
            self._dropped += dropped
            self._redis_lost(e)
            if self.journal is not None:
                try:
                    await loop.run_in_executor(self._exec, self._spill, batch)
                    return False
                except OSError:
                    log.exception("the spill journal failed; records stay in memory")
            self._buf.extendleft(reversed(batch))
            return False
        except Exception:
            self._seen |= seen
            self._dropped += dropped
            self.count_error("write")
            return True

    def _build(self, item: _Item) -> dict[str, Any] | None:
        ex = item.exchange
        assert ex is not None
        counts = dict.fromkeys(PII_TYPES, 0)
        try:
            res = self.anonymizer.anonymize(ex.text, known_names=ex.known_names)
            replies = []
            for r in ex.replies:
                time.sleep(0)   # yield the GIL between texts: the loop never waits for more than one
                rr = self.anonymizer.anonymize(r, known_names=ex.known_names)
                replies.append(rr.text)
                for k, v in rr.counts.items():
                    counts[k] = counts.get(k, 0) + v
        except Exception:
            self.count_error("anonymize")   # a record that cannot be anonymized is never stored
            return None
        for k, v in res.counts.items():
            counts[k] = counts.get(k, 0) + v
        rec = Record(id=new_record_id(ex.captured_ms), user_id=ex.pseudonym, channel=ex.channel,
                     content=res.text, original_length=len(ex.text), reply=replies,
                     pii={k: res.counts.get(k, 0) for k in PII_TYPES}, metadata=ex.metadata,
                     consent_version=ex.consent_version, captured_at=iso_z(ex.captured_ms / 1000),
                     detector_version=detector_version(self.anonymizer))

        f = capture_fields(rec)
        item.exchange = None   # the raw text is no longer kept
        return {"k": "r", "u": ex.pseudonym, "t": ex.captured_ms, "id": rec.id, "c": f["c"],
                "a": {ANON_FIELD[k]: v for k, v in counts.items() if v}}

    def _spill(self, batch: list[_Item]) -> None:
        """Writer thread: anonymize and append to the journal; what does not fit is dropped."""
        assert self.journal is not None
        items = self._built(batch)
        n = self.journal.append(items)
        self._journal_dirty = True
        self._counts["spilled"] = self._counts.get("spilled", 0) + n
        if n < len(items):
            lost = len(items) - n
            self._dropped += lost
            self.stats_local["dropped"] += lost
            log.error("spill journal full: %d records dropped", lost)

    def _built(self, batch: list[_Item]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for it in batch:
            if it.kind == "r" and it.built is None:
                it.built = self._build(it)
                time.sleep(0)   # let the event loop take the GIL between messages: short stalls
            if it.kind == "f":
                items.append(it.built or {"k": "f", "u": it.pseudonym, "t": it.ms})
            elif it.built is not None:
                items.append(it.built)
        return items

    def _write_batch(self, batch: list[_Item], seen: set[str], dropped: int) -> None:
        items = self._built(batch)
        pipe = self.handle.sync.pipeline(transaction=True)
        pipe.multi()   # explicit: RQ's enqueue on a pipeline expects a transaction already open
        if items:
            day = datetime.now(UTC).strftime("%Y-%m-%d")
            self.store.flush(pipe, day, items)
            ids = [i["id"] for i in items if i["k"] == "r"]
            if ids and self.config.workers.mode == "continuous":
                self._enqueue_job(pipe, ids)
        if seen:
            pipe.pfadd(self.keys.users_seen, *seen)
        if dropped:
            pipe.hincrby(self.keys.stats, "dropped", dropped)
        errors, self._errors = self._errors, 0
        if errors:
            pipe.hincrby(self.keys.stats, "capture_errors", errors)
        counts, self._counts = self._counts, {}
        for k, v in counts.items():
            pipe.hincrby(self.keys.stats, k, v)
        try:
            pipe.execute()
        except Exception:   # nothing was counted: report these with the next write
            self._errors += errors
            for k, v in counts.items():
                self._counts[k] = self._counts.get(k, 0) + v
            raise
        self.stats_local["written"] += len(items)
        self.stats_local["batches"] += 1

    @cached_property
    def _queue(self) -> Any:
        from rq import Queue
        from rq.serializers import JSONSerializer

        return Queue(self.config.redis.queue, connection=self.handle.sync, serializer=JSONSerializer)

    def _enqueue_job(self, pipe: redis.client.Pipeline, ids: list[str]) -> None:
        from rq import Retry

        # Retry: a job whose worker died (SIGKILL, OOM) is picked up again by RQ's registry cleanup.
        self._queue.enqueue_call(PROCESS_JOB, args=(ids,), pipeline=pipe, timeout=self.config.workers.job_timeout_s,
                       result_ttl=0, failure_ttl=7 * 86400, retry=Retry(max=5, interval=[30, 120, 600]))
