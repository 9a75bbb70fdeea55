"""Content import: counts, idempotence, updates that keep engagement, validation errors that
name entry and field, all-or-nothing writes, YAML and JSON."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from bot.cli import sample_data_path
from domain import comments, items, sessions
from domain.content import ImportReport
from domain.importer import ImportFailed, import_content, load_file, parse_content
from domain.residents import enter
from domain.text import pick
from storage.models import (
    ActionField,
    Base,
    EventSession,
    Highlight,
    Item,
    Recording,
)
from storage.uow import Database
from tests.conftest import TZ, content_raw

TODAY = dt.date(2024, 6, 10)


async def do_import(database: Database, raw: Any, tz: ZoneInfo = TZ) -> ImportReport:
    async with database.uow() as uow:
        return await import_content(uow, raw, tz)


async def table_counts(database: Database) -> dict[str, int]:
    async with database.uow() as uow:
        return {
            table.name: (
                await uow.session.execute(select(func.count()).select_from(table))
            ).scalar_one()
            for table in Base.metadata.sorted_tables
            if table.name != "content_version"  # always one row
        }


async def item_by_key(database: Database, key: str) -> Item:
    async with database.uow() as uow:
        return (await uow.session.execute(select(Item).where(Item.key == key))).scalar_one()


def parse_errors(raw: Any) -> list[str]:
    with pytest.raises(ImportFailed) as failed:
        parse_content(raw, TZ)
    return failed.value.errors


# --------------------------------------------------------------------------- sample data


async def test_sample_data_imports_then_reimports_unchanged(database: Database) -> None:
    raw = load_file(sample_data_path())

    first = await do_import(database, raw)
    assert len(first.action_fields.created) == 7
    assert len(first.sessions.created) == 26
    assert len(first.items.created) == 78
    counts = await table_counts(database)
    assert (counts["action_fields"], counts["sessions"], counts["items"]) == (7, 26, 78)

    second = await do_import(database, raw)
    for kind, report in second.kinds():
        assert report.created == report.updated == report.kept == [], kind
    assert len(second.action_fields.unchanged) == 7
    assert len(second.sessions.unchanged) == 26
    assert len(second.items.unchanged) == 78
    assert await table_counts(database) == counts


# --------------------------------------------------------------------------- re-import


async def test_reimport_updates_title_and_keeps_engagement_and_status(content: Database) -> None:
    database = content
    async with database.uow() as uow:
        resident = await enter(uow, 4711, "de", TODAY)
        item_id = await items.item_id_for_key(uow, "TD-02")
        assert item_id is not None
        await items.set_support(uow, resident.id, item_id, True)
        await comments.start_comment(uow, resident.id, item_id, "H")
        outcome = await comments.submit_comment(uow, resident.id, "Sehr wichtig!")
        assert outcome.comment_id is not None
        await comments.decide(uow, outcome.comment_id, True, 900001, "Mod", "de")
        async with uow.write():
            await uow.session.execute(
                update(Item).where(Item.id == item_id).values(status="adopted")
            )

    raw = content_raw()
    raw["items"][1]["title"] = {"de": "Pflegeberufe sichtbar würdigen", "en": "Honour care work"}
    report = await do_import(database, raw)

    assert report.items.updated == ["TD-02"]
    assert sorted(report.items.unchanged) == ["TD-01", "TD-03", "TD-04", "TD-05"]
    item = await item_by_key(database, "TD-02")
    assert item.id == item_id
    assert item.title == {"de": "Pflegeberufe sichtbar würdigen", "en": "Honour care work"}
    assert item.status == "adopted"
    assert item.support_count == 1
    assert item.comment_count == 1
    async with database.uow() as uow:
        state = await uow.engagement.state(resident.id, item_id)
        assert state.supporting and state.following
        assert await uow.comments.count_approved(item_id) == 1
        # The new title is searchable, the old one no longer.
        found = await items.search(uow, "de", "würdigen", 0)
        assert [e.key for e in found.entries] == ["TD-02"]
        assert (await items.search(uow, "de", "Wertschätzung", 0)).total == 0


async def test_entries_missing_from_the_file_are_kept(content: Database) -> None:
    before = await table_counts(content)
    raw = content_raw()
    raw["items"] = [i for i in raw["items"] if i["key"] != "TD-05"]
    raw["sessions"] = [s for s in raw["sessions"] if s["key"] != "s03"]

    report = await do_import(content, raw)

    assert report.items.kept == ["TD-05"]
    assert report.sessions.kept == ["s03"]
    assert report.action_fields.kept == []
    assert await table_counts(content) == before
    async with content.uow() as uow:
        assert await items.item_id_for_key(uow, "TD-05") is not None
        assert await sessions.session_id_for_key(uow, "s03") is not None


# --------------------------------------------------------------------------- validation

Mutation = Callable[[dict[str, Any]], Any]


def _set(path: list[Any], value: Any) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        node: Any = raw
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value

    return mutate


def _drop(path: list[Any]) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        node: Any = raw
        for step in path[:-1]:
            node = node[step]
        del node[path[-1]]

    return mutate


INVALID: list[tuple[str, Mutation, list[str]]] = [
    (
        "bad action field key",
        _set(["items", 1, "action_field"], "pflege!"),
        ["items[1] (TD-02).action_field", "A-Z a-z 0-9"],
    ),
    (
        "missing action field",
        _drop(["items", 1, "action_field"]),
        ["items[1] (TD-02).action_field", "required"],
    ),
    ("bad key characters", _set(["items", 3, "key"], "TD_04"), ["items[3] (TD_04).key"]),
    ("umlaut in key", _set(["sessions", 0, "key"], "s-ü"), ["sessions[0] (s-ü).key"]),
    ("key longer than 32", _set(["items", 0, "key"], "K" * 33), ["items[0] (", ").key", "32"]),
    (
        "missing German text",
        _set(["items", 0, "title"], {"en": "Only English"}),
        ["items[0] (TD-01).title", "German (de)"],
    ),
    ("empty German text", _set(["action_fields", 0, "title"], " "), ["action_fields[0]"]),
    (
        "unknown field",
        _set(["items", 2, "colour"], "red"),
        ["items[2] (TD-03).colour", "unknown field"],
    ),
    (
        "unknown top-level field",
        _set(["speakers"], []),
        ["speakers", "unknown field"],
    ),
    (
        "duplicate item key",
        lambda raw: raw["items"].append(copy.deepcopy(raw["items"][0])),
        ["items[5] (TD-01).key", "duplicate", "items[0]"],
    ),
    (
        "duplicate session key",
        _set(["sessions", 2, "key"], "s01"),
        ["sessions[2] (s01).key", "duplicate", "sessions[0]"],
    ),
    (
        "duplicate item in a session",
        _set(["sessions", 0, "items"], ["TD-01", "TD-01"]),
        ["sessions[0] (s01)", "twice"],
    ),
    (
        "ends before it starts",
        _set(["sessions", 1, "ends_at"], dt.datetime(2024, 6, 11, 13, 0, tzinfo=TZ)),
        ["sessions[1] (s02).ends_at", "before starts_at"],
    ),
    (
        "highlight after the end of the first recording",
        _set(["sessions", 0, "highlights", 0, "at"], "01:30:01"),
        ["sessions[0] (s01)", "highlights[0].at", "after the end"],
    ),
    (
        "highlight at without recordings",
        _set(["sessions", 2, "highlights"], [{"text": "Ein Moment", "at": 5}]),
        ["sessions[2] (s03)", "highlights[0].at", "none"],
    ),
    (
        "ftp URL",
        _set(["sessions", 0, "recordings", 0, "url"], "ftp://example.org/video"),
        ["sessions[0] (s01).recordings[0].url", "http"],
    ),
    (
        "javascript URL",
        _set(["sessions", 1, "recordings", 0, "url"], "javascript:alert(1)"),
        ["sessions[1] (s02).recordings[0].url", "http"],
    ),
    (
        "at in words",
        _set(["sessions", 0, "highlights", 0, "at"], "twelve minutes"),
        ["sessions[0] (s01).highlights[0].at", "HH:MM:SS"],
    ),
    (
        "at with minutes over 59",
        _set(["sessions", 0, "highlights", 0, "at"], "00:75:00"),
        ["sessions[0] (s01).highlights[0].at", "HH:MM:SS"],
    ),
    (
        "negative at",
        _set(["sessions", 1, "highlights", 0, "at"], -1),
        ["sessions[1] (s02).highlights[0].at"],
    ),
    (
        "duration as 1h",
        _set(["sessions", 0, "recordings", 0, "duration"], "1h"),
        ["sessions[0] (s01).recordings[0].duration", "HH:MM:SS"],
    ),
    (
        "bool duration",
        _set(["sessions", 1, "recordings", 0, "duration"], True),
        ["sessions[1] (s02).recordings[0].duration", "HH:MM:SS"],
    ),
    (
        "starts_at not a date",
        _set(["sessions", 0, "starts_at"], "Montag früh"),
        ["sessions[0] (s01).starts_at"],
    ),
    ("not a mapping", lambda raw: ["a", "list"], ["file", "mapping"]),
]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [pytest.param(m, e, id=name) for name, m, e in INVALID],
)
def test_validation_errors_name_entry_and_field(mutate: Mutation, expected: list[str]) -> None:
    raw = content_raw()
    replaced = mutate(raw)
    errors = parse_errors(replaced if replaced is not None else raw)
    assert len(errors) == 1, errors
    for fragment in expected:
        assert fragment in errors[0], (fragment, errors)


def test_every_error_is_reported_at_once() -> None:
    raw = content_raw()
    raw["items"][0]["colour"] = "red"
    raw["sessions"][1]["recordings"][0]["url"] = "ftp://x"
    errors = parse_errors(raw)
    assert any(e.startswith("items[0] (TD-01).colour") for e in errors)
    assert any(e.startswith("sessions[1] (s02).recordings[0].url") for e in errors)


def test_at_and_duration_accept_hh_mm_ss_and_seconds() -> None:
    raw = content_raw()
    first = parse_content(raw, TZ)
    assert first.sessions[0].highlights[0].at_seconds == 750  # "00:12:30"
    assert first.sessions[0].recordings[0].duration_seconds == 5400  # "01:30:00"
    assert first.sessions[1].recordings[0].duration_seconds == 3600  # 3600

    raw["sessions"][0]["highlights"][0]["at"] = 750
    raw["sessions"][0]["recordings"][0]["duration"] = "1:30:00"
    raw["sessions"][1]["recordings"][0]["duration"] = "1:00:00"
    assert parse_content(raw, TZ) == first


# --------------------------------------------------------------------------- all or nothing


async def test_nothing_is_written_after_a_validation_error(database: Database) -> None:
    raw = content_raw()
    raw["items"][4]["description"] = {"en": "no German"}
    with pytest.raises(ImportFailed) as failed:
        await do_import(database, raw)
    assert failed.value.errors == ["items[4] (TD-05).description: a German (de) text is required"]
    assert set((await table_counts(database)).values()) == {0}


async def test_nothing_is_written_after_a_reference_error(database: Database) -> None:
    raw = content_raw()
    raw["sessions"][2]["items"] = ["TD-04", "TD-99"]
    raw["items"][3]["action_field"] = "nirgendwo"
    with pytest.raises(ImportFailed) as failed:
        await do_import(database, raw)
    assert sorted(failed.value.errors) == [
        "items[3] (TD-04).action_field: unknown action field 'nirgendwo'",
        "sessions[2] (s03).items[1]: unknown item 'TD-99'",
    ]
    assert set((await table_counts(database)).values()) == {0}


async def test_failed_reimport_leaves_existing_content_untouched(content: Database) -> None:
    before = await table_counts(content)
    raw = content_raw()
    raw["items"][0]["title"] = {"de": "Geändert", "en": "Changed"}
    raw["items"].append(
        {"key": "TD-06", "title": "Neu", "description": "Neu", "action_field": "pflege"}
    )
    raw["sessions"][0]["items"] = ["TD-01", "TD-77"]  # only found at the reference check

    with pytest.raises(ImportFailed) as failed:
        await do_import(content, raw)

    assert failed.value.errors == ["sessions[0] (s01).items[1]: unknown item 'TD-77'"]
    assert await table_counts(content) == before
    item = await item_by_key(content, "TD-01")
    assert item.title["de"] == "Qualifizierungszentrum für Green-Tech-Berufe"


# --------------------------------------------------------------------------- formats


async def test_json_file_imports_like_the_yaml_file(database: Database, tmp_path: Path) -> None:
    yaml_path = tmp_path / "content.yaml"
    yaml_path.write_text(
        (Path(__file__).parent / "data" / "content.yaml").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    json_path = tmp_path / "content.json"
    json_path.write_text(
        json.dumps(content_raw(), default=lambda v: v.isoformat(), ensure_ascii=False),
        encoding="utf-8",
    )

    from_yaml, from_json = load_file(yaml_path), load_file(json_path)
    assert parse_content(from_json, TZ) == parse_content(from_yaml, TZ)

    first = await do_import(database, from_json)
    assert len(first.items.created) == 5
    again = await do_import(database, from_yaml)
    for _kind, report in again.kinds():
        assert report.created == report.updated == []


async def test_plain_string_is_german_and_english_falls_back(content: Database) -> None:
    async with content.uow() as uow:
        highlight = (
            await uow.session.execute(
                select(Highlight)
                .join(EventSession, Highlight.session_id == EventSession.id)
                .where(EventSession.key == "s02")
            )
        ).scalar_one()
        recording = (
            await uow.session.execute(
                select(Recording)
                .join(EventSession, Recording.session_id == EventSession.id)
                .where(EventSession.key == "s02")
            )
        ).scalar_one()
        assert highlight.text == {"de": "Ohne Pflege keine Zukunft."}
        assert recording.title == {"de": "Aufzeichnung"}
        assert pick(highlight.text, "en") == "Ohne Pflege keine Zukunft."

        session_id = await sessions.session_id_for_key(uow, "s01")
        assert session_id is not None
        card = await sessions.session_card(uow, session_id, "en", TZ)
        assert card is not None
        # "role: Handwerkskammer" is German only; the English card shows it anyway.
        assert [s.role for s in card.speakers] == ["Labour market researcher", "Handwerkskammer"]


async def test_naive_datetimes_are_in_the_given_time_zone(database: Database) -> None:
    raw = content_raw()
    raw["sessions"][0]["starts_at"] = "2024-06-10T10:00:00"
    raw["sessions"][0]["ends_at"] = "2024-06-10T11:30:00"
    raw["sessions"][1]["starts_at"] = dt.datetime(2024, 12, 11, 14, 0)  # winter time
    raw["sessions"][1]["ends_at"] = dt.datetime(2024, 12, 11, 15, 0)

    bundle = parse_content(raw, TZ)
    assert bundle.sessions[0].starts_at == dt.datetime(2024, 6, 10, 8, 0, tzinfo=dt.UTC)
    assert bundle.sessions[1].starts_at == dt.datetime(2024, 12, 11, 13, 0, tzinfo=dt.UTC)
    new_york = parse_content(raw, ZoneInfo("America/New_York"))
    assert new_york.sessions[0].starts_at == dt.datetime(2024, 6, 10, 14, 0, tzinfo=dt.UTC)
    # An explicit offset wins over the time zone.
    assert new_york.sessions[2].starts_at == dt.datetime(2024, 6, 12, 16, 0, tzinfo=dt.UTC)

    await do_import(database, raw)
    async with database.uow() as uow:
        stored = (
            await uow.session.execute(select(EventSession).where(EventSession.key == "s01"))
        ).scalar_one()
        assert stored.starts_at == dt.datetime(2024, 6, 10, 8, 0, tzinfo=dt.UTC)
        assert stored.ends_at == dt.datetime(2024, 6, 10, 9, 30, tzinfo=dt.UTC)
        page = await sessions.list_sessions(uow, "de", 0, TZ)
        assert page.entries[0].starts_at.hour == 10


async def test_references_to_database_content_are_accepted(content: Database) -> None:
    addition = {
        "items": [
            {
                "key": "TD-06",
                "title": {"de": "Pflegeschule", "en": "Care school"},
                "description": "Eine neue Schule.",
                "action_field": "pflege",  # only in the database
            }
        ],
        "sessions": [
            {
                "key": "s04",
                "title": "Nachlese",
                "starts_at": "2024-06-14T10:00:00+02:00",
                "ends_at": "2024-06-14T11:00:00+02:00",
                "items": ["TD-01", "TD-06"],  # TD-01 only in the database
            }
        ],
    }
    report = await do_import(content, addition)
    assert report.items.created == ["TD-06"]
    assert report.sessions.created == ["s04"]
    assert report.items.kept == ["TD-01", "TD-02", "TD-03", "TD-04", "TD-05"]

    async with content.uow() as uow:
        session_id = await sessions.session_id_for_key(uow, "s04")
        assert session_id is not None
        card = await sessions.session_card(uow, session_id, "de", TZ)
        assert card is not None
        assert [i.key for i in card.items] == ["TD-01", "TD-06"]
        field = (
            await uow.session.execute(select(ActionField).where(ActionField.key == "pflege"))
        ).scalar_one()
        assert (await item_by_key(content, "TD-06")).action_field_id == field.id


def test_invalid_yaml_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(
        "items:\n  - key: TD-01\n    title: Eins\n   description: schief eingerückt\n",
        encoding="utf-8",
    )
    with pytest.raises(ImportFailed) as failed:
        load_file(path)
    [error] = failed.value.errors
    assert error.startswith(f"{path}: line 4: invalid YAML: ")


def test_invalid_json_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "items": [\n    {"key": "TD-01",}\n  ]\n}\n', encoding="utf-8")
    with pytest.raises(ImportFailed) as failed:
        load_file(path)
    assert failed.value.errors == [
        f"{path}: line 3: invalid JSON: Expecting property name enclosed in double quotes"
    ]


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ImportFailed) as failed:
        load_file(tmp_path / "nope.yaml")
    assert failed.value.errors == [f"{tmp_path / 'nope.yaml'}: no such file"]
