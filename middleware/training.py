"""TrainingCapture: what an existing bot adds (SURFACE.md, "Python API").

    capture = TrainingCapture.from_env()
    capture.setup(dp)

It raises only for a bad configuration (ConfigError naming the key). Every other problem (Redis
unreachable, a failed start-up check) is logged and keeps capture off until it clears: the host
bot never goes down because of tuneloop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .capture import CaptureCore
from .config import Config, Env, load_config, load_env
from .pseudonym import HmacPseudonymizer
from .redis_conn import RedisHandle, connect, resolve_secret

if TYPE_CHECKING:
    from aiogram import Dispatcher


def build_anonymizer(config: Config) -> Any:
    from .anonymizer import Anonymizer

    return Anonymizer.from_config(config)


class TrainingCapture:
    def __init__(self, config: Config, env: Env, handle: RedisHandle | None = None,
                 anonymizer: Any = None, pseudonymize: Callable[[str], str] | None = None) -> None:
        self.config = config
        self.env = env
        self.handle = handle or connect(env)
        hmac_p = HmacPseudonymizer(resolve_secret(env))
        self.anonymizer = anonymizer or build_anonymizer(config)
        self.core = CaptureCore(config, env, self.handle, self.anonymizer, pseudonymize or hmac_p,
                                check_fingerprint=hmac_p)
        self._aiogram: Any = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **kwargs: Any) -> TrainingCapture:
        """Read TUNELOOP_CONFIG and the environment, as `tuneloop serve` does."""
        env = load_env(environ)
        config = load_config(env.config_path if (environ or {}).get("TUNELOOP_CONFIG") else None)
        return cls(config, env, **kwargs)

    # aiogram ---------------------------------------------------------------------------------
    def setup(self, dp: Dispatcher) -> None:
        from .aiogram_adapter import AiogramCapture

        self._aiogram = AiogramCapture(self.core)
        self._aiogram.setup(dp)

    # Twilio / aiohttp ------------------------------------------------------------------------
    def twilio_middleware(self, paths: list[str]) -> Any:
        from .twilio_adapter import TwilioCapture

        return TwilioCapture(self.core, paths).middleware

    def twilio_http_client(self, asynchronous: bool = False, **kwargs: Any) -> Any:
        """An http client for twilio's REST ``Client`` whose sends are captured as replies:
        ``Client(sid, token, http_client=capture.twilio_http_client())``."""
        from .twilio_rest import twilio_http_client

        return twilio_http_client(asynchronous, **kwargs)

    # lifecycle -------------------------------------------------------------------------------
    @property
    def pseudonymize(self) -> Callable[[str], str]:
        return self.core.pseudonymize

    async def start(self) -> None:
        await self.core.start()

    async def flush(self, timeout: float = 10.0) -> bool:
        """Hand buffered records to Redis now."""
        return await self.core.flush(timeout)

    async def close(self) -> None:
        """Flush and stop."""
        await self.core.close()
        if self.handle._async is not None:
            await self.handle._async.aclose()
            self.handle._async = None
