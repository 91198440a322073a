"""Build hook: compiles the anonymizer's detectors with mypyc when it can.

The anonymizer runs on every consented message, and its cost is Python bytecode (each regex
call is C already): compiled, the same source runs about 1.7x faster (`tuneloop bench` shows
which build is installed). Everything else is declared in pyproject.toml. Without mypy or a C
compiler, or with TUNELOOP_PURE_PYTHON=1, the same modules install as plain Python.

All or nothing: mypyc makes one shared library plus a small module per source file, and a
module whose library failed to build would shadow its .py and fail to import. So any failure
drops every compiled file, and a plain build also removes compiled files an earlier build left
beside the sources (an extension module takes precedence over the .py next to it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
# The detectors and what they call per message; __init__ and stream stay interpreted.
COMPILED = ["base", "phone", "whitelist", "names", "address", "ids", "account", "email", "engine"]
# mypyc compiles only what type-checks with these options (tests/test_anonymizer_build.py runs the same check)
MYPY_OPTIONS = ["--ignore-missing-imports", "--follow-imports=silent"]


def remove_compiled() -> None:
    """Compiled files of an earlier build, in the source tree (editable installs put them there)."""
    for so in [*(HERE / "middleware" / "anonymizer").glob("*.so"), *HERE.glob("*__mypyc*.so")]:
        so.unlink(missing_ok=True)


class AllOrNothing(build_ext):
    def build_extensions(self) -> None:
        try:
            super().build_extensions()
        except Exception as e:   # a compiler error, a linker error, no compiler at all
            print(f"tuneloop: compiling the anonymizer failed, it installs as plain Python ({e})", file=sys.stderr)
            for ext in self.extensions:
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            self.extensions = []
            remove_compiled()


def compiled_extensions() -> list:
    if os.environ.get("TUNELOOP_PURE_PYTHON") == "1":
        remove_compiled()
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("tuneloop: mypyc not available, the anonymizer installs as plain Python", file=sys.stderr)
        remove_compiled()
        return []
    try:
        # dependencies (phonenumbers, stdnum) are not in the build environment: typed as Any
        return mypycify([*MYPY_OPTIONS, *[f"middleware/anonymizer/{m}.py" for m in COMPILED]], opt_level="3")
    except (Exception, SystemExit) as e:   # mypy reports type errors by exiting
        print(f"tuneloop: the anonymizer installs as plain Python ({e})", file=sys.stderr)
        remove_compiled()
        return []


if __name__ == "__main__":   # (setuptools' build backend runs this file as __main__; tests import it)
    setup(ext_modules=compiled_extensions(), cmdclass={"build_ext": AllOrNothing})
