"""The Anonymizer: the detectors, the whitelist and the placeholders, driven by config."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from .account import AccountDetector
from .address import AddressDetector
from .base import TYPES, Context, Detector, Lexer, Span, lower_same_length, resolve
from .email import EmailDetector
from .ids import IdDetector
from .names import NameDetector, lexicon
from .phone import PhoneDetector
from .whitelist import Whitelist

if TYPE_CHECKING:
    from middleware.config import AnonymizerConfig, Config

# Bump whenever what is detected changes: stored records carry it, so a re-run can find the
# records an older detector wrote.
DETECTOR_VERSION = "1.1"   # 1.1: 2026-12-04, formats beyond the dev set (names, IDs, accounts, addresses)

Profile = Literal["default", "strict"]
_NUMBER_TYPES = frozenset(("PHONE", "ACCOUNT", "ID"))


@dataclass(slots=True)
class AnonymizeResult:
    text: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TYPES, 0))
    spans: tuple[Span, ...] = ()


def catalog_terms(config: Config) -> list[str]:
    """The analysis catalog, always part of the whitelist: product aliases, incoterms and
    their aliases, destinations, freezing styles."""
    a = config.analysis
    terms: list[str] = []
    for p in a.products:
        terms += [p.code, *p.aliases]
    for code, aliases in a.incoterms.items():
        terms += [code, *aliases]
    terms += a.destinations
    terms += a.freezing_styles
    return terms


class Anonymizer:
    """Thread-safe: built once, then only read."""

    def __init__(self, config: AnonymizerConfig | None = None, catalog_terms: Iterable[str] = ()) -> None:
        if config is None:
            from middleware.config import AnonymizerConfig

            config = AnonymizerConfig()
        self.config = config
        self.version = DETECTOR_VERSION  # what the capture core records with each record
        self.whitelist = Whitelist(
            terms=config.whitelist.terms, patterns=config.whitelist.patterns, catalog_terms=catalog_terms,
            keep_values=config.keep_values, regions=config.regions,
        )
        _, _, common = lexicon()
        self.detectors: list[Detector] = [
            EmailDetector(),
            AccountDetector(config.account_cues),
            IdDetector(config.id_cues),
            PhoneDetector(config.regions, config.phone_cues),
            AddressDetector(config.address_cues, common),
            NameDetector(config.name_cues, enabled=config.names),
        ]
        groups = dict(self.whitelist.keywords())
        for det in self.detectors:
            groups.update(det.keywords())
        self.lexer = Lexer(groups)

    @classmethod
    def from_config(cls, config: Config) -> Anonymizer:
        return cls(config.anonymizer, catalog_terms=catalog_terms(config))

    def detect(self, text: str, profile: Profile = "default", known_names: Iterable[str] = ()) -> list[Span]:
        """The personal data in ``text`` as sorted, disjoint, typed spans."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        if profile not in ("default", "strict"):
            raise ValueError(f"unknown profile {profile!r} (default or strict)")
        scan = _ascii_digits(text)
        lower = lower_same_length(scan)
        names = tuple(n for n in known_names if isinstance(n, str) and n.strip()) if known_names else ()
        ctx = Context(scan, strict=profile == "strict", lower=lower, hits=self.lexer.scan(lower), known_names=names)
        keep = self.whitelist.keep_ranges(ctx)
        whitelist = self.whitelist
        ctx.protect_lazily(lambda c: whitelist.protected_words(c, keep), lambda c: whitelist.protected_digits(c, keep))
        spans: list[Span] = []
        for det in self.detectors:
            spans.extend(det.find(ctx))
        if spans and (keep or self.whitelist.keep_digits):
            spans = self._not_kept(spans, keep, scan)
        out = resolve(spans, ctx)
        if scan is not text:  # spans carry the text as written, not its ASCII-digit copy
            out = [s._replace(text=text[s.start:s.end]) for s in out]
        return out

    def _not_kept(self, spans: list[Span], keep: list[tuple[int, int]], text: str) -> list[Span]:
        """Spans minus the operator's own values (as written, or its numbers in any grouping)."""
        wl = self.whitelist
        return [s for s in spans if not (keep and _touches(s, keep)) and not (
            s.type in _NUMBER_TYPES and wl.keep_digits and wl.is_keep_number(text[s.start:s.end]))]

    def anonymize(self, text: str, known_names: Iterable[str] = (), profile: Profile = "default") -> AnonymizeResult:
        spans = self.detect(text, profile=profile, known_names=known_names)
        counts = dict.fromkeys(TYPES, 0)
        if not spans:
            return AnonymizeResult(text, counts, ())
        numbered = self.config.numbered_placeholders
        seen: dict[tuple[str, str], int] = {}
        parts: list[str] = []
        pos = 0
        for sp in spans:
            parts.append(text[pos:sp.start])
            counts[sp.type] += 1
            if numbered:
                # the same value twice in a message keeps its number
                key = (sp.type, _norm(sp.text))
                if key not in seen:
                    seen[key] = sum(1 for t, _ in seen if t == sp.type) + 1
                parts.append(f"[{sp.type}_{seen[key]}]")
            else:
                parts.append(f"[{sp.type}]")
            pos = sp.end
        parts.append(text[pos:])
        return AnonymizeResult("".join(parts), counts, tuple(spans))


def _touches(span: Span, ranges: list[tuple[int, int]]) -> bool:
    return any(s < span.end and span.start < e for s, e in ranges)


_NON_ALNUM = re.compile(r"[\W_]+")
_NON_ASCII_DIGIT = re.compile(r"(?![0-9])\d")


def _ascii_digits(text: str) -> str:
    """Other scripts' digits as ASCII, index for index: '０９９…' is a phone number too, and
    validators (phonenumbers, stdnum) then see plain digits."""
    if text.isascii() or max(text) <= "\xff" or not _NON_ASCII_DIGIT.search(text):
        return text  # (Latin-1 holds no digits but 0-9: Spanish and Portuguese text stops here)
    return _NON_ASCII_DIGIT.sub(lambda m: str(unicodedata.digit(m.group(), 0)), text)


def _norm(value: str) -> str:
    return _NON_ALNUM.sub("", value).lower()
