"""Notifications to followers: an approved comment reaches the followers who want to hear
right away (not its author, not those who chose the digest or nothing), several events are
merged into one message, nothing goes out in quiet hours; residents choose in Settings and
switch the digest with /subscribe and /unsubscribe."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from domain import broadcasts
from domain.broadcasts import flush_notifications, notify_followers, parse_quiet_hours
from storage.models import NotificationEvent, Resident, utcnow
from storage.uow import Database
from tests.delivery_helpers import (
    BERLIN,
    Kit,
    add_resident,
    approved_comment,
    broadcast_rows,
    counters_match_rows,
    delivered,
    follow,
    item_ids,
    mark_blocked,
)
from tests.fake_telegram import FakeTelegram
from tests.harness import BotHarness, buttons_of

DELAY = dt.timedelta(seconds=600)
QUIET = parse_quiet_hours("22:00-08:00")


@pytest.fixture
async def kit(fake: FakeTelegram, content: Database) -> AsyncIterator[Kit]:
    async with Kit(fake, content) as k:
        yield k


async def flush(database: Database, now: dt.datetime, quiet: object = None) -> int | None:
    async with database.uow() as uow:
        return await flush_notifications(
            uow,
            now,
            delay=DELAY,
            quiet=quiet,  # type: ignore[arg-type]
            tz=BERLIN,
        )


async def waiting_events(database: Database, resident_id: int) -> int:
    async with database.uow() as uow:
        stmt = select(func.count()).where(
            NotificationEvent.resident_id == resident_id, NotificationEvent.broadcast_id.is_(None)
        )
        return (await uow.session.execute(stmt)).scalar_one()


async def test_approved_comment_notifies_only_followers_who_want_it_right_away(
    kit: Kit, fake: FakeTelegram
) -> None:
    db = kit.database
    author = await add_resident(db, fake, 9001)
    instant = await add_resident(db, fake, 9002, "en")
    in_digest = await add_resident(db, fake, 9003, notify="digest")
    off = await add_resident(db, fake, 9004, notify="off")
    await add_resident(db, fake, 9005)  # follows nothing
    blocked = await add_resident(db, fake, 9006)
    for follower in (author, instant, in_digest, off, blocked):
        await follow(db, follower, "TD-01")
    fake.block(9006)
    await mark_blocked(db, blocked)

    await approved_comment(db, author, "TD-01", "Das brauchen wir in Hörde!")
    assert await flush(db, utcnow() + dt.timedelta(seconds=1)) is None  # not yet: merging
    broadcast_id = await flush(db, utcnow() + DELAY + dt.timedelta(seconds=1))
    assert broadcast_id is not None
    await kit.sender().drain()

    [message] = delivered(fake, 9002)
    assert message.visible_text == (
        "🔔 News on what you follow\n\n"
        "📌 TD-01 · Training centre for green-tech jobs\n"
        "💬 1 new comment\n\n"
        "Choose how often you get these in /settings."
    )
    assert message.url_buttons() == {
        "📌 TD-01 · Training centre for green-tech jobs": (
            "https://t.me/todo_test_bot?start=item_TD-01"
        )
    }
    for chat in (9001, 9003, 9004, 9005, 9006):
        assert delivered(fake, chat) == [], chat
    assert fake.calls_of("sendMessage", 9006) == []
    row = await counters_match_rows(db, broadcast_id)
    assert (row.kind, row.state, row.total, row.sent) == ("notification", "done", 1, 1)


async def test_events_within_the_delay_are_merged_into_one_message(
    kit: Kit, fake: FakeTelegram
) -> None:
    db = kit.database
    author = await add_resident(db, fake, 9101)
    reader = await add_resident(db, fake, 9102)
    other = await add_resident(db, fake, 9103)
    await follow(db, reader, "TD-01")
    await follow(db, reader, "TD-03")
    await follow(db, other, "TD-03")
    ids = await item_ids(db)
    started = utcnow()

    await approved_comment(db, author, "TD-01", "Erster Gedanke")
    await approved_comment(db, author, "TD-01", "Zweiter Gedanke")
    await approved_comment(db, author, "TD-03", "Dritter Gedanke")
    async with db.uow() as uow:
        await notify_followers(uow, ids["TD-03"], "status", {"status": "in_progress"})
    sender = kit.sender()

    assert await flush(db, started + DELAY - dt.timedelta(seconds=5)) is None
    first = await flush(db, utcnow() + DELAY)
    assert first is not None
    await sender.drain()

    [merged] = delivered(fake, 9102)
    assert merged.visible_text == (
        "🔔 Neues zu dem, dem du folgst\n\n"
        "📌 TD-01 · Qualifizierungszentrum für Green-Tech-Berufe\n"
        "💬 2 neue Kommentare\n\n"
        "📌 TD-03 · Pflege-Lotsen im Stadtteil\n"
        "🔄 Status: in Arbeit\n"
        "💬 1 neuer Kommentar\n\n"
        "Wie oft du so etwas bekommst, stellst du in /settings ein."
    )
    assert len(merged.url_buttons()) == 2
    [for_other] = delivered(fake, 9103)
    assert "TD-03" in (for_other.visible_text or "") and "TD-01" not in (
        for_other.visible_text or ""
    )
    # The author (following what they commented on) hears of the status, not of their
    # own comments.
    [for_author] = delivered(fake, 9101)
    assert "🔄 Status: in Arbeit" in (for_author.visible_text or "")
    assert "Kommentar" not in (for_author.visible_text or "")
    assert (await counters_match_rows(db, first)).sent == 3

    # What happens later is a new message, with only the new news.
    await approved_comment(db, author, "TD-01", "Vierter Gedanke")
    assert await flush(db, utcnow() + dt.timedelta(seconds=1)) is None
    assert await flush(db, utcnow() + DELAY + dt.timedelta(seconds=1)) is not None
    await sender.drain()
    _, later = delivered(fake, 9102)
    assert "💬 1 neuer Kommentar" in (later.visible_text or "")
    assert "TD-03" not in (later.visible_text or "")
    assert len(delivered(fake, 9103)) == 1 and len(delivered(fake, 9101)) == 1


async def test_nothing_in_quiet_hours_held_events_go_out_in_the_morning(
    kit: Kit, fake: FakeTelegram
) -> None:
    db = kit.database
    author = await add_resident(db, fake, 9201)
    reader = await add_resident(db, fake, 9202)
    await follow(db, reader, "TD-02")
    await approved_comment(db, author, "TD-02", "Spät am Abend")
    tomorrow = (utcnow().astimezone(BERLIN) + dt.timedelta(days=1)).date()

    def at(days: int, hour: int, minute: int = 0) -> dt.datetime:
        return dt.datetime.combine(
            tomorrow + dt.timedelta(days=days), dt.time(hour, minute), tzinfo=BERLIN
        )

    for night in (at(0, 22), at(0, 23, 30), at(1, 3), at(1, 7, 59)):
        assert await flush(db, night, QUIET) is None, night
    assert await waiting_events(db, reader) == 1  # held, not lost
    assert await flush(db, at(1, 8), QUIET) is not None
    await kit.sender().drain()
    [message] = delivered(fake, 9202)
    assert "TD-02" in (message.visible_text or "")
    assert await waiting_events(db, reader) == 0


async def test_sender_holds_notifications_in_its_quiet_hours(kit: Kit, fake: FakeTelegram) -> None:
    """The sender flushes notifications by itself, with the settings' quiet hours."""
    db = kit.database
    author = await add_resident(db, fake, 9301)
    reader = await add_resident(db, fake, 9302)
    await follow(db, reader, "TD-02")
    await approved_comment(db, author, "TD-02", "Jetzt gerade")
    local = utcnow().astimezone(BERLIN)
    around_now = (
        (local - dt.timedelta(hours=1)).time().replace(second=0, microsecond=0),
        (local + dt.timedelta(hours=1)).time().replace(second=0, microsecond=0),
    )

    quiet_sender = kit.sender(holder="night", notify_delay=dt.timedelta(0), quiet=around_now)
    await quiet_sender.drain()
    assert delivered(fake, 9302) == []
    assert await broadcast_rows(db, "notification") == []
    await quiet_sender.close()

    await kit.sender(holder="day", notify_delay=dt.timedelta(0), quiet=None).drain()
    assert len(delivered(fake, 9302)) == 1


# --------------------------------------------------------------------------- through the bot


async def resident_of(bot: BotHarness, telegram_id: int) -> Resident:
    async with bot.database.uow() as uow:
        found = await uow.residents.by_telegram_id(telegram_id)
        assert found is not None
        return found


async def test_choosing_notifications_in_settings(bot: BotHarness) -> None:
    user = bot.user(9401, "de")
    await bot.send(user, "/start")
    me = (await resident_of(bot, 9401)).id
    author = await add_resident(bot.database, bot.fake, 9402)
    await follow(bot.database, me, "TD-01")
    await approved_comment(bot.database, author, "TD-01", "Erster Kommentar")
    assert await waiting_events(bot.database, me) == 1

    await bot.send(user, "/settings")
    assert "🔔 Benachrichtigungen: sofort" in buttons_of(bot.screen(9401))
    await bot.tap(user, "Benachrichtigungen")
    assert buttons_of(bot.screen(9401))[:3] == [
        "✓ Sofort (zusammengefasst)",
        "Nur im Wochenrückblick",
        "Gar nicht",
    ]
    await bot.tap(user, "Nur im Wochenrückblick")

    assert (await resident_of(bot, 9401)).notify_mode == "digest"
    assert "🔔 Benachrichtigungen: nur im Wochenrückblick" in buttons_of(bot.screen(9401))
    assert await waiting_events(bot.database, me) == 0  # what was waiting is dropped
    await approved_comment(bot.database, author, "TD-01", "Zweiter Kommentar")
    assert await waiting_events(bot.database, me) == 0

    await bot.tap(user, "Benachrichtigungen")
    await bot.tap(user, "Sofort")
    assert (await resident_of(bot, 9401)).notify_mode == "instant"
    await approved_comment(bot.database, author, "TD-01", "Dritter Kommentar")
    assert await waiting_events(bot.database, me) == 1

    await bot.tap(user, "Benachrichtigungen")
    await bot.tap(user, "Gar nicht")
    assert (await resident_of(bot, 9401)).notify_mode == "off"
    assert await waiting_events(bot.database, me) == 0


async def test_subscribe_and_unsubscribe_switch_the_digest(bot: BotHarness) -> None:
    user = bot.user(9501, "de")
    await bot.send(user, "/start")
    assert (await resident_of(bot, 9501)).digest_enabled  # on after /start

    await bot.send(user, "/unsubscribe")
    assert bot.screen(9501)["text"].startswith("📭 Du bekommst keinen Wochenrückblick mehr")
    assert not (await resident_of(bot, 9501)).digest_enabled
    async with bot.database.uow() as uow:
        audience = await uow.outbox.count_audience({"type": "digest"})
        everyone = await broadcasts.count_audience(uow, broadcasts.Audience("all"))
    assert (audience, everyone) == (0, 1)  # announcements still reach them

    await bot.send(user, "/settings")
    assert "📬 Wochenrückblick abonnieren" in buttons_of(bot.screen(9501))
    await bot.send(user, "/subscribe")
    assert bot.screen(9501)["text"].startswith("📬 Du bekommst jetzt jede Woche")
    assert (await resident_of(bot, 9501)).digest_enabled
