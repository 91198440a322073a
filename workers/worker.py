"""`tuneloop worker`, `tuneloop process` and `tuneloop records`."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from rq import Worker
from rq.serializers import JSONSerializer

from .runtime import Runtime
from .tasks import Processor, set_processor

log = logging.getLogger("tuneloop.worker")


def make_worker(rt: Runtime, name: str | None = None) -> Worker:
    return Worker([rt.queue()], connection=rt.handle.sync, serializer=JSONSerializer, name=name)


def cmd_worker(a: argparse.Namespace) -> int:
    rt = Runtime.load(check=True)
    # Load the analyzer, anonymizer and config once, before RQ forks a work horse per job.
    set_processor(Processor(rt))
    w = make_worker(rt)
    w.work(burst=a.burst, with_scheduler=True, logging_level="WARNING")
    return 0


def cmd_process(a: argparse.Namespace) -> int:
    rt = Runtime.load(check=True)
    res = Processor(rt).process_pending(a.max_items)
    print(json.dumps({"success": True, "results": res.public()}, indent=2))
    return 0


def cmd_records(a: argparse.Namespace) -> int:
    rt = Runtime.load()
    shown = 0
    cursor = 0
    while shown < a.limit:
        cursor, ids = rt.store.status_ids(a.status, cursor, count=200)
        for rec in rt.store.get_many(ids[: a.limit - shown]):
            if rec is not None:
                sys.stdout.write(json.dumps(rec.public(), ensure_ascii=False) + "\n")
                shown += 1
        if cursor == 0:
            break
    return 0
