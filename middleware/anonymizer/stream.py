"""Line-by-line anonymization for ``tuneloop anonymize [--jsonl]``."""

from __future__ import annotations

import json
from typing import TextIO

from .engine import Anonymizer


def anonymize_lines(anon: Anonymizer, infile: TextIO, outfile: TextIO, jsonl: bool = False) -> int:
    """Anonymize ``infile`` into ``outfile``; return the number of lines written.

    Plain mode: each line's text (its line break kept). JSONL mode: each non-blank line is a
    JSON object whose ``text`` is replaced, other keys kept; a line that is not an object with a
    string ``text`` raises ValueError naming its line number (nothing of it is written).
    """
    n = 0
    for lineno, line in enumerate(infile, 1):
        if not jsonl:
            body = line.rstrip("\r\n")
            outfile.write(anon.anonymize(body).text + line[len(body):])
            n += 1
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"line {lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"line {lineno}: expected a JSON object")
        if not isinstance(obj.get("text"), str):
            raise ValueError(f"line {lineno}: no string field 'text'")
        obj["text"] = anon.anonymize(obj["text"]).text
        outfile.write(json.dumps(obj, ensure_ascii=False) + "\n")
        n += 1
    return n
