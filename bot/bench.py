"""`tuneloop bench`: the performance figures, measured in one run on this machine.

Redis from REDIS_URL (embedded when unset), under a key prefix of the bench's own that is removed
afterwards. Messages are synthetic (Faker), with personal data in them, so it runs anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from middleware.config import Config, Env, load_config, load_env
from middleware.redis_conn import connect

# ------------------------------------------------------------------------------------ data

def synthetic_messages(n: int, seed: int = 7) -> list[str]:
    """Chat messages like a shrimp exporter's customers write, with personal data in many."""
    from faker import Faker

    fk = Faker(["es_ES", "es_MX", "en_US", "pt_BR"])
    Faker.seed(seed)
    templates = [
        "Hola, necesito proforma {q} contenedores HLSO {s} con 20% glaseo, mi cel {phone}",
        "precio HOSO {s} CFR Miami? escríbeme a {email}",
        "Buenos días, soy {name}, quiero cotizar PD {s} FOB Guayaquil",
        "la transferencia sale de la cuenta {acct}, saludos {name}",
        "please send the quote for EZ PEEL {s} 10% glaze to {email} or call {phone}",
        "entregar en {addr}, RUC del consignatario {ruc}",
        "cuándo zarpa el contenedor para Rotterdam? gracias",
        "tienen P&D {s} disponible para marzo? 2.000 cajas de 10 x 2 kg",
    ]
    sizes = ["16/20", "21/25", "26/30", "31/35", "41/50", "U10"]
    out = []
    for i in range(n):
        t = templates[i % len(templates)]
        out.append(t.format(q=1 + i % 5, s=sizes[i % len(sizes)], phone=f"09{fk.msisdn()[:8]}",
                            email=fk.email(), name=fk.name(), acct=fk.bban(), addr=fk.street_address(),
                            ruc="1790011674001"))
    return out


# ------------------------------------------------------------------------------------ capture

def _start_botapi() -> tuple[subprocess.Popen[str], str]:
    """The Bot API stand-in in a process of its own: its work is not the bot's."""
    p = subprocess.Popen([sys.executable, "-m", "bot.standins.botapi"], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    url = p.stdout.readline().strip()
    if not url.startswith("http"):
        p.kill()
        raise RuntimeError("the Bot API stand-in did not start")
    return p, url


async def _capture_overhead(config: Config, env: Env, n: int, rounds: int) -> dict[str, float]:
    from aiogram import Bot, Dispatcher, Router
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.types import Message, Update

    from bot.standins.botapi import TOKEN, message_update
    from middleware import TrainingCapture

    proc, url = _start_botapi()
    try:
        long_reply = ("Claro, te confirmo los detalles del pedido. " * 60)[:config.capture.max_length]

        def make_dp(long: bool = False) -> Dispatcher:
            router = Router()

            @router.message()
            async def answer(message: Message) -> None:
                await message.answer(long_reply if long else
                                     f"¡Perfecto! Recibido, {len(message.text or '')} caracteres.")

            dp = Dispatcher()
            dp.include_router(router)
            return dp

        # Two bots: tuneloop attaches a session middleware to the bot it sees, and the plain
        # dispatcher's calls must not go through it.
        bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(url)))
        plain_bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(url)))
        plain = make_dp()
        captured = make_dp()
        cap = TrainingCapture(config, env)
        cap.setup(captured)
        await cap.start()
        for _ in range(200):
            if cap.core.ready:
                break
            await asyncio.sleep(0.05)
        await cap.core.cache.wait_subscribed()
        users = list(range(10_000, 10_050))
        for u in users:
            await captured.feed_update(bot, Update.model_validate(message_update(u, "/consent yes"),
                                                                  context={"bot": bot}))
        texts = synthetic_messages(n)
        updates = [Update.model_validate(message_update(users[i % len(users)], t), context={"bot": bot})
                   for i, t in enumerate(texts)]

        async def run(dp: Dispatcher) -> float:
            b = bot if dp is captured else plain_bot
            t0 = time.perf_counter()
            for u in updates:
                await dp.feed_update(b, u)
            return (time.perf_counter() - t0) / len(updates)

        await run(plain)      # warm-up: connections, caches
        await run(captured)
        await cap.flush(60)
        # The bench's own fixtures (thousands of parsed updates, Faker) would make every gen-2
        # collection long and be counted as stalls of a heap no bot has: freeze them.
        gc.collect()
        gc.freeze()
        base, withc = [], []
        for _ in range(rounds):
            base.append(await run(plain))
            withc.append(await run(captured))
        await cap.flush(60)
        plain_long, captured_long = make_dp(long=True), make_dp(long=True)
        cap.setup(captured_long)
        stall_base = await _loop_stall(plain_long, plain_bot, users, config.capture.max_length)
        stall = await _loop_stall(captured_long, bot, users, config.capture.max_length)
        written = cap.core.stats_local["written"]
        await cap.close()
        await bot.session.close()
        await plain_bot.session.close()
        gc.unfreeze()
        b, w = statistics.median(base), statistics.median(withc)
        return {"update_ms_without": b * 1000, "update_ms_with": w * 1000,
                "capture_overhead_ratio": w / b, "max_loop_stall_ms": stall,
                "max_loop_stall_ms_without_capture": stall_base, "records_written": written}
    finally:
        proc.kill()
        proc.wait()


async def _loop_stall(dp: Any, bot: Any, users: list[int], length: int) -> float:
    """The longest event-loop stall while messages at the length bound are handled (the
    dispatcher's handler replies with a message as long), then while the writer drains."""
    from aiogram.types import Update

    from bot.standins.botapi import message_update

    texts = [(t * 40)[:length] for t in synthetic_messages(50, seed=11)]
    worst = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal worst
        while not stop:
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            worst = max(worst, time.perf_counter() - t0 - 0.001)

    updates = [Update.model_validate(message_update(users[i % len(users)], t), context={"bot": bot})
               for i, t in enumerate(texts * 4)]
    for u in updates[:len(texts)]:   # warm-up: a fresh Dispatcher's first updates are slow without tuneloop too
        await dp.feed_update(bot, u)
    await asyncio.sleep(0.5)
    tick = asyncio.get_running_loop().create_task(ticker())
    for u in updates:
        await dp.feed_update(bot, u)
    await asyncio.sleep(0.5)   # the writer drains while the ticker watches
    stop = True
    await tick
    return worst * 1000


# ------------------------------------------------------------------------------------ anonymizer

def _anonymizer_throughput(config: Config, n: int, corpus: list[str] | None = None) -> dict[str, Any]:
    from middleware.anonymizer import BUILD, Anonymizer

    anon = Anonymizer.from_config(config)
    texts = synthetic_messages(n, seed=3)
    out: dict[str, Any] = {"anonymizer_build": BUILD, "anonymizer_msgs_per_s": _msgs_per_s(anon, texts)}
    if corpus:
        out["anonymizer_corpus_msgs_per_s"] = _msgs_per_s(anon, corpus)
    long = (" ".join(texts))[: config.capture.max_length]
    times = []
    for _ in range(50):
        t1 = time.perf_counter()
        anon.anonymize(long)
        times.append(time.perf_counter() - t1)
    out["anonymizer_2000_chars_ms"] = statistics.median(times) * 1000
    return out


def _msgs_per_s(anon: Any, texts: list[str], rounds: int = 3) -> float:
    """Messages per second, the best of a few passes (a pass another process disturbed is slow)."""
    for t in texts[:200]:
        anon.anonymize(t)
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for t in texts:
            anon.anonymize(t)
        best = min(best, time.perf_counter() - t0)
    return len(texts) / best


def read_corpus(path: str) -> list[str]:
    """The texts of a JSONL corpus ('text' of each line), for the anonymizer figure."""
    texts = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                texts.append(str(json.loads(line)["text"]))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"--pii-corpus {path}: line {lineno} is not a JSON object with a 'text'") from e
    return texts


# ------------------------------------------------------------------------------------ driver

Figure = Callable[[], dict[str, Any]]


def run_bench(quick: bool = False, corpus: list[str] | None = None) -> dict[str, Any]:
    env = load_env()
    tmp = None
    if not env.redis_url:
        tmp = tempfile.mkdtemp(prefix="tuneloop-bench-")
        env = env.model_copy(update={"data_dir": Path(tmp)})
    if not env.secret:
        env = env.model_copy(update={"secret": "bench-" + uuid.uuid4().hex})
    config = load_config(None)
    prefix = f"tlbench{uuid.uuid4().hex[:8]}:"
    config.redis.prefix = prefix
    config.redis.queue = prefix.rstrip(":") + "-q"
    config.workers.mode = "on_demand"   # the capture bench measures capture, not workers
    handle = connect(env)
    out: dict[str, Any] = {"redis": "embedded" if env.embedded_redis else "REDIS_URL", "quick": quick}
    try:
        out.update(asyncio.run(_capture_overhead(config, env, 300 if quick else 2000, 1 if quick else 5)))
        out.update(_anonymizer_throughput(config, 2000 if quick else 20_000, corpus))
        for extra in _extras():
            out.update(extra(config, env, handle, quick))
    finally:
        _cleanup(handle.sync, prefix, config.redis.queue)
        _cleanup(handle.sync, prefix.rstrip(":") + "-export:", config.redis.queue)
    return out


def _extras() -> list[Callable[..., dict[str, Any]]]:
    """Figures owned by other modules (workers, export), when present."""
    found = []
    for mod, fn in (("bot.bench_workers", "worker_figures"), ("bot.bench_workers", "export_figures")):
        try:
            m = __import__(mod, fromlist=[fn])
            found.append(getattr(m, fn))
        except (ImportError, AttributeError):
            continue
    return found


def _cleanup(client: Any, prefix: str, queue: str) -> None:
    from workers.bench_export import cleanup

    cleanup(client, prefix)
    cleanup(client, f"rq:queue:{queue}")
    cleanup(client, f"rq:wip:{queue}")


TARGETS = {
    "capture_overhead_ratio": ("<=", 2.0), "max_loop_stall_ms": ("<=", 5.0),
    "anonymizer_msgs_per_s": (">=", 15_000), "anonymizer_corpus_msgs_per_s": (">=", 15_000), "worker_offline_records_per_s": (">=", 5_000),
    "worker_openai_records_per_s": (">=", 100), "export_records_per_s": (">=", 50_000),
    "export_peak_rss_mb": ("<=", 200),
}


def print_table(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="tuneloop bench")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_column("target")
    for k, v in res.items():
        if isinstance(v, float):
            val = f"{v:,.2f}" if v < 1000 else f"{v:,.0f}"
        else:
            val = str(v)
        target = " ".join(str(x) for x in TARGETS[k]) if k in TARGETS else ""
        t.add_row(k, val, target)
    Console().print(t)


def cmd_bench(a: argparse.Namespace) -> int:
    os.environ.setdefault("PYTHONHASHSEED", "0")
    corpus = None
    if a.pii_corpus:
        try:
            corpus = read_corpus(a.pii_corpus)
        except OSError as e:
            print(f"tuneloop bench: --pii-corpus: {e.strerror}: {a.pii_corpus}", file=sys.stderr)
            return 2
        except ValueError as e:
            print(f"tuneloop bench: {e}", file=sys.stderr)
            return 2
    res = run_bench(quick=a.quick, corpus=corpus)
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print_table(res)
    return 0
