"""The analysis object: its JSON schema (generated from config), the prompt, and validation.

The flat object is the seed's ``analysis``: intent, product, size, glaseo_percentage, incoterm,
destination, quantity, confidence. The schema is built from the configured catalog on every
start, so adding an intent or a product in config.yaml changes what the model may answer.

The schema keeps to the subset every structured-output engine accepts (OpenAI strict mode and
the grammar engines behind OpenAI-compatible servers): all properties required,
``additionalProperties: false``, nullable through type lists, no numeric range keywords (ranges
are stated in descriptions and enforced by :func:`validate_analysis`).
"""

from __future__ import annotations

import math
import re
from typing import Any

from middleware.config import AnalysisConfig

SCHEMA_NAME = "message_analysis"

ENTITY_FIELDS: tuple[str, ...] = ("product", "size", "glaseo_percentage", "incoterm", "destination", "quantity")
ANALYSIS_FIELDS: tuple[str, ...] = ("intent", *ENTITY_FIELDS, "confidence")


class InvalidAnalysis(ValueError):
    """The model's answer is not a valid analysis; the message names the field, never the text."""


def analysis_json_schema(cfg: AnalysisConfig) -> dict[str, Any]:
    """The strict JSON schema of one analysis, from the configured intents and catalog."""
    codes = [p.code for p in cfg.products]
    incoterms = list(cfg.incoterms)
    props: dict[str, Any] = {
        "intent": {
            "type": "string",
            "enum": cfg.intent_names,
            "description": "what the user asks for or does",
        },
        "product": {
            "type": ["string", "null"],
            "enum": [*codes, None],
            "description": "catalog code of the first product line; freezing styles are not products",
        },
        "size": {
            "type": ["string", "null"],
            "description": "count range of the first line as a/b (16/20) or Ux (U10)",
        },
        "glaseo_percentage": {
            "type": ["integer", "null"],
            "description": f"glaze percentage, an integer from 0 to {cfg.glaseo_max}",
        },
        "incoterm": {
            "type": ["string", "null"],
            "enum": [*incoterms, None],
            "description": "incoterm code",
        },
        "destination": {
            "type": ["string", "null"],
            "description": "port or city the goods go to, as written",
        },
        "quantity": {
            "type": ["string", "null"],
            "description": "the amount ordered, shipped or paid for, exactly as written",
        },
        "confidence": {
            "type": "number",
            "description": "probability from 0 to 1 that the intent is right",
        },
    }
    if not incoterms:
        # An enum of only null is legal but pointless; keep the field, always null.
        props["incoterm"] = {"type": "null", "description": "no incoterms are configured"}
    if not codes:
        props["product"] = {"type": "null", "description": "no products are configured"}
    return {
        "type": "object",
        "properties": props,
        "required": list(ANALYSIS_FIELDS),
        "additionalProperties": False,
    }


def response_format(cfg: AnalysisConfig) -> dict[str, Any]:
    """The ``response_format`` of a chat completion request (structured outputs, strict)."""
    return {
        "type": "json_schema",
        "json_schema": {"name": SCHEMA_NAME, "strict": True, "schema": analysis_json_schema(cfg)},
    }


def system_prompt(cfg: AnalysisConfig) -> str:
    """``cfg.system_prompt`` plus the labels the schema cannot say: intent meanings, aliases."""
    lines = [cfg.system_prompt.strip()] if cfg.system_prompt.strip() else []
    lines.append("Intents:")
    lines += [f"- {i.name}: {i.description}" if i.description else f"- {i.name}" for i in cfg.intents]
    if cfg.products:
        lines.append("Products (answer the code; written as):")
        lines += [f"- {p.code}: {', '.join(p.aliases) or p.code}" for p in cfg.products]
    if cfg.freezing_styles:
        lines.append(f"Freezing styles, never products: {', '.join(cfg.freezing_styles)}.")
    if cfg.incoterms:
        lines.append("Incoterms (answer the code; written as):")
        lines += [f"- {code}: {', '.join(aliases) or code}" for code, aliases in cfg.incoterms.items()]
    lines.append(
        f"glaseo_percentage is the glaze as an integer 0-{cfg.glaseo_max}; advances and discounts are "
        "not glaze. Placeholders in brackets such as [PHONE] replace personal data: never an entity. "
        "Use null for anything absent. confidence is your probability that the intent is right."
    )
    return "\n".join(lines)


def _norm_key(s: str) -> str:
    return re.sub(r"[\s.\-_]", "", s).casefold()


def validate_analysis(obj: Any, cfg: AnalysisConfig) -> dict[str, Any]:
    """Check and normalize one answer; raise :class:`InvalidAnalysis` naming the bad field.

    Strict mode already guarantees the shape with OpenAI, but an OpenAI-compatible server may
    ignore the schema: codes are mapped from their aliases, empty strings become null, the
    confidence is clipped to [0, 1], and anything else off-schema is refused.
    """
    if not isinstance(obj, dict):
        raise InvalidAnalysis("not an object")
    intent = obj.get("intent")
    if intent not in cfg.intent_names:
        raise InvalidAnalysis("intent not in the configured intents")

    out: dict[str, Any] = {"intent": intent}

    products = {_norm_key(p.code): p.code for p in cfg.products}
    for p in cfg.products:
        for alias in p.aliases:
            products.setdefault(_norm_key(alias), p.code)
    out["product"] = _coded(obj.get("product"), products, "product")

    incoterms = {_norm_key(c): c for c in cfg.incoterms}
    for code, aliases in cfg.incoterms.items():
        for alias in aliases:
            incoterms.setdefault(_norm_key(alias), code)
    out["incoterm"] = _coded(obj.get("incoterm"), incoterms, "incoterm")

    for key in ("size", "destination", "quantity"):
        v = obj.get(key)
        if v is not None and not isinstance(v, str):
            raise InvalidAnalysis(f"{key} is not a string")
        out[key] = (v.strip() or None) if isinstance(v, str) else None

    g = obj.get("glaseo_percentage")
    if g is not None:
        # bool is an int in Python; a float is accepted only when integral (20.0).
        if isinstance(g, bool) or not isinstance(g, int | float) or not math.isfinite(g) or g != int(g):
            raise InvalidAnalysis("glaseo_percentage is not an integer")
        g = int(g)
        if not 0 <= g <= cfg.glaseo_max:
            raise InvalidAnalysis(f"glaseo_percentage outside 0..{cfg.glaseo_max}")
    out["glaseo_percentage"] = g

    c = obj.get("confidence")
    if isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c):
        raise InvalidAnalysis("confidence is not a number")
    out["confidence"] = min(1.0, max(0.0, float(c)))

    return {k: out[k] for k in ANALYSIS_FIELDS}


def _coded(v: Any, table: dict[str, str], field: str) -> str | None:
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    if not isinstance(v, str):
        raise InvalidAnalysis(f"{field} is not a string")
    code = table.get(_norm_key(v))
    if code is None:
        raise InvalidAnalysis(f"{field} not in the configured catalog")
    return code
