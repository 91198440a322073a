"""The OpenAI analyzer through the official client against the local stub (no patching)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from middleware.config import AnalysisConfig, IntentConfig, ProductConfig, load_config, load_env
from workers.analyzers.base import Analyzer, Outcome, RulesBatchAnalyzer, make_analyzer
from workers.analyzers.openai_analyzer import BatchPoll, OpenAIAnalyzer, poll_batch, submit_batch
from workers.analyzers.schema import ANALYSIS_FIELDS, analysis_json_schema, validate_analysis

try:  # tests/ is a package in some layouts and a plain directory on sys.path in others
    from bot.standins.openai_api import Fault, OpenAIStub, default_labeler
except ImportError:
    from openai_stub import Fault, OpenAIStub, default_labeler

CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"


@pytest.fixture(scope="module")
def base_cfg() -> AnalysisConfig:
    return load_config(CONFIG).analysis


@pytest.fixture
def cfg(base_cfg: AnalysisConfig) -> AnalysisConfig:
    c = base_cfg.model_copy(deep=True)
    c.openai.timeout_s = 2.0
    c.openai.max_retries = 2
    return c


@pytest.fixture
async def stub():
    async with OpenAIStub() as s:
        yield s


def analyzer(cfg: AnalysisConfig, stub: OpenAIStub) -> OpenAIAnalyzer:
    return OpenAIAnalyzer(cfg, api_key="sk-test", base_url=stub.base_url)


def assert_schema_valid(a: dict[str, Any], cfg: AnalysisConfig) -> None:
    assert list(a) == list(ANALYSIS_FIELDS)
    assert validate_analysis(a, cfg) == a


# -- live mode ------------------------------------------------------------------------------------


async def test_happy_path(cfg: AnalysisConfig, stub: OpenAIStub) -> None:
    texts = ["HLSO 16/20 con 20% glaseo, precio FOB?", "hola, buenos días", "cuándo sale el booking?"]
    a = analyzer(cfg, stub)
    assert isinstance(a, Analyzer) and a.name == "openai"
    out = await a.analyze_batch(texts)
    assert [o.kind for o in out] == ["ok", "ok", "ok"]
    for o in out:
        assert o.analysis is not None
        assert_schema_valid(o.analysis, cfg)
    assert out[0].analysis == {"intent": "price_quote", "product": "HLSO", "size": "16/20", "glaseo_percentage": 20,
                               "incoterm": "FOB", "destination": None, "quantity": None, "confidence": 0.9}
    assert [o.analysis["intent"] for o in out[1:]] == ["greeting", "logistics"]  # type: ignore[index]

    body = stub.chat_bodies[0]
    assert body["model"] == cfg.openai.model
    rf = body["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["strict"] is True
    assert rf["json_schema"]["schema"] == analysis_json_schema(cfg)
    system, user = body["messages"]
    assert system["role"] == "system" and cfg.intents[0].description in system["content"]
    assert cfg.system_prompt.strip() in system["content"]
    assert {user["content"] for user in (b["messages"][1] for b in stub.chat_bodies)} == set(texts)
    assert "temperature" not in body  # sent only when configured


async def test_rate_limit_then_success_uses_client_retry(cfg: AnalysisConfig, stub: OpenAIStub) -> None:
    stub.add_faults(Fault("429", retry_after=0.01))
    t = time.monotonic()
    [o] = await analyzer(cfg, stub).analyze_batch(["precio HOSO 30/40"])
    assert o.kind == "ok" and o.analysis and o.analysis["intent"] == "price_quote"
    assert stub.chat_count == 2  # the client's own retry, honoring Retry-After
    assert time.monotonic() - t < 1.0


async def test_rate_limit_beyond_retries_is_transient(cfg: AnalysisConfig, stub: OpenAIStub) -> None:
    cfg.openai.max_retries = 1
    stub.add_faults("429", "429")
    [o] = await analyzer(cfg, stub).analyze_batch(["precio"])
    assert o == Outcome.transient("rate_limited")
    assert stub.chat_count == 2


async def test_server_errors_beyond_retries_are_transient(cfg: AnalysisConfig, stub: OpenAIStub) -> None:
    stub.add_faults(*[Fault("500", retry_after=0.01)] * 3)
    [o] = await analyzer(cfg, stub).analyze_batch(["precio"])
    assert o == Outcome.transient("server_error")
    assert stub.chat_count == cfg.openai.max_retries + 1


async def test_timeout_is_transient(cfg: AnalysisConfig, stub: OpenAIStub) -> None:
    cfg.openai.timeout_s = 0.2
    cfg.openai.max_retries = 0
    stub.add_faults(Fault("timeout", seconds=5))
    t = time.monotonic()
    [o] = await analyzer(cfg, stub).analyze_batch(["precio"])
    assert o == Outcome.transient("timeout")
    assert time.monotonic() - t < 2.0


async def test_timeout_then_success_is_retried_by_client(cfg: AnalysisConfig, stub: OpenAIStub) -> None:
    cfg.openai.timeout_s = 0.2
    cfg.openai.max_retries = 1
    stub.add_faults(Fault("timeout", seconds=5))
    [o] = await analyzer(cfg, stub).analyze_batch(["hola"])
    assert o.kind == "ok"
    assert stub.chat_count == 2


async def test_connection_error_is_transient(cfg: AnalysisConfig, stub: OpenAIStub) -> None:
    cfg.openai.max_retries = 0
    stub.add_faults("disconnect")
    [o] = await analyzer(cfg, stub).analyze_batch(["hola"])
    assert o == Outcome.transient("connection_error")


async def test_nothing_listening_is_transient(cfg: AnalysisConfig) -> None:
    cfg.openai.max_retries = 0
    async with OpenAIStub() as s:
        url = s.base_url
    [o] = await OpenAIAnalyzer(cfg, api_key="sk-test", base_url=url).analyze_batch(["hola"])
    assert o == Outcome.transient("connection_error")


async def test_malformed_output_goes_to_review(cfg: AnalysisConfig, stub: OpenAIStub) -> None:
    stub.add_faults("malformed")
    [o] = await analyzer(cfg, stub).analyze_batch(["hola"])
    assert o == Outcome.review("malformed_output")


async def test_refusal_goes_to_review(cfg: AnalysisConfig, stub: OpenAIStub) -> None:
    stub.add_faults("refusal")
    [o] = await analyzer(cfg, stub).analyze_batch(["hola"])
    assert o == Outcome.review("refusal")


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"intent": "complaint"}, Outcome.review("malformed_output")),  # not a configured intent
        ({"glaseo_percentage": 80}, Outcome.review("malformed_output")),  # beyond glaseo_max
        ({"product": "IQF"}, Outcome.review("malformed_output")),  # not a catalog code
        ({"confidence": "high"}, Outcome.review("malformed_output")),
        ({"confidence": 1.7}, "clipped"),
        ({"product": "pelado y desvenado", "incoterm": "C&F", "size": ""}, "aliases"),
    ],
)
async def test_answers_are_validated(cfg: AnalysisConfig, patch: dict[str, Any], expected: Any) -> None:
    async def responder(body: dict[str, Any]) -> dict[str, Any]:
        return {**default_labeler(body), **patch}

    async with OpenAIStub(responder) as stub:
        [o] = await analyzer(cfg, stub).analyze_batch(["HLSO 16/20 precio"])
    if expected == "clipped":
        assert o.kind == "ok" and o.analysis and o.analysis["confidence"] == 1.0
    elif expected == "aliases":  # an OpenAI-compatible server that ignores the enum
        assert o.kind == "ok" and o.analysis
        assert (o.analysis["product"], o.analysis["incoterm"], o.analysis["size"]) == ("P&D", "CFR", None)
    else:
        assert o == expected


async def test_content_in_code_fence_is_accepted(cfg: AnalysisConfig) -> None:
    async with OpenAIStub(lambda body: "```json\n" + json.dumps(default_labeler(body)) + "\n```") as stub:
        [o] = await analyzer(cfg, stub).analyze_batch(["hola"])
    assert o.kind == "ok"


async def test_one_failure_never_fails_the_others(cfg: AnalysisConfig, stub: OpenAIStub) -> None:
    cfg.openai.max_retries = 0
    stub.fault_when("REFUSE", "refusal")
    stub.fault_when("BROKEN", "400")
    stub.fault_when("DOWN", Fault("503"))
    texts = ["hola", "REFUSE this", "precio HLSO", "BROKEN one", "booking ETA", "DOWN"]
    out = await analyzer(cfg, stub).analyze_batch(texts)
    assert [(o.kind, o.reason) for o in out] == [
        ("ok", None), ("review", "refusal"), ("ok", None), ("review", "bad_request"), ("ok", None),
        ("transient", "server_error"),
    ]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault("400", param="response_format", code="invalid_value"), "config_error"),
        (Fault("400", code="context_length_exceeded", param="messages"), "bad_request"),
        (Fault("404", code="model_not_found"), "not_found"),
        (Fault("422"), "unprocessable"),
    ],
)
async def test_client_errors(cfg: AnalysisConfig, stub: OpenAIStub, fault: Fault, reason: str) -> None:
    stub.add_faults(fault)
    [o] = await analyzer(cfg, stub).analyze_batch(["hola"])
    assert o.reason == reason
    # a deployment problem (model, response_format) is not the record's: it waits, not reviewed
    assert o.kind == ("review" if reason in ("bad_request", "unprocessable") else "transient")
    assert stub.chat_count == 1  # 4xx are not retried by the client


async def test_wrong_api_key_is_transient_not_review(cfg: AnalysisConfig) -> None:
    async with OpenAIStub(api_key="sk-right") as stub:
        [o] = await OpenAIAnalyzer(cfg, api_key="sk-wrong", base_url=stub.base_url).analyze_batch(["hola"])
        assert o == Outcome.transient("auth_error")
        [o] = await OpenAIAnalyzer(cfg, api_key="sk-right", base_url=stub.base_url).analyze_batch(["hola"])
        assert o.kind == "ok"


async def test_concurrency_bound(cfg: AnalysisConfig, stub: OpenAIStub) -> None:
    cfg.openai.concurrency = 3
    stub.latency = 0.05
    out = await analyzer(cfg, stub).analyze_batch([f"precio lote {i}" for i in range(12)])
    assert all(o.kind == "ok" for o in out)
    assert stub.chat_count == 12
    assert stub.max_in_flight == 3


async def test_empty_batch(cfg: AnalysisConfig, stub: OpenAIStub) -> None:
    assert await analyzer(cfg, stub).analyze_batch([]) == []
    assert stub.chat_count == 0


async def test_message_text_never_logged(cfg: AnalysisConfig, stub: OpenAIStub, caplog: pytest.LogCaptureFixture
                                         ) -> None:
    cfg.openai.max_retries = 1
    secret = "HLSO 16/20 SECRET-MARKER-7731"
    stub.add_faults(Fault("429", retry_after=0.01), "malformed", "refusal", Fault("500", retry_after=0.01), "400")
    caplog.set_level(logging.DEBUG)
    a = analyzer(cfg, stub)
    for _ in range(4):
        await a.analyze_batch([secret])
    bid = await submit_batch(a, [("r_1", secret)])
    await poll_batch(a, bid)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "SECRET-MARKER" not in logged
    assert "16/20" not in logged


def test_client_follows_the_event_loop(cfg: AnalysisConfig) -> None:
    """RQ jobs call asyncio.run each time: one analyzer must survive several loops."""
    stub = OpenAIStub()
    base_url, stop = stub.start_in_thread()
    try:
        a = OpenAIAnalyzer(cfg, api_key="sk-test", base_url=base_url)
        for _ in range(3):
            [o] = asyncio.run(a.analyze_batch(["hola"]))
            assert o.kind == "ok"
    finally:
        stop()
    stop()  # idempotent


# -- the schema -------------------------------------------------------------------------------


def _walk_objects(schema: dict[str, Any]):
    if schema.get("type") == "object":
        yield schema
    for sub in (schema.get("properties") or {}).values():
        yield from _walk_objects(sub)


def test_schema_is_strict_valid(cfg: AnalysisConfig) -> None:
    schema = analysis_json_schema(cfg)
    objects = list(_walk_objects(schema))
    assert objects
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert sorted(obj["required"]) == sorted(obj["properties"])
    props = schema["properties"]
    assert list(props) == list(ANALYSIS_FIELDS)
    assert props["intent"] == {**props["intent"], "type": "string", "enum": cfg.intent_names}
    assert props["product"]["type"] == ["string", "null"]
    assert props["product"]["enum"] == [p.code for p in cfg.products] + [None]
    assert props["incoterm"]["enum"] == [*cfg.incoterms, None]
    for key in ("size", "destination", "quantity"):
        assert props[key]["type"] == ["string", "null"]
    assert props["glaseo_percentage"]["type"] == ["integer", "null"]
    assert props["confidence"]["type"] == "number"
    # Only keywords every structured-output engine accepts.
    allowed = {"type", "enum", "description", "properties", "required", "additionalProperties"}
    for p in [schema, *props.values()]:
        assert set(p) <= allowed
    json.dumps(schema)  # serializable as sent


async def test_schema_follows_config(cfg: AnalysisConfig, stub: OpenAIStub) -> None:
    changed = cfg.model_copy(deep=True)
    changed.intents.append(IntentConfig(name="complaint", description="a complaint about a delivery"))
    changed.products.append(ProductConfig(code="BUTTERFLY", aliases=["mariposa"]))
    changed.incoterms = {"FOB": ["FOB"]}
    changed.glaseo_max = 30
    props = analysis_json_schema(changed)["properties"]
    assert "complaint" in props["intent"]["enum"] and "complaint" not in analysis_json_schema(cfg)["properties"][
        "intent"]["enum"]
    assert "BUTTERFLY" in props["product"]["enum"]
    assert props["incoterm"]["enum"] == ["FOB", None]
    assert "0 to 30" in props["glaseo_percentage"]["description"]

    stub.responder = lambda body: {**default_labeler(body), "intent": "complaint", "product": "mariposa"}
    [o] = await analyzer(changed, stub).analyze_batch(["the boxes arrived broken"])
    assert o.kind == "ok" and o.analysis and (o.analysis["intent"], o.analysis["product"]) == ("complaint", "BUTTERFLY")
    sent = stub.chat_bodies[-1]
    assert "complaint" in sent["response_format"]["json_schema"]["schema"]["properties"]["intent"]["enum"]
    assert "a complaint about a delivery" in sent["messages"][0]["content"]
    # and the original config refuses it
    [o] = await analyzer(cfg, stub).analyze_batch(["the boxes arrived broken"])
    assert o == Outcome.review("malformed_output")


async def test_optional_request_parameters(cfg: AnalysisConfig, stub: OpenAIStub) -> None:
    cfg.openai.temperature = 0.0
    cfg.openai.max_completion_tokens = 300
    await analyzer(cfg, stub).analyze_batch(["hola"])
    assert stub.chat_bodies[0]["temperature"] == 0.0
    assert stub.chat_bodies[0]["max_completion_tokens"] == 300


# -- Batch API ------------------------------------------------------------------------------------


async def test_batch_round_trip(cfg: AnalysisConfig) -> None:
    items = [("r_1", "HLSO 16/20 precio FOB"), ("r_2", "hola"), ("r_3", "pago por swift"),
             ("r_4", "booking ETA"), ("r_5", "REFUSE me")]
    async with OpenAIStub(batch_polls_to_complete=2) as stub:
        stub.batch_item_faults = {"r_3": "expired", "r_4": "500", "r_5": "refusal"}
        a = analyzer(cfg, stub)
        bid = await submit_batch(a, items)

        [upload] = stub.requests_to("POST", "/v1/files")
        assert upload.body["purpose"] == "batch"
        [create] = stub.requests_to("POST", "/v1/batches")
        assert create.body["endpoint"] == "/v1/chat/completions" and create.body["completion_window"] == "24h"
        lines = [json.loads(x) for x in stub.files[create.body["input_file_id"]].content.decode().splitlines()]
        assert [x["custom_id"] for x in lines] == [rid for rid, _ in items]
        assert all(x["method"] == "POST" and x["url"] == "/v1/chat/completions" for x in lines)
        assert lines[0]["body"] == a.request_body(items[0][1])

        first = await poll_batch(a, bid)
        assert isinstance(first, BatchPoll) and not first.done and first.outcomes == {} and first.resubmit == []

        done = await poll_batch(a, bid)
    assert done.done and done.status == "completed"
    assert set(done.outcomes) == {"r_1", "r_2", "r_5"}
    assert done.outcomes["r_1"].kind == "ok" and done.outcomes["r_1"].analysis["product"] == "HLSO"  # type: ignore[index]
    assert done.outcomes["r_2"].analysis["intent"] == "greeting"  # type: ignore[index]
    assert done.outcomes["r_5"] == Outcome.review("refusal")
    assert sorted(done.resubmit) == ["r_3", "r_4"]  # expired, and a 5xx inside the batch
    assert done.request_counts == {"total": 5, "completed": 3, "failed": 2}
    assert stub.chat_count == 0  # nothing went through the live endpoint


@pytest.mark.parametrize("final", ["expired", "failed"])
async def test_batch_not_completed_resubmits_what_is_missing(cfg: AnalysisConfig, final: str) -> None:
    items = [("r_1", "hola"), ("r_2", "precio"), ("r_3", "pago")]
    async with OpenAIStub() as stub:
        stub.batch_final_status = final
        stub.batch_item_faults = {"r_2": "expired"}
        # a bare client works as well as an analyzer, given the config
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=stub.base_url, max_retries=0)
        bid = await submit_batch(client, items, cfg=cfg)
        poll = await poll_batch(client, bid, cfg=cfg)
        await client.close()
    assert poll.done and poll.status == final
    if final == "expired":
        assert set(poll.outcomes) == {"r_1", "r_3"} and poll.resubmit == ["r_2"]
    else:
        assert poll.outcomes == {} and sorted(poll.resubmit) == ["r_1", "r_2", "r_3"]


async def test_submit_batch_refuses_bad_input(cfg: AnalysisConfig, stub: OpenAIStub) -> None:
    a = analyzer(cfg, stub)
    with pytest.raises(ValueError):
        await submit_batch(a, [])
    with pytest.raises(ValueError):
        await submit_batch(a, [("r_1", "a"), ("r_1", "b")])
    with pytest.raises(TypeError):
        await submit_batch(openai.AsyncOpenAI(api_key="k", base_url=stub.base_url), [("r_1", "a")])
    assert stub.requests == []


# -- the stub from a thread, with the sync client and the fine-tuning endpoints ------------------


def test_stub_in_thread_with_sync_client() -> None:
    stub = OpenAIStub(fine_tune_polls_to_succeed=2)
    base_url, stop = stub.start_in_thread()
    try:
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        client = openai.OpenAI(api_key="sk-test", base_url=base_url, max_retries=0)
        r = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hola"}])
        assert json.loads(r.choices[0].message.content or "")["intent"] == "greeting"

        f = client.files.create(file=("train.jsonl", b'{"messages": []}\n'), purpose="fine-tune")
        assert client.files.content(f.id).content == b'{"messages": []}\n'
        job = client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=f.id, suffix="shrimp")
        assert job.status == "validating_files"
        assert client.fine_tuning.jobs.retrieve(job.id).status == "running"
        done = client.fine_tuning.jobs.retrieve(job.id)
        assert done.status == "succeeded" and done.fine_tuned_model and "shrimp" in done.fine_tuned_model
        [rec] = stub.requests_to("POST", "/v1/fine_tuning/jobs")
        assert rec.body["training_file"] == f.id and rec.body["suffix"] == "shrimp"
        with pytest.raises(openai.BadRequestError):
            client.fine_tuning.jobs.create(model="m", training_file="file-nope")
        client.close()
    finally:
        stop()


# -- make_analyzer --------------------------------------------------------------------------------


def test_make_analyzer_openai_with_key(base_cfg: AnalysisConfig) -> None:
    config = load_config(CONFIG)
    env = load_env({"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    a = make_analyzer(config, env)
    assert isinstance(a, OpenAIAnalyzer) and a.name == "openai"
    assert isinstance(make_analyzer(base_cfg, env), OpenAIAnalyzer)  # the section alone works too


async def test_make_analyzer_rules_without_key(base_cfg: AnalysisConfig) -> None:
    pytest.importorskip("workers.analyzers.rules")
    a = make_analyzer(load_config(CONFIG), load_env({}))
    assert a.name == "rules" and isinstance(a, Analyzer)
    out = await a.analyze_batch(["HLSO 16/20 con 20% glaseo", "hola"])
    assert len(out) == 2 and all(o.kind == "ok" and o.analysis for o in out)



async def test_rules_wrapper_runs_sync_analyze_per_text() -> None:
    class FakeRules:
        name = "rules"

        def analyze(self, text: str) -> dict[str, Any]:
            if text == "boom":
                raise RuntimeError("bad input")
            return {"intent": "other", "confidence": 0.5}

    a = RulesBatchAnalyzer(FakeRules())
    assert isinstance(a, Analyzer) and a.name == "rules"
    out = await a.analyze_batch(["a", "boom", "b"])
    assert [o.kind for o in out] == ["ok", "review", "ok"]
    assert out[1] == Outcome.review("analyzer_error")
