"""Alembic migrations: the migrated schema is the models' schema, upgrading is idempotent,
downgrading works, and the database itself enforces the invariants the bot relies on."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from domain.residents import enter
from storage.migrate import alembic_config, current_revision, head_revision, upgrade
from storage.models import COMMENT_MAX, ActionField, Base
from storage.uow import Database


def _schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def schema_differences(database: Database) -> list[Any]:
    async with database.engine.connect() as conn:
        return await conn.run_sync(_schema_differences)


async def table_names(database: Database) -> set[str]:
    async with database.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def test_migrated_schema_matches_the_models(database: Database) -> None:
    assert await schema_differences(database) == []
    assert await current_revision(database.engine) == head_revision()


async def test_upgrading_twice_changes_nothing(database: Database) -> None:
    async with database.uow() as uow, uow.write():
        uow.session.add(ActionField(key="bleibt", title={"de": "Bleibt"}, position=0))

    await upgrade(database.engine)
    await upgrade(database.engine)

    assert await current_revision(database.engine) == head_revision()
    assert await schema_differences(database) == []
    async with database.uow() as uow:
        keys = (await uow.session.execute(select(ActionField.key))).scalars().all()
    assert keys == ["bleibt"]


async def test_downgrade_to_base_and_upgrade_again(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'fresh.sqlite3'}")
    try:
        await upgrade(database.engine)
        assert set(Base.metadata.tables) <= await table_names(database)

        async with database.engine.begin() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "base"))
        assert await table_names(database) & set(Base.metadata.tables) == set()
        assert await current_revision(database.engine) is None

        async with database.engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(alembic_config(c), "head"))
        assert await current_revision(database.engine) == head_revision()
        assert await schema_differences(database) == []
    finally:
        await database.dispose()


# --------------------------------------------------------------------------- constraints


async def execute(database: Database, sql: str, **params: Any) -> None:
    """One statement in its own transaction (PostgreSQL aborts a transaction on error)."""
    async with database.engine.begin() as conn:
        await conn.execute(text(sql), params)


@pytest.fixture
async def ids(content: Database) -> dict[str, int]:
    """A resident and an item to point rows at."""
    async with content.uow() as uow:
        resident = await enter(uow, 31337, "de", dt.date(2024, 6, 10))
        item = (await uow.session.execute(text("SELECT id FROM items WHERE key = 'TD-01'"))).one()
    return {"resident": resident.id, "item": item[0]}


INSERT_SUPPORT = (
    "INSERT INTO supports (resident_id, item_id, created_at) "
    "VALUES (:resident, :item, CURRENT_TIMESTAMP)"
)
INSERT_COMMENT = (
    "INSERT INTO comments (item_id, resident_id, text, status, created_at) "
    "VALUES (:item, :resident, :text, 'pending', CURRENT_TIMESTAMP)"
)


async def test_one_support_per_resident_and_item(content: Database, ids: dict[str, int]) -> None:
    await execute(content, INSERT_SUPPORT, **ids)
    with pytest.raises(IntegrityError):
        await execute(content, INSERT_SUPPORT, **ids)


async def test_one_resident_per_telegram_id(content: Database, ids: dict[str, int]) -> None:
    with pytest.raises(IntegrityError):
        await execute(
            content,
            "INSERT INTO residents (telegram_id, language, pseudonym, created_at) "
            "VALUES (31337, 'en', 77777, CURRENT_TIMESTAMP)",
        )


@pytest.mark.parametrize(
    ("comment", "allowed"),
    [
        ("x", True),
        ("ä" * COMMENT_MAX, True),  # characters, not bytes
        ("", False),
        ("x" * (COMMENT_MAX + 1), False),
    ],
    ids=["one", "maximum", "empty", "too-long"],
)
async def test_comment_text_length_is_checked(
    content: Database, ids: dict[str, int], comment: str, allowed: bool
) -> None:
    if allowed:
        await execute(content, INSERT_COMMENT, text=comment, **ids)
    else:
        with pytest.raises(IntegrityError):
            await execute(content, INSERT_COMMENT, text=comment, **ids)


async def test_decided_comment_needs_a_decision_time(
    content: Database, ids: dict[str, int]
) -> None:
    with pytest.raises(IntegrityError):
        await execute(
            content,
            "INSERT INTO comments (item_id, resident_id, text, status, created_at) "
            "VALUES (:item, :resident, 'ok', 'approved', CURRENT_TIMESTAMP)",
            **ids,
        )


@pytest.mark.parametrize(
    ("status", "allowed"),
    [("adopted", True), ("merged", True), ("bogus", False), ("", False)],
)
async def test_item_status_is_checked(
    content: Database, ids: dict[str, int], status: str, allowed: bool
) -> None:
    sql = "UPDATE items SET status = :status WHERE id = :item"
    if allowed:
        await execute(content, sql, status=status, item=ids["item"])
    else:
        with pytest.raises(IntegrityError):
            await execute(content, sql, status=status, item=ids["item"])


async def test_support_count_cannot_go_negative(content: Database, ids: dict[str, int]) -> None:
    with pytest.raises(IntegrityError):
        await execute(
            content, "UPDATE items SET support_count = support_count - 1 WHERE id = :item", **ids
        )
