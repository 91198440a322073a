"""The reference bot: a small shrimp exporter's sales assistant in es and en.

It answers quote, price, availability, logistics and payment requests with rule-based replies,
on Telegram (an aiogram Router) and WhatsApp (a Twilio webhook answering TwiML). It is the
example of integration: tuneloop is attached by `capture.setup(dp)` and
`capture.twilio_middleware(paths=[...])`, nothing else.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from aiogram import Router
from aiogram.types import Message
from aiohttp import web

from middleware.config import Config
from workers.analyzers.rules import RulesAnalyzer

SALES_PHONE = "+593 4 260 0000"   # the operator's own public values (config anonymizer.keep_values)
SALES_EMAIL = "ventas@mariscosdelpacifico.example"

_EN_HINTS = ("please", "price", "quote", "the ", "how", "when", "can you", "thanks", "hello", "hi ",
             "available", "container", "payment", "send")


def _lang(text: str, hint: str | None = None) -> str:
    low = f" {text.lower()} "
    if hint and hint.lower().startswith("en"):
        return "en"
    return "en" if sum(h in low for h in _EN_HINTS) >= 1 and "ñ" not in low and " el " not in low else "es"


def _spec(a: dict[str, Any]) -> str:
    parts = [a.get("product"), a.get("size")]
    if a.get("glaseo_percentage") is not None:
        parts.append(f"{a['glaseo_percentage']}% glaseo")
    if a.get("incoterm"):
        parts.append(a["incoterm"] + (f" {a['destination']}" if a.get("destination") else ""))
    return " ".join(str(p) for p in parts if p)


class ShopAssistant:
    def __init__(self, config: Config) -> None:
        self.rules = RulesAnalyzer(config.analysis)

    def reply(self, text: str, lang_hint: str | None = None) -> str:
        a = self.rules.analyze(text)
        lang = _lang(text, lang_hint)
        spec = _spec(a)
        intent = a["intent"]
        es = lang == "es"
        if intent == "proforma":
            if spec:
                return (f"¡Perfecto! Generando tu proforma para {spec}..." if es
                        else f"Great! Preparing your proforma for {spec}...")
            return ("Con gusto te preparo la proforma: ¿qué producto, talla y glaseo necesitas?" if es
                    else "Happy to prepare the proforma: which product, size and glaze do you need?")
        if intent == "price_quote":
            if a.get("incoterm") in ("CFR", "CIF") and not a.get("destination"):
                return ("Para calcular el precio CFR necesito el puerto de destino." if es
                        else "To quote CFR I need the destination port.")
            what = spec or ("el producto" if es else "the product")
            return (f"Te envío la cotización de {what} en unos minutos." if es
                    else f"I'll send you the quote for {what} in a few minutes.")
        if intent == "availability":
            what = spec or ("ese producto" if es else "that product")
            return (f"Sí, tenemos producción de {what} para las próximas semanas." if es
                    else f"Yes, we have {what} in production for the coming weeks.")
        if intent == "logistics":
            return ("Reviso el estado del embarque y te confirmo naviera, booking y ETA." if es
                    else "I'll check the shipment and confirm the line, booking and ETA.")
        if intent == "payment":
            return (f"Gracias. Para pagos escríbenos a {SALES_EMAIL}; confirmamos la transferencia al recibirla." if es
                    else f"Thank you. For payments write to {SALES_EMAIL}; we confirm the transfer on receipt.")
        if intent == "greeting":
            return ("¡Hola! Soy el asistente de ventas. ¿Qué producto te interesa?" if es
                    else "Hello! I'm the sales assistant. Which product are you interested in?")
        return (f"Te comunico con un asesor: llámanos al {SALES_PHONE}." if es
                else f"Let me connect you with an agent: call us at {SALES_PHONE}.")


def telegram_router(assistant: ShopAssistant) -> Router:
    router = Router(name="shop")

    @router.message()
    async def answer(message: Message) -> None:
        if message.text:
            lang = message.from_user.language_code if message.from_user else None
            await message.answer(assistant.reply(message.text, lang))

    return router


def twiml(*messages: str) -> str:
    body = "".join(f"<Message>{escape(m)}</Message>" for m in messages)
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>'


def whatsapp_handler(assistant: ShopAssistant, capture: Any = None) -> Any:
    """The bot's Twilio webhook: TwiML answers; admin text commands for the configured admins."""

    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        body = form.get("Body")
        sender = form.get("From")
        if not isinstance(body, str) or not body.strip():
            return web.Response(text=twiml(), content_type="application/xml")
        if capture is not None and isinstance(sender, str) and body.lstrip().startswith("/"):
            from middleware.config import normalize_user_id

            from .admin import handle_admin_text

            try:
                user_id = normalize_user_id(sender)
            except ValueError:
                user_id = None
            answer = await handle_admin_text(capture, user_id, body) if user_id else None
            if answer is not None:
                return web.Response(text=twiml(answer), content_type="application/xml")
        return web.Response(text=twiml(assistant.reply(body)), content_type="application/xml")

    return handle
