"""The detector interface, the per-message context every detector reads, and span merging.

A detector is a small object with ``find(ctx) -> list[Span]``. It must be correct on any str (no
catch-all: the property tests feed it arbitrary unicode) and keep no per-message state, so one
instance serves every thread.

Speed: a bot's hot path allows some tens of microseconds a message, and ``re`` scanning a
message once per cue list would spend that several times over. So each detector *declares* its
cue words (``keywords()``); the engine folds every declaration (and the whitelist's terms) into
one character-trie regex, runs it once over the lower-cased message, and hands each detector
the positions of its own words (``ctx.hits``). Digit groups are likewise found once
(``ctx.chunks``), and a detector whose evidence is absent does no work at all.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, NamedTuple

TYPES: tuple[str, ...] = ("PHONE", "EMAIL", "ADDRESS", "ID", "ACCOUNT", "NAME")

# Overlaps are settled by priority: evidence that names the type (a cue, a checksum, an '@')
# beats evidence that only fits a shape.
P_EMAIL = 100
P_ACCOUNT = 90  # IBAN, card (Luhn) or a number after an account cue
P_ID = 80  # checksum-valid ID or a number after an ID cue
P_PHONE = 60  # validated by phonenumbers
P_ADDRESS = 50
P_PHONE_WEAK = 40  # only possible, lifted by a cue or a phone-like format
P_NAME = 30
P_STRICT = 10  # the strict profile's catch-alls

# A placeholder this package wrote: never masked again (idempotence).
PLACEHOLDER_RE = re.compile(r"\[(?:PHONE|EMAIL|ADDRESS|ID|ACCOUNT|NAME)(?:_\d+)?\]")
_DIGIT = re.compile(r"[0-9]")  # on text whose digits the engine made ASCII


class Span(NamedTuple):
    """A detected piece of personal data: ``text[start:end]`` is of ``type``.

    A named tuple: detectors make thousands a second, and a tuple is the cheapest object."""

    start: int
    end: int
    type: str
    text: str = ""
    priority: int = 0
    # atomic spans keep protected words inside them: an e-mail address, a full name whose
    # surname is also a catalog place ("José Valencia")
    atomic: bool = False


def trie_regex(words: Iterable[str]) -> str:
    """One alternation for many lower-case words/phrases, as a character trie.

    ``re`` tries the alternatives of ``a|b|c`` one after the other at every position; a trie
    branches on the first character instead, which makes a 300-word alternation about fifteen
    times faster. A space in a phrase matches any run of whitespace.
    """
    root: dict[str, Any] = {}
    for w in words:
        if not w:
            continue
        node = root
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        end = "" in node
        alts = [(r"\s+" if ch == " " else re.escape(ch)) + build(sub) for ch, sub in sorted(node.items()) if ch]
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        if end:
            return "(?:" + body + ")?"
        return body

    return "(?:" + build(root) + ")"


def lower_same_length(text: str) -> str:
    """``text.lower()`` with every index kept (a few characters lower to two, e.g. 'İ')."""
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


_WORD_START = "[ \t\n\r\f\v(¿¡\"'/,.;:!?*<>«»“”‘’—–…&+\\-]"
# Punctuation around a word ("(cel)", "Saludos,", "Av.") is not part of it.
EDGE = ".,;:!?¿¡()[]{}<>\"'“”‘’«»…*"


def keyword_form(word: str) -> str:
    """How the lexer stores and finds a keyword: lower case, single spaces, edge punctuation off."""
    return " ".join(w.strip(EDGE) for w in word.lower().split() if w.strip(EDGE))


class Lexer:
    """Finds every declared keyword of a message in one pass; built once, shared by threads."""

    def __init__(self, groups: dict[str, Iterable[str]]) -> None:
        tags: dict[str, list[str]] = {}
        for tag, words in groups.items():
            for w in words:
                w = keyword_form(w)
                if w and tag not in tags.setdefault(w, []):
                    tags[w].append(tag)
        self._tags = {w: tuple(t) for w, t in tags.items()}
        # A word starts after a blank or punctuation (so never inside an e-mail address nor a
        # placeholder like "[ADDRESS]") and ends before anything but a letter (digits may follow:
        # "cel0991234567", "u10"). The separator is matched, not looked behind at: a pattern that
        # starts with a plain character set lets ``re`` skip to the next word start in C, which
        # halves the cost of the pass.
        self._rx = re.compile(rf"{_WORD_START}({trie_regex(self._tags)})(?![a-zß-ÿ])") if tags else None

    def scan(self, lower: str) -> dict[str, list[tuple[int, int]]]:
        hits: dict[str, list[tuple[int, int]]] = {}
        if self._rx is None:
            return hits
        tags_of = self._tags
        add = hits.setdefault
        for m in self._rx.finditer(" " + lower):  # (the leading blank: a word at the very start)
            w = m.group(1)
            # (a phrase typed with other whitespace is looked up in its canonical form)
            tags = tags_of.get(w) or tags_of.get(" ".join(w.split()), ())
            s, e = m.span(1)
            span = (s - 1, e - 1)
            for t in tags:
                add(t, []).append(span)
        return hits


# Digits joined by the separators people type between them (the scorer's notion of one number),
# four digits at least.
# (ASCII classes and possessive repeats: the engine has made every digit ASCII, and a category
# test per character is what makes a full-text scan slow)
_CHUNK = re.compile(r"[0-9](?:(?!\.[ \t])[ \t.,:/()\-]{0,3}+[0-9]){3,}+")   # (". " ends a sentence)
_SEPARATORS = str.maketrans("", "", " \t.,:/()-")


def digit_chunks(text: str) -> list[tuple[int, int, int]]:
    """(start, end, number of digits) of every chunk of 4+ digits."""
    return [(m.start(), m.end(), len(m.group().translate(_SEPARATORS))) for m in _CHUNK.finditer(text)]


class Ranges:
    """Sorted, disjoint protected ranges, computed on first use."""

    __slots__ = ("_compute", "_ranges", "_starts")

    def __init__(self, compute: Callable[[], list[tuple[int, int]]] | None = None,
                 ranges: list[tuple[int, int]] | None = None) -> None:
        self._compute = compute
        self._ranges = ranges
        self._starts: list[int] = [s for s, _ in ranges] if ranges else []

    @property
    def ranges(self) -> list[tuple[int, int]]:
        if self._ranges is None:
            self._ranges = self._compute() if self._compute is not None else []
            self._starts = [s for s, _ in self._ranges]
        return self._ranges

    def overlaps(self, start: int, end: int) -> bool:
        """True if ``[start, end)`` touches a range."""
        prot = self._ranges
        if prot is None:
            prot = self.ranges
        if not prot:
            return False
        i = bisect_right(self._starts, start) - 1
        if i >= 0 and prot[i][1] > start:
            return True
        return i + 1 < len(prot) and prot[i + 1][0] < end

    def only_within(self, start: int, end: int) -> bool:
        """True if every range touching ``[start, end)`` lies inside it (a catalog word that is
        exactly this token, not a longer term the token is part of)."""
        prot = self.ranges
        i = max(bisect_right(self._starts, start) - 1, 0)
        for ps, pe in prot[i:]:
            if ps >= end:
                break
            if pe > start and (ps < start or pe > end):
                return False
        return True

    def free_pieces(self, start: int, end: int) -> list[tuple[int, int]]:
        """``[start, end)`` minus the ranges."""
        if not self.overlaps(start, end):
            return [(start, end)]
        i = max(bisect_right(self._starts, start) - 1, 0)
        return subtract(start, end, self.ranges[i:])


class Context:
    """What the detectors share about one message: its text (and lower-cased copy), the
    profile, the keyword hits, the digit chunks, and the protected ranges (whitelist, keep
    values, placeholders) that no detector may touch.

    Protection comes in two layers, each computed only when first asked for: ``words`` (catalog
    terms, month names ...: what a name or street could touch) and ``digits`` (dates, sizes,
    prices, document numbers ...: what a number could touch); ``overlaps`` and friends read
    both."""

    __slots__ = ("text", "lower", "strict", "known_names", "hits", "chunks", "max_digits", "has_digit", "claimed",
                 "words", "digits", "_all", "_long")

    def __init__(self, text: str, protected: list[tuple[int, int]] | None = None, strict: bool = False,
                 known_names: tuple[str, ...] = (), lower: str | None = None,
                 hits: dict[str, list[tuple[int, int]]] | None = None,
                 chunks: list[tuple[int, int, int]] | None = None) -> None:
        self.text = text
        self.lower = lower if lower is not None else lower_same_length(text)
        self.strict = strict
        self.known_names = known_names
        self.hits = hits if hits is not None else {}
        if chunks is None:
            self.has_digit = _DIGIT.search(text) is not None
            chunks = digit_chunks(text) if self.has_digit else []
        else:
            self.has_digit = bool(chunks) or _DIGIT.search(text) is not None
        self.chunks = chunks
        self.max_digits = max([c[2] for c in chunks]) if chunks else 0
        # ranges a detector took on evidence that names the type (an ID cue, an IBAN checksum):
        # later detectors need not look there again
        self.claimed: list[tuple[int, int]] = []
        self._long: dict[int, list[tuple[int, int, int]]] = {}
        self.set_protected(protected or [])

    def set_protected(self, protected: list[tuple[int, int]]) -> None:
        self._all = self.words = self.digits = Ranges(ranges=protected)

    def protect_lazily(self, words: Callable[[Context], list[tuple[int, int]]],
                       digits: Callable[[Context], list[tuple[int, int]]] | None = None) -> None:
        """Protected ranges are computed on first use: a message no detector finds a candidate
        in never pays for them. With one function, both layers are the same."""
        if digits is None:
            self._all = self.words = self.digits = Ranges(lambda: words(self))
            return
        self.words = Ranges(lambda: words(self))
        self.digits = Ranges(lambda: digits(self))
        self._all = Ranges(lambda: union_ranges(self.words.ranges + self.digits.ranges))

    @property
    def protected(self) -> list[tuple[int, int]]:
        return self._all.ranges

    def is_claimed(self, start: int, end: int) -> bool:
        return any(s <= start and end <= e for s, e in self.claimed)

    def long_chunks(self, min_digits: int) -> list[tuple[int, int, int]]:
        """The chunks of at least ``min_digits`` digits (asked by several detectors: kept)."""
        if self.max_digits < min_digits:
            return []
        got = self._long.get(min_digits)
        if got is None:
            got = self._long[min_digits] = [c for c in self.chunks if c[2] >= min_digits]
        return got

    def number_near(self, pos: int, within: int, min_digits: int) -> bool:
        """True if a chunk of ``min_digits``+ digits starts in ``[pos, pos + within]``: a cue word
        with no number after it needs no closer look."""
        return any(pos <= cs <= pos + within and nd >= min_digits for cs, _, nd in self.chunks)

    def overlaps(self, start: int, end: int) -> bool:
        """True if ``[start, end)`` touches a protected range."""
        return self._all.overlaps(start, end)

    def only_within(self, start: int, end: int) -> bool:
        return self._all.only_within(start, end)

    def free_pieces(self, start: int, end: int) -> list[tuple[int, int]]:
        """``[start, end)`` minus the protected ranges."""
        return self._all.free_pieces(start, end)


class Detector(ABC):
    """One entity type's detector. Subclasses set ``type`` and implement ``find``."""

    type: ClassVar[str]

    def keywords(self) -> dict[str, Iterable[str]]:
        """Tag -> lower-case words whose positions ``find`` reads from ``ctx.hits[tag]``."""
        return {}

    @abstractmethod
    def find(self, ctx: Context) -> list[Span]:
        """Every span of this type in ``ctx.text`` (overlaps and protected ranges allowed:
        :func:`resolve` settles them)."""


def union_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, merged copy of possibly overlapping ``(start, end)`` ranges."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(ranges):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _insert_range(ranges: list[tuple[int, int]], r: tuple[int, int]) -> None:
    """Merge ``r`` into sorted, disjoint ``ranges`` in place (a whole re-sort per span made
    resolving a message of hundreds of spans quadratic)."""
    s, e = r
    i = bisect_right(ranges, (s, e))
    if i > 0 and ranges[i - 1][1] >= s:   # touches the one before
        i -= 1
        s = ranges[i][0]
    j = i
    while j < len(ranges) and ranges[j][0] <= e:
        e = max(e, ranges[j][1])
        j += 1
    ranges[i:j] = [(s, max(e, ranges[i][1]) if i < j else e)]


def subtract(start: int, end: int, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``[start, end)`` minus sorted, non-overlapping ``ranges``."""
    out: list[tuple[int, int]] = []
    pos = start
    for rs, re_ in ranges:
        if rs >= end:
            break
        if re_ <= pos:
            continue
        if rs > pos:
            out.append((pos, rs))
        pos = max(pos, re_)
    if pos < end:
        out.append((pos, end))
    return out


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink a range to its alphanumeric core (punctuation at the edges stays visible),
    keeping a leading '+' and the parentheses of an area code."""
    while start < end and not text[start].isalnum() and not (
            text[start] == "+" or (text[start] == "(" and ")" in text[start:end])):
        start += 1
    while end > start and not text[end - 1].isalnum() and not (text[end - 1] == ")" and "(" in text[start:end]):
        end -= 1
    return start, end


_NUMERIC = frozenset(("PHONE", "ID", "ACCOUNT"))


def _layer(ctx: Context, kind: str) -> Ranges:
    """The protection a span of this type can collide with: a number only with trade notation,
    a name only with catalog words, an address with both."""
    if kind in _NUMERIC:
        return ctx.digits
    return ctx.words if kind == "NAME" else ctx._all


def resolve(spans: list[Span], ctx: Context) -> list[Span]:
    """Settle protected ranges and overlaps; return sorted, disjoint spans with their text.

    Spans are painted from the highest priority down: each takes only what is still free, so
    the masked area is the union of all detections (nothing either detector found stays
    visible) while each piece keeps the type with the strongest evidence. Emails are atomic (a
    catalog word inside an address is not the catalog word); every other span loses its
    protected parts.
    """
    text = ctx.text
    if not spans:
        return []
    # the common case: nothing overlaps anything
    ordered = sorted(spans) if len(spans) > 1 else spans
    prev_end = -1
    simple = True
    for x in ordered:
        if x.start < prev_end or (x.type != "EMAIL" and not x.atomic and _layer(ctx, x.type).overlaps(x.start, x.end)):
            simple = False
            break
        prev_end = x.end
    if simple:
        out_fast = []
        for x in ordered:
            a, b = _trim(text, x.start, x.end)
            if a < b:
                out_fast.append(Span(a, b, x.type, text[a:b]))
        return out_fast
    painted: list[tuple[int, int, str, int, int]] = []  # start, end, type, priority, group
    taken: list[tuple[int, int]] = []
    seen: list[tuple[int, int, str, int]] = []  # accepted detections: start, end, type, group
    for sp in sorted(spans, key=lambda x: (-x.priority, x.start, x.start - x.end)):
        base = [(sp.start, sp.end)] if sp.type == "EMAIL" or sp.atomic else _layer(ctx, sp.type).free_pieces(
            sp.start, sp.end)
        new = []
        for a, b in base:
            for s, e in subtract(a, b, taken):
                s, e = _trim(text, s, e)
                if s < e and any(c.isalnum() for c in text[s:e]):
                    new.append((s, e))
        if not new:
            continue
        # a detection overlapping an earlier one of its type continues it (one span, one count)
        group = next((g for s, e, t, g in seen if t == sp.type and s < sp.end and sp.start < e), len(seen))
        seen.append((sp.start, sp.end, sp.type, group))
        painted.extend((s, e, sp.type, sp.priority, group) for s, e in new)
        for r in new:
            _insert_range(taken, r)
    painted.sort()
    out: list[tuple[int, int, str, int, int]] = []
    for s, e, t, p, g in painted:
        gap = text[out[-1][1]:s] if out else ""
        if out and out[-1][4] == g and not any(c.isalnum() for c in gap) and "\n" not in gap:
            out[-1] = (out[-1][0], e, t, max(p, out[-1][3]), g)
        else:
            out.append((s, e, t, p, g))
    return [Span(s, e, t, text[s:e]) for s, e, t, _, _ in out]
