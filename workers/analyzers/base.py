"""The analyzer interface shared by the OpenAI analyzer and the offline rules analyzer."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from middleware.config import AnalysisConfig, Config, Env

log = logging.getLogger(__name__)

OutcomeKind = Literal["ok", "review", "transient"]


@dataclass(frozen=True)
class Outcome:
    """What happened to one text.

    ok: ``analysis`` holds the seed's flat object. review: the answer was a refusal or not a
    valid analysis (or the request itself was refused), so the record goes to needs_review
    with ``reason``. transient: 429, 5xx, timeout or connection trouble; the record goes back
    on the queue and is tried again later.
    """

    kind: OutcomeKind
    analysis: dict[str, Any] | None = None
    reason: str | None = None

    @classmethod
    def ok(cls, analysis: dict[str, Any]) -> Outcome:
        return cls("ok", analysis=analysis)

    @classmethod
    def review(cls, reason: str) -> Outcome:
        return cls("review", reason=reason)

    @classmethod
    def transient(cls, reason: str) -> Outcome:
        return cls("transient", reason=reason)


@runtime_checkable
class Analyzer(Protocol):
    name: str

    async def analyze_batch(self, texts: list[str]) -> list[Outcome]:
        """One outcome per text, in order. Never raises for one text's failure."""
        ...


class RulesBatchAnalyzer:
    """Adapts the sync rules analyzer (``.analyze(text) -> dict``) to :class:`Analyzer`."""

    def __init__(self, rules: Any) -> None:
        self.rules = rules
        self.name: str = getattr(rules, "name", "rules")

    async def analyze_batch(self, texts: list[str]) -> list[Outcome]:
        # One thread hop per batch: the rules are CPU work and the loop may be the bot's.
        return await asyncio.to_thread(self._run, texts)

    def _run(self, texts: list[str]) -> list[Outcome]:
        out: list[Outcome] = []
        for text in texts:
            try:
                out.append(Outcome.ok(self.rules.analyze(text)))
            except Exception as e:  # one bad text must not sink the batch
                log.warning("rules analyzer failed on a record: %s", type(e).__name__)
                out.append(Outcome.review("analyzer_error"))
        return out


def make_analyzer(config: Config | AnalysisConfig, env: Env) -> Analyzer:
    """OpenAI when ``OPENAI_API_KEY`` is set, else the offline rules analyzer.

    ``config`` is the whole :class:`Config` or its ``analysis`` section.
    """
    cfg: AnalysisConfig = getattr(config, "analysis", config)
    if env.openai_api_key:
        from workers.analyzers.openai_analyzer import OpenAIAnalyzer

        return OpenAIAnalyzer(cfg, api_key=env.openai_api_key, base_url=env.openai_base_url)
    from workers.analyzers.rules import RulesAnalyzer

    return RulesBatchAnalyzer(RulesAnalyzer(cfg))

