"""The `todo-bot` command line as an operator uses it: real subprocesses (`python -m bot`)
in an empty working directory, configured only through the environment."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot.settings import Settings, normalise_database_url
from tests.fake_telegram import ApiCall, FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: Every environment variable the settings read; none may leak in from the outside.
SETTING_NAMES = frozenset(name.upper() for name in Settings.model_fields)
SAMPLE = {"action fields": 7, "sessions": 26, "items": 78, "goals": 7}
BOOT_TIMEOUT = 30.0
EXIT_TIMEOUT = 20.0

T = TypeVar("T")


def cli_env(**settings: str) -> dict[str, str]:
    """The outer environment without any bot setting, plus `settings`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("TELEGRAM_") and k.upper() not in SETTING_NAMES
    }
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(settings)
    return env


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'bot.sqlite3'}"


def todo_bot(cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=cli_env(**settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The operator sees exactly one line on stderr, no traceback, nothing on stdout."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


def import_report(stdout: str) -> dict[str, tuple[int, int, int]]:
    """`{kind: (new, updated, unchanged)}` from the report `import` prints."""
    return {
        m["kind"]: (int(m["new"]), int(m["updated"]), int(m["unchanged"]))
        for m in re.finditer(
            r"^\s+(?P<kind>[a-z ]+): (?P<new>\d+) new, (?P<updated>\d+) updated, "
            r"(?P<unchanged>\d+) unchanged$",
            stdout,
            re.MULTILINE,
        )
    }


ALL_NEW = {kind: (n, 0, 0) for kind, n in SAMPLE.items()}
ALL_UNCHANGED = {kind: (0, 0, n) for kind, n in SAMPLE.items()}


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("token", "says"),
    [(None, "not set"), ("", "not set"), ("abc", "malformed"), ("123456:short", "malformed")],
)
def test_run_with_missing_or_malformed_token_says_what_to_set(
    tmp_path: Path, token: str | None, says: str
) -> None:
    settings = {"DATABASE_URL": sqlite_url(tmp_path)}
    if token is not None:
        settings["TELEGRAM_BOT_TOKEN"] = token
    result = todo_bot(tmp_path, "run", **settings)
    assert result.returncode == 2
    line = one_line_error(result)
    assert "TELEGRAM_BOT_TOKEN" in line
    assert says in line
    # It stopped before touching anything.
    assert list(tmp_path.iterdir()) == []


def test_migrate_and_import_sample_need_no_token(tmp_path: Path) -> None:
    db = sqlite_url(tmp_path)
    migrated = todo_bot(tmp_path, "migrate", DATABASE_URL=db)
    assert migrated.returncode == 0, migrated.stderr
    assert "up to date" in migrated.stdout
    assert (tmp_path / "bot.sqlite3").is_file()

    first = todo_bot(tmp_path, "import", "--sample", "--if-empty", DATABASE_URL=db)
    assert first.returncode == 0, first.stderr
    assert import_report(first.stdout) == ALL_NEW
    assert "kept" not in first.stdout

    again = todo_bot(tmp_path, "import", "--sample", DATABASE_URL=db)
    assert again.returncode == 0, again.stderr
    assert import_report(again.stdout) == ALL_UNCHANGED

    skipped = todo_bot(tmp_path, "import", "--sample", "--if-empty", DATABASE_URL=db)
    assert skipped.returncode == 0, skipped.stderr
    assert "nothing imported" in skipped.stdout
    assert import_report(skipped.stdout) == {}


INVALID_CONTENT = """\
action_fields:
  - key: fachkraefte
    title: {de: Geänderter Titel, en: Changed title}
sessions:
  - key: s01
    title: Eine Session
    starts_at: tomorrow
    ends_at: 2024-06-10T11:30:00+02:00
items:
  - key: TD-01
    title: Ein gültiger Punkt
    description: Beschreibung
    action_field: fachkraefte
  - key: "TD 02!"
    title: Kaputter Schlüssel
    description: Beschreibung
    action_field: fachkraefte
"""

UNKNOWN_REFERENCE = """\
action_fields:
  - key: fachkraefte
    title: Fachkräfte
items:
  - key: TD-01
    title: Ein gültiger Punkt
    description: Beschreibung
    action_field: fachkraefte
  - key: TD-03
    title: Unbekanntes Handlungsfeld
    description: Beschreibung
    action_field: gibt-es-nicht
"""


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (INVALID_CONTENT, ["sessions[0] (s01).starts_at", "items[1] (TD 02!).key"]),
        (UNKNOWN_REFERENCE, ["items[1] (TD-03).action_field", "gibt-es-nicht"]),
    ],
    ids=["invalid-fields", "unknown-action-field"],
)
def test_invalid_import_lists_errors_and_writes_nothing(
    tmp_path: Path, content: str, expected: list[str]
) -> None:
    db = sqlite_url(tmp_path)
    path = tmp_path / "content.yaml"
    path.write_text(content, encoding="utf-8")

    result = todo_bot(tmp_path, "import", "content.yaml", DATABASE_URL=db)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "nothing was written" in result.stderr
    for part in expected:
        assert part in result.stderr

    # The valid entries of the file (TD-01, fachkraefte) were not written either.
    sample = todo_bot(tmp_path, "import", "--sample", DATABASE_URL=db)
    assert sample.returncode == 0, sample.stderr
    assert import_report(sample.stdout) == ALL_NEW


def test_import_of_a_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    result = todo_bot(tmp_path, "import", "no-such-file.yaml", DATABASE_URL=sqlite_url(tmp_path))
    assert result.returncode == 1
    line = one_line_error(result)
    assert "no-such-file.yaml" in line
    assert "no such file" in line


def test_default_database_is_a_sqlite_file_under_var(tmp_path: Path) -> None:
    result = todo_bot(tmp_path, "migrate")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "todo-bot.sqlite3").is_file()


def test_admin_ids(tmp_path: Path) -> None:
    db = sqlite_url(tmp_path)
    accepted = todo_bot(tmp_path, "migrate", DATABASE_URL=db, ADMIN_IDS="1,2")
    assert accepted.returncode == 0, accepted.stderr

    refused = todo_bot(tmp_path, "migrate", DATABASE_URL=db, ADMIN_IDS="x")
    assert refused.returncode == 2
    assert "ADMIN_IDS" in one_line_error(refused)


@pytest.fixture
def postgres_cli_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database as a plain `postgresql://` URL, dropped after."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        if IN_CI:
            pytest.fail("TEST_DATABASE_URL is not set in CI: the PostgreSQL half must run")
        pytest.skip("PostgreSQL CLI test skipped: set TEST_DATABASE_URL to run it")
    admin_url = normalise_database_url(base)
    name = f"todo_cli_{uuid.uuid4().hex[:10]}"

    async def execute(statement: str) -> None:
        engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            make_url(base)
            .set(drivername="postgresql", database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_migrate_and_import_on_postgresql_url(tmp_path: Path, postgres_cli_url: str) -> None:
    assert postgres_cli_url.startswith("postgresql://")
    migrated = todo_bot(tmp_path, "migrate", DATABASE_URL=postgres_cli_url)
    assert migrated.returncode == 0, migrated.stderr
    assert "up to date" in migrated.stdout

    imported = todo_bot(tmp_path, "import", "--sample", DATABASE_URL=postgres_cli_url)
    assert imported.returncode == 0, imported.stderr
    assert import_report(imported.stdout) == ALL_NEW
    # Nothing fell back to a local SQLite file.
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- `run`


@pytest.fixture
def sample_db(tmp_path: Path) -> str:
    """A SQLite database with the sample imported through the CLI."""
    db = sqlite_url(tmp_path)
    result = todo_bot(tmp_path, "import", "--sample", DATABASE_URL=db)
    assert result.returncode == 0, result.stderr
    return db


class RunningBot:
    """`python -m bot run` as a subprocess, its output collected while it runs."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        assert process.stdout is not None and process.stderr is not None
        self._stdout = asyncio.ensure_future(process.stdout.read())
        self._stderr = asyncio.ensure_future(process.stderr.read())
        self.stdout = self.stderr = ""

    async def until(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable`; fail at once (with the bot's output) if the bot exits first."""
        waiter = asyncio.ensure_future(awaitable)
        exited = asyncio.ensure_future(self.process.wait())
        await asyncio.wait({waiter, exited}, return_when=asyncio.FIRST_COMPLETED)
        if waiter.done():
            exited.cancel()
            return waiter.result()
        waiter.cancel()
        await self._collect()
        raise AssertionError(
            f"the bot exited with {self.process.returncode} too early:\n{self.output}"
        )

    async def stop(self, sig: signal.Signals) -> int:
        """Send `sig` and wait for the exit code."""
        self.process.send_signal(sig)
        return await self.exit_code()

    async def exit_code(self) -> int:
        """Wait for the bot to exit on its own."""
        returncode = await asyncio.wait_for(self.process.wait(), EXIT_TIMEOUT)
        await self._collect()
        return returncode

    async def _collect(self) -> None:
        out, err = await asyncio.wait_for(asyncio.gather(self._stdout, self._stderr), 10)
        self.stdout, self.stderr = out.decode(errors="replace"), err.decode(errors="replace")

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @classmethod
    @asynccontextmanager
    async def start(
        cls, cwd: Path, fake: FakeTelegram, **settings: str
    ) -> AsyncIterator[RunningBot]:
        env = cli_env(
            **{
                "TELEGRAM_BOT_TOKEN": fake.token,
                "TELEGRAM_API_URL": fake.url,
                "PYTHONUNBUFFERED": "1",
                **settings,
            }
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            cwd=cwd,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        running = cls(process)
        try:
            yield running
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            running._stdout.cancel()
            running._stderr.cancel()


def reply_to(chat_id: int) -> Any:
    def match(call: ApiCall) -> bool:
        return call.method == "sendMessage" and call.chat_id == chat_id and call.ok

    return match


def assert_greets_with_main_menu(call: ApiCall) -> None:
    assert call.visible_text is not None
    assert "Welcome to the to:DO Bot" in call.visible_text
    assert "/privacy" in call.visible_text
    buttons = call.button_texts()
    for label in ("Sessions", "to:DO items", "My items", "Settings"):
        assert any(label in b for b in buttons), buttons


async def test_run_answers_start_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path, sample_db: str
) -> None:
    async with (
        FakeTelegram() as fake,
        RunningBot.start(tmp_path, fake, DATABASE_URL=sample_db) as bot,
    ):
        update_id = fake.send_message(fake.user(42, language_code="en"), "/start")
        reply = await bot.until(fake.wait_for_call(reply_to(42), timeout=BOOT_TIMEOUT))
        assert_greets_with_main_menu(reply)

        # The command menu was registered before the bot started answering.
        assert fake.calls_of("setMyCommands")
        menu = [c["command"] for c in fake.commands_for(language_code="")]
        assert {"start", "help", "settings"} <= set(menu)

        # Ctrl+C: a clean stop, no traceback, and the handled update is confirmed, so a
        # restart does not answer /start a second time.
        await bot.until(fake.wait_until_polling(timeout=BOOT_TIMEOUT))
        assert await bot.stop(signal.SIGINT) in (0, 130)
        assert "Traceback" not in bot.output
        assert fake.confirmed_update_id >= update_id

    assert "starts polling" in bot.output  # the logs were captured ...
    secret = fake.token.split(":", 1)[1]
    assert secret not in bot.output  # ... and never show the token


async def test_run_starts_although_the_profile_calls_are_refused(
    tmp_path: Path, sample_db: str
) -> None:
    async with FakeTelegram() as fake:
        for method in ("setMyCommands", "setMyDescription", "setMyShortDescription"):
            fake.fail(method, error_code=400, description="Bad Request: nope", times=None)
        # At DEBUG the token must not show (python-telegram-bot, whose DEBUG lines quote the
        # API URL and message texts, stays at INFO: bot/logs.py).
        async with RunningBot.start(
            tmp_path, fake, DATABASE_URL=sample_db, LOG_LEVEL="DEBUG"
        ) as bot:
            fake.send_message(fake.user(42, language_code="en"), "/start")
            reply = await bot.until(fake.wait_for_call(reply_to(42), timeout=BOOT_TIMEOUT))
            assert_greets_with_main_menu(reply)
            assert fake.calls_of("setMyCommands")
            assert not any(c.ok for c in fake.calls_of("setMyCommands"))

            assert await bot.stop(signal.SIGTERM) in (0, 143)
        assert "Traceback" not in bot.output
        assert "refused (setMyCommands)" in bot.output  # the refusal is logged
        assert '"level": "DEBUG"' in bot.output  # DEBUG was on ...
        assert "Set Bot API URL" not in bot.output  # ... but not for python-telegram-bot
        assert fake.token.split(":", 1)[1] not in bot.output  # ... and no token


async def test_run_with_a_token_telegram_rejects_is_one_clear_line(tmp_path: Path) -> None:
    rejected = "123456:ThisTokenWasRevokedLongAgoByBotFather"
    async with FakeTelegram() as fake:
        async with RunningBot.start(
            tmp_path, fake, DATABASE_URL=sqlite_url(tmp_path), TELEGRAM_BOT_TOKEN=rejected
        ) as bot:
            assert await bot.exit_code() == 2
        assert fake.calls_of("getMe")  # it did ask Telegram
    assert "Traceback" not in bot.output
    lines = bot.stderr.strip().splitlines()
    assert len(lines) == 1, bot.stderr
    assert "TELEGRAM_BOT_TOKEN" in lines[0]
    assert "rejected" in lines[0]
    assert rejected.split(":", 1)[1] not in bot.output


async def test_run_with_an_unreachable_bot_api_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as closed:  # bound, not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        fake = FakeTelegram()  # not started: only its token is used
        async with RunningBot.start(
            tmp_path, fake, DATABASE_URL=sqlite_url(tmp_path), TELEGRAM_API_URL=url
        ) as bot:
            assert await bot.exit_code() != 0
    assert "Traceback" not in bot.output
    lines = bot.stderr.strip().splitlines()
    assert len(lines) == 1, bot.stderr
    assert "TELEGRAM_API_URL" in lines[0]
    assert url in lines[0]
    assert fake.token.split(":", 1)[1] not in bot.output
