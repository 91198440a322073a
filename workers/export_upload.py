"""Upload an export to OpenAI and start a fine-tuning job (the official client; OPENAI_BASE_URL
may point it at any compatible server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .runtime import Runtime

UPLOADABLE = ("chat", "nlu")   # chat-format files; prompt-completion is for base-model trainers


def check_upload(rt: Runtime, fmt: str) -> None:
    """Refuse early (ValueError) what the upload would refuse after a long export."""
    if fmt not in UPLOADABLE:
        raise ValueError(f"--upload needs a chat-format export ({' or '.join(UPLOADABLE)}): OpenAI's "
                         f"fine-tuning jobs do not take {fmt} files")
    if not rt.env.openai_api_key:
        raise ValueError("--upload needs OPENAI_API_KEY in the environment")


def upload(rt: Runtime, result: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
    """Upload train (and valid, when it has lines) with purpose fine-tune, then create a
    supervised fine-tuning job. Returns the file ids and the job's id and status."""
    from openai import OpenAI

    fmt = result.get("format", "chat")
    check_upload(rt, fmt)
    if not result.get("success"):
        raise ValueError("nothing to upload: the export did not succeed")
    cfg = rt.config.export
    client = OpenAI(api_key=rt.env.openai_api_key, base_url=rt.env.openai_base_url,
                    timeout=rt.config.analysis.openai.timeout_s * 20, max_retries=2)
    try:
        files: dict[str, str | None] = {"training_file": None, "validation_file": None}
        for split, key in (("train", "training_file"), ("valid", "validation_file")):
            if result.get(f"{split}_examples", 0) <= 0:
                continue
            path = Path(result["files"][split])
            with open(path, "rb") as f:
                # the name says which export it came from, in the OpenAI dashboard
                obj = client.files.create(file=(f"{path.parent.name}-{path.name}", f), purpose="fine-tune")
            files[key] = obj.id
        assert files["training_file"] is not None
        kwargs: dict[str, Any] = {"model": cfg.fine_tune_model, "training_file": files["training_file"],
                                  "method": {"type": "supervised"}}
        if files["validation_file"]:
            kwargs["validation_file"] = files["validation_file"]
        if cfg.fine_tune_suffix:
            kwargs["suffix"] = cfg.fine_tune_suffix
        if seed is not None:
            kwargs["seed"] = seed
        job = client.fine_tuning.jobs.create(**kwargs)
    finally:
        client.close()
    return {**files, "job_id": job.id, "status": job.status, "model": job.model}
