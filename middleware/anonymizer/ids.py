"""ID: national and tax IDs, validated with python-stdnum where a checksum exists, and passports.

Formats with a distinctive shape and a checksum (ES DNI/NIE/CIF, MX RFC/CURP, US SSN, EC RUC,
CO NIT, BR CPF/CNPJ) count on their own. Bare digit strings never do: about one random 10-digit
number in ten passes the cédula check, so a cédula, a PT NIF or a PE DNI needs its cue word
(cédula, NIF, contribuinte, DNI, passport ...). The strict profile adds every checksum-valid run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from stdnum import luhn
from stdnum.br import cnpj, cpf
from stdnum.co import nit
from stdnum.ec import ci
from stdnum.ec import ruc as ec_ruc
from stdnum.es import cif, dni, nie
from stdnum.eu import vat
from stdnum.mx import curp, rfc
from stdnum.pe import ruc as pe_ruc
from stdnum.pt import nif as pt_nif
from stdnum.us import ssn

from .base import P_ID, P_STRICT, Context, Detector, Span

DEFAULT_CUES = (
    "cédula", "cedula", "céd", "ced", "cédula de identidad", "cédula de ciudadanía", "identificación",
    "identificacion", "identidad", "documento", "documento de identidad", "doc", "dni", "nie", "nif", "cif",
    "ruc", "rfc", "curp", "nit", "nss", "ssn", "social security", "social security number", "seguro social",
    "tax id", "taxpayer id", "tax number", "tin", "ein", "itin", "cpf", "cnpj", "contribuinte", "nipc",
    "pasaporte", "passport", "passaporte", "licencia", "driver's license", "driver license", "id number",
    "id no", "número de identificación", "rut", "cuit", "cuil", "dui", "cui", "fein", "employer id",
    "employer identification number", "vat", "vat number", "vat no", "vat id", "nº de contribuinte",
    "número de contribuinte", "soc sec", "social sec", "social security no", "c.i.", "c.i", "ci:", "c.c.:",
    "cédula de ciudadanía", "cedula de ciudadania", "cpf/cnpj", "rg", "registro geral", "national insurance",
    "ni number", "nino", "tax code", "codice fiscale", "steuernummer", "identity card", "id card",
    "pp", "pass", "pass no", "passport no", "psprt", "ss#", "ss #", "ss no", "bsn", "burgerservicenummer",
    "ust-idnr", "ust-id", "ustid", "btw", "btw-nummer", "tva", "nif-iva", "nif iva", "p.iva", "partita iva",
    "vat reg", "ruc persona natural", "cuit/cuil", "r.f.c.", "r.u.c.", "n.i.f.", "c.p.f.",
)
# Short upper-case cues only count in upper case ("CI", "CC", "ID", "RG").
_UPPER_CUES = ("C.I.", "CI", "C.C.", "CC", "ID", "RG", "D.N.I.", "N.I.F.", "R.U.C.")

# Between a cue and its number: "nro.", "No.", "N°", ":", "#", "es", "is", "number".
_CONNECTOR = re.compile(
    r"(?:[\s:#.\-()]|\bn[º°]|\b(?:nro|no|num|número|numero|number|es|is|é|e|de|del|mi|my|the|el|la|con|with|persona"
    r"|natural|jur[íi]dica"
    r"|da|do|empresa|company|compañía|compania|firma|our|nuestro|nuestra|peruan[oa]|ecuatorian[oa]|colombian[oa]"
    r"|mexican[oa]|español|española|brasileir[oa]|portugu[eê]s|ein|tin|personal|federal|fiscal)\b)*",
    re.I,
)
# The number itself: digits, maybe a letter prefix or check letter, maybe grouped.
_TOKEN = re.compile(r"[A-Za-zÑñ]{0,4}[\-\s]?\d[\dA-Za-z]*(?:[ .\-/][A-Za-z]{0,3}\d[\dA-Za-z]*){0,5}(?:[ \-][A-Za-z](?!\w))?")

_VAT_CC = "AT|BE|BG|CY|CZ|DE|DK|EE|EL|ES|FI|FR|GB|HR|HU|IE|IT|LT|LU|LV|MT|NL|PL|PT|RO|SE|SI|SK"
# Distinctive shapes with a checksum: they need no cue.
_SHAPE = re.compile(
    r"(?<![\w.\-])(?:"
    r"(?P<dni>\d{8}[ \-]?[A-Za-z])(?!\w)"
    r"|(?P<nie>[XYZxyz][ \-]?\d{7}[ \-]?[A-Za-z])(?!\w)"
    r"|(?P<cif>[ABCDEFGHJNPQRSUVW][ \-]?\d{7}[0-9A-J])(?!\w)"
    r"|(?P<curp>[A-Z]{4}\d{6}[HMX][A-Z]{5}[A-Z0-9]\d)(?!\w)"
    r"|(?P<rfc>[A-ZÑ&]{3,4}-?\d{6}-?[A-Z0-9]{3})(?!\w)"
    r"|(?P<ssn>\d{3}-\d{2}-\d{4})(?![\w\-])"
    r"|(?P<ruc>\d{10}-?\d{3})(?![\w\-])"
    # (in capitals, or in lower case only when glued: "de 12345678Z" is a DNI after "de")
    r"|(?P<nino>[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z][ ]?\d{2}[ ]?\d{2}[ ]?\d{2}[ ]?[A-D]"
    r"|(?i:[a-ceghj-pr-tw-z][a-ceghj-npr-tw-z]\d{6}[a-d]))(?!\w)"
    rf"|(?P<vat>(?:{_VAT_CC})[ \-]?[0-9A-Z]{{8,12}}|(?i:(?:{_VAT_CC})[0-9A-Z]{{8,12}}))(?!\w)"
    r"|(?P<cpf>\d{3}\.\d{3}\.\d{3}-\d{2})(?![\w\-])"
    r"|(?P<nit>\d{3}\.?\d{3}\.?\d{3}-\d)(?![\w\-])"
    r"|(?P<cnpj>\d{2}\.\d{3}\.\d{3}/\d{4}-\d{2})(?![\w\-])"
    r")"
)
def _nino(value: str) -> bool:
    """A UK National Insurance number's prefix rules (HMRC): no D F I Q U V, no O second, and
    never BG GB KN NK NT TN ZZ (python-stdnum has no gb.nino)."""
    v = "".join(value.split()).upper()
    return v[:2] not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ")


_CHECKS: dict[str, Callable[[str], bool]] = {
    "dni": dni.is_valid, "nie": nie.is_valid, "cif": cif.is_valid, "curp": curp.is_valid,
    "rfc": lambda v: rfc.is_valid(v.replace("-", "")), "ssn": ssn.is_valid,
    "ruc": lambda v: ec_ruc.is_valid(v.replace("-", "")), "cpf": cpf.is_valid, "nit": nit.is_valid,
    "cnpj": cnpj.is_valid, "nino": _nino, "vat": lambda v: vat.is_valid(v.replace(" ", "").replace("-", "")),
}


_DOC_CODE = re.compile(r"-(?:19|20)\d{2}-\d{1,6}(?![\d\-])")


def id_shape(value: str) -> str | None:
    """The kind of ID ``value`` is, when it is wholly one of the checksum shapes."""
    m = _SHAPE.fullmatch(value)
    if m and _CHECKS[m.lastgroup or ""](m.group()):
        return m.lastgroup
    return None


# strict profile: a bare run that passes any checksum
_BARE = re.compile(r"(?<![\w.\-])\d{8,19}(?![\w\-])")
_BARE_CHECKS: tuple[Callable[[str], bool], ...] = (ci.is_valid, pt_nif.is_valid, pe_ruc.is_valid, nit.is_valid)


def digit_count(s: str) -> int:
    return sum(map(str.isdigit, s))


class IdDetector(Detector):
    type = "ID"

    def __init__(self, cues: Iterable[str] = ()) -> None:
        self._cues = [*DEFAULT_CUES, *(c for c in cues if c and c.strip())]

    def keywords(self) -> dict[str, Iterable[str]]:
        return {"id.cue": self._cues, "id.upper": [c.lower() for c in _UPPER_CUES]}

    def find(self, ctx: Context) -> list[Span]:
        if ctx.max_digits < 5:
            return []  # every ID holds 5+ digits in a row
        text = ctx.text
        n = len(text)
        out: list[Span] = []
        seen: set[int] = set()
        for cs, ce, nd in ctx.long_chunks(5):
            # a shape needs a letter glued before (NIE, CIF, RFC, CURP) or after (DNI), or a
            # length and punctuation of its own (SSN, NIT, CPF, CNPJ, RUC)
            before = text[cs - 1] if cs else " "
            after = text[ce] if ce < n else " "
            if before in " -" and cs > 1:
                before = text[cs - 2]
            if after in " -" and ce + 1 < n:
                after = text[ce + 1]
            if not (before.isalpha() or after.isalpha() or nd == 13 or (
                    nd in (9, 10, 11, 13, 14) and ("-" in text[cs:ce] or "." in text[cs:ce]))):
                continue  # (SSN, NIT, CPF, CNPJ are written with their dashes and dots)
            for m in _SHAPE.finditer(text, max(0, cs - 4), min(n, ce + 10)):
                if m.start() not in seen and _CHECKS[m.lastgroup or ""](m.group()):
                    seen.add(m.start())
                    # a checksum outranks trade notation around it ("TEV-610813-HH2" is no code)
                    out.append(Span(m.start(), m.end(), "ID", priority=P_ID, atomic=True))
                    ctx.claimed.append(m.span())
        cues = ctx.hits.get("id.cue", [])
        upper = [(s, e) for s, e in ctx.hits.get("id.upper", ()) if text[s:e].isupper()]
        for _s, e in (cues + upper if upper else cues):
            if not ctx.number_near(e, 30, 5):
                continue  # no number right after the cue ("CIF Valencia" is an incoterm)
            if _DOC_CODE.match(text, e):
                continue  # "CI-2025-116": a commercial invoice's code, not a cédula
            c = _CONNECTOR.match(text, e)
            pos = c.end() if c else e
            if pos - e > 24:
                continue
            t = _TOKEN.match(text, pos)
            if not t:
                continue
            value = t.group().rstrip(" .-/")
            if digit_count(value) >= 5:
                out.append(Span(t.start(), t.start() + len(value), "ID", priority=P_ID, atomic=True))
                ctx.claimed.append((t.start(), t.start() + len(value)))
        if ctx.strict:
            for cs, ce, _ in ctx.long_chunks(8):
                for m in _BARE.finditer(text, cs, ce):
                    v = m.group()
                    if any(chk(v) for chk in _BARE_CHECKS) or (len(v) >= 12 and luhn.is_valid(v)):
                        out.append(Span(m.start(), m.end(), "ID", priority=P_STRICT + 1))
        return out
