"""NAME: personal names after cues, in signatures, the sender's own profile names, @handles.

A name is read token by token after a cue ("me llamo", "soy", "att.", "Sr.", "my name is",
"Saludos,") in any case, against first-name and surname lists (``data/*.txt``, made once from
Faker's es/en/pt locales by ``data/make_names.py``) and a list of common words. A word that is
both ("Rosa", "Paz", "Price", "Blanco") is a name only where the cue is strong or the word is
capitalized inside a name already begun; catalog places and business terms are protected before
any of this runs, so "Santos" the port stays. One exception, narrow on purpose: a catalog place
that is also a surname, right after a first name or initial inside a name ("José Valencia",
"J. Lima"), is the person's surname and goes with the name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

from .base import P_NAME, Context, Detector, Span, keyword_form
from .whitelist import KEYWORDS

DATA = Path(__file__).resolve().parent / "data"

PARTICLES = frozenset("de del la las los da das do dos van von der di du le y e st san".split())

STRONG, MEDIUM = 2, 1

# cue -> strength; a strong cue accepts any word that is not only a common word.
DEFAULT_CUES: dict[str, int] = {
    "me llamo": STRONG, "mi nombre es": STRONG, "my name is": STRONG, "my name's": STRONG, "meu nome é": STRONG,
    "me chamo": STRONG, "a nombre de": STRONG, "en nombre de": STRONG, "on behalf of": STRONG,
    "de parte de": STRONG, "att": STRONG, "atte": STRONG, "attn": STRONG, "atentamente": STRONG,
    "cordialmente": STRONG, "saludos": STRONG, "saludos cordiales": STRONG, "un saludo": STRONG,
    "regards": STRONG, "best regards": STRONG, "kind regards": STRONG, "warm regards": STRONG,
    "sincerely": STRONG, "best": STRONG, "cheers": STRONG, "atenciosamente": STRONG, "cumprimentos": STRONG,
    "abraço": STRONG, "abrazo": STRONG, "firma:": STRONG, "firmado": STRONG, "nombre:": STRONG, "name:": STRONG,
    "full name:": STRONG, "nombre completo:": STRONG, "a la atención de": STRONG, "atención:": STRONG,
    "soy": MEDIUM, "habla": MEDIUM, "le saluda": MEDIUM, "les saluda": MEDIUM, "te saluda": MEDIUM,
    "le escribe": MEDIUM, "les escribe": MEDIUM, "te escribe": MEDIUM, "i am": MEDIUM, "i'm": MEDIUM,
    "this is": MEDIUM, "sou": MEDIUM, "aquí": MEDIUM, "consignee": MEDIUM, "consignatario": MEDIUM,
    "consignatario es": MEDIUM, "the consignee is": MEDIUM, "beneficiario": MEDIUM, "beneficiary": MEDIUM,
    "titular": MEDIUM, "contact": MEDIUM, "contacto": MEDIUM, "contactar a": MEDIUM, "contactar al": MEDIUM,
    "spoke with": MEDIUM, "talked to": MEDIUM, "hablé con": MEDIUM, "hable con": MEDIUM, "falei com": MEDIUM,
    "hola": MEDIUM, "hello": MEDIUM, "hi": MEDIUM, "hey": MEDIUM, "dear": MEDIUM, "estimado": MEDIUM,
    "estimada": MEDIUM, "querido": MEDIUM, "querida": MEDIUM, "olá": MEDIUM, "oi": MEDIUM, "prezado": MEDIUM,
    "prezada": MEDIUM, "gracias": MEDIUM, "thanks": MEDIUM, "thank you": MEDIUM, "obrigado": MEDIUM,
    "buenos días": MEDIUM, "buenas tardes": MEDIUM, "buenas": MEDIUM, "good morning": MEDIUM,
    "bendiciones": MEDIUM, "from": MEDIUM,
    # someone to ask for, who signs, who is in charge
    "preguntar por": STRONG, "pregunte por": STRONG, "pregunten por": STRONG, "ask for": MEDIUM,
    "falar com": MEDIUM, "fale com": MEDIUM, "hablar con": MEDIUM, "speak to": MEDIUM, "speak with": MEDIUM,
    "talk to": MEDIUM, "quem fala é": STRONG, "quem fala e": STRONG, "aqui é": MEDIUM, "em nome de": STRONG,
    "a nome de": STRONG, "contact person": STRONG, "persona de contacto": STRONG, "pessoa de contato": STRONG,
    "my partner": MEDIUM, "my colleague": MEDIUM, "mi socio": MEDIUM, "mi socia": MEDIUM, "mi colega": MEDIUM,
    "mi compañero": MEDIUM, "mi compañera": MEDIUM, "meu sócio": MEDIUM, "minha sócia": MEDIUM,
    "el responsable es": STRONG, "la responsable es": STRONG, "o responsável é": STRONG, "a responsável é": STRONG,
    "responsable:": STRONG, "responsável:": STRONG, "aos cuidados de": STRONG, "a cargo de": MEDIUM,
    "c/o": STRONG, "care of": STRONG, "signed by": STRONG, "firmado por": STRONG, "assinado por": STRONG,
    "nome:": STRONG, "nome completo:": STRONG, "contacto:": STRONG, "contato:": STRONG, "contact:": STRONG,
    # titles written out, in any case ("licenciada Castillo", "señora Pérez")
    "señor": MEDIUM, "señora": MEDIUM, "señorita": MEDIUM, "senhor": MEDIUM, "senhora": MEDIUM,
    "licenciado": MEDIUM, "licenciada": MEDIUM, "ingeniero": MEDIUM, "ingeniera": MEDIUM, "doctor": MEDIUM,
    "doctora": MEDIUM, "doutor": MEDIUM, "doutora": MEDIUM, "mister": MEDIUM,
    # more greetings and closings
    "bom dia": MEDIUM, "boa tarde": MEDIUM, "boa noite": MEDIUM, "qué tal": MEDIUM, "que tal": MEDIUM,
    "buen día": MEDIUM, "buen dia": MEDIUM, "e aí": MEDIUM, "eaí": MEDIUM, "buenas noches": MEDIUM, "good afternoon": MEDIUM,
    "good evening": MEDIUM, "dear mr": STRONG, "dear ms": STRONG, "slds": STRONG, "sldos": STRONG, "abs": STRONG, "abraços": STRONG,
    "abrazos": STRONG, "un abrazo": STRONG, "muchas gracias": STRONG, "mil gracias": STRONG,
    "many thanks": STRONG, "best wishes": STRONG, "all the best": STRONG, "rgds": STRONG, "br": STRONG,
    "cdlt": STRONG, "cordiais saudações": STRONG, "saudações": STRONG, "grato": STRONG, "grata": STRONG,
    "quedo atento": STRONG, "quedo atenta": STRONG, "quedamos atentos": STRONG, "fico no aguardo": STRONG,
    "aguardo retorno": STRONG, "thanx": MEDIUM, "thnx": MEDIUM, "thx": MEDIUM, "tks": MEDIUM, "grax": MEDIUM,
    "valeu": MEDIUM, "obrigada": MEDIUM,
    # forwarded messages name their author
    "forwarded from": STRONG, "forwarded message from": STRONG, "reenviado de": STRONG,
    "mensaje reenviado de": STRONG, "encaminhada de": STRONG, "encaminhado de": STRONG,
    "mensagem encaminhada de": STRONG,
    # third parties the message is about
    "o motorista": STRONG, "a motorista": STRONG, "el chofer": STRONG, "la chofer": STRONG, "el conductor": MEDIUM,
    "the driver": MEDIUM, "notify party": STRONG, "notify": MEDIUM, "titular de la cuenta": STRONG,
    "titular da conta": STRONG, "account holder": STRONG, "account name": STRONG, "beneficiary name": STRONG,
    "nombre del titular": STRONG, "nombre del beneficiario": STRONG, "cc'ing": STRONG, "copying": MEDIUM,
    "facturar a": STRONG, "facturen a": STRONG, "facturar a nombre de": STRONG, "facturen a nombre de": STRONG,
    "factura a nombre de": STRONG, "facturar en nombre de": STRONG, "faturar em nome de": STRONG, "faturar para": STRONG, "invoice to": MEDIUM, "pick up by": STRONG,
    "picked up by": STRONG, "retira": MEDIUM, "aqui é o": STRONG, "aqui é a": STRONG, "aquí es": MEDIUM,
    "it's": MEDIUM, "mi jefe": MEDIUM, "mi jefa": MEDIUM, "my boss": MEDIUM, "meu chefe": MEDIUM, "a/c": STRONG,
    "attention of": STRONG, "spoke to": MEDIUM, "i spoke with": MEDIUM, "please ask for": STRONG,
    "notify:": STRONG, "el chofer es": STRONG, "the driver is": STRONG, "o motorista é": STRONG, "courier:": STRONG,
    "para el courier": STRONG, "el número de": MEDIUM, "o número de": MEDIUM, "obg": MEDIUM, "obgd": MEDIUM,
    "vlw": MEDIUM,
}
# Closings count only before punctuation or a line break: "Saludos, Ana" but not "best price".
CLOSINGS = frozenset((
    "saludos", "saludos cordiales", "un saludo", "regards", "best regards", "kind regards", "warm regards",
    "sincerely", "best", "cheers", "atenciosamente", "cumprimentos", "abraço", "abrazo", "gracias", "thanks",
    "thank you", "obrigado", "bendiciones", "atentamente", "cordialmente", "slds", "sldos", "abs", "abraços",
    "abrazos", "un abrazo", "muchas gracias", "mil gracias", "many thanks", "best wishes", "all the best", "rgds",
    "br", "cdlt", "cordiais saudações", "saudações", "grato", "grata", "quedo atento", "quedo atenta",
    "quedamos atentos", "fico no aguardo", "aguardo retorno", "thanx", "thnx", "thx", "tks", "grax", "valeu",
    "obrigada", "obg", "obgd", "vlw",
))
# Greetings name the person greeted only before a capitalized word: "Hola Juan," not "Hola, me llamo".
GREETINGS = frozenset(("hola", "hello", "hi", "hey", "dear", "estimado", "estimada", "querido", "querida", "olá", "ola",
                       "oi", "prezado", "prezada", "gracias", "thanks", "thank you", "obrigado", "buenos días",
                       "buenos dias", "buenas tardes", "buenas", "good morning", "bendiciones", "bom dia", "boa tarde",
                       "boa noite", "qué tal", "que tal", "buen día", "buen dia", "buenas noches", "good afternoon",
                       "good evening", "muchas gracias", "mil gracias", "many thanks", "dear mr", "dear ms", "e aí",
                       "eaí"))
# Titles, capitalized (or upper case) only: "Sr. Valadez", "Ing. Noriega", "Mr. Price".
HONORIFICS = ("Sr", "Sra", "Srta", "Sres", "Don", "Doña", "Dña", "Ing", "Inga", "Lic", "Licda", "Dr", "Dra", "Arq",
              "Abg", "Ab", "Econ", "Eco", "Prof", "Mr", "Mrs", "Ms", "Miss", "Mx", "Sir", "Srs", "Eng", "Engr",
              "Dona", "Seu", "D", "Dª", "Sto", "Madam", "Mme", "Mlle", "Cap", "Capt", "Cpt", "Gral", "Tte", "Cnel")

# Departments, teams and job titles (es/en/pt) are common words, never a name's: a signature
# "Departamento de Compras" or "Setor de Importação" is no person. A name read right before a
# unit word ("Sales Team": Sales is a surname too) is taken back unless a listed name is in it.
UNIT_WORDS = frozenset("""
team teams department dept depto dpto departamento departamentos equipo equipe desk office oficina group grupo
division división divisao divisão area área sector setor unit unidad unidade section sección seccion staff
""".split())
ORG_WORDS = UNIT_WORDS | frozenset("""
procurement purchasing compras ventas vendas sales comercial commercial exportaciones exportación exportacion
exportações exportacoes exportação exportacao importaciones importación importacion importações importacoes
importação importacao import export imports exports operations operaciones operações operacoes logística
logistica logistics qualidade quality calidad finance finanzas finanças financas accounting contabilidad
contabilidade tesorería tesoreria treasury cobranzas cobranza collections facturación facturacion billing
faturamento atendimento soporte suporte support recepción recepcion reception documentación documentacion
documentation embarques despachos dispatch tráfico trafico aduanas customs gerente manager director directora
diretor diretora jefe jefa head coordinador coordinadora coordinator coordenador coordenadora asistente
assistant assistente analista analyst ejecutivo ejecutiva executive executivo executiva representante
representative comprador compradora buyer vendedor vendedora seller trader supervisor supervisora encargado
encargada responsable responsável especialista specialist general geral e-mail email correo arancelaria camaronera
camaroneras empacadora empacadoras procesadora exportadora importadora naviera navieras agencia aduana
sirs sir madam madams gentlemen señores señoras senhores senhoras caballeros todos todas all everyone
colleagues colegas amigos friends partners socios customers clientes rgds regds abs bss enviado desde sent
telefone telefono teléfono phone tel cel celular móvil movil fax mobile email correo whatsapp
""".split())
# A legal form after the words makes them a company's name: "Frigoríficos del Cantábrico S.L.",
# "Ocean Harvest LLC", "Mar Profundo SAC".
_COMPANY_AFTER = re.compile(
    r"[ \t]*,?[ \t]*(?:S\.[ \t]?[AL]\.|S\.A\.[CS]\.|S\.R\.L\.|S\.p\.A\.|B\.V\.|N\.V\.|S\.A\.S\."
    r"|(?:SA|SL|SAC|SAS|SRL|SPA|EIRL|SARL|PLC|LLC|LLP|LTDA|LTD|INC|CORP|GMBH|BV|NV|AG|LDA|EIRELI|CIA|CÍA)\b"
    r"|(?:Ltda|Ltd|Inc|Corp|GmbH|Lda|Cía|Cia|Co)\b)")
_TOKEN = re.compile(r"[ \t]*([^\W\d_]+(?:['’\-][^\W\d_]+)*)(\.?)")
_HANDLE = re.compile(r"(?<![\w.@])@[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,30}[A-Za-z0-9_])?(?![\w@])")
_TAGS = frozenset(("name.cue", "name.hon", "name.here"))
_HONORIFIC_SET = frozenset(HONORIFICS) | frozenset(h.upper() for h in HONORIFICS)
HERE_WORDS = ("here", "aquí", "aqui", "por aquí", "por aqui", "speaking", "hablando", "falando")
_STOP = frozenset(",;:!?()\n")  # punctuation that ends a name


def _after_punct(text: str, i: int) -> int:
    """Past a cue's punctuation: blanks, one of . , : ! -, blanks, a line break, blanks
    ("Saludos,\n" lets the name stand on the next line). Plain code: a regex call costs more."""
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i < n and text[i] in ".,:!-":
        i += 1
        while i < n and text[i] in " \t":
            i += 1
    if i < n and text[i] == "\n":
        i += 1
        while i < n and text[i] in " \t":
            i += 1
    return i
_ANGLE_EMAIL = re.compile(r"(?:\(\s*)?[<‹«\[]\s*(?:mailto:)?[^\s<>‹›@\[\]]+@[^\s<>‹›@\[\]]+\s*[>›»\]]")
_SPEAKER_LINE = re.compile(r"(?m)^[ \t]*(?P<who>([A-ZÁÉÍÓÚÑ][^\W\d_]+)(?:[ \t][A-ZÁÉÍÓÚÑ][^\W\d_]+){0,2}):[ \t]+\S")
_CHAT_LINE = re.compile(
    r"(?m)^[ \t]*(?:\[\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4},?[ \t]+\d{1,2}:\d{2}(?::\d{2})?(?:[ \t]?[APap]\.?[ \t]?[Mm]\.?)?\]"
    r"|\[\d{1,2}:\d{2}(?::\d{2})?(?:[ \t]?[APap]\.?[ \t]?[Mm]\.?)?,?[ \t]*\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}\]"
    r"|\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4},?[ \t]+\d{1,2}:\d{2}(?::\d{2})?(?:[ \t]?[APap]\.?[ \t]?[Mm]\.?)?[ \t]+[-–]"
    r"|\[\d{1,2}:\d{2}(?::\d{2})?(?:[ \t]?[APap]\.?[ \t]?[Mm]\.?)?\])"
    r"[ \t]+(?P<who>[^:\n\[\]]{1,40}?):")
# capitalized words (or all capitals), whole: "McDonald", "O'Brien", "Ortiz-Quintana"
_EDGE = ".,;:!?()\"'«»“”[]{}<>*¿¡"
_CAP_WORD = re.compile(r"(?<![\w@])[A-ZÁÉÍÓÚÑÜÇÀÂÊÔÃÕ][^\W\d_]+(?:['’\-][^\W\d_]+)*(?![\w@])")
_DOMAIN_AFTER = re.compile(r"\.[A-Za-z]")
_VESSEL_BEFORE = re.compile(r"(?i:\b(?:msc|maersk|cma|cgm|cosco|hapag|one|evergreen|m/v|mv|m\.v\.|vessel|buque|navio|"
                            r"nave|barco|ship|motonave)[ \t]+)$")
_COMMA_FIRST = re.compile(r",[ \t]*([^\W\d_]+)(?=[ \t]*(?:$|[\n.,;:!?)|<(\-–—\[‹]|[ \t][^\W\d_]+\b))")
_NAME_WORD = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")
_SIG_MARK = re.compile(r"[ \t]*(?:--?|—|–|//)[ \t]*(?=[^\W\d_])")
_SIG_SEPARATOR = re.compile(r"\s*[,|·•/]\s*|\s+[-–—]\s+")
_BACK = re.compile(r"((?:[^\W\d_][\w'’\-]*\.?[ \t]+){1,5})$")
_LINE_OK = re.compile(r"^[^\W\d_][\w'’\-. \t]*[.,]?$")
_CONTACT_LINE = re.compile(r"^\s*(?:\[(?:PHONE|EMAIL)|[+(\d📱📞☎✉📧📲☏]|(?:cel|celu|celular|tel|telf|tlf|tfno|fone|"
                           r"m|t|p|e|ph|mob|mobile|móvil|movil|phone|cell|wa|wsp|zap|whats|whatsapp|fax|skype|"
                           r"direct|office|email|e-mail|correo|mail|www|https?)\b|\S+@\S+)", re.I)
_CLOSING = re.compile(r"^\s*(?:saludos(?: cordiales)?|un saludo|atentamente|atte\.?|att\.?|cordialmente|regards|"
                      r"best regards|kind regards|best|thanks|thank you|gracias|muchas gracias|cheers|sincerely|"
                      r"bendiciones|abrazos?|atenciosamente|cumprimentos|obrigad[oa]|quedo atent[oa]|"
                      r"quedo a la espera|pendiente|slds|sldos|abs|abraços|abrazos|un abrazo|mil gracias|"
                      r"many thanks|best wishes|all the best|rgds|br|cdlt|saudações|grato|grata|-{2,}|—|–|_{2,})\W*$",
                      re.I)


def fold(s: str) -> str:
    """Lower case, accents off: lists and text meet on this form ('Pérez' ~ 'perez')."""
    s = s.lower()
    if s.isascii():
        return s
    return "".join(c for c in unicodedata.normalize("NFD", s) if unicodedata.category(c) != "Mn")


@lru_cache(maxsize=1)
def lexicon() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(first names, surnames, common words), folded; read once per process."""
    def load(name: str) -> frozenset[str]:
        words = (DATA / name).read_text(encoding="utf-8").split()
        return frozenset(fold(w) for w in words if w)
    # the names of trade documents ("Partida arancelaria", "Booking", "Lote") are no names either
    docs = {fold(w) for w in KEYWORDS["doc"] + KEYWORDS["doc_weak"] if " " not in w and w.isalpha()}
    return load("first_names.txt"), load("surnames.txt"), load("common_words.txt") | {fold(w) for w in ORG_WORDS} | docs


@lru_cache(maxsize=65536)
def word_kind(word: str) -> str:
    """'known' (a name, not a common word), 'amb' (both), 'common' or 'unknown'. Cached: chat
    vocabulary repeats, and the cache is thread-safe."""
    first, last, common = lexicon()
    f = fold(word)
    if f in first or f in last:
        return "amb" if f in common else "known"
    return "common" if f in common else "unknown"


@lru_cache(maxsize=65536)
def is_surname(word: str) -> bool:
    return fold(word) in lexicon()[1]


@lru_cache(maxsize=65536)
def is_first_name(word: str) -> bool:
    """A listed first name that is not also a common word (cached, as word_kind)."""
    return word_kind(word) == "known" and fold(word) in lexicon()[0]


@lru_cache(maxsize=1024)
def _known_regex(names: tuple[str, ...]) -> re.Pattern[str] | None:
    parts: set[str] = set()
    for n in names:
        if not isinstance(n, str):
            continue
        n = " ".join(n.split())
        if len(n) >= 2:
            parts.add(n)
        for t in re.findall(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*", n):
            if len(t) >= 2 and t.lower() not in PARTICLES:
                parts.add(t)
    variants = {v for p in parts for v in (p, fold(p))}
    if not variants:
        return None
    alts = "|".join(re.escape(v).replace(r"\ ", r"\s+") for v in sorted(variants, key=len, reverse=True))
    return re.compile(rf"(?<![\w@])(?:{alts})(?![\w])", re.I)


class NameDetector(Detector):
    type = "NAME"

    def __init__(self, cues: Iterable[str] = (), enabled: bool = True) -> None:
        self.enabled = enabled
        cues_map = dict(DEFAULT_CUES)
        for c in cues:
            if c and c.strip():
                cues_map[c.strip().lower()] = STRONG
        closings = {fold(c) for c in CLOSINGS}
        # cue as found in the lower-cased text -> (strength, is a closing)
        self._cue_info: dict[str, tuple[int, bool, bool, bool]] = {}
        for k, v in cues_map.items():
            colon = k.rstrip().endswith(":")  # "nombre:" counts only with its colon
            for form in (keyword_form(k), fold(keyword_form(k))):
                self._cue_info[form] = (v, fold(form) in closings, form in GREETINGS, colon)
        self._cue_words = list(self._cue_info)

    def keywords(self) -> dict[str, Iterable[str]]:
        if not self.enabled:
            return {}
        return {"name.cue": self._cue_words, "name.hon": [h.lower() for h in HONORIFICS], "name.here": HERE_WORDS}

    # -- word classes ------------------------------------------------------------------------

    @staticmethod
    def _kind(word: str) -> str:
        return word_kind(word)

    def _read(self, ctx: Context, pos: int, strength: int,
              first_required: bool = False, greeting: bool = False,
              closing: bool = False) -> tuple[int, int, bool] | None:
        """Read a name starting at ``pos``; return its range (and whether it holds a protected
        word) or None."""
        text = ctx.text
        # the words that follow, separated by blanks only (one regex pass, not one per word)
        toks: list[re.Match[str]] = []
        at = pos
        for m in _TOKEN.finditer(text, pos):
            if m.start() != at or len(toks) > 8:
                break
            toks.append(m)
            at = m.end()
            # a full stop after a word (not an initial) or a comma ends the name
            if (m.group(2) and len(m.group(1)) > 1) or (at < len(text) and text[at] in _STOP):
                break
        start = end = -1
        words = 0
        pending_initials = 0
        style = ""  # case style of the name begun: "upper", "lower", "title"
        forced = False
        known = False  # a listed name (not also a common word) among the words read
        last_known = False
        k = 0
        n = len(toks)
        while k < n and words < 4:
            m = toks[k]
            k += 1
            w, dot = m.group(1), m.group(2)
            ws, we = m.start(1), m.end(1)
            if ctx.words.overlaps(ws, we):
                # a catalog place as the surname of a name already begun: "JOSÉ VALENCIA", "J. Lima",
                # or capitalized right after a listed first name: "Rocío Manta"
                if ((words or pending_initials) and (is_surname(w) or (last_known and w[0].isupper() and (
                        style != "title" or w.istitle()))) and ctx.words.only_within(ws, we)):
                    forced = True
                    words += 1
                    pending_initials = 0
                    end = we
                    continue
                # a catalog place as the first name after a strong cue, a listed name following:
                # "my name is Sydney Tran", "me llamo Santos Pérez" ("CFR Santos" has no cue)
                if (not words and not pending_initials and strength >= STRONG and k < n
                        and ctx.words.only_within(ws, we) and w[0].isupper()
                        and fold(w) in lexicon()[0] and word_kind(toks[k].group(1)) == "known"
                        and not ctx.words.overlaps(toks[k].start(1), toks[k].end(1))):
                    forced = True
                    start = ws
                    style = "upper" if w.isupper() and len(w) > 1 else "title"
                    words += 1
                    end = we
                    continue
                break
            if len(w) == 1 and dot and (w.isupper() or style == "lower" or (
                    not words and k < n and toks[k].group(1).islower() and len(toks[k].group(1)) > 1)):
                # an initial: "R. Pérez", "J. E. Quintero", and after a name: "Hiroshi T.", "mary j."
                if start < 0:
                    start = ws
                if words:
                    end = m.end(2)
                else:
                    pending_initials += 1
                continue
            if w.lower() in PARTICLES:
                if (words == 0 and pending_initials == 0) or k >= n:
                    break
                if toks[k].group(1).lower() in PARTICLES and k + 1 >= n:
                    break
                continue
            kind = word_kind(w)
            wstyle = "upper" if w.isupper() and len(w) > 1 else "lower" if w.islower() else "title" if w[0].isupper() else ""
            if words == 0 and pending_initials == 0:
                ok = kind == "known" or (strength >= STRONG and kind in ("unknown", "amb"))
                if not ok and kind == "amb" and wstyle != "lower":
                    # "soy LUZ DÍAZ": a common-word first name, confirmed by the name after it
                    ok = not dot and k < n and word_kind(toks[k].group(1)) == "known"
                if not ok and kind == "unknown" and wstyle == "title" and not dot and k < n and len(
                        toks[k].group(1)) == 1 and toks[k].group(2) and toks[k].group(1).isupper():
                    ok = True   # "consignee: Hiroshi T.": a first name the lists lack, with its initial
                if not ok and greeting and wstyle == "title" and kind in ("amb", "unknown") and self._addressed(
                        text, toks):
                    ok = True   # the words a greeting addresses: "Buenas tardes Luna.", "Estimado Mishell del Hoz,"
                if first_required and kind != "known":
                    ok = False
            else:
                ok = kind in ("known", "unknown") or (kind == "amb" and (wstyle != "lower" or style == "lower"))
                if kind == "unknown" and style and wstyle != style and not (style == "title" and wstyle == "upper"):
                    ok = False
            if not ok or not wstyle:
                break
            if start < 0:
                start = ws
            style = style or wstyle
            words += 1
            pending_initials = 0
            end = we
            last_known = kind == "known"
            known = known or last_known
        if words == 0:
            return None
        if (greeting or closing) and style == "lower" and not known:
            return None   # "saludos, manden fotos": lower-case words after a closing are no name unless listed
        if _COMPANY_AFTER.match(text, end):
            return None   # "Cantábrico S.L.", "Ocean Harvest LLC": a company, not a person
        if not known:
            after = _TOKEN.match(text, end)
            if after and after.start(1) - end <= 2 and fold(after.group(1)) in UNIT_WORDS:
                return None   # "Sales Team", "Export Department": a unit, not a person
        return start, end, forced

    # -- detection ---------------------------------------------------------------------------

    def find(self, ctx: Context) -> list[Span]:
        text = ctx.text
        out: list[Span] = []
        if ctx.known_names:
            rx = _known_regex(tuple(ctx.known_names))
            if rx is not None:
                out.extend(Span(m.start(), m.end(), "NAME", priority=P_NAME + 5) for m in rx.finditer(text))
        at = text.find("@")
        while at >= 0:
            m = _HANDLE.match(text, at)
            if m:
                out.append(Span(m.start(), m.end(), "NAME", priority=P_NAME))
            at = text.find("@", at + 1)
        if self.enabled and ("@" in text and ("<" in text or "‹" in text or "[" in text or "«" in text)):
            out.extend(self._display_names(ctx))
        if self.enabled and ":" in text and ("] " in text or " - " in text or ": " in text):
            out.extend(self._chat_authors(ctx))
        if self.enabled:
            out.extend(self._full_names(ctx))
        hits = ctx.hits
        if not self.enabled or not (hits.keys() & _TAGS or "\n" in text):
            return out
        for s, e in hits.get("name.hon", ()):
            # titles count capitalized, before a dot or a space: "Sr. Valadez", "Mr Price"
            if text[s:e] in _HONORIFIC_SET and e < len(text) and text[e] in ". \t":
                r = self._read(ctx, e + 1 if text[e] == "." else e, STRONG)
                if r:
                    out.append(self._name_span(ctx, r))
        for s, e in hits.get("name.cue", ()):
            cue = ctx.lower[s:e]
            strength, closing, greeting, colon = self._cue_info.get(cue) or self._cue_info.get(
                " ".join(cue.split()), (MEDIUM, False, False, False))
            pe = _after_punct(text, e)
            if colon and ":" not in text[e:pe]:
                continue
            if pe >= len(text):
                continue
            if closing and text[e:pe].strip(" \t"):
                # "Thanks, Yuki Nakamura", "thanks,\nlopez, angela": a closing and its punctuation, then the signer
                strength, greeting = STRONG, False
            elif closing and not greeting:
                continue   # "saludos a todos", "best price": a closing counts before punctuation only
            if greeting and not text[pe].isupper() and not self._listed_at(text, pe):
                continue   # "Hola Juan", "hola piero!!", not "Hola, me llamo" (a listed name may be lower case)
            r = self._read(ctx, pe, strength, greeting=greeting, closing=closing)
            if r:
                out.append(self._name_span(ctx, r))
        for hs, _ in hits.get("name.here", ()):
            b = _BACK.search(text, max(0, hs - 60), hs)
            if not b:
                continue
            # skip a greeting before the name: "Hello CARMEN RAMOS here"
            pos = b.start()
            while True:
                t = _TOKEN.match(text, pos)
                if not t or t.end() > hs or self._kind(t.group(1)) != "common":
                    break
                pos = t.end()
            r = self._read(ctx, pos, MEDIUM, first_required=True)
            if r:
                out.append(Span(r[0], r[1], "NAME", priority=P_NAME, atomic=r[2]))
        if "\n" in text:
            out.extend(self._signatures(ctx))
        return out

    @staticmethod
    def _addressed(text: str, toks: list[re.Match[str]]) -> bool:
        """All the words after a greeting, up to its punctuation, capitalized and none a common
        word: the person greeted ("Estimado Mishell del Hoz,"), not "Hola Equipo de Ventas,"."""
        if not toks or len(toks) > 4:
            return False
        end = toks[-1].end(1)
        if end < len(text) and text[end] not in ",.!\n":
            return False
        words = [t.group(1) for t in toks if t.group(1).lower() not in PARTICLES]
        if not words or toks[-1].group(1).lower() in PARTICLES or any(w in _HONORIFIC_SET for w in words):
            return False   # (a title is no name: "Estimado Sr. Vera" reads from the title on)
        kinds = [word_kind(w) for w in words]
        if not all(w[0].isupper() for w in words) or "common" in kinds:
            return False
        # several words that are all also common words ("Hola Luz del Mar,") may be a company's name
        return len(words) == 1 or "known" in kinds or "unknown" in kinds

    @staticmethod
    def _listed_at(text: str, pos: int) -> bool:
        """A listed first name (not also a common word) at ``pos``: "hola piero", not "hola hagan"."""
        t = _TOKEN.match(text, pos)
        return t is not None and is_first_name(t.group(1))

    @staticmethod
    def _name_span(ctx: Context, r: tuple[int, int, bool]) -> Span:
        """The span of a name read; "Acosta, Valentino" (surname, comma, a listed first name) whole."""
        end = r[1]
        m = _COMMA_FIRST.match(ctx.text, end)
        if m and fold(m.group(1)) in lexicon()[0] and word_kind(m.group(1)) != "common" and not ctx.words.overlaps(
                m.start(1), m.end(1)):
            end = m.end(1)
        return Span(r[0], end, "NAME", priority=P_NAME, atomic=r[2])

    @staticmethod
    def _chat_authors(ctx: Context) -> list[Span]:
        """Who wrote each line of a pasted chat export: "[15/07/24, 10:32:15] Ana Pérez: ..." or
        "15/07/2024 10:32 - Ana Pérez: ..." (a phone number there is the phone detector's)."""
        out: list[Span] = []
        for m in _CHAT_LINE.finditer(ctx.text):
            who = m.group("who")
            if sum(c.isdigit() for c in who) < 5 and any(c.isalpha() for c in who):
                out.append(Span(m.start("who"), m.end("who"), "NAME", priority=P_NAME))
        for m in _SPEAKER_LINE.finditer(ctx.text):   # "Steve: send the PI", a listed first name speaking
            if is_first_name(m.group(1)) and not ctx.words.overlaps(m.start("who"), m.end("who")):
                out.append(Span(m.start("who"), m.end("who"), "NAME", priority=P_NAME))
        return out

    @staticmethod
    def _full_names(ctx: Context) -> list[Span]:
        """A listed first name followed by a listed surname, capitalized, with no cue at all
        ("(Iain McDonald)", "ok.Felipe Rodriguez.", "saludos Ana Carolina Melo"): the two must be
        names only, never common words; the capitalized name words around them go with them."""
        text = ctx.text
        found = False
        for w in text.split()[:-1]:   # (a plain loop over str.split: cheaper than a regex pass)
            w = w.strip(_EDGE)
            if "." in w:
                w = w.rsplit(".", 1)[1]   # "ok.Felipe"
            if w[:1].isupper() and is_first_name(w):
                found = True
                break
        if not found:
            return []   # the common case: no listed first name capitalized anywhere
        matches = list(_CAP_WORD.finditer(text))
        words = [m.group() for m in matches]
        spans = [m.span() for m in matches]
        out: list[Span] = []
        i, n = 0, len(words)
        while i + 1 < n:
            wa, wb = words[i], words[i + 1]
            if (not is_first_name(wa) or not is_surname(wb) or word_kind(wb) != "known"
                    or text[spans[i][1]:spans[i + 1][0]] != " " or wa.isupper() != wb.isupper()):
                i += 1
                continue
            lo, hi = i, i + 1
            # the name words next to the pair: "Ana Carolina Melo", "Carlota Eugenia Alemán Vega"
            while lo > 0 and i - lo < 2 and text[spans[lo - 1][1]:spans[lo][0]] == " " and word_kind(words[lo - 1]) == "known":
                lo -= 1
            while hi + 1 < n and hi - lo < 4 and text[spans[hi][1]:spans[hi + 1][0]] == " " \
                    and word_kind(words[hi + 1]) == "known":
                hi += 1
            s, e = spans[lo][0], spans[hi][1]
            if not (ctx.words.overlaps(s, e) or _VESSEL_BEFORE.search(text, max(0, s - 12), s)
                    or _COMPANY_AFTER.match(text, e) or _DOMAIN_AFTER.match(text, e)):
                out.append(Span(s, e, "NAME", priority=P_NAME - 1))   # (not a catalog term, a ship, a company)
            i = hi + 1
        return out

    def _display_names(self, ctx: Context) -> list[Span]:
        """The name before an address in angle brackets: "Ana Pérez <ana@example.com>"."""
        text = ctx.text
        out: list[Span] = []
        for m in _ANGLE_EMAIL.finditer(text):
            words = list(_NAME_WORD.finditer(text, max(0, m.start() - 80), m.start()))
            # the words right before the bracket, on its line, name-like; leading verbs and
            # prepositions ("cc", "send to", "manda pro") are not part of it
            run: list[re.Match[str]] = []
            for w in reversed(words):
                gap = text[w.end():run[0].start() if run else m.start()]
                if gap.strip(" \t\"'") or len(run) >= 4:
                    break
                run.insert(0, w)
            while run and (word_kind(run[0].group()) == "common" or run[0].group().lower() in PARTICLES
                           or not run[0].group()[0].isupper()):
                run.pop(0)
            kinds = [word_kind(w.group()) for w in run if w.group().lower() not in PARTICLES]
            if kinds and "common" not in kinds and ("known" in kinds or len(kinds) >= 2):
                out.append(Span(run[0].start(), run[-1].end(), "NAME", priority=P_NAME))
        return out

    def _signatures(self, ctx: Context) -> list[Span]:
        """Lines that are only a name: a signature, a contact line's owner."""
        text = ctx.text
        out: list[Span] = []
        parts = text.split("\n")
        pos = 0
        for k, part in enumerate(parts):
            a = pos
            pos += len(part) + 1
            # a signature's own marker before the name: "- STALIN ZAMBRANO", "//Diana Montoya"
            mark = _SIG_MARK.match(part)
            if mark and mark.end() < len(part):
                a += mark.end()
                part = part[mark.end():]
            line = part.strip()
            if not line:
                continue
            if len(line) > 48 or not _LINE_OK.match(line):
                # "Ana Pérez, Congelados SL", "amanda reynolds | Buyer": the name, then its company
                # or title after a separator
                sep = _SIG_SEPARATOR.search(part)
                if sep is None or not _LINE_OK.match(part[:sep.start()].strip()) or sep.start() > 48:
                    continue
                part = part[:sep.start()]

            def placed(k: int = k) -> bool:
                # after a closing ("Saludos,"), before a contact line, or last / before a contact
                # line once a company line sits between
                return bool(k > 0 and _CLOSING.match(parts[k - 1])) or bool(
                    k + 1 < len(parts) and _CONTACT_LINE.match(parts[k + 1])) or (
                    k > 0 and (k == len(parts) - 1 or bool(k + 2 < len(parts) and _CONTACT_LINE.match(parts[k + 2]))))

            r = self._line_name(ctx, a + (len(part) - len(part.lstrip())), a + len(part), placed)
            if r:
                out.append(Span(r[0], r[1], "NAME", priority=P_NAME, atomic=r[2]))
        return out

    def _line_name(self, ctx: Context, a: int, b: int,
                   where: Callable[[], bool]) -> tuple[int, int, bool] | None:
        text = ctx.text
        kinds: list[str] = []
        pos = a
        initials = 0
        forced = False
        while True:
            m = _TOKEN.match(text, pos)
            if not m or m.start(1) >= b:
                break
            w = m.group(1)
            if ctx.words.overlaps(m.start(1), m.end(1)):
                # only a surname that is also a catalog place, after the first name
                if not kinds or not is_surname(w) or not ctx.words.only_within(m.start(1), m.end(1)):
                    return None
                forced = True
            if len(w) == 1 and w.isupper() and m.group(2):
                initials += 1   # (with its dot: "O navio", "A carga" are articles)
            elif w.lower() not in PARTICLES:
                kinds.append(self._kind(w))
            pos = m.end()
            while pos < b and text[pos] in ",":
                pos += 1
        if text[pos:b].strip(" \t.,"):
            return None  # something else on the line
        if initials >= 2 and _COMPANY_AFTER.search(text, a, b + 1):
            return None  # "Frigoríficos del Cantábrico S.L.": a company
        n = len(kinds)
        if n == 0 or n > 4 or "common" in kinds:
            return None
        known = kinds.count("known")
        unknown = kinds.count("unknown")
        if n >= 2 and unknown == 0 and known >= 1:
            ok = True  # a full name from the lists, wherever the line stands
        elif not where():
            ok = False  # anything less needs a signature's place
        elif n == 1:
            ok = kinds[0] == "known" or initials > 0  # "Saludos,\nRosa" is not enough, "J. Pruitt" is
        else:
            ok = known >= 1 or initials > 0 or unknown <= 1
        return (a, len(text[:b].rstrip(" \t.,")), forced) if ok else None
