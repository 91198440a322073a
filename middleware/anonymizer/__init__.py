"""tuneloop's anonymizer: personal data out of chat messages before anything is stored.

    from middleware.anonymizer import Anonymizer
    anon = Anonymizer.from_config(config)
    anon.anonymize("mi cel 0991234567", known_names=("María",)).text   # 'mi cel [PHONE]'

One small detector per type (phone, email, address, ids, account, names) behind the interface
of ``base``; ``whitelist`` protects business terms, the catalog and the operator's own values.
"""

from .base import TYPES, Span
from .engine import DETECTOR_VERSION, Anonymizer, AnonymizeResult, catalog_terms

__all__ = ["Anonymizer", "AnonymizeResult", "Span", "DETECTOR_VERSION", "TYPES", "catalog_terms"]
