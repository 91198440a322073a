"""`tuneloop export`: prints the export response as JSON; exit 0 on success, 1 on success false,
2 on bad options (one line on stderr, as the rest of the CLI)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from middleware.config import ConfigError


def _print(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2))


def _fail(msg: str) -> int:
    print(f"tuneloop: {msg}", file=sys.stderr)
    return 2


@contextmanager
def _progress_bar() -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr, only when stderr is a terminal (never in pipes or logs)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("export", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def cmd_export(a: argparse.Namespace) -> int:
    from .export import export
    from .export_rebuild import rebuild
    from .export_upload import check_upload, upload
    from .runtime import Runtime

    rt = Runtime.load()
    if a.rebuild:
        out = rebuild(rt)
        _print(out)
        return 0 if out["success"] else 1
    try:
        if a.upload:
            check_upload(rt, a.format)
        with _progress_bar() as progress:
            res = export(rt, min_confidence=a.min_confidence, train_split=a.train_split, fmt=a.format,
                         source=a.source, seed=a.seed, max_examples=a.max_examples, since=a.since,
                         until=a.until, out_dir=a.out, progress=progress)
    except ConfigError:
        raise
    except ValueError as e:
        return _fail(str(e))
    code = 0 if res["success"] else 1
    if res["success"] and a.upload:
        try:
            res["upload"] = upload(rt, res, seed=a.seed)
            print(f"fine-tuning job: {res['upload']['job_id']}", file=sys.stderr)
        except Exception as e:   # the files are written: say what failed, keep the response
            res["upload"] = {"error": f"{type(e).__name__}: {e}"}
            code = 1
    _print(res)
    return code
