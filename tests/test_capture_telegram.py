"""The Telegram capture path end to end: a real Dispatcher fed Update JSON, a real Redis, the
bot's outgoing calls served by a local Bot API stand-in."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
from rq import Queue
from rq.serializers import JSONSerializer

from bot.standins.botapi import callback_update, message_update
from middleware.keys import Keys
from middleware.record import from_hash
from tests.harness import all_values, counters, fake, feed, make_bot, shop_router, wait_until


async def grant(dp, bot, user_id: int) -> None:
    await feed(dp, bot, message_update(user_id, "/consent yes"))


def records_of(rconn: redis.Redis, prefix: str) -> list:
    keys = Keys(prefix)
    ids = [i.decode() for i in rconn.zrange(keys.time_index, 0, -1)]
    return [from_hash(i, rconn.hgetall(keys.record(i))) for i in ids]


async def test_no_consent_nothing_stored_handler_runs_and_asked_once(botapi, config, env, rconn, prefix):
    dp, bot, cap = await make_bot(botapi, config, env)
    phone = "0991234567"
    await feed(dp, bot, message_update(501, f"hola, mi cel es {phone}"))
    await wait_until(lambda: len(botapi.sent()) >= 2)
    await feed(dp, bot, message_update(501, "otra pregunta"))
    await cap.flush()
    await asyncio.sleep(0.1)
    sent = botapi.sent()
    # the bot answered both messages; tuneloop asked for consent once, with buttons
    answers = [s for s in sent if s["text"].startswith("¡Perfecto!")]
    asks = [s for s in sent if "reply_markup" in s]
    assert len(answers) == 2 and len(asks) == 1
    assert "Mariscos del Pacífico" in asks[0]["text"]
    # only what consent itself needs is kept: the asked flag and the HyperLogLog of users seen
    keys = sorted(k.decode() for k in rconn.scan_iter(match=f"{prefix}*"))
    pseudo = cap.pseudonymize("telegram:501")
    assert set(keys) <= {f"{prefix}consent:{pseudo}", f"{prefix}users:seen", f"{prefix}meta:secret_fingerprint"}
    assert rconn.hkeys(f"{prefix}consent:{pseudo}") == [b"asked"]
    assert counters(rconn, prefix).get("captured", 0) == 0
    assert Queue(config.redis.queue, connection=rconn).count == 0
    await cap.close()


async def test_consented_message_stored_anonymized_with_replies_and_job(botapi, config, env, rconn, prefix):
    def reply(text: str) -> str:
        return "¡Perfecto! Te llamo al 0987654321 para la proforma HLSO 16/20"

    dp, bot, cap = await make_bot(botapi, config, env, router=shop_router(reply))
    await grant(dp, bot, 777)
    email = fake.email()
    text = f"HLSO 16/20 con 20% glaseo, escríbeme a {email}"
    await feed(dp, bot, message_update(777, text, first_name="Rosalía", last_name="Quintana"))
    assert await cap.flush()
    recs = records_of(rconn, prefix)
    assert len(recs) == 1
    r = recs[0]
    assert r.content == "HLSO 16/20 con 20% glaseo, escríbeme a [EMAIL]"
    assert r.reply == ["¡Perfecto! Te llamo al [PHONE] para la proforma HLSO 16/20"]
    assert r.original_length == len(text)
    assert r.pii["EMAIL"] == 1
    assert r.user_id == cap.pseudonymize("telegram:777") and r.user_id.startswith("u_")
    assert r.channel == "telegram" and r.status == "pending"
    assert r.metadata["state"] == "idle" and r.metadata["lang"] == "es"
    assert r.consent_version.startswith("es:")
    # one RQ job naming the record, JSON-serialized: queues hold ids, never text
    q = Queue(config.redis.queue, connection=rconn, serializer=JSONSerializer)
    jobs = q.jobs
    assert len(jobs) == 1
    assert jobs[0].func_name == "workers.tasks.process_records"
    assert list(jobs[0].args) == [[r.id]]
    assert email.encode() not in all_values(rconn, prefix, config.redis.queue)
    c = counters(rconn, prefix)
    assert c["captured"] == 1 and c["anonymized"] == 1
    await cap.close()


async def test_returned_method_is_a_captured_reply(botapi, config, env, rconn, prefix):
    dp, bot, cap = await make_bot(botapi, config, env, router=shop_router(lambda t: "Claro, CFR Miami", returned=True))
    await grant(dp, bot, 778)
    result = await feed(dp, bot, message_update(778, "precio CFR Miami?"))
    assert result is not None  # the method goes back to aiogram (webhook reply) untouched
    await cap.flush()
    [r] = records_of(rconn, prefix)
    assert r.reply == ["Claro, CFR Miami"]
    await cap.close()


async def test_consent_buttons_and_status(botapi, config, env, rconn, prefix):
    dp, bot, cap = await make_bot(botapi, config, env)
    await feed(dp, bot, message_update(900, "/consent"))
    ask = botapi.sent()[-1]
    buttons = json.loads(ask["reply_markup"]) if isinstance(ask["reply_markup"], str) else ask["reply_markup"]
    datas = [b["callback_data"] for b in buttons["inline_keyboard"][0]]
    assert datas == ["tuneloop:yes", "tuneloop:no"]
    await feed(dp, bot, callback_update(900, "tuneloop:yes"))
    pseudo = cap.pseudonymize("telegram:900")
    c = cap.core.store.consent(pseudo)
    assert c.active and c.mechanism == "button" and c.lang == "es"
    await feed(dp, bot, message_update(900, "/consent status"))
    assert "activo" in botapi.sent()[-1]["text"]
    events = cap.core.store.consent_events(pseudo)
    assert [e["event"] for e in events] == ["grant"]
    assert events[0]["version"] == c.version
    # consent commands never reach the bot's handler
    assert not any(s["text"].startswith("¡Perfecto!") for s in botapi.sent())
    await cap.close()


async def test_withdrawal_in_one_process_stops_capture_in_another(botapi, config, env, rconn, prefix):
    dp1, bot1, cap1 = await make_bot(botapi, config, env)
    dp2, bot2, cap2 = await make_bot(botapi, config, env)
    await grant(dp1, bot1, 4242)
    await feed(dp2, bot2, message_update(4242, "precio HOSO 30/40"))   # process 2 caches consent
    await feed(dp1, bot1, message_update(4242, "y la 21/25?"))
    await cap1.flush()
    await cap2.flush()
    assert len(records_of(rconn, prefix)) == 2
    # withdraw through process 1; process 2 must stop at once
    await feed(dp1, bot1, message_update(4242, "/consent no"))
    assert "borramos" in botapi.sent()[-1]["text"]
    await wait_until(lambda: cap2.core.cache.peek(cap2.pseudonymize("telegram:4242")) is None, 2)
    await feed(dp2, bot2, message_update(4242, "un mensaje después de retirar"))
    await cap2.flush()
    assert records_of(rconn, prefix) == []
    c = counters(rconn, prefix)
    assert c["captured"] == 2 and c["discarded"] == 2
    pseudo = cap1.pseudonymize("telegram:4242")
    assert rconn.zcard(f"{prefix}u:{pseudo}") == 0
    assert [e["event"] for e in cap1.core.store.consent_events(pseudo)] == ["grant", "withdraw"]
    await cap1.close()
    await cap2.close()


async def test_flush_refuses_a_message_that_beat_the_invalidation(botapi, config, env, rconn, prefix):
    """A message buffered while consent was active is never written after a withdrawal."""
    dp, bot, cap = await make_bot(botapi, config, env)
    config.capture.max_delay_ms = 60_000   # keep it in the buffer
    await grant(dp, bot, 31)
    await feed(dp, bot, message_update(31, "HOSO 20/30 10% glaseo"))
    pseudo = cap.pseudonymize("telegram:31")
    cap.core.store.withdraw(pseudo, "cli")  # another process: the pub/sub may or may not have landed
    cap.core.cache.on_change.clear()       # simulate the message beating the invalidation
    await cap.flush()
    assert records_of(rconn, prefix) == []
    assert counters(rconn, prefix).get("captured", 0) == 0
    await cap.close()


async def test_filtered_messages_counted_and_not_stored(botapi, config, env, rconn, prefix):
    dp, bot, cap = await make_bot(botapi, config, env)
    await grant(dp, bot, 55)
    await feed(dp, bot, message_update(55, "/start"))
    await feed(dp, bot, message_update(55, "x" * (config.capture.max_length + 1)))
    await feed(dp, bot, message_update(55, "   "))
    await feed(dp, bot, message_update(55, "HLSO 26/30"))
    # not text: passes through, counted nowhere
    await feed(dp, bot, message_update(55, None, sticker={"file_id": "s", "file_unique_id": "s", "type": "regular",
                                                           "width": 1, "height": 1, "is_animated": False,
                                                           "is_video": False}))
    await cap.flush()
    c = counters(rconn, prefix)
    assert c["filtered_out"] == 3 and c["captured"] == 4
    assert len(records_of(rconn, prefix)) == 1
    await cap.close()


async def test_counters_add_up(botapi, config, env, rconn, prefix):
    dp, bot, cap = await make_bot(botapi, config, env)
    for uid in (1, 2, 3):
        await grant(dp, bot, uid)
    for i in range(30):
        uid = 1 + i % 4   # user 4 never consented
        text = "/help" if i % 7 == 0 else f"{fake.sentence()} {fake.phone_number()}"
        await feed(dp, bot, message_update(uid, text))
    await cap.flush()
    await feed(dp, bot, message_update(2, "/forget"))  # erasure of one user's pending records
    await feed(dp, bot, message_update(2, "/consent no"))
    c = counters(rconn, prefix)
    queue_size = rconn.scard(f"{prefix}status:pending")
    assert c["captured"] == c.get("filtered_out", 0) + c.get("analyzed", 0) + queue_size + c.get("discarded", 0)
    assert c.get("dropped", 0) == 0
    await cap.close()


async def test_raw_ids_and_text_never_reach_redis(botapi, config, env, rconn, prefix):
    dp, bot, cap = await make_bot(botapi, config, env)
    uid = 987654321
    await grant(dp, bot, uid)
    secrets = []
    for _ in range(20):
        email, phone = fake.unique.email(), "+593 99 " + str(fake.random_number(7, fix_len=True))
        secrets += [email.encode(), phone.encode()]
        await feed(dp, bot, message_update(uid, f"cotiza HLSO 16/20, {email} / {phone}",
                                           first_name="Gumersindo", last_name="Villacrés"))
    await cap.flush()
    blob = all_values(rconn, prefix, config.redis.queue)
    assert str(uid).encode() not in blob
    assert b"Gumersindo" not in blob and b"Villacr" not in blob
    for s in secrets:
        assert s not in blob
    await cap.close()


async def test_capture_error_never_reaches_the_handler(botapi, config, env, rconn, prefix):
    class Broken:
        version = "broken"

        def anonymize(self, text, known_names=()):
            raise RuntimeError("boom")

    dp, bot, cap = await make_bot(botapi, config, env, anonymizer=Broken())
    await grant(dp, bot, 66)
    await feed(dp, bot, message_update(66, "hola"))
    assert botapi.sent()[-1]["text"].startswith("¡Perfecto!")
    await cap.flush()
    assert records_of(rconn, prefix) == []   # never stored un-anonymized
    await wait_until(lambda: counters(rconn, prefix).get("capture_errors", 0) >= 1, 3)
    assert counters(rconn, prefix).get("capture_errors") == 1
    await cap.close()


@pytest.mark.parametrize("lang,expected", [("en", "May we use"), ("es", "¿Nos permites")])
async def test_consent_text_language(botapi, config, env, lang, expected):
    dp, bot, cap = await make_bot(botapi, config, env)
    await feed(dp, bot, message_update(321, "hi", lang=lang))
    await wait_until(lambda: len(botapi.sent()) >= 2)
    assert expected in botapi.sent()[-1]["text"]
    await cap.close()


async def test_forget_asks_to_confirm_then_erases(botapi, config, env, rconn, prefix):
    dp, bot, cap = await make_bot(botapi, config, env)
    await grant(dp, bot, 606)
    await feed(dp, bot, message_update(606, "precio HLSO 16/20"))
    await cap.flush()
    assert len(records_of(rconn, prefix)) == 1
    await feed(dp, bot, message_update(606, "/forget"))
    ask = botapi.sent()[-1]
    assert "Borramos" in ask["text"] and "tuneloop:forget" in json.dumps(ask["reply_markup"])
    assert len(records_of(rconn, prefix)) == 1          # nothing happens before the confirmation
    await feed(dp, bot, callback_update(606, "tuneloop:cancel"))
    assert len(records_of(rconn, prefix)) == 1
    await feed(dp, bot, callback_update(606, "tuneloop:forget"))
    assert records_of(rconn, prefix) == []
    assert not cap.core.store.consent(cap.pseudonymize("telegram:606")).active
    await cap.close()


async def test_mydata_sends_exactly_the_users_own_data(botapi, config, env, rconn, prefix):
    dp, bot, cap = await make_bot(botapi, config, env)
    await grant(dp, bot, 707)
    await grant(dp, bot, 708)
    await feed(dp, bot, message_update(707, "precio HOSO 20/30"))
    await feed(dp, bot, message_update(708, "otro usuario, PD 41/50"))
    await cap.flush()
    data = await cap.core.my_data("telegram:707")
    assert [r["content"] for r in data["records"]] == ["precio HOSO 20/30"]
    assert [e["event"] for e in data["consent_events"]] == ["grant"]
    await feed(dp, bot, message_update(707, "/mydata"))
    assert botapi.sent("sendDocument")
    await cap.close()


async def test_blocking_the_bot_withdraws(botapi, config, env, rconn, prefix):
    import time

    dp, bot, cap = await make_bot(botapi, config, env)
    await grant(dp, bot, 809)
    await feed(dp, bot, message_update(809, "precio HLSO"))
    await cap.flush()
    user = {"id": 809, "is_bot": False, "first_name": "Ana"}
    upd = {"update_id": 99999, "my_chat_member": {
        "chat": {"id": 809, "type": "private"}, "from": user, "date": int(time.time()),
        "old_chat_member": {"status": "member", "user": {"id": 123456, "is_bot": True, "first_name": "b"}},
        "new_chat_member": {"status": "kicked", "until_date": 0,
                            "user": {"id": 123456, "is_bot": True, "first_name": "b"}}}}
    await feed(dp, bot, upd)
    assert await wait_until(lambda: not cap.core.store.consent(cap.pseudonymize("telegram:809")).active, 3)
    assert records_of(rconn, prefix) == []
    await cap.close()


async def test_group_chats_are_not_captured(botapi, config, env, rconn, prefix):
    dp, bot, cap = await make_bot(botapi, config, env)
    await grant(dp, bot, 1212)
    upd = message_update(1212, "precio HLSO 16/20 para el grupo", chat_id=-100123)
    upd["message"]["chat"]["type"] = "supergroup"
    await feed(dp, bot, upd)
    await cap.flush()
    assert botapi.sent()[-1]["text"].startswith("¡Perfecto!")
    assert records_of(rconn, prefix) == []
    await cap.close()


async def test_bots_answer_classes_survive_garbage_collection(botapi, config, env):
    """aiogram builds Response[T] for each call's answer and pydantic caches it weakly; freed by a
    collection, it is rebuilt on the event loop (a 3 ms stall). Capture's allocations make
    collections frequent, so tuneloop holds the classes the bot's calls use."""
    import gc
    import weakref

    from aiogram.methods import Response
    from aiogram.types import Message

    dp, bot, cap = await make_bot(botapi, config, env)
    await grant(dp, bot, 67)
    await feed(dp, bot, message_update(67, "hola"))
    ref = weakref.ref(Response[Message])
    gc.collect()
    assert ref() is not None
    await cap.close()
