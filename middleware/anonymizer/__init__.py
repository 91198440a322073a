"""tuneloop's anonymizer: personal data out of chat messages before anything is stored.

    from middleware.anonymizer import Anonymizer
    anon = Anonymizer.from_config(config)
    anon.anonymize("mi cel 0991234567", known_names=("María",)).text   # 'mi cel [PHONE]'

One small detector per type (phone, email, address, ids, account, names) behind the interface
of ``base``; ``whitelist`` protects business terms, the catalog and the operator's own values.
The detectors are compiled with mypyc at install when a C compiler is there (setup.py);
``BUILD`` tells which build runs.
"""

import logging
from pathlib import Path

from . import base
from .base import TYPES, Span
from .engine import DETECTOR_VERSION, Anonymizer, AnonymizeResult, catalog_terms

BUILD = "python" if base.__file__ is None or base.__file__.endswith(".py") else "compiled"


def _stale_modules() -> list[str]:
    """Compiled modules older than their source: an edit that a rebuild has not reached yet."""
    if BUILD != "compiled" or base.__file__ is None:
        return []
    here = Path(base.__file__).parent
    out = []
    for so in here.glob("*.so"):
        src = here / (so.name.split(".", 1)[0] + ".py")
        if src.exists() and src.stat().st_mtime > so.stat().st_mtime:
            out.append(src.name)
    return sorted(out)


if _stale := _stale_modules():
    logging.getLogger("tuneloop.anonymizer").warning(
        "the compiled anonymizer is older than %s: rebuild it (make install, or pip install -e .)",
        ", ".join(_stale))

__all__ = ["Anonymizer", "AnonymizeResult", "Span", "DETECTOR_VERSION", "TYPES", "catalog_terms", "BUILD"]
