"""ADDRESS: street addresses in Spanish, Portuguese and English.

Shapes: a street word (Av., Calle, C/, Cra., Rua, Cdla., Mz., Km ... vía a ...) with a name and a
house number, an intersection ("Av. Shyris N40-284 y Naciones Unidas") or a unit; the
Ecuadorian "X 1234 entre Y y Z" and "X 1234 y Y" without a street word; US/UK "1234 Main St
Apt 5, City, ST 12345"; P.O. boxes. After an address cue ("dirección:", "address:", "ship samples
to", "queda en") the clause that follows is taken whole when it holds a number, which covers
layouts no shape lists. Trailers (floor, unit, postcode, city) are masked with the street.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .base import P_ADDRESS, PLACEHOLDER_RE, Context, Detector, Span
from .whitelist import notation_at

_UP = "A-ZÁÉÍÓÚÑÜÇÀÂÊÔÃÕ"
_CAP = rf"[{_UP}][^\W\d_]*(?:['’\-][^\W\d_]+)*"
_ABBR = rf"[{_UP}][^\W\d_]{{0,4}}\.(?:[{_UP}]\.)*"  # "Av.", "Gral.", "J.M."
_PART = r"(?:de|del|la|las|los|da|das|do|dos|el|of|the)"
# a street-name word; "No. 12", "N° 12" open the house number instead
_WORD = rf"(?![Nn](?:[º°o]|ro)?\.?[ \t]*\d)(?:{_ABBR}|{_CAP}|\d{{1,2}}[ \t]+de[ \t]+{_CAP})"
_NAME = rf"(?:{_PART}[ \t]+){{0,2}}{_WORD}(?:[ \t]+(?:{_PART}[ \t]+){{0,2}}{_WORD}){{0,4}}"
# a cross street may carry its own street word: "entre Aguirre y calle Tercera"
_XNAME = rf"(?:(?i:calle|avenida|av\.|avda\.|pasaje|callej[óo]n)[ \t]+)?{_NAME}"
_HOUSE = (r"(?:(?:No\.?|N[º°o]\.?|#|nro\.?|n\.?º|num\.?|núm\.?)[ \t]?)?"
          r"(?:(?:N|S|E|W|Oe?)\d{1,3}[A-Z]?-\d{1,4}[A-Z]?"
          r"|\d{1,5}[A-Za-z]?[ºª°]?(?:[ \t](?:Sur|Norte|Este|Oeste|Bis))?(?:[ \t]?[-#][ \t]?\d{1,4}[A-Za-z]?)*"
          r"(?:[ \t]+\d{1,5}(?=[ \t]*(?:[,.;)\n]|$)))?|[Ss]/[Nn])(?!\w)")  # "Ulloa 281 495": an inner number
_CROSS = rf"[ \t]*(?<=[ \t])(?:y|e|esq(?:uina)?\.?|and|&|entre)[ \t]+{_XNAME}(?:[ \t]+y[ \t]+{_XNAME})?"
_UNIT = (r"(?i:piso|p\.|planta|nave|parcela|of\.?|oficina|ofic\.?|dpto\.?|depto\.?|departamento|dep\.?|apto?\.?|apartamento"
         r"|apartment|suite|ste\.?|unit|local|bodega|galp[óo]n|casa|villa|solar|lote|mz\.?|manzana|bloque|blq\.?"
         r"|edificio|edif\.?|torre|int\.?|interior|portal|puerta|pta\.?|esc\.?|escalera|fl\.?|floor|room|rm\.?"
         r"|bldg\.?|sala|andar|conj\.?|cj\.?|lt\.?)(?![^\W\d_])")  # whole words: "of" is not "oficina"
_FLOOR = r"\d{1,2}[ \t]?[º°ª](?:[ \t]?(?:[A-Z]\b|\d{1,2}[ \t]?[ºª]|izq(?:da)?\b\.?|izda\b\.?|dcha?\b\.?|dch\b\.?|dr\b\.?|esq\b\.?|centro\b|ctro\b\.?))?"
_POST = r"(?:\d{4}-\d{3}|\d{5}-\d{3}|\d{5}(?:-\d{4})?|C\.?P\.?[ \t]?\d{4,5}|[A-Z]{1,2}\d[A-Z\d]?[ \t]\d[A-Z]{2})"
_CITY = rf"{_CAP}(?:[ \t\-](?:{_PART}[ \t]+)?(?![A-Z]{{1,2}}\d){_CAP}){{0,2}}"   # (not a UK postcode's head)
# after the house number: a unit, a floor, a second number ("Calle 3 N° 461"), a postcode, a
# city, a US state and ZIP ("[ ,]" before each: people type " , Depto. 4" too)
_SEP = r"[ \t]*,?[ \t]*"
_TRAILER = (rf"(?:{_SEP}{_UNIT}[ \t]*#?[ \t]*[\w\-]{{1,6}}\b\.?|{_SEP}{_FLOOR}"
            rf"|[ \t]*(?:N[º°o]\.?|No\.|nro\.?|#)[ \t]?\d{{1,5}}[A-Za-z]?(?:[ \t]?-[ \t]?\d{{1,4}}[A-Za-z]?)?\b|{_SEP}{_POST}(?:[ \t]+{_CITY})?"
            rf"|{_SEP}[A-Z]{{2}}[ \t]+\d{{5}}(?:-\d{{4}})?\b|[ \t]*,[ \t]*(?P<city>{_CITY}))")

# Street words; those also common as plain words count only capitalized ("Vía", "Sector", "Plaza").
KW_WORDS = ("av avda ave avenida avenue calle c/ cl cll carrera cra kra kr cr tr ak ac diag transv trans blv bv alam "
            "jr jirón jiron polígono poligono pol p.i. "
            "transversal tv diagonal dg rua travessa "
            "trav alameda praça praca estrada rodovia paseo pº pza carretera ctra calzada callejón callejon pasaje "
            "psje bulevar boulevard blvd cdla ciudadela urb urbanización urbanizacion lotización lotizacion mz "
            "autopista prolongación prolongacion col edif").split()
KW_CAP_WORDS = ("via vía sector barrio colonia conjunto edificio plaza largo ronda camino privada cerrada andador "
                "manzana r ladeira vereda rodovia estrada quadra viela circuito retorno periférico periferico "
                "calzada cañada pasaje glorieta paseo").split() + ["parque industrial", "parque empresarial",
                                                                    "zona franca", "zona industrial"]
_KW = (r"(?:Av(?:da|e|enida)?\.?|Avenue|Calle|C/|Cl\.?|Cll\.?|Carrera|Cra\.?|Kra\.?|Kr\.?|Cr\.?|Tr\.|Jr\.|Jir[óo]n|Ak\.?|Ac\.?|Diag\.|Transv?\.|Blvd?\.|Bv\.|Alam\.|Transversal|Tv\.|Diagonal"
       r"|R\.|Ladeira|Vereda|Quadra|Viela|Circuito|Retorno|Perif[ée]rico|Cañada|Glorieta"
       r"|Dg\.|Rua|Travessa|Trav\.|Alameda|Pra[çc]a|Largo|Estrada|Rodovia|Paseo|Pº|Plaza|Pza\.?|Camino|Carretera"
       r"|Ctra\.?|Ronda|Calzada|Callej[óo]n|Pasaje|Psje\.?|Bulevar|Boulevard|Blvd\.?|Cdla\.?|Ciudadela|Urb\.?"
       r"|Urbanizaci[óo]n|Lotizaci[óo]n|Mz\.?|Manzana|Autopista|Prolongaci[óo]n|Privada|Cerrada|Andador"
       r"|Via|Vía|Sector|Barrio|Colonia|Col\.|Conjunto|Edificio|Edif\.|Pol[íi]gono|Pol\.|P\.I\.|Parque Industrial"
       r"|Parque Empresarial|Zona Franca|Zona Industrial|Distrito Industrial)")
_KW_RE = re.compile(
    rf"(?i:{_KW})(?=[ \t\d])[ \t]*(?P<name>{_NAME})?,?[ \t]*(?P<num>{_HOUSE})?(?P<cross>{_CROSS})?"
    rf"(?P<tr>(?:{_TRAILER}){{0,5}})"
)
US_SUFFIX_WORDS = ("st street ave av avenue rd road blvd boulevard dr drive ln lane way ct court pl place pkwy parkway "
                   "hwy highway ter terrace cir circle trl trail sq square loop pike plaza row alley crescent close "
                   "gardens grove mews wharf broadway").split()
_US_SUFFIX = (r"(?:St|Street|Ave|Av|Avenue|Rd|Road|Blvd|Boulevard|Dr|Drive|Ln|Lane|Way|Ct|Court|Pl|Place|Pkwy"
              r"|Parkway|Hwy|Highway|Ter|Terrace|Cir|Circle|Trl|Trail|Sq|Square|Loop|Pike|Plaza|Row|Alley|Crescent"
              r"|Close|Gardens|Grove|Mews|Wharf|Broadway|ST|STREET|AVE|AVENUE|RD|ROAD|BLVD|DR|DRIVE|LN|LANE|WAY|CT|PL"
              r"|SQ|CLOSE|ROW)")
_US_RE = re.compile(
    rf"(?<![\w.,/\-])\d{{1,6}}[A-Z]?[ \t]+(?:(?:[NS][EW]|[NSEW])\.?[ \t]+)?(?:{_CAP}|\d{{1,3}}(?:st|nd|rd|th))(?:[ \t]+{_CAP}){{0,3}}?"
    rf"[ \t]+{_US_SUFFIX}\b\.?(?:[ \t]+(?:NW|NE|SW|SE|N|S|E|W)\b)?(?P<tr>(?:{_TRAILER}){{0,5}})"
)
# The same typed in lower case ("av. shyris s47-299 y coruña", "7553 brickell st, fl 37, miami"):
# any words, but then a house number (and for the US shape a trailer) is required.
_LWORD = r"[^\W\d_]+(?:['’\-][^\W\d_]+)*\.?"
_KW_LC_RE = re.compile(
    rf"(?:{_KW})(?=[ \t])[ \t]*(?P<name>{_LWORD}(?:[ \t]+{_LWORD}){{0,3}}?)[ \t]*(?P<num>{_HOUSE})"
    rf"(?P<cross>[ \t]+(?:y|e|esq(?:uina)?\.?|and|&|entre)[ \t]+{_LWORD}(?:[ \t]+{_LWORD}){{0,2}}?(?=[ \t]*(?:[,.;!?\n]|$)))?"
    rf"(?P<tr>(?:{_TRAILER}){{0,5}})", re.I)
# (only the unmistakable suffixes: "the fastest way", "the loop" are no streets)
_US_LC_SUFFIX = r"(?:st|street|ave|avenue|rd|road|blvd|boulevard|dr|drive|ln|lane|hwy|highway|pkwy|parkway)"
_US_LC_RE = re.compile(
    rf"(?<![\w.,/\-])\d{{1,6}}[a-z]?[ \t]+(?:(?:[ns][ew]|[nsew])\.?[ \t]+)?(?:{_LWORD}|\d{{1,3}}(?:st|nd|rd|th))"
    rf"(?:[ \t]+{_LWORD}){{0,2}}?[ \t]+{_US_LC_SUFFIX}\b\.?(?:[ \t]+(?:nw|ne|sw|se|n|s|e|w)\b)?(?P<tr>(?:{_TRAILER}){{1,5}})",
    re.I)
# Ecuador: "9 de Octubre 1530 entre Escobedo y Córdova", "Boyacá 1234 y Junín"
_ENTRE_HINT = re.compile(r"[0-9][a-z]?[ \t]+(?:entre|y|esq)\b")  # on lower-cased text: a house number, then ...
_ENTRE_RE = re.compile(rf"(?<![\w])(?P<name>{_NAME})[ \t]+{_HOUSE}[ \t]+(?:(?P<entre>entre)[ \t]+{_XNAME}[ \t]+y|y|esq(?:uina)?\.?)"
                       rf"[ \t]+{_XNAME}(?P<tr>(?:{_TRAILER}){{0,5}})")
# "... en Primera 1802 y Pichincha": a place preposition before a bare intersection
_LOCATIVE = re.compile(r"(?:\b(?:en|at|in|a|to|de|na|em)|:)[ \t]*$", re.I)
_KM_RE = re.compile(
    rf"(?i:km|kil[óo]metro)\.?[ \t]?\d{{1,3}}(?:[.,]\d{{1,2}}|[ \t]\d/\d)?[ \t]+(?i:(?:de[ \t]+la[ \t]+)?(?:v[íi]a|carretera|autopista|ruta|estrada|rodovia))"
    rf"[ \t]+(?:(?i:a|al|a[ \t]+la)[ \t]+)?{_NAME}(?:[\-–]{_NAME})?(?P<tr>(?:{_TRAILER}){{0,5}})"
)
# Dutch and German streets: "Blaak 81, 3022 BG Rotterdam", "Schillerstraße 99, 20457 Hamburg"
# (a street suffix, or the Dutch postcode's letters, stand in for the street word)
_EU_SUFFIX = r"(?:stra(?:ß|ss)e|str\.|weg|laan|straat|gracht|plein|platz|gasse|allee|dijk|kade|damm|ufer|markt|steeg|singel)"
_EU_RE = re.compile(
    rf"(?<![\w\-])(?:(?i:[^\W\d_]*{_EU_SUFFIX})|{_CAP}(?:[ \t]{_CAP}){{0,2}}(?=[ \t]\d{{1,4}}[a-z]?,?[ \t]+\d{{4}}[ \t]?[A-Z]{{2}}\b))"
    rf"[ \t]+\d{{1,4}}[a-zA-Z]?(?:-\d{{1,3}})?(?:[ \t]*,?[ \t]*(?:\d{{4}}[ \t]?[A-Z]{{2}}|(?:[A-Za-z]-)?\d{{5}})"
    rf"(?:[ \t]+{_CITY})?)?")
_NL_AFTER = re.compile(r"[ \t]?[A-Z]{2}(?![\w])")
_EU_SUFFIXES = ("straße", "strasse", "str.", "weg", "laan", "straat", "gracht", "plein", "platz", "gasse", "allee",
                "dijk", "kade", "damm", "ufer", "markt", "steeg", "singel")
BOX_WORDS = ["po box", "p.o. box", "p. o. box", "pobox", "casilla", "apartado", "caixa postal"]
_BOX_RE = re.compile(r"(?i:P\.?[ \t]?O\.?[ \t]?Box|Casilla(?:[ \t]+postal)?|Apartado(?:[ \t]+(?:postal|de[ \t]+correos))?|Caixa[ \t]+Postal)[ \t]*#?[ \t]*\d{1,7}")

DEFAULT_CUES = (
    "dirección", "direccion", "dirección fiscal", "dirección de entrega", "dirección de envío", "domicilio",
    "address", "billing address", "shipping address", "delivery address", "mailing address", "endereço",
    "endereco", "morada", "ubicación", "ubicacion",
)
# Weaker: the clause after them must also hold a number outside the whitelist.
WEAK_CUES = (
    "queda en", "quedan en", "ubicado en", "ubicada en", "ubicados en", "estamos en", "oficina en", "bodega en",
    "retiren en", "recoger en", "entregar en", "enviar a", "envíen a", "envien a", "mandar a", "manden a",
    "located at", "located in", "office is at", "ship to", "ship samples to", "send to", "deliver to",
    "delivery to", "pick up at", "samples to", "muestras a", "enviar las muestras a", "fica na", "fica em",
    "documentos en", "recojan en", "retirar en", "is at", "are at", "warehouse at", "office at", "based at",
    "vivo en", "vivimos en", "nos encuentras en", "nos encuentran en", "dirigirse a",
    "our office", "our warehouse", "office address", "warehouse address", "la oficina es en", "la oficina está en", "la bodega está en", "bodega está en", "bill to", "sold to",
    "send it to", "send them to", "mail to", "deliver it to", "despachar a", "despachen a", "entregar a",
    "enviar la muestra a", "enviar as amostras para", "enviar para", "entregar no", "entregar na",
    "ship it to", "ship them to", "consignee address", "our address", "nuestra dirección", "mi dirección",
)
_ABBREV_DOT = re.compile(r"(?:\b(?:Av|Ave|Avda|St|Of|No|Nº|Apt|Apto|Dpto|Depto|Dep|Cra|Cr|Cl|Cll|Mz|Km|Ste|Edif|Ed|Urb|Jr"
                         r"|Cdla|Blvd|Blv|Bv|Rd|Dr|Sr|Sra|Ing|Lic|Int|dcha|izq|izda|Esq|Pta|Col|Ctra|Psje|Pje|Pza|Tv|Tr"
                         r"|Dg|Diag|Transv|Kr|Ak|Ac|Trav|Alam|Prol|Gral|Lt|Sl|Fracc|Ciud)|\b[A-Z])\.$", re.I)
_CLAUSE_END = re.compile(r"\n|[!?;]|\s[-–—]\s|\.(?=\s|$)|,\s*(?=[a-záéíóúñ]+\b)")
_ADDR_WORDS = frozenset(
    "piso oficina of ofic dpto depto apto apt suite ste unit local bodega casa villa solar lote mz manzana bloque "
    "edificio edif torre int interior entre y esquina esq km vía via sector barrio urb floor fl room sala andar "
    "de del la los las da do dos".split()
)


# Words that open an address only before a colon ("Office: Blaak 81 ..."; "Oficina 2048" is a unit).
COLON_CUES = ("office", "oficina", "warehouse", "bodega", "almacén", "almacen", "escritório", "escritorio", "armazém",
              "armazem", "plant", "planta", "fábrica", "fabrica", "factory", "sede", "headquarters", "hq", "home",
              "casa", "residencia", "residência", "entrega", "delivery", "envío", "envio", "shipping")
_CUE_TAIL = re.compile(r"(?:[ \t]+(?:es|is)\b|[ \t]*[:\-])?[ \t]*:?[ \t]*", re.I)
_DIGIT = re.compile(r"\d")


_TAGS = frozenset(("addr.kw", "addr.kwcap", "addr.us", "addr.km", "addr.box", "addr.strong", "addr.weak",
                   "addr.colon"))


def _has_number(lower: str, start: int, end: int) -> bool:
    """A digit in ``[start, end)`` that is not trade notation ("1x40' reefer", "16/20")."""
    m = _DIGIT.search(lower, start, end)
    while m:
        n = notation_at(lower, m.start())
        if n is None:
            return True
        m = _DIGIT.search(lower, max(n, m.start() + 1), end)
    return False


def _outermost(spans: list[Span]) -> list[Span]:
    """Drop spans inside another one: several shapes often find one address."""
    if len(spans) < 2:
        return spans
    out: list[Span] = []
    for sp in sorted(spans, key=lambda x: (x.start, -x.end)):
        if out and sp.end <= out[-1].end:
            continue
        out.append(sp)
    return out


class AddressDetector(Detector):
    type = "ADDRESS"

    def __init__(self, cues: Iterable[str] = (), common_words: frozenset[str] = frozenset()) -> None:
        self._strong = [*DEFAULT_CUES, *(c for c in cues if c and c.strip())]
        self._common = common_words

    def keywords(self) -> dict[str, Iterable[str]]:
        return {"addr.kw": KW_WORDS, "addr.kwcap": KW_CAP_WORDS, "addr.us": US_SUFFIX_WORDS, "addr.km": ["km", "kilómetro", "kilometro"],
                "addr.box": BOX_WORDS, "addr.strong": self._strong, "addr.weak": WEAK_CUES, "addr.colon": COLON_CUES}

    def find(self, ctx: Context) -> list[Span]:
        hits = ctx.hits
        lower = ctx.lower
        eu = self._eu_windows(ctx)
        if not (hits.keys() & _TAGS) and not eu and not (
                ctx.has_digit and (" y " in lower or "entre" in lower or " esq" in lower)):
            return []  # no street word, no cue, no intersection
        text = ctx.text
        n = len(text)
        out: list[Span] = []
        kw = hits.get("addr.kw", [])
        kwcap = [h for h in hits.get("addr.kwcap", ()) if text[h[0]].isupper()]
        for s, _ in (kw + kwcap if kwcap else kw):
            m = _KW_RE.match(text, s)
            if not m:
                continue
            name, num, cross, tr = m.group("name", "num", "cross", "tr")
            if num and notation_at(lower, m.start("num")) is not None:
                num = None   # "av 16/20": a size, "calle ... 20 cajas": a quantity, not a house number
            # a street word needs a house number ("s/n" too), a cross street or a unit after it
            if num or (cross and name):  # "Av. Amazonas y Colón", "Praça da Sé, s/n"
                out.append(self._span(m))
            elif name and ctx.has_digit and tr and tr.strip(" ,"):
                out.append(self._span(m))
            elif ctx.has_digit and not text[m.end("name") if name else m.end():][:1].isupper():
                lc = _KW_LC_RE.match(text, s)
                if lc and not ctx.overlaps(lc.start("name"), lc.end("name")) and notation_at(
                        lower, lc.start("num")) is None:
                    out.append(self._span(lc))
        if not ctx.has_digit:
            # every other shape holds a number; only "Dirección: Campo de Melo" may not
            return _outermost(out + self._clauses(ctx, "addr.strong", out, weak=False))
        last = -1
        lc_scanned = 0
        for s, _ in hits.get("addr.us", ()):
            if s > last and _DIGIT.search(text, max(0, s - 50), s):
                for m in _US_RE.finditer(text, max(0, s - 50, last), min(n, s + 90)):
                    out.append(self._span(m))
                    last = m.end()
                if s > last and s >= lc_scanned and text[s].islower():
                    # (windows never overlap: each stretch of text is tried once)
                    a, b = max(0, s - 50, last, lc_scanned), min(n, s + 90)
                    for m in _US_LC_RE.finditer(text, a, b):
                        # a unit, a house or ZIP number in the trailer: "200 cases by the fastest way, please" is none
                        if not ctx.overlaps(m.start(), m.start() + 1) and _DIGIT.search(m.group("tr")) \
                                and notation_at(lower, m.start()) is None:
                            out.append(self._span(m))
                            last = m.end()
                    lc_scanned = b
        for a, b in eu:   # (a scan of the whole text would cost a long message a third of a millisecond)
            out.extend(self._span(m) for m in _EU_RE.finditer(text, a, b) if not ctx.overlaps(m.start(), m.start() + 1))
        for s, _ in hits.get("addr.km", ()):
            m = _KM_RE.match(text, s)
            if m:
                out.append(self._span(m))
        for s, _ in hits.get("addr.box", ()):
            m = _BOX_RE.match(text, s)
            if m:
                out.append(Span(m.start(), m.end(), "ADDRESS", priority=P_ADDRESS))
        if " y " in lower or "entre" in lower or " esq" in lower:
            out.extend(self._intersections(ctx))
        out.extend(self._clauses(ctx, "addr.strong", out, weak=False))
        out.extend(self._clauses(ctx, "addr.weak", out, weak=True))
        out.extend(self._clauses(ctx, "addr.colon", out, weak=True))
        return _outermost(out)

    @staticmethod
    def _eu_windows(ctx: Context) -> list[tuple[int, int]]:
        """Where a Dutch or German street may stand: around a digit chunk with a Dutch postcode
        after it or a street suffix before it (the postcode makes the chunk)."""
        text, lower = ctx.text, ctx.lower
        out: list[tuple[int, int]] = []
        for cs, ce, _ in ctx.chunks:
            before = lower[max(0, cs - 30):cs]   # "Schillerstraße 99, 20457", "lindenallee 199a, d-20457"
            if _NL_AFTER.match(text, ce) or any(x in before for x in _EU_SUFFIXES):
                a = max(0, cs - 60)
                while a > 0 and not text[a - 1].isspace():
                    a -= 1   # from a word's start
                b = min(len(text), ce + 40)
                if out and a <= out[-1][1]:
                    out[-1] = (out[-1][0], b)   # overlapping windows merge: each stretch scanned once
                else:
                    out.append((a, b))
        return out

    def _intersections(self, ctx: Context) -> list[Span]:
        """Ecuador's "9 de Octubre 1530 entre Escobedo y Córdova" and "Boyacá 1234 y Junín",
        found from the house number back to the street name."""
        text = ctx.text
        out: list[Span] = []
        done = -1
        for h in _ENTRE_HINT.finditer(ctx.lower):
            ds = h.start()
            while ds > 0 and text[ds - 1].isdigit():
                ds -= 1
            if ds <= done or (ds > 0 and text[ds - 1] in "/.,-") or ctx.overlaps(ds, h.end()):
                continue  # a size ("16/20 y U10"), a decimal, a protected number
            words = text[max(0, ds - 60):ds].split()
            if not words or not words[-1][:1].isupper():
                continue
            # the street name is one to five words: try its possible starts, longest first
            pos = ds
            starts = []
            for w in reversed(words[-6:]):
                pos = text.rfind(w, 0, pos)
                starts.append(pos)
            for st in reversed(starts):
                m = _ENTRE_RE.match(text, st)
                if not m or m.end("name") > ds:
                    continue
                # without a street word, a catalog term inside ("HLSO 1000 y PD") means it is
                # no address, and a bare "Word 12 y Word" needs "entre", a place preposition
                # or a proper noun
                if ctx.overlaps(m.start(), m.end("name") + 1):
                    continue
                if m.group("entre") or _LOCATIVE.search(text, max(0, m.start() - 8), m.start()) \
                        or not self._is_common(m.group("name")):
                    out.append(self._span(m))
                    done = m.end()
                    break
        return out

    def _is_common(self, name: str) -> bool:
        first = name.split()[0].lower().rstrip(".")
        return first in self._common and len(name.split()) == 1

    def _span(self, m: re.Match[str]) -> Span:
        end = m.end()
        city = m.groupdict().get("city")
        if city and m.end("city") == end and all(w.lower() in self._common for w in city.split()):
            end = m.start("city")  # a trailing ", Gracias" is no city
        return Span(m.start(), end, "ADDRESS", priority=P_ADDRESS)

    def _clauses(self, ctx: Context, tag: str, found: list[Span], weak: bool) -> list[Span]:
        """After an address cue, the clause that follows, when it holds a number."""
        text = ctx.text
        out: list[Span] = []
        for cs, ce in ctx.hits.get(tag, ()):
            if tag == "addr.colon" and not text.startswith(":", ce) and not text.startswith(" :", ce):
                continue
            if any(f.start <= ce + 3 and ce < f.end for f in found):
                continue  # a street shape right after the cue already has it
            if ctx.lower.endswith("mail ", 0, cs):
                continue  # "email address: ..." is no street address
            tail = _CUE_TAIL.match(text, ce)
            start = tail.end() if tail else ce
            end = self._clause_end(text, start)
            if end - start < 4 or text.startswith("[", start) and PLACEHOLDER_RE.match(text, start):
                continue  # (an address masked before: what a previous pass left stays)
            first = text[start]
            if weak and not (first.isdigit() or first.isupper()):
                continue
            pieces = ctx.free_pieces(start, end)
            if not any(_has_number(ctx.lower, a, b) for a, b in pieces):
                # no number: only "Dirección: Campo de Melo" (a colon, then a proper name)
                said = text[ce:start]
                if weak or not (":" in said or said.strip().lower() in ("es", "is")) or not first.isupper() \
                        or len(text[start:end].split()) < 2:
                    continue
            out.append(Span(start, end, "ADDRESS", priority=P_ADDRESS - 1))
        return out

    @staticmethod
    def _clause_end(text: str, start: int) -> int:
        limit = min(len(text), start + 110)
        pos = start
        while pos < limit:
            m = _CLAUSE_END.search(text, pos, limit)
            if not m:
                return limit
            if m.group().startswith("."):
                if _ABBREV_DOT.search(text, max(start, m.start() - 6), m.start() + 1):
                    pos = m.end()
                    continue
            elif m.group().startswith(","):
                w = re.match(r"[a-záéíóúñ]+", text[m.end():])
                if w and w.group() in _ADDR_WORDS:
                    pos = m.end()
                    continue
            return m.start()
        return limit
