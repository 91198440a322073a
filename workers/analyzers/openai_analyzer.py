"""Analysis with OpenAI structured outputs (or any OpenAI-compatible server).

Live mode: one chat completion per text, ``cfg.openai.concurrency`` in flight per batch, the
official client's own retries and timeout. Batch API mode: :func:`submit_batch` and
:func:`poll_batch`, pure API calls; where batch ids are kept is the caller's business.

Message text is sent to the API and nowhere else: nothing here logs it, writes it to disk or
puts it in an exception.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai
from openai import AsyncOpenAI, DefaultAsyncHttpxClient

from middleware.config import AnalysisConfig
from workers.analyzers.base import Outcome
from workers.analyzers.schema import InvalidAnalysis, response_format, system_prompt, validate_analysis

log = logging.getLogger(__name__)

CHAT_ENDPOINT = "/v1/chat/completions"
BATCH_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
MAX_BATCH_REQUESTS = 50_000  # the Batch API's limit per input file

# A 400 about a parameter the deployment chose, not the text, hits every record alike: sending
# each one to review would bury the review queue, so they wait (transient) until config is fixed.
_CONFIG_PARAMS = frozenset({"model", "response_format", "temperature", "max_completion_tokens", "max_tokens"})
_CONFIG_CODES = frozenset({"model_not_found", "unsupported_parameter", "unsupported_value", "invalid_api_key"})


def outcome_for_status(status: int, code: str | None = None, param: str | None = None) -> Outcome:
    """Map an HTTP error status (after the client's retries) to an outcome."""
    if status == 429:
        return Outcome.transient("rate_limited")
    if status >= 500:
        return Outcome.transient("server_error")
    if status == 408:
        return Outcome.transient("timeout")
    if status == 409:
        return Outcome.transient("conflict")
    # Wrong key, no access, unknown model or endpoint: the deployment's fault, not the record's.
    if status in (401, 403):
        return Outcome.transient("auth_error")
    if status == 404:
        return Outcome.transient("not_found")
    if param in _CONFIG_PARAMS or code in _CONFIG_CODES:
        return Outcome.transient("config_error")
    if status == 400:
        return Outcome.review("bad_request")
    if status == 413:
        return Outcome.review("request_too_large")
    if status == 422:
        return Outcome.review("unprocessable")
    return Outcome.review(f"http_{status}")


def outcome_for_error(e: BaseException) -> Outcome:
    """Map an exception raised by a chat completion call to an outcome."""
    if isinstance(e, openai.APITimeoutError):  # a subclass of APIConnectionError: test it first
        return Outcome.transient("timeout")
    if isinstance(e, openai.APIConnectionError):
        return Outcome.transient("connection_error")
    if isinstance(e, openai.APIStatusError):
        return outcome_for_status(e.status_code, e.code, e.param)
    if isinstance(e, openai.APIResponseValidationError):
        return Outcome.review("malformed_output")
    return Outcome.transient("unexpected_error")


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~25 ms; clients are opened per call, the context once.
    return httpx2.create_ssl_context()


def _strip_fences(content: str) -> str:
    # Servers that ignore response_format sometimes wrap the JSON in a Markdown code fence.
    s = content.strip()
    if s.startswith("```"):
        s = s[3:]
        if s[:4].lower() == "json":
            s = s[4:]
        if s.rstrip().endswith("```"):
            s = s.rstrip()[:-3]
    return s.strip()


class OpenAIAnalyzer:
    """Labels texts with the chat completions API and a strict JSON schema built from config."""

    name = "openai"

    def __init__(
        self,
        cfg: AnalysisConfig,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        client: AsyncOpenAI | None = None,
    ) -> None:
        if client is None and not api_key:
            raise ValueError("OpenAIAnalyzer needs an api_key or a client")
        self.cfg = cfg
        self.response_format = response_format(cfg)
        self.system_prompt = system_prompt(cfg)
        self._api_key = api_key
        self._base_url = base_url
        self._client = client  # injected: used as is, never closed here

    # -- the client ---------------------------------------------------------------------------

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncOpenAI]:
        """A client for one call: the injected one, or a fresh one closed on exit.

        An httpx connection pool belongs to the event loop it was opened on, and RQ job
        functions that call ``asyncio.run`` get a new loop each time; a client per call (per
        batch) can never outlive its loop, and costs little since the SSL context is shared.
        """
        if self._client is not None:
            yield self._client
            return
        client = AsyncOpenAI(
            api_key=self._api_key,
            base_url=self._base_url,
            timeout=self.cfg.openai.timeout_s,
            max_retries=self.cfg.openai.max_retries,
            http_client=DefaultAsyncHttpxClient(verify=_ssl_context()),
        )
        try:
            yield client
        finally:
            await client.close()

    # -- requests and answers -------------------------------------------------------------------

    def request_body(self, text: str) -> dict[str, Any]:
        """The chat completion request for one text (live calls and Batch API lines alike)."""
        o = self.cfg.openai
        body: dict[str, Any] = {
            "model": o.model,
            "messages": [
                {"role": "system", "content": self.system_prompt},
                {"role": "user", "content": text},
            ],
            "response_format": self.response_format,
        }
        if o.temperature is not None:
            body["temperature"] = o.temperature
        if o.max_completion_tokens is not None:
            body["max_completion_tokens"] = o.max_completion_tokens
        return body

    def outcome_from_completion(self, completion: Any) -> Outcome:
        """A ChatCompletion (or its JSON, as in Batch API output) to an outcome."""
        if isinstance(completion, dict):
            choices = completion.get("choices") or []
            first = choices[0] if choices and isinstance(choices[0], dict) else {}
            msg = first.get("message") or {}
            return self.outcome_from_message(msg.get("content"), msg.get("refusal"), first.get("finish_reason"))
        if not completion.choices:
            return Outcome.review("malformed_output")
        choice = completion.choices[0]
        return self.outcome_from_message(choice.message.content, choice.message.refusal, choice.finish_reason)

    def outcome_from_message(self, content: Any, refusal: Any, finish_reason: Any = None) -> Outcome:
        if refusal:
            return Outcome.review("refusal")
        if finish_reason == "content_filter":
            return Outcome.review("content_filter")
        if not isinstance(content, str) or not content.strip():
            return Outcome.review("malformed_output")
        try:
            obj = json.loads(_strip_fences(content))
        except ValueError:
            # finish_reason "length" lands here too: the JSON was cut off.
            log.warning("model answer is not JSON (finish_reason=%s)", finish_reason)
            return Outcome.review("malformed_output")
        try:
            return Outcome.ok(validate_analysis(obj, self.cfg))
        except InvalidAnalysis as e:  # the message names the field, never a value
            log.warning("model answer rejected: %s", e)
            return Outcome.review("malformed_output")

    # -- live mode ------------------------------------------------------------------------------

    async def analyze_batch(self, texts: list[str]) -> list[Outcome]:
        if not texts:
            return []
        sem = asyncio.Semaphore(self.cfg.openai.concurrency)
        async with self.session() as client:

            async def one(text: str) -> Outcome:
                async with sem:
                    return await self._analyze_one(client, text)

            return list(await asyncio.gather(*(one(t) for t in texts)))

    async def _analyze_one(self, client: AsyncOpenAI, text: str) -> Outcome:
        try:
            completion = await client.chat.completions.create(**self.request_body(text))
        except Exception as e:  # one record's failure never fails the others
            outcome = outcome_for_error(e)
            status = getattr(e, "status_code", None)
            if outcome.reason == "unexpected_error":
                log.error("analysis request failed unexpectedly: %s", type(e).__name__)
            else:
                log.warning("analysis request failed: %s (%s, status=%s)", outcome.reason, type(e).__name__, status)
            return outcome
        return self.outcome_from_completion(completion)


# -- Batch API ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchPoll:
    """Where a batch stands. When ``done``, every submitted custom_id is in exactly one of
    ``outcomes`` (ok or review) and ``resubmit`` (expired, cancelled, 429/5xx, or missing)."""

    batch_id: str
    status: str
    done: bool
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    resubmit: list[str] = field(default_factory=list)
    request_counts: dict[str, int] | None = None


def _resolve(target: OpenAIAnalyzer | AsyncOpenAI, cfg: AnalysisConfig | None) -> OpenAIAnalyzer:
    if isinstance(target, OpenAIAnalyzer):
        return target
    if isinstance(target, AsyncOpenAI):
        if cfg is None:
            raise TypeError("a bare AsyncOpenAI client needs cfg (the AnalysisConfig)")
        return OpenAIAnalyzer(cfg, client=target)
    raise TypeError(f"expected an OpenAIAnalyzer or an AsyncOpenAI client, not {type(target).__name__}")


async def submit_batch(
    target: OpenAIAnalyzer | AsyncOpenAI,
    items: list[tuple[str, str]],
    *,
    cfg: AnalysisConfig | None = None,
    metadata: dict[str, str] | None = None,
) -> str:
    """Upload ``(record_id, text)`` pairs as one Batch API job; returns the batch id.

    The JSONL is built in memory (no text touches the disk); ``custom_id`` is the record id.
    """
    analyzer = _resolve(target, cfg)
    if not items:
        raise ValueError("submit_batch: no items")
    if len(items) > MAX_BATCH_REQUESTS:
        raise ValueError(f"submit_batch: {len(items)} items, the Batch API takes at most {MAX_BATCH_REQUESTS}")
    ids = [rid for rid, _ in items]
    if len(set(ids)) != len(ids):
        raise ValueError("submit_batch: record ids must be unique within a batch")

    buf = io.BytesIO()
    for rid, text in items:
        line = {"custom_id": rid, "method": "POST", "url": CHAT_ENDPOINT, "body": analyzer.request_body(text)}
        buf.write(json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n")

    async with analyzer.session() as client:
        f = await client.files.create(
            file=("tuneloop-batch.jsonl", buf.getvalue(), "application/jsonl"), purpose="batch"
        )
        batch = await client.batches.create(
            input_file_id=f.id,
            endpoint=CHAT_ENDPOINT,
            completion_window="24h",
            metadata=metadata or {"source": "tuneloop"},
        )
    log.info("batch %s submitted with %d requests", batch.id, len(items))
    return batch.id


async def poll_batch(
    target: OpenAIAnalyzer | AsyncOpenAI, batch_id: str, *, cfg: AnalysisConfig | None = None
) -> BatchPoll:
    """The batch's status; once it is terminal, the outcome of every request in it."""
    analyzer = _resolve(target, cfg)
    async with analyzer.session() as client:
        return await _poll(analyzer, client, batch_id)


async def _poll(analyzer: OpenAIAnalyzer, client: AsyncOpenAI, batch_id: str) -> BatchPoll:
    batch = await client.batches.retrieve(batch_id)
    counts = batch.request_counts.model_dump() if batch.request_counts is not None else None
    if batch.status not in BATCH_TERMINAL:
        return BatchPoll(batch_id, batch.status, False, request_counts=counts)

    outcomes: dict[str, Outcome] = {}
    resubmit: dict[str, None] = {}  # ordered set
    for file_id in (batch.output_file_id, batch.error_file_id):
        if not file_id:
            continue
        for line in await _read_jsonl(client, file_id):
            cid = line.get("custom_id")
            if not isinstance(cid, str) or cid in outcomes or cid in resubmit:
                continue
            o = _outcome_from_batch_line(analyzer, line)
            if o is None:
                resubmit[cid] = None
            else:
                outcomes[cid] = o

    # A failed, expired or cancelled batch leaves requests in no file: find them in the input.
    total = counts.get("total", 0) if counts else 0
    if batch.status != "completed" or len(outcomes) + len(resubmit) < total:
        for line in await _read_jsonl(client, batch.input_file_id):
            cid = line.get("custom_id")
            if isinstance(cid, str) and cid not in outcomes:
                resubmit.setdefault(cid, None)

    if batch.status == "failed" and batch.errors and batch.errors.data:
        log.error("batch %s failed: %s", batch_id, ", ".join(str(e.code) for e in batch.errors.data))
    log.info("batch %s %s: %d outcomes, %d to resubmit", batch_id, batch.status, len(outcomes), len(resubmit))
    return BatchPoll(batch_id, batch.status, True, outcomes, list(resubmit), counts)


def _outcome_from_batch_line(analyzer: OpenAIAnalyzer, line: dict[str, Any]) -> Outcome | None:
    """One line of a Batch output or error file; None means "submit it again"."""
    resp = line.get("response")
    if isinstance(resp, dict) and isinstance(resp.get("status_code"), int):
        status: int = resp["status_code"]
        body = resp.get("body") if isinstance(resp.get("body"), dict) else {}
        if 200 <= status < 300:
            return analyzer.outcome_from_completion(body)
        err = body.get("error") if isinstance(body.get("error"), dict) else {}
        o = outcome_for_status(status, err.get("code"), err.get("param"))
        return None if o.kind == "transient" else o
    # No response: {"error": {"code": "batch_expired" | "batch_cancelled" | ...}}
    return None


async def _read_jsonl(client: AsyncOpenAI, file_id: str) -> list[dict[str, Any]]:
    content = await client.files.content(file_id)
    out = []
    for raw in content.text.splitlines():
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            log.warning("file %s: a line is not JSON, skipped", file_id)
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out
