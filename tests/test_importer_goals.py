"""Goals in `todo-bot import`: partners and milestones with them, items linked (and adopted,
their followers told once each), stable keys (re-import updates in place and never touches
follows, help offers or progress updates), errors named by entry and field, all or nothing."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from domain import items as item_service
from domain.content import ImportReport
from domain.importer import ImportFailed, import_content, parse_content
from domain.residents import enter
from storage.models import (
    Base,
    Goal,
    GoalItem,
    GoalUpdate,
    HelpOffer,
    Item,
    ItemUpdate,
    Milestone,
    NotificationEvent,
    Partner,
)
from storage.uow import Database
from tests.conftest import TZ, content_raw

TODAY = dt.date(2026, 3, 1)


def goal_entries() -> list[dict[str, Any]]:
    return [
        {
            "key": "Z-1",
            "title": {"de": "Pflege im Quartier", "en": "Care in the neighbourhood"},
            "description": {"de": "Pflege nah am Wohnort.", "en": "Care close to home."},
            "action_field": "pflege",
            "items": ["TD-02", "TD-03"],
            "status": "active",
            "progress": 40,
            "partners": [
                {
                    "name": "Pflegenetz Nord",
                    "description": {"de": "Verbund der Pflegedienste", "en": "Care network"},
                    "url": "https://example.org/pflegenetz",
                },
                {"name": "Quartiersbüro"},
            ],
            "milestones": [
                {"title": {"de": "Lots*innen gefunden", "en": "Guides found"}, "due": "2026-04-30"},
                {"title": "Erste Sprechstunde", "due": dt.date(2026, 9, 1), "done": True},
                {"title": "Bericht"},
            ],
        },
        {
            "key": "Z-2",
            "title": "Ausbildung sichtbar machen",
            "description": "Betriebe zeigen sich auf der Straße.",
            "action_field": "fachkraefte",
            "items": ["TD-04"],
        },
    ]


def with_goals(goals: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    raw = content_raw()
    raw["goals"] = goal_entries() if goals is None else goals
    return raw


async def do_import(database: Database, raw: Any) -> ImportReport:
    async with database.uow() as uow:
        return await import_content(uow, raw, TZ)


async def table_counts(database: Database) -> dict[str, int]:
    async with database.uow() as uow:
        return {
            table.name: (
                await uow.session.execute(select(func.count()).select_from(table))
            ).scalar_one()
            for table in Base.metadata.sorted_tables
            if table.name != "content_version"  # always one row
        }


async def all_rows(database: Database, model: Any, *order: Any) -> list[Any]:
    async with database.uow() as uow:
        return list((await uow.session.execute(select(model).order_by(*order))).scalars())


async def goal(database: Database, key: str) -> Goal:
    async with database.uow() as uow:
        return (await uow.session.execute(select(Goal).where(Goal.key == key))).scalar_one()


async def goal_items(database: Database, key: str) -> list[str]:
    async with database.uow() as uow:
        result = await uow.session.execute(
            select(Item.key)
            .join(GoalItem, GoalItem.item_id == Item.id)
            .join(Goal, Goal.id == GoalItem.goal_id)
            .where(Goal.key == key)
            .order_by(Item.key)
        )
        return list(result.scalars())


async def statuses(database: Database) -> dict[str, str]:
    async with database.uow() as uow:
        return {k: s for k, s in await uow.session.execute(select(Item.key, Item.status))}


async def follower(database: Database, telegram_id: int, *keys: str) -> int:
    async with database.uow() as uow:
        resident = await enter(uow, telegram_id, "de", TODAY)
        for key in keys:
            item_id = await item_service.item_id_for_key(uow, key)
            assert item_id is not None
            await item_service.set_follow(uow, resident.id, item_id, True)
        return resident.id


async def events(database: Database) -> list[tuple[int, str, str]]:
    """(resident id, goal key, kind) of every notification event about a goal."""
    async with database.uow() as uow:
        result = await uow.session.execute(
            select(NotificationEvent.resident_id, Goal.key, NotificationEvent.kind)
            .join(Goal, Goal.id == NotificationEvent.goal_id)
            .order_by(NotificationEvent.resident_id, Goal.key)
        )
        return [tuple(r) for r in result]  # type: ignore[misc]


def parse_errors(raw: Any) -> list[str]:
    with pytest.raises(ImportFailed) as failed:
        parse_content(raw, TZ)
    return failed.value.errors


# --------------------------------------------------------------------------- importing


async def test_goals_import_with_partners_milestones_and_adopted_items(
    database: Database,
) -> None:
    await do_import(database, content_raw())
    both = await follower(database, 7001, "TD-02", "TD-03")
    one = await follower(database, 7002, "TD-04")
    await follower(database, 7003, "TD-01")

    report = await do_import(database, with_goals())

    assert report.goals.created == ["Z-1", "Z-2"]
    assert report.items.unchanged == ["TD-01", "TD-02", "TD-03", "TD-04", "TD-05"]
    assert report.notified == 2 and report.adopted == ["TD-02", "TD-03", "TD-04"]
    assert ("goals", report.goals) in report.kinds()
    z1, z2 = await goal(database, "Z-1"), await goal(database, "Z-2")
    assert (z1.title, z1.status, z1.progress) == (
        {"de": "Pflege im Quartier", "en": "Care in the neighbourhood"},
        "active",
        40,
    )
    assert (z2.title, z2.status, z2.progress) == (
        {"de": "Ausbildung sichtbar machen"},
        "planned",
        0,
    )
    assert await goal_items(database, "Z-1") == ["TD-02", "TD-03"]
    partners = await all_rows(database, Partner, Partner.goal_id, Partner.position)
    assert [(p.goal_id, p.name, p.description, p.url) for p in partners] == [
        (
            z1.id,
            "Pflegenetz Nord",
            {"de": "Verbund der Pflegedienste", "en": "Care network"},
            "https://example.org/pflegenetz",
        ),
        (z1.id, "Quartiersbüro", None, None),
    ]
    milestones = await all_rows(database, Milestone, Milestone.position)
    assert [(m.title, m.due_on, m.done) for m in milestones] == [
        ({"de": "Lots*innen gefunden", "en": "Guides found"}, dt.date(2026, 4, 30), False),
        ({"de": "Erste Sprechstunde"}, dt.date(2026, 9, 1), True),
        ({"de": "Bericht"}, None, False),
    ]
    status = await statuses(database)
    assert [status[k] for k in ("TD-01", "TD-02", "TD-03", "TD-04")] == [
        "open",
        "adopted",
        "adopted",
        "adopted",
    ]
    history = await all_rows(database, ItemUpdate, ItemUpdate.id)
    assert sorted((u.previous_status, u.status, u.note, u.actor_telegram_id) for u in history) == [
        ("open", "adopted", "Z-1", None),
        ("open", "adopted", "Z-1", None),
        ("open", "adopted", "Z-2", None),
    ]
    assert await events(database) == [(both, "Z-1", "goal"), (one, "Z-2", "goal")]


async def test_reimport_is_idempotent_and_keeps_follows_offers_and_updates(
    database: Database,
) -> None:
    await do_import(database, content_raw())
    await follower(database, 7001, "TD-02")
    await do_import(database, with_goals())
    z1 = await goal(database, "Z-1")
    resident = await follower(database, 7002)
    async with database.uow() as uow, uow.write():
        await uow.goals.follow(resident, z1.id)
        await uow.goals.offer_help(resident, z1.id, "Ich kenne die Dienste")
        uow.session.add(GoalUpdate(goal_id=z1.id, progress=55, status=None, note="Halbzeit"))
        await uow.session.flush()
    before = await table_counts(database)

    again = await do_import(database, with_goals())
    assert again.goals.unchanged == ["Z-1", "Z-2"]
    for kind, report in again.kinds():
        assert report.created == report.updated == report.kept == [], kind
    assert (again.notified, again.adopted, again.goal_links) == (0, [], [])
    assert await table_counts(database) == before, "no second notification, no new history"
    assert (await goal(database, "Z-1")).id == z1.id

    # Changed partners and milestones are replaced; follows, offers and updates stay.
    raw = with_goals()
    raw["goals"][0]["partners"] = [{"name": "Neuer Partner", "url": "http://example.org"}]
    raw["goals"][0]["milestones"] = []
    raw["goals"][0]["title"] = {"de": "Pflege im Viertel"}
    changed = await do_import(database, raw)
    assert changed.goals.updated == ["Z-1"] and changed.goals.unchanged == ["Z-2"]
    assert [p.name for p in await all_rows(database, Partner)] == ["Neuer Partner"]
    assert await all_rows(database, Milestone) == []
    assert (await goal(database, "Z-1")).title == {"de": "Pflege im Viertel"}
    counts = await table_counts(database)
    for table in ("goal_follows", "help_offers", "goal_updates", "notification_events"):
        assert counts[table] == before[table], table
    async with database.uow() as uow:
        assert await uow.goals.is_following(resident, z1.id)
        offer = await uow.session.get(HelpOffer, (resident, z1.id))
        assert offer is not None and offer.note == "Ich kenne die Dienste"


async def test_status_and_progress_set_in_the_bot_stay_when_the_file_omits_them(
    database: Database,
) -> None:
    await do_import(database, with_goals())
    async with database.uow() as uow, uow.write():
        await uow.session.execute(
            Goal.__table__.update().where(Goal.key == "Z-2").values(status="paused", progress=30)
        )
    report = await do_import(database, with_goals())
    assert "Z-2" in report.goals.unchanged
    z2 = await goal(database, "Z-2")
    assert (z2.status, z2.progress) == ("paused", 30)

    raw = with_goals()
    raw["goals"][1].update(status="done", progress=100)
    assert (await do_import(database, raw)).goals.updated == ["Z-2"]
    z2 = await goal(database, "Z-2")
    assert (z2.status, z2.progress) == ("done", 100)


async def test_items_added_on_reimport_tell_only_their_new_followers(database: Database) -> None:
    await do_import(database, with_goals())
    knew = await follower(database, 7001, "TD-02", "TD-05")
    new = await follower(database, 7002, "TD-05")
    goal_follower = await follower(database, 7003, "TD-05")
    async with database.uow() as uow, uow.write():
        await uow.goals.follow(goal_follower, (await goal(database, "Z-1")).id)
    raw = with_goals()
    raw["goals"][0]["items"] = ["TD-03", "TD-05"]  # TD-02 leaves, TD-05 comes in

    report = await do_import(database, raw)

    assert report.goals.updated == ["Z-1"]
    assert report.adopted == ["TD-05"] and report.notified == 1
    assert await goal_items(database, "Z-1") == ["TD-03", "TD-05"]
    assert knew != new
    assert await events(database) == [(new, "Z-1", "goal")]
    status = await statuses(database)
    assert (status["TD-02"], status["TD-05"]) == ("adopted", "adopted")


async def test_goals_missing_from_the_file_are_kept_and_listed(database: Database) -> None:
    await do_import(database, with_goals())
    report = await do_import(database, with_goals(goal_entries()[1:]))
    assert report.goals.kept == ["Z-1"]
    assert report.goals.unchanged == ["Z-2"]
    assert await goal_items(database, "Z-1") == ["TD-02", "TD-03"]
    assert len(await all_rows(database, Partner)) == 2


async def test_adopted_only_from_open_or_in_review(database: Database) -> None:
    await do_import(database, content_raw())
    async with database.uow() as uow, uow.write():
        for key, status in (("TD-02", "in_review"), ("TD-03", "in_progress")):
            await uow.session.execute(
                Item.__table__.update().where(Item.key == key).values(status=status)
            )
    report = await do_import(database, with_goals())
    assert report.adopted == ["TD-02", "TD-04"]
    status = await statuses(database)
    assert (status["TD-02"], status["TD-03"]) == ("adopted", "in_progress")


# --------------------------------------------------------------------------- validation

Mutation = Callable[[list[dict[str, Any]]], None]


def _set(index: int, field: str, value: Any) -> Mutation:
    def mutate(goals: list[dict[str, Any]]) -> None:
        goals[index][field] = value

    return mutate


def _partner(index: int, field: str, value: Any) -> Mutation:
    def mutate(goals: list[dict[str, Any]]) -> None:
        goals[0]["partners"][index][field] = value

    return mutate


def _milestone(index: int, field: str, value: Any) -> Mutation:
    def mutate(goals: list[dict[str, Any]]) -> None:
        goals[0]["milestones"][index][field] = value

    return mutate


INVALID: list[tuple[str, Mutation, list[str]]] = [
    ("progress 120", _set(0, "progress", 120), ["goals[0] (Z-1).progress", "0 to 100"]),
    ("progress negative", _set(1, "progress", -1), ["goals[1] (Z-2).progress", "0 to 100"]),
    ("progress as text", _set(0, "progress", "40 %"), ["goals[0] (Z-1).progress"]),
    ("unknown status", _set(0, "status", "finished"), ["goals[0] (Z-1).status", "planned"]),
    ("bad goal key", _set(1, "key", "G-2"), ["goals[1] (G-2).key", "Z-"]),
    ("no items", _set(1, "items", []), ["goals[1] (Z-2).items", "at least 1"]),
    ("items missing", lambda g: g[1].pop("items"), ["goals[1] (Z-2).items", "required"]),
    (
        "item listed twice",
        _set(0, "items", ["TD-02", "TD-03", "TD-02"]),
        ["goals[0] (Z-1).items[2]", "TD-02", "twice"],
    ),
    (
        "duplicate goal key",
        lambda g: g.append(copy.deepcopy(g[0])),
        ["goals[2] (Z-1).key", "duplicate", "goals[0]"],
    ),
    ("no German title", _set(1, "title", {"en": "Only English"}), ["goals[1] (Z-2).title", "(de)"]),
    ("unknown field", _set(0, "owner", "x"), ["goals[0] (Z-1).owner", "unknown field"]),
    (
        "ftp url",
        _partner(0, "url", "ftp://example.org"),
        ["goals[0] (Z-1).partners[0].url", "http"],
    ),
    (
        "javascript url",
        _partner(1, "url", "javascript:alert(1)"),
        ["goals[0] (Z-1).partners[1].url", "http"],
    ),
    ("partner without name", _partner(1, "name", " "), ["goals[0] (Z-1).partners[1].name"]),
    (
        "impossible date",
        _milestone(0, "due", "2026-02-30"),
        ["goals[0] (Z-1).milestones[0].due", "YYYY-MM-DD"],
    ),
    (
        "German date",
        _milestone(1, "due", "01.09.2026"),
        ["goals[0] (Z-1).milestones[1].due", "YYYY-MM-DD"],
    ),
    ("date as number", _milestone(2, "due", 20260901), ["goals[0] (Z-1).milestones[2].due"]),
    ("done as text", _milestone(0, "done", "yes"), ["goals[0] (Z-1).milestones[0].done"]),
]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [pytest.param(m, e, id=name) for name, m, e in INVALID],
)
def test_goal_errors_name_entry_and_field(mutate: Mutation, expected: list[str]) -> None:
    goals = goal_entries()
    mutate(goals)
    errors = parse_errors(with_goals(goals))
    assert len(errors) == 1, errors
    for fragment in expected:
        assert fragment in errors[0], (fragment, errors)


async def test_unknown_item_and_action_field_are_named_and_nothing_is_written(
    database: Database,
) -> None:
    goals = goal_entries()
    goals[0]["items"] = ["TD-02", "TD-99"]
    goals[1]["action_field"] = "nirgendwo"
    with pytest.raises(ImportFailed) as failed:
        await do_import(database, with_goals(goals))
    assert sorted(failed.value.errors) == [
        "goals[0] (Z-1).items[1]: unknown item 'TD-99'",
        "goals[1] (Z-2).action_field: unknown action field 'nirgendwo'",
    ]
    assert set((await table_counts(database)).values()) == {0}


async def test_one_bad_goal_writes_nothing_at_all(database: Database) -> None:
    await do_import(database, content_raw())
    await follower(database, 7001, "TD-02")
    before = await table_counts(database)
    goals = goal_entries()
    goals.append(
        {
            "key": "Z-3",
            "title": "Kaputt",
            "description": "Verweist ins Leere",
            "action_field": "pflege",
            "items": ["TD-77"],  # only found at the reference check, after parsing
        }
    )
    raw = with_goals(goals)
    raw["items"][0]["title"] = {"de": "Geändert"}

    with pytest.raises(ImportFailed) as failed:
        await do_import(database, raw)

    assert failed.value.errors == ["goals[2] (Z-3).items[0]: unknown item 'TD-77'"]
    assert await table_counts(database) == before
    assert await statuses(database) == dict.fromkeys(
        ("TD-01", "TD-02", "TD-03", "TD-04", "TD-05"), "open"
    )


async def test_goals_may_use_items_and_fields_already_in_the_database(database: Database) -> None:
    await do_import(database, content_raw())
    report = await do_import(database, {"goals": goal_entries()})
    assert report.goals.created == ["Z-1", "Z-2"]
    assert report.items.kept == ["TD-01", "TD-02", "TD-03", "TD-04", "TD-05"]
