"""The spill journal: where a bot process keeps anonymized records while Redis is unreachable.

Append-only JSON lines (the flush script's items: already anonymized, pseudonymous, no raw id or
text), one file per process under ``TUNELOOP_DATA_DIR/spill/``, bounded by ``capture.spill_max_mb``.
fsync policy (``capture.spill_fsync``): ``batch`` (default) fsyncs once per spilled batch, so a
crash of the machine loses at most the batch being written; ``always`` fsyncs every record;
``never`` leaves it to the OS. A live process holds an exclusive flock on its file, so any
process can replay the files of a process that died (the flock is free) and nobody replays a
live one's. Replays go through the flush script, which re-checks consent and skips records
already written, so a replay never stores an erased user's record or a record twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("tuneloop.journal")


class JournalFull(Exception):
    pass


class Journal:
    def __init__(self, directory: Path, max_bytes: int, fsync: str = "batch") -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        self._lock = threading.Lock()
        self._fh: IO[str] | None = None
        self.path = directory / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"

    # writing ---------------------------------------------------------------------------------
    def _open(self) -> IO[str]:
        if self._fh is None:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._fh = os.fdopen(fd, "a", encoding="utf-8")
        return self._fh

    def size(self) -> int:
        return sum(p.stat().st_size for p in self._files())

    def append(self, items: list[dict[str, Any]]) -> int:
        """Append items; returns how many fit (the rest do not: the caller counts them dropped)."""
        with self._lock:
            fh = self._open()
            room = self.max_bytes - self.size()
            n = 0
            for it in items:
                line = json.dumps(it, ensure_ascii=False, separators=(",", ":")) + "\n"
                if len(line.encode()) > room:
                    break
                fh.write(line)
                room -= len(line.encode())
                n += 1
                if self.fsync == "always":
                    fh.flush()
                    os.fsync(fh.fileno())
            fh.flush()
            if self.fsync == "batch":
                os.fsync(fh.fileno())
            return n

    # replaying -------------------------------------------------------------------------------
    def _files(self) -> list[Path]:
        if not self.dir.exists():
            return []
        return sorted(self.dir.glob("*.jsonl"))

    @contextlib.contextmanager
    def _claim(self, path: Path) -> Iterator[int | None]:
        """This process's own file, or a dead process's (its flock is free); None otherwise."""
        if path == self.path:
            yield None if self._fh is None else self._fh.fileno()
            return
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            yield None
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:   # a live process's journal
            os.close(fd)
            yield None
            return
        try:
            yield fd
        finally:
            os.close(fd)

    def pending(self) -> bool:
        return any(p.stat().st_size > 0 for p in self._files())

    def take(self, limit: int) -> tuple[list[dict[str, Any]], Any]:
        """Up to ``limit`` items from one replayable file, and a token to ``commit`` them."""
        with self._lock:
            for path in self._files():
                with self._claim(path) as fd:
                    if fd is None and path != self.path:
                        continue
                    if path == self.path and self._fh is not None:
                        self._fh.flush()
                    try:
                        lines = path.read_text(encoding="utf-8").splitlines()
                    except FileNotFoundError:
                        continue
                    items = []
                    for line in lines[:limit]:
                        with contextlib.suppress(ValueError):
                            items.append(json.loads(line))
                    if not lines:
                        self._remove(path)
                        continue
                    return items, (path, min(limit, len(lines)))
            return [], None

    def commit(self, token: Any) -> None:
        """Drop the items ``take`` returned, now that Redis holds them."""
        if token is None:
            return
        path, n = token
        with self._lock, self._claim(path) as fd:
            if fd is None and path != self.path:
                return
            self._rewrite(path, lambda lines: lines[n:])

    # erasure ---------------------------------------------------------------------------------
    def erase(self, pseudonym: str) -> int:
        """Remove a user's entries from every journal this process may touch."""
        removed = 0
        needle = f'"u":"{pseudonym}"'
        with self._lock:
            for path in self._files():
                with self._claim(path) as fd:
                    if fd is None and path != self.path:
                        continue   # a live process's: it erases its own on the pub/sub message
                    def keep(lines: list[str]) -> list[str]:
                        nonlocal removed
                        out = [ln for ln in lines if needle not in ln]
                        removed += len(lines) - len(out)
                        return out
                    self._rewrite(path, keep)
        return removed

    def _rewrite(self, path: Path, edit: Any) -> None:
        """Atomic rewrite (temp file + rename); this process's open handle follows the new file."""
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        kept = edit(lines)
        if len(kept) == len(lines) and kept == lines:
            return
        own = path == self.path and self._fh is not None
        if own:
            assert self._fh is not None
            self._fh.close()
            self._fh = None
        if not kept and not own:
            self._remove(path)
            return
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(ln + "\n" for ln in kept))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        if own:
            self._open()

    def _remove(self, path: Path) -> None:
        if path == self.path and self._fh is not None:
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
            with contextlib.suppress(FileNotFoundError):
                if self.path.stat().st_size == 0:
                    self.path.unlink()
