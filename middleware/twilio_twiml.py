"""TwiML, the XML a Twilio webhook answers with: read the bot's `<Message>`s, add ours.

The bot's response is its own output, yet it is parsed defensively: a size bound, no DTD (so no
entity expansion), and any failure means "not TwiML we understand", never an exception.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

MAX_TWIML_BYTES = 64 * 1024     # a TwiML reply is a few messages; anything bigger is not ours to read
_DTD = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>'


@dataclass(frozen=True)
class TwimlMessage:
    to: str | None       # the `to` attribute; None means the sender of the webhook
    text: str


def parse(raw: bytes | None) -> ET.Element | None:
    """The `<Response>` element of a TwiML document, or None (empty, too big, not TwiML)."""
    if not raw or len(raw) > MAX_TWIML_BYTES or _DTD.search(raw):
        return None
    try:
        root = ET.fromstring(raw)
    except (ET.ParseError, ValueError, LookupError):
        return None
    return root if root.tag == "Response" else None


def messages(root: ET.Element) -> list[TwimlMessage]:
    """The text of each `<Message>`: its own text, or its `<Body>` children's (never `<Media>` URLs)."""
    out = []
    for m in root.findall("Message"):
        bodies = m.findall("Body")
        text = "".join("".join(b.itertext()) for b in bodies) if bodies else (m.text or "")
        text = text.strip()
        if text:
            out.append(TwimlMessage(m.get("to"), text))
    return out


def append_message(root: ET.Element | None, text: str) -> bytes:
    """The document with one more `<Message>` (a new `<Response>` when there was none)."""
    if root is None:
        root = ET.Element("Response")
    ET.SubElement(root, "Message").text = text
    return (XML_DECL + ET.tostring(root, encoding="unicode")).encode("utf-8")


def single_message(text: str) -> bytes:
    return append_message(None, text)
