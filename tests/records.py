"""Seeding the record store the way capture does (the flush script), for worker/export tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from middleware.record import PII_TYPES, Record, capture_fields, iso_z, new_record_id
from middleware.store import Store

SAMPLES = [
    ("Necesito proforma HLSO 16/20 con 20% glaseo FOB Guayaquil", "¡Perfecto! Generando tu proforma para HLSO 16/20."),
    ("precio del HOSO 30/40 CFR Miami?", "El HOSO 30/40 CFR Miami está a USD 5.40/lb."),
    ("tienen PD 41/50 disponible para marzo?", "Sí, tenemos PD 41/50 para marzo."),
    ("cuándo zarpa el contenedor para Rotterdam?", "El buque zarpa el jueves."),
    ("ya hice la transferencia del anticipo", "Gracias, confirmamos el pago."),
    ("hola buenos días", "¡Hola! ¿En qué te ayudo?"),
    ("quote for EZ PEEL 26/30 10% glaze CIF Valencia", "Sending the quote for EZ PEEL 26/30."),
]


def seed(store: Store, users: list[str], n: int, texts: list[tuple[str, str]] | None = None,
         version: str = "es:test", start_ms: int | None = None, step_ms: int = 1000,
         grant: bool = True) -> list[str]:
    """Grant the users (unless told not to) and write n pending records round-robin; ids back."""
    if grant:
        for u in users:
            if not store.consent(u).active:
                store.grant(u, version, "es", "api")
    texts = texts or SAMPLES
    t0 = start_ms if start_ms is not None else int(time.time() * 1000) + 5
    ids: list[str] = []
    items: list[dict[str, Any]] = []
    for i in range(n):
        content, reply = texts[i % len(texts)]
        ms = t0 + i * step_ms
        rec = Record(id=new_record_id(ms), user_id=users[i % len(users)], channel="telegram",
                     content=f"{content}" if i < len(texts) else f"{content} #{i}",
                     original_length=len(content), reply=[reply],
                     pii=dict.fromkeys(PII_TYPES, 0), metadata={"state": "idle", "lang": "es"},
                     consent_version=version, captured_at=iso_z(ms / 1000), detector_version="test")
        ids.append(rec.id)
        items.append({"k": "r", "u": rec.user_id, "t": ms, "id": rec.id, "c": capture_fields(rec)["c"], "a": {}})
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    for i in range(0, len(items), 500):
        pipe = store.r.pipeline(transaction=True)
        store.flush(pipe, day, items[i:i + 500])
        pipe.execute()
    return ids
