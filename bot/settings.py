"""Settings from the environment and `.env` (pydantic-settings)."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/todo-bot.sqlite3"
TOKEN_PATTERN = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{30,}$")
#: What Telegram accepts as a webhook's secret_token.
WEBHOOK_SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line for the operator."""


def normalise_database_url(url: str) -> str:
    """Accept the common spellings and pick the async drivers we ship."""
    url = url.strip()
    for prefix in (
        "postgres://",
        "postgresql://",
        "postgresql+psycopg2://",
        "postgresql+psycopg://",
    ):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    telegram_bot_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    database_url: str = DEFAULT_DATABASE_URL
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    moderation_chat_id: int | None = None
    timezone: str = "Europe/Berlin"
    #: How many updates of different residents are handled at the same time.
    update_concurrency: int = Field(default=32, ge=1, le=512)
    log_level: str = "INFO"
    #: json (one object per line), text (readable lines) or auto: text on a terminal.
    log_format: Literal["auto", "json", "text"] = "auto"
    #: Key of the hash that stands for Telegram user ids in the logs (default: derived from
    #: the bot token, so hashes change when the token does).
    log_hash_key: SecretStr | None = None
    #: Messages per second the sender may use for broadcasts (Telegram allows about 30 for
    #: the whole bot; the rest is left for answering residents).
    broadcast_max_rate: float = Field(default=25.0, gt=0, le=1000)
    #: Send broadcasts with allow_paid_broadcast (Telegram Stars), which allows up to 1000/s.
    broadcast_paid: bool = False
    #: When the weekly digest goes out: a cron expression (minute hour day month weekday,
    #: weekday 0 or 7 = Sunday as in cron), in TIMEZONE.
    digest_cron: str = "0 9 * * mon"
    #: A digest missed while the bot was down is sent when it comes back within this time.
    digest_grace_hours: float = Field(default=24.0, ge=0, le=24 * 6)
    #: Notifications of one resident within this time are merged into one message.
    notify_delay_seconds: int = Field(default=600, ge=0, le=86400)
    #: No notifications in this local time window ("22:00-08:00"); empty switches it off.
    quiet_hours: str = "22:00-08:00"
    #: Reports by this many residents hide an approved comment until a moderator decides.
    report_threshold: int = Field(default=3, ge=1, le=1000)
    #: Shown in /privacy: who is responsible for the data (GDPR controller).
    privacy_controller: str = "Stadt Dortmund – InnoLab Zukunft der Arbeit"
    privacy_contact: str = "datenschutz@dortmund.de"
    #: Residents not seen for this many months are warned, then deleted (comments kept
    #: anonymous) INACTIVITY_GRACE_DAYS later unless they come back.
    inactivity_delete_months: int = Field(default=24, ge=1, le=240)
    inactivity_grace_days: int = Field(default=30, ge=1, le=365)
    #: State-changing actions (support, follow, comment, report, propose, help) per resident
    #: and minute; counted per process. Staff are exempt.
    actions_per_minute: int = Field(default=30, ge=1, le=10000)
    #: Comments and proposals per resident and hour (counted in the database).
    comments_per_hour: int = Field(default=5, ge=1, le=10000)
    proposals_per_hour: int = Field(default=3, ge=1, le=10000)
    #: Webhook mode: the public HTTPS URL Telegram posts updates to (its path is served).
    webhook_url: str | None = None
    #: Telegram sends it in X-Telegram-Bot-Api-Secret-Token; required with WEBHOOK_URL.
    webhook_secret: SecretStr | None = None
    #: Still accepted while a new WEBHOOK_SECRET is being rolled out (rotation).
    webhook_secret_previous: SecretStr | None = None
    webhook_listen: str = "0.0.0.0"
    webhook_port: int = Field(default=8080, ge=0, le=65535)
    #: Polling mode: serve /healthz and /metrics on this port (webhook mode: WEBHOOK_PORT).
    http_port: int | None = Field(default=None, ge=0, le=65535)
    #: What `todo-bot run` does: all (one process), web (updates via the webhook, as many
    #: replicas as you like) or worker (scheduler and sender; several elect one leader).
    role: Literal["all", "web", "worker"] = "all"
    #: Workers: how often a standby tries to take the lead (and the leader checks its lock).
    leader_retry_seconds: float = Field(default=2.0, gt=0, le=300)

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace(";", ",").split(",")]
            try:
                return frozenset(int(p) for p in parts if p)
            except ValueError as exc:
                raise ValueError("ADMIN_IDS must be comma-separated Telegram user ids") from exc
        if isinstance(value, int):
            return frozenset({value})
        return value

    @field_validator(
        "moderation_chat_id",
        "webhook_url",
        "webhook_secret",
        "webhook_secret_previous",
        "http_port",
        "log_hash_key",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("telegram_api_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("digest_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from bot.schedule import parse_cron

        parse_cron(value, ZoneInfo("UTC"))  # raises ValueError with the reason
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _valid_quiet_hours(cls, value: str) -> str:
        from domain.broadcasts import parse_quiet_hours

        parse_quiet_hours(value)
        return value.strip()

    @field_validator("webhook_url")
    @classmethod
    def _https_webhook(cls, value: str | None) -> str | None:
        if value is not None and not value.strip().lower().startswith("https://"):
            raise ValueError("must be an https:// URL (Telegram only posts to HTTPS)")
        return value.strip() if value is not None else None

    @field_validator("webhook_secret", "webhook_secret_previous")
    @classmethod
    def _valid_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not WEBHOOK_SECRET_PATTERN.match(value.get_secret_value()):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Settings:
        if self.webhook_url is not None and self.webhook_secret is None:
            raise ValueError(
                "WEBHOOK_SECRET is required with WEBHOOK_URL (1-256 characters of "
                "A-Z, a-z, 0-9, _ and -, e.g. from `openssl rand -hex 32`)"
            )
        return self

    @model_validator(mode="after")
    def _rate_within_telegram_limits(self) -> Settings:
        if not self.broadcast_paid and self.broadcast_max_rate > 30:
            raise ValueError(
                "BROADCAST_MAX_RATE above 30 messages per second needs BROADCAST_PAID=true"
            )
        return self

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def require_token(self) -> str:
        """The bot token, or a ConfigError with one line saying what to set."""
        if self.telegram_bot_token is None or not self.telegram_bot_token.get_secret_value():
            raise ConfigError(
                "TELEGRAM_BOT_TOKEN is not set: put the token from @BotFather into the "
                "environment or into .env (TELEGRAM_BOT_TOKEN=123456789:AA...)."
            )
        token = self.telegram_bot_token.get_secret_value().strip()
        if not TOKEN_PATTERN.match(token):
            raise ConfigError(
                "TELEGRAM_BOT_TOKEN is malformed: it must look like 123456789:AA... "
                "(digits, a colon, then the secret part from @BotFather)."
            )
        return token


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning validation errors into one-line ConfigErrors."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]).upper() or "settings"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{field}: {message}") from None
