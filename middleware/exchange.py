"""One exchange: a user's message and the bot's replies sent while handling it.

The current exchange travels in a contextvar (never a global), so concurrent updates on one event
loop each collect their own replies, and tasks the handler spawns inherit it.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Exchange:
    channel: str
    pseudonym: str
    chat_key: str                   # the chat the user wrote in (raw; memory only, never stored)
    text: str                       # raw text: memory only until the writer anonymizes it
    known_names: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    consent_version: str | None = None
    captured_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    replies: list[str] = field(default_factory=list)
    sealed: bool = False
    spent: float = 0.0              # seconds tuneloop spent on this exchange so far (metrics)

    def add_reply(self, chat_key: str | int | None, text: str | None) -> None:
        """A message the bot sent while handling this one; other chats are not this exchange."""
        if self.sealed or not text or chat_key is None or str(chat_key) != self.chat_key:
            return
        self.replies.append(text)


current_exchange: ContextVar[Exchange | None] = ContextVar("tuneloop_exchange", default=None)
