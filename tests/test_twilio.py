"""The WhatsApp (Twilio) capture path end to end: a real aiohttp app behind tuneloop's middleware,
requests signed with twilio's own RequestValidator, a real Redis, the bot's REST sends served by a
local stand-in of Twilio's Messages API through twilio's real client."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import MultiDict
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.messaging_response import MessagingResponse

from bot.standins.twilio_api import TwilioAPIStub, local_http_client
from middleware import TrainingCapture
from middleware.config import Config, Env
from middleware.keys import Keys
from middleware.record import from_hash
from middleware.twilio_adapter import MAX_BODY_BYTES
from middleware.twilio_rest import AsyncCapturingTwilioHttpClient, CapturingTwilioHttpClient
from tests.harness import all_values, counters, fake, wait_until

TOKEN = "twilio-auth-token-for-tests"
PUBLIC = "https://bot.example.com"
HOOK, STATUS = "/whatsapp", "/whatsapp/status"
BOT_NUMBER = "whatsapp:+14155238886"
_sids = itertools.count(1)


def wa_number() -> str:
    """A synthetic Ecuadorian mobile number in E.164."""
    return "+5939" + str(fake.random_number(8, fix_len=True))


def inbound(number: str, body: str, name: str | None = None, **extra: str) -> dict[str, str]:
    """The form Twilio posts for an inbound WhatsApp message."""
    sid = f"SM{next(_sids):032x}"
    p = {"SmsMessageSid": sid, "NumMedia": "0", "ProfileName": name or fake.first_name(),
         "MessageType": "text", "SmsSid": sid, "WaId": number.lstrip("+"), "SmsStatus": "received",
         "Body": body, "To": BOT_NUMBER, "NumSegments": "1", "ReferralNumMedia": "0",
         "MessageSid": sid, "AccountSid": "AC" + "0" * 30 + "01", "From": f"whatsapp:{number}",
         "ApiVersion": "2010-04-01"}
    p.update(extra)
    return p


def status_callback(number: str, status: str = "delivered") -> dict[str, str]:
    sid = f"SM{next(_sids):032x}"
    return {"ChannelPrefix": "whatsapp", "ApiVersion": "2010-04-01", "MessageStatus": status,
            "SmsSid": sid, "SmsStatus": status, "ChannelInstallSid": "XE" + "0" * 32, "To": f"whatsapp:{number}",
            "From": BOT_NUMBER, "MessageSid": sid, "AccountSid": "AC" + "0" * 30 + "01"}


def sign(url: str, params: Any, token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def twiml(*texts: str) -> str:
    r = MessagingResponse()
    for t in texts:
        r.message(t)
    return str(r)


@dataclass
class Bot:
    """The bot's own webhook handler and what it saw."""

    reply: Callable[[dict[str, str]], Any] = lambda form: twiml("¡Perfecto! Recibido.")
    calls: list[dict[str, str]] = field(default_factory=list)
    statuses: list[dict[str, str]] = field(default_factory=list)

    async def hook(self, request: web.Request) -> web.StreamResponse:
        got = request.query if request.method == "GET" else await request.post()
        form = {k: v for k, v in got.items() if isinstance(v, str)}
        self.calls.append(form)
        out = self.reply(form)
        if asyncio.iscoroutine(out):
            out = await out
        if isinstance(out, web.StreamResponse):
            return out
        return web.Response(text=out, content_type="application/xml")

    async def status(self, request: web.Request) -> web.StreamResponse:
        self.statuses.append({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        return web.Response(status=204)


@dataclass
class App:
    client: TestClient
    cap: TrainingCapture
    bot: Bot

    async def post(self, path: str, params: Any, signed_url: str | None = None, token: str = TOKEN,
                   signature: str | None = None, **kw: Any) -> Any:
        url = PUBLIC + path if signed_url is None else signed_url
        sig = sign(url, params, token) if signature is None else signature
        headers = {"X-Twilio-Signature": sig} if sig else {}
        return await self.client.post(path, data=params, headers=headers, **kw)

    async def say(self, number: str, body: str, **kw: Any) -> tuple[int, str]:
        resp = await self.post(HOOK, inbound(number, body, **kw))
        return resp.status, await resp.text()

    def pseudo(self, number: str) -> str:
        return self.cap.pseudonymize(f"whatsapp:{number}")


@pytest.fixture
def twenv(env: Env) -> Env:
    return env.model_copy(update={"twilio_auth_token": TOKEN, "public_url": PUBLIC})


async def start_app(config: Config, env: Env, bot: Bot | None = None, **kw: Any) -> App:
    cap = TrainingCapture(config, env, **kw)
    bot = bot or Bot()
    app = web.Application(middlewares=[cap.twilio_middleware(paths=[HOOK, STATUS])])
    app.router.add_post(HOOK, bot.hook)
    app.router.add_get(HOOK, bot.hook)
    app.router.add_post(STATUS, bot.status)
    client = TestClient(TestServer(app))
    await client.start_server()
    await cap.start()
    await wait_until(lambda: cap.core.ready, 10)
    await cap.core.cache.wait_subscribed()
    return App(client, cap, bot)


async def stop_app(a: App) -> None:
    await a.cap.close()
    await a.client.close()


@pytest.fixture
async def app(config: Config, twenv: Env) -> Any:
    a = await start_app(config, twenv)
    yield a
    await stop_app(a)


def records_of(rconn: redis.Redis, prefix: str) -> list:
    keys = Keys(prefix)
    ids = [i.decode() for i in rconn.zrange(keys.time_index, 0, -1)]
    return [from_hash(i, rconn.hgetall(keys.record(i))) for i in ids]


def messages_of(xml: str) -> list[str]:
    import xml.etree.ElementTree as ET

    return [(m.text or "").strip() for m in ET.fromstring(xml).findall("Message")]


async def grant(a: App, number: str) -> None:
    status, body = await a.say(number, "ACEPTO")
    assert status == 200 and "Gracias" in body


# ---------------------------------------------------------------------------------------- signature

async def test_signed_passes_forged_missing_and_changed_refused(app):
    number = wa_number()
    params = inbound(number, "hola")
    ok = await app.post(HOOK, params)
    assert ok.status == 200 and len(app.bot.calls) == 1
    refused = [
        await app.post(HOOK, params, signature=""),                                   # unsigned
        await app.post(HOOK, params, signature="c2lnbmF0dXJlIGZvcmdlZCBoZXJlIQ=="),  # forged
        await app.post(HOOK, params, token="not-the-token"),                          # wrong key
        await app.post(HOOK, {**params, "Body": "cambiado"}, signature=sign(PUBLIC + HOOK, params)),
        await app.post(HOOK, {**params, "Extra": "1"}, signature=sign(PUBLIC + HOOK, params)),
        await app.post(STATUS, status_callback(number), signature="bm9wZQ=="),
    ]
    assert [r.status for r in refused] == [403] * len(refused)
    assert len(app.bot.calls) == 1 and app.bot.statuses == []


async def test_behind_a_proxy_the_public_url_is_what_counts(app):
    params = inbound(wa_number(), "hola")
    local = str(app.client.make_url(HOOK))
    assert local.startswith("http://127.0.0.1:")
    assert (await app.post(HOOK, params, signed_url=local)).status == 403
    assert (await app.post(HOOK, params, signed_url=PUBLIC + HOOK)).status == 200
    # the query string is part of what Twilio signs
    assert (await app.post(HOOK + "?bot=camaron", params, signed_url=PUBLIC + HOOK)).status == 403
    assert (await app.post(HOOK + "?bot=camaron", params)).status == 200
    assert len(app.bot.calls) == 2


async def test_get_webhooks_sign_the_url_and_are_captured(app, rconn, prefix):
    number = wa_number()
    await grant(app, number)
    path = app.client.make_url(HOOK + "?" + urlencode(inbound(number, "precio PD 31/40?"))).raw_path_qs
    assert (await app.client.get(path, headers={"X-Twilio-Signature": sign(PUBLIC + path, {})})).status == 200
    forged = path.replace("Body=precio", "Body=PRECIO")
    assert forged != path
    assert (await app.client.get(forged, headers={"X-Twilio-Signature": sign(PUBLIC + path, {})})).status == 403
    await app.cap.flush()
    assert [r.content for r in records_of(rconn, prefix)] == ["precio PD 31/40?"]


@pytest.mark.parametrize("missing", ["twilio_auth_token", "public_url"])
async def test_unconfigured_refuses_and_logs_once(config, twenv, caplog, missing):
    a = await start_app(config, twenv.model_copy(update={missing: None}))
    try:
        with caplog.at_level(logging.ERROR, logger="tuneloop.twilio"):
            for _ in range(3):
                assert (await a.post(HOOK, inbound(wa_number(), "hola"))).status == 403
        assert a.bot.calls == []
        assert len([r for r in caplog.records if r.name == "tuneloop.twilio"]) == 1
    finally:
        await stop_app(a)


async def test_status_callbacks_validated_and_untouched(app, rconn, prefix):
    number = wa_number()
    await grant(app, number)
    resp = await app.post(STATUS, status_callback(number))
    assert resp.status == 204 and await resp.read() == b""
    # a status callback posted to the message route (one URL for both) is untouched too
    resp = await app.post(HOOK, status_callback(number, "read"))
    assert resp.status == 200 and messages_of(await resp.text()) == ["¡Perfecto! Recibido."]
    assert len(app.bot.statuses) == 1
    await app.cap.flush()
    assert records_of(rconn, prefix) == []
    assert counters(rconn, prefix).get("captured", 0) == 0


# ---------------------------------------------------------------------------------------- capture

async def test_twiml_reply_captured_anonymized_and_profile_name_masked(config, twenv, rconn, prefix):
    bot = Bot(reply=lambda f: twiml("¡Perfecto! Te llamo al 0987654321 para la proforma HLSO 16/20",
                                     "Gracias, Zorbulina"))
    a = await start_app(config, twenv, bot)
    try:
        number = wa_number()
        await grant(a, number)
        email = fake.email()
        text = f"Zorbulina Katrupesk aquí: HLSO 16/20 con 20% glaseo, escríbeme a {email}"
        status, body = await a.say(number, text, name="Zorbulina Katrupesk")
        assert status == 200 and len(messages_of(body)) == 2   # the bot's answer, as it was
        assert await a.cap.flush()
        [r] = records_of(rconn, prefix)
        assert r.content == "[NAME] aquí: HLSO 16/20 con 20% glaseo, escríbeme a [EMAIL]"
        assert r.reply == ["¡Perfecto! Te llamo al [PHONE] para la proforma HLSO 16/20", "Gracias, [NAME]"]
        assert r.channel == "whatsapp" and r.user_id == a.pseudo(number)
        assert r.original_length == len(text) and r.metadata["lang"] == "es"
        blob = all_values(rconn, prefix, config.redis.queue)
        for raw in (number, number.lstrip("+"), email, "Zorbulina", "Katrupesk"):
            assert raw.encode() not in blob
    finally:
        await stop_app(a)


async def test_twiml_message_to_another_number_is_not_this_exchange(config, twenv, rconn, prefix):
    other = wa_number()

    def reply(form: dict[str, str]) -> str:
        r = MessagingResponse()
        r.message("Para ti")
        r.message("Aviso al vendedor", to=f"whatsapp:{other}")
        r.message("También para ti", to=form["From"])
        return str(r)

    a = await start_app(config, twenv, Bot(reply=reply))
    try:
        number = wa_number()
        await grant(a, number)
        await a.say(number, "precio HOSO 30/40?")
        await a.cap.flush()
        [r] = records_of(rconn, prefix)
        assert r.reply == ["Para ti", "También para ti"]
    finally:
        await stop_app(a)


@pytest.mark.parametrize("mode", ["async", "sync-in-thread"])
async def test_rest_client_reply_captured(config, twenv, rconn, prefix, mode):
    other = wa_number()
    async with TwilioAPIStub() as api:
        if mode == "async":
            http = local_http_client(AsyncCapturingTwilioHttpClient, api.base_url)
        else:
            http = local_http_client(CapturingTwilioHttpClient, api.base_url)
        client = Client(api.account_sid, api.auth_token, http_client=http)

        async def reply(form: dict[str, str]) -> web.Response:
            sends = [dict(to=form["From"], from_=form["To"], body="Claro: CFR Miami, te escribo al 0987654321"),
                     dict(to=f"whatsapp:{other}", from_=form["To"], body="nota interna")]
            for s in sends:
                if mode == "async":
                    await client.messages.create_async(**s)
                else:
                    await asyncio.to_thread(client.messages.create, **s)
            return web.Response(text=str(MessagingResponse()), content_type="application/xml")

        a = await start_app(config, twenv, Bot(reply=reply))
        try:
            number = wa_number()
            await grant(a, number)
            status, _ = await a.say(number, "precio CFR Miami?")
            assert status == 200
            assert [m["To"] for m in api.messages] == [f"whatsapp:{number}", f"whatsapp:{other}"]
            await a.cap.flush()
            [r] = records_of(rconn, prefix)
            assert r.reply == ["Claro: CFR Miami, te escribo al [PHONE]"]
        finally:
            await stop_app(a)
            if mode == "async":
                await http.close()


async def test_rest_send_that_failed_is_not_a_reply(config, twenv, rconn, prefix):
    async with TwilioAPIStub() as api:
        api.fail_status = 429
        http = local_http_client(AsyncCapturingTwilioHttpClient, api.base_url)
        client = Client(api.account_sid, api.auth_token, http_client=http)

        async def reply(form: dict[str, str]) -> str:
            try:
                await client.messages.create_async(to=form["From"], from_=form["To"], body="no llegó")
            except Exception:
                pass
            return twiml("sí llegó")

        a = await start_app(config, twenv, Bot(reply=reply))
        try:
            number = wa_number()
            await grant(a, number)
            await a.say(number, "hola")
            await a.cap.flush()
            [r] = records_of(rconn, prefix)
            assert r.reply == ["sí llegó"]
        finally:
            await stop_app(a)
            await http.close()


# ---------------------------------------------------------------------------------------- consent

async def test_first_message_asks_once_appended_to_the_twiml(app, rconn, prefix):
    number = wa_number()
    status, body = await app.say(number, "hola, precio HLSO?")
    msgs = messages_of(body)
    assert status == 200 and msgs[0] == "¡Perfecto! Recibido." and len(msgs) == 2
    assert "Mariscos del Pacífico" in msgs[1] and msgs[1].endswith("Responde ACEPTO o NO ACEPTO.")
    _, body = await app.say(number, "otra pregunta")
    assert messages_of(body) == ["¡Perfecto! Recibido."]
    await app.cap.flush()
    # nothing stored for a user without consent: only the asked flag and the users seen
    assert rconn.hkeys(f"{prefix}consent:{app.pseudo(number)}") == [b"asked"]
    assert records_of(rconn, prefix) == []


async def test_ask_on_an_empty_reply_becomes_twiml(config, twenv):
    a = await start_app(config, twenv, Bot(reply=lambda f: web.Response(status=204)))
    try:
        resp = await a.post(HOOK, inbound(wa_number(), "hola"))
        assert resp.status == 200 and "xml" in resp.content_type
        [ask] = messages_of(await resp.text())
        assert "Responde ACEPTO o NO ACEPTO" in ask
    finally:
        await stop_app(a)


async def test_ask_leaves_a_non_twiml_answer_alone(config, twenv):
    a = await start_app(config, twenv, Bot(reply=lambda f: web.Response(text="ok", content_type="text/plain")))
    try:
        number = wa_number()
        resp = await a.post(HOOK, inbound(number, "hola"))
        assert resp.status == 200 and await resp.text() == "ok"
        # not asked (the question could not be delivered): it is asked on a later TwiML answer
        assert a.cap.core.store.consent(a.pseudo(number)).asked is None
    finally:
        await stop_app(a)


GRANTED, WITHDRAWN, DECLINED = "Gracias.", "Listo: retiraste", "Entendido"


@pytest.mark.parametrize("text,expect,lang", [
    ("/consent yes", GRANTED, "es"),
    ("/consent sí", GRANTED, "es"),
    ("ACEPTO", GRANTED, "es"),
    ("¡Acepto!", GRANTED, "es"),
    ("  acepto.  ", GRANTED, "es"),
    ("¡Sí acepto!", GRANTED, "es"),
    ("I agree", "Thank you.", "en"),
    ("agree!!", "Thank you.", "en"),
])
async def test_consent_grants(app, text, expect, lang):
    number = wa_number()
    status, body = await app.say(number, text)
    assert status == 200 and messages_of(body)[0].startswith(expect)
    c = app.cap.core.store.consent(app.pseudo(number))
    assert c.active and c.lang == lang
    assert c.mechanism == ("command" if text.startswith("/") else "keyword")
    assert app.bot.calls == []   # never reached the bot


@pytest.mark.parametrize("text", ["acepto el precio", "ACEPTO, mándame la proforma", "no acepto ese precio",
                                  "consent yes", "/consentimiento"])
async def test_not_consent(app, text):
    number = wa_number()
    status, body = await app.say(number, text)
    assert status == 200 and messages_of(body)[0] == "¡Perfecto! Recibido."
    assert len(app.bot.calls) == 1
    assert not app.cap.core.store.consent(app.pseudo(number)).active


async def test_consent_ask_status_withdraw_forget_mydata(app, rconn, prefix):
    number = wa_number()
    _, body = await app.say(number, "/consent")
    [ask] = messages_of(body)
    assert "¿Nos permites" in ask and ask.endswith("Responde ACEPTO o NO ACEPTO.")
    _, body = await app.say(number, "/consent status")
    assert messages_of(body) == ["No tienes consentimiento activo: no guardamos tus mensajes."]
    await grant(app, number)
    _, body = await app.say(number, "Mi consentimiento")
    assert messages_of(body)[0].startswith("Tu consentimiento está activo desde")
    for t in ("HLSO 16/20", "PD 31/40 IQF"):
        await app.say(number, t)
    await app.cap.flush()
    _, body = await app.say(number, "/mydata")
    [mine, link] = messages_of(body)
    assert mine.startswith("Tu consentimiento está activo") and mine.endswith("(anonimizados): 2.")
    assert link.startswith("Tus datos en un archivo JSON") and "/tuneloop/mydata/" in link
    _, body = await app.say(number, "/forget")
    assert messages_of(body)[0].startswith(WITHDRAWN)
    assert records_of(rconn, prefix) == []
    _, body = await app.say(number, "/mydata")
    assert messages_of(body)[0] == ("No tienes consentimiento activo: no guardamos tus mensajes. "
                                    "Mensajes tuyos guardados (anonimizados): 0.")
    await grant(app, number)
    _, body = await app.say(number, "NO ACEPTO")
    assert messages_of(body)[0].startswith(WITHDRAWN)
    _, body = await app.say(number, "/consent no")
    assert messages_of(body)[0].startswith(DECLINED)
    _, body = await app.say(number, "MY CONSENT")   # the keyword's language answers
    assert messages_of(body) == ["You have no active consent: we do not store your messages."]
    # only the messages between the grants reached the bot
    assert [c["Body"] for c in app.bot.calls] == ["HLSO 16/20", "PD 31/40 IQF"]
    events = [e["event"] for e in app.cap.core.store.consent_events(app.pseudo(number))]
    assert events[:4] == ["grant", "withdraw", "grant", "withdraw"]


# ---------------------------------------------------------------------------------------- untouched

async def test_media_empty_and_non_whatsapp_pass_through_untouched(app, rconn, prefix):
    number = wa_number()
    await grant(app, number)
    media = {"NumMedia": "1", "MediaUrl0": "https://api.twilio.com/media/ME1",
             "MediaContentType0": "image/jpeg", "MessageType": "image"}
    cases = [inbound(number, "", **media),                       # media only
             inbound(number, "foto del producto", **media),      # media with a caption: not text
             inbound(number, ""), inbound(number, "   \n "),     # empty bodies
             {**inbound(number, "hola por SMS"), "From": number}]  # SMS, not WhatsApp
    for p in cases:
        resp = await app.post(HOOK, p)
        assert resp.status == 200 and messages_of(await resp.text()) == ["¡Perfecto! Recibido."]
    assert len(app.bot.calls) == len(cases)
    await app.cap.flush()
    assert records_of(rconn, prefix) == []
    assert counters(rconn, prefix).get("captured", 0) == 0


async def test_other_routes_are_not_checked(config, twenv):
    cap = TrainingCapture(config, twenv)
    app = web.Application(middlewares=[cap.twilio_middleware(paths=[HOOK])])
    app.router.add_get("/healthz", lambda r: web.Response(text="ok"))
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/healthz")
        assert resp.status == 200 and await resp.text() == "ok"
    await cap.close()


# ---------------------------------------------------------------------------------------- malformed

async def test_malformed_bodies_are_4xx_and_never_reach_the_bot(app):
    number = wa_number()
    p = inbound(number, "hola")
    sig = {"X-Twilio-Signature": sign(PUBLIC + HOOK, p)}
    c = app.client
    cases = [
        await c.post(HOOK, data=json.dumps(p), headers={**sig, "Content-Type": "application/json"}),
        await c.post(HOOK, data=b"Body=" + b"a" * (MAX_BODY_BYTES + 1),
                     headers={**sig, "Content-Type": "application/x-www-form-urlencoded"}),
        await c.post(HOOK, data=b"Body=\xff\xfe&From=x", headers={**sig, "Content-Type": "application/x-www-form-urlencoded"}),
        await c.post(HOOK, data=b"Body=%FF%FE&From=x", headers={**sig, "Content-Type": "application/x-www-form-urlencoded"}),
        await c.post(HOOK, data=urlencode(p), headers={**sig, "Content-Type": "application/x-www-form-urlencoded; charset=klingon"}),
        await c.post(HOOK, data="&".join(f"k{i}=v" for i in range(5000)), headers={**sig, "Content-Type": "application/x-www-form-urlencoded"}),
    ]
    assert all(400 <= r.status < 500 for r in cases), [r.status for r in cases]
    assert app.bot.calls == []


_text = st.text(st.characters(codec="utf-8"), max_size=40)
_from = st.one_of(st.builds(lambda: f"whatsapp:{wa_number()}"), st.just("whatsapp:+593"), _text,
                  st.builds(lambda s: "whatsapp:" + s, _text))
_body = st.one_of(_text, st.sampled_from(["ACEPTO", "/consent", "/consent yes", "/forget", "/mydata",
                                          "NO ACEPTO", "/consent maybe", "/start", "\x00", "<Message>"]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.fixed_dictionaries({"From": _from, "Body": _body},
                                  optional={"NumMedia": _text, "ProfileName": _text, "SmsStatus": _text,
                                            "MessageStatus": _text, "WaId": _text}),
       extra=st.lists(st.tuples(_text, _text), max_size=5), query=st.one_of(st.just(""), _text))
async def test_property_signed_random_forms_never_5xx(app, base, extra, query):
    params = MultiDict(base)
    params.extend(extra)
    path = HOOK + "?" + urlencode({"q": query}) if query else HOOK
    sent = app.client.make_url(path).raw_path_qs   # Twilio signs the URL as it requests it
    resp = await app.client.post(path, data=urlencode(list(params.items())), headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": sign(PUBLIC + sent, params)})
    assert resp.status < 500, resp.status
    assert resp.status == 200   # all of these are well-formed and signed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300), ctype=st.sampled_from(
    ["application/x-www-form-urlencoded", "application/json", "text/plain", "", "multipart/form-data"]))
async def test_property_garbage_bodies_never_5xx(app, body, ctype):
    headers = {"X-Twilio-Signature": "x"}
    if ctype:
        headers["Content-Type"] = ctype
    resp = await app.client.post(HOOK, data=body, headers=headers)
    assert 400 <= resp.status < 500
    assert app.bot.calls == []


# ---------------------------------------------------------------------------------------- invariants

async def test_capture_errors_never_break_the_reply(config, twenv, rconn, prefix):
    replies = iter([twiml("uno"), "<Response><Message>sin cerrar", twiml("tres")])
    a = await start_app(config, twenv, Bot(reply=lambda f: next(replies)))
    try:
        async def broken(*_: Any) -> bool:
            raise redis.ConnectionError("down")

        a.cap.core.mark_asked = broken   # asking fails: the bot's reply goes out as it was
        number = wa_number()
        status, body = await a.say(number, "hola")
        assert status == 200 and messages_of(body) == ["uno"]
        await grant(a, number)
        status, body = await a.say(number, "precio?")   # the bot's own broken TwiML: untouched
        assert status == 200 and body == "<Response><Message>sin cerrar"
        status, body = await a.say(number, "y el flete?")
        assert messages_of(body) == ["tres"]
        await a.cap.flush()
        assert [r.reply for r in records_of(rconn, prefix)] == [[], ["tres"]]
    finally:
        await stop_app(a)


async def test_handler_exception_is_the_bots_own(config, twenv, rconn, prefix):
    def boom(form: dict[str, str]) -> str:
        raise web.HTTPServiceUnavailable()

    a = await start_app(config, twenv, Bot(reply=boom))
    try:
        number = wa_number()
        await grant(a, number)
        resp = await a.post(HOOK, inbound(number, "hola"))
        assert resp.status == 503
        await a.cap.flush()
        assert [r.reply for r in records_of(rconn, prefix)] == [[]]   # the message, sealed anyway
    finally:
        await stop_app(a)


async def test_logs_hold_no_number_name_or_text(config, twenv, caplog):
    a = await start_app(config, twenv, Bot(reply=lambda f: "<Response><Message>roto"))
    number, name, secret = wa_number(), "Zorbulina Katrupesk", "texto-secreto-" + fake.uuid4()
    try:
        with caplog.at_level(logging.DEBUG):
            await a.say(number, f"{secret} hola", name=name)
            await grant(a, number)
            await a.say(number, f"{secret} otra", name=name)
            await a.post(HOOK, inbound(number, secret, name=name), signature="Zm9yZ2Vk")
            await a.client.post(HOOK, data=b"Body=%FF" + secret.encode(), headers={
                "X-Twilio-Signature": "x", "Content-Type": "application/x-www-form-urlencoded"})
            await a.cap.flush()
        logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
        for raw in (number, number.lstrip("+"), "Zorbulina", secret):
            assert raw not in logged
    finally:
        await stop_app(a)
