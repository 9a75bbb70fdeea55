"""A resident who is no moderator tries every moderator command and presses every moderator
button (with real ids of pending work): everything is refused, nobody else hears of it, and
not one row in the database changes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select

from bot import app as bot_app
from bot import callbacks as cb
from storage.models import Comment, Goal, GoalItem, Item, Proposal
from tests.harness import BotHarness, sent
from tests.harness import snapshot as database_snapshot

pytestmark = pytest.mark.usefixtures("well_behaved")

ADMIN = 900001
AUTHOR = 3001
READERS = (3002, 3003, 3004)
INTRUDER = 3666

#: Routes any resident may press. Every route in bot.callbacks is either here or in
#: `staff_presses` below, so a new moderator button cannot be forgotten in this test.
RESIDENT_ROUTES = {
    "MENU",
    "NOOP",
    "SESSIONS",
    "SESSION",
    "ITEMS_MENU",
    "ITEMS",
    "ITEM",
    "SUPPORT",
    "FOLLOW",
    "COMMENT",
    "COMMENTS",
    "CANCEL",
    "SEARCH_PROMPT",
    "SEARCH",
    "MY_ITEMS",
    "SETTINGS",
    "LANGUAGE_MENU",
    "LANGUAGE",
    "DIGEST",
    "NOTIFY_MENU",
    "NOTIFY",
    "NAME_PROMPT",
    "NAME_CLEAR",
    "REPORT",
    "PROPOSE",
    "PROPOSAL_FIELD",
    "PROPOSAL_SEND",
    "GOALS",
    "GOAL",
    "GOAL_FOLLOW",
    "GOAL_HELP",
    "GOAL_HELP_SEND",
    "GOAL_HELP_WITHDRAW",
}


def staff_commands() -> list[str]:
    """Every moderator and admin command, with arguments that would work for a moderator."""
    examples = {
        "queue": ["/queue"],
        "unban": [f"/unban {AUTHOR}"],
        "status": ["/status TD-01 in_review Geprüft", "/status TD-02 merged TD-01"],
        "goal": ["/goal", "/goal new", "/goal Z-1"],
        "progress": ["/progress Z-1 50 Halbzeit"],
        "helpers": ["/helpers Z-1"],
        "broadcast": ["/broadcast"],
        "digest": ["/digest", "/digest send", "/digest off"],
        "stats": ["/stats"],
        "export": ["/export"],
        "audit": ["/audit"],
        "mod": ["/mod", f"/mod add {INTRUDER}", f"/mod remove {ADMIN}"],
    }
    commands = (*bot_app.MODERATOR_COMMANDS, *bot_app.ADMIN_COMMANDS)
    missing = [c for c in commands if c not in examples]
    assert missing == [], f"add examples for the new staff commands {missing}"
    return [text for c in commands for text in examples[c]]


def staff_presses(ids: dict[str, int]) -> dict[str, list[str]]:
    """Route name → the presses tried, with the ids of real pending work."""
    c, p, h, g = ids["comment"], ids["proposal"], ids["hidden"], ids["goal"]
    return {
        "MODERATE": [cb.MODERATE.build(decision=d, cid=c) for d in "arb"],
        "MODERATE_PROPOSAL": [cb.MODERATE_PROPOSAL.build(decision=d, pid=p) for d in "arb"],
        "MODERATE_REPORTED": [cb.MODERATE_REPORTED.build(decision=d, cid=h) for d in "arb"],
        "NO_REASON": [
            cb.NO_REASON.build(kind="c", oid=c),
            cb.NO_REASON.build(kind="p", oid=p),
            cb.NO_REASON.build(kind="h", oid=h),
        ],
        "BROADCAST_AUDIENCE": [cb.BROADCAST_AUDIENCE.build(draft=1, aud="all")],
        "BROADCAST_SEND": [cb.BROADCAST_SEND.build(draft=1)],
        "BROADCAST_SCHEDULE": [cb.BROADCAST_SCHEDULE.build(draft=1)],
        "BROADCAST_CONFIRM": [cb.BROADCAST_CONFIRM.build(draft=1)],
        "BROADCAST_STOP": [cb.BROADCAST_STOP.build(bid=1)],
        **goal_presses(g),
    }


def goal_presses(goal_id: int) -> dict[str, list[str]]:
    """The goal editing buttons (whatever routes the goal admin module defines)."""
    presses: dict[str, list[str]] = {}
    for name, route in vars(cb).items():
        if not isinstance(route, cb.Route) or name in RESIDENT_ROUTES:
            continue
        if not name.startswith("GOAL_ADMIN") and not name.startswith("GOAL_EDIT"):
            continue
        presses[name] = list(_examples(route, goal_id))
    return presses


def _examples(route: cb.Route, goal_id: int) -> list[str]:
    """Valid data for a route: the goal's id (or 1) in every numeric field, and the first
    of some candidate codes that the route accepts in the others."""
    candidates = ["1", "0", "a", "t", "d", "s", "x", "-", "planned", "active", "done"]
    found: list[str] = []
    values: dict[str, str] = {}

    def fill(i: int) -> None:
        if i == len(route.names):
            data = ":".join([route.verb, *(values[n] for n in route.names)])
            if route.parse(data) is not None and data not in found:
                found.append(data)
            return
        for value in [str(goal_id), *candidates]:
            values[route.names[i]] = value
            before = len(found)
            fill(i + 1)
            if len(found) > before and len(found) >= 3:
                return

    fill(0)
    assert found, f"no example data for {route.verb}"
    return found[:3]


async def snapshot(bot: BotHarness) -> dict[str, list[tuple[Any, ...]]]:
    return await database_snapshot(bot.database)


async def pending_work(bot: BotHarness) -> dict[str, int]:
    """A pending comment, a pending proposal, a comment hidden after reports and a goal."""
    admin = bot.user(ADMIN, "de")
    author = bot.user(AUTHOR, "de")
    for user in (admin, author, *(bot.user(r, "de") for r in READERS)):
        await bot.send(user, "/start")
    await bot.send(author, "/start item_TD-01")
    await bot.tap(author, "Kommentieren")
    await bot.send(author, "Wird gemeldet")
    await bot.tap(admin, "Freigeben")
    await bot.send(author, "/start item_TD-01")
    await bot.tap(author, "Kommentieren")
    await bot.send(author, "Wartet auf Freigabe")
    await bot.send(author, "/propose")
    await bot.send(author, "Ein Vorschlag")
    await bot.send(author, "Mit Beschreibung")
    async with bot.database.uow() as uow:
        comments = list((await uow.session.execute(select(Comment).order_by(Comment.id))).scalars())
        hidden, pending = comments[0].id, comments[1].id
        field_id = (await uow.session.execute(select(Item.action_field_id).limit(1))).scalar_one()
    for reader in READERS:
        await bot.press(bot.user(reader, "de"), cb.REPORT.build(cid=hidden, page=0, origin="H"))
    draft = next(
        b["callback_data"]
        for row in bot.screen(AUTHOR)["reply_markup"]["inline_keyboard"]
        for b in row
        if b["callback_data"].startswith("ppf:")
    )
    await bot.press(author, draft)
    await bot.tap(author, "Absenden")
    async with bot.database.uow() as uow:
        proposal = (await uow.session.execute(select(Proposal.id))).scalar_one()
        goal = Goal(
            key="Z-1",
            title={"de": "Ziel"},
            description={"de": "Ein Ziel"},
            action_field_id=field_id,
            status="planned",
            progress=10,
            created_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
            updated_at=dt.datetime(2026, 11, 1, tzinfo=dt.UTC),
        )
        async with uow.write():
            uow.session.add(goal)
            await uow.session.flush()
            item_id = (await uow.session.execute(select(Item.id).limit(1))).scalar_one()
            uow.session.add(GoalItem(goal_id=goal.id, item_id=item_id))
        status = {c.id: c.status for c in (await uow.session.execute(select(Comment))).scalars()}
    assert status == {hidden: "hidden", pending: "pending"}
    return {"comment": pending, "hidden": hidden, "proposal": proposal, "goal": goal.id}


def test_every_route_is_classified() -> None:
    routes = {name for name, value in vars(cb).items() if isinstance(value, cb.Route)}
    staff = set(staff_presses({"comment": 1, "proposal": 1, "hidden": 1, "goal": 1}))
    assert routes - RESIDENT_ROUTES - staff == set(), "classify the new routes in this test"


async def test_a_resident_is_refused_every_moderator_command_and_button(
    bot: BotHarness,
) -> None:
    ids = await pending_work(bot)
    intruder = bot.user(INTRUDER, "de")
    await bot.send(intruder, "/start")
    before = await snapshot(bot)
    since = len(bot.fake.calls)

    for command in staff_commands():
        calls = await bot.send(intruder, command)
        replies = sent(calls)
        assert [c.chat_id for c in replies] == [INTRUDER], command
        assert "nur Moderator*innen" in (replies[0].visible_text or ""), command

    presses = staff_presses(ids)
    for route, datas in presses.items():
        for data in datas:
            calls = await bot.press(intruder, data)
            others = [c for c in calls if c.chat_id not in (None, INTRUDER)]
            assert others == [], f"{route} {data} reached someone else"
            answered = [c for c in calls if c.method == "answerCallbackQuery"]
            assert len(answered) == 1, data

    methods = {c.method for c in bot.fake.calls[since:]} - {"getUpdates"}
    assert methods <= {"sendMessage", "answerCallbackQuery", "editMessageText"}, methods
    assert await snapshot(bot) == before, "a refused try changed the database"


async def test_help_shows_each_role_its_commands(bot: BotHarness) -> None:
    resident, admin = bot.user(INTRUDER, "en"), bot.user(ADMIN, "en")
    moderator = bot.user(AUTHOR, "en")
    await bot.send(admin, "/start")
    await bot.send(moderator, "/start")
    await bot.send(admin, f"/mod add {AUTHOR}")
    shown = {}
    for name, user in (("resident", resident), ("moderator", moderator), ("admin", admin)):
        [reply] = sent(await bot.send(user, "/help"))
        shown[name] = reply.visible_text or ""
    assert "/goals" in shown["resident"] and "/propose" in shown["resident"]
    assert "/status" not in shown["resident"] and "/mod" not in shown["resident"]
    assert "/status" in shown["moderator"] and "/export" in shown["moderator"]
    assert "/mod" not in shown["moderator"]
    assert "/mod" in shown["admin"]
