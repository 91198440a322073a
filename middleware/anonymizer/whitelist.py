"""What no detector may touch: business terms, the catalog, trade notation, the operator's own
values and placeholders already written.

It fails closed: a broken entry (an empty term, an invalid regex, a regex that matches nothing
but the empty string or that would swallow personal data) is logged and skipped; it never turns
detection off.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable

import phonenumbers
from stdnum import luhn

from .account import iban_valid
from .base import PLACEHOLDER_RE, Context, trie_regex, union_ranges
from .ids import id_shape
from .phone import PhoneDetector

log = logging.getLogger("tuneloop.anonymizer")

_MONTH_WORDS = ("enero febrero marzo abril mayo junio julio agosto septiembre setiembre octubre noviembre diciembre "
                "janeiro fevereiro março maio junho julho setembro outubro novembro dezembro january february march "
                "april may june july august september october november december ene feb mar abr jun jul ago sep "
                "sept oct nov dic dez jan apr aug dec").split()
_MONTHS = trie_regex(_MONTH_WORDS) + r"\.?"
_NUM = r"\d+(?:[.,]\d+)*"
# a quantity or a price: at most six digits before the decimals, or grouped in thousands
_QTY = r"(?:\d{1,3}(?:[.,]\d{3})+(?:[.,]\d{1,2})?|\d{1,6}(?:[.,]\d{1,3})?)"
_UNITS = trie_regex((
    "kg kgs kilo kilos kilogramo kilogramos lb lbs libra libras pound pounds g gr grs oz ton tons tonelada "
    "toneladas tn tns tm mt t caja cajas case cases carton cartons cartones master masters mc bulto bultos "
    "saco sacos bag bags pallet pallets paleta paletas contenedor contenedores container containers cont conts "
    "fcl lcl reefer reefers pies ft pieza piezas pcs pieces unit units unidad unidades días dias day days semana "
    "semanas week weeks hora horas hour hours hr hrs mes meses month months año años year years % cm mm m3 cbm"
).split() + ["master carton", "master cartons", "master cases"])
_CURRENCY = trie_regex("us$ u$s usd $ € eur euro euros £ gbp mxn cop r$ brl s/ s/. pen dólares dolares dollar dollars".split())
_PER = r"(?:\s?(?:/|per|por|x|el|la|a)\s?(?:kg|kilo|lb|libra|caja|case|carton|ton|tm|mt|unit|unidad)\w*)?"

# Trade notation, dates, times, prices: never personal data, often digit runs that look like it.
# Each pattern starts at the first digit of a number (tried only there: see Whitelist.protected).
_BOX = r"(?:'|’|ft|pies)(?:\s?(?:hc|rf|rh|dv|st|nor|reefers?|high cube))*"
_DATES = (
    # dates first: 15/01/2024 is one date, not a size and a year
    r"(?<![\d/.\-])\d{1,2}(?:([/.\-])\d{1,2}\1(?:19|20)\d{2}|/\d{1,2}/\d{2})(?![\d/])"
    r"|(?<![\d/.\-])(?:19|20)\d{2}([/.\-])\d{1,2}\2\d{1,2}(?![\d/])"
    r"|\d{1,2}(?:[:h]\d{2}(?:\s?[ap]\.?\s?m\b\.?)?|\s?[ap]\.?m\b\.?)"  # 10:30, 17h00, 4pm
    r"|(?<![\d/.,])\d{1,3}\s?/\s?\d{1,3}(?![\d/]|[.,]\d)"  # 16/20
    r"|\d+(?:[.,]\d+)?\s?[°º]\s?[cf]?\b"  # 18°C
)
_AT_DIGIT = re.compile(
    _DATES
    # then one number (atomic: a failed tail does not retry shorter numbers) and what follows it
    + rf"|(?>{_QTY})(?![\d.,])(?:"
    rf"\s?[x×]\s?(?:\d{{2}}\s?{_BOX}|{_QTY}\s?{_UNITS}\b)"  # 1x40' reefer, 10 x 2 kg
    rf"|\s?{_BOX}"  # 40' HC
    rf"|(?:\s?(?:-|–|a|to)\s?{_QTY})?\s?{_UNITS}(?![\w])"  # 2.000 cajas, 20-22 kg, 15%
    rf"|\s?{_CURRENCY}(?![a-zß-ÿ]){_PER}"  # 5.40 USD/kg (not "612.345.678 pendiente": PEN)
    rf"|(?:st|nd|rd|th|º|°)?\s+(?:de\s+)?{_MONTHS}(?:,?\s+(?:de(?:l)?\s+)?(?:19|20)\d{{2}})?\b"  # 5 de mayo
    r")"
)
# Inside a chunk (after other digits) a quantity is not one: "099 123 4567 cajas" is a phone
# number before a word, not 4567 boxes. Only notation that glues digits itself counts there.
_INNER_DIGIT = re.compile(_DATES)
_DOC_NUMBER = re.compile(r"(?:[a-z]{1,5}[-#]?)?\d[\w/]*(?:[-. ]\w+)*$", re.I)
_MONTH_BEFORE = re.compile(rf"(?<![a-z]){_MONTHS},?\s+(?:de(?:l)?\s+|of\s+)?$")
# Ecuador's invoices (001-001-000012345) and customs declarations (028-2025-40-00590370)
_CUSTOMS_FORM = re.compile(r"\d{3}-\d{3}-\d{6,9}(?![\d\-])|\d{3}-(?:19|20)\d{2}-\d{2}-\d{8}(?![\d\-])")
_INNER_NEXT = frozenset("/:h.-°º ap")
_NO_TAIL = frozenset(",;!?)]\n")
_DIGITS = re.compile(r"\d+")
# Words between a document's name and its number: "lote de producción 2456", "guía aérea 123".
_DOC_FILLER = (r"(?:(?:(?:de|del|de la|da|do|of|the)\s+)?(?:producci[óo]n|production|exportaci[óo]n|export|"
               r"importaci[óo]n|import|env[íi]o|shipment|shipping|embarque|compra|purchase|venta|sales?|carga|"
               r"cargo|pago|payment|dep[óo]sito|deposit|code|c[óo]digo|interno|internal|a[ée]re[ao]|master|house|"
               r"sanitari[oa]|fitosanitari[oa]|zoosanitari[oa]|health|arancelaria|tracking|rastreo)[ \t]+){0,2}")
# After a keyword (found by the trie pass), what makes it a protected term.
_AFTER = {
    "doc": re.compile(r"\.?\s?" + _DOC_FILLER + r"(?:#|no\.?|n[º°]\.?|nro\.?|num\.?|n[úu]mero|number)?(?:\s(?:is|es))?\s?:?\s?[-#]?"
                      r"(?:[a-z]{1,5}[-#]?)?\d[\w/]*(?:[-.]\w+)*(?:(?<=\d{4}) \d{4}(?= |$|[.,;)]|\d{4}\b)){0,3}"
                      r"(?![ \t]?\d)"),  # not the head of a longer number; a courier's "6214 2116 0946" whole
    "month": re.compile(r"\.?\s+\d{1,2}(?:st|nd|rd|th)?(?:,?\s+(?:19|20)\d{2})?\b"),
    "weekday": re.compile(r"\s+\d{1,2}(?:st|nd|rd|th)?\b"),
    "currency": re.compile(rf"\s?{_NUM}(?:\s?(?:usd|eur))?{_PER}"),
    "grade": re.compile(r"\s?[-/]?\s?\d{1,2}\b"),
}
_SYMBOLS = ("$", "€", "£")
_CARD_LAYOUT = re.compile(r"^\D*(?:\d{4}[ \-]?){3}\d{1,7}$|^\D*\d{4}[ \-]?\d{6}[ \-]?\d{4,5}$")
_WORD_AFTER = tuple(("wl." + k, _AFTER[k]) for k in ("month", "weekday"))
_DIGIT_AFTER = tuple(("wl." + k, _AFTER[k if k != "doc_weak" else "doc"]) for k in ("doc", "doc_weak", "currency", "grade"))
KEYWORDS: dict[str, list[str]] = {
    "doc": ["proforma", "pro-forma", "pi", "p.i.", "po", "p.o.", "oc", "o/c", "orden", "orden de compra", "order",
            "pedido", "lote", "lot", "contrato", "contract", "invoice", "inv", "factura", "booking", "bkg", "bl",
            "b/l", "awb", "container", "contenedor", "cont", "seal", "sello", "precinto", "ref", "referencia",
            "reference", "cotización", "cotizacion", "quote", "tracking", "dae", "dua", "hs", "sku",
            # waybills, registrations, customs: numbers that identify a shipment or a payment
            "guía", "guia", "waybill", "air waybill", "airway bill", "voucher", "fda", "partida", "subpartida",
            "ncm", "hts", "hs code", "tariff", "arancel", "batch", "certificado", "certificate",
            "folio", "expediente", "pedimento", "manifiesto", "manifest", "imo", "voyage",
            "mbl", "hbl", "nota de crédito", "nota de credito", "credit note", "debit note",
            "guía de remisión", "guia de remision", "nota fiscal", "nfe", "reserva",
            "reservation", "release", "release number", "liberación", "liberacion", "refrendo", "certificate of origin",
            "certificado de origen", "certificado sanitario", "health certificate", "carta de crédito",
            "carta de credito", "letter of credit", "l/c", "lc", "ffr", "rastreio", "rastreo", "orden de compra",
            "purchase order", "sales order", "orden de venta", "contract no", "order no", "taric", "referência",
            "c/o no", "bl no", "b/l no", "awb no",
            # carriers' bill-of-lading prefixes: "MAEU 256530612"
            "maeu", "medu", "mscu", "hlcu", "cmdu", "oolu", "cosu", "oney", "eglv", "zimu", "hdmu", "ymlu", "sudu",
            "aplu", "whlc", "smlu", "exdo", "ckll", "sitc", "wanhai", "pcsl"],
    # Words a person's phone number may follow as well ("el chofer de DHL 0991234567", "mi contacto en
    # la planta 0991234567"): their number is kept only when it is not written the way people write
    # their own (a valid number with its 0, + or 00), and no phone cue stands just before.
    "doc_weak": ["dhl", "fedex", "ups", "tnt", "usps", "comprobante", "comprovante", "recibo", "receipt",
                 "transacción", "transaccion", "transaction", "operación", "operacion", "registro", "registration",
                 "reg", "planta", "plant", "establecimiento", "establishment", "approval", "aprobación",
                 "aprobacion", "cert", "ticket", "viaje", "vuelo", "flight", "nf", "sif", "despacho", "co", "hc"],
    "month": ("enero febrero marzo abril mayo junio julio agosto septiembre setiembre octubre noviembre diciembre "
              "janeiro fevereiro março maio junho julho setembro outubro novembro dezembro january february march "
              "april may june july august september october november december ene feb mar abr jun jul ago sep "
              "sept oct nov dic dez jan apr aug dec").split(),
    "weekday": ("lunes martes miércoles miercoles jueves viernes sábado sabado domingo segunda terça terca quarta "
                "quinta sexta monday tuesday wednesday thursday friday saturday sunday mon tue wed thu fri sat "
                "sun").split(),
    "currency": "usd eur euros euro mxn cop brl pen gbp dólares dolares dollars dollar".split(),
    "grade": ["u"],
}
# Currency symbols glue to the number ("$5.40/lb", "US$ 9,65/kg", "€11,50/kg").
_SYMBOL = re.compile(rf"(?:us|u|r)?[$€£](?:us)?\s?{_NUM}(?:\s?(?:usd|eur))?{_PER}")  # matched at a symbol
# An upper-case code glued before a number: INV-2025-0858, PI-2024-0813; ISO containers MSCU1234567.
_CODE_BEFORE = re.compile(r"(?<![A-Za-z0-9])([A-Z]{2,5})-$")
_CUE_CODES = frozenset("CC CI ID DNI NIE NIF RUC RFC SSN NIT TEL CEL IBAN CTA CURP NSS".split())
_CONTAINER = re.compile(r"(?<![A-Za-z0-9])[A-Z]{3}[UJZ][ \-]?\d{6}[ \-]?\d(?![A-Za-z0-9])")  # MSKU 123456 7
# Tariff codes written dotted: 0306.17, 0306.17.99 (a date of this shape is one too)
_HS_CODE = re.compile(r"(?<![\d.])\d{4}\.\d{2}\.\d{2}(?:\.\d{2})?(?![\d.]|,\d)")


def _fold(s: str) -> str:
    """Accents off: 'Panamá' is also typed 'Panama'."""
    return "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")


# A user pattern matching one of these wholly would hide personal data: refused.
_PROBES = ("0991234567", "+593 99 123 4567", "juan.perez@example.com", "Juan Pérez", "Av. 9 de Octubre 1234",
           "ES91 2100 0418 4502 0005 1332", "4111 1111 1111 1111")


class Whitelist:
    """Protected ranges of a message; built once from config, read by every thread."""

    def __init__(self, terms: Iterable[str] = (), patterns: Iterable[str] = (),
                 catalog_terms: Iterable[str] = (), keep_values: Iterable[str] = (),
                 regions: Iterable[str] = ("EC",)) -> None:
        self._terms: set[str] = set()
        for t in [*terms, *catalog_terms]:
            if not isinstance(t, str) or not t.strip():
                log.warning("anonymizer whitelist: empty term %r ignored", t)
                continue
            self._terms |= {t, _fold(t)}

        user: list[str] = []
        for p in patterns:
            if not isinstance(p, str) or not p.strip():
                log.warning("anonymizer whitelist: empty pattern %r ignored", p)
                continue
            try:
                rx = re.compile(p)
            except re.error as e:
                log.warning("anonymizer whitelist: invalid pattern %r ignored (%s)", p, e)
                continue
            if rx.fullmatch(""):
                log.warning("anonymizer whitelist: pattern %r matches the empty string, ignored", p)
                continue
            if any(rx.fullmatch(probe) for probe in _PROBES):
                log.warning("anonymizer whitelist: pattern %r would hide personal data, ignored", p)
                continue
            user.append(f"(?:{p})")
        self._user = re.compile("|".join(user)) if user else None

        # keep values: literal occurrences are protected; numbers also in any other grouping
        self._phones = PhoneDetector(regions)
        self._keep: set[str] = set()
        self._keep_lower: set[str] = set()
        self.keep_digits: set[str] = set()
        for v in keep_values:
            if not isinstance(v, str) or not v.strip():
                log.warning("anonymizer keep_values: empty value %r ignored", v)
                continue
            self._keep.add(v.strip())
            self._keep_lower.add(v.strip().lower())
            d = "".join(c for c in v if c.isdigit())
            if len(d) >= 6:
                self.keep_digits.add(d)
                self.keep_digits |= _phone_forms(v, regions)

    def keywords(self) -> dict[str, Iterable[str]]:
        """The words the shared lexer finds for the whitelist: terms, the operator's values, and
        the keywords that open a protected number (proforma 2024-118, mayo 5, USD 5.40, U10)."""
        return {"wl.term": self._terms,
                "wl.digit_term": [t for t in self._terms if any(c.isdigit() for c in t)],
                **{f"wl.{kind}": words for kind, words in KEYWORDS.items()}}

    def keep_ranges(self, ctx: Context) -> list[tuple[int, int]]:
        """Where the operator's own values stand as written (any case), whole."""
        if not self._keep_lower:
            return []
        lower = ctx.lower
        n = len(lower)
        out = []
        for v in self._keep_lower:
            i = lower.find(v)
            while i >= 0:
                e = i + len(v)
                if (i == 0 or not (lower[i - 1].isalnum() or lower[i - 1] in ".+-")) and (
                        e == n or not (lower[e].isalnum() or lower[e] == "-")):
                    out.append((i, e))
                i = lower.find(v, i + 1)
        return out

    def is_keep_number(self, value: str) -> bool:
        """True if ``value``'s digits are one of the operator's own numbers in any grouping."""
        if not self.keep_digits:
            return False
        return "".join(filter(str.isdigit, value)) in self.keep_digits

    def protected(self, ctx: Context, keep: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Sorted, merged ranges of ``ctx.text`` no detector may touch (both layers)."""
        return union_ranges(self.protected_words(ctx, keep) + self.protected_digits(ctx, keep))

    def _common(self, ctx: Context, keep: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """What both layers hold: the operator's values, placeholders, the config's patterns."""
        text = ctx.text
        ranges = list(keep)
        if "[" in text:
            ranges.extend(m.span() for m in PLACEHOLDER_RE.finditer(text))
        if self._user is not None:
            ranges.extend(m.span() for m in self._user.finditer(text) if m.end() > m.start())
        return ranges

    def protected_words(self, ctx: Context, keep: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Catalog and config terms, month and weekday dates: what a name or a street could touch."""
        lower = ctx.lower
        ranges = self._common(ctx, keep)
        n = len(lower)
        hits = ctx.hits
        for s, e in hits.get("wl.term", ()):
            # a term followed by a digit, '_', '@' or '.x'/'-x' is part of something longer
            c = lower[e] if e < n else " "
            if not (c.isalnum() or c in "_@" or (c in ".-" and e + 1 < n and lower[e + 1].isalnum())):
                ranges.append((s, e))
        if ctx.has_digit:
            for tag, after in _WORD_AFTER:
                for s, e in hits.get(tag, ()):
                    cm = after.match(lower, e)
                    if cm:
                        ranges.append((s, cm.end()))
        return union_ranges(ranges) if ranges else ranges

    def protected_digits(self, ctx: Context, keep: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Trade notation: dates, sizes, prices, quantities, document numbers, and the terms that
        hold digits: what a number could touch."""
        text, lower = ctx.text, ctx.lower
        ranges = self._common(ctx, keep)
        if not ctx.has_digit:
            return union_ranges(ranges) if ranges else ranges
        hits = ctx.hits
        ranges.extend(hits.get("wl.digit_term", ()))
        for tag, after in _DIGIT_AFTER:
            for s, e in hits.get(tag, ()):
                c = after.match(lower, e)
                if not c:
                    continue
                if tag == "wl.doc_weak" and self._personal_phone(ctx, s, _doc_number(c.group())):
                    continue
                if not (tag in ("wl.doc", "wl.doc_weak") and sum(map(str.isdigit, c.group())) >= 6
                        and _proven_pii(_doc_number(c.group()))):
                    ranges.append((s, c.end()))
        if ctx.max_digits >= 5:
            self._digit_led(ctx, ranges)
        for sym in _SYMBOLS:
            i = text.find(sym)
            while i >= 0:
                c = _SYMBOL.match(lower, max(0, i - 2))
                if c is None or c.end() <= i:
                    c = _SYMBOL.match(lower, i)
                if c:
                    ranges.append(c.span())
                i = text.find(sym, i + 1)
        return union_ranges(ranges) if ranges else ranges

    def _personal_phone(self, ctx: Context, cue_start: int, number: str) -> bool:
        """After an ambiguous document word: a number written as people write their own phone
        (valid, with its 0, + or 00), or one a phone cue stands just before."""
        if ctx.hits.get("phone.cue") and any(cue_start - 25 <= e <= cue_start for _, e in ctx.hits["phone.cue"]):
            return True
        digits = "".join(ch for ch in number if ch.isdigit() or ch == "+")
        return digits[:1] in ("0", "+") and self._phones.valid_number(digits)

    @staticmethod
    def _digit_led(ctx: Context, ranges: list[tuple[int, int]]) -> None:
        """Digit-led notation, looked at only where it could pass for personal data: in a chunk of
        5+ digits ("15/01/2024", "20.000 libras", "16/20 21/25"). Short ones ("16/20",
        "$5.40") no detector takes."""
        text, lower = ctx.text, ctx.lower
        for cs, ce, _ in ctx.long_chunks(5):
            if cs > 1 and text[cs - 1] == "-" and text[cs - 2].isupper():
                code = _CODE_BEFORE.search(text, max(0, cs - 7), cs)
                if code and code.group(1) not in _CUE_CODES:
                    ranges.append((code.start(), ce))
                    continue
            if cs >= 4 and (text[cs - 1] in "UJZ" or (cs >= 5 and text[cs - 1] in " -" and text[cs - 2] in "UJZ")):
                head = cs - 4 if text[cs - 1] in "UJZ" else cs - 5
                box = _CONTAINER.match(text, head)
                if box and box.end() == ce:
                    ranges.append((head, ce))
                    continue
            if text[cs + 4:cs + 5] == ".":
                hs = _HS_CODE.match(text, cs)
                if hs:
                    ranges.append(hs.span())
                    continue
            if lower.startswith(("19", "20"), cs) and _MONTH_BEFORE.search(lower, max(0, cs - 24), cs):
                ranges.append((cs, cs + 4))   # the year of "8 de febrero del 2025"
            if _CUSTOMS_FORM.match(text, cs):
                ranges.append(_CUSTOMS_FORM.match(text, cs).span())   # type: ignore[union-attr]
                continue
            last = -1
            n = len(lower)
            for d in _DIGITS.finditer(lower, cs, ce):
                s, e = d.span()
                if s < last or (s > 0 and (lower[s - 1].isalpha() or lower[s - 1] == "+" or (
                        s > 1 and lower[s - 1] in ".," and lower[s - 2].isdigit()))):
                    continue  # inside a match, glued to a word (Z7981620G), or decimals
                if s == cs:
                    # what follows the number must be able to start a tail: not the end, not a
                    # comma, not another group of digits ("099 123 4567" is no quantity)
                    nxt = lower[e:e + 1]
                    if not nxt or nxt in _NO_TAIL or (nxt == " " and lower[e + 1:e + 2].isdigit()):
                        continue
                    c = _AT_DIGIT.match(lower, s)
                else:
                    # inside a chunk only dates, times, sizes, temperatures: 1-4 digits then / : h . - °
                    if e - s > 4 or e >= n or lower[e] not in _INNER_NEXT or (
                            lower[e] == " " and lower[e + 1:e + 2] not in ("a", "p")):
                        continue
                    c = _INNER_DIGIT.match(lower, s)
                if c:
                    ranges.append((s, c.end()))
                    last = c.end()


def notation_at(lower: str, pos: int) -> int | None:
    """The end of the trade notation (a date, a size, a quantity, a price ...) starting at the
    number at ``pos`` of lower-cased text, if it is one."""
    while pos > 0 and lower[pos - 1].isdigit():
        pos -= 1
    m = _AT_DIGIT.match(lower, pos)
    return m.end() if m else None


def _doc_number(after: str) -> str:
    """The number a document keyword's match ends with (its filler words and "no." off)."""
    m = _DOC_NUMBER.search(after)
    return m.group() if m else after


def _proven_pii(code: str) -> bool:
    """A 'document number' that proves to be an IBAN, a payment card or a checksum-valid ID is
    not one: checksums outrank the word before them ("contenedor ES91 2100 ...")."""
    compact = "".join(c for c in code if c.isalnum())
    digits = sum(c.isdigit() for c in compact)
    if len(compact) >= 15 and iban_valid(compact.upper()):
        return True
    if id_shape(code.split()[-1].lstrip("#:-").upper() if code.split() else "") is not None:
        return True
    return compact.isdigit() and 13 <= digits <= 19 and luhn.is_valid(compact) and bool(_CARD_LAYOUT.search(code))


def _phone_forms(value: str, regions: Iterable[str]) -> set[str]:
    """Digit strings the same phone number is written as: E.164, with and without the trunk
    prefix, with 00."""
    out: set[str] = set()
    for region in (None, *regions):
        try:
            n = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_possible_number(n):
            continue
        nsn = phonenumbers.national_significant_number(n)
        cc = str(n.country_code)
        nat = "".join(c for c in phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.NATIONAL) if c.isdigit())
        out |= {nsn, nat, cc + nsn, "00" + cc + nsn}
        break
    return out
