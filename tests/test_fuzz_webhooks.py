"""The webhooks of the app `tuneloop serve` runs (`bot.serve.build`), fuzzed: whatever body
arrives, the answer is never a 5xx, the app keeps serving, and an update aiogram accepts never
makes tuneloop log an ERROR or the background handling raise (invariant 3: the bot never fails
because of tuneloop; invariant 5: forged requests are refused)."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import MultiDict
from twilio.request_validator import HMAC_SHA1, HMAC_SHA256, SIGNATURE_SETTINGS_HEADER, RequestValidator

from bot.app import MAX_BODY, TELEGRAM_PATH, WHATSAPP_PATH
from bot.serve import build
from bot.standins.botapi import BOT_USER, callback_update, message_update
from middleware.redis_conn import connect
from middleware.twilio_adapter import MAX_BODY_BYTES, MAX_FIELDS
from tests.harness import wait_until
from workers.runtime import Runtime

pytestmark = pytest.mark.filterwarnings("ignore:Detected unknown update type:RuntimeWarning")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TG_SECRET = "tg-fuzz-secret"
TW_TOKEN = "twilio-auth-token-for-fuzz"
PUBLIC = "https://bot.example.com"
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])


class Recording(set):
    """aiogram's set of background update tasks, remembering every task ever added."""

    def __init__(self) -> None:
        super().__init__()
        self.all: list[asyncio.Task[Any]] = []

    def add(self, task: Any) -> None:
        self.all.append(task)
        super().add(task)


class Fuzz:
    def __init__(self, client: TestClient, capture: Any, tasks: Recording, caplog: Any) -> None:
        self.client = client
        self.capture = capture
        self.tasks = tasks
        self.caplog = caplog
        self._checked = 0

    async def telegram(self, data: bytes | None = None, json_body: Any = None, **headers: str) -> int:
        h = {SECRET_HEADER: TG_SECRET, **headers}
        if json_body is not None:
            data = json.dumps(json_body).encode()
            h.setdefault("Content-Type", "application/json")
        r = await self.client.post(TELEGRAM_PATH, data=data, headers=h)
        await r.read()
        return r.status

    async def whatsapp(self, params: Any, signed: bool = True, path: str = WHATSAPP_PATH,
                       algorithm: str | None = None, **headers: str) -> int:
        body = urlencode(list(params.items()) if isinstance(params, MultiDict) else params)
        h = {"Content-Type": "application/x-www-form-urlencoded", **headers}
        if algorithm:
            h[SIGNATURE_SETTINGS_HEADER] = f"algorithm={algorithm}"
        if signed:
            h.setdefault("X-Twilio-Signature", RequestValidator(TW_TOKEN).compute_signature(
                PUBLIC + path, params, algorithm))
        r = await self.client.post(path, data=body, headers=h)
        await r.read()
        return r.status

    async def settle(self) -> list[BaseException]:
        """Wait for the updates handled in the background; their exceptions, once each."""
        pending = [t for t in self.tasks.all if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=30)
        errors = [t.exception() for t in self.tasks.all[self._checked:] if not t.cancelled() and t.exception()]
        self._checked = len(self.tasks.all)
        return errors

    def tuneloop_errors(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}\n{r.exc_text or ''}" for r in self.caplog.records
                if r.name.startswith("tuneloop") and r.levelno >= logging.ERROR]

    async def still_serving(self) -> None:
        r = await self.client.get("/healthz")
        assert r.status == 200, await r.text()
        assert await self.telegram(json_body=message_update(4242, "hola, ¿precio del HLSO 21/25?")) == 200
        assert await self.whatsapp(wa_form("+593991234567", "hola")) == 200
        assert self.tasks.all, "aiogram's background tasks were not observed"
        assert await self.settle() == []


@pytest.fixture
async def fuzz(config, env, botapi, caplog):
    caplog.set_level(logging.INFO, logger="tuneloop")
    e = env.model_copy(update={
        "telegram_bot_token": "123456:TEST-token-for-local-stand-in", "telegram_webhook_secret": TG_SECRET,
        "telegram_api_server": botapi.base_url, "twilio_auth_token": TW_TOKEN, "public_url": PUBLIC,
        "openai_api_key": None, "admin_token": None})
    botapi.record = False
    rt = Runtime(config, e, connect(e))
    app, capture, dp, bot = build(rt)
    handler = next(r.handler.__self__ for r in app.router.routes()
                   if r.method == "POST" and r.resource.canonical == TELEGRAM_PATH)
    tasks = Recording()
    handler._background_feed_update_tasks = tasks
    await capture.start()
    await wait_until(lambda: capture.core.ready, 10)
    await capture.core.cache.wait_subscribed()
    async with TestClient(TestServer(app)) as client:
        f = Fuzz(client, capture, tasks, caplog)
        yield f
        await f.still_serving()
        assert f.tuneloop_errors() == []
    await capture.close()
    await bot.session.close()


# ------------------------------------------------------------------------------------ strategies

_text = st.text(max_size=60)
_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                       st.floats(allow_nan=False, allow_infinity=False), _text)
_json = st.recursive(_json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(_text, c, max_size=4),
                     max_leaves=25)


def _or_any(s: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the right type, sometimes any JSON at all."""
    return st.one_of(s, s, s, _json)


_ids = st.integers(min_value=-(2**63), max_value=2**63)
_user = st.fixed_dictionaries(
    {"id": _or_any(_ids), "is_bot": _or_any(st.booleans()), "first_name": _or_any(_text)},
    optional={"last_name": _or_any(_text), "username": _or_any(_text), "language_code": _or_any(_text),
              "is_premium": _or_any(st.booleans())})
_chat = st.fixed_dictionaries(
    {"id": _or_any(_ids), "type": _or_any(st.sampled_from(["private", "group", "supergroup", "channel", "x"]))},
    optional={"title": _or_any(_text), "first_name": _or_any(_text)})
_entity = st.fixed_dictionaries({"type": _or_any(st.sampled_from(["bot_command", "bold", "url", "mention"])),
                                 "offset": _or_any(st.integers(-5, 100)), "length": _or_any(st.integers(-5, 100))})
_message = st.fixed_dictionaries(
    {"message_id": _or_any(_ids), "date": _or_any(st.integers(-(2**40), 2**40)), "chat": _or_any(_chat)},
    optional={"from": _or_any(_user), "text": _or_any(_text), "caption": _or_any(_text),
              "entities": _or_any(st.lists(_entity, max_size=3)), "sender_chat": _or_any(_chat),
              "reply_to_message": _json, "sticker": _json, "photo": _json, "new_chat_members": _json,
              "message_thread_id": _or_any(_ids)})
_update = st.fixed_dictionaries(
    {"update_id": _or_any(_ids)},
    optional={"message": _or_any(_message), "edited_message": _or_any(_message),
              "channel_post": _or_any(_message), "callback_query": _json, "my_chat_member": _json,
              "inline_query": _json, "unknown_field": _json})

_commands = st.sampled_from(["/consent", "/consent yes", "/consent no", "/consent maybe", "/forget", "/mydata",
                             "/start", "/start@camaron_bot", "/stats", "/process", "/export", "/review",
                             "ACEPTO", "NO ACEPTO", "/consent@camaron_bot yes", "/"])
_odd_text = st.one_of(
    st.text(min_size=1, max_size=300), _commands,
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=4096),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "😀", " ", "\n", "\u200b", "\u202e", "0", "@"]),
              st.integers(1, 4096)),
    st.sampled_from(["mi cel 0991234567 y mi correo ana@gmail.com", "me llamo Ana Pérez", "\x00", "\r\n",
                     "<Response><Message>x</Message></Response>", "{\"update_id\": 1}", "%s %d %(x)s {0}"]))


def _mutate(base: dict[str, Any], draw: Any) -> dict[str, Any]:
    """A few mutations of a valid update: a field deleted, replaced by any JSON, or added."""
    upd = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        node: Any = upd
        path_len = draw(st.integers(0, 3))
        for _ in range(path_len):
            if not isinstance(node, dict) or not node:
                break
            k = draw(st.sampled_from(sorted(node)))
            if not isinstance(node[k], dict):
                break
            node = node[k]
        if not isinstance(node, dict):
            continue
        op = draw(st.sampled_from(["delete", "replace", "add", "null"]))
        if op == "add" or not node:
            node[draw(_text)] = draw(_json)
            continue
        k = draw(st.sampled_from(sorted(node)))
        if op == "delete":
            del node[k]
        elif op == "null":
            node[k] = None
        else:
            node[k] = draw(_json)
    return upd


@st.composite
def _valid_update(draw: Any) -> dict[str, Any]:
    user_id = draw(st.one_of(st.integers(1, 2**40), st.sampled_from([1, 777000, BOT_USER["id"]])))
    upd = message_update(user_id, draw(_odd_text), first_name=draw(st.text(min_size=1, max_size=40)),
                         last_name=draw(st.none() | st.text(max_size=40)),
                         username=draw(st.none() | st.from_regex(r"[a-z][a-z0-9_]{3,20}", fullmatch=True)),
                         lang=draw(st.sampled_from(["es", "en", "pt-br", "zz", "", "es-EC"])))
    msg = upd["message"]
    kind = draw(st.sampled_from(["plain", "plain", "group", "channel_post", "edited", "bot_sender",
                                 "no_from", "caption_only", "forward", "callback", "kicked", "entities"]))
    if kind == "group":
        msg["chat"] = {"id": -draw(st.integers(1, 2**40)), "type": "supergroup", "title": "grupo"}
    elif kind == "channel_post":
        msg.pop("from")
        msg["chat"] = {"id": -100123, "type": "channel", "title": "canal"}
        upd = {"update_id": upd["update_id"], "channel_post": msg}
    elif kind == "edited":
        msg["edit_date"] = msg["date"] + 1
        upd = {"update_id": upd["update_id"], "edited_message": msg}
    elif kind == "bot_sender":
        msg["from"] = {**msg["from"], "is_bot": True}
    elif kind == "no_from":
        msg.pop("from")
        msg["sender_chat"] = {"id": -100123, "type": "channel", "title": "canal"}
    elif kind == "caption_only":
        msg["caption"] = msg.pop("text", "") or "foto"
        msg["photo"] = [{"file_id": "f", "file_unique_id": "u", "width": 1, "height": 1}]
    elif kind == "forward":
        msg["forward_origin"] = {"type": "hidden_user", "sender_user_name": "X", "date": msg["date"]}
    elif kind == "callback":
        upd = callback_update(user_id, draw(st.sampled_from(["tuneloop:yes", "tuneloop:no", "tuneloop:forget",
                                                             "tuneloop:cancel", "tuneloop:", "tuneloop:zzz",
                                                             "other", ""])))
    elif kind == "kicked":
        member = {"user": BOT_USER, "status": "kicked", "until_date": 0}
        upd = {"update_id": upd["update_id"], "my_chat_member": {
            "chat": {"id": user_id, "type": "private", "first_name": "Ana"}, "from": msg["from"],
            "date": msg["date"], "old_chat_member": {"user": BOT_USER, "status": "member"},
            "new_chat_member": member}}
    elif kind == "entities" and msg.get("text"):
        msg["entities"] = [{"type": "bot_command", "offset": 0, "length": min(len(msg["text"]), 8)}]
    return upd


@st.composite
def _mutated_update(draw: Any) -> dict[str, Any]:
    return _mutate(draw(_valid_update()), draw)


# ------------------------------------------------------------------------------------ Telegram

@FUZZ
@given(body=st.one_of(st.binary(max_size=3000), st.text(max_size=500).map(str.encode)),
       ctype=st.sampled_from(["application/json", "text/plain", "", "application/x-www-form-urlencoded"]))
async def test_telegram_arbitrary_bytes(fuzz, body, ctype):
    status = await fuzz.telegram(body, **({"Content-Type": ctype} if ctype else {}))
    assert status < 500
    assert await fuzz.settle() == []


@FUZZ
@given(body=_json)
async def test_telegram_arbitrary_json(fuzz, body):
    status = await fuzz.telegram(json_body=body)
    assert status < 500
    if not isinstance(body, dict):
        assert status == 400
    assert await fuzz.settle() == []


@FUZZ
@given(update=_update)
async def test_telegram_update_shaped_with_random_types(fuzz, update):
    status = await fuzz.telegram(json_body=update)
    assert status < 500
    assert await fuzz.settle() == []
    assert fuzz.tuneloop_errors() == []


@FUZZ
@given(update=_mutated_update())
async def test_telegram_mutated_valid_updates(fuzz, update):
    status = await fuzz.telegram(json_body=update)
    assert status < 500
    assert await fuzz.settle() == []
    assert fuzz.tuneloop_errors() == []


@FUZZ
@given(update=_valid_update(), consent_first=st.booleans())
async def test_telegram_well_formed_but_odd_updates(fuzz, update, consent_first):
    """Accepted (200), handled without an exception, nothing logged at ERROR by tuneloop."""
    msg = update.get("message")
    if consent_first and msg and isinstance(msg.get("from"), dict):
        assert await fuzz.telegram(json_body=message_update(msg["from"]["id"], "/consent yes")) == 200
        assert await fuzz.settle() == []
    assert await fuzz.telegram(json_body=update) == 200
    assert await fuzz.settle() == []
    assert fuzz.tuneloop_errors() == []


async def test_telegram_oversize_and_refused(fuzz):
    assert await fuzz.telegram(b"x" * (MAX_BODY + 1)) == 413
    big = json.dumps(message_update(5, "a" * (MAX_BODY - 500))).encode()   # under the limit: filtered, 200
    assert len(big) <= MAX_BODY and await fuzz.telegram(big, **{"Content-Type": "application/json"}) == 200

    async def chunks():   # no Content-Length: the limit holds while reading
        for _ in range(40):
            yield b"{" * 65536

    r = await fuzz.client.post(TELEGRAM_PATH, data=chunks(), headers={SECRET_HEADER: TG_SECRET})
    assert r.status == 413
    upd = message_update(5, "hola")
    assert await fuzz.telegram(json_body=upd, **{SECRET_HEADER: "wrong"}) == 401
    r = await fuzz.client.post(TELEGRAM_PATH, json=upd)
    assert r.status == 401
    assert await fuzz.settle() == []


@pytest.mark.parametrize("body", [
    b"[" * 100_000 + b"]" * 100_000,                                         # deeper than Python's stack
    b'{"update_id": 1, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"update_id": 1, "x": ' + b"[" * 400 + b"]" * 400 + b"}",             # parses; aiogram then chokes
], ids=["array-100k", "field-5000", "field-400"])
async def test_telegram_deeply_nested_json_is_refused(fuzz, body):
    assert await fuzz.telegram(body, **{"Content-Type": "application/json"}) < 500
    assert await fuzz.settle() == []


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_telegram_badly_compressed_body_is_refused(fuzz, encoding):
    r = await fuzz.client.post(TELEGRAM_PATH, data=b"0123456789", headers={
        SECRET_HEADER: TG_SECRET, "Content-Encoding": encoding, "Connection": "close"})
    assert r.status < 500


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", "x-unknown"])
async def test_whatsapp_badly_compressed_body_is_refused(fuzz, encoding):
    r = await fuzz.client.post(WHATSAPP_PATH, data=b"0123456789", headers={
        "X-Twilio-Signature": "x", "Content-Type": "application/x-www-form-urlencoded",
        "Content-Encoding": encoding, "Connection": "close"})
    assert 400 <= r.status < 500


# ------------------------------------------------------------------------------------ WhatsApp

def wa_form(number: str, body: str, **extra: str) -> dict[str, str]:
    sid = "SM" + "0" * 31 + "1"
    return {"SmsMessageSid": sid, "NumMedia": "0", "ProfileName": "Ana", "MessageType": "text", "SmsSid": sid,
            "WaId": number.lstrip("+"), "SmsStatus": "received", "Body": body, "To": "whatsapp:+14155238886",
            "NumSegments": "1", "MessageSid": sid, "AccountSid": "AC" + "0" * 30 + "01",
            "From": f"whatsapp:{number}", "ApiVersion": "2010-04-01", **extra}


_wa_numbers = st.one_of(st.sampled_from(["+593991234567", "+34612345678", "+12025550123", "+5215512345678"]),
                        st.from_regex(r"\+[1-9][0-9]{6,15}", fullmatch=True))
_field_text = st.one_of(st.text(max_size=60), st.text(st.characters(codec="utf-8"), max_size=300),
                        st.builds(lambda c, n: c * n, st.sampled_from(["a", "ñ", "😀", "%", "&", "="]),
                                  st.integers(1, 30000)))
_from = st.one_of(_wa_numbers.map(lambda n: f"whatsapp:{n}"), _wa_numbers, _field_text,
                  st.sampled_from(["whatsapp:", "whatsapp:+", "whatsapp:+593", "sms:+593991234567", "WHATSAPP:+593991234567"]))
_num_media = st.one_of(st.sampled_from(["0", "1", "", " 0 ", "-1", "1.5", "abc", "٠", "00", "10"]), _field_text)
_body = st.one_of(_odd_text, _field_text)


@FUZZ
@given(base=st.fixed_dictionaries({}, optional={"From": _from, "Body": _body, "NumMedia": _num_media,
                                                "ProfileName": _field_text, "SmsStatus": _field_text,
                                                "MessageStatus": _field_text, "WaId": _field_text,
                                                "MediaUrl0": _field_text}),
       extra=st.lists(st.tuples(st.text(max_size=20), _field_text), max_size=6),
       template=st.booleans(), algorithm=st.sampled_from([None, HMAC_SHA1, HMAC_SHA256]))
async def test_whatsapp_signed_random_forms(fuzz, base, extra, template, algorithm):
    params = MultiDict(wa_form("+593991234567", "hola") if template else {})
    for k, v in base.items():
        params[k] = v
    params.extend(extra)
    size = len(urlencode(list(params.items())))
    status = await fuzz.whatsapp(params, algorithm=algorithm)
    assert status < 500
    assert status == (413 if size > MAX_BODY_BYTES else 200), (status, size)
    if size <= MAX_BODY_BYTES:
        assert await fuzz.whatsapp(params, signed=False) == 403
        assert await fuzz.whatsapp(params, algorithm=algorithm, **{"X-Twilio-Signature": "Zm9yZ2Vk"}) == 403
    assert fuzz.tuneloop_errors() == []


@FUZZ
@given(number=_wa_numbers, body=_body, media=_num_media, name=_field_text)
async def test_whatsapp_consented_user_odd_messages(fuzz, number, body, media, name):
    """A consented user's odd messages: TwiML back (200), never an ERROR from tuneloop."""
    assert await fuzz.whatsapp(wa_form(number, "ACEPTO")) == 200
    status = await fuzz.whatsapp(wa_form(number, body, NumMedia=media, ProfileName=name))
    size = len(urlencode(wa_form(number, body, NumMedia=media, ProfileName=name)))
    assert status == (413 if size > MAX_BODY_BYTES else 200)
    assert fuzz.tuneloop_errors() == []


@FUZZ
@given(body=st.binary(max_size=2000), ctype=st.sampled_from(
    ["application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=latin-1",
     "application/json", "multipart/form-data", "text/plain", ""]), signature=st.sampled_from(["", "x", "Zm9yZ2Vk"]))
async def test_whatsapp_garbage_refused(fuzz, body, ctype, signature):
    h = {"X-Twilio-Signature": signature} if signature else {}
    if ctype:
        h["Content-Type"] = ctype
    r = await fuzz.client.post(WHATSAPP_PATH, data=body, headers=h)
    assert 400 <= r.status < 500


async def test_whatsapp_oversize(fuzz):
    form = wa_form("+593991234567", "a" * (MAX_BODY_BYTES + 10))
    assert await fuzz.whatsapp(form) == 413

    async def chunks():
        for _ in range(40):
            yield b"Body=" + b"a" * 65536

    sig = RequestValidator(TW_TOKEN).compute_signature(PUBLIC + WHATSAPP_PATH, {})
    r = await fuzz.client.post(WHATSAPP_PATH, data=chunks(), headers={
        "X-Twilio-Signature": sig, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 413
    too_many = MultiDict([(f"k{i}", "v") for i in range(MAX_FIELDS + 5)])
    assert await fuzz.whatsapp(too_many) == 400
