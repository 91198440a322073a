"""Consent and erasure by user id, for the CLI and the REST API (the bot uses the capture core)."""

from __future__ import annotations

from typing import Any

from middleware.consent import ConsentTextBook

from .runtime import Runtime


def _texts(rt: Runtime) -> ConsentTextBook:
    return ConsentTextBook(rt.config.consent, ["OpenAI"] if rt.env.openai_api_key else [])


def consent_get(rt: Runtime, user_id: str) -> dict[str, Any]:
    rec = rt.store.consent(rt.resolve(user_id))
    return {"success": True, "user_id": user_id, "consent": rec.active,
            "consent_timestamp": (rec.ts / 1000) if rec.active and rec.ts else None}


def consent_set(rt: Runtime, user_id: str, consent: bool, mechanism: str,
                lang: str | None = None) -> dict[str, Any]:
    pseudonym = rt.resolve(user_id)
    if consent:
        text = _texts(rt).get(lang)
        at = rt.store.grant(pseudonym, text.version, text.lang, mechanism)
        return {"success": True, "user_id": user_id, "consent": True, "consent_timestamp": at / 1000}
    d, e, _ = rt.store.withdraw(pseudonym, mechanism)
    return {"success": True, "user_id": user_id, "consent": False, "consent_timestamp": None,
            "erased": {"store": d + e, "buffer": 0, "journal": 0}}


def forget(rt: Runtime, user_id: str, mechanism: str, buffer_erased: int = 0) -> dict[str, Any]:
    """Withdraw and erase every trace of the user's messages; other bot processes drop their
    buffers on the pub/sub message the withdrawal publishes."""
    pseudonym = rt.resolve(user_id)
    d, e, _ = rt.store.withdraw(pseudonym, mechanism, event="erase")
    return {"success": True, "user_id": user_id,
            "erased": {"store": d + e, "buffer": buffer_erased, "journal": 0}, "exports": []}
