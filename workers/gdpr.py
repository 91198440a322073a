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
    # a withdrawal erases as /forget does: the spill journals no live process holds, too (the
    # API adds its own process's buffer and journal; live bot processes erase theirs on pub/sub)
    return {"success": True, "user_id": user_id, "consent": False, "consent_timestamp": None,
            "erased": {"store": d + e, "buffer": 0, "journal": _erase_journals(rt, pseudonym)}}


def forget(rt: Runtime, user_id: str, mechanism: str, local: dict[str, int] | None = None) -> dict[str, Any]:
    """Withdraw and erase every trace of the user's messages: the store (every status), this
    process's buffer (``local``, counted by the caller), the spill journals on this machine that
    no live process holds (live bot processes erase their own on the pub/sub message the
    withdrawal publishes), and the exports that name the user are listed for `export --rebuild`."""
    pseudonym = rt.resolve(user_id)
    d, e, _ = rt.store.withdraw(pseudonym, mechanism, event="erase")
    erased = {"store": d + e, "buffer": 0, "journal": 0}
    if local:
        erased["buffer"] += local.get("buffer", 0)
        erased["journal"] += local.get("journal", 0)
    # the journals left on disk by dead processes, whether or not the caller has a journal of its
    # own (one that already went through them finds nothing left: nothing is counted twice)
    erased["journal"] += _erase_journals(rt, pseudonym)
    return {"success": True, "user_id": user_id, "erased": erased, "exports": exports_naming(rt, pseudonym)}


def _erase_journals(rt: Runtime, pseudonym: str) -> int:
    """The user's lines in the spill journals on this machine that no live process holds."""
    from middleware.journal import Journal

    return Journal(rt.env.data_dir / "spill", 0).erase(pseudonym)


def exports_naming(rt: Runtime, pseudonym: str) -> list[str]:
    """Export directories whose manifest lists the pseudonym (for erasure audits): exactly the
    ones `tuneloop export --rebuild` rewrites. The manifest's key is ``pseudonyms``; the
    ``latest`` link and hidden staging dirs are not exports of their own."""
    from .export_rebuild import exports_holding

    return exports_holding(rt, pseudonym)
