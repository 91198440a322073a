"""What a tuneloop process (worker, CLI, app) holds: config, env, Redis, store, pseudonyms."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from middleware.config import Config, Env, load_config, load_env
from middleware.keys import Keys
from middleware.pseudonym import HmacPseudonymizer, resolve_user
from middleware.redis_conn import RedisHandle, connect, resolve_secret, run_checks
from middleware.store import Store


@dataclass
class Runtime:
    config: Config
    env: Env
    handle: RedisHandle

    @classmethod
    def load(cls, environ: dict[str, str] | None = None, config: Config | None = None,
             check: bool = False) -> Runtime:
        """Config and environment as `tuneloop serve` reads them. Raises ConfigError / CheckFailed."""
        env = load_env(environ)
        cfg = config or load_config(None)
        rt = cls(cfg, env, connect(env))
        if check:
            rt.check()
        return rt

    def check(self) -> None:
        run_checks(self.handle.sync, self.keys, self.pseudonymizer, self.config.redis.check_eviction)

    @cached_property
    def keys(self) -> Keys:
        return Keys(self.config.redis.prefix)

    @cached_property
    def store(self) -> Store:
        return Store(self.handle.sync, self.keys)

    @cached_property
    def pseudonymizer(self) -> HmacPseudonymizer:
        return HmacPseudonymizer(resolve_secret(self.env))

    def resolve(self, user_id: str) -> str:
        """A user id or a pseudonym -> the pseudonym. Raises ValueError saying what is wrong."""
        return resolve_user(user_id, self.pseudonymizer)

    @cached_property
    def anonymizer(self) -> Any:
        from middleware.anonymizer import Anonymizer

        return Anonymizer.from_config(self.config)

    def queue(self) -> Any:
        from rq import Queue
        from rq.serializers import JSONSerializer

        return Queue(self.config.redis.queue, connection=self.handle.sync, serializer=JSONSerializer)
