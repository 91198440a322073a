"""The record store's writes that must be atomic: the capture flush, consent changes, erasure.

Each is one Lua script, so a check (is consent active? was the user erased after this message?)
and the write it guards happen in one step: a withdrawal that lands between a bot's consent
check and its flush can never let a record through. Scripts build keys from the prefix passed in
(middleware.keys names them the same way); tuneloop targets a single Redis, not a cluster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from .keys import Keys
from .record import Record, from_hash

# Anonymizer counters per PII type (the seed's names, plus ours).
ANON_FIELD = {"PHONE": "phones_found", "EMAIL": "emails_found", "ADDRESS": "addresses_found",
              "ID": "ids_found", "ACCOUNT": "accounts_found", "NAME": "names_found"}

# ARGV: prefix, day, item JSON... ; item: {"k": "r"|"f", "u", "t" (ms), "id", "c", "a": {field: n}}
FLUSH_LUA = r"""
local p = ARGV[1]
local stats = p .. 'stats'
local anon = p .. 'stats:anon'
local daily = p .. 'stats:day:' .. ARGV[2]
local written, filtered, refused = 0, 0, 0
for i = 3, #ARGV do
  local it = cjson.decode(ARGV[i])
  local c = redis.call('HMGET', p .. 'consent:' .. it.u, 'state', 'erased_at')
  local ok = c[1] == 'granted'
  if ok and c[2] and tonumber(it.t) <= tonumber(c[2]) then ok = false end
  if not ok then
    refused = refused + 1
  elseif it.k == 'f' then
    redis.call('HINCRBY', stats, 'captured', 1)
    redis.call('HINCRBY', stats, 'filtered_out', 1)
    redis.call('HINCRBY', daily, 'captured', 1)
    filtered = filtered + 1
  else
    local rk = p .. 'r:' .. it.id
    -- a replayed batch (spill journal, a retried flush) never writes or counts a record twice
    if redis.call('EXISTS', rk) == 0 then
      redis.call('HSET', rk, 'u', it.u, 't', it.t, 's', 'pending', 'c', it.c)
      redis.call('ZADD', p .. 'u:' .. it.u, it.t, it.id)
      redis.call('ZADD', p .. 'idx:time', it.t, it.id)
      redis.call('SADD', p .. 'status:pending', it.id)
      redis.call('HINCRBY', stats, 'captured', 1)
      redis.call('HINCRBY', stats, 'anonymized', 1)
      redis.call('HINCRBY', daily, 'captured', 1)
      redis.call('HINCRBY', anon, 'total_processed', 1)
      for f, n in pairs(it.a) do redis.call('HINCRBY', anon, f, n) end
      written = written + 1
    end
  end
end
return {written, filtered, refused}
"""

# ARGV: prefix, pseudonym, event JSON (without "at"), version, lang, mechanism
GRANT_LUA = r"""
local p, u = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ck = p .. 'consent:' .. u
redis.call('HSET', ck, 'state', 'granted', 'ts', now, 'granted_at', now, 'version', ARGV[4],
           'lang', ARGV[5], 'mechanism', ARGV[6])
redis.call('SADD', p .. 'consent:active', u)
local ev = cjson.decode(ARGV[3]); ev['at'] = now
redis.call('RPUSH', p .. 'consent:events:' .. u, cjson.encode(ev))
redis.call('PUBLISH', p .. 'consent:changes', cjson.encode({u = u, e = 'grant'}))
return now
"""

# Withdrawal (or a decline): consent off, every stored record of the user erased, erasure time
# recorded. ARGV: prefix, pseudonym, event JSON, mechanism, erase ("1"/"0")
WITHDRAW_LUA = r"""
local p, u = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ck = p .. 'consent:' .. u
local was = redis.call('HGET', ck, 'state')
redis.call('HSET', ck, 'state', 'withdrawn', 'ts', now, 'mechanism', ARGV[4])
redis.call('HDEL', ck, 'granted_at')
redis.call('SREM', p .. 'consent:active', u)
local ev = cjson.decode(ARGV[3]); ev['at'] = now
redis.call('RPUSH', p .. 'consent:events:' .. u, cjson.encode(ev))
local discarded, erased = 0, 0
if ARGV[5] == '1' then
  redis.call('HSET', ck, 'erased_at', now)
  local ui = p .. 'u:' .. u
  local ids = redis.call('ZRANGE', ui, 0, -1)
  for _, id in ipairs(ids) do
    local rk = p .. 'r:' .. id
    local s = redis.call('HGET', rk, 's')
    if s then
      if s == 'pending' then discarded = discarded + 1 else erased = erased + 1 end
      redis.call('SREM', p .. 'status:' .. s, id)
      redis.call('DEL', rk)
    end
    redis.call('ZREM', p .. 'idx:time', id)
    redis.call('DEL', p .. 'review:claim:' .. id)
  end
  redis.call('DEL', ui)
  if discarded > 0 then redis.call('HINCRBY', p .. 'stats', 'discarded', discarded) end
  if erased > 0 then redis.call('HINCRBY', p .. 'stats', 'erased', erased) end
end
redis.call('PUBLISH', p .. 'consent:changes', cjson.encode({u = u, e = 'withdraw'}))
return {discarded, erased, now, was or false}
"""


# Workers' verdicts on pending records, applied atomically, a batch per call: each record must
# still exist and be pending (a retried or duplicated job never routes or counts it twice), its
# user's consent must still hold, and the near-duplicate index decides between the two prepared
# verdicts. ARGV: prefix, day, then per record 7 values: id, status, result, dup_status,
# dup_result, capture ('' = unchanged), dedupe hash ('' = no duplicate check).
# Returns one entry per record: the status given, 'discarded', or '' when skipped.
ROUTE_LUA = r"""
local p, day = ARGV[1], ARGV[2]
local counters = {approved = 'qa_passed', rejected = 'qa_failed', needs_review = 'needs_review'}
local add = {}
local out = {}
for i = 3, #ARGV, 7 do
  local id = ARGV[i]
  local rk = p .. 'r:' .. id
  local h = redis.call('HMGET', rk, 's', 'u', 't')
  local res = ''
  if h[1] == 'pending' then
    local c = redis.call('HMGET', p .. 'consent:' .. h[2], 'state', 'erased_at')
    if c[1] ~= 'granted' or (c[2] and tonumber(h[3]) <= tonumber(c[2])) then
      redis.call('DEL', rk)
      redis.call('SREM', p .. 'status:pending', id)
      redis.call('ZREM', p .. 'idx:time', id)
      redis.call('ZREM', p .. 'u:' .. h[2], id)
      add['discarded'] = (add['discarded'] or 0) + 1
      res = 'discarded'
    else
      local status, result = ARGV[i + 1], ARGV[i + 2]
      if ARGV[i + 6] ~= '' then
        local dk = p .. 'dedupe'
        local other = redis.call('HGET', dk, ARGV[i + 6])
        if other and other ~= id and redis.call('EXISTS', p .. 'r:' .. other) == 1 then
          status, result = ARGV[i + 3], ARGV[i + 4]
        else
          redis.call('HSET', dk, ARGV[i + 6], id)
        end
      end
      redis.call('HSET', rk, 's', status, 'a', result)
      if ARGV[i + 5] ~= '' then redis.call('HSET', rk, 'c', ARGV[i + 5]) end
      redis.call('SMOVE', p .. 'status:pending', p .. 'status:' .. status, id)
      add['analyzed'] = (add['analyzed'] or 0) + 1
      add[counters[status]] = (add[counters[status]] or 0) + 1
      res = status
    end
  end
  out[#out + 1] = res
end
for k, n in pairs(add) do
  redis.call('HINCRBY', p .. 'stats', k, n)
  if k ~= 'discarded' then redis.call('HINCRBY', p .. 'stats:day:' .. day, k, n) end
end
return out
"""


# Erase given records (retention): pending ones count as discarded, stored ones as erased.
# ARGV: prefix, id... Returns {discarded, erased}.
ERASE_RECORDS_LUA = r"""
local p = ARGV[1]
local discarded, erased = 0, 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local rk = p .. 'r:' .. id
  local h = redis.call('HMGET', rk, 's', 'u')
  if h[1] then
    if h[1] == 'pending' then discarded = discarded + 1 else erased = erased + 1 end
    redis.call('SREM', p .. 'status:' .. h[1], id)
    redis.call('ZREM', p .. 'u:' .. h[2], id)
    redis.call('DEL', rk)
    redis.call('DEL', p .. 'review:claim:' .. id)
  end
  redis.call('ZREM', p .. 'idx:time', id)
end
if discarded > 0 then redis.call('HINCRBY', p .. 'stats', 'discarded', discarded) end
if erased > 0 then redis.call('HINCRBY', p .. 'stats', 'erased', erased) end
redis.call('HINCRBY', p .. 'stats', 'purged', discarded + erased)
return {discarded, erased}
"""


@dataclass(frozen=True)
class ConsentRecord:
    """A user's consent as stored (times in epoch ms)."""

    state: str | None = None          # granted | withdrawn | None (never answered)
    version: str | None = None
    lang: str | None = None
    mechanism: str | None = None
    ts: int | None = None
    granted_at: int | None = None
    erased_at: int | None = None
    asked: str | None = None          # the text version last asked

    @property
    def active(self) -> bool:
        return self.state == "granted"

    @classmethod
    def from_hash(cls, h: dict[Any, Any]) -> ConsentRecord:
        g = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in h.items()}

        def num(k: str) -> int | None:
            return int(g[k]) if g.get(k) else None

        return cls(state=g.get("state"), version=g.get("version"), lang=g.get("lang"),
                   mechanism=g.get("mechanism"), ts=num("ts"), granted_at=num("granted_at"),
                   erased_at=num("erased_at"), asked=g.get("asked"))


class Store:
    """Sync access to the record store and consent ledger (writer thread, CLI, API, workers)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.r = client
        self.keys = keys
        self._flush = client.register_script(FLUSH_LUA)
        self._grant = client.register_script(GRANT_LUA)
        self._withdraw = client.register_script(WITHDRAW_LUA)
        self._route = client.register_script(ROUTE_LUA)
        self._erase_records = client.register_script(ERASE_RECORDS_LUA)

    # capture --------------------------------------------------------------------------------
    def flush_args(self, day: str, items: list[dict[str, Any]]) -> list[str]:
        return [self.keys.prefix, day] + [json.dumps(i, ensure_ascii=False, separators=(",", ":"))
                                          for i in items]

    def flush(self, pipe: redis.client.Pipeline, day: str, items: list[dict[str, Any]]) -> None:
        """Queue the flush script on a transaction pipeline (the caller adds the RQ job)."""
        self._flush(keys=[], args=self.flush_args(day, items), client=pipe)

    def route(self, day: str, verdicts: list[tuple[str, str, str, str, str, str, str]]) -> list[str]:
        """Apply workers' verdicts (see ROUTE_LUA), one atomic call per batch; a status per record.

        Each verdict: (id, status, result, dup_status, dup_result, capture or '', dedupe hash or '').
        """
        if not verdicts:
            return []
        args: list[str] = [self.keys.prefix, day]
        for v in verdicts:
            args.extend(v)
        return [x.decode() if isinstance(x, bytes) else str(x) for x in self._route(keys=[], args=args)]

    # consent --------------------------------------------------------------------------------
    def consent(self, pseudonym: str) -> ConsentRecord:
        return ConsentRecord.from_hash(self.r.hgetall(self.keys.consent(pseudonym)))

    def grant(self, pseudonym: str, version: str, lang: str, mechanism: str) -> int:
        ev = {"event": "grant", "version": version, "lang": lang, "mechanism": mechanism}
        return int(self._grant(keys=[], args=[self.keys.prefix, pseudonym, json.dumps(ev), version,
                                               lang, mechanism]))

    def withdraw(self, pseudonym: str, mechanism: str, erase: bool = True,
                 event: str = "withdraw") -> tuple[int, int, int]:
        """Consent off and (by default) the user's records erased. Returns (discarded, erased, at_ms)."""
        ev = {"event": event, "mechanism": mechanism}
        d, e, now, _ = self._withdraw(keys=[], args=[self.keys.prefix, pseudonym, json.dumps(ev),
                                                     mechanism, "1" if erase else "0"])
        return int(d), int(e), int(now)

    def consent_events(self, pseudonym: str) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self.r.lrange(self.keys.consent_events(pseudonym), 0, -1)]

    # records --------------------------------------------------------------------------------
    def get(self, record_id: str) -> Record | None:
        return from_hash(record_id, self.r.hgetall(self.keys.record(record_id)))

    def get_many(self, ids: list[str]) -> list[Record | None]:
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.keys.record(i))
        return [from_hash(i, h) for i, h in zip(ids, pipe.execute(), strict=True)]

    def erase_records(self, ids: list[str]) -> tuple[int, int]:
        """Erase these records (retention); returns (discarded, erased)."""
        if not ids:
            return 0, 0
        d, e = self._erase_records(keys=[], args=[self.keys.prefix, *ids])
        return int(d), int(e)

    def user_record_ids(self, pseudonym: str) -> list[str]:
        return [i.decode() for i in self.r.zrange(self.keys.user_index(pseudonym), 0, -1)]

    def status_ids(self, status: str, cursor: int = 0, count: int = 100) -> tuple[int, list[str]]:
        cur, ids = self.r.sscan(self.keys.status(status), cursor=cursor, count=count)
        return int(cur), [i.decode() for i in ids]
