"""The export's plumbing: reading the store in time order, atomic files.

Reading: one Lua call per chunk walks the time index by score (capture ms), applies consent and
returns only what the export needs of each record (content, replies, detector version, intent,
confidence, reviewed or not) as one JSON array for the whole chunk. Python then runs one
``json.loads`` per chunk, of short arrays, instead of two per record of the full record JSON
(4-8 us a record on a small machine: more than the rest of the export), and redis-py's
pure-Python reply parser sees one bulk string instead of thousands of fields.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis

from middleware.keys import Keys

# ARGV: time index key, record key prefix, min score, max score (exclusive: "(x"), offset, count,
# "1" to also return approved records' raw result JSON (the nlu format needs the analysis),
# consent key prefix. Returns {ids seen, trailing ids that share the last score, last score,
# JSON}. The JSON is an array with one array per record:
#   [ms, user, status, content, replies, detector version, intent, confidence as text, reviewed
#    (0/1), raw result JSON or ""]
# content is 1 for a record captured before its user's erasure time, 2 when the user's consent
# is not active (nothing else is read: those records are never used). When a record cannot be
# decoded here: [ms, user, status, false, capture JSON, result JSON], parsed in Python.
#
# Two ways to read a record. The fast one copies the JSON string literals it needs (content,
# replies, detector version, intent) out of the record's JSON text as they are, escapes and all,
# into the reply, without decoding anything. It relies on the layout middleware.record writes
# (compact JSON, capture keys in model order: channel, role, content, original_length, reply,
# ..., detector_version last) and checks it: content and reply are matched anchored at the start,
# detector_version must end the object, and in the result JSON '"intent":' and '"confidence":'
# must each occur once, at a key (a needle '"key":' can only match where a key ends, since any
# quote inside a JSON string is escaped); QA approves only analyses with both at their top
# level. Anything else (a reviewed record, a key seen twice, an unexpected byte) takes the slow
# way: cjson decodes the record and encodes what is needed. The fast way costs Redis ~6 us less
# a record (measured), most of an export's load on the Redis the live bot also uses;
# tests/test_export.py checks that both ways read any record as json.loads does.
SCAN_LUA = r"""
local function str(v) if type(v) == 'string' then return v end return '' end
local want_a = ARGV[7] == '1'
local find, byte, sub = string.find, string.byte, string.sub

-- index of the quote closing the JSON string literal that opens at i (or nil)
local function str_end(s, i)
  local j = i
  while true do
    j = find(s, '"', j + 1, true)
    if not j then return nil end
    local k = j - 1
    while byte(s, k) == 92 do k = k - 1 end
    if (j - 1 - k) % 2 == 0 then return j end
  end
end

-- the position just after the only '"key":' of s that starts a key (after '{' or ','), or nil
local function only(s, key, init)
  local f = find(s, key, init, true)
  if not f or find(s, key, f + 1, true) then return nil end
  local b = byte(s, f - 1)
  if b ~= 123 and b ~= 44 then return nil end
  return f + #key
end

local function fast(ms, h)
  local c = h[3]
  if not c then return nil end
  -- the layout's first keys, anchored: this is the top-level content, not a look-alike
  local _, cs = find(c, '^{"channel":"[^"\\]*","role":"[^"\\]*","content":"')
  if not cs then return nil end
  local ce = str_end(c, cs)
  if not ce then return nil end
  local _, p = find(c, '^,"original_length":%-?%d+,"reply":%[', ce + 1)
  if not p then return nil end
  p = p + 1
  local reps = {}
  if byte(c, p) ~= 93 then
    while true do
      if byte(c, p) ~= 34 then return nil end
      local e = str_end(c, p)
      if not e then return nil end
      if e > p + 1 then reps[#reps + 1] = sub(c, p, e) end
      local nb = byte(c, e + 1)
      if nb == 93 then p = e + 1 break end
      if nb ~= 44 then return nil end
      p = e + 2
    end
  end
  -- detector_version is the layout's last key: its value must end the object
  local vp = only(c, '"detector_version":', p)
  if not vp then return nil end
  local ver, ve = '""', vp + 3
  if byte(c, vp) == 34 then
    ve = str_end(c, vp)
    if not ve then return nil end
    ver = sub(c, vp, ve)
  elseif sub(c, vp, vp + 3) ~= 'null' then
    return nil
  end
  if ve ~= #c - 1 or byte(c, #c) ~= 125 then return nil end
  local intent, conf, raw = '""', '', '""'
  if h[2] == 'approved' and h[4] then
    local a = h[4]
    if find(a, '"reviewed_by":', 1, true) then return nil end   -- rare: decoded the slow way
    local ip, cp = only(a, '"intent":', 1), only(a, '"confidence":', 1)
    if not ip or not cp then return nil end
    if byte(a, ip) == 34 then
      local e = str_end(a, ip)
      if not e then return nil end
      intent = sub(a, ip, e)
    elseif sub(a, ip, ip + 3) ~= 'null' then
      return nil
    end
    conf = string.match(a, '^%-?%d[%d%.eE%+%-]*', cp)
    if not conf then return nil end
    if want_a then raw = cjson.encode(a) end
  end
  return '[' .. ms .. ',"' .. h[1] .. '","' .. h[2] .. '",' .. sub(c, cs, ce) .. ',[' .. table.concat(reps, ',')
         .. '],' .. ver .. ',' .. intent .. ',"' .. conf .. '",0,' .. raw .. ']'
end

-- the slow way: cjson; nil when even cjson cannot read the record
local function slow(ms, h)
  local ok, cap = pcall(cjson.decode, h[3] or '{}')
  if not ok or type(cap) ~= 'table' then return nil end
  local reps = {}
  if type(cap.reply) == 'table' then
    for _, r in ipairs(cap.reply) do
      if type(r) == 'string' and r ~= '' then reps[#reps + 1] = r end
    end
  end
  local intent, conf, reviewed, raw = '', '', 0, ''
  if h[2] == 'approved' and h[4] then
    local res
    ok, res = pcall(cjson.decode, h[4])
    if not ok or type(res) ~= 'table' then return nil end
    if str(res.reviewed_by) ~= '' then reviewed = 1 end
    local an = res.analysis
    if type(an) == 'table' then
      intent = str(an.intent)
      if type(an.confidence) == 'number' then conf = string.format('%.17g', an.confidence) end
    end
    if want_a then raw = h[4] end
  end
  return cjson.encode({ms, h[1], h[2], str(cap.content), reps, str(cap.detector_version), intent, conf,
                       reviewed, raw})
end

local ids = redis.call('ZRANGEBYSCORE', ARGV[1], ARGV[3], ARGV[4], 'WITHSCORES', 'LIMIT', ARGV[5], ARGV[6])
local n = #ids / 2
if n == 0 then return {0, 0, '', '[]'} end
local out, consent = {}, {}
for i = 1, #ids, 2 do
  local h = redis.call('HMGET', ARGV[2] .. ids[i], 'u', 's', 'c', 'a')
  if h[1] and h[2] ~= 'pending' then
    local ms = tonumber(ids[i + 1])
    local cs = consent[h[1]]
    if not cs then
      local c = redis.call('HMGET', ARGV[8] .. h[1], 'state', 'erased_at')
      cs = {c[1] == 'granted', tonumber(c[2] or '')}
      consent[h[1]] = cs
    end
    if cs[2] and ms <= cs[2] then        -- captured before the user's erasure time
      out[#out + 1] = cjson.encode({ms, h[1], h[2], 1, '', '', '', '', 0, ''})
    elseif not cs[1] then                -- consent no longer active
      out[#out + 1] = cjson.encode({ms, h[1], h[2], 2, '', '', '', '', 0, ''})
    else
      -- the fast way quotes the pseudonym and status itself: plain words only
      local plain = not find(h[1] .. h[2], '[^%w_:%-]')
      out[#out + 1] = (plain and fast(ids[i + 1], h)) or slow(ms, h)
                      or cjson.encode({ms, h[1], h[2], false, h[3] or '{}', h[4] or ''})
    end
  end
end
local last = ids[#ids]
local tail = 0
for i = #ids, 2, -2 do
  if ids[i] == last then tail = tail + 1 else break end
end
return {n, tail, last, '[' .. table.concat(out, ',') .. ']'}
"""

# One record as the export reads it: [ms, user, status, content, replies, detector version or "",
# intent, confidence as text or "", reviewed 0/1, raw result JSON or ""].
Row = list[Any]


def _raw_row(ms: int, user: str, status: str, c: str, a: str, want_result: bool) -> Row:
    """The slow path: a record Lua sent back undecoded."""
    try:
        cap = json.loads(c)
    except ValueError:
        cap = {}
    cap = cap if isinstance(cap, dict) else {}
    res: Any = {}
    if status == "approved" and a:
        try:
            res = json.loads(a)
        except ValueError:
            res = {}
    res = res if isinstance(res, dict) else {}
    an = res.get("analysis") if isinstance(res.get("analysis"), dict) else {}
    conf = an.get("confidence")
    content, ver, intent = cap.get("content"), cap.get("detector_version"), an.get("intent")
    return [ms, user, status, content if isinstance(content, str) else "",
            [r for r in (cap.get("reply") or []) if isinstance(r, str) and r],
            ver if isinstance(ver, str) else "", intent if isinstance(intent, str) else "",
            repr(float(conf)) if isinstance(conf, int | float) and not isinstance(conf, bool) else "",
            1 if res.get("reviewed_by") else 0, a if want_result and status == "approved" else ""]


class StoreScanner:
    """Records in capture-time order between two times, in chunks, the next one requested while
    the caller works on this one."""

    chunk = 1000   # records per Lua call: a few ms of Redis time, short enough not to stall others

    def __init__(self, client: redis.Redis, keys: Keys, chunk: int | None = None,
                 want_result: bool = False) -> None:
        self.r = client
        self.keys = keys
        if chunk is not None:
            self.chunk = chunk
        self.want_result = want_result

    def count(self, lo_ms: int, hi_ms: int | None) -> int:
        return int(self.r.zcount(self.keys.time_index, lo_ms, f"({hi_ms}" if hi_ms is not None else "+inf"))

    def scan(self, lo_ms: int, hi_ms: int | None) -> Iterator[tuple[int, list[Row]]]:
        """(ids seen, rows) per chunk, from ``lo_ms`` to before ``hi_ms``.

        The request for the next chunk goes out as soon as this chunk's reply is in, before this
        chunk is decoded and handed over: Redis works on it while the caller works on this one,
        on one connection and one thread (a reader thread would fight the caller for the GIL).
        """
        hi = f"({hi_ms}" if hi_ms is not None else "+inf"
        consent = self.keys.consent_prefix
        flag = "1" if self.want_result else "0"
        sha = self.r.script_load(SCAN_LUA)
        try:
            conn = self.r.connection_pool.get_connection()
        except TypeError:   # redis-py < 5.3 wants a command name
            conn = self.r.connection_pool.get_connection("EVALSHA")
        pending = False
        try:
            lo, offset = str(lo_ms), 0
            conn.send_command("EVALSHA", sha, 0, self.keys.time_index, self.keys.record_prefix, lo, hi, offset,
                              self.chunk, flag, consent)
            pending = True
            while pending:
                n, tail, last, blob = conn.read_response()
                pending = False
                n = int(n)
                if n == 0:
                    return
                if n == self.chunk:
                    # resume at the last score, past the ids already read at that score: exact
                    # even when many records share one millisecond
                    last_s = last.decode()
                    offset = (offset + int(tail)) if last_s == lo else int(tail)
                    lo = last_s
                    conn.send_command("EVALSHA", sha, 0, self.keys.time_index, self.keys.record_prefix, lo, hi,
                                      offset, self.chunk, flag, consent)
                    pending = True
                yield n, self._rows(blob)
        finally:
            if pending:   # the caller stopped early: drain the reply in flight, or drop the link
                try:
                    conn.read_response()
                except Exception:
                    conn.disconnect()
            self.r.connection_pool.release(conn)

    def _rows(self, blob: bytes) -> list[Row]:
        rows: list[Row] = json.loads(blob)
        if b"false" in blob or b"{}" in blob:    # rare: only then look at every row
            for i, row in enumerate(rows):
                if row[3] is False:
                    rows[i] = _raw_row(row[0], row[1], row[2], row[4], row[5], self.want_result)
                elif row[4].__class__ is not list:   # cjson writes an empty array as {}
                    row[4] = []
        return rows


# ---------------------------------------------------------------------------------- atomic files

STAGE_PREFIX = ".export-"          # hidden names: never mistaken for an export
STALE_AFTER_S = 6 * 3600
KEEP_PREFIXES = (STAGE_PREFIX + "rebuild-", STAGE_PREFIX + "old-")


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Staging:
    """Files written under hidden temporary names and made visible only by :meth:`commit`.

    ``fresh=True``: a new directory (``final`` must not exist yet) is built as a hidden sibling
    and renamed into place in one step. ``fresh=False``: files go into an existing directory as
    hidden temp files, each renamed over its final name (the manifest last). Either way a crash
    leaves no partial file under a final name, and :meth:`abort` removes the temporaries.
    """

    def __init__(self, final: Path, fresh: bool) -> None:
        self.final = final
        self.fresh = fresh
        self.token = f"{STAGE_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.final.parent.mkdir(parents=True, exist_ok=True)
        if fresh:
            self.dir = final.parent / f"{self.token}.tmp"
            self.dir.mkdir()
        else:
            self.final.mkdir(parents=True, exist_ok=True)
            self.dir = final
        self.names: list[str] = []
        self.scratch: list[Path] = []

    def path(self, name: str) -> Path:
        """The temporary path of a file that :meth:`commit` publishes as ``name``."""
        self.names.append(name)
        return self.dir / (name if self.fresh else f"{self.token}.{name}.tmp")

    def scratch_path(self, name: str) -> Path:
        """A temporary file that is never published (removed at commit or abort)."""
        p = self.dir / f"{self.token}.{name}.scratch"
        self.scratch.append(p)
        return p

    def commit(self) -> Path:
        for p in self.scratch:
            p.unlink(missing_ok=True)
        if self.fresh:
            fsync_dir(self.dir)
            final = self.final
            for n in range(2, 1000):   # two exports in the same second: -2, -3...
                try:
                    os.rename(self.dir, final)
                    break
                except OSError:
                    if not final.exists():
                        raise
                    final = self.final.with_name(f"{self.final.name}-{n}")
            self.final = final
        else:
            # the manifest last: a manifest always describes files that are in place
            for name in sorted(self.names, key=lambda n: n == "manifest.json"):
                os.replace(self.dir / f"{self.token}.{name}.tmp", self.dir / name)
        fsync_dir(self.final.parent if self.fresh else self.final)
        return self.final

    def abort(self) -> None:
        if self.fresh:
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        for p in self.scratch:
            p.unlink(missing_ok=True)
        for name in self.names:
            (self.dir / f"{self.token}.{name}.tmp").unlink(missing_ok=True)


def sweep_stale(root: Path, older_than_s: float = STALE_AFTER_S) -> None:
    """Remove staging left by a killed export (a hidden name, and old: never a running one's)."""
    if not root.is_dir():
        return
    cutoff = time.time() - older_than_s
    for p in root.iterdir():
        # a rebuild's dirs are finished by export_rebuild.recover, never removed here
        if p.name.startswith(STAGE_PREFIX) and not p.name.startswith(KEEP_PREFIXES):
            with contextlib.suppress(OSError):
                if p.lstat().st_mtime < cutoff:
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink()


def point_latest(root: Path, target: Path) -> None:
    """``root/latest`` -> target (relative), replaced atomically."""
    tmp = root / f"{STAGE_PREFIX}latest-{uuid.uuid4().hex[:8]}"
    os.symlink(target.name, tmp)
    os.replace(tmp, root / "latest")
