"""The Twilio (WhatsApp) adapter: an aiohttp middleware for the bot's Twilio webhook routes.

    app = web.Application(middlewares=[capture.twilio_middleware(paths=["/whatsapp/webhook"])])

On the listed paths it refuses every request without a valid `X-Twilio-Signature` (403, the bot's
handler never runs), computed over `TUNELOOP_PUBLIC_URL` + path + query, never `request.url`: behind
a proxy the URL Twilio signed is not the one aiohttp sees. Consent commands and keywords are
answered here with TwiML. For a consented user's text message it opens an exchange around the
handler, adds the `<Message>`s of the handler's TwiML and what the handler sends through Twilio's
REST client (middleware.twilio_rest), and appends the first-message consent question to the TwiML.
Status callbacks, media and empty messages are validated and passed through untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

from . import twilio_twiml as twiml
from .capture import CaptureCore
from .consent import ConsentCommand, ConsentText, KeywordMatcher, parse_command
from .exchange import Exchange, current_exchange
from .twilio_rest import twilio_http_client, whatsapp_id

__all__ = ["TwilioCapture", "twilio_http_client"]

log = logging.getLogger("tuneloop.twilio")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_BODY_BYTES = 128 * 1024   # a WhatsApp message is at most 4096 characters, ~50 KB url-encoded
MAX_FIELDS = 200              # Twilio posts a few dozen
MAX_NAME_CHARS = 128
ASK_TIMEOUT_S = 0.5           # the reply waits this long at most for the "asked" flag
FORM = "application/x-www-form-urlencoded"

# How to answer, per language; config has the keywords, these wrap them.
_REPLY_HINT = {"es": "Responde {yes} o {no}.", "en": "Reply {yes} or {no}."}
_MYDATA = {"es": "Mensajes tuyos guardados (anonimizados): {n}.",
           "en": "Your stored (anonymized) messages: {n}."}
_MYDATA_LINK = {"es": "Tus datos en un archivo JSON (enlace válido {minutes} min):",
                "en": "Your data as a JSON file (link valid for {minutes} min):"}
MYDATA_PATH = "/tuneloop/mydata/"
MYDATA_TTL = 600


@dataclass(frozen=True)
class Inbound:
    """A user's text message, as much of the webhook as capture needs."""

    user_id: str                 # whatsapp:+<E.164>
    body: str
    profile_name: str | None


def inbound_message(form: MultiDictProxy[str]) -> Inbound | None:
    """The user's text message, or None: status callbacks, media, empty bodies, non-WhatsApp senders."""
    if "MessageStatus" in form or form.get("SmsStatus", "received") != "received":
        return None
    body = form.get("Body")
    if not body or not body.strip():
        return None
    num_media = form.get("NumMedia", "0").strip() or "0"
    if num_media != "0":          # media (with or without a caption) is not text: as on Telegram
        return None
    user_id = whatsapp_id(form.get("From"))
    if user_id is None:
        return None
    name = (form.get("ProfileName") or "").strip()[:MAX_NAME_CHARS] or None
    return Inbound(user_id, body, name)


class TwilioCapture:
    channel = "whatsapp"

    def __init__(self, core: CaptureCore, paths: Iterable[str]) -> None:
        self.core = core
        self.paths = frozenset(paths)
        self.keywords = KeywordMatcher(core.config.consent)
        token = core.env.twilio_auth_token
        self._validator = RequestValidator(token) if token else None
        self._public_url = (core.env.public_url or "").rstrip("/") or None
        self._warned: set[str] = set()

    # ------------------------------------------------------------------------------ middleware
    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(MYDATA_PATH) and request.method in ("GET", "HEAD"):
            return await self._mydata_download(request)
        if request.path not in self.paths:
            return await handler(request)
        try:
            verdict = await self._verify(request)
        except Exception as e:   # fail closed: an unverified request never reaches the bot
            self._error("verify", e, counted=False)
            verdict = web.Response(status=403, text="forbidden")
        if isinstance(verdict, web.Response):
            return verdict
        try:
            msg = inbound_message(verdict)
        except Exception as e:
            self._error("parse", e)
            msg = None
        if msg is None:
            return await handler(request)

        answer = await self._consent_command(msg)
        if answer is not None:
            return answer

        decision = await self.core.begin(self.channel, msg.user_id, msg.user_id, msg.body,
                                         (msg.profile_name,) if msg.profile_name else ())
        ex = decision.exchange
        if ex is None and decision.ask is None:
            return await handler(request)
        token = current_exchange.set(ex) if ex is not None else None
        try:
            resp = await handler(request)
        except BaseException:
            if ex is not None:
                self.core.seal(ex)
            raise
        finally:
            if token is not None:
                current_exchange.reset(token)
        try:
            return await self._after(resp, msg, ex, decision.ask)
        except Exception as e:
            self._error("reply", e)
            return resp
        finally:
            if ex is not None:
                self.core.seal(ex)

    # ------------------------------------------------------------------------------ signature
    async def _verify(self, request: web.Request) -> MultiDictProxy[str] | web.Response:
        """The request's parameters when Twilio signed them, else the refusal to send."""
        if self._validator is None:
            return self._refuse("no-token", "TWILIO_AUTH_TOKEN is not set: refusing Twilio webhooks")
        if self._public_url is None:
            return self._refuse("no-url", "TUNELOOP_PUBLIC_URL is not set: refusing Twilio webhooks "
                                "(the signature covers the public URL)")
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            return web.Response(status=403, text="forbidden")
        if request.method == "POST":
            params = await self._form(request)
            if isinstance(params, web.Response):
                return params
        else:   # GET webhooks: the parameters are in the signed URL itself
            params = MultiDictProxy(MultiDict())
        url = self._public_url + _path_qs(request)
        algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER))
        try:
            ok = self._validator.validate(url, params, signature, algorithm)
        except Exception:
            ok = False
        if not ok:
            log.warning("refused a Twilio webhook with a bad signature on %s", request.path)
            return web.Response(status=403, text="forbidden")
        return params if request.method == "POST" else MultiDictProxy(MultiDict(request.query))

    async def _form(self, request: web.Request) -> MultiDictProxy[str] | web.Response:
        """The url-encoded body, strictly: anything malformed is the sender's error (4xx)."""
        if request.content_type != FORM:
            return web.Response(status=415, text="expected application/x-www-form-urlencoded")
        if (request.charset or "utf-8").lower().replace("_", "-") not in ("utf-8", "utf8", "us-ascii"):
            return web.Response(status=415, text="expected UTF-8")
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return web.Response(status=413, text="too large")
        try:
            raw = await request.read()   # cached: the handler's request.post() reads it again
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="too large")
        except Exception:   # a body cut short or badly framed: the sender's fault, never a 5xx
            return web.Response(status=400, text="unreadable body")
        if len(raw) > MAX_BODY_BYTES:
            return web.Response(status=413, text="too large")
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict",
                              max_num_fields=MAX_FIELDS)
        except ValueError:   # UnicodeDecodeError included
            return web.Response(status=400, text="malformed form body")
        return MultiDictProxy(MultiDict(pairs))

    def _refuse(self, key: str, message: str) -> web.Response:
        if key not in self._warned:
            self._warned.add(key)
            log.error(message)
        return web.Response(status=403, text="forbidden")

    # ------------------------------------------------------------------------------ consent
    async def _consent_command(self, msg: Inbound) -> web.Response | None:
        """TwiML answering a consent command or keyword; None when the message is not one."""
        try:
            cmd = parse_command(msg.body) or self.keywords.match(msg.body)
            if cmd is None:
                return None
            if cmd.action == "mydata":
                text = await self._mydata(msg.user_id, cmd)
                link = await self._mydata_link(msg.user_id, cmd)
                if link:   # WhatsApp takes no JSON attachment: a short-lived link to the file
                    return _twiml_response(twiml.append_message(twiml.parse(twiml.single_message(text)), link))
            else:
                reply = await self.core.consent_action(self.channel, msg.user_id, cmd)
                text = reply.text
                if cmd.action == "ask":
                    text = self._with_hint(text, self._lang_of(text))
            return _twiml_response(twiml.single_message(text))
        except Exception as e:
            # as on Telegram: the message goes on to the bot rather than be lost
            self._error("consent", e)
            return None

    async def _mydata(self, user_id: str, cmd: ConsentCommand) -> str:
        """A short text (WhatsApp sends no file here): the consent state and how much is stored."""
        state = await self.core.consent_action(self.channel, user_id, ConsentCommand("status", cmd.lang))
        data = await self.core.my_data(user_id)
        lang = self.core.texts.get(cmd.lang or data.get("consent", {}).get("lang")).lang   # as consent_action chose
        return f"{state.text} {_MYDATA.get(lang, _MYDATA['en']).format(n=len(data.get('records', ())))}"

    async def _mydata_link(self, user_id: str, cmd: ConsentCommand) -> str | None:
        """A link, valid MYDATA_TTL seconds, to the user's data as a JSON file (needs the public URL)."""
        if not self._public_url:
            return None
        token = secrets.token_urlsafe(24)
        client = self.core.handle.async_client()
        await client.set(self.core.keys.mydata_link(token), self.core.pseudonymize(user_id), ex=MYDATA_TTL)
        lang = self.core.texts.get(cmd.lang).lang
        label = _MYDATA_LINK.get(lang, _MYDATA_LINK["en"]).format(minutes=MYDATA_TTL // 60)
        return f"{label} {self._public_url}{MYDATA_PATH}{token}.json"

    async def _mydata_download(self, request: web.Request) -> web.StreamResponse:
        token = request.path[len(MYDATA_PATH):].removesuffix(".json")
        if not token or len(token) > 64:
            return web.Response(status=404, text="not found")
        try:
            raw = await self.core.handle.async_client().get(self.core.keys.mydata_link(token))
            if raw is None:
                return web.Response(status=404, text="this link has expired: send /mydata again")
            data = await self.core.my_data("", pseudonym=raw.decode())
        except Exception as e:
            self._error("mydata", e, counted=False)
            return web.Response(status=503, text="try again in a moment")
        return web.json_response(data, dumps=lambda o: json.dumps(o, ensure_ascii=False, indent=2), headers={
            "Content-Disposition": 'attachment; filename="mydata.json"', "Cache-Control": "no-store"})

    def _lang_of(self, consent_text: str) -> str:
        for lang in self.core.config.consent.texts:
            if self.core.texts.get(lang).text == consent_text:
                return lang
        return self.core.config.consent.default_lang

    def _with_hint(self, text: str, lang: str) -> str:
        """WhatsApp has no buttons: say which keyword to reply."""
        kw = self.core.config.consent.keywords.get(lang)
        yes = kw.yes[0] if kw and kw.yes else "/consent yes"
        no = kw.no[0] if kw and kw.no else "/consent no"
        return f"{text}\n\n{_REPLY_HINT.get(lang, _REPLY_HINT['en']).format(yes=yes, no=no)}"

    # ------------------------------------------------------------------------------ replies
    async def _after(self, resp: web.StreamResponse, msg: Inbound, ex: Exchange | None,
                     ask: ConsentText | None) -> web.StreamResponse:
        """Add the TwiML replies to the exchange; append the consent question when due."""
        if not isinstance(resp, web.Response) or resp.prepared or not 200 <= resp.status < 300:
            return resp
        body = resp.body
        if body is not None and not isinstance(body, bytes | bytearray):
            return resp   # a streamed payload: not ours to read or rewrite
        raw = bytes(body or b"")
        root = twiml.parse(raw)
        if ex is not None and root is not None:
            for m in twiml.messages(root):
                to = msg.user_id if m.to is None else whatsapp_id(m.to)
                ex.add_reply(to, m.text)
        if ask is None or (root is None and raw.strip()):
            return resp   # not TwiML: leave the bot's answer alone and ask another time
        try:
            due = await asyncio.wait_for(
                self.core.mark_asked(self.core.pseudonymize(msg.user_id), ask.version), ASK_TIMEOUT_S)
        except Exception as e:
            self._error("ask", e, counted=False)
            return resp
        if not due:
            return resp
        if resp.status == 204:   # "no content" was the bot's way to say nothing; now there is
            resp.set_status(200)
        resp.body = twiml.append_message(root, self._with_hint(ask.text, ask.lang))
        if "xml" not in resp.content_type:
            resp.content_type = "application/xml"
        resp.charset = "utf-8"
        return resp

    def _error(self, where: str, e: BaseException, counted: bool = True) -> None:
        # The exception's type only: its message could carry the number or the text (invariant 2).
        if counted:
            self.core.note_error()
        log.warning("capture error in twilio %s: %s (the bot is unaffected)", where, type(e).__name__)


def _path_qs(request: web.Request) -> str:
    """The path and query exactly as requested (what Twilio signed), never re-encoded."""
    raw = request.raw_path
    return raw if raw.startswith("/") else request.rel_url.raw_path_qs


def _twiml_response(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/xml", charset="utf-8")
