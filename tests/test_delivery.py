"""The sender through the fake Bot API server: announcements reach exactly their audience
once, Telegram's answers (403, 400, 429, 5xx, timeouts) are handled as Telegram means them,
the rate limit holds, an interrupted broadcast resumes without duplicates or gaps, only one
sender works at a time, and recipients are streamed, not loaded at once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from bot.delivery.ratelimit import Pacer
from bot.delivery.sender import SenderConfig
from domain import broadcasts
from domain.broadcasts import Audience
from storage.models import Lease, utcnow
from storage.outbox import OutboxRepository
from storage.uow import Database
from tests.delivery_helpers import (
    ADMIN,
    FAST,
    Kit,
    add_many_residents,
    add_resident,
    blocked_at,
    broadcast_row,
    broadcast_rows,
    counters_match_rows,
    delivered,
    expire_lease,
    follow,
    item_ids,
    mark_blocked,
    recipients,
    refused,
)
from tests.fake_telegram import FakeTelegram, TelegramApiError


@pytest.fixture
async def kit(fake: FakeTelegram, content: Database) -> AsyncIterator[Kit]:
    async with Kit(fake, content) as k:
        yield k


@pytest.fixture
async def sqlite_kit(fake: FakeTelegram, sqlite_url: str) -> AsyncIterator[Kit]:
    async with Database(sqlite_url) as database, Kit(fake, database) as k:
        yield k


async def announce(
    database: Database, text: str, audience: Audience | None = None, **kwargs: Any
) -> int:
    async with database.uow() as uow:
        return await broadcasts.create_announcement(
            uow,
            requested_by=ADMIN,
            html=text,
            audience=audience or Audience("all"),
            **kwargs,
        )


def texts_to(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [c.visible_text or "" for c in delivered(fake, chat_id)]


# --------------------------------------------------------------------------- announcements


async def test_each_audience_reaches_exactly_its_residents_once(
    kit: Kit, fake: FakeTelegram
) -> None:
    db = kit.database
    de_follows_01 = await add_resident(db, fake, 1001, "de")
    en_follows_02 = await add_resident(db, fake, 1002, "en")
    en_unsubscribed = await add_resident(db, fake, 1003, "en", digest=False)
    blocked = await add_resident(db, fake, 1004, "de")
    await add_resident(db, fake, 1005, "de")
    await follow(db, de_follows_01, "TD-01")
    await follow(db, en_follows_02, "TD-02")
    await follow(db, en_unsubscribed, "TD-04")
    await follow(db, blocked, "TD-01")
    await mark_blocked(db, blocked)
    async with db.uow() as uow:
        fields = {f.key: f.id for f in await uow.content.action_fields()}
    ids = await item_ids(db)

    audiences = {
        "everyone": (Audience("all"), {1001, 1002, 1003, 1005}),
        "english": (Audience("language", language="en"), {1002, 1003}),
        "td01": (Audience("item", item_id=ids["TD-01"]), {1001}),
        # TD-01 and TD-04 belong to "Fachkräfte sichern".
        "field": (Audience("field", field_id=fields["fachkraefte"]), {1001, 1003}),
    }
    async with db.uow() as uow:
        counted = {
            name: await broadcasts.count_audience(uow, a) for name, (a, _) in audiences.items()
        }
    assert counted == {name: len(chats) for name, (_, chats) in audiences.items()}
    for name, (audience, _) in audiences.items():
        await announce(db, f"<b>Hinweis</b> an {name} &amp; alle", audience)

    await kit.sender().drain()

    for name, (_, chats) in audiences.items():
        got = {
            c
            for c in range(1001, 1006)
            if any(f"Hinweis an {name} & alle" in t for t in texts_to(fake, c))
        }
        assert got == chats, name
    for chat in range(1001, 1006):
        received = texts_to(fake, chat)
        assert len(received) == len(set(received)), f"{chat} got something twice"
    # The announcement frame is in the resident's language.
    assert texts_to(fake, 1002)[0].startswith("📣 News from the InnoLab")
    assert texts_to(fake, 1001)[0].startswith("📣 Neues vom InnoLab")
    assert delivered(fake, 1004) == []
    assert {row.state for row in await broadcast_rows(db)} == {"done"}


async def test_requester_sees_one_progress_message_edited_to_the_final_counts(
    kit: Kit, fake: FakeTelegram
) -> None:
    db = kit.database
    await add_resident(db, fake, ADMIN, "en")
    for chat in range(1101, 1105):
        await add_resident(db, fake, chat)
    fake.block(1103)
    broadcast_id = await announce(db, "Bitte teilen!", progress_chat_id=ADMIN)

    await kit.sender().drain()

    row = await counters_match_rows(db, broadcast_id)
    assert (row.state, row.total, row.sent, row.skipped) == ("done", 5, 4, 1)
    assert row.progress_message_id is not None
    progress = fake.get_message(ADMIN, row.progress_message_id)
    assert progress is not None
    assert progress["text"].startswith("✅ Sending finished · announcement")
    assert "Sent: 4 of 5" in progress["text"]
    assert "Failed: 0 · skipped: 1" in progress["text"]
    # One progress message (edited), besides the announcement the admin gets as a resident.
    to_admin = [c for c in fake.calls_of("sendMessage", ADMIN) if c.ok]
    assert len(to_admin) == 2
    assert sum("Sending" in (c.visible_text or "") for c in to_admin) == 1
    edits = [c for c in fake.calls_of("editMessageText", ADMIN) if c.ok]
    assert edits and all(c.params["message_id"] == row.progress_message_id for c in edits)


# --------------------------------------------------------------------------- Telegram's answers


@pytest.mark.parametrize(
    ("code", "description"),
    [
        (403, "Forbidden: bot was blocked by the user"),
        (403, "Forbidden: user is deactivated"),
        (400, "Bad Request: chat not found"),
    ],
)
async def test_gone_chat_is_skipped_marked_inactive_and_left_out_next_time(
    kit: Kit, fake: FakeTelegram, code: int, description: str
) -> None:
    db = kit.database
    for chat in range(2001, 2006):
        await add_resident(db, fake, chat)
    fake.fail("sendMessage", error_code=code, description=description, chat_id=2003, times=None)
    first = await announce(db, "Erste Nachricht")
    await kit.sender().drain()

    rows = await recipients(db, first)
    assert rows[2003].state == "skipped" and rows[2003].reason == description
    assert {c: r.state for c, r in rows.items() if c != 2003} == dict.fromkeys(
        (2001, 2002, 2004, 2005), "sent"
    )
    row = await counters_match_rows(db, first)
    assert (row.state, row.sent, row.skipped, row.failed) == ("done", 4, 1, 0)
    assert await blocked_at(db, 2003) is not None
    assert await blocked_at(db, 2002) is None

    # The next broadcast leaves them out.
    second = await announce(db, "Zweite Nachricht")
    async with db.uow() as uow, uow.write():
        assert await uow.outbox.start(second, utcnow())
    assert set(await recipients(db, second)) == {2001, 2002, 2004, 2005}
    assert (await broadcast_row(db, second)).total == 4


async def test_429_waits_retry_after_for_everybody_then_sends_the_same_message(
    sqlite_kit: Kit, fake: FakeTelegram
) -> None:
    db = sqlite_kit.database
    for chat in range(3001, 3009):
        await add_resident(db, fake, chat)
    fake.fail(
        "sendMessage",
        error_code=429,
        description="Too Many Requests: retry after 1",
        chat_id=3004,
        times=1,
        retry_after=1,
    )
    broadcast_id = await announce(db, "Geduld")

    await sqlite_kit.sender(rate=20).drain()

    [limited] = refused(fake, 429)
    later = [c for c in fake.calls if c.timestamp > limited.timestamp + 0.03]
    assert later, "nothing was sent after the 429"
    # Nobody was written to before retry_after had passed.
    assert min(c.timestamp for c in later) >= limited.timestamp + 1.0
    assert [c.visible_text for c in delivered(fake, 3004)] == [
        c.visible_text for c in delivered(fake, 3001)
    ]
    assert all(len(delivered(fake, c)) == 1 for c in range(3001, 3009))
    row = await counters_match_rows(db, broadcast_id)
    assert (row.sent, row.failed, row.skipped) == (8, 0, 0)


async def test_pause_after_429_also_holds_a_send_already_waiting_for_its_turn() -> None:
    pacer = Pacer(10.0)  # one message every ~0.1 s
    await pacer.acquire()
    waiting = asyncio.create_task(pacer.acquire())
    await asyncio.sleep(0)  # the next send now waits for its slot
    paused = time.monotonic()
    pacer.pause(1.0)  # Telegram: 429, retry_after 1
    await waiting
    assert time.monotonic() - paused >= 0.99


async def test_timeouts_and_server_errors_are_retried_a_bounded_number_of_times(
    kit: Kit, fake: FakeTelegram
) -> None:
    db = kit.database
    for chat in range(4001, 4007):
        await add_resident(db, fake, chat)
    fake.fail("sendMessage", error_code=502, description="Bad Gateway", chat_id=4002, times=1)
    fake.fail("sendMessage", error_code=502, description="Bad Gateway", chat_id=4003, times=None)
    fake.fail(
        "sendMessage",
        error_code=400,
        description="Bad Request: can't parse entities",
        chat_id=4005,
        times=None,
    )

    async def slow_for_4004(params: dict[str, Any]) -> Any:
        if params["chat_id"] == 4004:
            await asyncio.sleep(0.4)  # longer than the client waits
            raise TelegramApiError(504, "Gateway Timeout")
        return fake._api_sendmessage(params, {})

    fake.set_handler("sendMessage", slow_for_4004)
    broadcast_id = await announce(db, "Robust")

    await kit.sender(timeout=0.15, max_attempts=2).drain()

    rows = await recipients(db, broadcast_id)
    assert {c: r.state for c, r in rows.items()} == {
        4001: "sent",
        4002: "sent",  # a 502, then through
        4003: "failed",
        4004: "failed",
        4005: "failed",  # a plain 400 is not retried
        4006: "sent",
    }
    assert (rows[4002].attempts, rows[4003].attempts, rows[4004].attempts) == (2, 2, 2)
    assert rows[4003].reason == "502 Bad Gateway"
    assert rows[4004].reason is not None and "Timeout" in rows[4004].reason
    assert rows[4005].reason == "400 Bad Request: can't parse entities"
    assert len(fake.calls_of("sendMessage", 4003)) == 2  # bounded
    assert len(fake.calls_of("sendMessage", 4005)) == 1
    assert len(delivered(fake, 4002)) == 1
    row = await counters_match_rows(db, broadcast_id)
    assert (row.state, row.sent, row.failed, row.skipped) == ("done", 3, 3, 0)
    # Failing to deliver is not a reason to stop writing to someone.
    for chat in (4003, 4004, 4005):
        assert await blocked_at(db, chat) is None


# --------------------------------------------------------------------------- rate


async def test_stays_under_the_servers_rate_limit_without_a_single_429(
    sqlite_kit: Kit, fake: FakeTelegram
) -> None:
    db = sqlite_kit.database
    await add_many_residents(db, fake, 5000, 120)
    fake.rate_limit = (50, 1.0)
    broadcast_id = await announce(db, "Schnell, aber nicht zu schnell")
    started = time.monotonic()

    await sqlite_kit.sender(rate=50).drain()

    elapsed = time.monotonic() - started
    assert fake.stats["rate_limited"] == 0
    assert all(len(delivered(fake, c)) == 1 for c in range(5000, 5120))
    assert (await counters_match_rows(db, broadcast_id)).sent == 120
    # It used the rate: 120 messages at 50 per second take a little more than 2.4 s.
    assert 2.3 < elapsed < 4.5
    stamps = sorted(c.timestamp for c in fake.calls if c.method == "sendMessage")
    assert max(sum(1 for t in stamps[i:] if t < s + 1.0) for i, s in enumerate(stamps)) <= 50


async def test_never_two_messages_to_one_chat_within_a_second(
    sqlite_kit: Kit, fake: FakeTelegram
) -> None:
    db = sqlite_kit.database
    for chat in range(5501, 5507):
        await add_resident(db, fake, chat)
    await announce(db, "Eins")
    await announce(db, "Zwei")

    await sqlite_kit.sender(rate=10).drain()

    for chat in range(5501, 5507):
        first, second = delivered(fake, chat)
        assert second.timestamp - first.timestamp >= 0.98


# --------------------------------------------------------------------------- restarts


async def test_interrupted_broadcast_resumes_without_duplicates_or_gaps(
    kit: Kit, fake: FakeTelegram
) -> None:
    db = kit.database
    await add_many_residents(db, fake, 6000, 60)
    crashed = asyncio.Event()
    release = asyncio.Event()
    answered = 0

    async def crash_after_20(params: dict[str, Any]) -> Any:
        nonlocal answered
        if crashed.is_set():  # in flight when the process dies: never answered
            await release.wait()
            raise TelegramApiError(502, "Bad Gateway")
        result = fake._api_sendmessage(params, {})
        answered += 1
        if answered == 20:
            crashed.set()
        return result

    fake.set_handler("sendMessage", crash_after_20)
    broadcast_id = await announce(db, "Nur einmal, bitte")
    first = kit.sender(holder="first", rate=100)
    running = asyncio.create_task(first.drain())
    await crashed.wait()
    # The process dies: nothing more is written, and its lease stays in the table.
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    lease_before = await lease(db)
    await first.close()
    await restore_lease(db, lease_before)
    release.set()
    fake.set_handler("sendMessage", None)

    answered_chats = {c.chat_id for c in fake.calls if c.ok and c.method == "sendMessage"}
    recorded = {c for c, r in (await recipients(db, broadcast_id)).items() if r.state == "sent"}
    assert recorded <= answered_chats
    assert 0 < len(recorded) < 60
    in_flight = answered_chats - recorded
    assert len(in_flight) <= 10

    second = kit.sender(holder="second")
    await second.drain()  # the dead process's lease has not expired yet
    assert second.stats["calls"] == 0
    await expire_lease(db)
    await second.drain()

    per_chat = Counter(c.chat_id for c in fake.calls if c.ok and c.method == "sendMessage")
    assert set(per_chat) == set(range(6000, 6060))  # nobody left out
    twice = {c for c, n in per_chat.items() if n > 1}
    assert twice <= in_flight  # only what was in flight at the crash went out again
    assert max(per_chat.values()) <= 2
    row = await counters_match_rows(db, broadcast_id)
    assert (row.state, row.sent, row.failed, row.skipped) == ("done", 60, 0, 0)


async def lease(database: Database) -> tuple[str, Any] | None:
    async with database.uow() as uow:
        row = await uow.session.get(Lease, "sender")
        return (row.holder, row.expires_at) if row else None


async def restore_lease(database: Database, value: tuple[str, Any] | None) -> None:
    """Put the crashed process's lease back (a crash does not release it)."""
    assert value is not None
    async with database.uow() as uow, uow.write():
        await uow.leases.release("sender", value[0])
        uow.session.add(Lease(name="sender", holder=value[0], expires_at=value[1]))


async def test_only_one_sender_works_at_a_time_and_another_takes_over(
    kit: Kit, fake: FakeTelegram
) -> None:
    db = kit.database
    for chat in range(7001, 7011):
        await add_resident(db, fake, chat)
    a = kit.sender(holder="process-a")
    b = kit.sender(holder="process-b", lease_ttl=0.5)
    first = await announce(db, "Erste")

    await asyncio.gather(a.drain(), b.drain())

    assert a.stats["sent"] == 10 and b.stats["calls"] == 0
    assert all(len(delivered(fake, c)) == 1 for c in range(7001, 7011))
    assert (await broadcast_row(db, first)).state == "done"

    # A stops (its lease is released): B takes the next broadcast.
    await a.close()
    second = await announce(db, "Zweite")
    await b.drain()
    assert b.stats["sent"] == 10
    assert (await broadcast_row(db, second)).state == "done"

    # B dies without releasing; once its short lease has run out, A works again.
    fake.allow_chat(ADMIN)
    third = await announce(db, "Dritte", progress_chat_id=ADMIN)
    a2 = kit.sender(holder="process-a")
    await a2.drain()
    assert a2.stats["calls"] == 0
    stop = asyncio.Event()
    since = len(fake.calls)
    running = asyncio.create_task(a2.run(stop))
    await fake.wait_for_call(
        lambda c: c.method == "editMessageText" and "abgeschlossen" in (c.visible_text or ""),
        since=since,
    )
    stop.set()
    await running
    assert all(len(delivered(fake, c)) == 3 for c in range(7001, 7011))
    assert (await counters_match_rows(db, third)).sent == 10


# --------------------------------------------------------------------------- memory


@dataclass
class _FewWorkers(SenderConfig):
    @property
    def workers(self) -> int:
        return 16


async def test_recipients_are_streamed_in_batches_not_loaded_at_once(
    sqlite_kit: Kit, fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = sqlite_kit.database
    await add_many_residents(db, fake, 100_000, 2000)
    broadcast_id = await announce(db, "An alle 2000")
    limits: list[int] = []
    fetched = 0
    peak = 0
    original = OutboxRepository.pending

    async def counting_pending(
        self: OutboxRepository, broadcast: int, after: int, limit: int
    ) -> Any:
        nonlocal fetched, peak
        rows = await original(self, broadcast, after, limit)
        limits.append(limit)
        fetched += len(rows)
        peak = max(peak, fetched - fake.stats["calls"]["sendMessage"])
        return rows

    monkeypatch.setattr(OutboxRepository, "pending", counting_pending)
    config = _FewWorkers(**{f: getattr(FAST, f) for f in FAST.__dataclass_fields__})
    sender = sqlite_kit.sender(config=config, rate=5000, batch=100)

    await sender.drain()

    assert (await counters_match_rows(db, broadcast_id)).sent == 2000
    assert fetched == 2000
    assert limits and set(limits) == {100}
    # Held at most: one batch being queued, the queue, and one row per worker.
    bound = 100 + sender._queue.maxsize + config.workers
    assert sender._queue.maxsize <= 2 * 100 + 2 * config.workers
    assert peak <= bound < 2000


async def test_a_graceful_stop_records_what_was_delivered_so_a_restart_repeats_nothing(
    kit: Kit, fake: FakeTelegram
) -> None:
    db = kit.database
    await add_many_residents(db, fake, 7000, 40)
    broadcast_id = await announce(db, "Einmal reicht")
    first = kit.sender(holder="first", rate=40)
    stop = asyncio.Event()
    running = asyncio.create_task(first.run(stop))
    # Stop right after the tenth delivery: its result may still be on the way to the database.
    await fake.wait_for_call(
        lambda c: (
            c.ok
            and c.method == "sendMessage"
            and len([x for x in fake.calls if x.ok and x.method == "sendMessage"]) >= 10
        )
    )
    stop.set()
    await running  # run() closes the sender, which writes what it still had

    delivered_chats = {c.chat_id for c in fake.calls if c.ok and c.method == "sendMessage"}
    recorded = {c for c, r in (await recipients(db, broadcast_id)).items() if r.state == "sent"}
    assert recorded == delivered_chats, "every delivered message is recorded on stop"

    await kit.sender(holder="second").drain()  # the lease was released on stop
    per_chat = Counter(c.chat_id for c in fake.calls if c.ok and c.method == "sendMessage")
    assert set(per_chat) == set(range(7000, 7040))
    assert max(per_chat.values()) == 1, "nobody got it twice"
