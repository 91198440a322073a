"""The `tuneloop` command (SURFACE.md, "CLI").

Errors are one line on stderr naming what is wrong (the option, the config key, the user id) and
exit status 2; a failed start-up check exits 1. Never a traceback for bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import redis

from middleware.config import ConfigError
from middleware.redis_conn import CheckFailed

log = logging.getLogger("tuneloop.cli")


class CLIError(Exception):
    """A user-facing error: printed as `tuneloop: <message>`, exit 2."""


def _fraction(name: str) -> Callable[[str], float]:
    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number between 0 and 1, got {s!r}") from None
        if not 0 <= v <= 1:
            raise argparse.ArgumentTypeError(f"{name} must be between 0 and 1, got {s}")
        return v

    return parse


def _positive(name: str) -> Callable[[str], int]:
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {s!r}") from None
        if v <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be greater than 0, got {v}")
        return v

    return parse


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2))


def _runtime(check: bool = False) -> Any:
    from workers.runtime import Runtime

    return Runtime.load(check=check)


# ------------------------------------------------------------------------------------ commands

def cmd_consent(a: argparse.Namespace) -> int:
    from workers import gdpr

    rt = _runtime()
    try:
        if a.set is None:
            out = gdpr.consent_get(rt, a.user_id)
        else:
            out = gdpr.consent_set(rt, a.user_id, a.set == "yes", "cli")
    except ValueError as e:
        raise CLIError(f"USER_ID: {e}") from None
    _print_json(out)
    return 0


def cmd_forget(a: argparse.Namespace) -> int:
    from workers import gdpr

    rt = _runtime()
    try:
        out = gdpr.forget(rt, a.user_id, "cli")
    except ValueError as e:
        raise CLIError(f"USER_ID: {e}") from None
    _print_json(out)
    return 0


def cmd_stats(a: argparse.Namespace) -> int:
    from workers.stats import snapshot

    rt = _runtime()
    s = snapshot(rt.handle.sync, rt.keys)
    if a.json:
        _print_json(s)
        return 0
    from rich.console import Console

    Console().print(stats_table(s, "tuneloop stats"))
    return 0


def stats_table(s: dict[str, Any], title: str) -> Any:
    """The seed's stats object as a rich table."""
    from rich.table import Table

    t = Table(title=title, show_header=True)
    t.add_column("group")
    t.add_column("figure")
    t.add_column("value", justify="right")
    for group in ("pipeline", "anonymization", "sessions"):
        for k, v in s[group].items():
            t.add_row(group, k, str(v))
    return t


def cmd_anonymize(a: argparse.Namespace) -> int:
    from middleware.anonymizer import Anonymizer
    from middleware.anonymizer.stream import anonymize_lines
    from middleware.config import load_config

    anon = Anonymizer.from_config(load_config(None))
    try:
        anonymize_lines(anon, sys.stdin, sys.stdout, a.jsonl)
    except ValueError as e:
        raise CLIError(str(e)) from None
    return 0


def cmd_analyze(a: argparse.Namespace) -> int:
    from workers.analyze_cli import analyze_stream

    try:
        analyze_stream(sys.stdin, sys.stdout, a.jsonl)
    except ValueError as e:
        raise CLIError(str(e)) from None
    return 0


def _not_yet(issue: str) -> Callable[[argparse.Namespace], int]:
    def run(a: argparse.Namespace) -> int:
        raise CLIError(f"`tuneloop {a.command}` is not available in this version yet ({issue})")

    return run


# ------------------------------------------------------------------------------------ parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tuneloop", description="Consented, anonymized fine-tuning data "
                                "from a chat bot's conversations.")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("serve", help="the bot app: webhooks, admin API, /metrics, /healthz")
    s.add_argument("--host", default="0.0.0.0")
    s.add_argument("--port", type=_positive("--port"), default=8080)
    s.add_argument("--polling", action="store_true", help="Telegram long polling instead of the webhook")
    s.add_argument("--worker", action="store_true", default=None, help="also run a worker in-process")
    s.set_defaults(func=_dispatch("bot.serve", "cmd_serve"))

    s = sub.add_parser("worker", help="an RQ worker on tuneloop's queue (what supervisor runs)")
    s.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    s.set_defaults(func=_dispatch("workers.worker", "cmd_worker"))

    s = sub.add_parser("scheduler", help="enqueue the periodic jobs (scheduled processing, retention)")
    s.set_defaults(func=_dispatch("workers.schedule", "cmd_scheduler"))

    s = sub.add_parser("process", help="process pending records now")
    s.add_argument("--max-items", type=_positive("--max-items"), default=100)
    s.set_defaults(func=_dispatch("workers.worker", "cmd_process"))

    s = sub.add_parser("export", help="write train/valid JSONL for fine-tuning")
    s.add_argument("--min-confidence", type=_fraction("--min-confidence"), default=None)
    s.add_argument("--train-split", type=_fraction("--train-split"), default=None)
    s.add_argument("--format", choices=["chat", "prompt-completion", "nlu"], default="chat")
    s.add_argument("--source", choices=["processed", "reviewed", "both"], default="processed")
    s.add_argument("--out", default=None, help="write the files into this directory")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-examples", type=_positive("--max-examples"), default=None)
    s.add_argument("--since", default=None, help="only records captured on or after this date (YYYY-MM-DD)")
    s.add_argument("--until", default=None, help="only records captured before this date (YYYY-MM-DD)")
    s.add_argument("--upload", action="store_true", help="upload to OpenAI and start a fine-tuning job")
    s.add_argument("--rebuild", action="store_true", help="rewrite earlier exports without erased users")
    s.set_defaults(func=_dispatch("workers.export_cli", "cmd_export"))

    s = sub.add_parser("stats", help="the pipeline, anonymization and session figures")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_stats)

    s = sub.add_parser("consent", help="show or set a user's consent")
    s.add_argument("user_id", metavar="USER_ID", help="telegram:<id>, whatsapp:+<number> or a u_ pseudonym")
    s.add_argument("--set", choices=["yes", "no"])
    s.set_defaults(func=cmd_consent)

    s = sub.add_parser("forget", help="withdraw a user's consent and erase their data")
    s.add_argument("user_id", metavar="USER_ID")
    s.set_defaults(func=cmd_forget)

    s = sub.add_parser("review", help="review needs_review records in the terminal")
    s.set_defaults(func=_dispatch("bot.review_cli", "cmd_review"))

    s = sub.add_parser("records", help="list stored records with their analysis and QA reasons")
    s.add_argument("--status", choices=["approved", "needs_review", "rejected", "pending"], required=True)
    s.add_argument("--limit", type=_positive("--limit"), default=50)
    s.set_defaults(func=_dispatch("workers.worker", "cmd_records"))

    s = sub.add_parser("anonymize", help="anonymize stdin to stdout")
    s.add_argument("--jsonl", action="store_true", help="each line is an object whose `text` is replaced")
    s.set_defaults(func=cmd_anonymize)

    s = sub.add_parser("analyze", help="run the configured analyzer over stdin")
    s.add_argument("--jsonl", action="store_true", help="each object (with `text`) gains `analysis`")
    s.set_defaults(func=cmd_analyze)

    s = sub.add_parser("demo", help="the whole loop offline on bundled sample conversations")
    s.add_argument("--limit", type=_positive("--limit"), default=None, help="replay only the first N conversations")
    s.add_argument("--json", action="store_true", help="print the outcome as JSON")
    s.set_defaults(func=_dispatch("bot.demo", "cmd_demo"))

    s = sub.add_parser("bench", help="measure the performance figures")
    s.add_argument("--json", action="store_true")
    s.add_argument("--quick", action="store_true", help="small sizes (for the test suite)")
    s.add_argument("--pii-corpus", metavar="JSONL", default=None,
                   help="also time the anonymizer over this corpus (JSONL lines with a 'text'), e.g. the PII dev set")
    s.set_defaults(func=_dispatch("bot.bench", "cmd_bench"))
    return p


def _dispatch(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """Import a subcommand's module only when it runs (start-up stays fast)."""

    def run(a: argparse.Namespace) -> int:
        import importlib

        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                return _not_yet("its issue is still open")(a)
            raise
        fn: Callable[[argparse.Namespace], int] = getattr(mod, name)
        return fn(a)

    return run


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return a.func(a)
    except CLIError as e:
        print(f"tuneloop: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"tuneloop: bad configuration: {e}", file=sys.stderr)
        return 2
    except CheckFailed as e:
        print(f"tuneloop: refusing to start: {e}", file=sys.stderr)
        return 1
    except redis.RedisError as e:
        print(f"tuneloop: Redis: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
