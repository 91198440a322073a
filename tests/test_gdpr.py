"""GDPR rights end to end: erasure that reaches everything (the record store in every status, the
buffers of every bot process, the spill journal, exports already written), withdrawal, access
(/mydata), retention, blocking the bot, and consent text versions. A real Redis, real aiogram
Dispatchers fed Update JSON, the Bot API stand-in, the REST app and the CLI."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiogram.client.session.middlewares.base import BaseRequestMiddleware
from aiogram.methods import SendDocument
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.standins.botapi import callback_update, message_update
from middleware.capture import detector_version
from middleware.config import Config, Env
from middleware.record import PII_TYPES, Record, capture_fields, iso_z, new_record_id, result_field
from middleware.redis_conn import connect
from tests.conftest import ROOT, SECRET
from tests.harness import feed, make_bot, wait_until
from tests.records import seed
from workers import gdpr
from workers.analyzers.base import make_analyzer
from workers.export import export
from workers.retention import purge_expired, purge_expired_job
from workers.runtime import Runtime
from workers.schedule import plan
from workers.stats import snapshot
from workers.tasks import Processor, set_processor

TOKEN = "admin-token-for-gdpr-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STATUSES = ("pending", "approved", "needs_review", "rejected")
EVENT_KEYS = {"event", "version", "lang", "mechanism", "at"}
DAY_MS = 86_400_000


# ------------------------------------------------------------------------------------ helpers

@pytest.fixture
def rt(config: Config, env: Env) -> Runtime:
    return Runtime(config, env, connect(env))


@pytest.fixture
def cli_env(config, env, redis_url, tmp_path, monkeypatch):
    """The environment `tuneloop` reads, pointing at this test's Redis prefix and data dir."""
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    cfg["redis"]["prefix"] = config.redis.prefix
    cfg["redis"]["queue"] = config.redis.queue
    path = tmp_path / "cli-config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    for k, v in {"TUNELOOP_CONFIG": str(path), "REDIS_URL": redis_url, "TUNELOOP_SECRET": SECRET,
                 "TUNELOOP_DATA_DIR": str(env.data_dir)}.items():
        monkeypatch.setenv(k, v)
    for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TUNELOOP_ADMIN_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def cli(capsys, *argv: str) -> tuple[int, Any]:
    from bot.cli import main

    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else None)


@asynccontextmanager
async def admin_client(config: Config, env: Env, capture: Any = None):
    e = env.model_copy(update={"admin_token": TOKEN})
    rt = Runtime(config, e, connect(e))
    async with TestClient(TestServer(create_app(rt, capture))) as c:
        yield c


def slow(config: Config) -> Config:
    """A copy whose capture keeps messages in the buffer until flushed explicitly."""
    c = config.model_copy(deep=True)
    c.capture.max_delay_ms = 60_000
    return c


def sums_hold(rt: Runtime) -> dict[str, int]:
    s = snapshot(rt.handle.sync, rt.keys)["pipeline"]
    assert s["captured"] == s["filtered_out"] + s["analyzed"] + s["queue_size"] + s["discarded"], s
    assert s["analyzed"] == s["qa_passed"] + s["qa_failed"] + s["needs_review"], s
    assert s["dropped"] == 0, s
    return s


def route_to(rt: Runtime, pairs: list[tuple[str, str]], confidence: float = 0.95) -> None:
    """Route pending records to a status through the store's route script (counters included),
    as a worker would leave them."""
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    version = detector_version(rt.anonymizer)
    verdicts = []
    for rid, status in pairs:
        rec = rt.store.get(rid)
        assert rec is not None and rec.status == "pending"
        rec.status = status  # type: ignore[assignment]
        rec.analysis = {"intent": "proforma", "product": None, "size": None, "glaseo_percentage": None,
                        "incoterm": None, "destination": None, "quantity": None, "confidence": confidence}
        rec.analyzer, rec.qa_passed, rec.processed_at = "rules", status == "approved", iso_z(time.time())
        rec.qa_errors = [] if status == "approved" else ["low_confidence"]
        rec.detector_version = version   # scanned with today's detector: no residue rescan at export
        r = result_field(rec)
        verdicts.append((rid, status, r, status, r, capture_fields(rec)["c"], ""))
    assert rt.store.route(day, verdicts) == [st for _, st in pairs]


def one_per_status(rt: Runtime, users: list[str], start_ms: int | None = None) -> dict[str, dict[str, str]]:
    """For each user, one record in each status; {user: {status: id}}."""
    ids = seed(rt.store, users, 4 * len(users), start_ms=start_ms)
    out: dict[str, dict[str, str]] = {u: {} for u in users}
    for i, rid in enumerate(ids):
        out[users[i % len(users)]][STATUSES[i // len(users)]] = rid
    route_to(rt, [(rid, st) for u in users for st, rid in out[u].items() if st != "pending"])
    return out


def journal_item(pseudonym: str, ms: int, text: str, version: str = "es:test") -> dict[str, Any]:
    """A spill-journal line as capture writes it (already anonymized, pseudonymous)."""
    rec = Record(id=new_record_id(ms), user_id=pseudonym, channel="telegram", content=text,
                 original_length=len(text), reply=["Recibido."], pii=dict.fromkeys(PII_TYPES, 0),
                 metadata={"state": "idle", "lang": "es"}, consent_version=version,
                 captured_at=iso_z(ms / 1000), detector_version="test")
    return {"k": "r", "u": pseudonym, "t": ms, "id": rec.id, "c": capture_fields(rec)["c"], "a": {}}


def dead_journal(data_dir: Path, items: list[dict[str, Any]]) -> Path:
    """The journal a bot process left behind when it died (nobody holds its lock)."""
    d = data_dir / "spill"
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"deadhost-4242-{uuid.uuid4().hex[:8]}.jsonl"
    p.write_text("".join(json.dumps(i, ensure_ascii=False, separators=(",", ":")) + "\n" for i in items),
                 encoding="utf-8")
    return p


def journal_users(data_dir: Path) -> list[str]:
    return [json.loads(ln)["u"] for p in sorted((data_dir / "spill").glob("*.jsonl"))
            for ln in p.read_text(encoding="utf-8").splitlines()]


def contents(rt: Runtime, pseudonym: str) -> list[str]:
    return [r.content for r in rt.store.get_many(rt.store.user_record_ids(pseudonym)) if r is not None]


def assert_gone(rt: Runtime, pseudonym: str, ids: list[str]) -> None:
    """No trace of these records anywhere in the store."""
    r = rt.handle.sync
    assert rt.store.user_record_ids(pseudonym) == []
    for rid in ids:
        assert not r.exists(rt.keys.record(rid))
        assert r.zscore(rt.keys.time_index, rid) is None
        for st in STATUSES:
            assert not r.sismember(rt.keys.status(st), rid)


def assert_ledger_without_text(rt: Runtime, pseudonym: str, expected: list[str]) -> list[dict[str, Any]]:
    events = rt.store.consent_events(pseudonym)
    assert [e["event"] for e in events] == expected
    for e in events:
        assert set(e) <= EVENT_KEYS, e           # proof of consent, never the text or a message
        assert isinstance(e["at"], int) and e["at"] > 0
    raw = b"".join(rt.handle.sync.lrange(rt.keys.consent_events(pseudonym), 0, -1)).decode()
    assert "Nos permites" not in raw and "HLSO" not in raw
    return events


class DocumentTap(BaseRequestMiddleware):
    """Keeps the documents the bot sends (the stand-in records form fields, not files)."""

    def __init__(self) -> None:
        self.docs: list[tuple[int | str, str, bytes]] = []

    async def __call__(self, make_request, bot, method):
        if isinstance(method, SendDocument):
            doc = method.document
            self.docs.append((method.chat_id, getattr(doc, "filename", ""), getattr(doc, "data", b"")))
        return await make_request(bot, method)


def kicked_update(user_id: int, status: str = "kicked") -> dict[str, Any]:
    user = {"id": user_id, "is_bot": False, "first_name": "Ana"}
    me = {"id": 123456, "is_bot": True, "first_name": "b"}
    return {"update_id": int(time.time() * 1000) % 10**9, "my_chat_member": {
        "chat": {"id": user_id, "type": "private"}, "from": user, "date": int(time.time()),
        "old_chat_member": {"status": "member", "user": me},
        "new_chat_member": {"status": status, "until_date": 0, "user": me} if status == "kicked"
        else {"status": status, "user": me}}}


# ------------------------------------------------------------------- 1, 2: erasure reaches everything

@pytest.mark.parametrize("via", ["forget_button", "consent_no", "api", "cli"])
async def test_erasure_reaches_store_every_status_other_process_buffer_and_journal(
        via, botapi, config, env, rt, rconn, prefix, cli_env, capsys):
    cfg = slow(config)
    dp1, bot1, cap1 = await make_bot(botapi, cfg, env)
    dp2, bot2, cap2 = await make_bot(botapi, cfg, env)   # a second bot process on the same Redis
    A, B = 7001, 7002
    pa, pb = cap1.pseudonymize(f"telegram:{A}"), cap1.pseudonymize(f"telegram:{B}")
    for uid in (A, B):
        await feed(dp1, bot1, message_update(uid, "/consent yes"))
    # the store: one record per status for each user, plus one captured for real (pending)
    stored = one_per_status(rt, [pa, pb])
    for uid in (A, B):
        await feed(dp1, bot1, message_update(uid, f"precio HLSO 16/20 para el cliente {uid}"))
    assert await cap1.flush()
    assert len(rt.store.user_record_ids(pa)) == 5 == len(rt.store.user_record_ids(pb))
    a_ids = rt.store.user_record_ids(pa)
    # the buffers: each user has a message waiting in each process
    for uid in (A, B):
        await feed(dp1, bot1, message_update(uid, f"y la talla 21/25, {uid}?"))
        await feed(dp2, bot2, message_update(uid, f"cuándo zarpa el contenedor, {uid}?"))
    assert cap1.core.buffered == 2 and cap2.core.buffered == 2
    # the spill journal of a process that died: two lines of A's, one of B's
    now = int(time.time() * 1000)
    dead_journal(env.data_dir, [journal_item(pa, now - 3000, "HOSO 30/40 pedido 1"),
                                journal_item(pb, now - 2000, "HOSO 30/40 pedido 2"),
                                journal_item(pa, now - 1000, "HOSO 30/40 pedido 3")])

    if via == "forget_button":
        await feed(dp1, bot1, message_update(A, "/forget"))
        assert "tuneloop:forget" in json.dumps(botapi.sent()[-1]["reply_markup"])
        assert len(rt.store.user_record_ids(pa)) == 5          # nothing before the confirmation
        await feed(dp1, bot1, callback_update(A, "tuneloop:forget"))
        assert botapi.sent()[-1]["text"].startswith("Listo: retiraste")
        expected_events = ["grant", "withdraw"]
    elif via == "consent_no":
        await feed(dp1, bot1, message_update(A, "/consent no"))
        assert botapi.sent()[-1]["text"].startswith("Listo: retiraste")
        expected_events = ["grant", "withdraw"]
    elif via == "api":
        async with admin_client(cfg, env, cap1) as c:
            r = await c.delete(f"/webhook/training/users/telegram:{A}", headers=AUTH)
            body = await r.json()
        assert r.status == 200
        # the counts per place: the store, this process's buffer, the journal
        assert body == {"success": True, "user_id": f"telegram:{A}",
                        "erased": {"store": 5, "buffer": 1, "journal": 2}, "exports": []}
        expected_events = ["grant", "erase"]
    else:
        code, out = cli(capsys, "forget", f"telegram:{A}")
        assert code == 0
        assert out == {"success": True, "user_id": f"telegram:{A}",
                       "erased": {"store": 5, "buffer": 0, "journal": 2}, "exports": []}
        expected_events = ["grant", "erase"]

    # the store: A's records are gone in every status, B's are all there
    assert_gone(rt, pa, a_ids)
    b_ids = rt.store.user_record_ids(pb)
    assert len(b_ids) == 5 and set(stored[pb].values()) <= set(b_ids)
    assert {st: rt.store.get(rid).status for st, rid in stored[pb].items()} == {s: s for s in STATUSES}
    # the buffers of both processes lose A's messages (the other one through pub/sub), keep B's
    assert await wait_until(lambda: cap2.core.buffered == 1 and cap1.core.buffered == 1, 5)
    assert all(i.pseudonym == pb for i in [*cap1.core._buf, *cap2.core._buf])
    # the journal: A's lines are gone, B's stays
    assert journal_users(env.data_dir) == [pb]
    # consent off, erasure time recorded, the ledger keeps the events (no text)
    c = rt.store.consent(pa)
    assert not c.active and c.erased_at is not None and c.erased_at <= int(time.time() * 1000)
    assert_ledger_without_text(rt, pa, expected_events)
    # A writes again in process 2 (no consent now): nothing captured
    await feed(dp2, bot2, message_update(A, "otro pedido después de borrar"))
    assert await cap1.flush() and await cap2.flush()
    assert rt.store.user_record_ids(pa) == []
    assert len(rt.store.user_record_ids(pb)) == 7             # 5 + one from each buffer
    s = sums_hold(rt)
    assert s["discarded"] == 2 and s["erased"] == 3           # pending ones discarded, stored ones erased
    await cap1.close()
    await cap2.close()


async def test_erasure_of_a_user_without_anything_stored_answers_zeros_and_records_the_time(
        config, env, rt):
    async with admin_client(config, env) as c:
        r = await c.delete("/webhook/training/users/whatsapp:+593991112233", headers=AUTH)
        body = await r.json()
    assert body["erased"] == {"store": 0, "buffer": 0, "journal": 0} and body["exports"] == []
    p = rt.pseudonymizer("whatsapp:+593991112233")
    assert rt.store.consent(p).erased_at is not None
    assert_ledger_without_text(rt, p, ["erase"])


async def test_cli_consent_no_withdraws_and_erases_the_journal_too(config, env, rt, cli_env, capsys):
    pa, pb = rt.pseudonymizer("telegram:31"), rt.pseudonymizer("telegram:32")
    seed(rt.store, [pa, pb], 6)
    now = int(time.time() * 1000)
    dead_journal(env.data_dir, [journal_item(pa, now - 10, "PD 41/50"), journal_item(pb, now - 5, "PD 41/50")])
    code, out = cli(capsys, "consent", "telegram:31", "--set", "no")
    assert code == 0 and out["consent"] is False
    assert out["erased"] == {"store": 3, "buffer": 0, "journal": 1}
    assert rt.store.user_record_ids(pa) == [] and len(rt.store.user_record_ids(pb)) == 3
    assert journal_users(env.data_dir) == [pb]
    assert_ledger_without_text(rt, pa, ["grant", "withdraw"])
    sums_hold(rt)


# ------------------------------------------------------------------- a job in flight

class BlockingAnalyzer:
    """The offline analyzer, held inside analyze_batch until released (a job in flight)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.entered = threading.Event()
        self.release = threading.Event()

    async def analyze_batch(self, texts: list[str]) -> list[Any]:
        self.entered.set()
        await asyncio.to_thread(self.release.wait, 20)
        return await self.inner.analyze_batch(texts)


@pytest.mark.parametrize("regrant", [False, True])
def test_a_job_in_flight_cannot_bring_an_erased_record_back(rt, regrant):
    pa, pb = rt.pseudonymizer("telegram:41"), rt.pseudonymizer("telegram:42")
    ids = seed(rt.store, [pa, pb], 8)
    a_ids = rt.store.user_record_ids(pa)
    analyzer = BlockingAnalyzer(make_analyzer(rt.config, rt.env))
    p = Processor(rt, analyzer=analyzer)
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.setdefault("res", p.process(ids)))
    t.start()
    try:
        assert analyzer.entered.wait(10)   # the worker holds all 8 records, loaded as pending
        res = gdpr.forget(rt, "telegram:41", "cli")
        assert res["erased"]["store"] == 4
        if regrant:   # a new grant meanwhile must not let the old records back either
            rt.store.grant(pa, "es:test", "es", "api")
    finally:
        analyzer.release.set()
        t.join(20)
    assert not t.is_alive()
    assert out["res"].processed == 4                     # only B's were routed
    assert_gone(rt, pa, a_ids)
    assert len(rt.store.user_record_ids(pb)) == 4
    s = sums_hold(rt)
    assert s["discarded"] == 4                           # counted once, by the eraser
    assert s["analyzed"] == 4 and s["queue_size"] == 0
    # the same job again (an RQ retry): nothing changes
    assert p.process(ids).processed == 0
    assert sums_hold(rt) == s


# ------------------------------------------------------------------- re-grant; nothing old returns

async def test_after_a_new_grant_capture_resumes_and_nothing_captured_before_the_erasure_returns(
        botapi, config, env, rt, rconn):
    dp, bot, cap = await make_bot(botapi, config, env)
    A, B = 51, 52
    pa, pb = cap.pseudonymize(f"telegram:{A}"), cap.pseudonymize(f"telegram:{B}")
    for uid in (A, B):
        await feed(dp, bot, message_update(uid, "/consent yes"))
    await feed(dp, bot, message_update(A, "precio HLSO 16/20 antes de borrar"))
    assert await cap.flush()
    [old] = rt.store.get_many(rt.store.user_record_ids(pa))
    old_item = {"k": "r", "u": pa, "t": old.captured_ms, "id": old.id,
                "c": rconn.hget(rt.keys.record(old.id), "c").decode(), "a": {}}
    before_ms = int(time.time() * 1000) - 1
    gdpr.forget(rt, f"telegram:{A}", "cli")
    erased_at = rt.store.consent(pa).erased_at
    assert erased_at is not None and erased_at >= before_ms
    # without a new grant nothing is captured
    await feed(dp, bot, message_update(A, "sigo escribiendo sin consentimiento"))
    assert await cap.flush()
    assert rt.store.user_record_ids(pa) == []
    # a new grant: capture starts again
    await asyncio.sleep(0.005)   # the next message's capture time is after the erasure time
    await feed(dp, bot, message_update(A, "/consent yes"))
    await feed(dp, bot, message_update(A, "precio HOSO 30/40 después"))
    assert await cap.flush()
    assert contents(rt, pa) == ["precio HOSO 30/40 después"]
    # the flush script, re-run with the old record (a retried flush, a restored backup): refused
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    pipe = rconn.pipeline(transaction=True)
    rt.store.flush(pipe, day, [old_item, journal_item(pa, erased_at, "en el mismo milisegundo")])
    assert [list(x) for x in pipe.execute()] == [[0, 0, 2]]   # written, filtered, refused
    # the spill journal of a dead process holding an old record and a new one: only the new one
    now = int(time.time() * 1000)
    dead_journal(env.data_dir, [journal_item(pa, erased_at - 5000, "viejo, del journal"),
                                journal_item(pa, now, "nuevo, del journal"),
                                journal_item(pb, now, "de otro usuario, del journal")])
    replayed0 = int(rconn.hget(rt.keys.stats, "replayed") or 0)
    cap2_dp, cap2_bot, cap2 = await make_bot(botapi, config, env)   # a new process replays it
    assert await wait_until(lambda: not any(p.stat().st_size for p in (env.data_dir / "spill").glob("*.jsonl")), 10)
    assert await wait_until(lambda: int(rconn.hget(rt.keys.stats, "replayed") or 0) >= replayed0 + 3, 5)
    assert sorted(contents(rt, pa)) == sorted(["precio HOSO 30/40 después", "nuevo, del journal"])
    assert contents(rt, pb) == ["de otro usuario, del journal"]
    assert not rconn.exists(rt.keys.record(old.id))
    # a worker never brings it back either: the route script refuses records older than erasure
    rconn.hset(rt.keys.record(old.id), mapping={"u": pa, "t": old.captured_ms, "s": "pending",
                                                 "c": old_item["c"]})
    rconn.sadd(rt.keys.status("pending"), old.id)
    rconn.hincrby(rt.keys.stats, "captured", 1)   # as if the flush had counted it
    await asyncio.to_thread(Processor(rt).process, [old.id])
    assert not rconn.exists(rt.keys.record(old.id))
    assert_ledger_without_text(rt, pa, ["grant", "erase", "grant"])
    sums_hold(rt)
    await cap.close()
    await cap2.close()


# ------------------------------------------------------------------- 3: exports already written

async def test_erasure_lists_exports_naming_the_user_and_rebuild_removes_them(
        config, env, rt, cli_env, capsys):
    us = [rt.pseudonymizer(f"telegram:{1000 + i}") for i in range(5)]
    ids = seed(rt.store, us, 50)
    route_to(rt, [(i, "approved") for i in ids])
    res = export(rt, seed=1)
    assert res["success"]
    d = Path(res["files"]["train"]).parent
    assert (d.parent / "latest").is_symlink()   # the `latest` link is not a second export
    assert gdpr.exports_naming(rt, us[0]) == [str(d)]
    # erasure by the API and by the CLI: both answers list the export dir
    async with admin_client(config, env) as c:
        r = await c.delete(f"/webhook/training/users/{us[0]}", headers=AUTH)   # the pseudonym works too
        body = await r.json()
    assert body["erased"]["store"] == 10 and body["exports"] == [str(d)]
    code, out = cli(capsys, "forget", "telegram:1001")
    assert code == 0 and out["erased"]["store"] == 10 and out["exports"] == [str(d)]
    # an export after the erasure has none of theirs
    res2 = export(rt, seed=1)
    d2 = Path(res2["files"]["train"]).parent
    m2 = json.loads((d2 / "manifest.json").read_text())
    assert us[0] not in m2["pseudonyms"] and us[1] not in m2["pseudonyms"] and len(m2["pseudonyms"]) == 3
    assert res2["train_examples"] + res2["valid_examples"] == 30
    # --rebuild rewrites the old export without them
    code, out = cli(capsys, "export", "--rebuild")
    assert code == 0 and out["removed_users"] == 2 and out["removed_examples"] == 20
    assert [x["dir"] for x in out["rebuilt"]] == [str(d)]
    m = json.loads((d / "manifest.json").read_text())
    assert m["pseudonyms"] == sorted(us[2:])
    n = 0
    for s in ("train", "valid"):
        data = (d / f"{s}.jsonl").read_text().splitlines()
        tags = (d / f"{s}.users.tsv").read_text().splitlines()
        assert len(data) == len(tags) == m["counts"][s]
        assert all(0 <= int(t.split("\t")[0]) < 3 for t in tags)
        n += len(data)
    assert n == 30
    assert gdpr.exports_naming(rt, us[0]) == [] and sorted(gdpr.exports_naming(rt, us[2])) == sorted([str(d), str(d2)])
    # nothing left to do
    code, out = cli(capsys, "export", "--rebuild")
    assert code == 0 and out["rebuilt"] == []


def test_an_export_in_flight_during_an_erasure_drops_the_user(rt):
    us = [rt.pseudonymizer(f"telegram:{2000 + i}") for i in range(5)]
    ids = seed(rt.store, us, 50)
    route_to(rt, [(i, "approved") for i in ids])
    erased: list[dict[str, Any]] = []

    def progress(done: int, total: int) -> None:   # called while the export is running
        if not erased:
            erased.append(gdpr.forget(rt, "telegram:2000", "cli"))

    res = export(rt, seed=1, progress=progress)
    assert erased and erased[0]["erased"]["store"] == 10
    d = Path(res["files"]["train"]).parent   # rewritten before export() returned
    assert us[0] not in json.loads((d / "manifest.json").read_text())["pseudonyms"]


# ------------------------------------------------------------------- 4: /mydata

async def test_mydata_on_telegram_sends_exactly_the_users_own_data(botapi, config, env, rt):
    dp, bot, cap = await make_bot(botapi, config, env)
    tap = DocumentTap()
    bot.session.middleware(tap)
    A, B = 918273645, 918273646   # long ids: never found in the file by chance
    pa, pb = cap.pseudonymize(f"telegram:{A}"), cap.pseudonymize(f"telegram:{B}")
    for uid in (A, B):
        await feed(dp, bot, message_update(uid, "/consent yes"))
    mine = ["precio HOSO 20/30 CFR Miami", "y la 16/20, escríbeme a ana.perez@example.com"]
    for text in mine:
        await feed(dp, bot, message_update(A, text))
    await feed(dp, bot, message_update(B, "otro usuario, PD 41/50"))
    assert await cap.flush()
    route_to(rt, [(rt.store.user_record_ids(pa)[0], "approved")])   # one stored, one still pending
    await feed(dp, bot, message_update(A, "/mydata"))
    assert len(botapi.sent("sendDocument")) == 1
    [(chat_id, filename, body)] = tap.docs
    assert chat_id == A and filename.endswith(".json")
    data = json.loads(body)
    assert data["user_id"] == pa
    assert [r["content"] for r in data["records"]] == ["precio HOSO 20/30 CFR Miami",
                                                        "y la 16/20, escríbeme a [EMAIL]"]
    assert {r["id"] for r in data["records"]} == set(rt.store.user_record_ids(pa))
    assert sorted(r["status"] for r in data["records"]) == ["approved", "pending"]
    assert all(r["user_id"] == pa for r in data["records"])
    assert data["consent_events"] == rt.store.consent_events(pa)
    assert [e["event"] for e in data["consent_events"]] == ["grant"]
    assert data["consent"]["active"] is True and data["consent"]["version"] == rt.store.consent(pa).version
    text = body.decode()
    assert pb not in text and "PD 41/50" not in text and str(A) not in text and "ana.perez" not in text
    # the command never reached the bot, and nothing was captured for it
    assert rt.store.user_record_ids(pa) and len(rt.store.user_record_ids(pa)) == 2
    # after an erasure: the events remain as proof, no records
    await feed(dp, bot, message_update(A, "/consent no"))
    data = await cap.core.my_data(f"telegram:{A}")
    assert data["records"] == [] and [e["event"] for e in data["consent_events"]] == ["grant", "withdraw"]
    assert data["consent"]["active"] is False
    await cap.close()


async def test_mydata_and_forget_on_whatsapp(config, env, rt, rconn, prefix):
    from tests.test_twilio import PUBLIC, grant, messages_of, start_app, stop_app, wa_number
    from tests.test_twilio import TOKEN as TW_TOKEN

    app = await start_app(config, env.model_copy(update={"twilio_auth_token": TW_TOKEN, "public_url": PUBLIC}))
    try:
        me, other = wa_number(), wa_number()
        for n in (me, other):
            await grant(app, n)
        for t in ("HLSO 16/20", "PD 31/40 IQF", "HOSO 30/40"):
            await app.say(me, t)
        await app.say(other, "EZ PEEL 26/30")
        await app.cap.flush()
        _, body = await app.say(me, "/mydata")
        [text, link] = messages_of(body)
        assert text.startswith("Tu consentimiento está activo") and text.endswith("(anonimizados): 3.")
        # the JSON file, through the short-lived link (WhatsApp takes no JSON attachment)
        path = link.split(PUBLIC, 1)[1]
        r = await app.client.get(path)
        assert r.status == 200 and "attachment" in r.headers["Content-Disposition"]
        file = await r.json()
        assert sorted(x["content"] for x in file["records"]) == ["HLSO 16/20", "HOSO 30/40", "PD 31/40 IQF"]
        assert file["user_id"] == app.pseudo(me) and me.lstrip("+") not in json.dumps(file)
        assert (await app.client.get("/tuneloop/mydata/not-a-token.json")).status == 404
        data = await app.cap.core.my_data(f"whatsapp:{me}")
        assert sorted(r["content"] for r in data["records"]) == ["HLSO 16/20", "HOSO 30/40", "PD 31/40 IQF"]
        assert data["user_id"] == app.pseudo(me) and me.lstrip("+") not in json.dumps(data)
        assert [e["event"] for e in data["consent_events"]] == ["grant"]
        assert data["consent_events"][0]["mechanism"] == "keyword"
        # /forget on WhatsApp: no confirmation step there (no buttons); erases at once
        _, body = await app.say(me, "/forget")
        assert messages_of(body)[0].startswith("Listo: retiraste")
        assert rt.store.user_record_ids(app.pseudo(me)) == []
        assert [r["content"] for r in (await app.cap.core.my_data(f"whatsapp:{other}"))["records"]] == ["EZ PEEL 26/30"]
        _, body = await app.say(me, "/mydata")
        assert messages_of(body)[0].endswith("(anonimizados): 0.")
    finally:
        await stop_app(app)


# ------------------------------------------------------------------- 5: retention

def test_retention_purges_only_records_older_than_retention_days(rt):
    rt.config.gdpr.retention_days = 30
    pa, pb = rt.pseudonymizer("telegram:61"), rt.pseudonymizer("telegram:62")
    now = int(time.time() * 1000)
    old = one_per_status(rt, [pa, pb], start_ms=now - 40 * DAY_MS)        # 8 records, 40 days old
    new = one_per_status(rt, [pa, pb], start_ms=now - 29 * DAY_MS)        # 8 records, 29 days old
    old_ids = [i for u in old.values() for i in u.values()]
    new_ids = [i for u in new.values() for i in u.values()]
    before = sums_hold(rt)
    assert purge_expired(rt) == {"discarded": 2, "erased": 6}
    for u in (pa, pb):
        assert sorted(rt.store.user_record_ids(u)) == sorted(new[u].values())
    for rid in old_ids:
        assert not rt.handle.sync.exists(rt.keys.record(rid))
        assert rt.handle.sync.zscore(rt.keys.time_index, rid) is None
        assert not any(rt.handle.sync.sismember(rt.keys.status(s), rid) for s in STATUSES)
    assert all(rt.store.get(i) is not None for i in new_ids)
    s = sums_hold(rt)
    assert s["discarded"] == before["discarded"] + 2 and s["erased"] == before["erased"] + 6
    ops = snapshot(rt.handle.sync, rt.keys)["operations"]
    assert ops["purged"] == 8
    # consent is untouched: retention is not a withdrawal
    assert rt.store.consent(pa).active and rt.store.consent(pa).erased_at is None
    # nothing more to purge; the job the scheduler enqueues does the same
    set_processor(Processor(rt))
    try:
        assert purge_expired_job() == {"discarded": 0, "erased": 0}
        # two days later, the 29-day-old records are due
        assert purge_expired(rt, now=time.time() + 2 * 86400) == {"discarded": 2, "erased": 6}
    finally:
        set_processor(None)
    assert snapshot(rt.handle.sync, rt.keys)["operations"]["purged"] == 16
    assert rt.store.user_record_ids(pa) == [] and rt.store.user_record_ids(pb) == []
    sums_hold(rt)


def test_retention_zero_keeps_everything_and_is_not_scheduled(rt):
    assert "retention" in [j.name for j in plan(rt)]
    [job] = [j for j in plan(rt) if j.name == "retention"]
    assert job.func == "workers.retention.purge_expired_job"
    now = time.time()
    assert now < job.next_at(now) <= now + 86400 + 1   # daily
    rt.config.gdpr.retention_days = 0
    assert "retention" not in [j.name for j in plan(rt)]
    seed(rt.store, [rt.pseudonymizer("telegram:63")], 3, start_ms=int(now * 1000) - 4000 * DAY_MS)
    assert purge_expired(rt) == {"discarded": 0, "erased": 0}
    assert len(rt.store.user_record_ids(rt.pseudonymizer("telegram:63"))) == 3


# ------------------------------------------------------------------- 6: blocking the bot

@pytest.mark.parametrize("withdraw_on_block", [True, False])
async def test_blocking_the_bot_is_a_withdrawal_when_config_says_so(botapi, config, env, rt, withdraw_on_block):
    config.consent.withdraw_on_block = withdraw_on_block
    dp, bot, cap = await make_bot(botapi, config, env)
    dp2, bot2, cap2 = await make_bot(botapi, slow(config), env)
    A, B = 901, 902
    pa, pb = cap.pseudonymize(f"telegram:{A}"), cap.pseudonymize(f"telegram:{B}")
    for uid in (A, B):
        await feed(dp, bot, message_update(uid, "/consent yes"))
        await feed(dp, bot, message_update(uid, f"precio HLSO {uid}"))
    assert await cap.flush()
    await feed(dp2, bot2, message_update(A, "en el buffer del otro proceso"))
    assert cap2.core.buffered == 1
    await feed(dp, bot, kicked_update(B, status="member"))   # not a block: nothing happens
    await feed(dp, bot, kicked_update(A))
    if withdraw_on_block:
        assert await wait_until(lambda: not rt.store.consent(pa).active, 5)
        assert rt.store.user_record_ids(pa) == [] and rt.store.consent(pa).erased_at is not None
        assert await wait_until(lambda: cap2.core.buffered == 0, 5)
        events = assert_ledger_without_text(rt, pa, ["grant", "withdraw"])
        assert events[-1]["mechanism"] == "block"
    else:
        await asyncio.sleep(0.3)
        assert rt.store.consent(pa).active and len(rt.store.user_record_ids(pa)) == 1
        assert cap2.core.buffered == 1
    assert rt.store.consent(pb).active and len(rt.store.user_record_ids(pb)) == 1
    assert await cap2.flush()
    assert len(rt.store.user_record_ids(pa)) == (0 if withdraw_on_block else 2)
    sums_hold(rt)
    await cap.close()
    await cap2.close()


# ------------------------------------------------------------------- 7: consent text versions

def new_text(config: Config, ask_again: bool = True) -> Config:
    c = config.model_copy(deep=True)
    c.consent.texts["es"].text += " Nuevo."
    c.consent.ask_again_on_new_version = ask_again
    return c


async def test_a_new_consent_text_asks_again_and_stops_capture_until_answered(botapi, config, env, rt):
    dp, bot, cap = await make_bot(botapi, config, env)
    A = 1201
    pa = cap.pseudonymize(f"telegram:{A}")
    await feed(dp, bot, message_update(A, "/consent yes"))
    v1 = rt.store.consent(pa).version
    await feed(dp, bot, message_update(A, "precio HLSO 16/20"))
    assert await cap.flush()
    await cap.close()
    # a deploy with a changed text
    cfg2 = new_text(config)
    dp, bot, cap = await make_bot(botapi, cfg2, env)
    v2 = cap.core.texts.current_version("es")
    assert v2 != v1
    n_sent = len(botapi.sent())
    await feed(dp, bot, message_update(A, "precio HOSO 30/40"))
    assert await wait_until(lambda: len(botapi.sent()) >= n_sent + 2, 5)
    new = botapi.sent()[n_sent:]
    assert new[0]["text"].startswith("¡Perfecto!")                # the bot answered as usual
    asks = [s for s in new if "reply_markup" in s]
    assert len(asks) == 1 and asks[0]["text"].endswith("Nuevo.")  # then the new text, with buttons
    await feed(dp, bot, message_update(A, "¿y la 21/25?"))
    await asyncio.sleep(0.2)
    assert len([s for s in botapi.sent()[n_sent:] if "reply_markup" in s]) == 1   # asked once
    assert await cap.flush()
    assert contents(rt, pa) == ["precio HLSO 16/20"]                # not captured meanwhile
    await feed(dp, bot, callback_update(A, "tuneloop:yes"))
    c = rt.store.consent(pa)
    assert c.active and c.version == v2 and c.mechanism == "button"
    await feed(dp, bot, message_update(A, "precio PD 41/50"))
    assert await cap.flush()
    recs = rt.store.get_many(rt.store.user_record_ids(pa))
    assert [(r.content, r.consent_version) for r in recs] == [("precio HLSO 16/20", v1), ("precio PD 41/50", v2)]
    events = assert_ledger_without_text(rt, pa, ["grant", "grant"])
    assert [e["version"] for e in events] == [v1, v2]
    await cap.close()


async def test_a_new_consent_text_keeps_capturing_when_config_says_not_to_ask_again(botapi, config, env, rt):
    dp, bot, cap = await make_bot(botapi, config, env)
    A = 1202
    pa = cap.pseudonymize(f"telegram:{A}")
    await feed(dp, bot, message_update(A, "/consent yes"))
    v1 = rt.store.consent(pa).version
    await cap.close()
    dp, bot, cap = await make_bot(botapi, new_text(config, ask_again=False), env)
    n_sent = len(botapi.sent())
    await feed(dp, bot, message_update(A, "precio HOSO 30/40"))
    await feed(dp, bot, message_update(A, "¿y la 21/25?"))
    assert await cap.flush()
    await asyncio.sleep(0.2)
    assert not [s for s in botapi.sent()[n_sent:] if "reply_markup" in s]   # not asked
    recs = rt.store.get_many(rt.store.user_record_ids(pa))
    assert [(r.content, r.consent_version) for r in recs] == [("precio HOSO 30/40", v1), ("¿y la 21/25?", v1)]
    await cap.close()


async def test_api_erasure_reaches_dead_journals_when_its_own_capture_keeps_none(config, env, rt):
    from middleware import TrainingCapture

    cfg = config.model_copy(deep=True)
    cfg.capture.spill_max_mb = 0          # this app's capture has no journal of its own
    cap = TrainingCapture(cfg, env)
    assert cap.core.journal is None
    pa, pb = rt.pseudonymizer("telegram:71"), rt.pseudonymizer("telegram:72")
    now = int(time.time() * 1000)
    dead_journal(env.data_dir, [journal_item(pa, now - 20, "PD 41/50"), journal_item(pb, now - 10, "PD 41/50"),
                                journal_item(pa, now - 5, "HLSO 16/20")])
    async with admin_client(cfg, env, cap) as c:
        r = await c.delete("/webhook/training/users/telegram:71", headers=AUTH)
        body = await r.json()
    assert body["erased"] == {"store": 0, "buffer": 0, "journal": 2}
    assert journal_users(env.data_dir) == [pb]
    await cap.close()
