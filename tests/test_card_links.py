"""The item card's links (sessions, history, goals) are cached per process while the
content version stays the same (storage/cards.py); database triggers count it up in every
transaction that changes what the card links to, whichever process makes the change."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete, select, text, update

from domain import items as item_service
from domain import pipeline
from domain.staff import Actor
from storage.models import ContentVersion, Goal, GoalItem, Item, SessionItem
from storage.uow import Database
from tests.harness import statements

ADMIN = Actor(900001, "@mod")
RESIDENT = 4242


@pytest.fixture
async def other(content: Database, db_url: str) -> AsyncIterator[Database]:
    """The same database as another process sees it (a cache of its own)."""
    database = Database(db_url)
    yield database
    await database.dispose()


async def card(database: Database, key: str = "TD-01") -> item_service.ItemCard:
    async with database.uow() as uow:
        item_id = await item_service.item_id_for_key(uow, key)
        assert item_id is not None
        found = await item_service.item_card(uow, RESIDENT, item_id, "de")
    assert found is not None
    return found


async def add_goal(database: Database, key: str, title: str, item_key: str) -> int:
    """A goal linked to the item (as the goal writer would store it); the item's id."""
    async with database.uow() as uow, uow.write():
        item = (await uow.session.execute(select(Item).where(Item.key == item_key))).scalar_one()
        goal = Goal(
            key=key,
            title={"de": title},
            description={"de": "…"},
            action_field_id=item.action_field_id,
        )
        uow.session.add(goal)
        await uow.session.flush()
        uow.session.add(GoalItem(goal_id=goal.id, item_id=item.id))
        return item.id


async def version(database: Database) -> int:
    async with database.uow() as uow:
        return int((await uow.session.execute(select(ContentVersion.n))).scalar_one())


async def test_a_second_card_reads_no_links_while_nothing_changed(content: Database) -> None:
    first = await card(content)
    with statements(content) as seen:
        again = await card(content)
    assert again == first
    linked = [
        s for s in seen if any(t in s for t in ("session_items", "goal_items", "FROM item_updates"))
    ]
    assert linked == []
    assert len(seen) == 2  # the item id by key, and the item with the resident and version


async def test_changes_by_another_process_show_on_the_next_card(
    content: Database, other: Database
) -> None:
    before = await card(content)
    assert before.goals == [] and before.history == []
    sessions = before.sessions

    async with other.uow() as uow:
        change = await pipeline.change_status(uow, ADMIN, "TD-01", "in_review", "wird geprüft")
    assert change.problem is None
    history = (await card(content)).history
    assert [(h.status, h.note) for h in history] == [("in_review", "wird geprüft")]

    item_id = await add_goal(other, "Z-9", "Ziel neun", "TD-01")
    assert [(g.key, g.title) for g in (await card(content)).goals] == [("Z-9", "Ziel neun")]

    async with other.uow() as uow, uow.write():
        await uow.session.execute(update(Goal).values(title={"de": "Ziel Nummer neun"}))
    assert [g.title for g in (await card(content)).goals] == ["Ziel Nummer neun"]

    async with other.uow() as uow, uow.write():
        await uow.session.execute(delete(SessionItem).where(SessionItem.item_id == item_id))
    assert sessions and (await card(content)).sessions == []


@pytest.mark.parametrize(
    "table", ["sessions", "session_items", "goals", "goal_items", "item_updates"]
)
async def test_every_change_to_a_linked_table_counts_the_version_up(
    content: Database, table: str
) -> None:
    """Any write to the table (here an UPDATE that leaves every value as it was)."""
    await add_goal(content, "Z-8", "Z", "TD-01")
    async with content.uow() as uow:
        await pipeline.change_status(uow, ADMIN, "TD-01", "in_review")
    start = await version(content)
    columns = {
        "sessions": "key",
        "session_items": "item_id",
        "goals": "key",
        "goal_items": "item_id",
        "item_updates": "status",
    }
    column = columns[table]
    async with content.uow() as uow, uow.write():
        await uow.session.execute(text(f"UPDATE {table} SET {column} = {column}"))
    assert await version(content) > start
