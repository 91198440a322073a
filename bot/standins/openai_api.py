"""A local server speaking enough of the OpenAI wire format for the official client.

Tests (and the benchmark) talk to it through ``openai.AsyncOpenAI(base_url=stub.base_url)``, never
by patching the client. It serves:

- ``POST /v1/chat/completions``: the answer's content is what ``responder(request_body)`` returns
  (a dict is JSON-encoded, a str is sent as is). The default, :func:`default_labeler`, reads the
  enums of the request's JSON schema and labels by keywords, so its answer is schema-valid for
  whatever config built the request.
- ``POST /v1/files`` (multipart), ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``
- ``POST /v1/batches``, ``GET /v1/batches/{id}``: completes on poll ``batch_polls_to_complete``,
  writing output and error files in the Batch API's format (per-item faults in
  ``batch_item_faults``, the whole batch's end state in ``batch_final_status``)
- ``POST /v1/fine_tuning/jobs``, ``GET /v1/fine_tuning/jobs[/{id}]``: recorded; a job succeeds on
  poll ``fine_tune_polls_to_succeed``

Faults for chat requests: ``stub.add_faults("429", "500", Fault("timeout", seconds=2), ...)``
queues them for the next requests, one each; ``stub.fault_when("some text", "refusal")`` answers
every request whose user message contains the text with that fault. Kinds: any HTTP status as
a string or int (``"429"`` sends Retry-After, ``"500"``, ``"400"``...), ``"timeout"`` (stall
``seconds``, default 30, longer than the client's timeout), ``"malformed"`` (non-JSON content),
``"refusal"`` (``message.refusal`` set), ``"latency"`` (``seconds`` more before answering),
``"disconnect"`` (drop the connection). ``stub.latency`` adds seconds to every chat request.

Records: ``stub.requests`` (every request), ``stub.chat_bodies``, ``stub.chat_count``,
``stub.max_in_flight`` (chat requests being served at once).

Async use::

    async with OpenAIStub() as stub:
        client = AsyncOpenAI(api_key="test", base_url=stub.base_url)

From a thread, for sync code::

    stub = OpenAIStub()
    base_url, stop = stub.start_in_thread()
    try: ...
    finally: stop()
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Responder = Callable[[dict[str, Any]], "dict[str, Any] | str | Awaitable[dict[str, Any] | str]"]

REFUSAL_TEXT = "I'm sorry, but I can't help with that request."


@dataclass
class Fault:
    """One fault to serve. ``kind``: an HTTP status ("429", "500", "400"...), "timeout",
    "malformed", "refusal", "latency" or "disconnect"."""

    kind: str
    seconds: float = 0.0  # timeout: how long to stall (0 → 30 s); latency: the extra delay
    retry_after: float | None = None  # status faults: Retry-After seconds (429 defaults to 0.02)
    code: str | None = None  # status faults: the error body's "code"
    param: str | None = None  # status faults: the error body's "param"

    @property
    def status(self) -> int | None:
        return int(self.kind) if self.kind.isdigit() else None


FaultLike = Fault | str | int


def as_fault(f: FaultLike) -> Fault:
    if isinstance(f, Fault):
        return f
    return Fault(str(f))


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: Any  # the JSON body; for uploads {"purpose", "filename", "bytes"}; None for GETs
    time: float = field(default_factory=time.monotonic)


@dataclass
class StubFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def obj(self) -> dict[str, Any]:
        return {
            "id": self.id, "object": "file", "bytes": len(self.content), "created_at": self.created_at,
            "filename": self.filename, "purpose": self.purpose, "status": "processed",
            "expires_at": None, "status_details": None,
        }


# -- the default responder ----------------------------------------------------------------------

_INTENT_KEYWORDS: list[tuple[str, tuple[str, ...]]] = [
    ("proforma", ("proforma", "pi", "pedido", "orden", "order", "confirmo", "confirm")),
    ("price_quote", ("precio", "precios", "price", "prices", "quote", "cotización", "cotizar", "cuánto",
                     "cuanto", "how much")),
    ("availability", ("disponible", "disponibilidad", "stock", "available", "availability", "tienen")),
    ("logistics", ("booking", "eta", "bl", "embarque", "naviera", "contenedor", "container", "shipment",
                   "vessel", "tracking", "documentos", "documents")),
    ("payment", ("pago", "payment", "transferencia", "transfer", "swift", "anticipo", "factura", "invoice")),
    ("greeting", ("hola", "hello", "hi", "gracias", "thanks", "buenos días", "bye")),
]
_SIZE = re.compile(r"(?<![\w/])(U\s*[-/]?\s*\d{1,2}|\d{1,3}\s*[-/]\s*\d{1,3})(?![\w/])", re.I)
_GLAZE = re.compile(r"(\d{1,2})\s*%\s*(?:de\s+)?(?:glaseo|glaze)|(?:glaseo|glaze)\s*(?:al\s+|de\s+)?(\d{1,2})\s*%",
                    re.I)


def _word(term: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(term) + r"(?!\w)", re.I)


def user_text(body: dict[str, Any]) -> str:
    """The last user message of a chat request (string or content parts)."""
    for m in reversed(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return " ".join(p.get("text", "") for p in c if isinstance(p, dict))
    return ""


def schema_properties(body: dict[str, Any]) -> dict[str, Any]:
    try:
        return body["response_format"]["json_schema"]["schema"]["properties"]
    except (KeyError, TypeError):
        return {}


def _enum(props: dict[str, Any], key: str) -> list[Any]:
    e = props.get(key, {}).get("enum")
    return list(e) if isinstance(e, list) else []


def default_labeler(body: dict[str, Any]) -> dict[str, Any]:
    """A deterministic keyword labeler whose answer fits the request's schema."""
    text = user_text(body)
    props = schema_properties(body)
    intents = [i for i in _enum(props, "intent") if isinstance(i, str)] or [n for n, _ in _INTENT_KEYWORDS] + ["other"]

    intent, hit = None, False
    for name, words in _INTENT_KEYWORDS:
        if name in intents and any(_word(w).search(text) for w in words):
            intent, hit = name, True
            break
    if intent is None:
        intent = "other" if "other" in intents else intents[0]

    def first_code(key: str) -> str | None:
        best: tuple[int, str] | None = None
        for code in _enum(props, key):
            if isinstance(code, str):
                m = _word(code).search(text)
                if m and (best is None or m.start() < best[0]):
                    best = (m.start(), code)
        return best[1] if best else None

    size_m = _SIZE.search(text)
    size = re.sub(r"\s+", "", size_m.group(1)).upper().replace("-", "/") if size_m else None
    if size and size.startswith("U"):
        size = "U" + re.sub(r"\D", "", size)
    glaze_m = _GLAZE.search(text)
    answer: dict[str, Any] = {
        "intent": intent,
        "product": first_code("product"),
        "size": size,
        "glaseo_percentage": int(glaze_m.group(1) or glaze_m.group(2)) if glaze_m else None,
        "incoterm": first_code("incoterm"),
        "destination": None,
        "quantity": None,
        "confidence": 0.9 if hit else 0.5,
    }
    if props:  # exactly the schema's keys, whatever config built it
        answer = {k: answer.get(k) for k in props}
    return answer


# -- the server --------------------------------------------------------------------------------


def _error(status: int, message: str, *, type_: str = "invalid_request_error", code: str | None = None,
           param: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


_STATUS_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                 404: "invalid_request_error", 429: "rate_limit_exceeded"}


class OpenAIStub:
    def __init__(
        self,
        responder: Responder | None = None,
        *,
        host: str = "127.0.0.1",
        api_key: str | None = None,
        batch_polls_to_complete: int = 1,
        fine_tune_polls_to_succeed: int = 1,
    ) -> None:
        self.responder: Responder = responder or default_labeler
        self.host = host
        self.api_key = api_key  # set: requests without "Bearer <api_key>" get a 401
        self.latency = 0.0
        self.batch_polls_to_complete = batch_polls_to_complete
        self.batch_final_status = "completed"  # or "expired", "cancelled", "failed"
        self.batch_item_faults: dict[str, str] = {}  # custom_id -> "expired"|"cancelled"|"500"|"refusal"|...
        self.fine_tune_polls_to_succeed = fine_tune_polls_to_succeed

        self.faults: deque[Fault] = deque()
        self.text_faults: dict[str, Fault] = {}
        self.requests: list[RecordedRequest] = []
        self.chat_bodies: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.files: dict[str, StubFile] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.fine_tuning_jobs: dict[str, dict[str, Any]] = {}

        self._ids = itertools.count(1)
        self._polls: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self.port: int | None = None

    # -- control --------------------------------------------------------------------------------

    def add_faults(self, *faults: FaultLike) -> None:
        """Serve these faults on the next chat requests, one per request, in order."""
        self.faults.extend(as_fault(f) for f in faults)

    def fault_when(self, substring: str, fault: FaultLike) -> None:
        """Serve ``fault`` on every chat request whose user message contains ``substring``."""
        self.text_faults[substring] = as_fault(fault)

    @property
    def chat_count(self) -> int:
        return len(self.chat_bodies)

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("the stub is not started")
        return f"http://{self.host}:{self.port}/v1"

    def requests_to(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(middlewares=[self._auth], client_max_size=256 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/files", self._file_create)
        app.router.add_get("/v1/files/{id}", self._file_get)
        app.router.add_get("/v1/files/{id}/content", self._file_content)
        app.router.add_post("/v1/batches", self._batch_create)
        app.router.add_get("/v1/batches/{id}", self._batch_get)
        app.router.add_post("/v1/fine_tuning/jobs", self._ft_create)
        app.router.add_get("/v1/fine_tuning/jobs", self._ft_list)
        app.router.add_get("/v1/fine_tuning/jobs/{id}", self._ft_get)
        self._closing = asyncio.Event()
        # A stalled "timeout" handler must not hold shutdown: cancel handlers whose client left.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self.base_url

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> OpenAIStub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_in_thread(self, timeout: float = 10.0) -> tuple[str, Callable[[], None]]:
        """Run the stub on its own event loop in a daemon thread; returns (base_url, stop)."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as e:  # report start-up failures to the caller
                failure.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        thread = threading.Thread(target=run, name="openai-stub", daemon=True)
        thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("the OpenAI stub did not start")
        if failure:
            raise failure[0]

        def stop() -> None:
            if not thread.is_alive() or loop.is_closed():
                return
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)

        return self.base_url, stop

    # -- helpers --------------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, cut short when the stub stops; True when it stopped."""
        assert self._closing is not None
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
            return True
        except TimeoutError:
            return False

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", code="invalid_api_key")
        return await handler(request)

    async def _completion(self, body: dict[str, Any], kind: str | None = None) -> dict[str, Any]:
        """A chat.completion object for ``body``: the responder's answer, or a refusal/malformed one."""
        content: str | None
        refusal: str | None = None
        if kind == "refusal":
            content, refusal = None, REFUSAL_TEXT
        elif kind == "malformed":
            content = "Sure! Here is the analysis: {intent: proforma"
        else:
            answer = self.responder(body)
            if inspect.isawaitable(answer):
                answer = await answer
            content = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 for m in body.get("messages") or [])
        completion_tokens = len(content or refusal or "") // 4
        return {
            "id": self._new_id("chatcmpl-stub-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "stub"),
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal, "annotations": []},
                "finish_reason": "stop",
                "logprobs": None,
            }],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
            "system_fingerprint": "fp_stub",
        }

    def _status_fault(self, f: Fault) -> web.Response:
        status = f.status or 500
        headers: dict[str, str] = {"x-request-id": self._new_id("req_stub_")}
        retry_after = f.retry_after if f.retry_after is not None else (0.02 if status == 429 else None)
        if retry_after is not None:
            headers["retry-after-ms"] = f"{retry_after * 1000:g}"
            headers["retry-after"] = str(max(1, math.ceil(retry_after)))
        if status == 429:
            return _error(429, "Rate limit reached for requests (stub).", type_="requests",
                          code=f.code or "rate_limit_exceeded", param=f.param, headers=headers)
        if status >= 500:
            return _error(status, "The server had an error while processing your request (stub).",
                          type_="server_error", code=f.code, param=f.param, headers=headers)
        return _error(status, f"Stub error {status}.", type_=_STATUS_TYPES.get(status, "invalid_request_error"),
                      code=f.code, param=f.param, headers=headers)

    # -- chat completions ---------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        self.requests.append(RecordedRequest("POST", request.path, body))
        self.chat_bodies.append(body)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            text = user_text(body)
            fault = next((f for s, f in self.text_faults.items() if s in text), None)
            if fault is None and self.faults:
                fault = self.faults.popleft()
            delay = self.latency + (fault.seconds if fault is not None and fault.kind == "latency" else 0.0)
            if delay > 0 and await self._sleep(delay):
                return _error(503, "stub stopping", type_="server_error")
            if fault is not None:
                if fault.kind == "timeout":
                    await self._sleep(fault.seconds or 30.0)
                    return _error(503, "stub stopping", type_="server_error")
                if fault.kind == "disconnect":
                    if request.transport is not None:
                        request.transport.close()
                    return web.Response(status=500)
                if fault.status is not None:
                    return self._status_fault(fault)
            kind = fault.kind if fault is not None and fault.kind in ("refusal", "malformed") else None
            if not isinstance(body.get("messages"), list) or "model" not in body:
                return _error(400, "messages and model are required", param="messages")
            return web.json_response(await self._completion(body, kind),
                                     headers={"x-request-id": self._new_id("req_stub_")})
        finally:
            self.in_flight -= 1

    # -- files --------------------------------------------------------------------------------

    async def _file_create(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        purpose = form.get("purpose")
        if not isinstance(upload, web.FileField) or not isinstance(purpose, str):
            return _error(400, "file and purpose are required", param="file")
        content = upload.file.read()
        f = StubFile(self._new_id("file-stub-"), upload.filename or "upload.jsonl", purpose, content,
                     int(time.time()))
        self.files[f.id] = f
        self.requests.append(RecordedRequest("POST", request.path,
                                             {"purpose": purpose, "filename": f.filename, "bytes": len(content)}))
        return web.json_response(f.obj())

    def _add_file(self, filename: str, purpose: str, content: bytes) -> StubFile:
        f = StubFile(self._new_id("file-stub-"), filename, purpose, content, int(time.time()))
        self.files[f.id] = f
        return f

    async def _file_get(self, request: web.Request) -> web.Response:
        self.requests.append(RecordedRequest("GET", request.path, None))
        f = self.files.get(request.match_info["id"])
        if f is None:
            return _error(404, "No such File object.", param="id")
        return web.json_response(f.obj())

    async def _file_content(self, request: web.Request) -> web.Response:
        self.requests.append(RecordedRequest("GET", request.path, None))
        f = self.files.get(request.match_info["id"])
        if f is None:
            return _error(404, "No such File object.", param="id")
        return web.Response(body=f.content, content_type="application/octet-stream")

    # -- batches ------------------------------------------------------------------------------

    async def _batch_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(RecordedRequest("POST", request.path, body))
        f = self.files.get(body.get("input_file_id", ""))
        if f is None:
            return _error(400, "input_file_id does not exist", param="input_file_id")
        if f.purpose != "batch":
            return _error(400, "the input file must have purpose 'batch'", param="input_file_id")
        if body.get("completion_window") != "24h":
            return _error(400, "completion_window must be 24h", param="completion_window")
        now = int(time.time())
        lines = [ln for ln in f.content.decode("utf-8").splitlines() if ln.strip()]
        batch = {
            "id": self._new_id("batch_stub_"), "object": "batch", "endpoint": body.get("endpoint"),
            "errors": None, "input_file_id": f.id, "completion_window": "24h", "status": "validating",
            "output_file_id": None, "error_file_id": None, "created_at": now, "in_progress_at": None,
            "expires_at": now + 86400, "finalizing_at": None, "completed_at": None, "failed_at": None,
            "expired_at": None, "cancelling_at": None, "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata"), "model": None, "usage": None,
        }
        self.batches[batch["id"]] = batch
        self._polls[batch["id"]] = 0
        return web.json_response(batch)

    async def _batch_get(self, request: web.Request) -> web.Response:
        self.requests.append(RecordedRequest("GET", request.path, None))
        batch = self.batches.get(request.match_info["id"])
        if batch is None:
            return _error(404, "No such batch.", param="batch_id")
        if batch["status"] in ("validating", "in_progress"):
            self._polls[batch["id"]] += 1
            if self._polls[batch["id"]] >= self.batch_polls_to_complete:
                await self._finish_batch(batch)
            else:
                batch["status"] = "in_progress"
                batch["in_progress_at"] = batch["in_progress_at"] or int(time.time())
        return web.json_response(batch)

    async def _finish_batch(self, batch: dict[str, Any]) -> None:
        now = int(time.time())
        final = self.batch_final_status
        if final == "failed":
            batch.update(status="failed", failed_at=now, errors={"object": "list", "data": [
                {"code": "invalid_request", "message": "stub: the batch failed validation", "param": None,
                 "line": None}]})
            return
        out_lines: list[str] = []
        err_lines: list[str] = []
        for raw in self.files[batch["input_file_id"]].content.decode("utf-8").splitlines():
            if not raw.strip():
                continue
            item = json.loads(raw)
            cid, body = item.get("custom_id"), item.get("body") or {}
            line: dict[str, Any] = {"id": self._new_id("batch_req_stub_"), "custom_id": cid}
            fault = self.batch_item_faults.get(cid)
            if fault in ("expired", "cancelled"):
                msg = ("This request could not be executed before the completion window expired."
                       if fault == "expired" else "This request was cancelled before it was executed.")
                line.update(response=None, error={"code": f"batch_{fault}", "message": msg})
                err_lines.append(json.dumps(line))
            elif fault is not None and fault.isdigit():
                status = int(fault)
                line.update(response={"status_code": status, "request_id": self._new_id("req_stub_"),
                                      "body": {"error": {"message": f"Stub error {status}.",
                                                         "type": _STATUS_TYPES.get(status, "server_error"),
                                                         "param": None, "code": None}}},
                            error=None)
                err_lines.append(json.dumps(line))
            else:
                completion = await self._completion(body, fault if fault in ("refusal", "malformed") else None)
                line.update(response={"status_code": 200, "request_id": self._new_id("req_stub_"),
                                      "body": completion}, error=None)
                out_lines.append(json.dumps(line, ensure_ascii=False))
        bid = batch["id"]
        if out_lines:
            batch["output_file_id"] = self._add_file(f"{bid}_output.jsonl", "batch_output",
                                                     ("\n".join(out_lines) + "\n").encode()).id
        if err_lines:
            batch["error_file_id"] = self._add_file(f"{bid}_error.jsonl", "batch_output",
                                                    ("\n".join(err_lines) + "\n").encode()).id
        batch["request_counts"] = {"total": len(out_lines) + len(err_lines), "completed": len(out_lines),
                                   "failed": len(err_lines)}
        batch["in_progress_at"] = batch["in_progress_at"] or now
        batch["finalizing_at"] = now
        if final == "expired":
            batch.update(status="expired", expired_at=now)
        elif final == "cancelled":
            batch.update(status="cancelled", cancelled_at=now, cancelling_at=now)
        else:
            batch.update(status="completed", completed_at=now)

    # -- fine-tuning --------------------------------------------------------------------------

    async def _ft_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(RecordedRequest("POST", request.path, body))
        for key in ("training_file", "validation_file"):
            fid = body.get(key)
            if (key == "training_file" or fid) and fid not in self.files:
                return _error(400, f"invalid {key}: {fid}", code="invalid_file", param=key)
        if not body.get("model"):
            return _error(400, "model is required", param="model")
        job = {
            "id": self._new_id("ftjob-stub-"), "object": "fine_tuning.job", "created_at": int(time.time()),
            "error": None, "fine_tuned_model": None, "finished_at": None,
            "hyperparameters": {"batch_size": "auto", "learning_rate_multiplier": "auto", "n_epochs": "auto"},
            "model": body["model"], "organization_id": "org-stub", "result_files": [],
            "seed": body.get("seed") or 42, "status": "validating_files", "trained_tokens": None,
            "training_file": body["training_file"], "validation_file": body.get("validation_file"),
            "estimated_finish": None, "integrations": None, "metadata": body.get("metadata"),
            "method": body.get("method") or {"type": "supervised"},
            "suffix": body.get("suffix"),
        }
        self.fine_tuning_jobs[job["id"]] = job
        self._polls[job["id"]] = 0
        return web.json_response(job)

    async def _ft_list(self, request: web.Request) -> web.Response:
        self.requests.append(RecordedRequest("GET", request.path, None))
        data = sorted(self.fine_tuning_jobs.values(), key=lambda j: j["created_at"], reverse=True)
        return web.json_response({"object": "list", "data": data, "has_more": False})

    async def _ft_get(self, request: web.Request) -> web.Response:
        self.requests.append(RecordedRequest("GET", request.path, None))
        job = self.fine_tuning_jobs.get(request.match_info["id"])
        if job is None:
            return _error(404, "No such fine-tuning job.", param="fine_tuning_job_id")
        if job["status"] not in ("succeeded", "failed", "cancelled"):
            self._polls[job["id"]] += 1
            if self._polls[job["id"]] >= self.fine_tune_polls_to_succeed:
                suffix = job.get("suffix") or "tuneloop"
                job.update(status="succeeded", finished_at=int(time.time()), trained_tokens=1000,
                           fine_tuned_model=f"ft:{job['model']}:org-stub:{suffix}:{job['id'][-6:]}")
            else:
                job["status"] = "running"
        return web.json_response(job)
