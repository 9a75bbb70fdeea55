"""Shared fixtures: databases (SQLite always, PostgreSQL when TEST_DATABASE_URL is set) and
the bot running against the fake Bot API server."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.settings import Settings, normalise_database_url
from domain.importer import import_content
from storage.migrate import upgrade
from storage.models import Base
from storage.uow import Database
from tests.fake_telegram import FakeTelegram

TEST_DATA = Path(__file__).parent / "data"
TZ = ZoneInfo("Europe/Berlin")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def content_raw() -> Any:
    return yaml.safe_load((TEST_DATA / "content.yaml").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for every test (migrating each time is slow)."""
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"

    async def build() -> None:
        database = Database(f"sqlite+aiosqlite:///{path}")
        await upgrade(database.engine)
        await database.dispose()

    asyncio.run(build())
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped at the end."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        if IN_CI:
            pytest.fail("TEST_DATABASE_URL is not set in CI: the PostgreSQL half must run")
        pytest.skip(
            "PostgreSQL tests skipped: set TEST_DATABASE_URL (e.g. "
            "postgresql://postgres@127.0.0.1:5432/test) to run them"
        )
    admin_url = normalise_database_url(base)
    name = f"todo_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    async def create() -> None:
        admin = Database(admin_url)
        try:
            async with admin.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            await admin.dispose()
        database = Database(url)
        await upgrade(database.engine)
        await database.dispose()

    async def drop() -> None:
        admin = Database(admin_url)
        try:
            async with admin.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            await admin.dispose()

    try:
        asyncio.run(create())
    except OSError as exc:
        message = f"PostgreSQL at TEST_DATABASE_URL is not reachable: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    yield url
    asyncio.run(drop())


async def _truncate(url: str) -> None:
    database = Database(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with database.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        # As the migration leaves it (storage.models.ContentVersion).
        await conn.execute(text("INSERT INTO content_version (id, n) VALUES (1, 0)"))
    await database.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    return _db_url(request, request.param, tmp_path)


@pytest.fixture
def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _db_url(request, "sqlite", tmp_path)


def _db_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        path = tmp_path / "bot.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    asyncio.run(_truncate(url))
    return url


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    db = Database(db_url)
    yield db
    await db.dispose()


@pytest.fixture
async def content(database: Database) -> Database:
    """The database with the test content imported."""
    async with database.uow() as uow:
        await import_content(uow, content_raw(), TZ)
    return database


# --------------------------------------------------------------------------- the bot


def make_settings(fake: FakeTelegram, db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "telegram_bot_token": fake.token,
        "telegram_api_url": fake.url,
        "database_url": db_url,
        "admin_ids": "900001,900002",
        "timezone": "Europe/Berlin",
        "update_concurrency": 8,
        # No digest unless a test asks for one (the catch-up job would send this week's).
        "digest_grace_hours": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
def well_behaved(fake: FakeTelegram) -> Iterator[None]:
    """After the test: Telegram refused nothing as malformed and every press was answered.
    Use with `pytestmark = pytest.mark.usefixtures("well_behaved")`."""
    yield
    refused = [
        c.summary()
        for c in fake.calls
        if c.method in ("sendMessage", "editMessageText", "answerCallbackQuery")
        and c.error_code == 400
        and "not modified" not in str((c.error or {}).get("description"))
    ]
    assert refused == []
    assert fake.unanswered_callbacks() == []


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built once per run (tests/test_packaging.py, tests/test_image.py)."""
    from tests.test_packaging import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def bot_settings() -> dict[str, Any]:
    """Override in a test module (or parametrize) to change the bot's settings."""
    return {}


@pytest.fixture
async def bot(
    fake: FakeTelegram, sqlite_url: str, bot_settings: dict[str, Any]
) -> AsyncIterator[Any]:
    from tests.harness import BotHarness

    async with BotHarness.running(fake, make_settings(fake, sqlite_url, **bot_settings)) as h:
        yield h


# --------------------------------------------------------------------------- drill reports


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print what the fault drills tried and what survived (tests/drills.py)."""
    from tests.drills import REPORTS

    if not REPORTS:
        return
    terminalreporter.section("fault drills: what was tried, what survived")
    for drill, lines in REPORTS:
        terminalreporter.write_line(f"{drill}:")
        for line in lines:
            terminalreporter.write_line(f"    {line}")
