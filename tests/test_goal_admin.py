"""Moderators create and edit goals end to end through the fake Bot API: `/goal new` (title,
description, action field, items, preview, Create), `/goal Z-1` with its edit buttons, the
followers of linked items told once each, items adopted with history, everything audited —
and nothing at all for someone who is not a moderator."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from bot import callbacks as cb
from domain.importer import import_content
from storage.models import (
    AuditEntry,
    ConversationState,
    Goal,
    GoalItem,
    GoalUpdate,
    Item,
    ItemUpdate,
    Milestone,
    NotificationEvent,
    Partner,
    Resident,
)
from tests.conftest import TZ, content_raw, make_settings
from tests.fake_telegram import ApiCall, FakeTelegram
from tests.harness import BotHarness, buttons_of, datas_of, sent
from tests.harness import snapshot as database_snapshot

JSON = dict[str, Any]
ADMIN = 900001  # German
ADMIN_EN = 900002  # English
BOTH = 5201  # follows TD-02 and TD-03
ONE = 5202  # follows TD-03
ELSEWHERE = 5203  # follows TD-01 only
INTRUDER = 5666
MODERATOR = 5300  # a moderator from the database, demoted during a conversation

pytestmark = pytest.mark.usefixtures("well_behaved")


@pytest.fixture
def bot_settings() -> dict[str, Any]:
    return {"notify_delay_seconds": 0, "quiet_hours": ""}


@pytest.fixture
async def each_bot(
    fake: FakeTelegram, db_url: str, bot_settings: dict[str, Any]
) -> AsyncIterator[BotHarness]:
    """The bot on SQLite and on PostgreSQL (when TEST_DATABASE_URL is set)."""
    async with BotHarness.running(fake, make_settings(fake, db_url, **bot_settings)) as bot:
        yield bot


async def start(bot: BotHarness, user_id: int, language: str = "de") -> JSON:
    user = bot.user(user_id, language)
    await bot.send(user, "/start")
    return user


async def item_ids(bot: BotHarness) -> dict[str, int]:
    async with bot.database.uow() as uow:
        return {k: i for k, i in await uow.session.execute(select(Item.key, Item.id))}


async def follow(bot: BotHarness, user: JSON, *keys: str) -> None:
    ids = await item_ids(bot)
    for key in keys:
        await bot.press(user, cb.FOLLOW.build(iid=ids[key], on=1, origin="H"))


async def rows(bot: BotHarness, model: Any, *where: Any) -> list[Any]:
    async with bot.database.uow() as uow:
        result = await uow.session.execute(select(model).where(*where))
        return list(result.scalars())


async def goal(bot: BotHarness, key: str) -> Goal:
    [row] = await rows(bot, Goal, Goal.key == key)
    return row


async def goal_items(bot: BotHarness, key: str) -> list[str]:
    async with bot.database.uow() as uow:
        result = await uow.session.execute(
            select(Item.key)
            .join(GoalItem, GoalItem.item_id == Item.id)
            .join(Goal, Goal.id == GoalItem.goal_id)
            .where(Goal.key == key)
            .order_by(Item.key)
        )
        return list(result.scalars())


async def item_status(bot: BotHarness) -> dict[str, str]:
    async with bot.database.uow() as uow:
        return {k: s for k, s in await uow.session.execute(select(Item.key, Item.status))}


async def goal_events(bot: BotHarness, goal_key: str) -> dict[int, int]:
    """Telegram id → notification events about the goal."""
    async with bot.database.uow() as uow:
        result = await uow.session.execute(
            select(Resident.telegram_id, func.count())
            .join(NotificationEvent, NotificationEvent.resident_id == Resident.id)
            .join(Goal, Goal.id == NotificationEvent.goal_id)
            .where(Goal.key == goal_key)
            .group_by(Resident.telegram_id)
        )
        return {t: n for t, n in result}


async def audit(bot: BotHarness) -> list[tuple[str, str, dict[str, Any]]]:
    async with bot.database.uow() as uow:
        result = await uow.session.execute(select(AuditEntry).order_by(AuditEntry.id))
        return [(e.action, e.target, dict(e.details)) for e in result.scalars()]


async def awaiting(bot: BotHarness, telegram_id: int) -> str | None:
    async with bot.database.uow() as uow:
        resident = await uow.residents.by_telegram_id(telegram_id)
        assert resident is not None
        state = await uow.session.get(ConversationState, resident.id)
        return state.awaiting if state else None


async def deliver(bot: BotHarness) -> list[ApiCall]:
    since = len(bot.fake.calls)
    await bot.app.bot_data["services"].delivery.sender.drain()
    return bot.fake.calls[since:]


async def say(bot: BotHarness, user: JSON, text: str) -> ApiCall:
    """Send a text; the one message the bot sent back (others may get notifications
    meanwhile)."""
    calls = await bot.send(user, text)
    [call] = [c for c in sent(calls) if c.chat_id == user["id"]]
    return call


def with_goal(**changes: Any) -> dict[str, Any]:
    """The test content with one goal Z-1 (TD-01, TD-02; one partner, one milestone)."""
    raw = content_raw()
    entry = {
        "key": "Z-1",
        "title": {"de": "Pflege im Quartier", "en": "Care in the neighbourhood"},
        "description": {"de": "Pflege nah am Wohnort.", "en": "Care close to home."},
        "action_field": "pflege",
        "items": ["TD-01", "TD-02"],
        "status": "planned",
        "progress": 10,
        "partners": [{"name": "Pflegenetz", "description": {"de": "Verbund"}}],
        "milestones": [{"title": {"de": "Start", "en": "Start"}, "due": "2026-05-01"}],
    }
    entry.update(changes)
    raw["goals"] = [entry]
    return raw


async def import_goal(bot: BotHarness, **changes: Any) -> Goal:
    async with bot.database.uow() as uow:
        await import_content(uow, with_goal(**changes), TZ)
    return await goal(bot, changes.get("key", "Z-1"))


# --------------------------------------------------------------------------- /goal new


async def test_new_goal_conversation_creates_it_tells_followers_once_and_adopts_items(
    each_bot: BotHarness,
) -> None:
    bot = each_bot
    admin = await start(bot, ADMIN_EN, "en")
    both, one, elsewhere = [await start(bot, uid) for uid in (BOTH, ONE, ELSEWHERE)]
    await follow(bot, both, "TD-02", "TD-03")
    await follow(bot, one, "TD-03")
    await follow(bot, elsewhere, "TD-01")
    async with bot.database.uow() as uow, uow.write():
        row = await uow.content.item_by_key("TD-03")
        assert row is not None
        await uow.content.set_status(row.item.id, "in_review")

    reply = await say(bot, admin, "/goal new")
    assert "New goal" in reply.visible_text and "title" in reply.visible_text
    await bot.send(admin, "Care guides in every district")
    assert "description" in bot.screen(ADMIN_EN)["text"]
    await bot.send(admin, "Guides show  what is on offer.\nIn every district.")
    assert "🗂 Valuing care work" in buttons_of(bot.screen(ADMIN_EN))
    await bot.tap(admin, "Valuing care work")
    assert "TD-07 TD-12" in bot.screen(ADMIN_EN)["text"]

    # Unknown keys are refused and named; the bot keeps waiting.
    reply = await say(bot, admin, "TD-02 TD-99 XX!")
    assert "TD-99" in reply.visible_text and "XX!" in reply.visible_text
    assert "Nothing was changed" in reply.visible_text
    assert await rows(bot, Goal) == []
    assert await awaiting(bot, ADMIN_EN) == "goal_items"

    await bot.send(admin, "td-02, TD-03 TD-02")
    preview = bot.screen(ADMIN_EN)
    assert "Preview" in preview["text"]
    assert "TD-02" in preview["text"] and "TD-03" in preview["text"]
    assert "Valuing care work" in preview["text"]
    create = next(d for d in datas_of(preview) if d.startswith("gac:"))

    calls = await bot.press(admin, create)
    [answer] = [c for c in calls if c.method == "answerCallbackQuery"]
    assert "Z-1" in answer.params["text"]
    card = bot.screen(ADMIN_EN)["text"]
    assert "Goal Z-1 created" in card and "2 people are told" in card
    assert "Now adopted: TD-02, TD-03" in card

    created = await goal(bot, "Z-1")
    assert created.title == {
        "de": "Care guides in every district",
        "en": "Care guides in every district",
    }
    assert created.description["en"] == "Guides show  what is on offer.\nIn every district."
    assert (created.status, created.progress) == ("planned", 0)
    assert await goal_items(bot, "Z-1") == ["TD-02", "TD-03"]
    status = await item_status(bot)
    assert (status["TD-01"], status["TD-02"], status["TD-03"]) == ("open", "adopted", "adopted")
    history = {
        (u.previous_status, u.status, u.note, u.actor_telegram_id)
        for u in await rows(bot, ItemUpdate)
    }
    assert history == {
        ("open", "adopted", "Z-1", ADMIN_EN),
        ("in_review", "adopted", "Z-1", ADMIN_EN),
    }
    assert await goal_events(bot, "Z-1") == {BOTH: 1, ONE: 1}
    [entry] = await audit(bot)
    assert entry[:2] == ("goal_create", "Z-1")
    assert entry[2]["items"] == ["TD-02", "TD-03"]
    assert await awaiting(bot, ADMIN_EN) is None

    # Pressing Create again (a double tap) creates nothing more.
    calls = await bot.press(admin, create, message_id=preview["message_id"])
    assert len(await rows(bot, Goal)) == 1

    delivered = await deliver(bot)
    told = [c.chat_id for c in sent(delivered)]
    assert sorted(told) == [BOTH, ONE], "one message each, nobody else"
    for call in sent(delivered):
        assert "Z-1" in (call.visible_text or "")

    # The item card shows the goal and the history entry.
    await bot.send(one, "/start item_TD-03")
    item_card = bot.screen(ONE)["text"]
    assert "übernommen" in item_card and "Z-1" in item_card


async def test_next_key_follows_the_highest_number(bot: BotHarness) -> None:
    await import_goal(bot, key="Z-9")
    admin = await start(bot, ADMIN)
    await bot.send(admin, "/goal new")
    await bot.send(admin, "Noch ein Ziel")
    await bot.send(admin, "Beschreibung")
    await bot.tap(admin, "Fachkräfte sichern")
    await bot.send(admin, "TD-04")
    await bot.tap(admin, "Ziel anlegen")
    assert "Ziel Z-10 angelegt" in bot.screen(ADMIN)["text"]
    assert (await goal(bot, "Z-10")).title == {"de": "Noch ein Ziel"}


async def test_creation_steps_refuse_bad_answers_and_cancel_stores_nothing(
    bot: BotHarness,
) -> None:
    admin = await start(bot, ADMIN)
    reply = await say(bot, admin, "/goal")
    assert "/goal new" in reply.visible_text and "/goal Z-3" in reply.visible_text
    reply = await say(bot, admin, "/goal Z-99")
    assert "Z-99" in reply.visible_text and "gibt es nicht" in reply.visible_text
    reply = await say(bot, admin, "/goal delete Z-1")
    assert "/goal new" in reply.visible_text

    await bot.send(admin, "/goal new")
    reply = await say(bot, admin, "x" * 201)
    assert "201 Zeichen" in reply.visible_text
    await bot.send(admin, "Ein Titel")
    await bot.send(admin, "Eine Beschreibung")
    reply = await say(bot, admin, "TD-01")
    assert "Knöpfen" in reply.visible_text, "the action field is chosen with a button"
    await bot.tap(admin, "Pflege wertschätzen")
    reply = await say(bot, admin, " ,; ")
    assert "mindestens einen" in reply.visible_text
    await bot.send(admin, "TD-01")
    await bot.tap(admin, "Abbrechen")
    assert await rows(bot, Goal) == []
    assert await audit(bot) == []
    assert (await item_status(bot))["TD-01"] == "open"


# --------------------------------------------------------------------------- /goal Z-1


async def test_edits_change_the_goal_return_to_the_card_and_are_audited(
    each_bot: BotHarness,
) -> None:
    bot = each_bot
    created = await import_goal(bot)
    admin = await start(bot, ADMIN)
    both, one, elsewhere = [await start(bot, uid) for uid in (BOTH, ONE, ELSEWHERE)]
    await follow(bot, both, "TD-01", "TD-04")
    await follow(bot, one, "TD-04")
    await follow(bot, elsewhere, "TD-05")
    async with bot.database.uow() as uow:
        events_before = (
            await uow.session.execute(select(func.count()).select_from(NotificationEvent))
        ).scalar_one()

    reply = await say(bot, admin, "/goal z-1")
    assert "Z-1 · Pflege im Quartier" in reply.visible_text
    assert "Pflegenetz" in reply.visible_text and "Start" in reply.visible_text
    card_id = reply.message_id

    # Title (German moderator: the German title; English stays).
    await bot.tap(admin, "Titel")
    assert bot.screen(ADMIN)["message_id"] == card_id, "the prompt edits the card"
    reply = await say(bot, admin, "Pflege nah dran")
    assert "Gespeichert" in reply.visible_text and "Pflege nah dran" in reply.visible_text
    assert (await goal(bot, "Z-1")).title == {
        "de": "Pflege nah dran",
        "en": "Care in the neighbourhood",
    }

    # A partner: a bad link is refused and nothing changes; then a good one.
    await bot.tap(admin, "➕ Partner")
    reply = await say(bot, admin, "Nachbarschaftsnetz | Hilfe im Haus | ftp://x.org")
    assert "https://" in reply.visible_text and "nichts geändert" in reply.visible_text
    reply = await say(bot, admin, "A | B | C | D")
    assert "Name | kurze Beschreibung" in reply.visible_text
    assert [p.name for p in await rows(bot, Partner)] == ["Pflegenetz"]
    await bot.send(admin, "Nachbarschaftsnetz | Hilfe im Haus | https://example.org/netz")
    partners = await rows(bot, Partner)
    assert [(p.name, p.description, p.url) for p in partners] == [
        ("Pflegenetz", {"de": "Verbund"}, None),
        ("Nachbarschaftsnetz", {"de": "Hilfe im Haus"}, "https://example.org/netz"),
    ]
    assert "Nachbarschaftsnetz – Hilfe im Haus" in bot.screen(ADMIN)["text"]

    # A milestone: a bad date is refused; then one with a date.
    await bot.tap(admin, "➕ Meilenstein")
    reply = await say(bot, admin, "Eröffnung | 2027-02-30")
    assert "2027-03-31" in reply.visible_text and "nichts geändert" in reply.visible_text
    await bot.send(admin, "Eröffnung | 2027-03-31")
    milestones = sorted(await rows(bot, Milestone), key=lambda m: m.position)
    assert [(m.title, m.due_on, m.done) for m in milestones] == [
        ({"de": "Start", "en": "Start"}, dt.date(2026, 5, 1), False),
        ({"de": "Eröffnung"}, dt.date(2027, 3, 31), False),
    ]

    # Toggle a milestone: the button carries the state it sets.
    await bot.tap(admin, "Meilensteine")
    done = cb.GOAL_EDIT_MILESTONE.build(gid=created.id, mid=milestones[1].id, on=1)
    assert done in datas_of(bot.screen(ADMIN))
    calls = await bot.press(admin, done)
    assert "Gespeichert." in [
        c.params.get("text") for c in calls if c.method == "answerCallbackQuery"
    ]
    assert "✅ Eröffnung" in bot.screen(ADMIN)["text"]
    await bot.press(admin, done)  # replayed: stays done, no second audit entry
    assert [m.done for m in sorted(await rows(bot, Milestone), key=lambda m: m.position)] == [
        False,
        True,
    ]

    # Remove the first partner.
    await bot.tap(admin, "➖ Partner")
    await bot.tap(admin, "🗑 Pflegenetz")
    assert [p.name for p in await rows(bot, Partner)] == ["Nachbarschaftsnetz"]

    # Status: a dated goal update, and followers of its items are told.
    await bot.tap(admin, "Status")
    await bot.tap(admin, "läuft")
    row = await goal(bot, "Z-1")
    assert (row.status, row.progress) == ("active", 10)
    [update] = await rows(bot, GoalUpdate)
    assert (update.status, update.progress, update.actor_telegram_id) == ("active", 10, ADMIN)
    assert (await goal_events(bot, "Z-1")).get(BOTH) == 1

    # Items: unknown keys are refused and nothing changes; then TD-04 comes in.
    await bot.tap(admin, "📌 Punkte")
    reply = await say(bot, admin, "TD-01 TD-77")
    assert "TD-77" in reply.visible_text
    assert await goal_items(bot, "Z-1") == ["TD-01", "TD-02"]
    reply = await say(bot, admin, "TD-01 TD-04")
    assert "Jetzt übernommen: TD-04" in reply.visible_text
    assert "1 Person wird benachrichtigt" in reply.visible_text
    assert await goal_items(bot, "Z-1") == ["TD-01", "TD-04"]
    status = await item_status(bot)
    assert (status["TD-02"], status["TD-04"]) == ("adopted", "adopted"), "removed stays adopted"
    events = await goal_events(bot, "Z-1")
    assert events.get(ONE) == 1, "a follower of the new item hears of the goal"
    assert events.get(BOTH) == 1, "who followed the goal's items knew already (status only)"
    assert ELSEWHERE not in events

    # Action field.
    await bot.tap(admin, "Handlungsfeld")
    await bot.tap(admin, "🗂 Fachkräfte sichern")
    assert "Fachkräfte sichern · Status" in bot.screen(ADMIN)["text"]

    # Remove the milestone.
    await bot.tap(admin, "Meilensteine")
    await bot.press(
        admin, cb.GOAL_EDIT_MILESTONE_REMOVE.build(gid=created.id, mid=milestones[0].id)
    )
    assert len(await rows(bot, Milestone)) == 1

    edits = [(d["what"], d.get("from"), d.get("to")) for a, t, d in await audit(bot)]
    assert all(a == "goal_edit" and t == "Z-1" for a, t, _ in await audit(bot))
    assert edits == [
        ("title", "Pflege im Quartier", "Pflege nah dran"),
        ("partner_add", None, None),
        ("milestone_add", None, None),
        ("milestone_done", False, True),
        ("partner_remove", None, None),
        ("status", "planned", "active"),
        ("items", "TD-01 TD-02", "TD-01 TD-04"),
        ("field", "pflege", "fachkraefte"),
        ("milestone_remove", None, None),
    ]
    async with bot.database.uow() as uow:
        events_after = (
            await uow.session.execute(select(func.count()).select_from(NotificationEvent))
        ).scalar_one()
    assert events_after - events_before == 2, "status: BOTH; items: ONE … and no more"
    assert await awaiting(bot, ADMIN) is None

    # /audit shows the goal edits.
    reply = await say(bot, admin, "/audit")
    assert reply.visible_text.count("Z-1") >= 9


async def test_stale_and_foreign_edit_buttons_change_nothing(bot: BotHarness) -> None:
    created = await import_goal(bot)
    admin = await start(bot, ADMIN)
    await bot.send(admin, "/goal Z-1")
    [partner] = await rows(bot, Partner)
    # A partner that is gone, a goal that does not exist, a milestone of another goal.
    for data in (
        cb.GOAL_EDIT_PARTNER.build(gid=created.id, pid=partner.id + 100),
        cb.GOAL_ADMIN.build(gid=created.id + 100),
        cb.GOAL_EDIT_STATUS.build(gid=created.id + 100, status="done"),
        cb.GOAL_EDIT_MILESTONE.build(gid=created.id + 100, mid=1, on=1),
        cb.GOAL_ADMIN_CREATE.build(draft=1),
    ):
        calls = await bot.press(admin, data)
        [answer] = [c for c in calls if c.method == "answerCallbackQuery"]
        assert "nicht mehr aktuell" in answer.params["text"], data
    assert await audit(bot) == []
    assert (await goal(bot, "Z-1")).status == "planned"


# --------------------------------------------------------------------------- refused


async def snapshot(bot: BotHarness) -> dict[str, list[tuple[Any, ...]]]:
    return await database_snapshot(bot.database)


async def test_residents_are_refused_everything(bot: BotHarness) -> None:
    created = await import_goal(bot)
    [partner] = await rows(bot, Partner)
    [milestone] = await rows(bot, Milestone)
    intruder = await start(bot, INTRUDER)
    before = await snapshot(bot)

    for command in ("/goal", "/goal new", "/goal Z-1", "/goal z-1"):
        reply = await say(bot, intruder, command)
        assert "nur Moderator*innen" in reply.visible_text, command
    assert await awaiting(bot, INTRUDER) is None

    stolen = [
        cb.GOAL_ADMIN.build(gid=created.id),
        cb.GOAL_EDIT.build(gid=created.id, what="t"),
        cb.GOAL_EDIT.build(gid=created.id, what="i"),
        cb.GOAL_EDIT.build(gid=created.id, what="s"),
        cb.GOAL_EDIT_STATUS.build(gid=created.id, status="done"),
        cb.GOAL_EDIT_FIELD.build(gid=created.id, fid=1),
        cb.GOAL_EDIT_PARTNER.build(gid=created.id, pid=partner.id),
        cb.GOAL_EDIT_MILESTONE.build(gid=created.id, mid=milestone.id, on=1),
        cb.GOAL_EDIT_MILESTONE_REMOVE.build(gid=created.id, mid=milestone.id),
        cb.GOAL_ADMIN_FIELD.build(draft=1, fid=1),
        cb.GOAL_ADMIN_CREATE.build(draft=1),
    ]
    for data in stolen:
        calls = await bot.press(intruder, data)
        [answer] = [c for c in calls if c.method == "answerCallbackQuery"]
        assert "nur Moderator*innen" in answer.params["text"], data
        assert [c for c in calls if c.chat_id not in (None, INTRUDER)] == []
    # A text after a stolen edit button is just a text.
    reply = await say(bot, intruder, "Geklauter Titel")
    assert "Geklauter Titel" not in reply.visible_text
    assert await snapshot(bot) == before


async def test_a_demoted_moderator_cannot_finish(bot: BotHarness) -> None:
    async with bot.database.uow() as uow, uow.write():
        await uow.roles.set(MODERATOR, "moderator", ADMIN)
    moderator = await start(bot, MODERATOR)
    await bot.send(moderator, "/goal new")
    await bot.send(moderator, "Ein Titel")
    assert await awaiting(bot, MODERATOR) == "goal_description"
    async with bot.database.uow() as uow, uow.write():
        await uow.roles.remove(MODERATOR)
    reply = await say(bot, moderator, "Eine Beschreibung")
    assert "nur Moderator*innen" in reply.visible_text
    assert await awaiting(bot, MODERATOR) is None
    assert await rows(bot, Goal) == []


# --------------------------------------------------------------------------- concurrency


async def test_a_key_taken_meanwhile_is_skipped(
    content: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another moderator created the goal with the same key at the same moment: the insert
    fails inside a savepoint and the next free key is taken."""
    from domain import goal_admin
    from domain.residents import enter
    from domain.staff import Actor
    from storage.goal_writer import GoalWriter

    database = content
    async with database.uow() as uow:
        await import_content(uow, with_goal(), TZ)
        resident = await enter(uow, ADMIN, "de", dt.date(2026, 3, 1))
        draft = (await goal_admin.start_new(uow, resident.id)).draft
        assert draft is not None
        await goal_admin.receive_text(uow, resident.id, "Zweites Ziel")
        await goal_admin.receive_text(uow, resident.id, "Beschreibung")
        field_id = (await uow.content.action_fields())[0].id
        await goal_admin.choose_field(uow, resident.id, draft.id, field_id)
        step = await goal_admin.receive_text(uow, resident.id, "TD-04")
        assert step.step == goal_admin.AWAITING_CONFIRM

        original = GoalWriter.next_key
        taken = iter(["Z-1"])

        async def racing(self: GoalWriter) -> str:
            return next(taken, None) or await original(self)

        monkeypatch.setattr(GoalWriter, "next_key", racing)
        created = await goal_admin.create(uow, resident.id, draft.id, Actor(ADMIN, "@a"), "de")

    assert (created.key, created.problem) == ("Z-2", None)
    async with database.uow() as uow:
        keys = list((await uow.session.execute(select(Goal.key).order_by(Goal.key))).scalars())
        assert keys == ["Z-1", "Z-2"]
        assert (await uow.goal_writer.linked_items(created.goal_id or 0))[0].key == "TD-04"
        actions = list((await uow.session.execute(select(AuditEntry.action))).scalars())
        assert actions == ["goal_create"]
