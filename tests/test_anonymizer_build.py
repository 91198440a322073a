"""The compiled anonymizer (mypyc, setup.py) behaves exactly as its source does.

When the installed detectors are compiled, the same source files are loaded again as plain
Python under another package name, and both must give the same spans for the same messages:
generated trade chat with personal data (Faker) and arbitrary unicode (hypothesis).
"""

from __future__ import annotations

import importlib
import random
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest
from faker import Faker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import middleware.anonymizer as installed
from middleware.config import load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIG = load_config(ROOT / "config.yaml")
SRC = ROOT / "middleware" / "anonymizer"

compiled_only = pytest.mark.skipif(installed.BUILD != "compiled", reason="the anonymizer is installed as plain Python")


def test_the_anonymizer_type_checks_so_it_can_be_compiled(tmp_path):
    """setup.py compiles only what type-checks; a type error would silently give the slower
    plain-Python build. The same check, with the same options."""
    api = pytest.importorskip("mypy.api")
    sys.path.insert(0, str(ROOT))
    try:
        from setup import COMPILED, MYPY_OPTIONS
    finally:
        sys.path.remove(str(ROOT))
    out, err, status = api.run([*MYPY_OPTIONS, "--cache-dir", str(tmp_path / "mypy"),
                                *[str(SRC / f"{m}.py") for m in COMPILED]])
    assert status == 0, out + err


def _pure_package(tmp: Path) -> ModuleType:
    pkg = tmp / "tl_pure_anonymizer"
    shutil.copytree(SRC, pkg, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    sys.path.insert(0, str(tmp))
    try:
        mod = importlib.import_module("tl_pure_anonymizer")
    finally:
        sys.path.remove(str(tmp))
    assert mod.BUILD == "python"
    return mod


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory):
    pure = _pure_package(tmp_path_factory.mktemp("pure"))
    terms = installed.catalog_terms(CONFIG)
    return (installed.Anonymizer(CONFIG.anonymizer, catalog_terms=terms),
            pure.Anonymizer(CONFIG.anonymizer, catalog_terms=terms))


def _same(pair, text: str, names: tuple[str, ...] = ()) -> None:
    compiled, pure = pair
    for profile in ("default", "strict"):
        a = compiled.detect(text, profile=profile, known_names=names)
        b = pure.detect(text, profile=profile, known_names=names)
        assert [tuple(s) for s in a] == [tuple(s) for s in b], (profile, text)
    assert compiled.anonymize(text, known_names=names).text == pure.anonymize(text, known_names=names).text


@compiled_only
def test_the_build_is_compiled_modules():
    assert installed.base.__file__.endswith(".so")
    assert installed._stale_modules() == []


@compiled_only
def test_generated_trade_chat_agrees(pair):
    fk = Faker(["es_ES", "es_MX", "en_US", "pt_BR"])
    Faker.seed(2024)
    rnd = random.Random(2024)
    for _ in range(400):
        name = fk.name()
        parts = [fk.sentence(), f"soy {name}", f"mi cel {fk.phone_number()}", f"correo {fk.email()}",
                 f"dirección {fk.street_address()}", f"cuenta {fk.bban()}", f"iban {fk.iban()}",
                 "HLSO 16/20 CFR Miami, 2.000 cajas a USD 5.40/lb el 15/01/2024", f"Saludos,\n{name}"]
        rnd.shuffle(parts)
        _same(pair, " ".join(parts[:rnd.randint(1, len(parts))]), (name.split()[0],))


@compiled_only
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.text(max_size=300), names=st.lists(st.text(max_size=12), max_size=2))
def test_any_unicode_agrees(pair, text, names):
    _same(pair, text, tuple(names))
