"""Fast reads (storage/fastreads.py): the reads every update makes go to the driver
without the session, and give exactly what the session gives."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from domain import items as item_service
from storage.database import is_disconnect
from storage.models import utcnow
from storage.uow import Database, UnitOfWork
from tests.conftest import _truncate
from tests.harness import statements

RESIDENT = 4242
MODERATOR = 777


async def engaged(content: Database) -> tuple[int, dict[str, int]]:
    """A resident who supports and follows items and commented once, and a moderator:
    the resident's id and the items by key."""
    async with content.uow() as uow:
        items = {
            row.item.key: row.item.id for row in await uow.content.list_items(None, "new", 0, 100)
        }
        async with uow.write():
            resident, _ = await uow.residents.ensure(RESIDENT, "en")
            await uow.conversations.set_awaiting(resident.id, "search", {})
            await uow.roles.set(MODERATOR, "moderator", 1)
        for key in ("TD-01", "TD-03"):
            await item_service.set_support(uow, resident.id, items[key], True)
        await item_service.set_follow(uow, resident.id, items["TD-02"], True)
        async with uow.write():
            await uow.comments.add(resident.id, items["TD-01"], "Gute Idee")
    return resident.id, items


async def every_fast_read(uow: UnitOfWork, resident_id: int, items: dict[str, int]) -> Any:
    content = uow.content
    field = await content.item(items["TD-01"])
    assert field is not None
    hour_ago = utcnow() - dt.timedelta(hours=1)
    return {
        "with_state": await uow.residents.with_state(RESIDENT),
        "unknown resident": await uow.residents.with_state(1),
        "count": await content.count_items(None),
        "count in field": await content.count_items(field.field.id),
        "lists": [
            await content.list_items(field_id, sort, offset, 3)
            for field_id in (None, field.field.id)
            for sort in ("support", "new", "discussed")
            for offset in (0, 3)
        ],
        "item": await content.item(items["TD-02"]),
        "no item": await content.item(10**6),
        "card": [await content.item_as_seen_by(i, resident_id) for i in sorted(items.values())],
        "has": [await content.has_item(items["TD-03"]), await content.has_item(10**6)],
        "by key": await content.item_by_key("TD-03"),
        "searches": [
            (await content.count_search(words, langs), await content.search(words, langs, 0, 8))
            for words in (["pflege"], ["mehr", "pflege"], ["zzz"])
            for langs in (["de"], ["de", "en"])
        ],
        "role": await uow.roles.role(MODERATOR),
        "no role": await uow.roles.role(RESIDENT),
        "roles": await uow.roles.all(),
        "comments": await uow.privacy.comments_since(resident_id, hour_ago),
    }


async def test_fast_reads_give_what_the_session_gives(content: Database) -> None:
    resident_id, items = await engaged(content)
    async with content.uow() as uow:
        with statements(content, fast_reads=False) as seen:
            fast = await every_fast_read(uow, resident_id, items)
    assert seen == []  # none of them went through the session
    async with content.uow() as uow, uow.write():  # inside a write: the session's way
        with statements(content, fast_reads=False) as seen:
            by_session = await every_fast_read(uow, resident_id, items)
    assert len(seen) > 20
    assert fast == by_session
    # And they read what was written: not empty, the engagement shows.
    state = fast["with_state"]
    assert state[0].language == "en" and state[1] == "search" and state[2] is None
    cards = {row.item.key: engagement for row, engagement, _ in fast["card"]}
    assert (cards["TD-01"].supporting, cards["TD-01"].following) == (True, True)
    assert (cards["TD-02"].supporting, cards["TD-02"].following) == (False, True)
    assert fast["item"].item.key == "TD-02" and fast["no item"] is None
    assert fast["has"] == [True, False]
    assert fast["role"] == "moderator" and fast["no role"] is None
    assert fast["roles"] == {MODERATOR: "moderator"}
    assert fast["comments"] == 1
    assert [count for count, _ in fast["searches"]][-2:] == [0, 0]
    assert fast["searches"][0][0] >= 1
    assert fast["by key"].item.support_count == 1


async def test_reads_inside_a_write_see_its_own_changes(content: Database) -> None:
    resident_id, items = await engaged(content)
    item_id = items["TD-04"]
    async with content.uow() as uow:
        before = await uow.content.item(item_id)
        assert before is not None
        try:
            async with uow.write():
                assert await uow.engagement.add_support(resident_id, item_id)
                during = await uow.content.item(item_id)
                assert during is not None
                assert during.item.support_count == before.item.support_count + 1
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        after = await uow.content.item(item_id)
    assert after == before


async def test_a_read_on_a_connection_the_server_ended_is_a_disconnect(
    postgres_url: str,
) -> None:
    """PostgreSQL: fast reads run on the unit of work's own connection."""
    await _truncate(postgres_url)
    database = Database(postgres_url)
    try:
        with pytest.raises(DBAPIError) as raised:
            async with database.uow() as uow:
                pid = (await uow.session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                other = Database(postgres_url)
                try:
                    async with other.engine.connect() as connection:
                        await connection.execute(text(f"SELECT pg_terminate_backend({int(pid)})"))
                        await connection.commit()
                finally:
                    await other.dispose()
                await uow.residents.with_state(RESIDENT)
        # What the update's error handler sees: the database went away (so "try again").
        assert is_disconnect(raised.value)
        # The pool does not hand out the ended connection again.
        async with database.uow() as uow:
            assert await uow.residents.with_state(RESIDENT) is None
    finally:
        await database.dispose()
