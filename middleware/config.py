"""tuneloop's configuration: one module owns it.

pydantic models loaded from YAML (``TUNELOOP_CONFIG``, default ``./config.yaml``); the environment
variables of SURFACE.md override it; secrets come only from the environment. Every problem is a
:class:`ConfigError` whose message names the key and what is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A bad configuration: the message names the key (``section.key``) and what is wrong."""


class _Model(BaseModel):
    # Unknown keys are typos more often than not: refuse them so they are noticed.
    model_config = ConfigDict(extra="forbid", frozen=False)


# --------------------------------------------------------------------------------------------
# sections


class RedisConfig(_Model):
    prefix: str = Field("tuneloop:", min_length=1, description="key prefix, so tuneloop can share a Redis")
    queue: str = Field("tuneloop", min_length=1, description="RQ queue name (RQ adds its own rq: prefix)")
    check_eviction: bool = True


class CaptureConfig(_Model):
    enabled: bool = True
    max_length: int = Field(2000, gt=0, le=100_000)
    batch_size: int = Field(200, gt=0, le=10_000)
    max_delay_ms: int = Field(250, gt=0, le=60_000)
    buffer_max: int = Field(20_000, gt=0)
    # Commands are filtered; these prefixes mark them.
    command_prefixes: list[str] = Field(default_factory=lambda: ["/"])
    private_chats_only: bool = Field(True, description="group messages involve people who never consented")
    recheck_seconds: float = Field(10.0, gt=0, description="how often a failed start-up check is retried")
    spill_max_mb: float = Field(256, ge=0, description="disk journal bound while Redis is away; 0 disables it")
    spill_fsync: Literal["always", "batch", "never"] = "batch"


class ConsentTexts(_Model):
    text: str = Field(min_length=1)
    accept: str = Field(min_length=1)
    decline: str = Field(min_length=1)
    granted: str = Field(min_length=1)
    declined: str = Field(min_length=1)
    withdrawn: str = Field(min_length=1)
    status_on: str = Field(min_length=1)
    status_off: str = Field(min_length=1)
    forget_confirm: str = "Erase every message of yours that we stored, and stop storing new ones?"
    forget_yes: str = "Yes, erase"
    forget_cancel: str = "Cancel"
    forget_cancelled: str = "Nothing was erased."
    mydata: str = "Your consent events and the (anonymized) messages we store."


class ConsentKeywords(_Model):
    yes: list[str] = Field(default_factory=list)
    no: list[str] = Field(default_factory=list)
    status: list[str] = Field(default_factory=list)


class Controller(_Model):
    name: str = Field(min_length=1)
    contact: str = Field(min_length=1)


class ConsentConfig(_Model):
    ask_on_first_message: bool = True
    ask_again_on_new_version: bool = True
    withdraw_on_block: bool = True
    default_lang: str = "es"
    controller: Controller = Controller(name="Example Seafood S.A.", contact="privacy@example.com")
    purpose: dict[str, str] = Field(default_factory=dict)
    texts: dict[str, ConsentTexts]
    keywords: dict[str, ConsentKeywords] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_lang_has_text(self) -> ConsentConfig:
        if self.default_lang not in self.texts:
            raise ValueError(f"default_lang {self.default_lang!r} has no entry in consent.texts")
        return self


class WhitelistConfig(_Model):
    terms: list[str] = Field(default_factory=list, description="literal terms no detector may touch")
    patterns: list[str] = Field(default_factory=list, description="regexes no detector may touch")


class AnonymizerConfig(_Model):
    numbered_placeholders: bool = False
    names: bool = True
    regions: list[str] = Field(default_factory=lambda: ["EC", "ES", "US", "PT", "MX", "CO", "PE"])
    phone_cues: list[str] = Field(default_factory=list)
    account_cues: list[str] = Field(default_factory=list)
    id_cues: list[str] = Field(default_factory=list)
    name_cues: list[str] = Field(default_factory=list)
    address_cues: list[str] = Field(default_factory=list, description="words before an address, on top of the built-in ones")
    whitelist: WhitelistConfig = WhitelistConfig()
    keep_values: list[str] = Field(default_factory=list, description="the operator's own public values")

    @field_validator("regions")
    @classmethod
    def _regions_known(cls, v: list[str]) -> list[str]:
        import phonenumbers

        bad = [r for r in v if r.upper() not in phonenumbers.SUPPORTED_REGIONS]
        if bad:
            raise ValueError(f"unknown phone region(s) {bad}")
        return [r.upper() for r in v]


class IntentConfig(_Model):
    name: str
    description: str = ""
    cues: dict[str, list[str]] = Field(default_factory=dict, description="cue words per language")
    # Optional, read by the offline rules analyzer: cue tiers (one strong cue decides; weak cues
    # only tip a balance), the tie-break rank (lower wins; default: list order) and a role.
    strong_cues: dict[str, list[str]] = Field(default_factory=dict, description="decisive cues per language")
    weak_cues: dict[str, list[str]] = Field(default_factory=dict, description="ambiguous cues per language")
    priority: int | None = Field(None, description="tie-break rank for the rules analyzer, lower wins")
    role: Literal["order", "question", "greeting", "fallback"] | None = Field(
        None, description="order: a bare spec line; question: a bare spec question; "
        "greeting: only hello/thanks/bye; fallback: nothing recognized")


class ProductConfig(_Model):
    code: str
    aliases: list[str] = Field(default_factory=list)


class OpenAIConfig(_Model):
    model: str = "gpt-4o-mini"
    concurrency: int = Field(64, gt=0, le=256)
    timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    batch_api: bool = False
    batch_poll_minutes: int = Field(10, gt=0)
    # Sent only when set: reasoning models refuse a temperature, and their token budget
    # includes reasoning, so neither has a safe default for every model.
    temperature: float | None = Field(None, ge=0, le=2)
    max_completion_tokens: int | None = Field(None, gt=0)


class AnalysisConfig(_Model):
    intents: list[IntentConfig]
    products: list[ProductConfig]
    freezing_styles: list[str] = Field(default_factory=list)
    size_pattern: str = r"(?:U\s*[-/]?\s*\d{1,2}|\d{1,3}\s*[-/]\s*\d{1,3})"
    incoterms: dict[str, list[str]] = Field(default_factory=dict, description="code -> aliases")
    destinations: list[str] = Field(default_factory=list)
    glaseo_max: int = Field(50, ge=0, le=100)
    # Optional vocabulary of the rules analyzer (defaults cover Spanish and English).
    glaze_words: list[str] = Field(default_factory=lambda: ["glaseo", "glaze", "glazing", "glaseado"])
    glaze_exclusions: list[str] = Field(
        default_factory=lambda: ["anticipo", "adelanto", "advance", "deposit", "descuento", "discount"],
        description="words that make a percentage an advance or a discount, never a glaze")
    quantity_units: list[str] = Field(
        default_factory=lambda: ["contenedores", "contenedor", "containers", "container", "FCL", "FCLs",
                                 "toneladas", "TM", "MT", "tons", "kg", "lbs", "cajas", "cases", "masters",
                                 "cartons"],
        description="units of an ordered amount (packing such as 10x2kg is never a quantity)")
    openai: OpenAIConfig = OpenAIConfig()
    system_prompt: str = ""

    @model_validator(mode="after")
    def _non_empty(self) -> AnalysisConfig:
        if not self.intents:
            raise ValueError("intents: at least one intent is required")
        names = [i.name for i in self.intents]
        if len(set(names)) != len(names):
            raise ValueError("intents: names must be unique")
        return self

    @property
    def intent_names(self) -> list[str]:
        return [i.name for i in self.intents]


class QAConfig(_Model):
    approve_confidence: float = Field(0.85, ge=0, le=1)
    review_confidence: float = Field(0.6, ge=0, le=1)
    min_length: int = Field(2, ge=0)
    max_length: int = Field(2000, gt=0)
    near_duplicate: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> QAConfig:
        if self.review_confidence > self.approve_confidence:
            raise ValueError("review_confidence must not exceed approve_confidence")
        return self


class WorkersConfig(_Model):
    mode: Literal["continuous", "on_demand", "scheduled"] = "continuous"
    schedule_cron: str = "0 * * * *"
    retry_intervals_s: list[int] = Field(default_factory=lambda: [60, 300, 900, 3600, 3 * 3600, 6 * 3600])
    job_timeout_s: int = Field(600, gt=0)


class ExportConfig(_Model):
    system_prompt: str = "You are the sales assistant of a shrimp exporter."
    context_minutes: int = Field(30, ge=0)
    context_turns: int = Field(4, ge=0)
    min_confidence: float = Field(0.85, ge=0, le=1)
    train_split: float = Field(0.9, gt=0, le=1)
    user_label: str = "Usuario"
    assistant_label: str = "Asistente"
    max_tokens_per_example: int = Field(65_536, gt=0)
    nlu_system_prompt: str = Field("", description="system message of nlu lines; empty: analysis.system_prompt")
    fine_tune_model: str = Field("gpt-4o-mini-2024-07-18", min_length=1, description="base model of --upload jobs")
    fine_tune_suffix: str | None = Field("tuneloop", max_length=64, description="suffix of the fine-tuned model's name")
    history_keep: int = Field(100, gt=0, description="export summaries kept in the history list")


class GDPRConfig(_Model):
    retention_days: int = Field(365, ge=0, description="0 keeps records until erased")


class Config(_Model):
    redis: RedisConfig = RedisConfig()
    capture: CaptureConfig = CaptureConfig()
    consent: ConsentConfig
    anonymizer: AnonymizerConfig = AnonymizerConfig()
    analysis: AnalysisConfig
    qa: QAConfig = QAConfig()
    workers: WorkersConfig = WorkersConfig()
    export: ExportConfig = ExportConfig()
    gdpr: GDPRConfig = GDPRConfig()


# --------------------------------------------------------------------------------------------
# the environment


class Env(BaseModel):
    """What the environment supplies (SURFACE.md). Secrets live only here."""

    model_config = ConfigDict(frozen=True)

    config_path: Path
    redis_url: str | None = None
    data_dir: Path = Path("data")
    secret: str | None = None
    admin_token: str | None = None
    admin_ids: frozenset[str] = frozenset()
    public_url: str | None = None
    telegram_bot_token: str | None = None
    telegram_webhook_secret: str | None = None
    telegram_api_server: str | None = None
    twilio_auth_token: str | None = None
    openai_api_key: str | None = None
    openai_base_url: str | None = None

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url


SECRET_KEYS = {"secret", "admin_token", "telegram_bot_token", "telegram_webhook_secret",
               "twilio_auth_token", "openai_api_key", "api_key", "token", "auth_token", "password"}


def normalize_user_id(raw: str) -> str:
    """Canonical form of a user id: ``telegram:<int>`` or ``whatsapp:+<E.164>``.

    Raises ValueError with what is wrong.
    """
    import phonenumbers

    s = raw.strip()
    channel, sep, rest = s.partition(":")
    channel = channel.lower()
    if not sep or not rest.strip():
        raise ValueError(f"{raw!r} is not channel:id (telegram:<id> or whatsapp:+<number>)")
    rest = rest.strip()
    if channel == "telegram":
        if not rest.lstrip("-").isdigit():
            raise ValueError(f"{raw!r}: a Telegram id is a number")
        return f"telegram:{int(rest)}"
    if channel == "whatsapp":
        try:
            num = phonenumbers.parse(rest if rest.startswith("+") else "+" + rest, None)
        except phonenumbers.NumberParseException as e:
            raise ValueError(f"{raw!r}: not a phone number ({e})") from None
        if not phonenumbers.is_possible_number(num):
            raise ValueError(f"{raw!r}: not a possible phone number")
        return "whatsapp:" + phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    raise ValueError(f"{raw!r}: unknown channel {channel!r} (telegram or whatsapp)")


def _parse_admin_ids(raw: str | None) -> frozenset[str]:
    if not raw:
        return frozenset()
    out = set()
    for part in raw.split(","):
        if not part.strip():
            continue
        try:
            out.add(normalize_user_id(part))
        except ValueError as e:
            raise ConfigError(f"TUNELOOP_ADMIN_IDS: {e}") from None
    return frozenset(out)


def load_env(environ: dict[str, str] | None = None) -> Env:
    e = os.environ if environ is None else environ

    def get(name: str) -> str | None:
        v = e.get(name)
        return v if v not in (None, "") else None

    return Env(
        config_path=Path(get("TUNELOOP_CONFIG") or "config.yaml"),
        redis_url=get("REDIS_URL"),
        data_dir=Path(get("TUNELOOP_DATA_DIR") or "data"),
        secret=get("TUNELOOP_SECRET"),
        admin_token=get("TUNELOOP_ADMIN_TOKEN"),
        admin_ids=_parse_admin_ids(get("TUNELOOP_ADMIN_IDS")),
        public_url=(get("TUNELOOP_PUBLIC_URL") or "").rstrip("/") or None,
        telegram_bot_token=get("TELEGRAM_BOT_TOKEN"),
        telegram_webhook_secret=get("TELEGRAM_WEBHOOK_SECRET"),
        telegram_api_server=get("TELEGRAM_API_SERVER"),
        twilio_auth_token=get("TWILIO_AUTH_TOKEN"),
        openai_api_key=get("OPENAI_API_KEY"),
        openai_base_url=get("OPENAI_BASE_URL"),
    )


# --------------------------------------------------------------------------------------------
# loading


def _find_secrets(node: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{path}.{k}" if path else str(k)
            if str(k).lower() in SECRET_KEYS and v not in (None, ""):
                found.append(p)
            found.extend(_find_secrets(v, p))
    return found


def _format_validation(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def parse_config(data: Any, source: str = "config") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    secrets = _find_secrets(data)
    if secrets:
        raise ConfigError(f"{source}: {secrets[0]}: secrets are read only from the environment, "
                          "remove it from the file")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation(e, source)) from None


def load_config(path: str | Path | None = None) -> Config:
    """Load and validate the YAML config. A missing default path uses the bundled default."""
    explicit = path is not None
    p = Path(path) if explicit else Path(os.environ.get("TUNELOOP_CONFIG") or "config.yaml")
    if not p.exists():
        if explicit or os.environ.get("TUNELOOP_CONFIG"):
            raise ConfigError(f"{p}: config file not found")
        p = default_config_path()
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    return parse_config(data, str(p))


def default_config_path() -> Path:
    """The config shipped with the package (a copy of the repository's config.yaml)."""
    here = Path(__file__).resolve().parent
    repo = here.parent / "config.yaml"
    return repo if repo.exists() else here / "default_config.yaml"
