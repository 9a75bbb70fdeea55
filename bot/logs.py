"""Structured logs without personal data.

Every log record passes the `Privacy` filter of the one handler `configure` installs on
the root logger:

* the bot token is replaced by `<TELEGRAM_BOT_TOKEN>` (python-telegram-bot logs the API URL,
  which contains it, and its InvalidToken error quotes it), in the message and in the
  exception text;
* a Telegram user id is never written in clear: records logged while an update is handled
  get `user` = a keyed hash of the update's sender (`u:` + 12 hex digits of HMAC-SHA256
  with LOG_HASH_KEY), and that update's user id and chat id are replaced by their hash
  wherever they appear (record arguments, the message, the exception text);
* the SQL parameters SQLAlchemy quotes in its exceptions (which may be texts residents
  wrote) are cut from exception texts.

Message texts are not logged at all: no log call of the bot passes one, and the libraries
that log request payloads (python-telegram-bot, aiosqlite, SQLAlchemy, httpx) are kept at
INFO or WARNING whatever LOG_LEVEL says.

Records logged while an update is handled also carry `update_id` and `handler`: what the
update asked for, known before any handler runs — the command (`/start`, only commands
the bot knows, else `/?`), the callback route's verb (`cb:sup`, see bot/callbacks.py), or
the kind of update (`message` for a text, `edited_message`, `my_chat_member`, `other`).

LOG_FORMAT: `json` writes one JSON object per line (time, level, logger, message,
update_id, handler, user, exc), `text` one readable line, `auto` (the default) text when
stderr is a terminal, JSON otherwise."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO, Any, Literal

LogFormat = Literal["auto", "json", "text"]
TOKEN_PLACEHOLDER = "<TELEGRAM_BOT_TOKEN>"
#: Ids shorter than this are not searched for in message texts (they would match counts).
_MIN_ID_DIGITS = 5
#: Libraries that log request payloads (message texts, SQL parameters) at DEBUG: never below
#: INFO. httpx logs every request URL (with the token) at INFO, SQLAlchemy every statement
#: with its parameters: WARNING.
_PAYLOAD_LOGGERS = ("telegram", "aiosqlite", "asyncpg")
_QUIET_LOGGERS = ("httpx", "httpcore", "alembic", "sqlalchemy")
_SQL_PARAMETERS = re.compile(r"^\[parameters: .*$", re.MULTILINE)
_CALLBACK_VERB = re.compile(r"[A-Za-z_]{1,16}")
_COMMAND = re.compile(r"/([A-Za-z0-9_]{1,32})(?:@\w+)?(?:\s|$)")


@dataclass(frozen=True)
class UpdateInfo:
    """What the logs may say about the update being handled (ids stay here, in memory)."""

    update_id: int | None
    handler: str
    user_id: int | None
    chat_id: int | None


current_update: ContextVar[UpdateInfo | None] = ContextVar("current_update", default=None)


@functools.cache
def _known_commands() -> frozenset[str]:
    from bot import app  # imported late: bot.app imports the processor, which imports this

    return frozenset((*app.RESIDENT_COMMANDS, *app.MODERATOR_COMMANDS, *app.ADMIN_COMMANDS))


def handler_of(update: object) -> str:
    """The `handler` field: the command, the callback route's verb or the update kind."""
    from telegram import Update

    if not isinstance(update, Update):
        return "other"
    if update.callback_query is not None:
        verb = (update.callback_query.data or "").split(":", 1)[0]
        return f"cb:{verb}" if _CALLBACK_VERB.fullmatch(verb) else "cb:?"
    if update.message is not None:
        text = update.message.text or ""
        if text.startswith("/"):
            match = _COMMAND.match(text)
            command = match.group(1).lower() if match else ""
            return f"/{command}" if command in _known_commands() else "/?"
        return "message"
    for kind in ("edited_message", "my_chat_member", "chat_member"):
        if getattr(update, kind, None) is not None:
            return kind
    return "other"


def describe(update: object) -> UpdateInfo:
    from telegram import Update

    if not isinstance(update, Update):
        return UpdateInfo(None, handler_of(update), None, None)
    user = update.effective_user
    chat = update.effective_chat
    return UpdateInfo(
        update.update_id,
        handler_of(update),
        user.id if user is not None else None,
        chat.id if chat is not None else None,
    )


@contextlib.contextmanager
def update_context(update: object) -> Iterator[UpdateInfo]:
    """Records logged inside carry this update's id, handler and (hashed) user."""
    info = describe(update)
    token = current_update.set(info)
    try:
        yield info
    finally:
        current_update.reset(token)


def hash_key(explicit: str | None, token: str | None) -> bytes:
    """LOG_HASH_KEY, else derived from the bot token (stable per deployment, not guessable
    without the token), else random (then hashes differ between runs: nothing to compare)."""
    if explicit:
        return explicit.encode()
    if token:
        return hmac.new(token.encode(), b"to:DO Bot log user hash", hashlib.sha256).digest()
    return os.urandom(32)


def user_hash(key: bytes, telegram_id: int) -> str:
    """`u:` + 12 hex digits; the same id gives the same hash with the same key."""
    return "u:" + hmac.new(key, str(telegram_id).encode(), hashlib.sha256).hexdigest()[:12]


class Privacy(logging.Filter):
    """Adds update_id, handler and user; hides the token and the update's Telegram ids."""

    def __init__(self, key: bytes, token: str | None = None) -> None:
        super().__init__()
        self.key = key
        self.token = token or None

    def hash(self, telegram_id: int) -> str:
        return user_hash(self.key, telegram_id)

    def filter(self, record: logging.LogRecord) -> bool:
        info = current_update.get()
        ids: dict[int, str] = {}
        if info is not None:
            record.update_id = info.update_id
            record.handler = info.handler
            record.user = self.hash(info.user_id) if info.user_id is not None else None
            for value in (info.user_id, info.chat_id):
                if value is not None:
                    ids[value] = self.hash(value)
        message = self._message(record, ids)
        record.msg, record.args = message, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _SQL_PARAMETERS.sub("[parameters: hidden]", record.exc_text)
            record.exc_text = self._clean(record.exc_text, ids)
        return True

    def _message(self, record: logging.LogRecord, ids: Mapping[int, str]) -> str:
        """The message with the ids given as arguments replaced by their hash (when the
        format allows a string there, else the ids are replaced in the formatted text)."""
        if record.args and ids:
            original = record.args
            record.args = self._replace_args(original, ids)
            try:
                return self._clean(record.getMessage(), ids)
            except (TypeError, ValueError):  # e.g. `%d` for an id
                record.args = original
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call must not break the code that logs
            message = f"{record.msg} (unformattable arguments)"
        return self._clean(message, ids)

    @staticmethod
    def _replace_args(args: Any, ids: Mapping[int, str]) -> Any:
        def one(value: object) -> object:
            if isinstance(value, int) and not isinstance(value, bool) and value in ids:
                return ids[value]
            return value

        if isinstance(args, Mapping):
            return {k: one(v) for k, v in args.items()}
        if isinstance(args, tuple):
            return tuple(one(v) for v in args)
        return args

    def _clean(self, text: str, ids: Mapping[int, str]) -> str:
        if self.token and self.token in text:
            text = text.replace(self.token, TOKEN_PLACEHOLDER)
        for value, hashed in ids.items():
            digits = str(abs(value))
            if len(digits) >= _MIN_ID_DIGITS and digits in text:
                text = re.sub(rf"(?<!\d)-?{digits}(?!\d)", hashed, text)
        return text


_CONTEXT_FIELDS = ("update_id", "handler", "user")


def _utc_time(record: logging.LogRecord) -> str:
    moment = dt.datetime.fromtimestamp(record.created, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, and
    update_id, handler, user and exc when there are any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """`2026-01-05 09:00:00,123 INFO bot.processor [update=7 handler=/start user=u:…]: …`"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"{name.removesuffix('_id')}={getattr(record, name)}"
            for name in _CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        ]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return super().format(record)


def resolve_format(log_format: str, stream: IO[str] | None = None) -> Literal["json", "text"]:
    if log_format == "json":
        return "json"
    if log_format == "text":
        return "text"
    stream = stream if stream is not None else sys.stderr
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def make_handler(
    log_format: str,
    *,
    key: bytes,
    token: str | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    fmt = resolve_format(log_format, stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(Privacy(key, token))
    return handler


def configure(
    level: str,
    log_format: str = "auto",
    *,
    token: str | None = None,
    hash_key_setting: str | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Install one structured, private handler on the root logger (replacing the one an
    earlier call installed)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "todo_bot", False):
            root.removeHandler(old)
    handler = make_handler(
        log_format, key=hash_key(hash_key_setting, token), token=token, stream=stream
    )
    handler.todo_bot = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    quiet_libraries(root.level)
    return handler


def quiet_libraries(level: int) -> None:
    for name in _PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
