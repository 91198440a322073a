"""The record schema: ids sort in the order they were made; the hash layout round-trips."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from middleware.record import PII_TYPES, Record, from_hash, new_record_id, to_hash

_text = st.text(max_size=80)


def test_ids_made_in_one_millisecond_keep_their_order():
    ids = [new_record_id(1_700_000_000_000) for _ in range(500)]
    assert ids == sorted(ids) and len(set(ids)) == 500
    assert new_record_id(1_699_999_999_999) < ids[0]       # an earlier ms still sorts first
    assert new_record_id(1_700_000_000_001) > ids[-1]
    later = [new_record_id(1_700_000_000_000) for _ in range(5)]   # that ms again, after others
    assert later == sorted(later) and later[0] > ids[-1]


@settings(max_examples=150, deadline=None)
@given(content=_text, reply=st.lists(_text, max_size=3), meta=st.dictionaries(_text, _text, max_size=3),
       pii=st.tuples(*[st.integers(0, 9) for _ in PII_TYPES]), status=st.sampled_from(
           ["pending", "approved", "needs_review", "rejected"]), conf=st.floats(0, 1),
       errors=st.lists(_text, max_size=3), reviewed=st.none() | _text)
def test_hash_round_trip(content, reply, meta, pii, status, conf, errors, reviewed):
    analysis = None if status == "pending" else {"intent": "other", "confidence": conf}
    if status == "pending":   # a pending record has no result part yet
        errors, reviewed = [], None
    rec = Record(id=new_record_id(), user_id="u_" + "ab" * 16, channel="whatsapp", content=content,
                 original_length=len(content), reply=reply, pii=dict(zip(PII_TYPES, pii, strict=True)),
                 metadata=meta, consent_version="es:0123", captured_at="2024-01-15T10:30:00Z",
                 status=status, analysis=analysis, qa_errors=errors, reviewed_by=reviewed)
    h = {k.encode(): v.encode() for k, v in to_hash(rec).items()}   # as redis-py returns it
    assert from_hash(rec.id, h) == rec
    assert from_hash(rec.id, {}) is None
