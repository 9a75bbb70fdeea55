"""The weekly digest through the fake Bot API server: personal and in each resident's
language, empty sections left out, nothing sent when nothing happened, one chart per
language uploaded once, under Telegram's limits, once per week however often it is
triggered and from however many processes, and caught up after the bot was down."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

import bot.delivery.service as service
from bot.delivery.service import Delivery
from bot.rendering import Renderer
from bot.settings import Settings
from domain.importer import import_content
from storage.models import utcnow
from storage.uow import Database
from tests.conftest import TZ, content_raw, make_settings
from tests.delivery_helpers import (
    BERLIN,
    Kit,
    add_resident,
    age_content,
    approved_comment,
    broadcast_rows,
    bulk_support,
    counters_match_rows,
    delivered,
    follow,
    mark_blocked,
    move_activity,
    support,
)
from tests.fake_telegram import ApiCall, FakeTelegram, UploadedFile

#: Monday, 10 June 2024, 09:00 in Dortmund: when the default DIGEST_CRON fires.
MONDAY_9 = dt.datetime(2024, 6, 10, 9, 0, tzinfo=BERLIN)
GRACE_HOURS = 6

ANNA, BEN, CEM, DORA, EMIL = 8001, 8002, 8003, 8004, 8005


@pytest.fixture
def settings(fake: FakeTelegram, db_url: str) -> Settings:
    return make_settings(fake, db_url, digest_grace_hours=GRACE_HOURS)


@pytest.fixture
async def kit(fake: FakeTelegram, content: Database) -> AsyncIterator[Kit]:
    async with Kit(fake, content) as k:
        yield k


@pytest.fixture
def delivery(settings: Settings, content: Database) -> Delivery:
    return Delivery(settings, content, Renderer(BERLIN))


@pytest.fixture
def charts_drawn(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often a chart was drawn, by its title."""
    drawn: Counter[str] = Counter()
    original = service.bar_chart

    def counting(labels: Any, values: Any, *, title: str) -> bytes:
        drawn[title] += 1
        return original(labels, values, title=title)

    monkeypatch.setattr(service, "bar_chart", counting)
    return drawn


async def reimport(database: Database, change: Any) -> None:
    raw = content_raw()
    change(raw)
    async with database.uow() as uow:
        await import_content(uow, raw, TZ)


def add_item_and_recording(raw: dict[str, Any]) -> None:
    raw["items"].append(
        {
            "key": "TD-06",
            "title": {"de": "Sprachkurse im Betrieb", "en": "Language classes at work"},
            "description": {"de": "Deutsch lernen, wo man arbeitet.", "en": "Learn German."},
            "action_field": "fachkraefte",
        }
    )
    [s03] = [s for s in raw["sessions"] if s["key"] == "s03"]
    s03["recordings"] = [{"title": {"de": "Mitschnitt"}, "url": "https://example.org/s03.mp4"}]
    [s02] = [s for s in raw["sessions"] if s["key"] == "s02"]
    s02["highlights"].append({"text": {"de": "Pflege ist Teamarbeit.", "en": "Care is teamwork."}})


async def a_week_of_activity(database: Database, fake: FakeTelegram) -> None:
    """Anna (de) follows TD-01 and TD-02, Ben (en) follows TD-03, Cem (de) follows nothing,
    Dora (en) unsubscribed, Emil (de) blocked the bot. This week: TD-01 got three new
    supporters, TD-03 a new approved comment, TD-06 is new, s02 has a new highlight
    and s03 a new recording."""
    await age_content(database)
    anna = await add_resident(database, fake, ANNA, "de")
    ben = await add_resident(database, fake, BEN, "en")
    await add_resident(database, fake, CEM, "de")
    dora = await add_resident(database, fake, DORA, "en", digest=False)
    emil = await add_resident(database, fake, EMIL, "de")
    quiet_ones = [await add_resident(database, fake, 8100 + n, digest=False) for n in range(3)]
    await support(database, anna, "TD-01")
    await follow(database, anna, "TD-02")
    await follow(database, ben, "TD-03")
    await follow(database, dora, "TD-01")
    await follow(database, emil, "TD-01")
    await support(database, quiet_ones[0], "TD-01")
    await support(database, quiet_ones[1], "TD-01")
    await approved_comment(database, quiet_ones[2], "TD-03", "Gute Idee für Eving!")
    await mark_blocked(database, emil)
    await reimport(database, add_item_and_recording)


def digest_calls(fake: FakeTelegram, chat_id: int) -> list[ApiCall]:
    return delivered(fake, chat_id)


def uploads(fake: FakeTelegram) -> list[ApiCall]:
    return [c for c in fake.calls if c.method == "sendPhoto" and "photo" in c.files]


# --------------------------------------------------------------------------- content


async def test_digest_is_personal_in_each_language_and_leaves_out_empty_sections(
    kit: Kit, fake: FakeTelegram, delivery: Delivery, charts_drawn: Counter[str]
) -> None:
    db = kit.database
    await a_week_of_activity(db, fake)

    created = await delivery.create_digest("digest:test", utcnow())
    assert created is not None
    await kit.sender().drain()

    # Anna: her item with its new supporters; TD-02 (nothing happened) is not mentioned.
    [anna] = digest_calls(fake, ANNA)
    assert anna.method == "sendPhoto"  # short enough for the caption
    text = anna.visible_text or ""
    assert text.startswith("📬 Dein Wochenrückblick")
    assert "🔔 Deine Punkte\nTD-01 Qualifizierungszentrum für Green-Tech-Berufe · 👍 +3" in text
    assert "TD-02" not in text
    assert "🏆 Am meisten unterstützt\n1. TD-01 Qualifizierungszentrum" in text
    assert "🆕 Neue Punkte\nTD-06 Sprachkurse im Betrieb" in text
    assert (
        "🎬 Neu in der Mediathek\nPflege im Quartier · 💡 1 Highlight\n"
        "Straßenfest der Berufe · ▶️ 1 Aufzeichnung"
    ) in text
    assert "/unsubscribe" in text
    assert anna.url_buttons() == {
        "📌 TD-01 · Qualifizierungszentrum für Green-Tech-Berufe": (
            "https://t.me/todo_test_bot?start=item_TD-01"
        ),
        "📌 TD-06 · Sprachkurse im Betrieb": "https://t.me/todo_test_bot?start=item_TD-06",
    }

    # Ben, in English: the new comment on the item he follows.
    [ben] = digest_calls(fake, BEN)
    text = ben.visible_text or ""
    assert text.startswith("📬 Your weekly digest")
    assert "🔔 Your items\nTD-03 Care guides in every district · 💬 +1" in text
    assert "1. TD-01 Training centre for green-tech jobs · 👍 +3" in text
    assert "TD-06 Language classes at work" in text
    assert "Care in the neighbourhood · 💡 1 highlight" in text
    assert "Street festival of trades · ▶️ 1 recording" in text

    # Cem follows nothing: no section of his own, but the news for everyone.
    [cem] = digest_calls(fake, CEM)
    text = cem.visible_text or ""
    assert "Deine Punkte" not in text
    assert "Am meisten unterstützt" in text and "Neue Punkte" in text

    # Unsubscribed and blocked residents get nothing; nor do the others without the digest.
    assert digest_calls(fake, DORA) == [] and digest_calls(fake, EMIL) == []
    assert all(digest_calls(fake, 8100 + n) == [] for n in range(3))
    row = await counters_match_rows(db, created.broadcast_id)
    assert (row.state, row.total, row.sent) == ("done", 3, 3)

    # The chart: drawn once per language, uploaded once per language, then re-sent by id.
    assert charts_drawn == {"Unterstützung nach Handlungsfeld": 1, "Support by action field": 1}
    photos = {c.chat_id: c for c in fake.calls if c.method == "sendPhoto"}
    de_upload, en_upload = sorted(uploads(fake), key=lambda c: c.chat_id == BEN)
    assert de_upload.chat_id in (ANNA, CEM) and en_upload.chat_id == BEN
    other_de = photos[CEM if de_upload.chat_id == ANNA else ANNA]
    assert other_de.params["photo"] == de_upload.response["photo"][-1]["file_id"]
    assert de_upload.files["photo"].data != en_upload.files["photo"].data


async def test_nothing_happened_nothing_is_sent(
    kit: Kit, fake: FakeTelegram, delivery: Delivery, charts_drawn: Counter[str]
) -> None:
    db = kit.database
    await age_content(db)
    for chat in (ANNA, BEN, CEM):
        await add_resident(db, fake, chat)

    created = await delivery.create_digest("digest:quiet", utcnow())
    assert created is not None and created.data.is_empty
    await kit.sender().drain()

    [row] = await broadcast_rows(db, "digest")
    assert (row.state, row.total, row.sent) == ("done", 0, 0)
    assert [c for c in fake.calls if c.method.startswith("send")] == []
    assert not charts_drawn
    # The week is still taken: asking again does not send a digest after all.
    assert await delivery.create_digest("digest:quiet", utcnow()) is None


async def test_only_new_supporters_leave_out_new_items_and_media(
    kit: Kit, fake: FakeTelegram, delivery: Delivery
) -> None:
    db = kit.database
    await age_content(db)
    anna = await add_resident(db, fake, ANNA, "de")
    await support(db, anna, "TD-04")

    await delivery.create_digest("digest:supports", utcnow())
    await kit.sender().drain()

    [call] = digest_calls(fake, ANNA)
    text = call.visible_text or ""
    assert "Deine Punkte" in text and "Am meisten unterstützt" in text
    assert "Neue Punkte" not in text and "Mediathek" not in text


def long_titles(raw: dict[str, Any]) -> None:
    raw["items"] = [
        {
            "key": f"TD-{n:02d}",
            "title": {
                "de": (f"Punkt {n} <Qualifizierung> & Weiterbildung " * 8)[:200],
                "en": (f"Item {n} <training> & further education " * 8)[:200],
            },
            "description": {"de": "Beschreibung", "en": "Description"},
            "action_field": "fachkraefte" if n % 2 else "pflege",
        }
        for n in range(1, 31)
    ]
    for session in raw["sessions"]:
        session["items"] = []
        session["title"] = {"de": ("Session mit sehr langem Titel " * 10)[:200]}
        session["recordings"] = [
            {"title": {"de": "Neu"}, "url": f"https://example.org/{session['key']}-new.mp4"}
        ]
        session.pop("highlights", None)


async def test_digest_stays_under_telegrams_limits_whatever_the_data(
    kit: Kit, fake: FakeTelegram, delivery: Delivery
) -> None:
    db = kit.database
    await reimport(db, long_titles)  # 25 new items, new recordings in every session
    readers = [await add_resident(db, fake, 8200 + n, "de") for n in range(2)]
    await bulk_support(db, readers, [f"TD-{n:02d}" for n in range(1, 31)])

    # A slow upload (as with a real Telegram) must not squeeze photo and text together.
    arrived: dict[int, list[float]] = {}

    async def slow_upload(params: dict[str, Any]) -> Any:
        arrived.setdefault(params["chat_id"], []).append(time.monotonic())
        if isinstance(params.get("photo"), UploadedFile):
            await asyncio.sleep(0.3)
        return fake._api_sendphoto(params, {})

    def message(params: dict[str, Any]) -> Any:
        arrived.setdefault(params["chat_id"], []).append(time.monotonic())
        return fake._api_sendmessage(params, {})

    fake.set_handler("sendPhoto", slow_upload)
    fake.set_handler("sendMessage", message)
    created = await delivery.create_digest("digest:long", utcnow())
    assert created is not None
    await kit.sender().drain()

    assert [c for c in fake.calls if not c.ok] == []
    for n in range(2):
        photo, message = digest_calls(fake, 8200 + n)
        assert (photo.method, message.method) == ("sendPhoto", "sendMessage")
        caption = photo.visible_text or ""
        assert caption.startswith("📊 Unterstützung nach Handlungsfeld")
        text = message.visible_text or ""
        assert text.startswith("📬 Dein Wochenrückblick")
        assert len(text.encode("utf-16-le")) // 2 <= 4096
        assert "<Qualifizierung> & Weiterbildung" in text  # escaped, shown as written
        assert "… und 22 weitere" in text  # 30 followed items, 8 shown
        assert len(message.url_buttons()) <= 8
        # One message a second to one chat, even after waiting for the upload.
        first, second = arrived[8200 + n]
        assert second - first >= 0.95  # (a few ms: the upload is read before it counts)
    assert len(uploads(fake)) == 1


async def test_digest_with_its_picture_stays_under_the_servers_rate_limit(
    sqlite_url: str, fake: FakeTelegram
) -> None:
    """Everyone waiting for the picture's (slow) upload must not go out in one burst."""
    async with Database(sqlite_url) as db, Kit(fake, db) as kit:
        async with db.uow() as uow:
            await import_content(uow, content_raw(), TZ)
        await age_content(db)
        readers = [await add_resident(db, fake, 8400 + n, "de") for n in range(40)]
        await bulk_support(db, readers, ["TD-01"])

        async def slow_upload(params: dict[str, Any]) -> Any:
            if isinstance(params.get("photo"), UploadedFile):
                await asyncio.sleep(0.4)
            return fake._api_sendphoto(params, {})

        fake.set_handler("sendPhoto", slow_upload)
        fake.rate_limit = (30, 1.0)
        delivery = Delivery(make_settings(fake, sqlite_url), db, Renderer(BERLIN))
        created = await delivery.create_digest("digest:burst", utcnow())
        assert created is not None
        await kit.sender(rate=30).drain()

        assert fake.stats["rate_limited"] == 0
        assert all(len(digest_calls(fake, 8400 + n)) == 1 for n in range(40))
        assert (await counters_match_rows(db, created.broadcast_id)).sent == 40


# --------------------------------------------------------------------------- once a week


async def monday_activity(database: Database, fake: FakeTelegram) -> None:
    """Three subscribers; supports on the Sunday before MONDAY_9."""
    await age_content(database)
    for n, chat in enumerate((ANNA, BEN, CEM)):
        resident = await add_resident(database, fake, chat, ("de", "en", "de")[n])
        await support(database, resident, "TD-01")
    await move_activity(database, MONDAY_9 - dt.timedelta(hours=20))


async def test_digest_is_created_once_however_often_it_is_triggered(
    kit: Kit, fake: FakeTelegram, delivery: Delivery
) -> None:
    db = kit.database
    sender = kit.sender()
    await monday_activity(db, fake)
    first = await delivery.check_digest(MONDAY_9)
    assert first is not None
    assert await delivery.check_digest(MONDAY_9 + dt.timedelta(minutes=5)) is None
    assert await delivery.create_digest("digest:2024-W24", MONDAY_9) is None
    await sender.drain()
    assert await delivery.check_digest(MONDAY_9 + dt.timedelta(hours=1)) is None
    await sender.drain()

    [row] = await broadcast_rows(db, "digest")
    assert row.period_key == "digest:2024-W24"
    assert all(len(digest_calls(fake, chat)) == 1 for chat in (ANNA, BEN, CEM))


async def test_two_processes_send_the_digest_once(
    fake: FakeTelegram, content: Database, settings: Settings
) -> None:
    await monday_activity(content, fake)
    async with (
        Database(content.url) as one,
        Database(content.url) as two,
        Kit(fake, one) as kit_one,
        Kit(fake, two) as kit_two,
    ):
        processes = [Delivery(settings, db, Renderer(BERLIN)) for db in (one, two)]
        created = await asyncio.gather(
            *(p.check_digest(MONDAY_9 + dt.timedelta(seconds=1)) for p in processes),
            *(p.check_digest(MONDAY_9 + dt.timedelta(seconds=2)) for p in processes),
        )
        assert sum(c is not None for c in created) == 1
        senders = [kit_one.sender(holder="one"), kit_two.sender(holder="two")]
        await asyncio.gather(*(s.drain() for s in senders))
        await asyncio.gather(*(s.drain() for s in senders))

    [row] = await broadcast_rows(content, "digest")
    assert (row.state, row.sent) == ("done", 3)
    assert all(len(digest_calls(fake, chat)) == 1 for chat in (ANNA, BEN, CEM))
    assert sum(s.stats["sent"] for s in senders) == 3
    assert min(s.stats["calls"] for s in senders) == 0  # one of them did it all


async def test_missed_digest_is_caught_up_within_the_grace_period(
    kit: Kit, fake: FakeTelegram, delivery: Delivery
) -> None:
    db = kit.database
    sender = kit.sender()
    await monday_activity(db, fake)
    # The bot was down at 09:00 and comes back at 12:30: the digest goes out then.
    created = await delivery.check_digest(MONDAY_9 + dt.timedelta(hours=3, minutes=30))
    assert created is not None
    await sender.drain()
    assert all(len(digest_calls(fake, chat)) == 1 for chat in (ANNA, BEN, CEM))
    # Later the same day and the following days: not again.
    for later in (dt.timedelta(hours=5), dt.timedelta(days=1), dt.timedelta(days=6)):
        assert await delivery.check_digest(MONDAY_9 + later) is None
    await sender.drain()
    assert all(len(digest_calls(fake, chat)) == 1 for chat in (ANNA, BEN, CEM))
    [row] = await broadcast_rows(db, "digest")
    assert row.period_key == "digest:2024-W24"


async def test_digest_missed_by_more_than_the_grace_period_is_not_sent(
    kit: Kit, fake: FakeTelegram, delivery: Delivery
) -> None:
    db = kit.database
    sender = kit.sender()
    await monday_activity(db, fake)
    # The week before went out (nothing had happened yet, so it sent nothing).
    assert await delivery.check_digest(MONDAY_9 - dt.timedelta(days=7)) is not None
    # This Monday the bot came back too late, and before 09:00 it is not time yet.
    too_late = MONDAY_9 + dt.timedelta(hours=GRACE_HOURS, minutes=1)
    assert await delivery.check_digest(too_late) is None
    assert await delivery.check_digest(MONDAY_9 - dt.timedelta(minutes=1)) is None
    await sender.drain()
    assert [r.period_key for r in await broadcast_rows(db, "digest")] == ["digest:2024-W23"]
    assert [c for c in fake.calls if c.method.startswith("send")] == []
    # The next Monday's digest comes as usual and covers the missed week too.
    next_week = await delivery.check_digest(MONDAY_9 + dt.timedelta(days=7, minutes=1))
    assert next_week is not None and [c.key for c in next_week.data.top] == ["TD-01"]
    await sender.drain()
    assert all(len(digest_calls(fake, chat)) == 1 for chat in (ANNA, BEN, CEM))


async def test_scheduled_job_sends_the_digest_even_without_a_grace_period(
    fake: FakeTelegram, content: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DIGEST_GRACE_HOURS=0 switches the catch-up off, not the digest: the job, run by
    the scheduler a moment after 09:00, still creates this week's digest."""
    await monday_activity(content, fake)
    delivery = Delivery(
        make_settings(fake, content.url, digest_grace_hours=0), content, Renderer(BERLIN)
    )
    monkeypatch.setattr(service, "utcnow", lambda: MONDAY_9 + dt.timedelta(milliseconds=80))
    await delivery._digest_job(None)  # type: ignore[arg-type]
    [row] = await broadcast_rows(content, "digest")
    assert row.period_key == "digest:2024-W24"
    # The catch-up job, hours later, does not.
    monkeypatch.setattr(service, "utcnow", lambda: MONDAY_9 + dt.timedelta(days=7, hours=2))
    await delivery._catch_up_job(None)  # type: ignore[arg-type]
    assert len(await broadcast_rows(content, "digest")) == 1


async def test_who_wants_no_notifications_gets_the_digest_without_their_items(
    kit: Kit, fake: FakeTelegram, delivery: Delivery
) -> None:
    """ "Not at all" in Settings: no news about followed items, not even in the digest —
    but the digest's news for everyone still comes (the digest is its own subscription)."""
    db = kit.database
    await age_content(db)
    muted = await add_resident(db, fake, ANNA, "de", notify="off")
    listening = await add_resident(db, fake, BEN, "de", notify="digest")
    for resident in (muted, listening):
        await support(db, resident, "TD-01")

    assert await delivery.create_digest("digest:muted", utcnow()) is not None
    await kit.sender().drain()

    [muted_digest] = digest_calls(fake, ANNA)
    [listening_digest] = digest_calls(fake, BEN)
    assert "Deine Punkte" in (listening_digest.visible_text or "")
    assert "Deine Punkte" not in (muted_digest.visible_text or "")
    assert "Am meisten unterstützt" in (muted_digest.visible_text or "")
