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
    else:
        from middleware.journal import Journal

        erased["journal"] += Journal(rt.env.data_dir / "spill", 0).erase(pseudonym)
    return {"success": True, "user_id": user_id, "erased": erased, "exports": exports_naming(rt, pseudonym)}


def exports_naming(rt: Runtime, pseudonym: str) -> list[str]:
    """Export directories whose manifest lists the pseudonym (for erasure audits)."""
    import json as _json

    root = rt.env.data_dir / "finetune"
    out: list[str] = []
    if not root.exists():
        return out
    for manifest in sorted(root.glob("*/manifest.json")):
        try:
            data = _json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        users = data.get("users") or data.get("pseudonyms") or []
        if pseudonym in users:
            out.append(str(manifest.parent))
    return out
