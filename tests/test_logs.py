"""Logs: structured (JSON or text), with the update id, handler and a hashed user, and
without the token, message texts or Telegram user ids in clear."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from telegram import Update
from telegram.ext import TypeHandler

from bot.logs import (
    TOKEN_PLACEHOLDER,
    JsonFormatter,
    Privacy,
    TextFormatter,
    configure,
    hash_key,
    update_context,
    user_hash,
)
from tests.harness import BotHarness
from tests.test_cli import sqlite_url, todo_bot

RESIDENT = 4242417
ADMIN = 900001
KEY = "test-log-key"
HASH = user_hash(KEY.encode(), RESIDENT)

probe_log = logging.getLogger("bot.test_probe")


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.startswith("{")]


@pytest.fixture
def captured(fake: Any) -> Iterator[Captured]:
    """What `todo-bot run` installs (JSON, DEBUG), writing into a buffer; undone after."""
    root = logging.getLogger()
    names = ("telegram", "aiosqlite", "sqlalchemy", "asyncpg", "httpx", "httpcore", "alembic")
    levels = {name: logging.getLogger(name).level for name in names}
    root_level = root.level
    stream = io.StringIO()
    handler = configure("DEBUG", "json", token=fake.token, hash_key_setting=KEY, stream=stream)
    try:
        yield Captured(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(root_level)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def _probe(update: object, context: Any) -> None:
    """A handler that logs like the bot's own code does (ids as arguments)."""
    if not isinstance(update, Update) or update.effective_user is None:
        return
    probe_log.info("probe: update %s from user %s", update.update_id, update.effective_user.id)
    if update.message is not None and update.message.text == "/help":
        token = context.bot.token
        raise RuntimeError(f"failed for {update.effective_user.id} with token {token}")


def _add_probe(bot: BotHarness) -> None:
    bot.app.add_handler(TypeHandler(Update, _probe), group=-10)


async def test_json_lines_carry_update_handler_and_hashed_user(
    bot: BotHarness, captured: Captured
) -> None:
    _add_probe(bot)
    user = bot.user(RESIDENT, "de")
    await bot.send(user, "/start")
    await bot.tap(user, "to:DO-Punkte")
    await bot.send(user, "/nosuchcommand")
    probes = [e for e in captured.entries() if e["logger"] == "bot.test_probe"]
    assert len(probes) == 3
    start, tap, unknown = probes
    assert start["handler"] == "/start"
    assert tap["handler"].startswith("cb:") and tap["handler"] != "cb:?"
    assert unknown["handler"] == "/?"  # an unknown command word is not logged
    for entry in probes:
        assert set(entry) >= {"time", "level", "logger", "message", "update_id", "user"}
        assert entry["level"] == "INFO"
        assert entry["time"].endswith("Z")
        assert isinstance(entry["update_id"], int)
        assert entry["message"] == f"probe: update {entry['update_id']} from user {HASH}"
        assert entry["user"] == HASH  # stable across records
    assert len({e["update_id"] for e in probes}) == 3
    assert str(RESIDENT) not in captured.text


async def test_token_and_user_id_hidden_in_exception_text(
    bot: BotHarness, fake: Any, captured: Captured
) -> None:
    _add_probe(bot)
    await bot.send(bot.user(RESIDENT, "de"), "/help")
    [failed] = [e for e in captured.entries() if e["logger"] == "handlers.errors"]
    assert failed["level"] == "ERROR"
    assert failed["handler"] == "/help"
    assert failed["user"] == HASH
    assert "RuntimeError" in failed["exc"]
    assert f"failed for {HASH} with token {TOKEN_PLACEHOLDER}" in failed["exc"]
    assert fake.token not in captured.text
    assert fake.token.split(":", 1)[1] not in captured.text
    assert str(RESIDENT) not in captured.text


async def test_message_texts_never_reach_the_logs(bot: BotHarness, captured: Captured) -> None:
    """A resident journey with distinctive texts at LOG_LEVEL=DEBUG (where the libraries
    would log request payloads and SQL parameters if they were not kept quiet)."""
    _add_probe(bot)
    name, comment, query = "Zephyrine Quaxleby", "Xylophonquark an der Emscher", "Wombatfluss"
    admin = bot.user(ADMIN, "de")
    user = bot.user(RESIDENT, "en")
    await bot.send(admin, "/start")
    await bot.send(user, "/start")
    await bot.send(user, "/settings")
    await bot.tap(user, "Display name")
    await bot.send(user, name)
    assert name in bot.screen(RESIDENT)["text"]
    await bot.send(user, "/start item_TD-03")
    await bot.tap(user, "Comment")
    await bot.send(user, comment)
    await bot.tap(admin, "Freigeben")
    await bot.send(user, f"/search {query}")
    await bot.send(user, "/menu")
    await bot.tap(user, "to:DO items")
    await bot.tap(user, "Search")
    await bot.send(user, query)
    entries = captured.entries()
    assert len(entries) >= 15  # the journey was logged (the probe, at least)
    assert {e["handler"] for e in entries if "handler" in e} >= {"message", "/search"}
    for text in (name, comment, query, "Zephyrine", "Xylophonquark", "Wombat"):
        assert text not in captured.text
    assert str(RESIDENT) not in captured.text
    assert str(ADMIN) not in captured.text


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("bot.x", logging.WARNING, __file__, 1, msg, args, exc_info)


def _update(user_id: int, chat_id: int, text: str = "/start") -> Update:
    return Update.de_json(
        {
            "update_id": 77,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
                "from": {"id": user_id, "is_bot": False, "first_name": "A"},
                "text": text,
            },
        },
        None,
    )


def test_privacy_filter_replaces_ids_token_and_sql_parameters() -> None:
    token = "123456:" + "A" * 35
    privacy = Privacy(KEY.encode(), token)
    group = -1001234567890
    try:
        raise ValueError(
            f"bad {token} for {RESIDENT}\n[SQL: INSERT x]\n[parameters: ('a secret text', 5)]"
        )
    except ValueError as error:
        caught = error
    with update_context(_update(RESIDENT, group)):
        record = _record("user %s in chat %d, count %s", RESIDENT, group, 3, exc=caught)
        assert privacy.filter(record)
    assert record.getMessage() == (f"user {HASH} in chat {user_hash(KEY.encode(), group)}, count 3")
    assert record.update_id == 77  # type: ignore[attr-defined]
    assert record.user == HASH  # type: ignore[attr-defined]
    assert record.exc_text is not None
    assert token not in record.exc_text and TOKEN_PLACEHOLDER in record.exc_text
    assert str(RESIDENT) not in record.exc_text and HASH in record.exc_text
    assert "a secret text" not in record.exc_text and "[parameters: hidden]" in record.exc_text
    # Outside an update: no context fields, the token is still hidden.
    outside = _record("calling %s", f"https://api.telegram.org/bot{token}/getMe")
    assert privacy.filter(outside)
    assert outside.getMessage() == f"calling https://api.telegram.org/bot{TOKEN_PLACEHOLDER}/getMe"
    line = json.loads(JsonFormatter().format(outside))
    assert set(line) == {"time", "level", "logger", "message"}


def test_hash_is_keyed_and_stable() -> None:
    digest = hmac.new(KEY.encode(), str(RESIDENT).encode(), hashlib.sha256).hexdigest()
    assert user_hash(KEY.encode(), RESIDENT) == "u:" + digest[:12]
    assert HASH.startswith("u:") and len(HASH) == 14
    assert user_hash(b"other key", RESIDENT) != HASH
    token = "123456:" + "B" * 35
    assert hash_key(None, token) == hash_key(None, token)  # per deployment
    assert hash_key(None, token) != hash_key(None, "123456:" + "C" * 35)
    assert hash_key("explicit", token) == b"explicit"


def test_text_format_is_one_readable_line() -> None:
    privacy = Privacy(KEY.encode())
    with update_context(_update(RESIDENT, RESIDENT, "/search x")):
        record = _record("could not answer the press: %s", "TimedOut")
        privacy.filter(record)
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert " WARNING bot.x [" in line
    assert f"[update=77 handler=/search user={HASH}]" in line
    assert line.endswith(": could not answer the press: TimedOut")
    plain = _record("database ready at revision %s", "0012")
    Privacy(KEY.encode()).filter(plain)
    assert TextFormatter().format(plain).endswith(" WARNING bot.x: database ready at revision 0012")


def test_cli_writes_json_lines_to_stderr(tmp_path: Path) -> None:
    result = todo_bot(
        tmp_path, "migrate", DATABASE_URL=sqlite_url(tmp_path), LOG_FORMAT="json", LOG_LEVEL="DEBUG"
    )
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines  # asyncio says which selector it uses, at DEBUG
    for line in lines:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(entry)
        assert entry["logger"] != "aiosqlite"  # SQL parameters stay out, even at DEBUG


def test_cli_text_format_and_bad_setting(tmp_path: Path) -> None:
    db = sqlite_url(tmp_path)
    text = todo_bot(tmp_path, "migrate", DATABASE_URL=db, LOG_FORMAT="TEXT", LOG_LEVEL="DEBUG")
    assert text.returncode == 0, text.stderr
    assert " DEBUG asyncio: " in text.stderr
    refused = todo_bot(tmp_path, "migrate", DATABASE_URL=db, LOG_FORMAT="xml")
    assert refused.returncode == 2
    assert refused.stderr.startswith("todo-bot: LOG_FORMAT")
