"""The checks an export line passes before it is written, and token counting without a network.

The format checks are those of OpenAI's cookbook "Data preparation and analysis for chat model
fine-tuning" (same error names), plus unknown top-level keys and the prompt-completion shape.

Token counts use tiktoken only when its encoding file is already in tiktoken's cache and intact:
tiktoken downloads a missing (or corrupt) encoding at run time, and an export must never touch
the network. Otherwise a conservative estimate (bytes / 3, rounded up: real Spanish/English text
averages about 4 bytes per token, so this over-counts) is used, and the manifest says which.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

# -------------------------------------------------------------------------------- format checks

CHAT_ROLES = frozenset({"system", "user", "assistant", "function", "tool"})
MESSAGE_KEYS = frozenset({"role", "content", "name", "function_call", "weight", "tool_calls",
                          "tool_call_id", "refusal"})
EXAMPLE_KEYS = frozenset({"messages", "tools", "functions", "parallel_tool_calls"})
PC_KEYS = frozenset({"prompt", "completion"})

# The error kinds, in the cookbook's words where it has one.
FORMAT_ERRORS = ("data_type", "missing_messages_list", "example_unrecognized_key", "message_missing_key",
                 "message_unrecognized_key", "unrecognized_role", "missing_content",
                 "example_missing_assistant_message", "missing_prompt", "missing_completion")


def message_errors(m: Any) -> set[str]:
    """Format errors of one chat message."""
    if not isinstance(m, dict):
        return {"message_missing_key"}
    errs: set[str] = set()
    if "role" not in m or "content" not in m:
        errs.add("message_missing_key")
    if not MESSAGE_KEYS.issuperset(m):
        errs.add("message_unrecognized_key")
    if m.get("role") not in CHAT_ROLES:
        errs.add("unrecognized_role")
    content = m.get("content")
    if (not content and not m.get("function_call")) or not isinstance(content, str):
        errs.add("missing_content")
    return errs


def chat_errors(ex: Any) -> list[str]:
    """Format errors of one chat example (empty when it is fine)."""
    if not isinstance(ex, dict):
        return ["data_type"]
    errs: list[str] = []
    if not EXAMPLE_KEYS.issuperset(ex):
        errs.append("example_unrecognized_key")
    messages = ex.get("messages")
    if not isinstance(messages, list) or not messages:
        return errs + ["missing_messages_list"]
    seen: set[str] = set()
    for m in messages:
        seen |= message_errors(m)
    errs += [e for e in FORMAT_ERRORS if e in seen]
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        errs.append("example_missing_assistant_message")
    return errs


def prompt_completion_errors(ex: Any) -> list[str]:
    """Format errors of one prompt-completion example (legacy completions fine-tuning)."""
    if not isinstance(ex, dict):
        return ["data_type"]
    errs: list[str] = []
    if not PC_KEYS.issuperset(ex):
        errs.append("example_unrecognized_key")
    p, c = ex.get("prompt"), ex.get("completion")
    if not isinstance(p, str) or not p:
        errs.append("missing_prompt")
    if not isinstance(c, str) or not c.strip():
        errs.append("missing_completion")
    return errs


# -------------------------------------------------------------------------------- tokens

# o200k_base is the encoding of the gpt-4o family, the models fine-tuning offers today.
_ENCODINGS = {
    "o200k_base": ("https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
                   "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
    "cl100k_base": ("https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
                    "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"),
}


def tiktoken_cache_file(name: str, environ: dict[str, str] | None = None) -> str | None:
    """Where tiktoken would find encoding ``name`` offline; None when it would download it."""
    e = os.environ if environ is None else environ
    if "TIKTOKEN_CACHE_DIR" in e:      # the same precedence as tiktoken.load.read_file_cached
        cache_dir = e["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in e:
        cache_dir = e["DATA_GYM_CACHE_DIR"]
    else:
        cache_dir = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if not cache_dir or name not in _ENCODINGS:   # "" disables tiktoken's cache: it would fetch
        return None
    url, expected = _ENCODINGS[name]
    path = os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    # tiktoken re-downloads a file whose hash does not match: refuse it here instead
    return path if hashlib.sha256(data).hexdigest() == expected else None


class TokenCounter:
    """Counts tokens of one string: tiktoken when its encoding is cached, else an over-estimate."""

    def __init__(self, encoding: str = "o200k_base", environ: dict[str, str] | None = None) -> None:
        self.count: Callable[[str], int]
        self.exact = False
        if tiktoken_cache_file(encoding, environ) is not None:
            try:
                import tiktoken

                enc = tiktoken.get_encoding(encoding)
            except Exception:   # a broken install: the estimate is still safe
                enc = None
            if enc is not None:
                encode = enc.encode_ordinary
                self.count = lambda s: len(encode(s))
                self.exact = True
                self.method = f"tiktoken:{encoding}"
                return
        self.count = estimate_tokens
        self.method = "estimate:utf8_bytes/3"

    def messages(self, messages: Sequence[dict[str, Any]]) -> int:
        """Tokens of a chat example, counted as the cookbook does (3 per message, 3 to prime)."""
        n = 3
        count = self.count
        for m in messages:
            n += 3
            for k, v in m.items():
                if isinstance(v, str):
                    n += count(v)
                if k == "name":
                    n += 1
        return n


def estimate_tokens(s: str) -> int:
    # Chat text averages ~4 UTF-8 bytes per token (Spanish accents make it more, not less), so
    # bytes/3 over-counts: an example it lets through fits the 65,536-token limit.
    return -(-len(s.encode()) // 3)
