"""`tuneloop export --rebuild`: earlier exports rewritten without the users erased since.

Every export dir under ``TUNELOOP_DATA_DIR/finetune/`` whose manifest names a pseudonym whose
consent ledger has ``erased_at`` later than the export is rebuilt from its own files (the
``*.users.tsv`` sidecars map each line to its user), never from the store. The new dir is built
as a hidden sibling and swapped in with two renames; a crash between them is finished by the
next run (:func:`recover`), so a reader sees either the old export or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from array import array
from pathlib import Path
from typing import Any

from middleware.record import iso_z

from .export import SPLITS, SplitStats, write_manifest
from .export_io import STAGE_PREFIX, fsync_dir
from .runtime import Runtime

_NEW = STAGE_PREFIX + "rebuild-"
_OLD = STAGE_PREFIX + "old-"


def recover(root: Path) -> None:
    """Finish swaps a crash interrupted; drop rebuilds that never reached the swap."""
    if not root.is_dir():
        return
    for old in root.glob(_OLD + "*"):
        name, _, tok = old.name[len(_OLD):].rpartition("-")
        new = root / f"{_NEW}{name}-{tok}.tmp"
        target = root / name
        if not target.exists():
            os.rename(new if (new / "manifest.json").exists() else old, target)
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(new, ignore_errors=True)
    # a rebuild that died before its swap (an hour old: never one still running)
    for new in root.glob(_NEW + "*"):
        with contextlib.suppress(OSError):
            if new.stat().st_mtime < time.time() - 3600:
                shutil.rmtree(new, ignore_errors=True)


def _erased_after(rt: Runtime, pseudonyms: list[str], created_ms: int) -> set[int]:
    gone: set[int] = set()
    for i in range(0, len(pseudonyms), 1000):
        pipe = rt.handle.sync.pipeline(transaction=False)
        for p in pseudonyms[i:i + 1000]:
            pipe.hget(rt.keys.consent(p), "erased_at")
        for j, at in enumerate(pipe.execute()):
            if at is not None and int(at) > created_ms:
                gone.add(i + j)
    return gone


def _rewrite(src: Path, dst: Path, manifest: dict[str, Any], gone: set[int]) -> dict[str, Any]:
    old_ps: list[str] = manifest["pseudonyms"]
    keep = [i for i in range(len(old_ps)) if i not in gone]
    remap = array("i", [-1]) * len(old_ps)
    for new, old in enumerate(keep):
        remap[old] = new
    stats = {s: SplitStats() for s in SPLITS}
    removed = 0
    sidecars = manifest.get("files", {}).get("line_users", {})
    for s in SPLITS:
        data = manifest.get("files", {}).get(s, f"{s}.jsonl")
        meta = sidecars.get(s, f"{s}.users.tsv")
        with open(src / data, encoding="utf-8", newline="\n") as lines, \
                open(src / meta, encoding="utf-8", newline="\n") as tags, \
                open(dst / data, "w", encoding="utf-8", newline="\n") as out_lines, \
                open(dst / meta, "w", encoding="utf-8", newline="\n") as out_tags:
            for line in lines:
                tag = tags.readline()
                if not tag:
                    raise ValueError(f"{src / meta} has fewer rows than {src / data} has lines")
                p, intent, tok = tag.rstrip("\n").split("\t")
                np_ = remap[int(p)]
                if np_ < 0:
                    removed += 1
                    continue
                out_lines.write(line)
                out_tags.write(f"{np_}\t{intent}\t{tok}\n")
                stats[s].add(np_, intent, int(tok))
            for f in (out_lines, out_tags):
                f.flush()
                os.fsync(f.fileno())
    now = time.time()
    m = dict(manifest)
    m["pseudonyms"] = [old_ps[i] for i in keep]
    m["splits"] = {s: stats[s].public() for s in SPLITS}
    counts = dict(m.get("counts", {}))
    counts.update(written=stats["train"].examples + stats["valid"].examples, train=stats["train"].examples,
                  valid=stats["valid"].examples)
    m["counts"] = counts
    prev = m.get("rebuilds", [])
    m["rebuilds"] = [*prev, {"at": iso_z(now), "at_ms": int(now * 1000), "removed_users": len(gone),
                             "removed_examples": removed}]
    write_manifest(dst / "manifest.json", m)
    return {"removed_users": len(gone), "removed_examples": removed, "train_examples": stats["train"].examples,
            "valid_examples": stats["valid"].examples}


def rebuild(rt: Runtime) -> dict[str, Any]:
    """Rewrite every export under finetune/ that holds a user erased after it was written."""
    root = Path(rt.env.data_dir) / "finetune"
    recover(root)
    checked, rebuilt = 0, []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if d.name.startswith(".") or d.is_symlink() or not (d / "manifest.json").is_file():
                continue
            checked += 1
            manifest = json.loads((d / "manifest.json").read_text(encoding="utf-8"))
            since = manifest.get("scan_started_at_ms", manifest.get("created_at_ms", 0))
            gone = _erased_after(rt, manifest.get("pseudonyms") or [], int(since))
            if not gone:
                continue
            tok = uuid.uuid4().hex[:8]
            new = root / f"{_NEW}{d.name}-{tok}.tmp"
            new.mkdir()
            try:
                info = _rewrite(d, new, manifest, gone)
                fsync_dir(new)
            except BaseException:
                shutil.rmtree(new, ignore_errors=True)
                raise
            old = root / f"{_OLD}{d.name}-{tok}"
            os.rename(d, old)
            os.rename(new, d)
            fsync_dir(root)
            with contextlib.suppress(OSError):
                shutil.rmtree(old)
            rebuilt.append({"dir": str(d), **info})
    return {"success": True, "checked": checked, "rebuilt": rebuilt,
            "removed_users": sum(r["removed_users"] for r in rebuilt),
            "removed_examples": sum(r["removed_examples"] for r in rebuilt)}


def exports_holding(rt: Runtime, pseudonym: str) -> list[str]:
    """The export dirs under finetune/ whose manifest lists this pseudonym (for erasure answers:
    `tuneloop export --rebuild` then rewrites them without the user)."""
    root = Path(rt.env.data_dir) / "finetune"
    found = []
    if root.is_dir():
        for d in sorted(root.iterdir()):
            m = d / "manifest.json"
            if d.name.startswith(".") or d.is_symlink() or not m.is_file():
                continue
            with contextlib.suppress(OSError, ValueError):
                if pseudonym in json.loads(m.read_text(encoding="utf-8")).get("pseudonyms", []):
                    found.append(str(d))
    return found
