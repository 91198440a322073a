"""The export's working state that grows with the data, kept in Redis instead of in the process.

An export must hold, until it ends, one entry per distinct line (to drop duplicates) and one per
contributing user (to split them, and to list them in the manifest). Held in the process that was
~30 bytes a record: not flat. Here they live in Redis, under the export's own keys (a token per
run, a TTL on every key, all removed when the export ends, however it ends):

- ``s<b>``: the 64-bit hashes of the lines written so far, spread over sets by their low bits so
  that each stays an intset (8 bytes a hash; sized from the records in range, ~256 a set; each set
  holds -1 from the start, a value a str hash never takes, so that every set has its TTL before
  the first line arrives);
- ``U``: pseudonym -> the user's index (users numbered in the order they first contribute);
  ``L``: the pseudonyms in that order; ``Z``: the same, sorted (score 0: lexicographic), whose
  ranks are the manifest's indexes;
- ``S``: one bit per user index, set for users on the valid side.

One Lua call per chunk of lines decides which are new and gives their users' indexes; it is sent
without waiting, and its answer read after the next chunk is built, so Redis works on it while
Python builds (the same trick as the store reader's). Redis holds ~10 bytes a line and ~250 a
user for the export's duration: well under 1% of what the records themselves take.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import redis

log = logging.getLogger("tuneloop.export")

# ARGV: run prefix, TTL, lines still allowed (-1: no limit), the lines' buckets, their hashes, their
# users (1-based, into the next), the distinct pseudonyms as a JSON array. (Space-separated lists
# and one JSON array, not one argument each: redis-py packs an argument in ~3 us of Python.)
# Returns per line: the user's index when the line is new, -1 for a duplicate, -2 past the limit.
ADMIT_LUA = r"""
local base, ttl, left = ARGV[1], ARGV[2], tonumber(ARGV[3])
local U, L, Z = base .. 'U', base .. 'L', base .. 'Z'
local gm, call = string.gmatch, redis.call
local bs, refs = {}, {}
for x in gm(ARGV[4], '%d+') do bs[#bs + 1] = x end
for x in gm(ARGV[6], '%d+') do refs[#refs + 1] = tonumber(x) end
local users = cjson.decode(ARGV[7])
local pid, out, i = {}, {}, 0
for h in gm(ARGV[5], '%S+') do
  i = i + 1
  if left == 0 then
    out[i] = -2
  elseif call('SADD', base .. 's' .. bs[i], h) == 0 then
    out[i] = -1
  else
    local r = refs[i]
    local p = pid[r]
    if not p then
      local u = users[r]
      p = call('HGET', U, u)
      if p then
        p = tonumber(p)
      else
        p = call('RPUSH', L, u) - 1
        call('HSET', U, u, p)
        call('ZADD', Z, 0, u)
        if p == 0 then
          call('EXPIRE', U, ttl) call('EXPIRE', L, ttl) call('EXPIRE', Z, ttl)
        end
      end
      pid[r] = p
    end
    out[i] = p
    left = left - 1
  end
end
return table.concat(out, ' ')
"""

# ARGV: run prefix, TTL, first bucket, bucket after the last. Creates the buckets (with -1).
OPEN_LUA = r"""
for b = tonumber(ARGV[3]), tonumber(ARGV[4]) - 1 do
  local k = ARGV[1] .. 's' .. b
  redis.call('SADD', k, -1)
  redis.call('EXPIRE', k, ARGV[2])
end
return 0
"""

# ARGV: as OPEN_LUA. Renews the TTLs; returns how many of those buckets are intact (hold -1: a
# bucket that expired or was deleted would be re-created, empty, by the next SADD).
TOUCH_LUA = r"""
local n = 0
for b = tonumber(ARGV[3]), tonumber(ARGV[4]) - 1 do
  local k = ARGV[1] .. 's' .. b
  if redis.call('SISMEMBER', k, -1) == 1 then n = n + 1 end
  redis.call('EXPIRE', k, ARGV[2])
end
for _, k in ipairs({'U', 'L', 'Z', 'S'}) do redis.call('EXPIRE', ARGV[1] .. k, ARGV[2]) end
return n
"""

# ARGV: run prefix, user indexes (space-separated), their pseudonyms as a JSON array.
# Returns per user: its rank in the sorted pseudonyms x 2 + its side (1: valid).
SIDES_LUA = r"""
local S, Z = ARGV[1] .. 'S', ARGV[1] .. 'Z'
local users = cjson.decode(ARGV[3])
local out, i = {}, 0
for p in string.gmatch(ARGV[2], '%d+') do
  i = i + 1
  out[i] = redis.call('ZRANK', Z, users[i]) * 2 + redis.call('GETBIT', S, p)
end
return table.concat(out, ' ')
"""

# ARGV: list key, consent key prefix, first index, last index, time (ms). 1 when one of those
# users' consent records an erasure later than the time.
ERASED_LUA = r"""
local since = tonumber(ARGV[5])
for _, p in ipairs(redis.call('LRANGE', ARGV[1], ARGV[3], ARGV[4])) do
  local e = tonumber(redis.call('HGET', ARGV[2] .. p, 'erased_at') or '')
  if e and e > since then return 1 end
end
return 0
"""

PER_BUCKET = 256      # hashes a set is sized for: intsets stay compact up to 512 (Redis's default)
CHUNK = 4096          # keys or users per call for whole-run walks: a few ms of Redis each


class RunLedger:
    """One export's working state in Redis (see the module's docstring)."""

    ttl = 3600            # seconds; renewed every touch_every while the export runs
    touch_every = 300.0

    def __init__(self, client: redis.Redis, base: str) -> None:
        self.r = client
        self.base = base
        self.buckets = 0          # until open()
        self.mask = 0
        self._sha: dict[str, str] = {}
        self._conn: Any = None
        self._inflight = 0
        self._touched = time.monotonic()

    # -- lifecycle
    def open(self, expected_lines: int) -> RunLedger:
        """Create the buckets, sized for ``expected_lines`` (more still work: bigger sets)."""
        self.buckets = 1
        while self.buckets * PER_BUCKET < expected_lines:
            self.buckets *= 2
        self.mask = self.buckets - 1
        for lo in range(0, self.buckets, CHUNK):
            self._eval(OPEN_LUA, self.base, self.ttl, lo, min(lo + CHUNK, self.buckets))
        self._touched = time.monotonic()
        return self

    def touch(self) -> int:
        """Renew every key's TTL; how many buckets are intact (all of them, unless one expired)."""
        self._touched = time.monotonic()
        return sum(int(self._eval(TOUCH_LUA, self.base, self.ttl, lo, min(lo + CHUNK, self.buckets)))
                   for lo in range(0, self.buckets, CHUNK))

    def keep_alive(self) -> None:
        if time.monotonic() - self._touched > self.touch_every:
            self.touch()

    def check(self, users_expected: bool) -> None:
        """Raise when part of the state is gone (a TTL that ran out, someone's FLUSHDB): the
        export would silently let duplicates through, or lose users."""
        intact = self.touch() == self.buckets
        if users_expected:
            n = self.r.llen(self.base + "L")
            intact = intact and n > 0 and n == self.r.hlen(self.base + "U") == self.r.zcard(self.base + "Z")
        if not intact:
            raise RuntimeError("the export's working state in Redis disappeared while it ran (expired or "
                               "deleted); run the export again")

    def close(self) -> None:
        """Remove every key of the run (and drop a connection with answers still in flight)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                while self._inflight:
                    self._inflight -= 1
                    conn.read_response()
            except Exception:
                conn.disconnect()
            self.r.connection_pool.release(conn)
        self._inflight = 0
        try:
            self.r.unlink(*(self.base + k for k in ("U", "L", "Z", "S")))
            for lo in range(0, self.buckets, 1000):
                self.r.unlink(*(f"{self.base}s{b}" for b in range(lo, min(lo + 1000, self.buckets))))
        except redis.RedisError as e:
            # the export's outcome stands (its files may be committed): the keys expire anyway
            log.warning("export working state %s* left to its TTL (%ss): %s", self.base, self.ttl, e)

    # -- lines
    def send(self, hashes: list[int], refs: list[int], users: list[str], limit: int = -1) -> None:
        """Ask which of these lines are new (``refs[i]``: 1-based index of line i's pseudonym in
        ``users``, JSON string literals); the answer is read by :meth:`recv`, in order."""
        mask = self.mask
        self._send(ADMIT_LUA, self.base, self.ttl, limit, " ".join([str(h & mask) for h in hashes]),
                   " ".join(map(str, hashes)), " ".join(map(str, refs)), "[" + ",".join(users) + "]")

    def recv(self) -> list[int]:
        """Per line of the oldest unanswered :meth:`send`: its user's index, -1 (duplicate) or -2
        (past the limit)."""
        return list(map(int, self._recv().split()))

    def users(self) -> int:
        return int(self.r.llen(self.base + "L"))

    def pseudonyms(self, lo: int, hi: int) -> list[str]:
        """Users lo..hi-1, by index."""
        return [p.decode() for p in self.r.lrange(self.base + "L", lo, hi - 1)]

    def sorted_pseudonyms(self) -> Iterator[list[str]]:
        """Every user, sorted, a chunk at a time (the manifest's order)."""
        n = int(self.r.zcard(self.base + "Z"))
        for lo in range(0, n, CHUNK):
            yield [p.decode() for p in self.r.zrange(self.base + "Z", lo, min(lo + CHUNK, n) - 1)]

    # -- sides
    def write_sides(self, lo: int, bits: bytes) -> None:
        """The sides of users lo.. (lo a multiple of 8), one bit each, most significant first."""
        pipe = self.r.pipeline(transaction=False)
        pipe.setrange(self.base + "S", lo >> 3, bits)
        pipe.expire(self.base + "S", self.ttl)
        pipe.execute()

    def set_side(self, index: int, valid: int) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.setbit(self.base + "S", index, valid)
        pipe.expire(self.base + "S", self.ttl)   # it may be what creates the key
        pipe.execute()

    def send_sides(self, indexes: list[bytes], users: list[bytes]) -> None:
        """Ask for these users' manifest ranks and sides (``users``: their pseudonyms as JSON
        string literals); read by :meth:`recv_sides`, in order."""
        self._send(SIDES_LUA, self.base, b" ".join(indexes), b"[" + b",".join(users) + b"]")

    def recv_sides(self) -> list[int]:
        """Per user of the oldest unanswered :meth:`send_sides`: rank x 2 + side."""
        return list(map(int, self._recv().split()))

    # -- erasure
    def erased_since(self, consent_prefix: str, ms: int) -> bool:
        """Whether a contributing user's consent records an erasure after ``ms``."""
        n = self.users()
        return any(int(self._eval(ERASED_LUA, self.base + "L", consent_prefix, lo, min(lo + CHUNK, n) - 1, ms))
                   for lo in range(0, n, CHUNK))

    # -- plumbing
    def _script(self, lua: str) -> str:
        sha = self._sha.get(lua)
        if sha is None:
            sha = self._sha[lua] = self.r.script_load(lua)
        return sha

    def _eval(self, lua: str, *args: Any) -> Any:
        return self.r.evalsha(self._script(lua), 0, *args)

    def _send(self, lua: str, *args: Any) -> None:
        sha = self._script(lua)
        if self._conn is None:
            try:
                self._conn = self.r.connection_pool.get_connection()
            except TypeError:   # redis-py < 5.3 wants a command name
                self._conn = self.r.connection_pool.get_connection("EVALSHA")
        self._conn.send_command("EVALSHA", sha, 0, *args)
        self._inflight += 1

    def _recv(self) -> bytes:
        self._inflight -= 1
        try:
            return self._conn.read_response()
        except BaseException:
            # the connection's state is unknown now: never hand it back with replies pending
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                conn.disconnect()
            self.r.connection_pool.release(conn)
            self._inflight = 0
            raise

