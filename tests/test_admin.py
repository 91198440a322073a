"""The admin chat commands: a real Dispatcher fed Update JSON, a real Redis, the bot's outgoing
calls served (and recorded) by the local Bot API stand-in; WhatsApp's text versions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiogram import Dispatcher
from aiogram.client.session.middlewares.base import BaseRequestMiddleware
from aiogram.methods import SendDocument, SendPhoto

from bot.admin import handle_admin_text, setup_admin
from bot.admin_chart import available as chart_available
from bot.admin_format import GONE, REFUSAL
from bot.admin_ops import AdminOps
from bot.standins.botapi import callback_update, message_update
from tests.harness import feed, make_bot
from tests.records import seed
from tests.test_review import ANALYSIS, FixedAnalyzer, sums_hold, to_review
from workers import review
from workers.runtime import Runtime
from workers.tasks import Processor

ADMIN, ADMIN2, STRANGER = 1001, 1002, 2002
WA_ADMIN = "whatsapp:+593991234567"


class Methods(BaseRequestMiddleware):
    """Every method the bot sends, as aiogram objects (file names included)."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def __call__(self, make_request: Any, bot: Any, method: Any) -> Any:
        self.sent.append(method)
        return await make_request(bot, method)


@pytest.fixture
async def admin(botapi, config, env):
    config.consent.ask_on_first_message = False   # the consent question is capture's, tested elsewhere
    env = env.model_copy(update={"admin_ids": frozenset({f"telegram:{ADMIN}", f"telegram:{ADMIN2}", WA_ADMIN})})
    dp, bot, cap = await make_bot(botapi, config, env)   # the bot's catch-all handler comes first
    setup_admin(dp, cap)
    methods = Methods()
    bot.session.middleware(methods)

    a = SimpleNamespace(dp=dp, bot=bot, cap=cap, methods=methods,
                        rt=Runtime(cap.config, cap.env, cap.handle),
                        send=lambda uid, text: feed(dp, bot, message_update(uid, text)),
                        press=lambda uid, data: feed(dp, bot, callback_update(uid, data)))
    yield a
    await bot.session.close()
    await cap.close()


def texts(botapi, chat_id: int | None = None) -> list[str]:
    return [s["text"] for s in botapi.sent() if chat_id is None or int(s["chat_id"]) == chat_id]


def buttons(call: dict) -> list[str]:
    markup = call["reply_markup"]
    markup = json.loads(markup) if isinstance(markup, str) else markup
    return [b["callback_data"] for row in markup["inline_keyboard"] for b in row]


def shown_id(botapi, chat_id: int) -> str:
    """The record on the last review card sent to the chat."""
    last = [s for s in botapi.sent() if int(s["chat_id"]) == chat_id][-1]
    return buttons(last)[0].split(":")[-1]


def claims(a) -> list[bytes]:
    return list(a.rt.handle.sync.scan_iter(match=f"{a.rt.keys.prefix}review:claim:*"))


# --------------------------------------------------------------------------------- refusals

async def test_strangers_get_a_refusal_and_nothing_else(admin, botapi):
    await asyncio.to_thread(to_review, admin.rt, 2)
    pending = seed(admin.rt.store, [admin.rt.pseudonymizer("telegram:9")], 3)
    before = sums_hold(admin.rt)
    for cmd in ("/stats", "/process", "/process 5", "/export", "/export 0.9 nlu", "/review"):
        botapi.calls.clear()
        await admin.send(STRANGER, cmd)
        assert [m for m, _ in botapi.calls] == ["sendMessage"], cmd
        assert texts(botapi) == [REFUSAL["es"]]
    # nothing happened: nothing processed, nothing claimed, nothing exported
    assert sums_hold(admin.rt) == before and before["queue_size"] == len(pending)
    assert not claims(admin)
    assert not admin.rt.handle.sync.exists(admin.rt.keys.exports)
    assert not admin.cap.env.data_dir.exists() or not any(admin.cap.env.data_dir.rglob("*.jsonl"))
    await feed(admin.dp, admin.bot, message_update(STRANGER, "/stats", lang="en"))
    assert texts(botapi)[-1] == REFUSAL["en"]
    # a button pressed by a stranger (a forwarded card) decides nothing
    rid = admin.rt.store.status_ids("needs_review")[1][0]
    botapi.calls.clear()
    await admin.press(STRANGER, f"tladm:a:{rid}")
    assert [m for m, _ in botapi.calls] == ["answerCallbackQuery"]
    assert botapi.calls[0][1]["text"] == REFUSAL["es"]
    assert admin.rt.store.get(rid).status == "needs_review" and not claims(admin)
    # in a group even an admin gets no figures or records: only the private-chat hint
    botapi.calls.clear()
    group = {"id": -100123, "type": "group", "title": "ventas"}
    for cmd in ("/stats", "/review", "/process"):
        await feed(admin.dp, admin.bot, message_update(ADMIN, cmd, chat=group))
    assert texts(botapi) == ["Admin commands work only in a private chat with the bot."] * 3
    assert sums_hold(admin.rt) == before and not claims(admin)
    # the bot's own handler still answers ordinary messages
    await admin.send(STRANGER, "hola")
    assert texts(botapi)[-1].startswith("¡Perfecto!")


# ------------------------------------------------------------------------------------ stats

async def test_stats_figures(admin, botapi):
    await asyncio.to_thread(to_review, admin.rt, 3)
    await admin.send(ADMIN, "/stats")
    body = texts(botapi, ADMIN)[0]
    for words in ("captured 3", "analyzed 3", "needs review 3", "in review 3", "Anonymization",
                  "Sessions", "with consent 2 (100.0%)"):
        assert words in body, words
    photos = [m for m in admin.methods.sent if isinstance(m, SendPhoto)]
    assert len(photos) == (1 if chart_available() else 0)


@pytest.mark.skipif(not chart_available(), reason="matplotlib (the plot extra) is not installed")
async def test_stats_funnel_chart(admin, botapi):
    await asyncio.to_thread(to_review, admin.rt, 2)
    await admin.send(ADMIN, "/stats")
    [photo] = [m for m in admin.methods.sent if isinstance(m, SendPhoto)]
    assert photo.photo.filename == "funnel.png"
    assert photo.photo.data.startswith(b"\x89PNG")
    assert "sendPhoto" in [m for m, _ in botapi.calls]


# ---------------------------------------------------------------------------------- process

async def test_process_runs_and_answers_results(admin, botapi):
    seed(admin.rt.store, [admin.rt.pseudonymizer("telegram:9")], 5)
    await admin.send(ADMIN, "/process 3")
    assert texts(botapi, ADMIN)[-1].startswith("⚙️ Processed 3 (up to 3): passed QA")
    assert sums_hold(admin.rt)["queue_size"] == 2
    await admin.send(ADMIN, "/process")
    assert "Processed 2 (up to 100)" in texts(botapi, ADMIN)[-1]
    s = sums_hold(admin.rt)
    assert s["queue_size"] == 0 and s["analyzed"] == 5
    for bad in ("/process abc", "/process 0", "/process 3 4", "/process -1"):
        await admin.send(ADMIN, bad)
        assert texts(botapi, ADMIN)[-1].startswith("Usage: /process [N]"), bad


# ----------------------------------------------------------------------------------- export

async def test_export_bad_arguments(admin, botapi):
    for bad in ("/export 2", "/export csv", "/export 0.9 0.8", "/export -0.1"):
        await admin.send(ADMIN, bad)
        answer = texts(botapi, ADMIN)[-1]
        assert "Usage: /export [min_confidence] [format]" in answer, bad
    assert not any(isinstance(m, SendDocument) for m in admin.methods.sent)


async def test_export_sends_files_gzips_past_the_limit(admin, botapi, tmp_path, monkeypatch):
    """The sending side, with the export's result stood in by files of known sizes."""
    out = tmp_path / "export"
    out.mkdir()
    (out / "train.jsonl").write_text('{"messages": []}\n' * 2000)   # 34 kB, compresses well
    (out / "valid.jsonl").write_text("")                              # empty: not sent
    (out / "manifest.json").write_text('{"format": "chat"}')
    seen: dict[str, Any] = {}

    async def fake_export(self, args):
        seen.update(min_confidence=args.min_confidence, fmt=args.fmt, source=args.source)
        return {"success": True, "train_examples": 2000, "valid_examples": 0, "total": 2000,
                "files": {"train": str(out / "train.jsonl"), "valid": str(out / "valid.jsonl")},
                "warnings": ["no validation examples"]}

    monkeypatch.setattr(AdminOps, "export", fake_export)
    await admin.send(ADMIN, "/export 0,8 nlu")
    assert seen == {"min_confidence": 0.8, "fmt": "nlu", "source": "processed"}
    summary = texts(botapi, ADMIN)[-1]
    assert "2000 train + 0 valid" in summary and "no validation examples" in summary
    assert sent_files(admin) == ["train.jsonl", "manifest.json"]

    # past the limit: gzipped (in memory); still too big: the paths instead
    for limit, files in ((10_000, ["train.jsonl.gz", "manifest.json"]), (10, [])):
        dp = Dispatcher()
        setup_admin(dp, admin.cap, file_limit=limit)
        admin.methods.sent.clear()
        await feed(dp, admin.bot, message_update(ADMIN, "/export"))
        assert sent_files(admin) == files
    last = texts(botapi, ADMIN)[-1]
    assert "Too big for Telegram" in last
    assert str(out / "train.jsonl") in last and str(out / "manifest.json") in last
    # nothing was left beside the export
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "train.jsonl", "valid.jsonl"]


def sent_files(a) -> list[str]:
    return [m.document.filename for m in a.methods.sent if isinstance(m, SendDocument)]


async def test_export_end_to_end(admin, botapi):
    users = [admin.rt.pseudonymizer(f"telegram:{i}") for i in range(6)]
    ids = seed(admin.rt.store, users, 34)
    await asyncio.to_thread(Processor(admin.rt, FixedAnalyzer(confidence=0.95)).process, ids[:30])
    await asyncio.to_thread(Processor(admin.rt, FixedAnalyzer()).process, ids[30:])
    for rid in ids[30:32]:   # two approved in review
        assert await asyncio.to_thread(review.decide, admin.rt, rid, "u_rev", "approve")

    await admin.send(ADMIN, "/export 0.9")
    summary = [t for t in texts(botapi, ADMIN) if t.startswith("📦")][-1]
    assert summary.startswith("📦 Export (chat, processed, min confidence 0.9): ") and "= 30 examples" in summary
    files = sent_files(admin)
    assert files[0] == "train.jsonl" and files[-1] == "manifest.json"
    [manifest] = [m for m in admin.methods.sent if isinstance(m, SendDocument)
                  and m.document.filename == "manifest.json"]
    assert json.loads(Path(manifest.document.path).read_text())["counts"]["written"] == 30

    # reviewed records count with source both; a confidence nothing reaches: a clear failure, no files
    await admin.send(ADMIN, "/export both nlu 0.9")
    last = texts(botapi, ADMIN)[-1]   # documents follow the summary, messages do not
    assert "(nlu, both, min confidence 0.9): " in last and "= 32 examples" in last
    admin.methods.sent.clear()
    await admin.send(ADMIN, "/export 1")
    assert texts(botapi, ADMIN)[-1].startswith("📦 Export (chat, processed, min confidence 1) failed: only 0")
    assert sent_files(admin) == []
    # WhatsApp: the summary and where the files are
    out = await handle_admin_text(admin.cap, WA_ADMIN, "/export 0.9 prompt-completion")
    assert "= 30 examples" in out and "Files on the server:" in out and "train.jsonl" in out
    sums_hold(admin.rt)


# ----------------------------------------------------------------------------------- review

async def test_review_cards_buttons_and_claims(admin, botapi):
    ids = await asyncio.to_thread(to_review, admin.rt, 4)
    before = sums_hold(admin.rt)
    await admin.send(ADMIN, "/review")
    card = [s for s in botapi.sent() if int(s["chat_id"]) == ADMIN][-1]
    first = shown_id(botapi, ADMIN)
    assert first == min(ids)
    assert "🔎 Review" in card["text"] and "low_confidence" in card["text"] and "intent proforma" in card["text"]
    assert "¡Perfecto!" in card["text"] and admin.rt.pseudonymizer("telegram:1") not in card["text"]
    datas = buttons(card)
    assert datas[:3] == [f"tladm:a:{first}", f"tladm:r:{first}", f"tladm:s:{first}"]
    assert len(datas) == 3 + len(admin.cap.config.analysis.intent_names)
    assert all(len(d.encode()) <= 64 for d in datas)

    # the second admin never gets the record the first one holds
    await admin.send(ADMIN2, "/review")
    second = shown_id(botapi, ADMIN2)
    assert second != first
    # ...nor can decide it
    botapi.calls.clear()
    await admin.press(ADMIN2, f"tladm:a:{first}")
    assert [m for m, _ in botapi.calls] == ["answerCallbackQuery"]
    assert "Another admin" in botapi.calls[0][1]["text"]

    # approve: moved, stamped with the reviewer's pseudonym; the card closes, the next comes
    await admin.press(ADMIN, f"tladm:a:{first}")
    rec = admin.rt.store.get(first)
    assert rec.status == "approved" and rec.reviewed_by == admin.cap.pseudonymize(f"telegram:{ADMIN}")
    assert rec.reviewed_at is not None
    edits = botapi.sent("editMessageText")
    assert edits[-1]["text"].endswith("✅ Approved") and "reply_markup" not in edits[-1]
    third = shown_id(botapi, ADMIN)
    assert third not in (first, second)

    # reject
    await admin.press(ADMIN2, f"tladm:r:{second}")
    rec = admin.rt.store.get(second)
    assert rec.status == "rejected" and rec.reviewed_by == admin.cap.pseudonymize(f"telegram:{ADMIN2}")
    fourth = shown_id(botapi, ADMIN2)
    assert fourth not in (first, second, third)

    # skip: the claim is given back, and the skipper sees another record
    await admin.press(ADMIN, f"tladm:s:{third}")
    assert admin.rt.store.get(third).status == "needs_review"
    assert not admin.rt.handle.sync.exists(admin.rt.keys.review_claim(third))
    assert texts(botapi, ADMIN)[-1].startswith("No other record waits for review; you skipped 1")
    # /review starts afresh: the skipped record comes back
    await admin.send(ADMIN, "/review")
    assert shown_id(botapi, ADMIN) == third

    # intent correction approves with the chosen intent
    intents = admin.cap.config.analysis.intent_names
    k = intents.index("price_quote")
    await admin.press(ADMIN, f"tladm:i:{k}:{third}")
    rec = admin.rt.store.get(third)
    assert rec.status == "approved" and rec.analysis == {**ANALYSIS, "intent": "price_quote"}
    assert botapi.sent("editMessageText")[-1]["text"].endswith("✅ Approved as price_quote")

    await admin.press(ADMIN2, f"tladm:a:{fourth}")
    assert texts(botapi, ADMIN2)[-1] == "Nothing waits for review. 🎉"
    # a stale card's button: already decided
    await admin.press(ADMIN, f"tladm:r:{first}")
    assert texts(botapi, ADMIN)[-1].startswith(GONE)
    assert admin.rt.store.get(first).status == "approved"
    # unknown or malformed buttons
    botapi.calls.clear()
    for data in ("tladm:x:r_1", "tladm:i:99:" + first, "tladm:i:a:" + first, "tladm:"):
        await admin.press(ADMIN, data)
    assert [m for m, _ in botapi.calls] == ["answerCallbackQuery"] * 4

    after = sums_hold(admin.rt)
    for k in ("captured", "analyzed", "qa_passed", "qa_failed", "needs_review"):
        assert after[k] == before[k]
    assert (after["processed_size"], after["rejected_size"], after["review_size"]) == (3, 1, 0)
    assert not claims(admin)


async def test_review_record_erased_while_claimed(admin, botapi):
    user = admin.rt.pseudonymizer("telegram:7")
    await asyncio.to_thread(to_review, admin.rt, 1, [user])
    await admin.send(ADMIN, "/review")
    rid = shown_id(botapi, ADMIN)
    admin.rt.store.withdraw(user, "cli")     # the user withdraws consent meanwhile
    botapi.calls.clear()
    await admin.press(ADMIN, f"tladm:a:{rid}")
    methods = [m for m, _ in botapi.calls]
    assert methods == ["answerCallbackQuery", "editMessageText", "sendMessage"]
    assert texts(botapi, ADMIN)[-1] == f"{GONE}\n\nNothing waits for review. 🎉"
    assert admin.rt.store.get(rid) is None
    s = sums_hold(admin.rt)
    assert s["erased"] == 1 and s["review_size"] == 0


async def test_review_without_analysis_offers_intents_only(admin, botapi):
    await asyncio.to_thread(to_review, admin.rt, 1, give_up=True)
    await admin.send(ADMIN, "/review")
    card = [s for s in botapi.sent() if int(s["chat_id"]) == ADMIN][-1]
    datas = buttons(card)
    rid = datas[0].split(":")[-1]
    assert datas[:2] == [f"tladm:r:{rid}", f"tladm:s:{rid}"] and "Analysis: none" in card["text"]
    botapi.calls.clear()
    await admin.press(ADMIN, f"tladm:a:{rid}")   # an old client could still send it
    assert [m for m, _ in botapi.calls] == ["answerCallbackQuery"]
    assert "choosing its intent" in botapi.calls[0][1]["text"]
    await admin.press(ADMIN, f"tladm:i:0:{rid}")
    rec = admin.rt.store.get(rid)
    assert rec.status == "approved" and rec.analysis["intent"] == admin.cap.config.analysis.intent_names[0]


# --------------------------------------------------------------------------------- WhatsApp

async def test_whatsapp_text_commands(admin):
    cap = admin.cap
    assert await handle_admin_text(cap, WA_ADMIN, "hola, precio HLSO?") is None
    assert await handle_admin_text(cap, WA_ADMIN, "/consent yes") is None
    for cmd in ("/stats", "/process 3", "/export", "/review", "/review approve"):
        assert await handle_admin_text(cap, "whatsapp:+593990000000", cmd) == REFUSAL["es"]
        assert await handle_admin_text(cap, "not an id", cmd) == REFUSAL["es"]
    assert not claims(admin)

    ids = await asyncio.to_thread(to_review, admin.rt, 3)
    seed(admin.rt.store, [admin.rt.pseudonymizer("telegram:9")], 2)
    # the number as a person types it is the same admin
    assert "captured 5" in await handle_admin_text(cap, "whatsapp:+593 99 123 4567", "/stats")
    out = await handle_admin_text(cap, WA_ADMIN, "/process 10")
    assert out.startswith("⚙️ Processed 2 (up to 10)")
    assert (await handle_admin_text(cap, WA_ADMIN, "/process x")).startswith("Usage: /process")
    assert (await handle_admin_text(cap, WA_ADMIN, "/export 7")).startswith("min_confidence must be")
    assert "Usage: /export" in await handle_admin_text(cap, WA_ADMIN, "/export csv")

    assert await handle_admin_text(cap, WA_ADMIN, "/review reject") == "No record is open for you: send /review first."
    card = await handle_admin_text(cap, WA_ADMIN, "/REVIEW")
    assert f"🔎 Review {min(ids)}" in card and "/review intent NAME" in card
    out = await handle_admin_text(cap, WA_ADMIN, "/review intent logistics")
    assert out.startswith("✅ Approved as logistics") and "🔎 Review" in out
    rec = admin.rt.store.get(min(ids))
    assert rec.status == "approved" and rec.analysis["intent"] == "logistics"
    assert rec.reviewed_by == cap.pseudonymize(WA_ADMIN)
    out = await handle_admin_text(cap, WA_ADMIN, "/review s")
    assert out.startswith("⏭ Skipped")
    out = await handle_admin_text(cap, WA_ADMIN, "/review r")
    assert out.startswith("❌ Rejected") and "you skipped 1" in out
    assert (await handle_admin_text(cap, WA_ADMIN, "/review intent nope")).startswith("Usage: /review intent")
    assert (await handle_admin_text(cap, WA_ADMIN, "/review maybe")).startswith("Usage: /review")
    # one approved, one rejected, one (skipped) still waiting for review
    s = sums_hold(admin.rt)
    assert s["review_size"] == s["needs_review"] - 2
    assert not claims(admin)


async def test_setup_admin_puts_its_router_first(admin):
    assert admin.dp.sub_routers[0].name == "tuneloop-admin"
