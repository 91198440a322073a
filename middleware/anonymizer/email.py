"""EMAIL: addresses as people type them (plus tags, subdomains, any case, 'arroba'/[at] forms)."""

from __future__ import annotations

import re
import string

from .base import P_EMAIL, Context, Detector, Span

# Local part: letters (any script), digits and the usual punctuation; the domain needs a dot
# and a 2+ letter TLD. The lookarounds keep it whole ("a.b@c.com." ends before the dot).
_EMAIL = re.compile(
    r"(?<![\w.+\-%])[\w.+\-%']+@(?:[\w](?:[\w\-]*\w)?\.)+[^\W\d_]{2,24}(?![\w\-@])"
)
_LOCAL = frozenset("._%+-'")
_ASCII_LOCAL = string.ascii_letters + string.digits + "._%+-'"
# Spoken forms: "juan [at] mail [dot] com", "juan arroba gmail.com", "juan(at)mail.com".
_SPOKEN = re.compile(
    r"(?<![\w.+\-])[\w.+\-]+\s?(?:\[at\]|\(at\)|\{at\}|\s(?:arroba|\[arroba\])\s)\s?"
    r"[\w\-]+(?:(?:\.(?=[\w\-])|\s?(?:\[dot\]|\(dot\))\s?|\s(?:punto|dot)\s)[\w\-]+)+",   # (". Next" ends it)
    re.I,
)
# Blanks around the '@' ("ana.perez @ gmail.com"): the domain then needs a known shape.
_SPACED = re.compile(
    r"(?<![\w.+\-])[\w.+\-']+[ \t]?@[ \t]?(?:[\w](?:[\w\-]*\w)?\.)+[a-z]{2,24}(?![\w\-@])", re.I)
# strict profile: any token around an '@'
_AT_TOKEN = re.compile(r"[^\s@]*@[^\s@]+")


class EmailDetector(Detector):
    type = "EMAIL"

    def find(self, ctx: Context) -> list[Span]:
        text = ctx.text
        out: list[Span] = []
        at = text.find("@")
        while at >= 0:
            # walk back over the local part (at most 64 characters), then match from its start
            head = text[max(0, at - 64):at]
            j = at - (len(head) - len(head.rstrip(_ASCII_LOCAL)))
            while j > 0 and at - j < 64 and (text[j - 1].isalnum() or text[j - 1] in _LOCAL):
                j -= 1  # beyond ASCII: letters of any script
            m = _EMAIL.match(text, j)
            if m:
                out.append(Span(m.start(), m.end(), "EMAIL", priority=P_EMAIL))
            at = text.find("@", m.end() if m else at + 1)
        if " @" in text or "@ " in text:
            out += [Span(m.start(), m.end(), "EMAIL", priority=P_EMAIL) for m in _SPACED.finditer(text)
                    if " " in m.group() or "\t" in m.group()]
        lower = ctx.lower
        if "arroba" in lower or "[at]" in lower or "(at)" in lower or "{at}" in lower:
            out += [Span(m.start(), m.end(), "EMAIL", priority=P_EMAIL) for m in _SPOKEN.finditer(text)]
        if ctx.strict and "@" in text:
            out += [Span(m.start(), m.end(), "EMAIL", priority=P_EMAIL - 1) for m in _AT_TOKEN.finditer(text)]
        return out
