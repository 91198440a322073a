"""Configuration: every problem names the key and what is wrong; secrets only from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from middleware import TrainingCapture
from middleware.config import ConfigError, load_config, load_env, normalize_user_id, parse_config
from tests.conftest import ROOT

BASE = yaml.safe_load((ROOT / "config.yaml").read_text())


def with_change(path: str, value) -> dict:
    import copy

    data = copy.deepcopy(BASE)
    node = data
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return data


def test_shipped_config_is_valid_and_complete():
    cfg = load_config(ROOT / "config.yaml")
    assert cfg.analysis.intent_names == ["proforma", "price_quote", "availability", "logistics", "payment",
                                         "greeting", "other"]
    assert {p.code for p in cfg.analysis.products} == {"HLSO", "HOSO", "PD", "P&D", "PDTO", "PUD", "EZ PEEL"}
    assert set(cfg.analysis.incoterms) == {"FOB", "CFR", "CIF", "DDP", "EXW"}
    assert {"es", "en"} <= set(cfg.consent.texts)


@pytest.mark.parametrize("path,value,expect", [
    ("capture.max_length", -5, "capture.max_length"),
    ("capture.batch_sise", 10, "capture.batch_sise: unknown key"),
    ("qa.approve_confidence", 1.5, "qa.approve_confidence"),
    ("anonymizer.regions", ["EC", "XX"], "anonymizer.regions"),
    ("consent.default_lang", "fr", "consent"),
    ("workers.mode", "sometimes", "workers.mode"),
])
def test_bad_values_name_the_key(path, value, expect):
    with pytest.raises(ConfigError) as e:
        parse_config(with_change(path, value), "config.yaml")
    assert expect in str(e.value)


def test_secrets_in_the_file_are_refused():
    with pytest.raises(ConfigError, match="redis.password: secrets are read only from the environment"):
        parse_config(with_change("redis.password", "hunter2"), "config.yaml")


def test_environment_overrides_and_admin_ids():
    env = load_env({"REDIS_URL": "redis://example:6379/2", "TUNELOOP_DATA_DIR": "/tmp/x",
                    "TUNELOOP_ADMIN_IDS": "telegram:1001, whatsapp:+593 99 123 4567",
                    "TUNELOOP_PUBLIC_URL": "https://bot.example.com/"})
    assert env.redis_url == "redis://example:6379/2" and str(env.data_dir) == "/tmp/x"
    assert env.admin_ids == {"telegram:1001", "whatsapp:+593991234567"}
    assert env.public_url == "https://bot.example.com"
    with pytest.raises(ConfigError, match="TUNELOOP_ADMIN_IDS: 'whatsapp:12'"):
        load_env({"TUNELOOP_ADMIN_IDS": "telegram:1,whatsapp:12"})
    with pytest.raises(ConfigError, match="TUNELOOP_ADMIN_IDS"):
        load_env({"TUNELOOP_ADMIN_IDS": "signal:5"})


def test_user_ids_normalized():
    assert normalize_user_id("whatsapp:+593 (99) 123-4567") == "whatsapp:+593991234567"
    assert normalize_user_id("Telegram:0042") == "telegram:42"
    for bad in ("42", "telegram:abc", "whatsapp:+1", "fax:1"):
        with pytest.raises(ValueError):
            normalize_user_id(bad)


def test_training_capture_raises_only_for_bad_config(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_change("capture.max_delay_ms", "soon")))
    with pytest.raises(ConfigError, match="capture.max_delay_ms"):
        TrainingCapture.from_env({"TUNELOOP_CONFIG": str(bad), "TUNELOOP_DATA_DIR": str(tmp_path)})
    # secrets are required with a real Redis
    with pytest.raises(ConfigError, match="TUNELOOP_SECRET"):
        TrainingCapture.from_env({"TUNELOOP_CONFIG": str(ROOT / "config.yaml"),
                                  "REDIS_URL": "redis://127.0.0.1:1/0"})


def test_training_capture_with_unreachable_redis_does_not_raise(tmp_path: Path):
    cap = TrainingCapture.from_env({"TUNELOOP_CONFIG": str(ROOT / "config.yaml"), "REDIS_URL": "redis://127.0.0.1:1/0",
                                    "TUNELOOP_SECRET": "s"})
    assert cap.core.ready is False


def test_cli_names_the_bad_key(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_change("qa.review_confidence", "high")))
    env = dict(os.environ, TUNELOOP_CONFIG=str(bad), TUNELOOP_DATA_DIR=str(tmp_path))
    p = subprocess.run([sys.executable, "-m", "bot.cli", "stats", "--json"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "qa.review_confidence" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "bot.cli", "export", "--min-confidence", "2"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--min-confidence" in p.stderr and "Traceback" not in p.stderr
