"""Item status end to end: /status, history on the card, merge, and the followers told."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from storage.models import AuditEntry, Follow, Item, Support
from tests.harness import BotHarness, sent

ADMIN = 900001
FOLLOWER = 5101
OTHER = 5102


@pytest.fixture
def bot_settings() -> dict[str, Any]:
    return {"notify_delay_seconds": 0, "quiet_hours": ""}


async def start(bot: BotHarness, user_id: int, language: str = "de") -> dict[str, Any]:
    user = bot.user(user_id, language)
    await bot.send(user, "/start")
    return user


async def deliver(bot: BotHarness) -> None:
    await bot.app.bot_data["services"].delivery.sender.drain()


async def item(bot: BotHarness, key: str) -> Item:
    async with bot.database.uow() as uow:
        row = await uow.content.item_by_key(key)
        assert row is not None
        return row.item


async def test_status_change_shows_on_the_card_and_reaches_followers_as_one_message(
    bot: BotHarness,
) -> None:
    admin = await start(bot, ADMIN)
    follower = await start(bot, FOLLOWER, "en")
    await bot.send(follower, "/start item_TD-03")
    await bot.tap(follower, "Follow")

    [reply] = sent(await bot.send(admin, "/status TD-03 in_review Wird im InnoLab geprüft"))
    assert "offen → in Prüfung" in reply.visible_text
    assert "1 Person wird benachrichtigt" in reply.visible_text
    [reply] = sent(await bot.send(admin, "/status TD-03 in_progress Erste Gespräche laufen"))

    since = len(bot.fake.calls)
    await deliver(bot)
    [note] = [
        c for c in bot.fake.calls[since:] if c.method == "sendMessage" and c.chat_id == FOLLOWER
    ]
    text = note.visible_text or ""
    assert text.count("TD-03") == 1, "two changes, one entry"
    assert "Status: in progress – Erste Gespräche laufen" in text

    await bot.send(follower, "/start item_TD-03")
    card = bot.screen(FOLLOWER)["text"]
    assert "Status: in progress" in card
    assert "History" in card and "in review – Wird im InnoLab geprüft" in card
    async with bot.database.uow() as uow:
        entries = (await uow.session.execute(select(AuditEntry))).scalars().all()
        assert [(e.action, e.target) for e in entries] == [("status", "TD-03")] * 2


async def test_declined_needs_a_reason_which_the_card_shows(bot: BotHarness) -> None:
    admin = await start(bot, ADMIN)
    [reply] = sent(await bot.send(admin, "/status TD-04 declined"))
    assert "braucht eine Begründung" in reply.visible_text
    assert (await item(bot, "TD-04")).status == "open"

    await bot.send(admin, "/status TD-04 declined Gibt es schon im Programm XY")
    assert (await item(bot, "TD-04")).status == "declined"
    user = await start(bot, OTHER)
    await bot.send(user, "/start item_TD-04")
    assert "❌ Begründung: Gibt es schon im Programm XY" in bot.screen(OTHER)["text"]


async def test_merge_carries_supports_and_followers_over_without_double_counting(
    bot: BotHarness,
) -> None:
    admin = await start(bot, ADMIN)
    both, only_source, only_target = [await start(bot, uid) for uid in (6001, 6002, 6003)]
    source, target = await item(bot, "TD-02"), await item(bot, "TD-03")
    from bot import callbacks as cb

    for user, ids in (
        (both, [source.id, target.id]),
        (only_source, [source.id]),
        (only_target, [target.id]),
    ):
        for item_id in ids:
            await bot.press(user, cb.SUPPORT.build(iid=item_id, on=1, origin="H"))

    [reply] = sent(await bot.send(admin, "/status TD-02 merged TD-03 Gleiche Idee"))
    assert "Unterstützung und Folgende sind umgezogen" in reply.visible_text

    merged, kept = await item(bot, "TD-02"), await item(bot, "TD-03")
    assert merged.status == "merged" and merged.merged_into_id == kept.id
    assert (merged.support_count, kept.support_count) == (0, 3), "3 people, not 4"
    async with bot.database.uow() as uow:
        supporters = set(
            (
                await uow.session.execute(
                    select(Support.resident_id).where(Support.item_id == kept.id)
                )
            ).scalars()
        )
        followers = set(
            (
                await uow.session.execute(
                    select(Follow.resident_id).where(Follow.item_id == kept.id)
                )
            ).scalars()
        )
        assert len(supporters) == 3 and supporters == followers

    # The merged item points to the other one and is no longer listed.
    await bot.send(only_source, "/start item_TD-02")
    screen = bot.screen(6002)
    assert "Zusammengeführt mit TD-03" in screen["text"]
    assert "📌 TD-03 · Pflege-Lotsen im Stadtteil" in [
        b["text"] for row in screen["reply_markup"]["inline_keyboard"] for b in row
    ]
    [reply] = sent(await bot.send(only_source, "/search Wertschätzung"))
    assert "TD-02" not in reply.visible_text
    # A merged item stays merged.
    [reply] = sent(await bot.send(admin, "/status TD-02 open"))
    assert "ist schon zusammengeführt" in reply.visible_text


@pytest.mark.parametrize("command", ["/status TD-01 done", "/status TD-01 merged TD-02"])
async def test_residents_cannot_change_a_status(bot: BotHarness, command: str) -> None:
    user = await start(bot, OTHER)
    [reply] = sent(await bot.send(user, command))
    assert "nur Moderator*innen" in reply.visible_text
    assert (await item(bot, "TD-01")).status == "open"
