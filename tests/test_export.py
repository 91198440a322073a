"""Export for fine-tuning: formats, the split by user, erasure, PII residue, atomic files, the
validator, counters and history, the CLI, --upload against the OpenAI stand-in, --rebuild."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.standins.openai_api import OpenAIStub
from middleware.record import Record, iso_z, new_record_id, to_hash
from middleware.redis_conn import connect
from tests.conftest import ROOT, SECRET
from tests.records import SAMPLES, seed
from workers import export_io
from workers.export import ResidueScan, export, history
from workers.export_check import TokenCounter, chat_errors, prompt_completion_errors, tiktoken_cache_file
from workers.export_io import Staging
from workers.export_rebuild import exports_holding, rebuild
from workers.export_split import assign_valid
from workers.runtime import Runtime
from workers.tasks import Processor

INTENTS = ["proforma", "price_quote", "availability", "logistics", "payment", "greeting", "price_quote"]


@pytest.fixture
def rt(config, env) -> Runtime:
    return Runtime(config, env, connect(env))


def users(rt: Runtime, n: int, base: int = 1000) -> list[str]:
    return [rt.pseudonymizer(f"telegram:{base + i}") for i in range(n)]


def approve(rt: Runtime, ids: list[str], *, confidence: float = 0.95, reviewed_by: str | None = None,
            detector_version: str | None = "current", content: str | None = None) -> None:
    """Route records to approved directly (as a worker, or a reviewer, would leave them)."""
    version = ResidueScan(rt.anonymizer).version        # today's detector, as the export sees it
    pipe = rt.handle.sync.pipeline(transaction=False)
    for i, rec in zip(ids, rt.store.get_many(ids), strict=True):
        assert rec is not None
        base = rec.content.split(" #")[0]
        n = next((k for k, (t, _) in enumerate(SAMPLES) if t == base), 0)
        rec.status = "approved"
        rec.analysis = {"intent": INTENTS[n], "product": None, "size": None, "glaseo_percentage": None,
                        "incoterm": None, "destination": None, "quantity": None, "confidence": confidence}
        rec.analyzer, rec.qa_passed, rec.processed_at = "rules", True, iso_z(time.time())
        rec.detector_version = version if detector_version == "current" else detector_version
        if content is not None:
            rec.content = content
        if reviewed_by:
            rec.reviewed_by, rec.reviewed_at = reviewed_by, iso_z(time.time())
        pipe.hset(rt.keys.record(i), mapping=to_hash(rec))
        pipe.smove(rt.keys.status("pending"), rt.keys.status("approved"), i)
    pipe.execute()


def lines(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines()]


def split_users(res: dict[str, Any]) -> dict[str, set[str]]:
    d = Path(res["files"]["train"]).parent
    ps = json.loads((d / "manifest.json").read_text())["pseudonyms"]
    out = {}
    for s in ("train", "valid"):
        rows = (d / f"{s}.users.tsv").read_text().splitlines()
        assert len(rows) == res[f"{s}_examples"]
        out[s] = {ps[int(r.split("\t")[0])] for r in rows}
    return out


# ---------------------------------------------------------------------------- the validator

def test_validator_error_kinds_on_hand_made_lines():
    ok = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hola"},
                       {"role": "assistant", "content": "¡Hola!"}]}
    assert chat_errors(ok) == []
    assert chat_errors(["not", "a", "dict"]) == ["data_type"]
    assert chat_errors({}) == ["missing_messages_list"]
    assert chat_errors({"messages": [], "extra": 1}) == ["example_unrecognized_key", "missing_messages_list"]
    assert chat_errors({"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}) == [
        "message_missing_key", "missing_content"]
    assert "message_unrecognized_key" in chat_errors(
        {"messages": [{"role": "user", "content": "a", "colour": 1}, {"role": "assistant", "content": "b"}]})
    assert "unrecognized_role" in chat_errors(
        {"messages": [{"role": "bot", "content": "a"}, {"role": "assistant", "content": "b"}]})
    assert "missing_content" in chat_errors(
        {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "b"}]})
    assert "missing_content" in chat_errors(
        {"messages": [{"role": "user", "content": ["parts"]}, {"role": "assistant", "content": "b"}]})
    assert chat_errors({"messages": [{"role": "user", "content": "a"}]}) == ["example_missing_assistant_message"]
    assert prompt_completion_errors({"prompt": "Usuario: a\nAsistente:", "completion": " b\n"}) == []
    assert prompt_completion_errors({"prompt": "", "completion": " \n", "x": 1}) == [
        "example_unrecognized_key", "missing_prompt", "missing_completion"]


def test_tokens_never_trigger_a_download(tmp_path, monkeypatch):
    import tiktoken.load

    def no_network(*a: Any, **k: Any) -> bytes:
        raise AssertionError("tiktoken tried to fetch an encoding")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    for environ in ({"TIKTOKEN_CACHE_DIR": str(tmp_path)}, {"TIKTOKEN_CACHE_DIR": ""}):
        assert tiktoken_cache_file("o200k_base", environ) is None
        c = TokenCounter(environ=environ)
        assert not c.exact and c.method.startswith("estimate")
        assert c.count("hola " * 30) >= 30   # over-counts: ~30 real tokens
    # a corrupt cached file is refused too (tiktoken would re-download it)
    bad = tmp_path / "fb374d419588a4632f3f557e76b4b70aebbca790"
    bad.write_bytes(b"garbage")
    assert tiktoken_cache_file("o200k_base", {"TIKTOKEN_CACHE_DIR": str(tmp_path)}) is None


# ---------------------------------------------------------------------------- formats

def test_chat_lines_context_from_the_same_user_within_the_window(rt):
    rt.config.export.context_turns = 2
    a, b = users(rt, 2)
    t0 = int(time.time() * 1000) - 3 * 3600_000
    minute = 60_000
    # a: four messages a minute apart, then one 2 h later (outside the 30-minute window);
    # b: interleaved, so a's context must skip them
    ids_a = seed(rt.store, [a], 4, start_ms=t0, step_ms=minute)
    ids_b = seed(rt.store, [b], 4, texts=[(f"b {i}", f"rb {i}") for i in range(4)], start_ms=t0 + 30_000,
                 step_ms=minute)
    late = seed(rt.store, [a], 1, texts=[("hola de nuevo", "¡Hola!")], start_ms=t0 + 120 * minute)
    more = seed(rt.store, [b], 8, texts=[(f"pregunta {i}", f"respuesta {i}") for i in range(8)],
                start_ms=t0 + 10 * minute, step_ms=minute)
    approve(rt, ids_a + ids_b + late + more)
    res = export(rt, train_split=1.0)
    assert res["success"] and res["valid_examples"] == 0 and res["total"] == 17
    out = lines(res["files"]["train"])
    system = rt.config.export.system_prompt
    by_user = {}
    for ex in out:
        m = ex["messages"]
        assert m[0] == {"role": "system", "content": system}
        assert [x["role"] for x in m[1:]] == ["user", "assistant"] * ((len(m) - 1) // 2)
        by_user.setdefault(m[-2]["content"], []).append(m)
    # a's third message: context = a's first two (not b's), at most 2 turns
    third = by_user[SAMPLES[2][0]][0]
    assert [x["content"] for x in third[1:-2]] == [SAMPLES[0][0], SAMPLES[0][1], SAMPLES[1][0], SAMPLES[1][1]]
    fourth = by_user[SAMPLES[3][0]][0]
    assert [x["content"] for x in fourth[1:-2:2]] == [SAMPLES[1][0], SAMPLES[2][0]]   # the last 2 turns
    first = by_user[SAMPLES[0][0]]
    assert all(len(m) == 3 for m in first)   # nobody's earlier records
    assert len(by_user["hola de nuevo"][0]) == 3   # 2 h later: outside the window
    assert out[0]["messages"][-1]["content"] == SAMPLES[0][1]
    # lines built from cached pieces are exactly what json.dumps writes, and pass the checks
    for raw in Path(res["files"]["train"]).read_text(encoding="utf-8").splitlines():
        ex = json.loads(raw)
        assert json.dumps(ex, ensure_ascii=False, separators=(",", ":")) == raw
        assert chat_errors(ex) == []


def test_prompt_completion_lines_exactly_the_seeds(rt):
    u = users(rt, 3)
    ids = seed(rt.store, u, 12)
    approve(rt, ids)
    res = export(rt, fmt="prompt-completion", train_split=1.0)
    assert res["success"]
    raw = Path(res["files"]["train"]).read_text(encoding="utf-8").splitlines()
    assert raw[0] == json.dumps({"prompt": f"Usuario: {SAMPLES[0][0]}\nAsistente:",
                                 "completion": f" {SAMPLES[0][1]}\n"}, ensure_ascii=False, separators=(",", ":"))
    for line in map(json.loads, raw):
        assert set(line) == {"prompt", "completion"}
        assert line["prompt"].startswith("Usuario: ") and line["prompt"].endswith("\nAsistente:")
        assert line["completion"].startswith(" ") and line["completion"].endswith("\n")
    # labels come from config
    rt.config.export.user_label, rt.config.export.assistant_label = "User", "Assistant"
    res = export(rt, fmt="prompt-completion", train_split=1.0)
    assert lines(res["files"]["train"])[0]["prompt"] == f"User: {SAMPLES[0][0]}\nAssistant:"


def test_nlu_lines_and_records_without_reply(rt):
    u = users(rt, 2)
    ids = seed(rt.store, u, 12)
    ids += seed(rt.store, u, 2, texts=[("sin respuesta HLSO 16/20", "")])
    approve(rt, ids)
    res = export(rt, fmt="nlu", train_split=1.0)
    assert res["success"] and res["total"] == 14
    ex = lines(res["files"]["train"])[0]["messages"]
    assert ex[0] == {"role": "system", "content": rt.config.analysis.system_prompt.strip()}
    assert ex[1] == {"role": "user", "content": SAMPLES[0][0]}
    assert json.loads(ex[2]["content"])["intent"] == "proforma"
    chat = export(rt, train_split=1.0)
    assert chat["total"] == 12 and chat["skipped"]["no_reply"] == 2
    assert any("without a reply" in w for w in chat["warnings"])


# ---------------------------------------------------------------------------- the split

@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 60), split=st.floats(0.05, 1.0), seed_=st.integers(0, 10),
       data=st.data())
def test_assignment_never_puts_a_user_on_both_sides(n, split, seed_, data):
    names = [f"u_{i:04d}" for i in range(n)]
    strata = data.draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    examples = data.draw(st.lists(st.integers(1, 30), min_size=n, max_size=n))
    valid, warnings = assign_valid(names, strata, examples, split, seed_)
    assert len(valid) == n
    train_n = sum(e for e, v in zip(examples, valid, strict=True) if not v)
    assert any(not v for v in valid)                        # train is never empty
    if sum(examples) >= 10:
        assert train_n >= 10
    if not any(valid) and split < 1:
        assert warnings                                      # an empty side is said
    assert valid == assign_valid(names, strata, examples, split, seed_)[0]   # deterministic


def test_no_user_on_both_sides_end_to_end(rt):
    rng = random.Random(7)
    for round_ in range(4):
        n = rng.randint(2, 25)
        u = users(rt, n, base=10_000 * (round_ + 1))
        approve(rt, seed(rt.store, u, max(12, 3 * n)))
        res = export(rt, seed=round_)
        assert res["success"]
        sides = split_users(res)
        assert not sides["train"] & sides["valid"]
        assert sides["valid"], res                           # enough users: both sides


def test_one_user_leaves_valid_empty_and_says_so(rt):
    approve(rt, seed(rt.store, users(rt, 1), 12))
    res = export(rt)
    assert res["success"] and res["valid_examples"] == 0 and res["train_examples"] == 12
    assert any("valid split is empty" in w for w in res["warnings"])


# ---------------------------------------------------------------------------- what never goes out

def test_erased_users_are_absent(rt):
    keep, gone, again = users(rt, 3)
    now = int(time.time() * 1000)
    approve(rt, seed(rt.store, [keep, gone, again], 30, start_ms=now - 60_000))
    rt.store.withdraw(gone, "cli")                           # erases gone's records
    # `again`: withdrew, but the records stayed in the store (an erasure that did not finish,
    # a restored backup): the ledger's erasure time, after their capture, still excludes them;
    # then a new grant, and what is captured after it is theirs to give
    rt.store.withdraw(again, "cli", erase=False)
    rt.handle.sync.hset(rt.keys.consent(again), "erased_at", now)
    rt.store.grant(again, "es:test", "es", "api")
    time.sleep(0.01)
    new = seed(rt.store, [again], 3, texts=[(f"nuevo {i}", f"ok {i}") for i in range(3)])
    approve(rt, new)
    res = export(rt, train_split=1.0)
    assert res["success"] and res["total"] == 13
    assert res["skipped"]["erased"] == 10
    contributed = split_users(res)["train"]
    assert contributed == {keep, again} and gone not in contributed
    texts = {ex["messages"][-2]["content"] for ex in lines(res["files"]["train"])}
    assert {f"nuevo {i}" for i in range(3)} <= texts
    # users whose consent is no longer active are out, even when nothing was erased
    rt.store.withdraw(keep, "cli", erase=False)
    res = export(rt, train_split=1.0)
    assert not res["success"] and res["skipped"]["consent_inactive"] == 10


def test_pii_residue_of_an_older_detector_blocks_the_line(rt):
    u = users(rt, 3)
    ids = seed(rt.store, u, 14)
    approve(rt, ids[:12])
    approve(rt, ids[12:13], detector_version="0.old", content="mándame la proforma al 0991234567 porfa")
    approve(rt, ids[13:], detector_version="0.old")         # old, but clean: exported
    res = export(rt, train_split=1.0)
    assert res["success"] and res["total"] == 13
    assert res["skipped"]["pii_residue"] == 1
    assert "0991234567" not in Path(res["files"]["train"]).read_text()
    manifest = json.loads(Path(res["files"]["manifest"]).read_text())
    assert manifest["counts"]["skipped"]["pii_residue"] == 1
    assert manifest["counts"]["residue_scanned"] == 2            # only the two older records


def test_duplicates_are_written_once(rt):
    rt.config.export.context_minutes = 0
    u = users(rt, 4)
    ids = seed(rt.store, u, 12)
    for x in u:                                              # the same line from every user
        ids += seed(rt.store, [x], 1, texts=[SAMPLES[0]])
    approve(rt, ids)
    res = export(rt, train_split=1.0)
    assert res["total"] == 12 and res["skipped"]["duplicate"] == 4


# ---------------------------------------------------------------------------- options

def test_min_confidence_filters_automatic_approvals_not_reviewed_ones(rt):
    u = users(rt, 4)
    auto_hi = seed(rt.store, u, 12)
    auto_lo = seed(rt.store, u, 5, texts=[(f"bajo {i}", f"r {i}") for i in range(5)])
    reviewed = seed(rt.store, u, 11, texts=[(f"revisado {i}", f"r {i}") for i in range(11)])
    approve(rt, auto_hi, confidence=0.9)
    approve(rt, auto_lo, confidence=0.7)
    approve(rt, reviewed, confidence=0.3, reviewed_by="u_reviewer")
    assert export(rt, min_confidence=0.85, train_split=1.0)["total"] == 12           # processed only
    assert export(rt, min_confidence=0.6, train_split=1.0)["total"] == 17
    both = export(rt, min_confidence=0.85, source="both", train_split=1.0)
    assert both["total"] == 23 and both["skipped"]["low_confidence"] == 5
    rev = export(rt, min_confidence=0.99, source="reviewed", train_split=1.0)
    assert rev["total"] == 11
    assert all(ex["messages"][-2]["content"].startswith("revisado") for ex in lines(rev["files"]["train"]))


def test_bad_options_raise_value_error(rt):
    for kwargs in ({"fmt": "csv"}, {"source": "all"}, {"min_confidence": 1.5}, {"train_split": 0},
                   {"max_examples": 0}, {"since": "yesterday"}, {"since": "2024-02-01", "until": "2024-01-01"}):
        with pytest.raises(ValueError):
            export(rt, **kwargs)


def test_date_range_and_max_examples(rt):
    u = users(rt, 3)
    day = 86_400_000
    t0 = int(time.time() * 1000) - 10 * day
    old = seed(rt.store, u, 12, start_ms=t0)
    recent = seed(rt.store, u, 12, texts=[(f"reciente {i}", f"r {i}") for i in range(12)], start_ms=t0 + 5 * day)
    approve(rt, old + recent)
    since = iso_z((t0 + 2 * day) / 1000)
    res = export(rt, since=since, train_split=1.0)
    assert res["total"] == 12
    assert all(ex["messages"][-2]["content"].startswith("reciente") for ex in lines(res["files"]["train"]))
    assert export(rt, until=since, train_split=1.0)["total"] == 12
    capped = export(rt, max_examples=15, train_split=1.0)
    assert capped["total"] == 15 and any("max_examples" in w for w in capped["warnings"])


def test_fewer_than_ten_is_success_false_with_the_reason(rt):
    approve(rt, seed(rt.store, users(rt, 2), 9))
    res = export(rt)
    assert res["success"] is False and res["total"] == 9
    assert "at least 10" in res["error"]
    assert not (Path(rt.env.data_dir) / "finetune" / "latest").exists()
    assert int(rt.handle.sync.hget(rt.keys.stats, "exported") or 0) == 0


# ---------------------------------------------------------------------------- files

def test_a_crash_mid_export_leaves_no_partial_file(rt, tmp_path, monkeypatch):
    approve(rt, seed(rt.store, users(rt, 3), 40))
    real_scan = export_io.StoreScanner.scan

    def crashing(self, lo, hi):
        for i, chunk in enumerate(real_scan(self, lo, hi)):
            if i == 1:
                raise RuntimeError("disk on fire")
            yield chunk

    monkeypatch.setattr(export_io.StoreScanner, "scan", crashing)
    monkeypatch.setattr(export_io.StoreScanner, "chunk", 10)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        export(rt, out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == []
    with pytest.raises(RuntimeError):
        export(rt)
    root = Path(rt.env.data_dir) / "finetune"
    assert sorted(p.name for p in root.iterdir()) == []

    # the writer itself: a generator that raises half-way publishes nothing
    def gen():
        yield '{"a": 1}\n'
        raise OSError("no space left")

    st_ = Staging(out, fresh=False)
    with pytest.raises(OSError):
        try:
            with open(st_.path("train.jsonl"), "w") as f:
                for line in gen():
                    f.write(line)
            st_.commit()
        except BaseException:
            st_.abort()
            raise
    assert list(out.iterdir()) == []


def test_files_manifest_latest_counter_and_history(rt):
    u = users(rt, 6)
    approve(rt, seed(rt.store, u, 60))
    res = export(rt, seed=3)
    assert res["success"] and res["total"] == 60 == res["train_examples"] + res["valid_examples"]
    assert set(res) >= {"success", "train_examples", "valid_examples", "total", "files", "warnings"}
    d = Path(res["files"]["train"]).parent
    root = Path(rt.env.data_dir) / "finetune"
    assert d.parent == root and (root / "latest").resolve() == d.resolve()
    assert sorted(p.name for p in d.iterdir()) == ["manifest.json", "train.jsonl", "train.users.tsv",
                                                   "valid.jsonl", "valid.users.tsv"]
    m = json.loads((d / "manifest.json").read_text())
    assert m["options"]["seed"] == 3 and m["format"] == "chat"
    assert sorted(m["pseudonyms"]) == sorted(u)
    assert m["splits"]["train"]["examples"] == res["train_examples"]
    assert sum(m["splits"]["train"]["intents"].values()) == res["train_examples"]
    assert m["splits"]["train"]["tokens"]["max"] <= 65_536 and m["tokens"]["method"]
    assert int(rt.handle.sync.hget(rt.keys.stats, "exported")) == 60
    again = export(rt, seed=3)
    assert Path(again["files"]["train"]).parent != d                  # same second: a new dir
    assert Path(again["files"]["train"]).read_bytes() == Path(res["files"]["train"]).read_bytes()
    assert int(rt.handle.sync.hget(rt.keys.stats, "exported")) == 120
    h = history(rt)
    assert len(h) == 2 and h[0]["total"] == 60 and h[0]["dir"] == str(Path(again["files"]["train"]).parent)
    rt.config.export.history_keep = 2
    export(rt)
    assert rt.handle.sync.llen(rt.keys.exports) == 2


def test_processed_by_the_offline_analyzer(rt):
    u = users(rt, 5)
    ids = seed(rt.store, u, 70)
    res = Processor(rt).process(ids)
    assert res.passed_qa >= 10
    out = export(rt, min_confidence=0.0)
    assert out["success"] and out["total"] == res.passed_qa


# ---------------------------------------------------------------------------- CLI, upload, rebuild

@pytest.fixture
def cli_env(rt, config, env, redis_url, tmp_path, monkeypatch):
    cfg = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    cfg["redis"]["prefix"] = config.redis.prefix
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    for k, v in {"TUNELOOP_CONFIG": str(path), "REDIS_URL": redis_url, "TUNELOOP_SECRET": SECRET,
                 "TUNELOOP_DATA_DIR": str(env.data_dir)}.items():
        monkeypatch.setenv(k, v)
    for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


def test_cli_export(rt, cli_env, tmp_path, capsys):
    from bot.cli import main

    approve(rt, seed(rt.store, users(rt, 4), 9))
    assert main(["export"]) == 1
    assert json.loads(capsys.readouterr().out)["success"] is False
    approve(rt, seed(rt.store, users(rt, 4), 20, texts=[(f"m {i}", f"r {i}") for i in range(20)]))
    out = tmp_path / "mine"
    assert main(["export", "--out", str(out), "--format", "prompt-completion", "--seed", "4"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["success"] and res["files"]["train"] == str(out / "train.jsonl")
    assert (out / "train.jsonl").exists() and not any(p.name.startswith(".") for p in out.iterdir())
    assert main(["export", "--since", "not-a-date"]) == 2
    assert "since" in capsys.readouterr().err
    assert main(["export", "--upload", "--format", "prompt-completion"]) == 2
    assert "chat-format" in capsys.readouterr().err


def test_upload_against_the_openai_stand_in(rt, cli_env, capsys):
    from bot.cli import main

    stub = OpenAIStub()
    base_url, stop = stub.start_in_thread()
    try:
        cli_env.setenv("OPENAI_API_KEY", "sk-test")
        cli_env.setenv("OPENAI_BASE_URL", base_url)
        approve(rt, seed(rt.store, users(rt, 8), 40))
        assert main(["export", "--upload"]) == 0
        res = json.loads(capsys.readouterr().out)
        up = res["upload"]
        assert up["job_id"].startswith("ftjob-")
        uploads = stub.requests_to("POST", "/v1/files")
        assert [r.body["purpose"] for r in uploads] == ["fine-tune", "fine-tune"]
        assert stub.files[up["training_file"]].content == Path(res["files"]["train"]).read_bytes()
        assert stub.files[up["validation_file"]].content == Path(res["files"]["valid"]).read_bytes()
        job = stub.requests_to("POST", "/v1/fine_tuning/jobs")[0].body
        assert job["method"] == {"type": "supervised"} and job["model"] == rt.config.export.fine_tune_model
        assert job["training_file"] == up["training_file"] and job["validation_file"] == up["validation_file"]
    finally:
        stop()


def test_rebuild_drops_users_erased_since(rt, cli_env, capsys):
    from bot.cli import main

    u = users(rt, 5)
    approve(rt, seed(rt.store, u, 50))
    res = export(rt, seed=1)
    d = Path(res["files"]["train"]).parent
    before = split_users(res)
    assert exports_holding(rt, u[0]) == [str(d)]
    rt.store.withdraw(u[0], "cli")
    rt.store.withdraw(u[1], "cli")
    assert main(["export", "--rebuild"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["removed_users"] == 2 and out["removed_examples"] == 20 and len(out["rebuilt"]) == 1
    m = json.loads((d / "manifest.json").read_text())
    assert u[0] not in m["pseudonyms"] and u[1] not in m["pseudonyms"] and len(m["pseudonyms"]) == 3
    after = {"train_examples": m["counts"]["train"], "valid_examples": m["counts"]["valid"],
             "files": {"train": str(d / "train.jsonl")}}
    sides = split_users(after)
    assert sides["train"] | sides["valid"] == (before["train"] | before["valid"]) - {u[0], u[1]}
    assert m["counts"]["written"] == 30 == len(lines(d / "train.jsonl")) + len(lines(d / "valid.jsonl"))
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".")]
    # nothing more to do the second time
    assert rebuild(rt)["rebuilt"] == [] and exports_holding(rt, u[0]) == []



# ---------------------------------------------------------------------------- the store reader

_tricky = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40) | st.sampled_from(
    ['say "hi"', 'a\\', '\\"', '"content":"x"', '],"reply":["', "\x1d\x1e\x1f\x00", "ñandú ¿qué?", "", "null"])


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(content=_tricky, replies=st.lists(_tricky, max_size=3), ver=st.none() | _tricky,
       intent=st.none() | _tricky, conf=st.floats(0, 1), reviewed=st.booleans(), meta_key=_tricky,
       spaced=st.booleans(), want_result=st.booleans())
def test_store_reader_reads_any_record_as_python_would(rt, content, replies, ver, intent, conf, reviewed,
                                                       meta_key, spaced, want_result):
    """The Lua reader's fast way (copying JSON literals) and slow way (cjson) both give what
    json.loads in Python gives, whatever the text."""
    u = users(rt, 1)[0]
    if not rt.store.consent(u).active:
        rt.store.grant(u, "es:test", "es", "api")
    ms = 1_600_000_000_000 + random.randrange(10**9)
    rec = Record(id=new_record_id(ms), user_id=u, channel="telegram", content=content, original_length=1,
                 reply=replies, metadata={meta_key: {"detector_version": "x", "content": content}},
                 captured_at=iso_z(ms / 1000), status="approved", detector_version=ver,
                 analysis={"intent": intent, "confidence": conf, "note": {"intent": "x"} if spaced else None},
                 reviewed_by="u_rev" if reviewed else None)
    h = to_hash(rec)
    if spaced:   # not the layout middleware.record writes: the fast way must step aside
        h["c"] = json.dumps(json.loads(h["c"]), indent=1, ensure_ascii=False)
    r = rt.handle.sync
    r.hset(rt.keys.record(rec.id), mapping=h)
    r.zadd(rt.keys.time_index, {rec.id: ms})
    rows = [row for _, chunk in export_io.StoreScanner(r, rt.keys, want_result=want_result).scan(ms, ms + 1)
            for row in chunk]
    r.delete(rt.keys.record(rec.id))
    r.zrem(rt.keys.time_index, rec.id)
    want = export_io._raw_row(ms, u, "approved", h["c"], h["a"], want_result)
    assert len(rows) == 1
    got = rows[0]
    assert got[:7] == want[:7] and got[8] == want[8]
    assert float(got[7]) == float(want[7])
    assert (json.loads(got[9]) if got[9] else None) == (json.loads(want[9]) if want[9] else None)


def test_store_reader_resumes_exactly_when_many_records_share_a_millisecond(rt):
    u = users(rt, 3)
    t0 = int(time.time() * 1000) - 60_000
    ids = []
    for k in range(5):   # 5 bursts of 7 records in one ms each, read 3 at a time
        ids += seed(rt.store, u, 7, texts=[(f"m{k}-{i}", "r") for i in range(7)], start_ms=t0 + k, step_ms=0)
    approve(rt, ids)
    seen = [row[3] for _, rows in export_io.StoreScanner(rt.handle.sync, rt.keys, chunk=3).scan(0, None)
            for row in rows]
    assert len(seen) == 35 and len(set(seen)) == 35


def test_rebuild_finishes_a_swap_a_crash_interrupted(tmp_path):
    from workers.export_rebuild import recover

    root = tmp_path / "finetune"
    old, new = root / ".export-old-20240101T000000Z-abcd1234", root / ".export-rebuild-20240101T000000Z-abcd1234.tmp"
    for d, text in ((old, "old"), (new, "new")):
        d.mkdir(parents=True)
        (d / "manifest.json").write_text(text)
    recover(root)                                  # crashed between the two renames
    assert [p.name for p in root.iterdir()] == ["20240101T000000Z"]
    assert (root / "20240101T000000Z" / "manifest.json").read_text() == "new"
    new.mkdir()                                    # crashed before the swap: the new dir is dropped
    (new / "train.jsonl").write_text("partial")
    old.mkdir()
    recover(root)
    assert [p.name for p in root.iterdir()] == ["20240101T000000Z"]
    assert (root / "20240101T000000Z" / "manifest.json").read_text() == "new"


# ---------------------------------------------------------------------------- flat memory

def _reference_assign(users: list[str], strata: list[int], examples: list[int], split: float,
                      seed_: int) -> tuple[bytearray, list[str]]:
    """The in-memory rule the streaming planner replaced (lists of every user, sorted): the spec."""
    from workers.export_split import user_hash

    n = len(users)
    valid = bytearray(n)
    warnings: list[str] = []
    frac = 1.0 - split
    if n == 0 or frac <= 0:
        return valid, warnings
    if n == 1:
        return valid, ["the valid split is empty: only one user contributed, and a user is never on both sides"]
    target = min(max(round(n * frac), 1), n - 1)
    by_stratum: dict[int, list[int]] = {}
    for i, s in enumerate(strata):
        by_stratum.setdefault(s, []).append(i)
    quota = {s: len(m) * frac for s, m in by_stratum.items()}
    take = {s: int(q) for s, q in quota.items()}
    rest = target - sum(take.values())
    order = sorted(by_stratum, key=lambda s: (-(quota[s] - take[s]), user_hash(seed_, f"stratum:{s}")))
    while rest > 0:
        moved = False
        for s in order:
            if rest > 0 and take[s] < len(by_stratum[s]):
                take[s] += 1
                rest -= 1
                moved = True
        if not moved:
            break
    for s, members in by_stratum.items():
        members.sort(key=lambda i: user_hash(seed_, users[i]))
        for i in members[: take[s]]:
            valid[i] = 1
    train_n = sum(e for i, e in enumerate(examples) if not valid[i])
    if train_n < 10 and sum(examples) >= 10:
        back = sorted((i for i in range(n) if valid[i]), key=lambda i: (examples[i], user_hash(seed_, users[i])))
        moved_n = 0
        for i in back:
            if train_n >= 10:
                break
            valid[i] = 0
            train_n += examples[i]
            moved_n += 1
        warnings.append(f"moved {moved_n} user(s) from valid to train so that train holds at least 10 examples")
    if not any(valid):
        warnings.append(f"the valid split is empty: too few users ({n}) to hold out one without leaving train "
                        "under 10 examples; a user is never on both sides")
    return valid, warnings


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 300), split=st.floats(0.01, 1.0), seed_=st.integers(0, 5), coarse=st.booleans(),
       data=st.data())
def test_streaming_split_is_the_in_memory_rule(n, split, seed_, coarse, data):
    """Same sides and warnings as sorting every user. ``coarse``: a hash with 16 values, so that
    bins are crowded, boundaries fall inside them and hashes tie (the index must break ties as
    a stable sort does)."""
    from unittest import mock

    from workers import export_split

    names = [f"u_{i:04d}" for i in range(n)]
    strata = data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    examples = data.draw(st.lists(st.integers(1, 12), min_size=n, max_size=n))
    real = export_split.user_hash
    h = (lambda s, p: real(s, p) >> 60 << 60) if coarse else real
    with mock.patch.object(export_split, "user_hash", h):
        assert assign_valid(names, strata, examples, split, seed_) == _reference_assign(
            names, strata, examples, split, seed_)


def _run_keys(rt: Runtime) -> list[bytes]:
    return list(rt.handle.sync.scan_iter(match=rt.keys.export_run("*") + "*", count=1000))


def test_working_state_is_in_redis_with_a_ttl_and_removed_after(rt, monkeypatch):
    from workers import export_ledger

    approve(rt, seed(rt.store, users(rt, 6), 60))
    during: dict[bytes, int] = {}

    def progress(done: int, total: int) -> None:
        r = rt.handle.sync
        during.update({k: r.ttl(k) for k in _run_keys(rt)})

    close = export_ledger.RunLedger.close

    def closing(self: export_ledger.RunLedger) -> None:   # every key, just before they go
        progress(0, 0)
        close(self)

    monkeypatch.setattr(export_ledger.RunLedger, "close", closing)
    res = export(rt, progress=progress)
    assert res["success"] and res["total"] == 60 and res["valid_examples"]
    kinds = {k.rsplit(b":", 1)[1][:1] for k in during}
    assert kinds == {b"s", b"U", b"L", b"Z", b"S"}           # dedup sets, the user table, the sides
    assert all(0 < ttl <= 3600 for ttl in during.values())   # nothing that could outlive a crash
    assert _run_keys(rt) == []
    # a failed export (too few lines) and a crashed one clean up too
    rt.config.export.min_confidence = 0.99
    assert not export(rt)["success"]
    assert _run_keys(rt) == []


def test_duplicates_across_chunks_and_buckets_and_users_who_only_repeat(rt, monkeypatch):
    """Chunks of 3 (each chunk's verdict arrives while the next is built) and a set per line or
    two: a line is a duplicate of any earlier one, in whichever chunk or set; a user whose lines
    were all seen before contributed nothing and is not in the manifest."""
    from workers import export_ledger

    monkeypatch.setattr(export_io.StoreScanner, "chunk", 3)
    monkeypatch.setattr(export_ledger, "PER_BUCKET", 1)
    rt.config.export.context_minutes = 0
    first, *echoes = users(rt, 4)
    pool = [(f"pregunta {i}", f"respuesta {i}") for i in range(12)]
    t0 = int(time.time() * 1000) - 3_600_000
    ids = seed(rt.store, [first], 12, texts=pool, start_ms=t0)
    for k, u in enumerate(echoes):                  # the same 12 lines again, from other users
        ids += seed(rt.store, [u], 12, texts=pool[::-1], start_ms=t0 + (k + 1) * 60_000)
    ids += seed(rt.store, [echoes[0]], 1, texts=[("algo nuevo", "ok")], start_ms=t0 + 600_000)
    approve(rt, ids)
    res = export(rt, train_split=1.0)
    assert res["total"] == 13 and res["skipped"]["duplicate"] == 36
    got = [ex["messages"][-2]["content"] for ex in lines(res["files"]["train"])]
    assert got == [q for q, _ in pool] + ["algo nuevo"]     # first occurrences, in capture order
    manifest = json.loads(Path(res["files"]["manifest"]).read_text())
    assert manifest["pseudonyms"] == sorted([first, echoes[0]])
    assert split_users(res)["train"] == {first, echoes[0]}
    assert _run_keys(rt) == []


def test_pseudonyms_that_are_not_plain_words(rt):
    """Tabs, newlines, quotes, backslashes, accents: the scratch files and the ledger carry
    pseudonyms as JSON literals, so each line still maps to its user."""
    odd = ["u_tab\there", 'u_"quoted"\nline', "u_back\\slash", "u_ñandú", "u_plain"]
    t0 = int(time.time() * 1000) - 3_600_000
    ids = []
    for k, u in enumerate(odd):
        ids += seed(rt.store, [u], 4, texts=[(f"mensaje {k} {i}", f"r {k} {i}") for i in range(4)],
                    start_ms=t0 + k * 10_000)
    approve(rt, ids)
    res = export(rt, train_split=0.6, seed=2)
    assert res["success"] and res["total"] == 20
    d = Path(res["files"]["train"]).parent
    ps = json.loads((d / "manifest.json").read_text())["pseudonyms"]
    assert ps == sorted(odd)
    for s in ("train", "valid"):
        for raw, tag in zip(lines(d / f"{s}.jsonl"), (d / f"{s}.users.tsv").read_text().splitlines(), strict=True):
            k = int(raw["messages"][-2]["content"].split()[1])
            assert ps[int(tag.split("\t")[0])] == odd[k]
    sides = split_users(res)
    assert not sides["train"] & sides["valid"] and sides["valid"]


def test_lost_working_state_fails_the_export_instead_of_letting_duplicates_through(rt, monkeypatch):
    monkeypatch.setattr(export_io.StoreScanner, "chunk", 5)
    approve(rt, seed(rt.store, users(rt, 3), 40))

    def progress(done: int, total: int) -> None:
        if done == 10:   # as if the TTL ran out, or someone flushed the keys
            rt.handle.sync.delete(*[k for k in _run_keys(rt) if b":s" in k])

    with pytest.raises(RuntimeError, match="working state"):
        export(rt, progress=progress)
    root = Path(rt.env.data_dir) / "finetune"
    assert sorted(p.name for p in root.iterdir()) == []
    assert _run_keys(rt) == []


def test_streamed_manifest_is_what_json_dump_writes(tmp_path):
    from workers.export import write_manifest

    p = tmp_path / "manifest.json"
    for head in ({"version": 1, "counts": {"a": [1, 2]}, "warnings": ["ñ"]}, {}):
        for chunks in ([], [[]], [["u_a"]], [["u_a", 'u_"b\n'], [], ["ñ\tx", "u_z"]]):
            write_manifest(p, head, pseudonyms=iter(chunks))
            flat = [x for c in chunks for x in c]
            assert p.read_text(encoding="utf-8") == json.dumps({**head, "pseudonyms": flat}, ensure_ascii=False,
                                                                indent=1)


def test_export_memory_does_not_grow_with_records(rt, monkeypatch):
    """Python's allocations at their peak, exporting 8,000 and then 32,000 records of the same
    shape (the same number of users inside the context window): the same, where holding a few
    bytes per line or per user (what the export did) would add ~0.7 MB. The walks over users
    are cut small here so that they reach their fixed sizes at these small counts."""
    import tracemalloc

    from workers import export as export_mod
    from workers import export_ledger
    from workers.bench_export import cleanup, generate

    monkeypatch.setattr(export_ledger, "CHUNK", 256)
    monkeypatch.setattr(export_mod, "USER_CHUNK", 256)
    monkeypatch.setattr(export_mod, "RANGE_BYTES", 256 * 4 * 16)
    rt.config.export.context_minutes = 1      # 1,200 records (240 users) inside the window
    version = ResidueScan(rt.anonymizer).version
    peaks = []
    for n in (8_000, 32_000):
        cleanup(rt.handle.sync, rt.keys.prefix)
        generate(rt.handle.sync, rt.keys, n, version)
        export(rt, train_split=0.9, seed=1)    # warm: first-use imports and caches
        tracemalloc.start()
        try:
            res = export(rt, train_split=0.9, seed=1)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert res["success"] and res["total"] == n
    assert peaks[1] - peaks[0] < 200_000, peaks


def test_bench_measures_the_export_process_own_peak(tmp_path):
    """ru_maxrss survives exec on Linux: a child of a process that once held ~150 MB reports
    ~150 MB. The bench reports VmHWM, the child's own."""
    import subprocess
    import sys

    from workers.bench_export import own_peak_kb

    if not Path("/proc/self/status").exists():
        pytest.skip("no /proc: the bench falls back to ru_maxrss")
    child = ("import json, resource; from workers.bench_export import own_peak_kb; "
             "print(json.dumps([own_peak_kb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss]))")
    parent = ("import subprocess, sys; x = bytearray(150 << 20); x[::4096] = b'1' * len(x[::4096]); del x; "
              f"subprocess.run([sys.executable, '-c', {child!r}], check=True)")
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    own, inherited = json.loads(out.stdout)
    assert inherited > 140 << 10 and own < 100 << 10, (own, inherited)
    assert own_peak_kb(str(tmp_path / "missing")) > 0          # no /proc: ru_maxrss, still a figure
