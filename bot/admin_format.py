"""Plain-text renderings of the admin figures and records, shared by Telegram and WhatsApp.

Plain text (no Markdown/HTML parse mode): record content is user text, and escaping it for a
parse mode is one more way to get a message refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from middleware.record import Record

if TYPE_CHECKING:
    from .admin_ops import ExportArgs

REFUSAL = {
    "es": "Lo siento, este comando es solo para los administradores del bot.",
    "en": "Sorry, this command is only for the bot's administrators.",
}
TELEGRAM_TEXT_LIMIT = 4096


def refusal(lang: str | None) -> str:
    return REFUSAL["es"] if (lang or "").lower().startswith("es") else REFUSAL["en"]


def stats_text(s: dict[str, Any]) -> str:
    p, a, u = s["pipeline"], s["anonymization"], s["sessions"]
    return "\n".join([
        "📊 tuneloop stats",
        "",
        "Pipeline",
        f"• captured {p['captured']} (anonymized {p['anonymized']}, filtered out {p['filtered_out']})",
        f"• analyzed {p['analyzed']}: passed QA {p['qa_passed']}, failed QA {p['qa_failed']}, "
        f"needs review {p['needs_review']}",
        f"• exported {p['exported']} · discarded {p['discarded']} · erased {p['erased']} · "
        f"dropped {p['dropped']}",
        f"• now: queue {p['queue_size']} · approved {p['processed_size']} · "
        f"rejected {p['rejected_size']} · in review {p.get('review_size', 0)}",
        "",
        "Anonymization",
        f"• processed {a['total_processed']}: phones {a['phones_found']}, emails {a['emails_found']}, "
        f"addresses {a['addresses_found']}, ids {a.get('ids_found', 0)}, "
        f"accounts {a.get('accounts_found', 0)}, names {a.get('names_found', 0)}",
        "",
        "Sessions",
        f"• users {u['total']} · with consent {u['with_consent']} ({u['consent_rate']})",
    ])


def results_text(r: dict[str, int], asked: int) -> str:
    return (f"⚙️ Processed {r['processed']} (up to {asked}): passed QA {r['passed_qa']}, "
            f"failed QA {r['failed_qa']}, needs review {r['needs_review']}, errors {r['errors']}")


def export_text(res: dict[str, Any], args: ExportArgs) -> str:
    opts = f"{args.fmt}, {args.source}" + (
        f", min confidence {args.min_confidence:g}" if args.min_confidence is not None else "")
    if not res.get("success"):
        why = res.get("error") or "; ".join(res.get("warnings") or []) or "unknown reason"
        return f"📦 Export ({opts}) failed: {why}"
    lines = [f"📦 Export ({opts}): {res.get('train_examples', 0)} train + {res.get('valid_examples', 0)} "
             f"valid = {res.get('total', 0)} examples"]
    lines += [f"⚠️ {w}" for w in res.get("warnings") or []]
    return clip("\n".join(lines))


def _analysis_line(a: dict[str, Any] | None) -> str:
    if not a:
        return "Analysis: none (the analyzer gave up)"
    conf = a.get("confidence")
    head = f"intent {a.get('intent')}" + (f" (confidence {conf:.2f})" if isinstance(conf, int | float) else "")
    rest = [f"{k} {v}" for k, v in a.items() if k not in ("intent", "confidence") and v not in (None, "")]
    return "Analysis: " + ", ".join([head, *rest])


def record_text(rec: Record, waiting: int | None = None) -> str:
    """A needs_review record as a reviewer sees it: anonymized content and replies, the analysis
    and QA's reasons; never the user's pseudonym (a reviewer has no need for it)."""
    head = f"🔎 Review {rec.id}" + (f" ({waiting} waiting)" if waiting is not None else "")
    lines = [head, f"{rec.channel} · {rec.captured_at}", "", f"👤 {rec.content}"]
    lines += [f"🤖 {r}" for r in rec.reply]
    lines += ["", _analysis_line(rec.analysis), "QA: " + (", ".join(rec.qa_errors) or "no reasons recorded")]
    return clip("\n".join(lines))


def clip(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


DECIDED = {"approve": "✅ Approved", "reject": "❌ Rejected", "skip": "⏭ Skipped"}
GONE = "This record no longer waits for review (erased, or reviewed by someone else)."
CLAIMED = "Another admin is reviewing this record right now."
PRIVATE_ONLY = "Admin commands work only in a private chat with the bot."
NOTHING = "Nothing waits for review. 🎉"
