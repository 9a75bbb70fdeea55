"""The database connection cut while updates flow: a TCP proxy between the bot and
PostgreSQL is broken and restored (the shared PostgreSQL server itself is never stopped).
The bot answers "please try again" during the outage, leaves nothing half-written, and
recovers after the restore without a restart; the sender and the leader election too."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import DBAPIError

from bot import callbacks as cb
from bot.leader import LeaderElection
from domain import broadcasts
from domain.broadcasts import Audience
from storage.database import is_disconnect
from storage.models import Comment, ProcessedUpdate
from storage.uow import Database
from tests.conftest import _truncate, make_settings
from tests.delivery_helpers import ADMIN, Kit, add_many_residents, broadcast_row
from tests.drills import report
from tests.fake_telegram import ApiCall, FakeTelegram
from tests.harness import BotHarness, datas_of, snapshot
from tests.tcp_proxy import TcpProxy
from tests.test_webhook import webhook_bot, webhook_settings

RESIDENT = 5151
OTHER = 5152
WAIT = 15.0

#: Recovery times measured after `restore()` (seconds), printed at the end of each test.
RECOVERY: dict[str, float] = {}


class Outage:
    """The test database twice: straight (to look) and through the proxy (for the bot)."""

    def __init__(self, proxy: TcpProxy, direct_url: str) -> None:
        self.proxy = proxy
        self.direct_url = direct_url
        self.url = proxy.url_through(direct_url)
        self.direct = Database(direct_url)

    async def processed(self) -> set[int]:
        async with self.direct.uow() as uow:
            rows = await uow.session.execute(select(ProcessedUpdate.update_id))
            return set(rows.scalars())


@pytest.fixture
async def outage(postgres_url: str) -> AsyncIterator[Outage]:
    await _truncate(postgres_url)
    async with TcpProxy.for_url(postgres_url) as proxy:
        setup = Outage(proxy, postgres_url)
        try:
            yield setup
        finally:
            await setup.direct.dispose()


def error_text() -> str:
    from bot.rendering import Renderer
    from tests.conftest import TZ

    return Renderer(TZ).render("error", "de")


async def wait_for_call(
    fake: FakeTelegram, since: int, predicate: Any, within: float = WAIT
) -> ApiCall:
    """The first Bot API call after `since` that matches (the error handler runs after the
    update counts as done, so the harness cannot wait for it)."""
    deadline = time.monotonic() + within
    while True:
        for call in fake.calls[since:]:
            if predicate(call):
                return call
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no matching call; got {[c.summary() for c in fake.calls[since:]]}"
            )
        await asyncio.sleep(0.02)


def is_error_message(chat_id: int) -> Any:
    expected = error_text()
    return lambda c: (
        c.method == "sendMessage"
        and c.chat_id == chat_id
        and (c.visible_text or "") == expected.replace("<b>", "").replace("</b>", "")
    )


def handled_normally(calls: list[ApiCall], chat_id: int) -> bool:
    """The bot answered in the chat, and not with "please try again"."""
    replies = [c for c in calls if c.chat_id == chat_id and c.method == "sendMessage"]
    return bool(replies) and not any(is_error_message(chat_id)(c) for c in replies)


def answered(query_id: str) -> Any:
    return lambda c: (
        c.method == "answerCallbackQuery" and str(c.params.get("callback_query_id")) == query_id
    )


# --------------------------------------------------------------------------- polling


async def test_polling_bot_answers_try_again_during_an_outage_and_recovers(
    fake: FakeTelegram, outage: Outage
) -> None:
    settings = make_settings(fake, outage.url)
    async with BotHarness.running(fake, settings) as bot:
        user, other = bot.user(RESIDENT), bot.user(OTHER)
        calls = await bot.send(user, "/start")
        assert any("Willkommen" in (c.visible_text or "") for c in calls)
        await bot.send(other, "/start")
        welcome = bot.screen(RESIDENT)
        button = datas_of(welcome)[0]
        calls = await bot.press(user, button, welcome["message_id"])
        assert not any(is_error_message(RESIDENT)(c) for c in calls)
        before = await snapshot(outage.direct)
        handled_before = await outage.processed()

        outage.proxy.break_()
        since = len(fake.calls)
        failed_start = fake.add_update(fake.message_update(user, "/start"))
        await bot.wait_handled(failed_start)
        await wait_for_call(fake, since, is_error_message(RESIDENT))

        since = len(fake.calls)
        press = fake.callback_update(other, button, message_id=bot.screen(OTHER)["message_id"])
        failed_press = fake.add_update(press)
        await bot.wait_handled(failed_press)
        await wait_for_call(fake, since, answered(press["callback_query"]["id"]))
        await wait_for_call(fake, since, is_error_message(OTHER))
        assert outage.proxy.refused > 0, "the bot did try the database"

        # Nothing half-written: the failed updates changed nothing and claimed nothing.
        assert await snapshot(outage.direct) == before
        assert await outage.processed() == handled_before

        outage.proxy.restore()
        restored = time.monotonic()
        calls = await bot.send(user, "/start")
        RECOVERY["polling"] = time.monotonic() - restored
        assert handled_normally(calls, RESIDENT)
        calls = await bot.press(other, button, bot.screen(OTHER)["message_id"])
        assert not any(is_error_message(OTHER)(c) for c in calls)
        assert any(c.method == "answerCallbackQuery" for c in calls)
        assert fake.unanswered_callbacks() == []
    report(
        "database gone (polling)",
        "updates and presses while PostgreSQL is cut: 'please try again', nothing written",
        f"first update after restore handled in {RECOVERY['polling']:.3f}s",
    )
    assert RECOVERY["polling"] < 5


async def test_an_outage_in_the_middle_of_a_handler_rolls_back_and_recovers(
    fake: FakeTelegram, outage: Outage
) -> None:
    """The connection is cut in the middle of a handler's write transaction: a comment is
    being stored (the claim is committed, the awaited state already taken in the same
    transaction) when the database goes away. All of it rolls back, the resident is asked
    to try again, and once the database is back the same text is stored, once."""
    settings = make_settings(fake, outage.url)
    async with BotHarness.running(fake, settings) as bot:
        user = bot.user(RESIDENT)
        await bot.send(user, "/start")
        async with outage.direct.uow() as uow:
            item_id = (await uow.content.item_by_key("TD-01")).item.id  # type: ignore[union-attr]
        await bot.press(user, cb.COMMENT.build(iid=item_id, origin="H"), 1)
        before = await snapshot(outage.direct)
        handled_before = await outage.processed()

        def cut_at_the_insert(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.startswith("INSERT INTO comments"):
                outage.proxy.break_()

        engine = bot.database.engine.sync_engine
        event.listen(engine, "before_cursor_execute", cut_at_the_insert)
        try:
            since = len(fake.calls)
            update_id = fake.add_update(fake.message_update(user, "Kurse auch am Abend"))
            await bot.wait_handled(update_id)
        finally:
            event.remove(engine, "before_cursor_execute", cut_at_the_insert)
        assert outage.proxy.broken
        await wait_for_call(fake, since, is_error_message(RESIDENT))
        # Nothing half-written: no comment, no follow, and the bot still awaits the text.
        assert await snapshot(outage.direct) == before
        # Its claim could not be released while the database was away; it is not marked
        # handled, so a redelivery (webhook) takes it over once it is stale.
        async with outage.direct.uow() as uow:
            claim = await uow.session.get(ProcessedUpdate, update_id)
        assert claim is None or claim.handled_at is None
        assert update_id not in handled_before

        outage.proxy.restore()
        restored = time.monotonic()
        calls = await bot.send(user, "Kurse auch am Abend")
        RECOVERY["mid-handler"] = time.monotonic() - restored
        assert handled_normally(calls, RESIDENT)
        async with outage.direct.uow() as uow:
            texts = (await uow.session.execute(select(Comment.text))).scalars().all()
        assert texts == ["Kurse auch am Abend"]


# --------------------------------------------------------------------------- webhook


async def test_webhook_answers_non_200_during_an_outage_and_handles_the_redelivery(
    fake: FakeTelegram, outage: Outage
) -> None:
    async with webhook_bot(fake, webhook_settings(fake, outage.url)) as hook:
        user = fake.user(RESIDENT, language_code="de")
        response, calls = await hook.deliver(fake.message_update(user, "/start"))
        assert response.status_code == 200
        welcome = fake.last_message(RESIDENT)
        assert welcome is not None
        button = datas_of(welcome)[0]
        before = await snapshot(outage.direct)
        handled_before = await outage.processed()

        outage.proxy.break_()
        start_id = fake.add_update(fake.message_update(user, "/start"))
        start = fake.update(start_id)
        press_id = fake.add_update(
            fake.callback_update(user, button, message_id=welcome["message_id"])
        )
        press = fake.update(press_id)
        assert start is not None and press is not None
        for body in (start, press):
            response, _ = await hook.post(body)
            assert response.status_code != 200, "Telegram must deliver it again"
        assert await snapshot(outage.direct) == before
        assert await outage.processed() == handled_before  # no claim left behind

        outage.proxy.restore()
        restored = time.monotonic()
        response, calls = await hook.post(start)  # Telegram's redelivery
        RECOVERY["webhook"] = time.monotonic() - restored
        assert response.status_code == 200
        assert handled_normally(calls, RESIDENT)
        response, calls = await hook.post(press)
        assert response.status_code == 200
        assert any(c.method == "answerCallbackQuery" for c in calls)
        assert {start_id, press_id} <= await outage.processed()
        assert fake.unanswered_callbacks() == []
    report(
        "database gone (webhook)",
        f"redelivered update after restore handled in {RECOVERY['webhook']:.3f}s",
    )
    assert RECOVERY["webhook"] < 5


# --------------------------------------------------------------------------- sender, leader


@pytest.mark.parametrize(
    ("audience", "overrides"),
    [
        # Everything queued at once: the outage hits the writer (results of sends that
        # went out while the database was away).
        (40, {"rate": 50}),
        # A queue smaller than the audience: the outage also hits the next batch's query.
        (100, {"rate": 10, "batch": 10}),
    ],
    ids=["writer", "streaming"],
)
async def test_sender_resumes_a_broadcast_cut_by_an_outage(
    fake: FakeTelegram, outage: Outage, audience: int, overrides: dict[str, Any]
) -> None:
    proxied = Database(outage.url)
    try:
        await add_many_residents(outage.direct, fake, 7000, audience)
        async with outage.direct.uow() as uow:
            broadcast_id = await broadcasts.create_announcement(
                uow, requested_by=ADMIN, html="Trotz Ausfall", audience=Audience("all")
            )
        answered_count = 0

        async def break_after_5(params: dict[str, Any]) -> Any:
            nonlocal answered_count
            result = fake._api_sendmessage(params, {})
            answered_count += 1
            if answered_count == 5:
                outage.proxy.break_()
            return result

        fake.set_handler("sendMessage", break_after_5)
        async with Kit(fake, proxied) as kit:
            sender = kit.sender(**overrides)
            stop = asyncio.Event()
            running = asyncio.create_task(sender.run(stop))
            try:
                deadline = time.monotonic() + WAIT
                while not outage.proxy.broken:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.02)
                await asyncio.sleep(1.0)  # the outage lasts a second
                outage.proxy.restore()
                restored = time.monotonic()
                while (await broadcast_row(outage.direct, broadcast_id)).state != "done":
                    assert time.monotonic() - restored < 60, "the sender did not resume"
                    await asyncio.sleep(0.05)
                RECOVERY["sender"] = time.monotonic() - restored
            finally:
                stop.set()
                await asyncio.wait_for(running, WAIT)
        fake.set_handler("sendMessage", None)
        per_chat = Counter(c.chat_id for c in fake.calls if c.ok and c.method == "sendMessage")
        assert set(per_chat) == set(range(7000, 7000 + audience)), "nobody left out"
        row = await broadcast_row(outage.direct, broadcast_id)
        assert (row.sent, row.failed, row.skipped) == (audience, 0, 0)
        twice = [c for c, n in per_chat.items() if n > 1]
        report(
            "database gone (sender)",
            f"broadcast done {RECOVERY['sender']:.3f}s after restore; sent twice: {len(twice)}",
        )
        assert twice == [], "sent is sent: nobody gets it twice"
    finally:
        await proxied.dispose()


async def test_leader_election_reelects_after_an_outage(outage: Outage) -> None:
    events: list[str] = []
    lost = asyncio.Event()

    async def elected() -> None:
        events.append("elected")

    async def on_lost() -> None:
        events.append("lost")
        lost.set()

    election = LeaderElection(outage.url, retry_seconds=0.2, on_elected=elected, on_lost=on_lost)
    task = asyncio.create_task(election.run())
    try:
        await asyncio.wait_for(election.elected.wait(), WAIT)
        outage.proxy.break_()
        await asyncio.wait_for(lost.wait(), WAIT)
        assert not election.is_leader
        await asyncio.sleep(0.5)  # it keeps trying while the database is away
        outage.proxy.restore()
        restored = time.monotonic()
        await asyncio.wait_for(election.elected.wait(), WAIT)
        RECOVERY["leader"] = time.monotonic() - restored
        assert events == ["elected", "lost", "elected"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    report("database gone (leader)", f"re-elected {RECOVERY['leader']:.3f}s after restore")


async def test_a_cut_connection_counts_as_a_disconnect_a_refused_statement_does_not(
    outage: Outage,
) -> None:
    proxied = Database(outage.url)
    try:
        async with proxied.engine.connect() as connection:
            with pytest.raises(DBAPIError) as refused:
                await connection.execute(text("SELECT no_such_column FROM residents"))
            assert not is_disconnect(refused.value)
        async with proxied.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            outage.proxy.break_()
            with pytest.raises(Exception) as cut:  # whatever the driver raises
                await connection.execute(text("SELECT 1"))
            assert is_disconnect(cut.value), repr(cut.value)
        with pytest.raises(Exception) as unreachable:
            async with proxied.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert is_disconnect(unreachable.value), repr(unreachable.value)
        assert not is_disconnect(ValueError("no database involved"))
    finally:
        outage.proxy.restore()
        await proxied.dispose()
