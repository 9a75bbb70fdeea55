"""Limits against abuse: a burst of actions beyond ACTIONS_PER_MINUTE is refused and changes
nothing (other presses still work, staff are exempt); comments and proposals per hour;
other bots, groups and channels are ignored (but the moderators' group)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bot import callbacks as cb
from domain import comments as comment_service
from domain import items as item_service
from domain import proposals as proposal_service
from domain.abuse import SlidingWindow
from storage.models import Comment, Item, Proposal
from tests.harness import BotHarness, sent, texts
from tests.harness import snapshot as database_snapshot

pytestmark = pytest.mark.usefixtures("well_behaved")

ADMIN = 900001
RESIDENT = 4101
GROUP = -100777


@pytest.fixture
def bot_settings() -> dict[str, Any]:
    return {
        "actions_per_minute": 3,
        "comments_per_hour": 2,
        "proposals_per_hour": 1,
        "moderation_chat_id": GROUP,
    }


async def item_id(bot: BotHarness, key: str) -> int:
    async with bot.database.uow() as uow:
        found = await item_service.item_id_for_key(uow, key)
    assert found is not None
    return found


async def support_count(bot: BotHarness, key: str) -> int:
    async with bot.database.uow() as uow:
        return int(
            (
                await uow.session.execute(select(Item.support_count).where(Item.key == key))
            ).scalar_one()
        )


async def count(bot: BotHarness, model: type[Any]) -> int:
    async with bot.database.uow() as uow:
        return int(
            (await uow.session.execute(select(func.count()).select_from(model))).scalar_one()
        )


async def snapshot(bot: BotHarness) -> dict[str, list[tuple[Any, ...]]]:
    return await database_snapshot(bot.database)


def alerts(calls: list[Any]) -> list[str]:
    return [
        str(c.params.get("text"))
        for c in calls
        if c.method == "answerCallbackQuery" and c.params.get("show_alert")
    ]


def test_sliding_window() -> None:
    window = SlidingWindow(2, 60.0)
    assert window.allow(1, 0.0) and window.allow(1, 1.0)
    assert not window.allow(1, 59.0)  # refused presses are not counted
    assert window.allow(2, 59.0)  # another resident
    assert window.allow(1, 60.5)  # the first one left the window
    assert not window.allow(1, 60.9)
    assert window.allow(1, 61.5)


async def test_a_burst_of_actions_is_refused_and_changes_nothing(bot: BotHarness) -> None:
    resident = bot.user(RESIDENT, "de")
    await bot.send(resident, "/start")
    iid = await item_id(bot, "TD-01")
    for on in (1, 0, 1):
        calls = await bot.press(resident, cb.SUPPORT.build(iid=iid, on=on, origin="H"))
        assert alerts(calls) == []
    assert await support_count(bot, "TD-01") == 1
    before = await snapshot(bot)
    calls = await bot.press(resident, cb.SUPPORT.build(iid=iid, on=0, origin="H"))
    [notice] = alerts(calls)
    assert "höchstens 3 Aktionen pro Minute" in notice
    calls = await bot.press(resident, cb.FOLLOW.build(iid=iid, on=0, origin="H"))
    assert len(alerts(calls)) == 1
    assert await snapshot(bot) == before
    assert await support_count(bot, "TD-01") == 1
    # Reading still works, and is answered.
    calls = await bot.press(resident, cb.ITEMS_MENU.build())
    assert alerts(calls) == [] and texts(calls) != []
    calls = await bot.press(resident, cb.MENU.build())
    assert alerts(calls) == [] and texts(calls) != []


async def test_staff_are_exempt(bot: BotHarness) -> None:
    admin = bot.user(ADMIN, "de")
    await bot.send(admin, "/start")
    iid = await item_id(bot, "TD-02")
    for on in (1, 0, 1, 0, 1, 0, 1):
        calls = await bot.press(admin, cb.SUPPORT.build(iid=iid, on=on, origin="H"))
        assert alerts(calls) == []
    assert await support_count(bot, "TD-02") == 1


async def resident_id(bot: BotHarness, telegram_id: int) -> int:
    async with bot.database.uow() as uow:
        resident = await uow.residents.by_telegram_id(telegram_id)
    assert resident is not None
    return resident.id


async def test_comments_per_hour(bot: BotHarness) -> None:
    resident = bot.user(RESIDENT, "de")
    await bot.send(resident, "/start")
    rid = await resident_id(bot, RESIDENT)
    iid = await item_id(bot, "TD-01")
    # The resident starts a comment, then reaches the limit meanwhile (another process).
    await bot.press(resident, cb.COMMENT.build(iid=iid, origin="H"))
    async with bot.database.uow() as uow:
        for n in range(2):
            await comment_service.start_comment(uow, rid, iid, "H")
            await comment_service.submit_comment(uow, rid, f"Kommentar {n}")
        await comment_service.start_comment(uow, rid, iid, "H")
    before = await snapshot(bot)
    calls = await bot.send(resident, "Noch ein Kommentar")
    assert any("2 Kommentare" in t for t in texts(calls))
    assert await snapshot(bot) == before
    assert await count(bot, Comment) == 2
    # Pressing Comment again is refused with the same reason.
    calls = await bot.press(resident, cb.COMMENT.build(iid=iid, origin="H"))
    [notice] = alerts(calls)
    assert "2 Kommentare" in notice
    assert await snapshot(bot) == before


async def test_proposals_per_hour(bot: BotHarness) -> None:
    resident = bot.user(RESIDENT, "de")
    await bot.send(resident, "/start")
    rid = await resident_id(bot, RESIDENT)
    async with bot.database.uow() as uow:
        await proposal_service.start(uow, rid)
        await proposal_service.receive_text(uow, rid, "Titel")
        step = await proposal_service.receive_text(uow, rid, "Beschreibung")
        assert step.draft is not None
        fields = await uow.content.action_fields()
        step = await proposal_service.choose_field(uow, rid, step.draft.id, fields[0].id)
        assert step.draft is not None
        assert (await proposal_service.send(uow, rid, step.draft.id)).proposal_id is not None
    before = await snapshot(bot)
    calls = await bot.send(resident, "/propose")
    assert any("1 Vorschläge" in t for t in texts(calls))
    calls = await bot.press(resident, cb.PROPOSE.build())
    assert len(alerts(calls)) == 1
    assert await snapshot(bot) == before
    assert await count(bot, Proposal) == 1


async def test_bots_groups_and_channels_are_ignored(bot: BotHarness) -> None:
    other_bot = bot.user(555778, "de", is_bot=True)
    resident = bot.user(RESIDENT, "de")
    calls = await bot.send(other_bot, "/start")
    calls += await bot.send(other_bot, "Hallo")
    calls += await bot.feed(bot.fake.group_message_update(resident, -100666, "/start"))
    calls += await bot.feed(bot.fake.channel_post_update(-100555, "/start"))
    # In the moderators' group only moderation counts: a resident's /start is ignored.
    calls += await bot.feed(bot.fake.group_message_update(resident, GROUP, "/start"))
    calls += await bot.feed(bot.fake.group_message_update(bot.user(ADMIN, "de"), GROUP, "Hallo"))
    assert sent(calls) == []
    assert [c.method for c in calls if c.method != "getUpdates"] == []
    async with bot.database.uow() as uow:
        assert await uow.residents.by_telegram_id(555778) is None
        assert await uow.residents.by_telegram_id(RESIDENT) is None
    assert await support_count(bot, "TD-01") == 0
    # ... while an admin's /queue there is answered.
    calls = await bot.feed(bot.fake.group_message_update(bot.user(ADMIN, "de"), GROUP, "/queue"))
    assert [c.chat_id for c in sent(calls)] == [GROUP]
