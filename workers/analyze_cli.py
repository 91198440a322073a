"""`tuneloop analyze [--jsonl]`: the configured analyzer over stdin."""

from __future__ import annotations

import asyncio
import json
from typing import IO

from middleware.config import load_config, load_env

from .analyzers.base import make_analyzer

BATCH = 256


def analyze_stream(inp: IO[str], out: IO[str], jsonl: bool) -> None:
    analyzer = make_analyzer(load_config(None), load_env())
    pending: list[tuple[dict | None, str]] = []

    def drain() -> None:
        outcomes = asyncio.run(analyzer.analyze_batch([t for _, t in pending]))
        for (obj, text), o in zip(pending, outcomes, strict=True):
            analysis = o.analysis if o.kind == "ok" else None
            if obj is None:
                out.write(json.dumps({"text": text, "analysis": analysis, **(
                    {} if o.kind == "ok" else {"error": o.reason})}, ensure_ascii=False) + "\n")
            else:
                obj["analysis"] = analysis
                if o.kind != "ok":
                    obj["analysis_error"] = o.reason
                out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        pending.clear()

    for n, line in enumerate(inp, 1):
        if not line.strip():
            continue
        if jsonl:
            try:
                obj = json.loads(line)
            except ValueError:
                raise ValueError(f"line {n}: not valid JSON") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise ValueError(f"line {n}: expected an object with a string `text`")
            pending.append((obj, obj["text"]))
        else:
            pending.append((None, line.rstrip("\n")))
        if len(pending) >= BATCH:
            drain()
    if pending:
        drain()
