"""The offline rules analyzer: intent + entities from the configured catalog, no network.

It reads only ``AnalysisConfig``: intents with cue words (three tiers and a role), products and
their aliases, freezing styles, the size pattern, incoterms, destinations, glaze words, quantity
units. Catalog values never appear in this module; the generic Spanish/English structure it needs
(function words, number words, origin prepositions...) lives in :mod:`rules_lexicon`.

How a message is read (labeling rules of data/ANALYSIS_LABELS.md):

* the text is folded once (lower case, accents off) keeping every offset, so entities written as
  found (quantity) are sliced from the original text; ``[PHONE]``-style placeholders become opaque
  tokens (never an entity; a cue right before one is a label: "correo [EMAIL]");
* products, incoterms and destinations are looked up on word tokens, joined across spaces, dots
  and dashes ("P & D", "EZ-peel", "ex works"), longest alias first; sizes, glaze and quantities
  come from precompiled regexes with context checks (dates are not sizes, advances are not glaze,
  packing is not a quantity);
* each intent sums the weights of its cue hits (after chat abbreviations and one-typo
  correction); a bare spec line is an order, a greeting wins only when nothing else is said, and
  nothing recognized is the fallback intent;
* ``confidence`` is the empirical accuracy of the evidence bucket the decision fell in (see
  ``_CALIBRATION``), not a score.

Everything is compiled in ``__init__``; :meth:`RulesAnalyzer.analyze` only reads shared state
(plus bounded caches whose races are benign: a lost write is recomputed), so one instance serves
many threads.
"""

from __future__ import annotations

import bisect
import logging
import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from middleware.config import AnalysisConfig
from workers.analyzers import rules_lexicon as lex

log = logging.getLogger(__name__)

MAX_CHARS = 4000  # longer texts are read up to here: capture caps messages at 2000 anyway

# Cue tiers. One strong cue decides against any number of weak ones; a bare spec line is
# weaker than any real cue but beats nothing.
W_STRONG, W_CUE, W_WEAK = 3.0, 2.0, 1.0
W_SPEC, W_SPEC_QUESTION = 1.5, 1.0
W_REFERENCE = 0.5  # an order cue that only cites an existing document

# Words, the joiners "&", "+", "/", and, as tokens of their own, line breaks and runs of other
# punctuation or symbols. Spaces, dots, dashes and apostrophes are no tokens, so "P & D", "EZ-peel"
# and "ex works" join into one key while "FOB, Miami" or a new line never does.
_TOKEN = re.compile(r"[a-z0-9\u0300-\u036f]+|[&+/]|\n|[^\sa-z0-9\u0300-\u036f&+/.\-'_\u2019]+")
_COMBINING = re.compile(r"[\u0300-\u036f]")  # accents typed as separate marks ("e" + U+0301)
_PLACEHOLDER = re.compile(r"\[[a-z][a-z_]*\d*\]")
_MASK = "\x01"  # what a placeholder becomes: a punctuation-like token of its own, same length
_DIGIT = re.compile(r"\d")
_NUMBER = re.compile(r"\d+")
_PACKING = re.compile(r"\d+x\d+")
_GLUED = re.compile(r"\d\s*x|\d[a-z]")  # "2 x 40'", "10kg": an amount without a unit token  # "2x40" as one token: an amount, not a document number
# Kinds of phrase-table payloads (the first item of each payload tuple).
CUE, PRODUCT, INCOTERM, DEST, GLAZE, STYLE, NEUTRAL = range(7)
_NEUTRAL = (NEUTRAL,)  # a phrase that consumes its words without pointing anywhere


# ---------------------------------------------------------------------------------------------
# folding: lower case and no accents, one character for one character, so offsets survive


def _fold_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for cp in list(range(0xA0, 0x250)) + list(range(0x1E00, 0x1F00)) + list(range(0xFF01, 0xFF5F)):
        ch = chr(cp)
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        if len(base) == 1 and base.isascii():
            table[cp] = base.lower()
    table.update({ord(k): v for k, v in {
        "\u00a0": " ", "\u2019": "'", "\u2018": "'", "\u00b4": "'", "\u2032": "'", "\u201c": '"',
        "\u201d": '"', "\u2033": '"', "\u2013": "-", "\u2014": "-", "\u2010": "-", "\u2011": "-",
        "\u00d7": "x", "\u00ba": "o", "\u00aa": "a", "\u00b0": "o", "\u2044": "/", "\uff05": "%",
    }.items()})
    return table


_FOLD = _fold_table()


def fold(text: str) -> str:
    """Lower case without accents, the same length as ``text`` (offsets stay valid)."""
    low = text.lower()
    if len(low) != len(text):  # a few characters lower-case to two ("İ"): fold one by one
        low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    if not low.isascii():
        low = low.translate(_FOLD)
    return low


def _fold_phrase(s: str) -> str:
    return unicodedata.normalize("NFKC", s).translate(_FOLD).lower().translate(_FOLD)


def _phrase_tokens(s: str) -> list[str]:
    """The tokens of a configured alias or cue (punctuation dropped)."""
    return [t for t in _TOKEN.findall(_fold_phrase(s)) if t[0].isalnum() or t in "&+/"]


def _squash(s: str) -> str:
    """The lookup key of an alias or cue: its tokens joined ("EZ-Peel" -> "ezpeel")."""
    return "".join(_phrase_tokens(s))


# ---------------------------------------------------------------------------------------------
# phrase lookup over tokens (leftmost-longest match)


class _Spans:
    """Token offsets, computed on first use: most messages never need them."""

    __slots__ = ("f", "_spans")

    def __init__(self, f: str) -> None:
        self.f = f
        self._spans: list[tuple[int, int]] | None = None

    def all(self) -> list[tuple[int, int]]:
        if self._spans is None:
            self._spans = [m.span() for m in _TOKEN.finditer(self.f)]
        return self._spans

    def __getitem__(self, i: int) -> tuple[int, int]:
        return self.all()[i]


class _PhraseTable:
    """Phrases looked up on word tokens. A phrase's key is its tokens concatenated, so "EZ PEEL",
    "EZ-peel" and "ezpeel" are one key; a text's tokens join wherever only spaces, dots, dashes or
    apostrophes separate them (line breaks and other punctuation are tokens, and stop a match).
    A trailing plural "s" is tolerated."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[Any, ...]] = {}
        self.prefixes: set[str] = set()  # concatenations of a phrase's first tokens
        self.starts: set[str] = set()  # any token a match can start with (keys and prefixes)

    def add(self, phrase: str, payload: tuple[Any, ...], overwrite: bool = False) -> None:
        toks = _phrase_tokens(phrase)
        key = "".join(toks)
        if not key:
            return
        for k in (key, key + "s") if len(key) >= 4 else (key,):
            if overwrite or k not in self.keys:
                self.keys[k] = payload
        acc = ""
        for t in toks[:-1]:
            acc += t
            self.prefixes.add(acc)

    def finish(self) -> None:
        """Call once after the last ``add``."""
        self.starts = set(self.keys) | self.prefixes

    def scan(self, toks: list[str]) -> list[tuple[int, int, tuple[Any, ...]]]:
        """Non-overlapping (first token, last token, payload) matches, leftmost-longest."""
        out: list[tuple[int, int, tuple[Any, ...]]] = []
        keys, prefixes, starts = self.keys, self.prefixes, self.starts
        n = len(toks)
        nxt = 0
        for i in [i for i, t in enumerate(toks) if t in starts]:
            if i < nxt:
                continue
            s = toks[i]
            best_j = -1
            best = keys.get(s)
            if best is not None:
                best_j = i
            j = i
            while s in prefixes and j + 1 < n:
                j += 1
                s += toks[j]
                v = keys.get(s)
                if v is not None:
                    best_j, best = j, v
            if best is not None:
                out.append((i, best_j, best))
                nxt = best_j + 1
        return out


# ---------------------------------------------------------------------------------------------
# one-typo correction of cue words (symmetric deletes: deletion, insertion, substitution, swap)


def _deletes(w: str) -> set[str]:
    return {w[:i] + w[i + 1:] for i in range(len(w))}


class _Speller:
    """Maps a word a typo away from a cue word onto it: one edit for words of five letters or
    more, two between words of eight or more ("avilible" -> "available"). The first letter must
    agree (names and other words a letter apart are left alone) and known words are never
    changed: a distance of two links many real words ("customer" and "customs")."""

    def __init__(self, vocab: Iterable[str], known: Iterable[str]) -> None:
        self.index: dict[str, set[str]] = {}
        self.index2: dict[str, set[str]] = {}
        vocab = set(vocab)
        words = {w for w in vocab if len(w) >= 5 and w.isalpha()}
        for w in words:
            d1 = _deletes(w)
            for v in d1 | {w}:
                self.index.setdefault(v, set()).add(w)
            if len(w) >= 8:
                for v in d1:
                    for v2 in _deletes(v) | {v}:
                        self.index2.setdefault(v2, set()).add(w)
        self.known = frozenset(known) | vocab

    def correct(self, t: str) -> str:
        """The cue word ``t`` is a typo of, or ``t`` itself (callers cache the answer)."""
        if len(t) < 4 or t in self.known or not t.isalpha():
            return t
        first, index, empty = t[0], self.index, _EMPTY
        # one edit: t lost a letter, or t has an extra, a changed or a swapped letter
        pool = set(index.get(t, empty))
        if len(t) >= 5:
            for v in _deletes(t):
                pool.update(index.get(v, empty))
        cands = [w for w in pool if w[0] == first and _distance(t, w) <= 1]
        if not cands and len(t) >= 8:  # two edits, long words only
            index2 = self.index2
            pool = set(index2.get(t, empty))
            for v in _deletes(t):
                pool.update(index2.get(v, empty))
                for v2 in _deletes(v):
                    pool.update(index2.get(v2, empty))
            cands = [w for w in pool if w[0] == first and _distance(t, w) <= 2]
        if not cands:
            return t
        # The closest word, then the closest length; ties resolved alphabetically (stable).
        return min(cands, key=lambda w: (_distance(t, w), abs(len(w) - len(t)), w))


_EMPTY: frozenset[str] = frozenset()


# Letters people swap for one another when they write by ear ("cotisacion", "quanto", "performa").
# Any other substitution costs two: a one-letter change between real words is common ("pasar" and
# "pagar", "premio" and "precio") while keyboard typos are mostly doubled, dropped or swapped.
_SOUND_ALIKE = ("aeiou", "szc", "bv", "yil", "gj", "ckq")
_SUB_COST = {(x, y): 1 for group in _SOUND_ALIKE for x in group for y in group if x != y}


def _distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance (an adjacent swap is one edit; see ``_SUB_COST``)."""
    if abs(len(a) - len(b)) > 2:
        return 3
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            x, y = a[i - 1], b[j - 1]
            cost = 0 if x == y else _SUB_COST.get((x, y), 2)
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and x == b[j - 2] and a[i - 2] == y:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


# ---------------------------------------------------------------------------------------------
# calibration
#
# (decision kind, evidence level) -> probability that the intent is right. ``_decide`` sorts every
# message into one bucket: "cue" levels grow with the winning margin (minus one without a strong
# cue, minus one with three or more unknown words), "spec" is a bare product line, "question" a
# product line asked about with no cue, "greeting"/"fallback" levels count unknown words (two,
# one, none). Fitted once with a throwaway script (not shipped): each bucket's intent accuracy on
# data/analysis_dev.jsonl (1,500 messages) blended 70/30 with its first-contact accuracy (before
# any rule was changed for them) on 154 hand-written messages in phrasings the rules had never
# seen: the hidden set holds unseen templates, and the dev set alone says 100% in every bucket.
# Each side is smoothed toward 0.75 (one and two pseudo-messages), buckets without data sit at
# 0.6, and the values are made non-decreasing in the level by pooling adjacent violators. Refit
# when the cue lists change a lot.
_CALIBRATION: dict[str, tuple[float, ...]] = {
    "cue": (0.35, 0.964, 0.964, 0.997, 0.997),
    "spec": (0.6, 0.974),
    "question": (0.43,),
    "greeting": (0.793, 0.793, 0.988),
    "fallback": (0.9, 0.9, 0.946),
}


# ---------------------------------------------------------------------------------------------


class RulesAnalyzer:
    """Offline analyzer driven by ``AnalysisConfig``; ``analyze(text)`` returns the flat analysis."""

    name = "rules"
    TOKEN_CACHE_MAX = 50_000  # typo corrections remembered before the cache starts over

    def __init__(self, cfg: AnalysisConfig) -> None:
        self.cfg = cfg
        self.intents = [i.name for i in cfg.intents]
        n = len(self.intents)
        # Ties go to the lower priority number, then to the earlier intent in the list.
        self._rank = [(i.priority if i.priority is not None else 100 + k, k) for k, i in enumerate(cfg.intents)]
        roles = {i.role: k for k, i in enumerate(cfg.intents) if i.role}
        self._order = roles.get("order")
        self._question = roles.get("question")
        self._greeting = roles.get("greeting")
        fb = roles.get("fallback")
        if fb is None:
            fb = self.intents.index("other") if "other" in self.intents else n - 1
        self._fallback = fb

        def words(phrase: str) -> list[str]:
            return [t for t in _phrase_tokens(phrase) if t[0].isalnum()]

        # -- one table for the catalog and the cues (one pass over the tokens) -----------------
        table = _PhraseTable()
        catalog_words: set[str] = set()
        for p in cfg.products:
            for alias in [p.code, *p.aliases]:
                table.add(alias, (PRODUCT, p.code))
                catalog_words.update(words(alias))
        for style in cfg.freezing_styles:  # never products: an explicit "not a product" entry
            table.add(style, (STYLE, style), overwrite=True)
            catalog_words.update(words(style))
        for code, aliases in cfg.incoterms.items():
            for alias in [code, *aliases]:
                table.add(alias, (INCOTERM, code))
                catalog_words.update(words(alias))
        for place in cfg.destinations:
            prev = table.keys.get(_squash(place))
            if prev is not None and prev[0] == DEST:  # "Los Angeles" and "Los Ángeles": keep both
                table.add(place, (DEST, *prev[1:], place), overwrite=True)
            else:
                table.add(place, (DEST, place))
            catalog_words.update(words(place))
        cue_words: set[str] = set()
        for k, intent in enumerate(cfg.intents):
            for tier, weight in ((intent.strong_cues, W_STRONG), (intent.cues, W_CUE), (intent.weak_cues, W_WEAK)):
                for phrases in tier.values():
                    for ph in phrases:
                        key = _squash(ph)
                        prev = table.keys.get(key)
                        if not key or (prev is not None and prev[0] != CUE):
                            continue  # catalog values are entities first
                        # The same cue in two tiers or intents: the heavier listing wins.
                        table.add(ph, (CUE, k, weight), overwrite=prev is None or prev[2] < weight)
                        cue_words.update(words(ph))
        for neutral in lex.NEUTRAL_PHRASES:
            table.add(neutral, _NEUTRAL, overwrite=True)
        glaze_words = {w for g in cfg.glaze_words for w in words(g)}
        for w in _typo_variants(glaze_words):  # a glaze word also listed as a style reads as glaze
            table.add(w, (GLAZE,), overwrite=w in glaze_words and table.keys.get(w, (STYLE,))[0] == STYLE)
        table.finish()
        self._table = table

        # -- token map: chat abbreviations and typos mapped onto cue words ----------------------
        unit_words = {w for u in cfg.quantity_units for w in words(u)}
        known = (lex.STOPWORDS | lex.FILLERS | lex.PROTECTED | lex.MONTHS | catalog_words | unit_words
                 | glaze_words | cue_words | {w for phrase in lex.NUMBER_WORDS for w in phrase.split()})
        # Typos are corrected toward cue words and the few function words rules depend on.
        structural = lex.ORIGIN_WORDS | lex.EVENT_WORDS | lex.THANKS_WORDS
        self._speller = _Speller(cue_words | structural, known | set(lex.ABBREVIATIONS))
        # A word is "explained" when it is known or a catalog/cue word; unexplained words
        # (names, unseen phrasing) lower the confidence.
        self._known = frozenset(known | set(lex.ABBREVIATIONS))
        static = {w: w for w in known}
        for ab, full in lex.ABBREVIATIONS.items():
            if ab not in catalog_words:  # "d" in "P & D" stays a letter
                static[ab] = _squash(full)
        self._static_map = static
        self._token_map = dict(static)

        # -- regexes ----------------------------------------------------------------------------
        # Sizes, amounts and glaze: three precompiled regexes over the folded text. The amount and
        # percentage patterns start with a digit test so the regex engine can skip ahead quickly.
        units = sorted({_fold_phrase(u) for u in cfg.quantity_units if u.strip()}, key=len, reverse=True)
        unit_alt = "|".join(r"\s*".join(re.escape(part) for part in u.split()) for u in units) or r"(?!x)x"
        self._weight_units = frozenset(u for u in units if u in lex.WEIGHT_UNITS)
        self._number_words = frozenset(w for phrase in lex.NUMBER_WORDS for w in phrase.split())
        self._unit_words = frozenset(w for u in cfg.quantity_units for w in words(u))
        ctr = r"(?:20|40|45)\s*(?:'|ft\b|pies\b|feet\b|\"|hc\b|hq\b)?"
        ctr_kind = r"(?:\s*(?:hc|hq|rf|rh|reefers?|dry|contenedor(?:es)?|containers?|cntrs?|fcls?)\b)?"
        ctr_suffix = rf"(?:\s+(?:de\s+|of\s+)?{ctr}{ctr_kind})?"
        first_digit = r"\d(?<![\w.,]\d)"  # a number's first digit (nothing word-like before it)
        self._qty_re = re.compile(
            rf"(?P<qn>{first_digit}(?:\d*\s*x\s*{ctr}{ctr_kind}(?!\s*(?:kg|lb|g\b|gr|oz))"
            rf"|(?:\d{{0,2}}(?:[.,]\d{{3}})+|\d*(?:[.,]\d+)?)(?=\s*(?P<qu>{unit_alt})(?![a-z]))))"
            rf"(?(qu)\s*(?:{unit_alt})(?![a-z]){ctr_suffix})")
        self._size_re = re.compile(rf"(?<![\w/.,-])(?:{cfg.size_pattern})s?(?![a-z0-9/%]|[.,]\d|-\d)",
                                   re.IGNORECASE)
        self._size_cache: dict[str, tuple[str | None, int]] = {}  # bounded: raw match -> parsed
        # Glaze words (with their one-typo variants) grouped by first letter, so the engine tests one
        # character before trying any alternative.
        g = rf"{_first_letter_alternation(_typo_variants(glaze_words), '[a-z]')}(?![a-z])"
        pct = r"(?:\s*%|\s*por\s*ciento\b|\s*percent\b|\s*pct\b)"
        neg = "|".join(re.escape(w) for w in lex.NEGATIONS)
        self._gword_re = re.compile(g)
        self._pct_re = re.compile(rf"(?P<n>\d(?<![\d.,/]\d)\d{{0,2}})(?:[.,]\d+)?{pct}")
        self._glaze_after = re.compile(rf"\s*(?:de\s+|of\s+)?{g}")
        # "glaseo 15", "glaze: 10%", "glaseo al 20%"; up to three words only before a percent sign
        # ("glaze should be 15%", "el glaseo tiene que ser 20%").
        self._glaze_number = re.compile(
            rf"\s*(?:[:=]\s*|(?:de|del|al|a|of|at|es|is|was|fue|en|con|with)\s+)?(?P<n>\d{{1,3}})(?![\d/])"
            rf"(?:[.,]\d+)?(?P<p>{pct})?"
            rf"|(?:\s+[a-z]{{1,6}}){{1,3}}\s+(?P<n2>\d{{1,2}})(?:[.,]\d+)?(?P<p2>{pct})")
        self._amount_ahead = re.compile(rf"\s*(?:{unit_alt})(?![a-z])|\s*x\s*\d|\s*[/-]\s*\d")
        self._neg_before = re.compile(rf"(?<![a-z0-9])(?:{neg})\s*%?\s*(?:de\s+|of\s+)?$")
        number_words = _first_letter_alternation(lex.NUMBER_WORDS, r"[\w.,]")
        self._qty_word_re = re.compile(rf"{number_words}\s*(?:{unit_alt})(?![a-z]){ctr_suffix}")
        styles = sorted({_fold_phrase(s) for s in cfg.freezing_styles}, key=len, reverse=True)
        style_alt = "|".join(r"[\s-]*".join(re.escape(p) for p in re.split(r"[\s-]+", s)) for s in styles)
        style_part = rf"(?:(?:{style_alt})(?![a-z])[\s,;-]*)?" if style_alt else ""
        self._bare_gap_re = re.compile(rf"[\s,;:-]*{style_part}(?:(?:con|with|al|at|de)\s+)?$")
        excl = sorted({_fold_phrase(w) for w in cfg.glaze_exclusions if w.strip()}, key=len, reverse=True)
        excl_alt = "|".join(re.escape(w) for w in excl) or r"(?!x)x"
        self._excl_re = re.compile(rf"\s*(?:de\s+|del\s+|of\s+|en\s+|in\s+|as\s+|como\s+)?(?:{excl_alt})(?![a-z])")
        self._glaze_max = cfg.glaseo_max

    # -----------------------------------------------------------------------------------------

    def analyze_many(self, texts: list[str]) -> list[dict[str, Any]]:
        return [self.analyze(t) for t in texts]

    def analyze(self, text: str) -> dict[str, Any]:
        """The seed's flat analysis of one message (plus ``multi``). Never raises."""
        try:
            if not isinstance(text, str):
                text = "" if text is None else str(text)
            return self._analyze(text[:MAX_CHARS])
        except Exception as e:  # a bug must cost one record its analysis, not the batch
            log.warning("rules analyzer: %s on a text of %s characters", type(e).__name__,
                        len(text) if isinstance(text, str) else "?")
            return self._result(self._fallback, 0.0, {}, False)

    def _result(self, intent: int, conf: float, ents: dict[str, Any], multi: bool) -> dict[str, Any]:
        return {"intent": self.intents[intent], "product": ents.get("product"), "size": ents.get("size"),
                "glaseo_percentage": ents.get("glaseo_percentage"), "incoterm": ents.get("incoterm"),
                "destination": ents.get("destination"), "quantity": ents.get("quantity"),
                "confidence": conf, "multi": multi}

    def _token(self, t: str) -> str:
        """A token outside the static map: a typo of a cue word becomes that word (cached)."""
        if not t.isascii():
            bare = _COMBINING.sub("", t)
            return (self._token_map.get(bare) or self._token(bare)) if bare and bare != t else t
        out = self._speller.correct(t) if t.isalpha() else t
        m = self._token_map
        if len(m) - len(self._static_map) >= self.TOKEN_CACHE_MAX:
            m = self._token_map = dict(self._static_map)  # swap, never clear under a reader
        m[t] = out
        return out

    # -----------------------------------------------------------------------------------------

    def _analyze(self, text: str) -> dict[str, Any]:
        f = fold(text)
        if "[" in f:  # anonymizer placeholders carry no meaning here
            f = _PLACEHOLDER.sub(lambda m: _MASK * len(m.group()), f)
        spans = _Spans(f)
        get, slow = self._token_map.get, self._token
        toks = [get(t) or slow(t) for t in _TOKEN.findall(f)]

        # (first token, last token, payload) per kind of payload
        groups: tuple[list[tuple[int, int, tuple[Any, ...]]], ...] = ([], [], [], [], [], [], [])
        for hit in self._table.scan(toks):
            groups[hit[2][0]].append(hit)
        cues, products, incoterms, dests = groups[CUE], groups[PRODUCT], groups[INCOTERM], groups[DEST]

        sizes: list[tuple[int, int, str]] = []  # (start, end, normalized)
        glazes: list[tuple[int, int]] = []  # (start, value): explicit glaze mentions
        bare: list[tuple[int, int, int]] = []  # (start, end, value): a percentage alone
        amounts: list[tuple[int, int]] = []  # (start, end) of amounts
        if _DIGIT.search(f) is not None:
            self._numbers(f, toks, spans, bool(groups[GLAZE]), sizes, glazes, bare, amounts)
        elif groups[GLAZE]:  # "sin glaseo"
            self._glaze_words(f, glazes)
        if not self._number_words.isdisjoint(toks):
            amounts += [m.span() for m in self._qty_word_re.finditer(f)]
            amounts.sort()

        ents: dict[str, Any] = {}
        multi = False
        lo, hi = 0, len(f)
        if products:
            ents["product"] = products[0][2][1]
            multi = len({v[1] for _, _, v in products}) > 1
        if sizes:
            ents["size"] = sizes[0][2]
            multi = multi or len({s for _, _, s in sizes}) > 1
        if multi and "\n" in f.strip():
            lo, hi = self._first_line(f, [spans[i][0] for i, _, _ in products] + [p for p, _, _ in sizes])
        if incoterms:
            ents["incoterm"] = incoterms[0][2][1]
        if dests or incoterms:
            dest = self._destination(dests, incoterms, toks, spans, text)
            if dest:
                ents["destination"] = dest
        if glazes or bare:
            glaze = self._glaze(f, glazes, bare, products, sizes, spans, lo, hi)
            if glaze is not None:
                ents["glaseo_percentage"] = glaze
        qty = None
        whole = lo == 0 and hi == len(f)
        for a, b in amounts:
            if whole or self._in_scope(f, a, lo, hi):
                while b > a and text[b - 1].isspace():
                    b -= 1
                qty = ents["quantity"] = text[a:b]
                break
        return self._decide(f, toks, cues, ents, qty is not None, multi)

    # -----------------------------------------------------------------------------------------
    # entities

    def _numbers(self, f: str, toks: list[str], spans: _Spans, has_glaze_word: bool,
                 sizes: list[tuple[int, int, str]], glazes: list[tuple[int, int]],
                 bare: list[tuple[int, int, int]], amounts: list[tuple[int, int]]) -> None:
        """Sizes, explicit glazes, bare percentages and amounts, in text order."""
        cache = self._size_cache
        for m in self._size_re.finditer(f):
            sz = m.group()
            parsed = cache.get(sz)
            if parsed is None:
                parsed = _parse_size(sz)
                if len(cache) < 4096:
                    cache[sz] = parsed
            norm, low = parsed
            if norm is None:
                continue
            if low <= 12:  # only small pairs can be dates: look at the word before
                k = bisect.bisect_left(spans.all(), (m.start(), -1)) - 1
                if not _is_size(low, int(norm.split("/")[1]), toks[k] if k >= 0 else ""):
                    continue
            sizes.append((m.start(), m.end(), norm))
        # Amounts need a unit word or an "x" (2x40'); "10kg" and "5fcl" are one token each.
        qtys = self._qty_re.finditer(f) if not self._unit_words.isdisjoint(toks) or _GLUED.search(f) else ()
        for m in qtys:
            u = m.group("qu")
            if u is not None and " ".join(u.split()) in self._weight_units and (
                    f[max(0, m.start() - 3):m.start()].rstrip().endswith("x") or _amount(m.group("qn")) < 100):
                continue  # packing ("10x2kg", "cajas de 20 lb"), not an amount
            amounts.append(m.span())
        excl = self._excl_re.match
        pcts = self._pct_re.finditer(f) if "%" in f or "ciento" in f or "perc" in f or "pct" in f else ()
        for m in pcts:
            if self._glaze_after.match(f, m.end()):
                glazes.append((m.start(), int(m.group("n"))))  # "20% glaseo"
            elif not excl(f, m.end()):  # "30% de anticipo" is an advance
                bare.append((m.start(), m.end(), int(m.group("n"))))
        if has_glaze_word:
            self._glaze_words(f, glazes)
            glazes.sort()

    def _glaze_words(self, f: str, glazes: list[tuple[int, int]]) -> None:
        """Glaze read from the word: "sin glaseo" -> 0, "glaseo 15", "glaze: 10%", "glaseo al 20%"."""
        for m in self._gword_re.finditer(f):
            if self._neg_before.search(f, max(0, m.start() - 12), m.start()):
                glazes.append((m.start(), 0))
                continue
            n = self._glaze_number.match(f, m.end())
            if n is None:
                continue
            if n.group("n") is None:  # the worded form always has its percent sign
                if not self._excl_re.match(f, n.end()):
                    glazes.append((m.start(), int(n.group("n2"))))
            elif n.group("p") is None:
                if not self._amount_ahead.match(f, n.end()):  # "glaseo 2 contenedores" is an amount
                    glazes.append((m.start(), int(n.group("n"))))
            elif not self._excl_re.match(f, n.end()):
                glazes.append((m.start(), int(n.group("n"))))

    def _glaze(self, f: str, glazes: list[tuple[int, int]], bare: list[tuple[int, int, int]],
               products: list[tuple[int, int, tuple[Any, ...]]], sizes: list[tuple[int, int, str]], spans: _Spans,
               lo: int, hi: int) -> int | None:
        mx = self._glaze_max
        best: tuple[int, int] | None = None
        for pos, v in glazes:
            if v <= mx and self._in_scope(f, pos, lo, hi):
                best = (pos, v)
                break
        if bare and (products or sizes) and (best is None or bare[0][0] < best[0]):
            # A bare "20%" counts right after the product or size: only spaces, commas, a freezing
            # style or "con" between ("PD 31/40 30% medio contenedor", "cola 31/35 bloque 5%").
            anchors = [e for _, e, _ in sizes] + [spans[j][1] for _, j, _ in products]
            for pos, _end, v in bare:
                if best is not None and pos >= best[0]:
                    break
                before = [a for a in anchors if a <= pos]
                if v <= mx and before and self._bare_gap_re.match(f[max(before):pos]) and self._in_scope(
                        f, pos, lo, hi):
                    best = (pos, v)
                    break
        return None if best is None else best[1]

    @staticmethod
    def _first_line(f: str, positions: list[int]) -> tuple[int, int]:
        """The span of the first line holding a product or a size (entities of a multi message)."""
        if not positions:
            return 0, len(f)
        p = min(positions)
        lo = f.rfind("\n", 0, p) + 1
        hi = f.find("\n", p)
        return lo, (len(f) if hi < 0 else hi)

    def _in_scope(self, f: str, pos: int, lo: int, hi: int) -> bool:
        """Inside the first product line, or on a line that names no product (a shared spec)."""
        if lo <= pos < hi or (lo == 0 and hi == len(f)):
            return True
        a = f.rfind("\n", 0, pos) + 1
        b = f.find("\n", pos)
        line = f[a: len(f) if b < 0 else b]
        if self._size_re.search(line):
            return False
        return not any(v[0] == PRODUCT for _, _, v in self._table.scan(_TOKEN.findall(line)))

    @staticmethod
    def _spelling(hit: tuple[int, int, tuple[Any, ...]], text: str, spans: _Spans) -> str:
        """Of places that differ only in accents, the one spelled like the text."""
        written = text[spans[hit[0]][0]:spans[hit[1]][1]].lower()
        for place in hit[2][1:]:
            if place.lower() == written:
                return place
        return hit[2][1]

    def _destination(self, dests: list[tuple[int, int, tuple[Any, ...]]],
                     incoterms: list[tuple[int, int, tuple[Any, ...]]],
                     toks: list[str], spans: _Spans, text: str) -> str | None:
        origin: str | None = None
        for hit in dests:
            i, v = hit[0], hit[2]
            place = v[1] if len(v) == 2 else self._spelling(hit, text, spans)
            k = i - 1
            while k >= 0 and toks[k] in lex.PLACE_LINKS:
                k -= 1
            if k >= 0 and toks[k] in lex.EVENT_WORDS:
                continue  # "la feria de Barcelona", "I will be in Guayaquil"
            if i > 0 and toks[i - 1] in lex.ORIGIN_WORDS:
                origin = origin or place  # "desde Guayaquil a Vigo": Vigo
                continue
            return place
        if origin and incoterms:
            return origin
        # A place outside the list right after an incoterm ("CFR Tampa"), written capitalized.
        for _, j, _ in incoterms:
            k = j + 1
            while k < len(toks) and toks[k] in lex.DEST_LINKS:
                k += 1
            if k < len(toks):
                t = toks[k]
                if len(t) >= 3 and t.isalpha() and t not in self._known:
                    a, b = spans[k]
                    if text[a:a + 1].isupper():
                        return text[a:b]
        return None

    # -----------------------------------------------------------------------------------------
    # intent

    def _decide(self, f: str, toks: list[str], cues: list[tuple[int, int, tuple[Any, ...]]],
                ents: dict[str, Any], has_qty: bool, multi: bool) -> dict[str, Any]:
        scores: dict[int, float] = {}
        strong: set[int] = set()
        greeting: set[int] = set()  # tokens of greeting and thanks hits
        greet_hits = 0
        if cues:
            thanks = not lex.THANKS_WORDS.isdisjoint(toks)
            units, numbers, n = self._unit_words, self._number_words, len(toks)
            for a, b, (_, intent, w) in cues:
                if has_qty and a == b and a and toks[a] in units and (toks[a - 1][0].isdigit()
                                                                      or toks[a - 1] in numbers):
                    continue  # "3 contenedores" is an amount, not talk about containers
                if intent == self._greeting or (thanks and self._thanked(toks, a)):
                    # "gracias por la proforma" is thanks, not a request
                    greet_hits += 1
                    greeting.update(range(a, b + 1))
                    continue
                if b + 1 < n and toks[b + 1][0] == _MASK:
                    continue  # "correo [EMAIL]", "cuenta [ACCOUNT]": a label for contact data, not a topic
                if intent == self._order and self._is_reference(toks, a, b):
                    w = W_REFERENCE
                scores[intent] = scores.get(intent, 0.0) + w
                if w >= W_STRONG:
                    strong.add(intent)

        if "product" in ents or "size" in ents:
            if "?" in f or self._asks(toks, greeting):
                if self._question is not None and not scores:
                    scores[self._question] = W_SPEC_QUESTION
            elif self._order is not None:
                scores[self._order] = scores.get(self._order, 0.0) + W_SPEC

        # Words neither known nor in the catalog or the cues: names, or phrasing never seen.
        unexplained = len([t for t in set(toks).difference(self._known) if len(t) > 1 and t.isalpha()])

        if not scores:
            if self._greeting is not None and greet_hits and unexplained <= 2 and not ents:
                return self._result(self._greeting, _CALIBRATION["greeting"][2 - unexplained], ents, multi)
            # Nothing recognized: short acknowledgements ("ok", "👍") are the fallback for sure;
            # a long message nobody recognized may be an unseen phrasing of any intent.
            level = 2 if unexplained == 0 else (1 if unexplained <= 2 else 0)
            return self._result(self._fallback, _CALIBRATION["fallback"][level], ents, multi)

        if len(scores) == 1:
            (best, s1), = scores.items()
            margin = s1
        else:
            rank = self._rank
            ranked = sorted(scores, key=lambda k: (-scores[k], rank[k]))
            best = ranked[0]
            s1 = scores[best]
            margin = s1 - scores[ranked[1]]
        if s1 == W_SPEC and best == self._order:
            conf = _CALIBRATION["spec"][1 if unexplained <= 1 else 0]
        elif s1 == W_SPEC_QUESTION and best == self._question:
            conf = _CALIBRATION["question"][0]
        else:
            level = 4 if margin >= 4 else 3 if margin >= 2 else 2 if margin >= 1 else 1 if margin > 0 else 0
            level -= (best not in strong) + (unexplained >= 3)
            conf = _CALIBRATION["cue"][max(0, level)]
        return self._result(best, conf, ents, multi)

    @staticmethod
    def _asks(toks: list[str], greeting: set[int]) -> bool:
        """A question without "?": its first word after greetings is a question word."""
        for i, t in enumerate(toks):
            if i in greeting or t in lex.FILLERS or not t[0].isalnum():
                continue
            return t in lex.QUESTION_STARTS
        return False

    @staticmethod
    def _thanked(toks: list[str], a: int) -> bool:
        k = a - 1
        while k >= 0 and a - k <= 4:
            t = toks[k]
            if t in lex.THANKS_WORDS:
                return True
            if t not in lex.THANKS_LINKS:
                return False
            k -= 1
        return False

    def _is_reference(self, toks: list[str], a: int, b: int) -> bool:
        """An order cue that cites a document ("proforma 356", "PI-2024-219", "pedido no. 12") or
        hangs off another noun ("el anticipo del pedido") refers to an existing order."""
        n = len(toks)
        k = b + 1
        while k < n:  # "proforma no. 356", "pedido #12", "la PI es la 2024-77", "PI: ..."
            t = toks[k]
            if not (t in lex.CITATION_WORDS or (len(t) <= 2 and not t[0].isalnum() and t != "\n")
                    or (t in lex.ARTICLES and toks[k - 1] in ("es", "is"))):
                break
            k += 1
        if k < n and toks[k][0].isdigit() and not _PACKING.fullmatch(toks[k]):
            while k < n and (toks[k][0].isdigit() or toks[k] == "/"):
                k += 1
            if k >= n or toks[k] not in self._unit_words:  # "proforma 4 contenedores" orders 4
                return True
        k = a - 1
        if k >= 0 and toks[k] in lex.ARTICLES:
            k -= 1
        # "del pedido", or "de la proforma" / "of the order" (the article is required there)
        return k >= 0 and (toks[k] == "del" or (toks[k] in lex.REFERENCE_WORDS and k < a - 1))


def _parse_size(sz: str) -> tuple[str | None, int]:
    """("16 - 20s") -> ("16/20", 16); ("U-10") -> ("U10", 99); (None, 0) when not a count."""
    nums = _NUMBER.findall(sz)
    if sz[0] in "uU":
        v = int(nums[0]) if len(nums) == 1 else 0
        return (f"U{v}", 99) if 2 <= v <= 30 else (None, 0)
    if len(nums) != 2:
        return None, 0
    a, b = int(nums[0]), int(nums[1])
    return (f"{a}/{b}", a) if _is_size(a, b, "") else (None, 0)


def _is_size(a: int, b: int, prev: str) -> bool:
    if not (1 <= a < b <= 500) or b - a < 2:
        return False
    if a <= 12:
        # Small counts collide with dates (9/20, 10/26, 1-12): accept only size-like pairs
        # (even lower bound or 11, upper bound at most 2.5 times) not introduced by a date word.
        if prev in lex.DATE_WORDS or (a % 2 and a != 11) or b > 2.5 * a + 1:
            return False
    return True


def _first_letter_alternation(words: Iterable[str], not_before: str) -> str:
    """``(?:w1|w2|...)`` preceded by no ``not_before`` character, written as one branch per first
    letter ("g(?<!Xg)(?:laseo|laze)") so the engine skips ahead to candidate letters quickly."""
    by_first: dict[str, list[str]] = {}
    for w in words:
        if w:
            by_first.setdefault(w[0], []).append(re.escape(w[1:]).replace(r"\ ", r"\s+"))
    branches = []
    for c, rest in sorted(by_first.items()):
        alt = "|".join(sorted(rest, key=len, reverse=True))
        branches.append(rf"{re.escape(c)}(?<!{not_before}{re.escape(c)})(?:{alt})")
    return rf"(?:{'|'.join(branches)})" if branches else r"(?!x)x"


def _typo_variants(words: Iterable[str]) -> set[str]:
    """A word with two letters swapped or, from six letters on, one dropped (first letter kept)."""
    out: set[str] = set()
    for w in words:
        out.add(w)
        for i in range(1, len(w) - 1):
            out.add(w[:i] + w[i + 1] + w[i] + w[i + 2:])
        if len(w) >= 6:
            for i in range(1, len(w)):
                out.add(w[:i] + w[i + 1:])
    return out


def _amount(n: str) -> float:
    if re.fullmatch(r"\d{1,3}(?:[.,]\d{3})+", n):
        return float(re.sub(r"[.,]", "", n))
    try:
        return float(n.replace(",", "."))
    except ValueError:
        return 0.0
