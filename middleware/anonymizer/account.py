"""ACCOUNT: IBANs (python-stdnum), payment cards (Luhn) and bank account numbers after a cue.

A bare bank account number has no checksum that spans banks and countries, so it needs its cue
(cuenta, cta., ahorros, corriente, account, acct, checking, a bank's name ...); IBANs and cards
carry their own proof.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from stdnum import iban, luhn

from .base import P_ACCOUNT, P_STRICT, Context, Detector, Span
from .ids import digit_count

DEFAULT_CUES = (
    "cuenta", "cta", "cte", "ahorros", "corriente", "cuenta corriente", "cuenta de ahorros", "account",
    "acct", "acc", "a/c", "checking", "savings", "conta", "conta corrente", "poupança", "clabe", "cbu", "cci",
    "routing", "aba", "sort code", "iban", "bank account", "account number", "número de cuenta", "nº de cuenta",
    "depositar", "deposit", "deposítenme", "transferir", "transfer to", "wire to", "ccc", "c.c.c.", "c/c",
    "código interbancario", "codigo interbancario", "cuenta interbancaria", "clabe interbancaria", "agência",
    "agencia", "nuban", "bsb", "ifsc", "sort", "conta poupanca", "poupanca", "cc", "chave pix", "pix",
    "chave aleatória", "chave aleatoria",
    # banks people name instead of the word "account"
    "banco", "bank", "produbanco", "pichincha", "bancolombia", "davivienda", "bolivariano", "guayaquil bank",
    "bco", "bco.", "santander", "bbva", "caixa", "caixabank", "sabadell", "bankinter", "millennium", "itaú", "itau", "bradesco",
    "chase", "citibank", "citi", "wells fargo", "bank of america", "hsbc", "scotiabank", "interbank", "bcp",
    "banorte", "banamex", "nubank", "revolut", "wise",
)
CARD_CUES = ("tarjeta", "card", "visa", "mastercard", "master card", "amex", "american express", "crédito",
             "credito", "credit", "débito", "debito", "debit", "cartão", "cartao", "diners")

# Between the cue and the number: "N°", "No.", ":", "de ahorros", "del Banco Pichincha", "number".
_CONNECTOR_WORDS = (
    r"[\s:#.\-/]|\bn[º°]|\b(?:nro|no|num|número|numero|number|de|del|en|el|la|mi|my|our|is|es|the|of|at|a|to|para"
    r"|corriente|cte|ahorros|checking|savings|bancaria|account|cuenta|cta|con|with|info|details|datos"
    r"|interbancari[ao]|c[óo]digo|clabe|cci|ccc|corrente|poupança|poupanca|conta|chave|pix|aleat[óo]ria)\b"
    r"|\b(?:Banco|Bank|Banc)\s+(?:[A-Z][\w&]*\s?){1,2}")
_CONNECTOR = re.compile(rf"(?:{_CONNECTOR_WORDS})*", re.I)
# after a bank's own word, its name may stand right before the number: "Banco Guayaquil 1277349211"
# (not after "wire to": "wire to Shanghai 2500000 USD" is an amount)
_BANK_CONNECTOR = re.compile(rf"(?:{_CONNECTOR_WORDS}|(?-i:\b[A-Z][a-záéíóúñ]+\b)(?=[ \t]+\d))*", re.I)
_BANK_CUES = frozenset(("banco", "bank", "bco", "bco."))
_DIGIT = re.compile(r"\d")
# a bank code's letters may lead ("NL12-INGB-2160...", a UK BBAN), a check digit or X may close ("215580-X")
_NUMBER = re.compile(r"(?:[A-Z]{2}\d{2}[ \-]?[A-Z]{4}[ \-]?|[A-Z]{4}[ \-]?)?\d(?:[ \-.]?\d){5,33}(?:-[0-9Xx])?(?![\dA-Za-z])")
# Brazil's PIX random key: a UUID
_PIX_KEY = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ \-]?[A-Za-z0-9]{1,4}){3,8}")
_IBAN_GROUP = re.compile(r"[A-Za-z0-9]+")
_CARD = re.compile(r"(?<![\d\-.])(?:\d{4}[ \-]?\d{6}[ \-]?\d{4,5}|(?:\d{4}[ \-]?){3}\d{1,7}|\d{13,19})(?![\d\-])")


_LETTER_DIGITS = str.maketrans({c: str(ord(c) - 55) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"})


def iban_mod97(compact: str) -> bool:
    """The ISO 13616 check (mod 97 == 1) alone: a microsecond, where stdnum's full validation
    (country length and format too) costs some 25. Only candidates passing this one reach it."""
    if not compact[:2].isalpha() or not compact.isalnum() or not compact.isascii():
        return False
    return int((compact[4:] + compact[:4]).translate(_LETTER_DIGITS)) % 97 == 1


@lru_cache(maxsize=512)
def _bban(country: str) -> re.Pattern[str] | None:
    """The BBAN layout of a country, from python-stdnum's IBAN registry, compiled once."""
    try:
        info = iban._ibandb.info(country)  # stdnum's registry: private, so guarded
        layout = info[0][1].get("bban") if info and info[0][1] else None
        return iban._struct_to_re(layout) if layout else None
    except (AttributeError, IndexError, TypeError):
        return None


def iban_valid(compact: str) -> bool:
    """python-stdnum's IBAN validation (check digits, then the country's BBAN layout) with the
    registry lookup cached per country: ``iban.is_valid`` repeats it on every call, some 25 µs.
    A country unknown to the cache gets the full ``iban.is_valid``."""
    if not iban_mod97(compact):
        return False
    layout = _bban(compact[:2])
    if layout is None:
        return iban.is_valid(compact)
    return bool(layout.match(compact[4:]))


class AccountDetector(Detector):
    type = "ACCOUNT"

    def __init__(self, cues: Iterable[str] = ()) -> None:
        self._cues = [*DEFAULT_CUES, *(c for c in cues if c and c.strip())]

    def keywords(self) -> dict[str, Iterable[str]]:
        # a card cue is an account cue too: "tarjeta 5018 9728 5091" (a 12-digit Maestro)
        return {"acct.cue": [*self._cues, *CARD_CUES], "acct.card": CARD_CUES, "acct.iban": ["iban"],
                "acct.pixcue": ["pix", "chave pix", "chave aleatória", "chave aleatoria"],
                "acct.agency": ["ag", "agência", "agencia", "ag."]}

    def find(self, ctx: Context) -> list[Span]:
        pix = self._pix(ctx) if ctx.hits.get("acct.pixcue") else []
        if ctx.max_digits < 6:
            return pix  # an account number has 6+ digits
        out = pix + self._ibans(ctx) + self._cards(ctx) + self._cued(ctx)
        ctx.claimed.extend((s.start, s.end) for s in out if s.priority >= P_ACCOUNT)
        return out

    @staticmethod
    def _near(ctx: Context, tag: str, start: int, before: int) -> bool:
        return any(start - before <= e <= start for _, e in ctx.hits.get(tag, ()))

    def _ibans(self, ctx: Context) -> list[Span]:
        text = ctx.text
        out: list[Span] = []
        last = -1
        cued = bool(ctx.hits.get("acct.iban"))
        for cs, ce, _ in ctx.long_chunks(6):
            # an IBAN starts with two letters and two digits: right before this chunk, or a few
            # words before it (GB82 WEST 1234 ...)
            if not cued and not (cs >= 2 and text[cs - 2:cs].isalpha()) and not _DIGIT.search(
                    text, max(0, cs - 12), cs):
                continue
            for m in _IBAN.finditer(text, max(0, cs - 12, last), min(len(text), ce + 8)):
                groups = list(_IBAN_GROUP.finditer(m.group()))
                # the match may run into the next word ("... 9271 GRACIAS"): the longest valid prefix wins
                for k in range(len(groups), 0, -1):
                    compact = "".join(g.group() for g in groups[:k]).upper()
                    if len(compact) >= 15 and iban_valid(compact):
                        last = m.start() + groups[k - 1].end()
                        # a checksum outranks trade notation inside ("NL12-INGB-2160-..." is no code)
                        out.append(Span(m.start(), last, "ACCOUNT", priority=P_ACCOUNT, atomic=True))
                        break
                else:
                    if self._near(ctx, "acct.iban", m.start(), 16):
                        k = len(groups)
                        while k > 1 and not any(c.isdigit() for c in groups[k - 1].group()):
                            k -= 1
                        last = m.start() + groups[k - 1].end()
                        out.append(Span(m.start(), last, "ACCOUNT", priority=P_ACCOUNT))
        return out

    @staticmethod
    def _pix(ctx: Context) -> list[Span]:
        """A PIX random key (a UUID) within a few words after its cue."""
        out = []
        for _, e in ctx.hits.get("acct.pixcue", ()):
            m = _PIX_KEY.search(ctx.text, e, e + 60)
            if m:
                out.append(Span(m.start(), m.end(), "ACCOUNT", priority=P_ACCOUNT))
        return out

    def _cards(self, ctx: Context) -> list[Span]:
        text = ctx.text
        out: list[Span] = []
        for cs, ce, _ in ctx.long_chunks(13):
            for m in _CARD.finditer(text, cs, ce):
                d = "".join(c for c in m.group() if c.isdigit())
                if not 13 <= len(d) <= 19:
                    continue
                if (d[0] in "23456" and luhn.is_valid(d)) or self._near(ctx, "acct.card", m.start(), 40):
                    out.append(Span(m.start(), m.end(), "ACCOUNT", priority=P_ACCOUNT, atomic=luhn.is_valid(d)))
                elif ctx.strict and luhn.is_valid(d):
                    out.append(Span(m.start(), m.end(), "ACCOUNT", priority=P_STRICT + 1))
        return out

    def _cued(self, ctx: Context) -> list[Span]:
        text = ctx.text
        out: list[Span] = []
        agencies = ctx.hits.get("acct.agency", ())
        for s, e in ctx.hits.get("acct.cue", ()):
            if not ctx.number_near(e, 45, 6):
                continue
            if text[s:e].lower() == "cc" and not any(0 < s - ae <= 30 for _, ae in agencies):
                continue   # "cc" is an account (conta corrente) only after its agency: "ag 6522-7 cc 215580-X"
            c = (_BANK_CONNECTOR if ctx.lower[s:e] in _BANK_CUES else _CONNECTOR).match(text, e)
            pos = c.end() if c else e
            if pos - e > 40:
                continue
            n = _NUMBER.match(text, pos)
            if n and 6 <= digit_count(n.group()) <= 34:
                out.append(Span(n.start(), n.end(), "ACCOUNT", priority=P_ACCOUNT))
        return out
