"""Every QA check, each with a record that must fail it."""

from __future__ import annotations

import pytest

from middleware.anonymizer import Anonymizer
from middleware.config import load_config
from middleware.record import Record, iso_z
from tests.conftest import ROOT
from workers.qa import judge, normalized_hash

CFG = load_config(ROOT / "config.yaml")
ANON = Anonymizer.from_config(CFG)
GOOD = {"intent": "proforma", "product": "HLSO", "size": "16/20", "glaseo_percentage": 20, "incoterm": "FOB",
        "destination": "Guayaquil", "quantity": "2 contenedores", "confidence": 0.95}


def rec(content: str = "Necesito proforma HLSO 16/20 20% glaseo FOB Guayaquil", reply=("¡Perfecto!",)) -> Record:
    return Record(id="r_TEST", user_id="u_00", channel="telegram", content=content, original_length=len(content),
                  reply=list(reply), captured_at=iso_z(1_700_000_000))


def test_a_good_record_is_approved():
    v, dup = judge(rec(), GOOD, CFG, ANON)
    assert v.status == "approved" and v.errors == []
    assert dup.status == "rejected" and "duplicate" in dup.errors


@pytest.mark.parametrize("change,reason", [
    ({"intent": "buy_now"}, "schema:intent"),
    ({"confidence": 1.7}, "schema:confidence"),
    ({"confidence": "high"}, "schema:confidence"),
    ({"product": "LOBSTER"}, "catalog:product"),
    ({"size": "sixteen"}, "catalog:size"),
    ({"incoterm": "DAP"}, "catalog:incoterm"),
    ({"glaseo_percentage": 80}, "catalog:glaseo_percentage"),
    ({"glaseo_percentage": "20"}, "catalog:glaseo_percentage"),
    ({"destination": 5}, "schema:destination"),
])
def test_schema_and_catalog_failures_reject(change, reason):
    v, _ = judge(rec(), {**GOOD, **change}, CFG, ANON)
    assert v.status == "rejected" and reason in v.errors


@pytest.mark.parametrize("conf,status,reason", [(0.7, "needs_review", "low_confidence"),
                                                (0.3, "rejected", "confidence_below_threshold")])
def test_confidence_routing(conf, status, reason):
    v, _ = judge(rec(), {**GOOD, "confidence": conf}, CFG, ANON)
    assert v.status == status and reason in v.errors


def test_length_bounds():
    v, _ = judge(rec("k"), GOOD, CFG, ANON)
    assert v.status == "rejected" and "too_short" in v.errors
    v, _ = judge(rec("HLSO 16/20 " * 300), GOOD, CFG, ANON)
    assert v.status == "rejected" and "too_long" in v.errors


def test_pii_residue_is_masked_at_once_and_sent_to_review():
    v, _ = judge(rec("proforma HLSO 16/20, llámame al 0991234567", reply=("te escribo a ana.perez@example.com",)),
                 GOOD, CFG, ANON)
    assert v.status == "needs_review" and "pii_residue" in v.errors
    assert "0991234567" not in v.masked_content and "HLSO 16/20" in v.masked_content
    assert "ana.perez@example.com" not in v.masked_reply[0]


def test_near_duplicates_share_a_hash():
    assert normalized_hash("¿Precio HLSO 16/20?") == normalized_hash("precio   hlso 16/20")
    assert normalized_hash("precio HLSO 16/20") != normalized_hash("precio HLSO 21/25")
