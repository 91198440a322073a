"""The aiogram 3 adapter: an outer update middleware and a bot session middleware.

The update middleware answers consent commands and buttons itself (they never reach the bot's
handlers), opens an exchange around the handler for a consented user's text message, and seals
it when the handler returns, adding a method the handler returned (webhook replies). The session
middleware adds every message the bot sends to that chat while the exchange is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.methods import Response, TelegramMethod
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    TelegramObject,
    Update,
)

from .capture import CaptureCore, ConsentReply
from .consent import ConsentCommand, ConsentText, parse_command
from .exchange import current_exchange

log = logging.getLogger("tuneloop.aiogram")

CALLBACK_PREFIX = "tuneloop:"


def method_text(method: TelegramMethod[Any]) -> str | None:
    """The user-visible text a method sends: a message's text or a media caption."""
    text = getattr(method, "text", None)
    if isinstance(text, str):
        return text
    caption = getattr(method, "caption", None)
    return caption if isinstance(caption, str) else None


class ReplyCaptureMiddleware(BaseRequestMiddleware):
    """Adds what the bot sends while an exchange is open to that exchange (awaited calls)."""

    def __init__(self) -> None:
        # aiogram parametrizes Response[T] for every call's answer, and pydantic caches those
        # classes weakly: each garbage collection frees them and the next call rebuilds one, a
        # 3 ms stall of the event loop, the more often the more the process allocates (as
        # capture does). Holding them (one per return type) keeps them built.
        self._responses: dict[Any, Any] = {}

    async def __call__(self, make_request: NextRequestMiddlewareType[Any], bot: Bot,
                       method: TelegramMethod[Any]) -> Response[Any]:
        ret = getattr(method, "__returning__", None)
        if ret is not None and ret not in self._responses:
            with contextlib.suppress(Exception):
                self._responses[ret] = Response[ret]
        response = await make_request(bot, method)
        ex = current_exchange.get()
        if ex is not None and not ex.sealed:
            try:
                ex.add_reply(getattr(method, "chat_id", None), method_text(method))
            except Exception:
                log.exception("reply capture failed (ignored)")
        return response


def _keyboard(reply: ConsentReply, prefix: str) -> InlineKeyboardMarkup | None:
    if not reply.buttons:
        return None
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text=label, callback_data=f"{prefix}{action}")
        for label, action in reply.buttons]])


class AiogramCapture:
    channel = "telegram"

    def __init__(self, core: CaptureCore) -> None:
        self.core = core
        self.reply_mw = ReplyCaptureMiddleware()
        self._sessions: set[int] = set()
        self._background: set[asyncio.Task[Any]] = set()

    def setup(self, dp: Dispatcher) -> None:
        dp.update.outer_middleware(self)
        dp.startup.register(self._on_startup)
        dp.shutdown.register(self._on_shutdown)

    async def _on_startup(self, bots: list[Bot] | None = None, **_: Any) -> None:
        for bot in bots or []:
            self._attach(bot)
        await self.core.start()

    async def _on_shutdown(self, **_: Any) -> None:
        await self.core.close()

    def _attach(self, bot: Bot) -> None:
        sid = id(bot.session)
        if sid not in self._sessions:
            bot.session.middleware(self.reply_mw)
            self._sessions.add(sid)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        bot: Bot | None = data.get("bot")
        if not isinstance(event, Update) or bot is None:
            return await handler(event, data)
        self._attach(bot)
        try:
            if event.message is not None:
                cmd = parse_command(event.message.text)
                if cmd is not None and event.message.from_user is not None:
                    await self._answer_command(bot, event.message, cmd)
                    return None
            elif event.callback_query is not None:
                cq = event.callback_query
                if cq.data and cq.data.startswith(CALLBACK_PREFIX):
                    await self._answer_button(bot, cq)
                    return None
            elif event.my_chat_member is not None:
                self._spawn(self._on_member_update(event.my_chat_member))
        except Exception:
            log.exception("consent handling failed (the update goes on to the bot)")

        msg = event.message
        if (msg is None or msg.from_user is None or msg.text is None or msg.from_user.is_bot
                or (msg.chat.type != "private" and self.core.config.capture.private_chats_only)):
            return await handler(event, data)
        user = msg.from_user
        names = tuple(n for n in (user.first_name, user.last_name,
                                  f"@{user.username}" if user.username else None) if n)
        meta: dict[str, Any] = {}
        state = data.get("raw_state")
        meta["state"] = state if state is not None else "idle"
        decision = await self.core.begin(self.channel, f"telegram:{user.id}", msg.chat.id, msg.text,
                                         names, meta, user.language_code)
        ex = decision.exchange
        token = current_exchange.set(ex) if ex is not None else None
        try:
            result = await handler(event, data)
            if ex is not None and isinstance(result, TelegramMethod):
                ex.add_reply(getattr(result, "chat_id", None), method_text(result))
            return result
        finally:
            if token is not None:
                current_exchange.reset(token)
            if ex is not None:
                self.core.seal(ex)
            if decision.ask is not None:
                self._spawn(self._ask(bot, msg.chat.id, f"telegram:{user.id}", decision.ask))

    # ---------------------------------------------------------------------------- consent UI
    async def _ask(self, bot: Bot, chat_id: int, user_id: str, text: ConsentText) -> None:
        try:
            if not await self.core.mark_asked(self.core.pseudonymize(user_id), text.version):
                return
            reply = ConsentReply(text.text, ((text.labels.accept, "yes"), (text.labels.decline, "no")))
            await bot.send_message(chat_id, reply.text, reply_markup=_keyboard(reply, CALLBACK_PREFIX))
        except Exception:
            log.exception("could not ask for consent (ignored)")

    async def _answer_command(self, bot: Bot, msg: Message, cmd: ConsentCommand) -> None:
        assert msg.from_user is not None
        user_id = f"telegram:{msg.from_user.id}"
        lang = msg.from_user.language_code
        if cmd.action == "forget":   # erasure asks for a confirmation first
            labels = self.core.texts.get(lang).labels
            confirm = ConsentReply(labels.forget_confirm, ((labels.forget_yes, "forget"),
                                                           (labels.forget_cancel, "cancel")))
            await bot.send_message(msg.chat.id, confirm.text, reply_markup=_keyboard(confirm, CALLBACK_PREFIX))
            return
        if cmd.action == "mydata":
            data = await self.core.my_data(user_id)
            body = json.dumps(data, ensure_ascii=False, indent=2).encode()
            await bot.send_document(msg.chat.id, BufferedInputFile(body, filename="mydata.json"),
                                    caption=self.core.texts.get(lang).labels.mydata)
            return
        reply = await self.core.consent_action(self.channel, user_id, cmd, lang)
        await bot.send_message(msg.chat.id, reply.text, reply_markup=_keyboard(reply, CALLBACK_PREFIX))

    async def _answer_button(self, bot: Bot, cq: CallbackQuery) -> None:
        action = (cq.data or "")[len(CALLBACK_PREFIX):]
        chat_id = cq.message.chat.id if cq.message is not None else cq.from_user.id
        if action == "cancel":
            await bot.answer_callback_query(cq.id)
            await bot.send_message(chat_id, self.core.texts.get(cq.from_user.language_code).labels.forget_cancelled)
            return
        if action not in ("yes", "no", "forget"):
            await bot.answer_callback_query(cq.id)
            return
        reply = await self.core.consent_action(self.channel, f"telegram:{cq.from_user.id}",
                                               ConsentCommand(action, mechanism="button"),
                                               cq.from_user.language_code)
        await bot.answer_callback_query(cq.id)
        await bot.send_message(chat_id, reply.text)

    async def _on_member_update(self, upd: ChatMemberUpdated) -> None:
        # A user who blocks the bot: a withdrawal when config says so.
        if upd.new_chat_member.status != "kicked" or not self.core.config.consent.withdraw_on_block:
            return
        try:
            pseudonym = self.core.pseudonymize(f"telegram:{upd.from_user.id}")
            rec = await self.core.cache.get(pseudonym)
            if rec.active:
                await self.core.withdraw(pseudonym, "block")
        except Exception:
            log.exception("withdrawal on block failed")
