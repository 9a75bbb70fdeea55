"""The moderators' reporting and role tools: /mod (roles, with command menus and a message to
the person), /audit, /stats with a chart, and the open-data export (/export and
`todo-bot export`) without any personal data."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bot import callbacks as cb
from bot.settings import normalise_database_url
from domain import comments as comment_service
from domain import export as export_service
from domain import items as item_service
from domain import residents as resident_service
from domain import stats as stats_service
from domain.staff import Actor, record
from storage.models import (
    AuditEntry,
    Goal,
    GoalFollow,
    GoalItem,
    Partner,
    Resident,
    Role,
    Support,
    utcnow,
)
from storage.uow import Database
from tests.conftest import TZ
from tests.fake_telegram import ApiCall, FakeTelegram
from tests.harness import BotHarness, sent
from tests.test_cli import sqlite_url as cli_sqlite_url
from tests.test_cli import todo_bot

JSON = dict[str, Any]
ADMIN = 900001
ADMIN_2 = 900002
RESIDENT = 5201
OTHER = 5202
STRANGER = 5301

#: The known data set (see `seed`): Telegram ids that must never reach an export.
PEOPLE = {"mia": 71234501, "jo": 71234502, "ali": 71234503, "old": 71234504, "six": 71234505}
MIA_NAME = "Mia Sommer"  # the only display name anybody chose
TRICKY = 'Gute Idee; "wirklich" gut\nZweite Zeile'
FORMULA = '=HYPERLINK("http://example.org")'
PSEUDONYM_BASE = 58000


@pytest.fixture(autouse=True)
def checks(request: pytest.FixtureRequest) -> Any:
    """After every bot test: nothing the bot sent was refused as malformed."""
    if "bot" not in request.fixturenames:
        yield
        return
    fake: FakeTelegram = request.getfixturevalue("fake")
    yield
    refused = [
        c.summary()
        for c in fake.calls
        if c.method.startswith(("send", "edit", "answer")) and c.error_code == 400
    ]
    assert refused == []
    assert fake.unanswered_callbacks() == []


# --------------------------------------------------------------------------- the data set


async def seed(database: Database, now: dt.datetime) -> dict[str, int]:
    """Five residents, supports, comments (approved, rejected, pending), follows and a goal,
    with counts known by heart:

    supports: Fachkräfte 1 (TD-01) · Pflege 4 (TD-02 ×2, TD-03, TD-05; TD-05 nine weeks ago,
    TD-03 three weeks ago); approved comments: 1 · 1; follows (supporting and commenting
    follow): 4 · 5; residents 5, active in the last 7 days 4 ("old" was seen 7 days ago)."""
    today = now.astimezone(TZ).date()
    ids: dict[str, int] = {}
    async with database.uow() as uow:
        for name, telegram_id in PEOPLE.items():
            ids[name] = (await resident_service.enter(uow, telegram_id, "de", today)).id
        await resident_service.set_display_name(uow, ids["mia"], MIA_NAME)
        async with uow.write():
            for name, days in (("old", 7), ("six", 6)):
                await uow.session.execute(
                    update(Resident)
                    .where(Resident.id == ids[name])
                    .values(last_seen_on=today - dt.timedelta(days=days))
                )
        item = {}
        for key in ("TD-01", "TD-02", "TD-03", "TD-04", "TD-05"):
            found = await item_service.item_id_for_key(uow, key)
            assert found is not None
            item[key] = found
        for name, key in (
            ("mia", "TD-01"),
            ("mia", "TD-02"),
            ("jo", "TD-02"),
            ("ali", "TD-03"),
            ("old", "TD-05"),
        ):
            assert await item_service.set_support(uow, ids[name], item[key], True)
        weeks = stats_service.week_starts(now, TZ)
        async with uow.write():
            for name, key, at in (
                ("ali", "TD-03", weeks[4] + dt.timedelta(hours=12)),
                ("old", "TD-05", weeks[0] - dt.timedelta(days=7)),
            ):
                await uow.session.execute(
                    update(Support)
                    .where(Support.resident_id == ids[name], Support.item_id == item[key])
                    .values(created_at=at)
                )
            # The rows were changed behind the repositories' back: recount the hours.
            await uow.support_counts.rebuild()
        for name, key, text, approve in (
            ("mia", "TD-03", TRICKY, True),
            ("jo", "TD-01", FORMULA, True),
            ("ali", "TD-01", "Abgelehnt und nicht gezählt", False),
            ("old", "TD-04", "Wartet noch", None),
        ):
            await comment_service.start_comment(uow, ids[name], item[key], "H")
            outcome = await comment_service.submit_comment(uow, ids[name], text)
            assert outcome.comment_id is not None
            if approve is not None:
                await comment_service.decide(uow, outcome.comment_id, approve, ADMIN, "@a", "de")
        row = await uow.content.item_by_key("TD-02")
        assert row is not None
        async with uow.write():
            goal = Goal(
                key="Z-1",
                title={"de": "Pflege stärken", "en": "Stronger care"},
                description={"de": "Mehr Pflegekräfte"},
                action_field_id=row.item.action_field_id,
                status="active",
                progress=40,
            )
            uow.session.add(goal)
            await uow.session.flush()
            uow.session.add_all(
                [
                    GoalItem(goal_id=goal.id, item_id=item["TD-02"]),
                    GoalItem(goal_id=goal.id, item_id=item["TD-03"]),
                    Partner(
                        goal_id=goal.id,
                        position=0,
                        name="Pflegenetz Dortmund e.V.",
                        url="https://example.org",
                    ),
                    GoalFollow(resident_id=ids["jo"], goal_id=goal.id),
                ]
            )
    await known_pseudonyms(database)
    return ids


async def known_pseudonyms(database: Database) -> list[int]:
    """Give every resident a pseudonym that cannot be mistaken for anything else in a file
    (a random one could equal a year), and return them all."""
    async with database.uow() as uow, uow.write():
        await uow.session.execute(
            update(Resident).values(pseudonym=PSEUDONYM_BASE + Resident.id * 7)
        )
    async with database.uow() as uow:
        return list((await uow.session.execute(select(Resident.pseudonym))).scalars())


# --------------------------------------------------------------------------- stats: domain


async def test_stats_count_the_known_data_set(content: Database) -> None:
    now = utcnow()
    await seed(content, now)
    async with content.uow() as uow:
        stats = await stats_service.collect(uow, utcnow(), TZ)
    assert (stats.residents, stats.active) == (5, 4)
    assert (stats.supports, stats.comments, stats.follows, stats.goals) == (5, 2, 9, 1)
    assert [(f.key, f.supports, f.comments, f.follows) for f in stats.fields] == [
        ("fachkraefte", 1, 1, 4),
        ("pflege", 4, 1, 5),
    ]
    assert [w.supports for w in stats.weeks] == [0, 0, 0, 0, 1, 0, 0, 3]
    assert [w.comments for w in stats.weeks] == [0] * 7 + [2]
    assert all(w.start.weekday() == 0 for w in stats.weeks)
    assert stats.weeks[-1].start <= now.astimezone(TZ).date()


async def test_stats_of_an_empty_database(content: Database) -> None:
    async with content.uow() as uow:
        stats = await stats_service.collect(uow, utcnow(), TZ)
    assert (stats.residents, stats.active, stats.supports, stats.comments) == (0, 0, 0, 0)
    assert (stats.follows, stats.goals) == (0, 0)
    assert [(f.key, f.supports) for f in stats.fields] == [("fachkraefte", 0), ("pflege", 0)]
    assert len(stats.weeks) == stats_service.WEEKS
    assert all(w.supports == w.comments == 0 for w in stats.weeks)


def test_weeks_start_on_local_mondays_across_a_clock_change() -> None:
    # Sunday 2024-03-31 02:00 the clocks went forward in Berlin.
    now = dt.datetime(2024, 4, 3, 10, 0, tzinfo=dt.UTC)
    starts = stats_service.week_starts(now, TZ)
    assert [s.date().isoformat() for s in starts[-3:]] == ["2024-03-18", "2024-03-25", "2024-04-01"]
    assert all(s.astimezone(TZ).time() == dt.time(0, 0) for s in starts)
    assert starts[-1].astimezone(dt.UTC).hour == 22  # 00:00 CEST
    assert starts[-2].astimezone(dt.UTC).hour == 23  # 00:00 CET


# --------------------------------------------------------------------------- export: domain


def parse_csv(data: bytes) -> list[dict[str, str]]:
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 with BOM, for Excel"
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""), delimiter=";"))


def check_export(files: dict[str, bytes], forbidden: list[str]) -> dict[str, Any]:
    """The four files: no personal data, CSV parses back, JSON says the same as the CSV."""
    assert list(files) == ["items.csv", "goals.csv", "comments.csv", "todo-export.json"]
    for name, data in files.items():
        text = data.decode("utf-8-sig")
        for secret in forbidden:
            assert secret not in text, f"{secret!r} in {name}"
        assert "Anwohner" not in text and "Resident " not in text, "no pseudonyms"
    for name in ("items.csv", "goals.csv", "comments.csv"):
        raw = files[name]
        assert raw.count(b"\r\n") >= 1 and b";" in raw.split(b"\r\n")[0]
    document: dict[str, Any] = json.loads(files["todo-export.json"])
    for name, columns in (
        ("items", export_service.ITEM_COLUMNS),
        ("goals", export_service.GOAL_COLUMNS),
        ("comments", export_service.COMMENT_COLUMNS),
    ):
        rows = parse_csv(files[f"{name}.csv"])
        assert len(rows) == len(document[name])
        for row, entry in zip(rows, document[name], strict=True):
            assert list(row) == list(columns) == list(entry)
            for column in columns:
                value = entry[column]
                if isinstance(value, list):
                    value = ", ".join(v["name"] if isinstance(v, dict) else v for v in value)
                expected = "" if value is None else str(value)
                if expected.startswith("="):
                    expected = "'" + expected  # Excel would run it as a formula
                assert row[column] == expected, (name, column)
    return document


async def test_export_has_counts_and_comments_but_no_personal_data(content: Database) -> None:
    await seed(content, utcnow())
    pseudonyms = await known_pseudonyms(content)
    async with content.uow() as uow:
        data, files = await export_service.export_files(uow, TZ, utcnow())
    assert data.counts() == (5, 1, 2)
    document = check_export(
        files, [str(p) for p in [*PEOPLE.values(), *pseudonyms]] + ["Wartet", "Abgelehnt"]
    )
    items = {row["key"]: row for row in parse_csv(files["items.csv"])}
    assert {
        k: (r["supporters"], r["approved_comments"], r["followers"]) for k, r in items.items()
    } == {
        "TD-01": ("1", "1", "3"),
        "TD-02": ("2", "0", "2"),
        "TD-03": ("1", "1", "2"),
        "TD-04": ("0", "0", "1"),
        "TD-05": ("1", "0", "1"),
    }
    assert items["TD-05"]["title_de"] == "Ärztliche Versorgung <sicher> & gut"
    assert items["TD-02"]["action_field_de"] == "Pflege wertschätzen"
    assert [g["key"] for g in document["goals"]] == ["Z-1"]
    [goal] = parse_csv(files["goals.csv"])
    assert (goal["items"], goal["partners"], goal["progress"], goal["followers"]) == (
        "TD-02, TD-03",
        "Pflegenetz Dortmund e.V.",
        "40",
        "1",
    )
    comments = parse_csv(files["comments.csv"])
    assert [(c["item"], c["author"], c["text"]) for c in comments] == [
        ("TD-01", "", "'" + FORMULA),
        ("TD-03", MIA_NAME, TRICKY),
    ]
    assert document["comments"][0]["text"] == FORMULA
    assert comments[0]["date"] == utcnow().astimezone(TZ).date().isoformat()


async def test_export_of_an_empty_database(database: Database) -> None:
    async with database.uow() as uow:
        data, files = await export_service.export_files(uow, TZ, utcnow())
    assert data.counts() == (0, 0, 0)
    document = check_export(files, [])
    assert (document["items"], document["goals"], document["comments"]) == ([], [], [])
    assert (
        files["items.csv"] == ("\ufeff" + ";".join(export_service.ITEM_COLUMNS) + "\r\n").encode()
    )


# --------------------------------------------------------------------------- the bot: helpers


async def start(bot: BotHarness, user_id: int, language: str = "de", **names: Any) -> JSON:
    user = bot.user(user_id, language, **names)
    await bot.send(user, "/start")
    return user


def menu(bot: BotHarness, user_id: int, language: str = "de") -> list[str]:
    return [
        c["command"] for c in bot.fake.commands_for({"type": "chat", "chat_id": user_id}, language)
    ]


async def roles(bot: BotHarness) -> dict[int, str]:
    async with bot.database.uow() as uow:
        rows = await uow.session.execute(select(Role.telegram_id, Role.role))
        return {telegram_id: role for telegram_id, role in rows}


async def audit_count(bot: BotHarness) -> int:
    async with bot.database.uow() as uow:
        return (
            await uow.session.execute(select(func.count()).select_from(AuditEntry))
        ).scalar_one()


def reply(calls: list[ApiCall], chat_id: int) -> str:
    [message] = [c for c in sent(calls) if c.chat_id == chat_id]
    return message.visible_text or ""


# --------------------------------------------------------------------------- /mod


async def test_mod_add_makes_a_resident_a_moderator_and_remove_takes_it_back(
    bot: BotHarness,
) -> None:
    admin = await start(bot, ADMIN, username="anna_mod")
    resident = await start(bot, RESIDENT, "en")
    assert "Only moderators" in reply(await bot.send(resident, "/queue"), RESIDENT)
    assert menu(bot, RESIDENT) == [] and menu(bot, RESIDENT, "") == []

    calls = await bot.send(admin, f"/mod add {RESIDENT}")
    answer = reply(calls, ADMIN)
    assert f"{RESIDENT}" in answer and "ist jetzt Moderator*in" in answer
    assert "hat eine Nachricht bekommen" in answer
    told = reply(calls, RESIDENT)
    assert "You are now moderator" in told, "told in their own language"
    for language in ("de", ""):
        commands = menu(bot, RESIDENT, language)
        assert {"queue", "status", "stats", "audit", "export", "start"} <= set(commands)
        assert "mod" not in commands, "only admins manage roles"
    assert await roles(bot) == {RESIDENT: "moderator"}

    # The new moderator can use moderator commands right away.
    assert "No comments are waiting" in reply(await bot.send(resident, "/queue"), RESIDENT)
    calls = await bot.send(resident, "/stats")
    assert "Numbers for reports" in reply(calls, RESIDENT)
    assert len(sent(calls, "sendPhoto")) == 1

    calls = await bot.send(admin, f"/mod remove {RESIDENT}")
    assert "hat keine Rolle mehr" in reply(calls, ADMIN)
    assert "no longer have a moderator role" in reply(calls, RESIDENT)
    assert menu(bot, RESIDENT) == [] and menu(bot, RESIDENT, "") == []
    assert await roles(bot) == {}
    calls = await bot.send(resident, "/stats")
    assert "Only moderators" in reply(calls, RESIDENT)
    assert sent(calls, "sendPhoto") == []


async def test_mod_add_admin_gives_role_management(bot: BotHarness) -> None:
    admin = await start(bot, ADMIN)
    other = await start(bot, OTHER)
    await bot.send(admin, f"/mod add {OTHER} admin")
    assert await roles(bot) == {OTHER: "admin"}
    assert "mod" in menu(bot, OTHER)
    assert "ist jetzt Moderator*in" in reply(await bot.send(other, f"/mod add {RESIDENT}"), OTHER)
    assert await roles(bot) == {OTHER: "admin", RESIDENT: "moderator"}


async def test_a_moderator_cannot_manage_roles(bot: BotHarness) -> None:
    admin = await start(bot, ADMIN)
    moderator = await start(bot, RESIDENT)
    await bot.send(admin, f"/mod add {RESIDENT}")
    before = await audit_count(bot)
    for command in (
        f"/mod add {OTHER}",
        f"/mod add {RESIDENT} admin",
        f"/mod remove {RESIDENT}",
        "/mod",
    ):
        calls = await bot.send(moderator, command)
        assert "Rollen verwalten können nur Admins" in reply(calls, RESIDENT)
        assert [c.method for c in calls if c.method != "getUpdates"] == ["sendMessage"]
    assert await roles(bot) == {RESIDENT: "moderator"}
    assert await audit_count(bot) == before


async def test_mod_answers_unchanged_config_admin_and_bad_ids(bot: BotHarness) -> None:
    admin = await start(bot, ADMIN)
    await bot.send(admin, f"/mod add {RESIDENT}")
    assert "ist schon Moderator*in" in reply(await bot.send(admin, f"/mod add {RESIDENT}"), ADMIN)
    assert "ist schon ohne Rolle" in reply(await bot.send(admin, f"/mod remove {OTHER}"), ADMIN)
    answer = reply(await bot.send(admin, f"/mod remove {ADMIN_2}"), ADMIN)
    assert "ADMIN_IDS" in answer and "nur dort geändert" in answer
    for bad in ("abc", "-5", "0", "@someone", "12345678901234567890"):
        answer = reply(await bot.send(admin, f"/mod add {bad}"), ADMIN)
        assert "keine Telegram-Nutzer-ID" in answer
    for usage in ("/mod foo 1", "/mod add", f"/mod add {OTHER} boss", f"/mod remove {OTHER} admin"):
        assert "/mod add NUTZER-ID admin" in reply(await bot.send(admin, usage), ADMIN)
    assert await roles(bot) == {RESIDENT: "moderator"}
    assert await audit_count(bot) == 1


async def test_mod_lists_the_staff_with_their_names(bot: BotHarness) -> None:
    admin = await start(bot, ADMIN)
    named = await start(bot, RESIDENT)
    await bot.send(named, "/settings")
    await bot.tap(named, "Anzeigename")
    await bot.send(named, "Kim vom InnoLab")
    await start(bot, OTHER)
    await bot.send(admin, f"/mod add {RESIDENT}")
    await bot.send(admin, f"/mod add {OTHER} admin")
    await bot.send(admin, f"/mod add {STRANGER}")
    async with bot.database.uow() as uow:
        other = await uow.residents.by_telegram_id(OTHER)
        assert other is not None
    listing = reply(await bot.send(admin, "/mod"), ADMIN)
    lines = [line for line in listing.splitlines() if line.startswith("•")]
    assert lines[0].startswith(f"• {ADMIN} · Admin (ADMIN_IDS)")
    assert lines[1].startswith(f"• {ADMIN_2} · Admin (ADMIN_IDS)")
    assert "hat den Bot noch nicht gestartet" in lines[1]
    assert lines[2] == f"• {OTHER} · Admin · Anwohner*in {other.pseudonym}"
    assert lines[3] == f"• {RESIDENT} · Moderator*in · Kim vom InnoLab"
    assert lines[4] == f"• {STRANGER} · Moderator*in · hat den Bot noch nicht gestartet"


async def test_a_moderator_who_starts_later_gets_the_menu_then(bot: BotHarness) -> None:
    admin = await start(bot, ADMIN)
    # Telegram refuses a menu for a chat that does not exist yet: logged, not fatal.
    bot.fake.fail(
        "setMyCommands", error_code=400, description="Bad Request: chat not found", times=2
    )
    answer = reply(await bot.send(admin, f"/mod add {STRANGER}"), ADMIN)
    assert "ist jetzt Moderator*in" in answer and "noch nicht gestartet" in answer
    assert menu(bot, STRANGER) == []
    # Their very first message is a moderator command: it works, and the menu is set.
    calls = await bot.send(bot.user(STRANGER, "de"), "/stats")
    assert "Zahlen für Berichte" in reply(calls, STRANGER)
    assert "stats" in menu(bot, STRANGER) and "stats" in menu(bot, STRANGER, "")
    assert "mod" not in menu(bot, STRANGER)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "command",
    ["/audit", "/stats", "/export", "/mod", f"/mod add {RESIDENT}", f"/mod remove {ADMIN}"],
)
async def test_residents_are_refused_and_nothing_is_sent(bot: BotHarness, command: str) -> None:
    await start(bot, ADMIN)
    user = await start(bot, RESIDENT)
    calls = await bot.send(user, command)
    assert "nur Moderator*innen" in reply(calls, RESIDENT)
    methods = [c.method for c in calls if c.method != "getUpdates"]
    assert methods == ["sendMessage"], "no photo, no documents, no menu, nobody else told"
    assert await roles(bot) == {}
    assert await audit_count(bot) == 0


# --------------------------------------------------------------------------- /audit


async def test_audit_lists_the_latest_actions_newest_first(bot: BotHarness) -> None:
    admin = await start(bot, ADMIN, username="anna_mod")
    english = await start(bot, ADMIN_2, "en", first_name="Ben", last_name="Berg")
    assert "Noch keine Aktionen" in reply(await bot.send(admin, "/audit"), ADMIN)
    await bot.send(admin, "/status TD-03 in_review Wird im InnoLab geprüft")
    await bot.send(english, f"/mod add {RESIDENT}")
    text = reply(await bot.send(admin, "/audit"), ADMIN)
    role_at, status_at = text.index("👤 Rolle"), text.index("🔄 Status")
    assert role_at < status_at, "newest first"
    assert f"Rolle {RESIDENT}: keine Rolle → Moderator*in" in text
    assert "Status TD-03: offen → in Prüfung" in text
    assert "📝 Wird im InnoLab geprüft" in text
    assert "· Ben Berg" in text and "· @anna_mod" in text
    assert "Latest actions" in reply(await bot.send(english, "/audit"), ADMIN_2)


async def test_audit_shows_20_entries_within_one_message(bot: BotHarness) -> None:
    admin = await start(bot, ADMIN)
    async with bot.database.uow() as uow:
        for n in range(25):
            await record(
                uow,
                Actor(ADMIN, "@" + "a" * 60),
                "goal_edit",
                f"Z-{n:02d}",
                {"note": "Sehr lange Notiz " * 40, "field": "x" * 300, "n": n, "list": [1, 2]},
            )
    calls = await bot.send(admin, "/audit")
    [message] = sent(calls)
    text = message.visible_text or ""
    assert len(text) < 4096 and len(message.params["text"]) < 4096
    assert "Z-24" in text and "Z-05" in text and "Z-04" not in text
    assert text.index("Z-24") < text.index("Z-05")
    assert text.count("📝") == 20, "long notes are cut, not left out"
    assert "📝 Sehr lange Notiz Sehr lange Notiz Sehr…" in text


# --------------------------------------------------------------------------- /stats


async def test_stats_show_the_numbers_and_a_chart(bot: BotHarness) -> None:
    admin = await start(bot, ADMIN)
    await seed(bot.database, utcnow())
    calls = await bot.send(admin, "/stats")
    text = reply(calls, ADMIN)
    assert "Anwohner*innen: 6, aktiv in den letzten 7 Tagen: 5" in text
    assert "Unterstützungen: 5" in text
    assert "Freigegebene Kommentare: 2" in text
    assert "Folgen: 9" in text and "Ziele: 1" in text
    assert "• Fachkräfte sichern: 1 · 1 · 4" in text
    assert "• Pflege wertschätzen: 4 · 1 · 5" in text
    weeks = [line for line in text.splitlines() if line.startswith("• KW")]
    assert len(weeks) == 8
    assert weeks[-1].endswith(": 3 · 2") and weeks[4].endswith(": 1 · 0")
    [photo] = sent(calls, "sendPhoto")
    assert photo.chat_id == ADMIN
    [upload] = photo.files.values()
    assert upload.data.startswith(b"\x89PNG") and len(upload.data) > 10_000
    assert "to:DO in Zahlen" in (photo.params.get("caption") or "")


# --------------------------------------------------------------------------- /export


async def test_export_sends_the_files_without_personal_data(bot: BotHarness) -> None:
    admin = await start(bot, ADMIN, username="anna_mod", first_name="Anna")
    juergen = await start(
        bot, 4242, first_name="Jürgen", last_name="Kowalski", username="jkowalski"
    )
    await seed(bot.database, utcnow())
    # A comment written and approved through the bot, by someone with a Telegram name.
    await bot.send(juergen, "/start item_TD-04")
    await bot.tap(juergen, "Kommentieren")
    await bot.send(juergen, "Mehr Ausbildung; bitte!")
    async with bot.database.uow() as uow:
        pending = await comment_service.pending_queue(uow, "de")
    [comment] = [c for c in pending[1] if c.item_key == "TD-04" and "Ausbildung" in c.text]
    await bot.press(admin, cb.MODERATE.build(decision="a", cid=comment.id))
    pseudonyms = await known_pseudonyms(bot.database)

    calls = await bot.send(admin, "/export")
    text = reply(calls, ADMIN)
    assert "6 Punkte" not in text and "5 Punkte, 1 Ziel, 3 freigegebene Kommentare" in text
    [group] = sent(calls, "sendMediaGroup")
    assert [m["type"] for m in group.params["media"]] == ["document"] * 4
    files = {f.filename or "": f.data for f in group.files.values()}
    forbidden = [str(p) for p in [*PEOPLE.values(), *pseudonyms, ADMIN, 4242]]
    forbidden += ["Jürgen", "Kowalski", "jkowalski", "Anna", "anna_mod"]
    check_export(files, forbidden)
    comments = parse_csv(files["comments.csv"])
    assert ("TD-04", "", "Mehr Ausbildung; bitte!") in [
        (c["item"], c["author"], c["text"]) for c in comments
    ]
    assert MIA_NAME in [c["author"] for c in comments], "a chosen display name is kept"


# --------------------------------------------------------------------------- todo-bot export


def test_cli_export_writes_the_files_without_a_token(tmp_path: Path) -> None:
    db = cli_sqlite_url(tmp_path)
    empty = todo_bot(tmp_path, "export", "--out", "empty", DATABASE_URL=db)
    assert empty.returncode == 0, empty.stderr
    assert "items 0, goals 0, approved comments 0" in empty.stdout
    for name in export_service.FILE_NAMES:
        assert str((tmp_path / "empty" / name).resolve()) in empty.stdout
    assert json.loads((tmp_path / "empty" / "todo-export.json").read_text())["items"] == []
    assert parse_csv((tmp_path / "empty" / "comments.csv").read_bytes()) == []

    imported = todo_bot(tmp_path, "import", "--sample", DATABASE_URL=db)
    assert imported.returncode == 0, imported.stderr

    async def comment() -> list[int]:
        database = Database(normalise_database_url(db))
        try:
            async with database.uow() as uow:
                resident = await resident_service.enter(uow, PEOPLE["mia"], "de", dt.date.today())
                item = await item_service.item_id_for_key(uow, "TD-01")
                assert item is not None
                await comment_service.start_comment(uow, resident.id, item, "H")
                outcome = await comment_service.submit_comment(uow, resident.id, TRICKY)
                assert outcome.comment_id is not None
                await comment_service.decide(uow, outcome.comment_id, True, ADMIN, "@a", "de")
            return await known_pseudonyms(database)
        finally:
            await database.dispose()

    pseudonyms = asyncio.run(comment())
    result = todo_bot(tmp_path, "export", DATABASE_URL=db)
    assert result.returncode == 0, result.stderr
    assert "items 78, goals 7, approved comments 1" in result.stdout
    files = {name: (tmp_path / name).read_bytes() for name in export_service.FILE_NAMES}
    check_export(files, [str(PEOPLE["mia"]), *map(str, pseudonyms)])
    assert len(parse_csv(files["items.csv"])) == 78
    [row] = parse_csv(files["comments.csv"])
    assert (row["item"], row["author"], row["text"]) == ("TD-01", "", TRICKY)
