"""Export figures: records/s and peak RSS of exporting a store of approved records.

The store is generated straight in the record layout (pipelined HSETs of ``to_hash`` fields
from one template record; it is a benchmark fixture, not capture), under a key prefix of its own
that is removed afterwards. The export runs in a child process so that its peak RSS is its own,
not the generator's (nor the bench's: see :func:`own_peak_kb`).

    .venv/bin/python -m workers.bench_export --n 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from middleware.config import Config, Env, load_config, load_env
from middleware.keys import Keys
from middleware.record import PII_TYPES, Record, iso_z, to_hash
from middleware.redis_conn import RedisHandle, connect

TEXTS = [
    ("Necesito proforma HLSO 16/20 con 20% glaseo FOB Guayaquil", "¡Perfecto! Generando tu proforma para HLSO 16/20.",
     "proforma"),
    ("precio del HOSO 30/40 CFR Miami?", "El HOSO 30/40 CFR Miami está a USD 5.40/lb.", "price_quote"),
    ("tienen PD 41/50 disponible para marzo?", "Sí, tenemos PD 41/50 para marzo.", "availability"),
    ("cuándo zarpa el contenedor para Rotterdam?", "El buque zarpa el jueves.", "logistics"),
    ("ya hice la transferencia del anticipo", "Gracias, confirmamos el pago.", "payment"),
    ("hola buenos días", "¡Hola! ¿En qué te ayudo?", "greeting"),
    ("quote for EZ PEEL 26/30 10% glaze CIF Valencia", "Sending the quote for EZ PEEL 26/30.", "price_quote"),
]
SESSION = 5          # records per conversation: exercises context turns (the window holds them)


def generate(client: redis.Redis, keys: Keys, n: int, version: str | None, batch: int = 2000) -> None:
    """n approved records of n // 20 users, in conversations of SESSION records, one every 50 ms."""
    n_users = max(10, n // 20)
    users = [f"u_{uuid.UUID(int=i + 1).hex}" for i in range(n_users)]
    pipe = client.pipeline(transaction=False)
    for i, u in enumerate(users):
        pipe.hset(keys.consent(u), mapping={"state": "granted", "ts": 1, "granted_at": 1})
        if i % batch == batch - 1:
            pipe.execute()
    pipe.execute()
    t0 = int(time.time() * 1000) - n * 50 - 3_600_000
    # one template per text, filled per record by string replacement: no pydantic per record
    templates = []
    for content, reply, intent in TEXTS:
        rec = Record(id="r_X", user_id="U", channel="telegram", content=f"{content} #@@N@@",
                     original_length=len(content), reply=[reply], pii=dict.fromkeys(PII_TYPES, 0),
                     metadata={"state": "idle", "lang": "es"}, consent_version="es:bench",
                     captured_at="2000-01-01T00:00:00Z", status="approved", detector_version=version,
                     analysis={"intent": intent, "product": None, "size": None, "glaseo_percentage": None,
                               "incoterm": None, "destination": None, "quantity": None, "confidence": 0.95},
                     analyzer="rules", qa_passed=True, processed_at="2024-01-15T10:31:02Z")
        h = to_hash(rec)
        templates.append((h["c"], h["a"]))
    ids: dict[str, float] = {}
    for i in range(n):
        ms = t0 + i * 50
        rid = f"r_{i:026d}"
        c, a = templates[i % len(templates)]
        pipe.hset(keys.record(rid), mapping={
            "u": users[(i // SESSION) % n_users], "t": ms, "s": "approved",
            "c": c.replace("@@N@@", str(i)).replace("2000-01-01T00:00:00Z", iso_z(ms / 1000)), "a": a})
        ids[rid] = ms
        if len(ids) >= batch:
            pipe.zadd(keys.time_index, ids)
            pipe.sadd(keys.status("approved"), *ids)
            pipe.execute()
            ids = {}
    if ids:
        pipe.zadd(keys.time_index, ids)
        pipe.sadd(keys.status("approved"), *ids)
    pipe.execute()


def cleanup(client: redis.Redis, prefix: str) -> None:
    batch: list[bytes] = []
    for k in client.scan_iter(match=f"{prefix}*", count=10_000):
        batch.append(k)
        if len(batch) >= 10_000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


def _child(spec_path: str) -> None:
    """Runs in the child: one export, then its own peak RSS."""
    from workers.export import export
    from workers.runtime import Runtime

    spec = json.loads(Path(spec_path).read_text())
    config = Config.model_validate(spec["config"])
    env = Env.model_validate(spec["env"])
    rt = Runtime(config, env, connect(env))
    _ = rt.anonymizer   # built before the clock starts: it is process start-up, not export
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    res = export(rt, train_split=0.9, seed=1)
    secs = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    print(json.dumps({"seconds": secs, "cpu": cpu, "peak_kb": own_peak_kb(), "success": res["success"],
                      "total": res["total"], "train": res["train_examples"], "valid": res["valid_examples"]}))


def own_peak_kb(status: str = "/proc/self/status") -> int:
    """This process's own peak RSS (KB): VmHWM, the high-water mark of its address space.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: on Linux that survives exec, so a child started by
    a process that once held 240 MB reports 240 MB whatever it uses itself (the kernel keeps the
    larger of the old address space's peak and the new one's). ``tuneloop bench`` runs this child
    after the capture and worker figures have grown the parent: that was its 241 MB.
    """
    try:
        with open(status, encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # no /proc: may include the parent's
    return peak // 1024 if sys.platform == "darwin" else peak   # bytes on macOS, KB elsewhere


def export_figures(config: Config, env: Env, handle: RedisHandle, quick: bool, n: int | None = None) -> dict[str, Any]:
    n = n or (20_000 if quick else 1_000_000)
    cfg = config.model_copy(deep=True)
    cfg.redis.prefix = f"{config.redis.prefix}bx{uuid.uuid4().hex[:6]}:"
    keys = Keys(cfg.redis.prefix)
    from middleware.anonymizer import Anonymizer
    from workers.export import ResidueScan

    version = ResidueScan(Anonymizer.from_config(cfg)).version
    tmp = tempfile.mkdtemp(prefix="tuneloop-bench-export-")
    try:
        t = time.perf_counter()
        generate(handle.sync, keys, n, version)
        gen_s = time.perf_counter() - t
        child_env = env.model_copy(update={"redis_url": handle.url, "data_dir": Path(tmp)})
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"config": cfg.model_dump(mode="json"), "env": child_env.model_dump(mode="json")}))
        root = Path(__file__).resolve().parent.parent
        redis_cpu0 = _server_cpu(handle.sync)
        proc = subprocess.run([sys.executable, "-m", "workers.bench_export", "--child", str(spec)],
                              capture_output=True, text=True, cwd=root, check=False,
                              env={**os.environ, "PYTHONPATH": str(root)})
        redis_cpu = _server_cpu(handle.sync) - redis_cpu0
        if proc.returncode != 0:
            raise RuntimeError(f"export child failed: {proc.stderr.strip()[-2000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        if not out["success"] or out["total"] != n:
            raise RuntimeError(f"export child exported {out['total']} of {n}: {out}")
    finally:
        cleanup(handle.sync, cfg.redis.prefix)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    # CPU per record, of the export process and of Redis (all of the server's, so on a shared
    # server it includes other clients): what records/s would be on an idle machine
    return {"export_records_per_s": round(n / out["seconds"]), "export_peak_rss_mb": round(out["peak_kb"] / 1024, 1),
            "export_records": n, "export_seconds": round(out["seconds"], 2),
            "export_cpu_us_per_record": round(out["cpu"] / n * 1e6, 1),
            "export_redis_cpu_us_per_record": round(redis_cpu / n * 1e6, 1),
            "export_generate_seconds": round(gen_s, 1)}


def _server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=None, help="records to generate (default 1,000,000)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        _child(a.child)
        return 0
    env = load_env()
    tmp = None
    if not env.redis_url:   # embedded Redis in a throwaway data dir
        tmp = tempfile.mkdtemp(prefix="tuneloop-bench-redis-")
        env = env.model_copy(update={"data_dir": Path(tmp)})
    config = load_config(None)
    config.redis.prefix = f"tlbench{uuid.uuid4().hex[:8]}:"
    handle = connect(env)
    try:
        print(json.dumps(export_figures(config, env, handle, a.quick, a.n), indent=2))
    finally:
        if handle.embedded is not None:
            handle.embedded.shutdown()
        if tmp:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
