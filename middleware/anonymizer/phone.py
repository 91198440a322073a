"""PHONE: one scan for digit runs, each run validated against phonenumbers' metadata.

``PhoneNumberMatcher`` costs about 600 µs a message when run once per region, and even
``parse`` + ``is_valid_number`` cost 20-40 µs a candidate; a bot's hot path has some tens of µs
for the whole message. So the digit runs come from the shared chunk scan (groupings people
type, ``whatsapp:+...``, ``wa.me/...``, numbers glued to a cue word), each run is split into
windows of digit groups, and a window is valid when phonenumbers' own metadata for the region
says so: the same rule as ``is_valid_number_for_region`` (the general pattern, then any number
type's lengths and pattern), read from ``PhoneMetadata`` once and compiled. A test holds the
two equal. Regions: inferred from a ``+``/``00`` prefix or a country code, otherwise tried in
the configured order. A cue word (cel, whatsapp, tel, llámame, call me ...) or a phone-like
layout lifts numbers that are only *possible* (a new range, a typo): the privacy scorer counts
them as leaks all the same.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import phonenumbers
from phonenumbers import PhoneMetadata

from .base import P_PHONE, P_PHONE_WEAK, P_STRICT, Context, Detector, Span

DEFAULT_CUES = (
    "cel", "celu", "celular", "cell", "cellphone", "whatsapp", "whats", "wsp", "wapp", "wa", "tel", "telf", "tlf",
    "teléfono", "telefono", "tfno", "fono", "móvil", "movil", "mobile", "mob", "llámame", "llamame", "llámanos",
    "llamanos", "llamar", "llama", "llamada", "escríbeme", "escribeme", "escríbenos", "número", "numero", "phone",
    "call me", "call", "text me", "reach", "contact", "contacto", "contato", "ligar", "ligue", "telemóvel",
)
# Cues too common to count unless they stand right before the number ("cualquier cosa al ...").
WEAK_CUES = ("al", "at", "to", "m", "t", "ph", "no", "nro", "num", "nº", "n°", "whatsapp:", "wsp:")

# A run: optional '+', digit groups joined by at most three of ' .-()' (never across a line).
# (". " ends a sentence, not a group: "al 099 123 4567. 1.600 cajas")
_RUN = re.compile(r"(?<!\d)(?:\+[ \t]?)?\(?\d+(?:(?!\.[ \t])[ \t.\-()]{1,3}\d+)*\)?")
_GROUP = re.compile(r"\d+")
_EXTENSION = re.compile(r"[ \t]?(?:x|ext\.?|extensi[óo]n|ext[ \t]?\.)[ \t]?\d{1,6}\b", re.I)
# Text right before a number written without '+' in international form.
_INTL_HINTS = ("wa.me/", "phone=", "whatsapp:", "wsp:", "tel:", "+(", "+ (")


def _intl_hint(lower: str, start: int) -> bool:
    """Text right before a number written without its '+' in international form (wa.me/593...)."""
    return lower[max(0, start - 12):start].rstrip().endswith(_INTL_HINTS)


_Desc = tuple[frozenset[int], re.Pattern[str]]

# The number types phonenumbers counts as valid (phonenumberutil._number_type_helper), the
# common ones first: validity is "any of them", and most numbers typed are mobiles or landlines.
_VALID_TYPES = ("mobile", "fixed_line", "premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager",
                "uan", "voicemail")


@dataclass(frozen=True, slots=True)
class _Region:
    code: str
    cc: int
    trunk: re.Pattern[str] | None  # the national (trunk) prefix as written before a national number
    lengths: frozenset[int]  # possible lengths of a national significant number
    trunk_first: str  # the digits a trunk prefix can start with
    trunk_text: str  # the trunk prefix when it is a plain digit string
    general: _Desc
    types: tuple[_Desc, ...]

    def national(self, d: str) -> list[str]:
        """The national significant numbers ``d`` may stand for: without its trunk prefix, or itself."""
        if self.trunk_text:  # a plain prefix ("0", "1"): no regex call
            return [d[len(self.trunk_text):], d] if d.startswith(self.trunk_text) else [d]
        if self.trunk is not None:
            m = self.trunk.match(d)
            if m and m.end():
                return [d[m.end():], d]
        return [d]

    def valid(self, nsn: str) -> bool:
        """``phonenumbers.is_valid_number_for_region`` for a national significant number."""
        n = len(nsn)
        lengths, pattern = self.general
        if (lengths and n not in lengths) or not pattern.fullmatch(nsn):
            return False
        for ls, p in self.types:
            if (not ls or n in ls) and p.fullmatch(nsn):
                return True
        return False


def _desc(d: object) -> _Desc | None:
    pattern = getattr(d, "national_number_pattern", None)
    if not pattern:
        return None
    return frozenset(getattr(d, "possible_length", None) or ()), re.compile(pattern)


@cache
def region(code: str) -> _Region:
    """A region's metadata, compiled once (thread-safe cache)."""
    md = PhoneMetadata.metadata_for_region(code)
    assert md is not None and md.general_desc is not None
    npp = md.national_prefix_for_parsing or md.national_prefix
    # a transform rule (AR, MX of old) rewrites rather than strips: leave those to the plain form
    trunk = re.compile(npp) if npp and not md.national_prefix_transform_rule else None
    general = _desc(md.general_desc)
    assert general is not None
    types = tuple(t for t in (_desc(getattr(md, name, None)) for name in _VALID_TYPES) if t is not None)
    first = "".join(c for c in "0123456789" if trunk is not None and trunk.match(c + "0000000000"))
    plain = npp if npp and npp.isdigit() and trunk is not None else ""
    return _Region(code, int(md.country_code or 0), trunk, frozenset(md.general_desc.possible_length or ()), first, plain,
                   general, types)


_CC_REGIONS = phonenumbers.COUNTRY_CODE_TO_REGION_CODE


class PhoneDetector(Detector):
    type = "PHONE"

    def __init__(self, regions: Iterable[str] = ("EC", "ES", "US", "PT", "MX", "CO", "PE"),
                 cues: Iterable[str] = ()) -> None:
        self.regions = [region(r) for r in regions]
        self._codes = frozenset(r.code for r in self.regions)
        self._by_cc: dict[int, tuple[_Region, ...]] = {}
        for r in self.regions:
            self._by_cc[r.cc] = (*self._by_cc.get(r.cc, ()), r)
        # the country codes of the configured regions: a run starting with one may be written
        # without its '+' (593991234567)
        self._ccs = tuple(sorted({str(phonenumbers.country_code_for_region(r.code)) for r in self.regions}))
        self._cues = frozenset({*DEFAULT_CUES, *(" ".join(c.lower().split()) for c in cues if c and c.strip())})
        weak = "|".join(re.escape(w) for w in WEAK_CUES)
        self._weak = re.compile(rf"(?<![^\W\d_])(?:{weak})\.?:?[ \t]*$")

    def keywords(self) -> dict[str, Iterable[str]]:
        return {"phone.cue": self._cues}

    # -- validation ------------------------------------------------------------------------

    def _valid_national(self, d: str) -> bool:
        n = len(d)
        for r in self.regions:
            if n in r.lengths and r.valid(d):
                return True
            if r.trunk is not None and d[0] in r.trunk_first:
                for nsn in r.national(d)[:-1]:
                    if len(nsn) in r.lengths and r.valid(nsn):
                        return True
        return False

    def _possible_national(self, d: str) -> bool:
        return any(len(nsn) in r.lengths for r in self.regions for nsn in r.national(d))

    def _intl(self, d: str) -> int:
        """2 valid, 1 possible, 0 neither, for digits written after a '+' (or '00')."""
        for k in (1, 2, 3):
            cc = int(d[:k]) if len(d) > k else 0
            codes = _CC_REGIONS.get(cc)
            if not codes:
                continue  # country calling codes are prefix-free: the first known one is it
            nsn = d[k:]
            n = len(nsn)
            # the configured regions of this code first: '+1' is shared by some 25 regions
            mine = self._by_cc.get(cc, ())
            for r in mine:
                if n in r.lengths and r.valid(nsn):
                    return 2
                # "+593 0991234567": a trunk prefix kept by mistake
                stripped = r.national(nsn)
                if len(stripped) > 1 and r.valid(stripped[0]):
                    return 2
            others = [region(c) for c in codes if c != "001" and c not in self._codes]
            if any(n in r.lengths and r.valid(nsn) for r in others):
                return 2
            return 1 if any(n in r.lengths for r in (*mine, *others)) else 0
        return 0

    def valid_number(self, digits: str) -> bool:
        """A valid phone number of the configured regions (or any, after '+'/'00'): digits only,
        with a leading '+' when it is written."""
        plus = digits.startswith("+")
        d = digits.lstrip("+")
        return 7 <= len(d) <= 15 and d.isdigit() and self._grade(d, plus, False) == 2

    def _grade(self, d: str, plus: bool, intl_hint: bool) -> int:
        """2 valid, 1 possible (or plausibly international), 0 not a phone number."""
        if plus or d.startswith("00"):
            d = d if plus else d[2:]
            g = self._intl(d)
            return g if g else (1 if 8 <= len(d) <= 15 else 0)
        if intl_hint:
            g = self._intl(d)
            if g:
                return g
        if self._valid_national(d):
            return 2
        if len(d) >= 11 and d.startswith(self._ccs) and self._intl(d) == 2:
            return 2
        return 1 if self._possible_national(d) else 0

    # -- context -----------------------------------------------------------------------------

    def _cued(self, ctx: Context, start: int) -> bool:
        """A cue word within the 32 characters before ``start``."""
        lo = max(0, start - 32)
        if any(lo <= e <= start for _, e in ctx.hits.get("phone.cue", ())):
            return True
        return bool(self._weak.search(ctx.lower, lo, start))

    # -- detection ---------------------------------------------------------------------------

    def find(self, ctx: Context) -> list[Span]:
        if ctx.max_digits < 7:
            return []  # no 7 digits anywhere near each other: no phone number
        text, lower = ctx.text, ctx.lower
        out: list[Span] = []
        for cs, ce, _ in ctx.long_chunks(7):
            for m in _RUN.finditer(text, max(0, cs - 2), min(len(text), ce + 1)):
                out.extend(self._run(ctx, text, lower, m))
        return out

    def _run(self, ctx: Context, text: str, lower: str, m: re.Match[str]) -> list[Span]:
        s, e = m.span()
        run = m.group()
        if len(run) < 7 or sum(map(str.isdigit, run)) < 7:
            return []
        intl_hint = _intl_hint(lower, s)
        plus = run[0] == "+"
        groups = [(g.start() + s, g.end() + s) for g in _GROUP.finditer(run)]
        # glued to a word: a code (MSCU1234567, INV-2025..., an IBAN's head) unless the word is a
        # cue (cel0991...); its first group is no phone's, the groups after it may be one
        before = text[s - 1] if s else " "
        # (but a number after a number and a slash is the second of a pair: "0988103740/0989795313")
        if before.isalpha() or (before in "-_/#" and s > 1 and text[s - 2].isalnum()
                                and not (before == "/" and text[s - 2].isdigit() and len(run) >= 9)):
            j = s - 1
            while j > 0 and text[j - 1].isalpha():
                j -= 1
            if not (before.isalpha() and lower[j:s] in self._cues) and not intl_hint:
                groups = groups[1:]
                plus = False
                if not groups:
                    return []
                s = groups[0][0]
        if e < len(text) and (text[e].isalpha() or text[e] == "@") and not _EXTENSION.match(text, e):
            groups = groups[:-1]  # glued to a word after it: "72006940N", "0991234567abc"
            if not groups:
                return []
            e = groups[-1][1]
        claimed = ctx.claimed
        digits = ctx.digits  # a number can only collide with trade notation
        if not digits.overlaps(s, e) and not (claimed and any(cs < e and s < ce for cs, ce in claimed)):
            segs = [groups]  # the common case: nothing protected or taken inside the run
        else:
            # protected groups (a size, a date, a price) and taken ones (an ID) split the run
            segs = []
            seg: list[tuple[int, int]] = []
            for g in groups:
                if digits.overlaps(*g) or (claimed and ctx.is_claimed(*g)):
                    if seg:
                        segs.append(seg)
                    seg = []
                else:
                    seg.append(g)
            if seg:
                segs.append(seg)
        out: list[Span] = []
        for sg in segs:
            at_start = sg[0] == groups[0]  # the run's '+' or '(' belongs to this segment
            out.extend(self._segment(ctx, sg, plus and at_start, intl_hint, s if at_start else sg[0][0]))
        return out

    def _segment(self, ctx: Context, groups: list[tuple[int, int]], plus: bool, intl_hint: bool,
                 first_start: int) -> list[Span]:
        text = ctx.text
        digits = [text[a:b] for a, b in groups]
        out: list[Span] = []
        i, n = 0, len(groups)
        leftover: list[int] = []
        while i < n:
            found = False
            top = min(n, i + 15)   # a window holds at most 15 digits, so at most 15 groups: linear, not quadratic
            total = sum(len(x) for x in digits[i:top])
            for j in range(top, i, -1):
                if j < top:
                    total -= len(digits[j])
                if total > 15:
                    continue
                if total < 7:
                    break
                d = "".join(digits[i:j])
                p = plus and i == 0
                if self._grade(d, p, intl_hint and i == 0) == 2:
                    start = first_start if i == 0 else groups[i][0]
                    if groups[i][0] > 0 and text[groups[i][0] - 1] == "(" and i > 0:
                        start = groups[i][0] - 1
                    out.append(Span(start, self._close(text, groups[j - 1][1]), "PHONE", priority=P_PHONE))
                    i, found = j, True
                    break
            if not found:
                leftover.append(i)
                i += 1
        if leftover:
            out.extend(self._weak_spans(ctx, groups, digits, leftover, plus, intl_hint, first_start))
        return out

    @staticmethod
    def _close(text: str, end: int) -> int:
        """The end of a number: its closing parenthesis, its extension ("x205", " ext. 12")."""
        if end < len(text) and text[end] == ")":
            end += 1
        if "x" not in text[end:end + 6].lower():
            return end
        x = _EXTENSION.match(text, end)
        return x.end() if x else end

    def _weak_spans(self, ctx: Context, groups: list[tuple[int, int]], digits: list[str], idx: list[int],
                    plus: bool, intl_hint: bool, first_start: int) -> list[Span]:
        """Runs of groups no window of which is a valid number: a phone when only possible and
        lifted by a cue or a layout only phones have; in the strict profile, any 7+ digits."""
        text = ctx.text
        out: list[Span] = []
        runs: list[list[int]] = []
        for k in idx:
            if runs and runs[-1][-1] == k - 1:
                runs[-1].append(k)
            else:
                runs.append([k])
        for r in runs:
            d = "".join(digits[k] for k in r)
            if len(d) < 7:
                continue
            a, b = groups[r[0]][0], groups[r[-1]][1]
            if r[0] == 0:
                a = first_start
            b = self._close(text, b)
            p = plus and r[0] == 0
            grade = self._grade(d, p, intl_hint and r[0] == 0) if len(d) <= 15 else 0
            layout = p or text[a] == "(" or (len(r) >= 2 and 8 <= len(d) <= 13 and _phone_layout(digits, r))
            cued = self._cued(ctx, a)
            # a cue or a phone's layout makes a possible number a phone; a cue alone any 7-15
            # digits (a local number without its area code: "llámame al 2388368")
            if (grade and (layout or cued)) or (cued and len(d) <= 15) or (text[a] == "(" and 8 <= len(d) <= 15):
                out.append(Span(a, b, "PHONE", priority=P_PHONE_WEAK))
            elif ctx.strict:
                out.append(Span(a, b, "PHONE", priority=P_STRICT))
        return out


def _phone_layout(digits: list[str], r: list[int]) -> bool:
    """Groupings only phone numbers use: 3-3-4, 2-3-4, 3-3-3, 2-3-2-2, 2-4-4, 3-4 ..."""
    sizes = tuple(len(digits[k]) for k in r)
    return all(2 <= x <= 4 for x in sizes) and len(sizes) >= 2 and sizes[-1] >= 2
