"""Admin chat commands (SURFACE.md, "Chat commands"): /stats, /process [N], /export
[min_confidence] [format] and /review, for the ids in TUNELOOP_ADMIN_IDS only.

    from bot.admin import setup_admin
    setup_admin(dp, capture)

On Telegram they are an aiogram Router; on WhatsApp the Twilio wiring calls
``handle_admin_text`` and sends back the text it returns. Anyone else gets a polite refusal
and nothing more: no figure, no record, no side effect.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiogram import Bot, Dispatcher, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    FSInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
)

from middleware.config import normalize_user_id
from middleware.record import Record
from workers.review import ClaimedElsewhere, ReviewError

from . import admin_format as fmt
from .admin_ops import AdminOps, ArgError, ops_for, parse_export_args, parse_process_args

if TYPE_CHECKING:
    from middleware import TrainingCapture

log = logging.getLogger("tuneloop.admin")

CALLBACK_PREFIX = "tladm:"       # tuneloop's consent buttons use "tuneloop:"
COMMANDS = ("stats", "process", "export", "review")
TELEGRAM_FILE_LIMIT = 50 * 1024 * 1024   # what a bot may upload
ACTION_CODES = {"a": "approve", "r": "reject", "s": "skip"}


# ------------------------------------------------------------------------------------- Telegram

class TelegramAdmin:
    def __init__(self, ops: AdminOps, file_limit: int = TELEGRAM_FILE_LIMIT) -> None:
        self.ops = ops
        self.file_limit = file_limit

    def router(self) -> Router:
        r = Router(name="tuneloop-admin")
        r.message.register(self._gate(self.stats), Command("stats"))
        r.message.register(self._gate(self.process), Command("process"))
        r.message.register(self._gate(self.export), Command("export"))
        r.message.register(self._gate(self.review), Command("review"))
        r.callback_query.register(self.button, F.data.startswith(CALLBACK_PREFIX))
        return r

    def _gate(self, handler: Callable[[Message, str, str | None], Awaitable[None]]
              ) -> Callable[..., Awaitable[None]]:
        async def gated(message: Message, command: CommandObject) -> None:
            user = message.from_user
            if user is None or not self.ops.is_admin(f"telegram:{user.id}"):
                await message.answer(fmt.refusal(user.language_code if user else None))
                return
            if message.chat.type != "private":   # figures and records are for the admin's eyes only
                await message.answer(fmt.PRIVATE_ONLY)
                return
            try:
                await handler(message, f"telegram:{user.id}", command.args)
            except ArgError as e:
                await message.answer(str(e))
            except Exception:
                log.exception("admin command /%s failed", command.command)
                await message.answer(f"/{command.command} failed; the bot's log says why.")

        gated.__name__ = f"admin_{handler.__name__}"
        return gated

    # /stats --------------------------------------------------------------------------------
    async def stats(self, message: Message, user_id: str, args: str | None) -> None:
        await message.answer(fmt.stats_text(await self.ops.stats()))
        png = await self.ops.chart()
        if png is not None:
            await message.answer_photo(BufferedInputFile(png, filename="funnel.png"),
                                       caption="captured → analyzed → approved → exported, per day")

    # /process ------------------------------------------------------------------------------
    async def process(self, message: Message, user_id: str, args: str | None) -> None:
        n = parse_process_args(args)
        if self.ops.busy_processing:
            await message.answer("A /process run is already under way; try again when it ends.")
            return
        await message.answer(fmt.results_text(await self.ops.process(n), n))

    # /export -------------------------------------------------------------------------------
    async def export(self, message: Message, user_id: str, args: str | None) -> None:
        ea = parse_export_args(args)
        if self.ops.busy_exporting:
            await message.answer("An export is already under way; try again when it ends.")
            return
        res = await self.ops.export(ea)
        await message.answer(fmt.export_text(res, ea))
        if res.get("success"):
            await self._send_files(message, res)

    async def _send_files(self, message: Message, res: dict[str, Any]) -> None:
        files = res.get("files") or {}
        paths = [Path(p) for p in (files.get("train"), files.get("valid")) if p]
        if paths:
            paths.append(Path(files.get("manifest") or paths[0].parent / "manifest.json"))
        too_big: list[str] = []
        for path in paths:
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if size == 0:   # an empty split (Telegram refuses empty files); the summary says 0
                continue
            doc = await self._document(path, size)
            if doc is None:
                too_big.append(str(path))
            else:
                await message.answer_document(doc)
        if too_big:
            await message.answer("Too big for Telegram even gzipped (limit "
                                 f"{self.file_limit / (1024 * 1024):g} MB); on the server:\n"
                                 + "\n".join(too_big))

    async def _document(self, path: Path, size: int) -> InputFile | None:
        """The file as sent: itself, or gzipped past the limit; None when still too big."""
        if size <= self.file_limit:
            return FSInputFile(path, filename=path.name)
        # gzipped in memory: no extra copy of user data is left on disk beside the export
        body = await asyncio.to_thread(lambda: gzip.compress(path.read_bytes(), compresslevel=6))
        if len(body) <= self.file_limit:
            return BufferedInputFile(body, filename=path.name + ".gz")
        return None

    # /review -------------------------------------------------------------------------------
    async def review(self, message: Message, user_id: str, args: str | None) -> None:
        await self._show_next(message.bot, message.chat.id, self.ops.reviewer(user_id), fresh=True)

    async def _show_next(self, bot: Bot | None, chat_id: int, reviewer: str, fresh: bool = False,
                         note: str | None = None) -> None:
        assert bot is not None
        rec, waiting = await self.ops.next_record(reviewer, fresh=fresh)
        prefix = f"{note}\n\n" if note else ""
        if rec is None:
            skipped = self.ops.skipped_count(reviewer)
            text = fmt.NOTHING if not skipped else (
                f"No other record waits for review; you skipped {skipped}. Send /review to see them again.")
            await bot.send_message(chat_id, prefix + text)
            return
        await bot.send_message(chat_id, fmt.clip(prefix + fmt.record_text(rec, waiting)),
                               reply_markup=self._keyboard(rec))

    def _keyboard(self, rec: Record) -> InlineKeyboardMarkup:
        rows = []
        actions = [("✅ Approve", "a"), ("❌ Reject", "r"), ("⏭ Skip", "s")]
        if rec.analysis is None:   # nothing to approve as is: the reviewer picks the intent
            actions = actions[1:]
        rows.append([InlineKeyboardButton(text=label, callback_data=f"{CALLBACK_PREFIX}{code}:{rec.id}")
                     for label, code in actions])
        current = (rec.analysis or {}).get("intent")
        # by index: callback data is limited to 64 bytes, intent names are not
        buttons = [InlineKeyboardButton(text=("• " if name == current else "→ ") + name,
                                        callback_data=f"{CALLBACK_PREFIX}i:{i}:{rec.id}")
                   for i, name in enumerate(self.ops.intents)]
        rows += [buttons[i:i + 3] for i in range(0, len(buttons), 3)]
        return InlineKeyboardMarkup(inline_keyboard=rows)

    async def button(self, cq: CallbackQuery, bot: Bot) -> None:
        user_id = f"telegram:{cq.from_user.id}"
        if not self.ops.is_admin(user_id):
            await cq.answer(fmt.refusal(cq.from_user.language_code), show_alert=True)
            return
        try:
            await self._button(cq, bot, user_id)
        except Exception:
            log.exception("review button failed")
            await cq.answer("That did not work; the bot's log says why.", show_alert=True)

    async def _button(self, cq: CallbackQuery, bot: Bot, user_id: str) -> None:
        parsed = self._parse(cq.data or "")
        if parsed is None:
            await cq.answer("Unknown button.")
            return
        action, record_id, intent = parsed
        reviewer = self.ops.reviewer(user_id)
        chat_id = cq.message.chat.id if cq.message is not None else cq.from_user.id
        try:
            rec = await self.ops.decide(reviewer, record_id, action, intent)   # type: ignore[arg-type]
        except ClaimedElsewhere:
            await cq.answer(fmt.CLAIMED, show_alert=True)
            return
        except ReviewError as e:
            await cq.answer(str(e), show_alert=True)
            return
        if rec is None:
            await cq.answer("Gone")
            await self._close_card(cq, "— " + fmt.GONE)
            await self._show_next(bot, chat_id, reviewer, note=fmt.GONE)
            return
        done = fmt.DECIDED[action] + (f" as {intent}" if intent else "")
        await cq.answer(done)
        await self._close_card(cq, done)
        await self._show_next(bot, chat_id, reviewer)

    def _parse(self, data: str) -> tuple[str, str, str | None] | None:
        parts = data[len(CALLBACK_PREFIX):].split(":")
        if len(parts) == 2 and parts[0] in ACTION_CODES and parts[1]:
            return ACTION_CODES[parts[0]], parts[1], None
        if len(parts) == 3 and parts[0] == "i" and parts[1].isdigit() and parts[2]:
            i = int(parts[1])
            if i < len(self.ops.intents):
                return "approve", parts[2], self.ops.intents[i]
        return None

    async def _close_card(self, cq: CallbackQuery, outcome: str) -> None:
        """The decided card loses its buttons and says what happened (best effort: a card older
        than Telegram lets a bot edit stays as it is)."""
        msg = cq.message
        if not isinstance(msg, Message):
            return
        try:
            await msg.edit_text(fmt.clip(f"{msg.text or ''}\n\n{outcome}"), reply_markup=None)
        except TelegramBadRequest:
            pass


def setup_admin(dp: Dispatcher, capture: TrainingCapture, *,
                file_limit: int = TELEGRAM_FILE_LIMIT) -> Router:
    """Add /stats, /process, /export and /review (and the review buttons) to the dispatcher."""
    router = TelegramAdmin(ops_for(capture), file_limit).router()
    dp.include_router(router)
    # First among the sub-routers: a catch-all message handler of the bot, included before us,
    # would otherwise take the commands (and a non-admin would get the bot's answer, not ours).
    dp.sub_routers.remove(router)
    dp.sub_routers.insert(0, router)
    return router


# ------------------------------------------------------------------------------------- WhatsApp

WHATSAPP_TEXT_LIMIT = 1600
TEXT_REVIEW_HELP = ("Reply /review approve, /review reject, /review skip, or /review intent NAME "
                    "to approve with another intent ({intents}).")


def _split(text: str) -> tuple[str, str] | None:
    t = text.strip()
    if not t.startswith("/"):
        return None
    head, _, rest = t[1:].partition(" ")
    name = head.split("@", 1)[0].lower()
    return (name, rest.strip()) if name in COMMANDS else None


async def handle_admin_text(capture: TrainingCapture, user_id: str, text: str) -> str | None:
    """The reply to an admin command sent as text (WhatsApp), or None when ``text`` is not one
    (the bot handles it as usual). Non-admins get a polite refusal."""
    cmd = _split(text or "")
    if cmd is None:
        return None
    name, args = cmd
    ops = ops_for(capture)
    try:
        uid = normalize_user_id(user_id)
    except ValueError:
        uid = ""
    if not uid or not ops.is_admin(uid):
        return fmt.refusal(capture.config.consent.default_lang)
    try:
        if name == "stats":
            return fmt.stats_text(await ops.stats())
        if name == "process":
            n = parse_process_args(args)
            if ops.busy_processing:
                return "A /process run is already under way; try again when it ends."
            return fmt.results_text(await ops.process(n), n)
        if name == "export":
            return await _text_export(ops, args)
        return await _text_review(ops, ops.reviewer(uid), args)
    except ArgError as e:
        return str(e)
    except Exception:
        log.exception("admin command /%s failed", name)
        return f"/{name} failed; the bot's log says why."


async def _text_export(ops: AdminOps, args: str) -> str:
    ea = parse_export_args(args)
    if ops.busy_exporting:
        return "An export is already under way; try again when it ends."
    res = await ops.export(ea)
    out = fmt.export_text(res, ea)
    files = res.get("files") or {}
    if res.get("success") and files:
        out += "\nFiles on the server:\n" + "\n".join(str(p) for p in files.values())
    return out


async def _text_review(ops: AdminOps, reviewer: str, args: str) -> str:
    words = args.split()
    sub = words[0].lower() if words else ""
    aliases = {"a": "approve", "approve": "approve", "r": "reject", "reject": "reject",
               "s": "skip", "skip": "skip", "i": "intent", "intent": "intent"}
    if not sub:
        return await _text_next(ops, reviewer, fresh=True)
    if sub not in aliases:
        raise ArgError("Usage: /review, then " + TEXT_REVIEW_HELP.format(intents=", ".join(ops.intents)))
    action = aliases[sub]
    intent = None
    if action == "intent":
        if len(words) != 2 or words[1] not in ops.intents:
            raise ArgError(f"Usage: /review intent NAME, NAME one of {', '.join(ops.intents)}.")
        action, intent = "approve", words[1]
    record_id = ops.shown(reviewer)
    if record_id is None:
        return "No record is open for you: send /review first."
    try:
        rec = await ops.decide(reviewer, record_id, action, intent)   # type: ignore[arg-type]
    except ClaimedElsewhere:
        return fmt.CLAIMED
    except ReviewError as e:
        return str(e)
    note = fmt.GONE if rec is None else fmt.DECIDED[action] + (f" as {intent}" if intent else "")
    return await _text_next(ops, reviewer, note=note)


async def _text_next(ops: AdminOps, reviewer: str, fresh: bool = False, note: str | None = None) -> str:
    head = f"{note}\n\n" if note else ""
    rec, waiting = await ops.next_record(reviewer, fresh=fresh)
    if rec is None:
        skipped = ops.skipped_count(reviewer)
        return head + (fmt.NOTHING if not skipped else (
            f"No other record waits for review; you skipped {skipped}. Send /review to see them again."))
    tail = "\n\n" + TEXT_REVIEW_HELP.format(intents=", ".join(ops.intents))
    # Twilio refuses WhatsApp bodies past 1600 characters: the record gives way, never the help
    return head + fmt.clip(fmt.record_text(rec, waiting), WHATSAPP_TEXT_LIMIT - len(head) - len(tail)) + tail


__all__ = ["CALLBACK_PREFIX", "TelegramAdmin", "handle_admin_text", "setup_admin"]
