"""The anonymizer's contract: interface, placeholders, and properties over generated data.

All personal data here is synthetic (Faker, phonenumbers' example numbers, IDs built with their
check digits); nothing comes from real people or from the dev corpus.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

import phonenumbers
import pytest
from faker import Faker
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from stdnum import luhn
from stdnum.co import nit
from stdnum.ec import ci, ruc
from stdnum.es import dni, nie
from stdnum.mx import curp, rfc

from middleware.anonymizer import DETECTOR_VERSION, Anonymizer, AnonymizeResult, Span, catalog_terms
from middleware.anonymizer.base import TYPES
from middleware.config import load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIG = load_config(ROOT / "config.yaml")
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def anon() -> Anonymizer:
    return Anonymizer.from_config(CONFIG)


ANON = Anonymizer.from_config(CONFIG)  # for hypothesis tests (no function-scoped fixtures there)

# Words around the generated values: trade talk and cue words, no names and no digits.
FILLER = ("hola precio camarón cola glaseo contenedor embarque please quote the for de la el con mi "
          "cel tel número cuenta cédula dirección saludos gracias att. Sr. call me at al whatsapp "
          "necesito favor confirmar price shipment , . - : ?").split()
filler = st.lists(st.sampled_from(FILLER), min_size=0, max_size=6).map(" ".join)


def digit_leak(value: str, out: str) -> bool:
    """The scorer's rule: six consecutive digits of the value inside one digit chunk of out."""
    d = "".join(c for c in value if c.isdigit())
    k = min(6, len(d))
    wins = {d[i:i + k] for i in range(len(d) - k + 1)}
    chunks = ["".join(c for c in m.group() if c.isdigit()) for m in re.finditer(r"\d(?:[ \t\-.()/]{0,2}\d)*", out)]
    return any(w in c for c in chunks for w in wins)


# -- interface ----------------------------------------------------------------------------------

def test_interface(anon: Anonymizer) -> None:
    res = anon.anonymize("mi cel 0991234567 y mi correo juan.perez@example.com", known_names=("Juan",))
    assert isinstance(res, AnonymizeResult)
    assert res.text == "mi cel [PHONE] y mi correo [EMAIL]"
    assert set(res.counts) == set(TYPES)
    assert res.counts["PHONE"] == 1 and res.counts["EMAIL"] == 1 and res.counts["NAME"] == 0
    spans = anon.detect("mi cel 0991234567")
    assert spans == [Span(7, 17, "PHONE", "0991234567")]
    assert (spans[0].start, spans[0].end, spans[0].type, spans[0].text) == (7, 17, "PHONE", "0991234567")
    assert isinstance(DETECTOR_VERSION, str) and DETECTOR_VERSION
    low = Anonymizer(CONFIG.anonymizer, catalog_terms=catalog_terms(CONFIG))
    assert low.anonymize("FOB Santos, cel 0991234567").text == "FOB Santos, cel [PHONE]"


def test_numbered_placeholders() -> None:
    cfg = CONFIG.anonymizer.model_copy(update={"numbered_placeholders": True})
    a = Anonymizer(cfg, catalog_terms=catalog_terms(CONFIG))
    res = a.anonymize("cel 0991234567, o 0987654321; repito 099 123 4567. ana@example.com")
    assert res.text == "cel [PHONE_1], o [PHONE_2]; repito [PHONE_1]. [EMAIL_1]"
    assert res.counts["PHONE"] == 3
    assert a.anonymize(res.text).text == res.text


def test_known_names_and_handles(anon: Anonymizer) -> None:
    res = anon.anonymize("gracias, aquí MARÍA confirma; escribe a @mariap_88 o a maria", known_names=("María", "Pérez"))
    assert "MARÍA" not in res.text and "maria" not in res.text.lower().replace("[name]", "")
    assert "@mariap_88" not in res.text
    assert res.counts["NAME"] == 3


def test_keep_values_never_masked(anon: Anonymizer) -> None:
    text = "Ventas: +593 4 260 0000 o 04-260-0000, ventas@mariscosdelpacifico.example; mi cel 0991234567"
    out = anon.anonymize(text).text
    assert "+593 4 260 0000" in out and "04-260-0000" in out
    assert "ventas@mariscosdelpacifico.example" in out
    assert "0991234567" not in out


def test_empty_and_placeholder_text(anon: Anonymizer) -> None:
    assert anon.anonymize("").text == ""
    for t in ("[PHONE]", "[PHONE_2] y [EMAIL_1]", "Saludos,\n[NAME]\nTel. [PHONE]"):
        assert anon.anonymize(t).text == t


def test_strict_profile(anon: Anonymizer) -> None:
    text = "ref interna 88812345 y lote 2024-118, talla 16/20, cliente 0912345675"
    default = {s.text for s in anon.detect(text)}
    strict = {s.text for s in anon.detect(text, profile="strict")}
    assert "88812345" not in default and "88812345" in strict  # unexplained 7+ digits
    assert not any("16/20" in s or "2024-118" in s for s in strict)  # the whitelist still holds
    assert any(s.startswith("0912345675") for s in strict)  # checksum-valid cédula, no cue
    assert anon.detect("escribe a x@y", profile="strict")[0].type == "EMAIL"
    with pytest.raises(ValueError):
        anon.detect("x", profile="lax")  # type: ignore[arg-type]


# -- properties -----------------------------------------------------------------------------------

@PROPS
@given(st.text())
def test_never_raises_and_idempotent(text: str) -> None:
    once = ANON.anonymize(text).text
    assert ANON.anonymize(once).text == once
    ANON.detect(text, profile="strict")


@PROPS
@given(st.text(alphabet=string.digits + " +-.()/:abcxyz@#\n", max_size=60))
def test_digit_soup_never_raises_and_idempotent(text: str) -> None:
    once = ANON.anonymize(text).text
    assert ANON.anonymize(once).text == once


WHITELISTED = sorted({t for t in catalog_terms(CONFIG) if len(t) > 1} | set(CONFIG.anonymizer.whitelist.terms)) + [
    "16/20", "15/01/2024", "USD 5.40/lb", "2.000 cajas", "proforma 2024-118", "PO 4521", "1x40' reefer",
    "10 x 2 kg", "U10", "-18°C", "12 de marzo", "booking 257618888", "factura 001-001-000044350",
]


@PROPS
@given(filler, st.sampled_from(WHITELISTED), filler)
def test_whitelisted_terms_untouched(before: str, term: str, after: str) -> None:
    text = f"{before} {term} {after}"
    out = ANON.anonymize(text).text
    assert re.search(r"(?<![\w])" + re.escape(term) + r"(?![\w])", out), (text, out)


def _phones() -> list[str]:
    """Valid numbers per configured region (example numbers and neighbours of them), as people
    write them."""
    out = []
    for region in CONFIG.anonymizer.regions:
        for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE):
            ex = phonenumbers.example_number_for_type(region, kind)
            if ex is None:
                continue
            for delta in range(0, 60, 7):
                n = phonenumbers.PhoneNumber(country_code=ex.country_code, national_number=ex.national_number + delta)
                if not phonenumbers.is_valid_number(n):
                    continue
                for fmt in (phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                            phonenumbers.PhoneNumberFormat.E164):
                    out.append(phonenumbers.format_number(n, fmt))
    return out


PHONES = _phones()


@PROPS
@given(filler, st.sampled_from(PHONES), filler)
def test_valid_phones_removed(before: str, phone: str, after: str) -> None:
    out = ANON.anonymize(f"{before} {phone} {after}").text
    assert not digit_leak(phone, out), out


def _with_check(base: str, valid: object) -> str:
    for d in "0123456789":
        if valid(base + d):  # type: ignore[operator]
            return base + d
    raise AssertionError(base)


@st.composite
def national_ids(draw: st.DrawFn) -> tuple[str, str]:
    """(cue, a valid ID) for the IDs with a checksum."""
    kind = draw(st.sampled_from(["cedula", "ruc", "ruc_company", "dni", "nie", "curp", "rfc", "nit"]))
    digits = st.text(alphabet=string.digits, min_size=1, max_size=1)

    def run(n: int) -> str:
        return "".join(draw(digits) for _ in range(n))

    prov = f"{draw(st.integers(1, 24)):02d}"
    if kind == "cedula":
        return "cédula", _with_check(prov + str(draw(st.integers(0, 5))) + run(6), ci.is_valid)
    if kind == "ruc":
        return "RUC", _with_check(prov + str(draw(st.integers(0, 5))) + run(6), ci.is_valid) + "001"
    if kind == "ruc_company":
        base = prov + "9" + run(6)
        for d in "0123456789":
            if ruc.is_valid(base + d + "001"):
                return "RUC", base + d + "001"
        return "RUC", _with_check(prov + "1" + run(6), ci.is_valid) + "001"
    if kind == "dni":
        n = run(8)
        return "DNI", n + dni.calc_check_digit(n)
    if kind == "nie":
        n = draw(st.sampled_from("XYZ")) + run(7)
        return "NIE", n + nie.calc_check_digit(n)
    letters = st.sampled_from("BCDFGHJKLMNPRSTVZ")
    date = f"{draw(st.integers(50, 99))}{draw(st.integers(1, 12)):02d}{draw(st.integers(1, 28)):02d}"
    if kind == "curp":
        base = (draw(letters) + "A" + draw(letters) + "A" + date + draw(st.sampled_from("HM"))
                + draw(st.sampled_from(["DF", "JC", "NL", "VZ"])) + draw(letters) + draw(letters) + draw(letters) + "0")
        value = base + curp.calc_check_digit(base + "0")
        assume(curp.is_valid(value))  # a few letter runs are banned words (BACA, KAKA ...)
        return "CURP", value
    if kind == "rfc":
        base = draw(letters) + "A" + draw(letters) + draw(letters) + date + draw(letters) + "1"
        return "RFC", base + rfc.calc_check_digit(base + "0")
    n = "9" + run(8)
    return "NIT", n + "-" + nit.calc_check_digit(n)


@PROPS
@given(filler, national_ids(), filler)
def test_valid_ids_removed(before: str, cued: tuple[str, str], after: str) -> None:
    cue, value = cued
    for text in (f"{before} {cue} {value} {after}", f"{before} {value} {after}" if cue not in ("cédula",) else ""):
        if not text:
            continue
        out = ANON.anonymize(text).text
        if cue in ("cédula", "NIT") and cue not in text:
            continue  # a bare cédula/NIT needs its cue (a bare 10-digit number may be anything)
        assert value not in out and not digit_leak(value, out), (text, out)


FAKE = Faker(["es_ES", "en_GB", "pt_PT", "de_DE", "en_US"])
Faker.seed(7)
IBANS = [FAKE.iban() for _ in range(40)]
CARDS = [Faker("en_US").credit_card_number(card_type=t) for t in ("visa16", "mastercard", "amex", "discover")
         for _ in range(10)]


@PROPS
@given(filler, st.sampled_from(IBANS), st.booleans(), filler)
def test_ibans_removed(before: str, iban: str, grouped: bool, after: str) -> None:
    value = " ".join(iban[i:i + 4] for i in range(0, len(iban), 4)) if grouped else iban
    out = ANON.anonymize(f"{before} {value} {after}").text
    assert not digit_leak(value, out), out


@PROPS
@given(filler, st.sampled_from(CARDS), st.sampled_from([" ", "-", ""]), filler)
def test_cards_removed(before: str, card: str, sep: str, after: str) -> None:
    assert luhn.is_valid(card)
    value = sep.join(card[i:i + 4] for i in range(0, len(card), 4))
    out = ANON.anonymize(f"{before} {value} {after}").text
    assert not digit_leak(card, out), out


local_part = st.text(alphabet=string.ascii_letters + string.digits + "._+-", min_size=1, max_size=20).filter(
    lambda s: s[0].isalnum() and s[-1].isalnum() and ".." not in s)
domain = st.lists(st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=2, max_size=10).filter(
    lambda s: s[0].isalnum() and s[-1].isalnum()), min_size=1, max_size=3).map(".".join)


@PROPS
@given(filler, local_part, domain, st.sampled_from(["com", "ec", "es", "COM", "co.uk", "travel"]), filler)
def test_emails_removed(before: str, local: str, dom: str, tld: str, after: str) -> None:
    email = f"{local}@{dom}.{tld}"
    out = ANON.anonymize(f"{before} {email} {after}").text
    assert email not in out and "[EMAIL]" in out, out


@PROPS
@given(st.lists(st.sampled_from(FILLER + ["0991234567", "ana@example.com", "Saludos,\nAna Ruiz", "16/20",
                                          "Av. 9 de Octubre 1234 y Boyacá", "IBAN ES9121000418450200051332", "x205",
                                          "Morada: Rua Augusta, 12", "Calle 3 N° 461", "dirección:", "entre", "y",
                                          "DNI 12345678Z", "wa.me/593991234567", "Sr. Paz", "+593 99 123 4567"]),
                max_size=12).map(" ".join))
def test_idempotent_on_pii_text(text: str) -> None:
    once = ANON.anonymize(text).text
    assert ANON.anonymize(once).text == once


def test_thread_safe(anon: Anonymizer) -> None:
    """One instance serves the writer thread and any other: results never mix."""
    from concurrent.futures import ThreadPoolExecutor

    fake = Faker("es_ES")
    fake.seed_instance(11)
    texts = [f"Saludos,\n{fake.name()}\ncel {fake.phone_number()} correo {fake.email()} HLSO 16/20 FOB Guayaquil"
             for _ in range(200)]
    expected = [anon.anonymize(t).text for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda t: anon.anonymize(t).text, texts * 4))
    assert got == expected * 4
