"""What the admin commands do, channel-agnostic (Telegram buttons and WhatsApp text share it).

Every store call is sync (redis-py, the Processor, the export), so each runs in a thread: the
bot's event loop never waits on Redis or an analyzer (invariant 3).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from middleware.record import Record
from workers import review
from workers.runtime import Runtime
from workers.stats import daily, snapshot

from .admin_chart import funnel_png, last_days

if TYPE_CHECKING:
    from middleware import TrainingCapture
    from workers.tasks import Processor

log = logging.getLogger("tuneloop.admin")

FORMATS = ("chat", "prompt-completion", "nlu")
SOURCES = ("processed", "reviewed", "both")
DEFAULT_PROCESS = 100
MAX_PROCESS = 100_000
CHART_DAYS = 14
CLAIM_SECONDS = 600


class ArgError(ValueError):
    """Bad command arguments; the message is shown to the admin as is."""


def parse_process_args(args: str | None) -> int:
    parts = (args or "").split()
    if not parts:
        return DEFAULT_PROCESS
    if len(parts) > 1 or not parts[0].isdigit() or not 1 <= int(parts[0]) <= MAX_PROCESS:
        raise ArgError(f"Usage: /process [N] with N a whole number from 1 to {MAX_PROCESS} "
                       f"(default {DEFAULT_PROCESS}).")
    return int(parts[0])


@dataclass(frozen=True)
class ExportArgs:
    min_confidence: float | None = None
    fmt: str = "chat"
    source: str = "processed"


def parse_export_args(args: str | None) -> ExportArgs:
    """``[min_confidence] [format] [source]``, in any order; a decimal comma is accepted (0,85).
    The source (processed, reviewed, both) is ours, beyond the seed's two; default as the CLI's."""
    usage = ("Usage: /export [min_confidence] [format] [source]: min_confidence a number from 0 to 1, "
             f"format one of {', '.join(FORMATS)} (default chat), source one of {', '.join(SOURCES)} "
             "(default processed).")
    conf: float | None = None
    fmt: str | None = None
    source: str | None = None
    for part in (args or "").split():
        word = part.lower()
        if word in FORMATS and fmt is None:
            fmt = word
            continue
        if word in SOURCES and source is None:
            source = word
            continue
        try:
            v = float(word.replace(",", "."))
        except ValueError:
            raise ArgError(f"{part!r} is neither a confidence, a format nor a source. {usage}") from None
        if conf is not None or not 0 <= v <= 1:
            raise ArgError(f"min_confidence must be one number from 0 to 1, got {part!r}. {usage}")
        conf = v
    return ExportArgs(conf, fmt or "chat", source or "processed")


class AdminOps:
    def __init__(self, capture: TrainingCapture) -> None:
        # no reference to the capture itself: ops_for keys a weak mapping by it
        self.admin_ids = capture.env.admin_ids
        self.pseudonymize = capture.pseudonymize
        self.rt = Runtime(capture.config, capture.env, capture.handle)
        self._processor: Processor | None = None
        self._process_lock = asyncio.Lock()
        self._export_lock = asyncio.Lock()
        self._skipped: dict[str, set[str]] = {}
        self._shown: dict[str, str] = {}   # reviewer -> record last shown (text review acts on it)

    # who ---------------------------------------------------------------------------------------
    def is_admin(self, user_id: str) -> bool:
        return user_id in self.admin_ids

    def reviewer(self, user_id: str) -> str:
        """A reviewer is recorded by pseudonym, never by raw id."""
        return self.pseudonymize(user_id)

    @property
    def intents(self) -> list[str]:
        return self.rt.config.analysis.intent_names

    # /stats ------------------------------------------------------------------------------------
    async def stats(self) -> dict[str, Any]:
        return await asyncio.to_thread(snapshot, self.rt.handle.sync, self.rt.keys)

    async def chart(self, days: int = CHART_DAYS) -> bytes | None:
        def draw() -> bytes | None:
            try:
                return funnel_png(daily(self.rt.handle.sync, self.rt.keys, last_days(days)))
            except Exception:   # the chart is a bonus: the figures were sent already
                log.exception("funnel chart failed")
                return None

        return await asyncio.to_thread(draw)

    # /process ----------------------------------------------------------------------------------
    @property
    def busy_processing(self) -> bool:
        return self._process_lock.locked()

    async def process(self, max_items: int) -> dict[str, int]:
        # One run at a time: the Processor's event loop must not be entered from two threads.
        async with self._process_lock:
            return await asyncio.to_thread(self._process_sync, max_items)

    def _process_sync(self, max_items: int) -> dict[str, int]:
        if self._processor is None:
            from workers.tasks import Processor

            self._processor = Processor(self.rt)
        return self._processor.process_pending(max_items).public()

    # /export -----------------------------------------------------------------------------------
    @property
    def busy_exporting(self) -> bool:
        return self._export_lock.locked()

    async def export(self, args: ExportArgs) -> dict[str, Any]:
        """workers.export.export in a thread; ValueError (bad options) as ArgError."""
        from workers.export import export

        async with self._export_lock:
            try:
                return await asyncio.to_thread(export, self.rt, min_confidence=args.min_confidence,
                                               fmt=args.fmt, source=args.source)
            except ValueError as e:
                raise ArgError(f"Export refused: {e}") from None

    # /review -----------------------------------------------------------------------------------
    async def next_record(self, reviewer: str, fresh: bool = False) -> tuple[Record | None, int]:
        """Claim the next record for the reviewer (skipping what they skipped, unless ``fresh``),
        with how many wait for review."""
        if fresh:
            self._skipped.pop(reviewer, None)
        skipped = frozenset(self._skipped.get(reviewer, ()))

        def pick() -> tuple[Record | None, int]:
            rec = review.next_for_review(self.rt, reviewer, CLAIM_SECONDS, exclude=skipped)
            return rec, review.pending_count(self.rt)

        rec, waiting = await asyncio.to_thread(pick)
        if rec is not None:
            self._shown[reviewer] = rec.id
        else:
            self._shown.pop(reviewer, None)
        return rec, waiting

    def skipped_count(self, reviewer: str) -> int:
        return len(self._skipped.get(reviewer, ()))

    def shown(self, reviewer: str) -> str | None:
        return self._shown.get(reviewer)

    async def decide(self, reviewer: str, record_id: str, action: review.Action,
                     intent: str | None = None) -> Record | None:
        """review.decide in a thread; a skip is remembered so the next record is another one."""
        if action == "skip":
            s = self._skipped.setdefault(reviewer, set())
            if len(s) >= 1000:   # bounded: the oldest skips simply come back
                s.clear()
            s.add(record_id)
        if self._shown.get(reviewer) == record_id:
            self._shown.pop(reviewer, None)
        return await asyncio.to_thread(review.decide, self.rt, record_id, reviewer, action, intent)


_OPS: weakref.WeakKeyDictionary[Any, AdminOps] = weakref.WeakKeyDictionary()


def ops_for(capture: TrainingCapture) -> AdminOps:
    """One AdminOps per capture, shared by the Telegram router and the WhatsApp text commands."""
    ops = _OPS.get(capture)
    if ops is None:
        ops = _OPS[capture] = AdminOps(capture)
    return ops
