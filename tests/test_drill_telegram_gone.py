"""Fault drill "Telegram gone": the Bot API first refuses connections (the fake stops
listening on its port), then answers 502 (an HTML error page, like the proxy in front of
the Bot API) and 500 to every method, then comes back.

The real bot runs (python-telegram-bot polling and the sender in one process, as
`todo-bot run` does) while a broadcast is going out and residents keep writing. While
Telegram is gone, polling backs off (its attempts are counted and bounded) and the sender
pauses; afterwards the updates queued meanwhile are handled exactly once and in order per
resident, and the broadcast finishes: nobody is left out, nobody gets it twice, and the
outbox marks nothing sent that Telegram did not accept. The bot keeps running and no
resident sees a stack trace. The numbers go to the "fault drills" summary."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, update
from telegram import Update

from bot import callbacks as cb
from bot.metrics import Metrics
from bot.settings import Settings
from domain import broadcasts
from domain.broadcasts import Audience
from storage.models import Lease, Resident, Support, utcnow
from storage.uow import Database
from tests.conftest import make_settings
from tests.delivery_helpers import (
    ADMIN,
    Kit,
    add_many_residents,
    broadcast_row,
    counters_match_rows,
    item_ids,
    recipients,
)
from tests.drills import report
from tests.fake_telegram import ApiCall, FakeTelegram
from tests.harness import BotHarness, datas_of
from tests.harness import until as poll_until

#: Residents who write while Telegram is gone, and the rest of the broadcast's audience.
WRITERS = [7101, 7102, 7103, 7104]
AUDIENCE_FIRST, AUDIENCE = 7200, 60
MARKER = "Rundbrief trotz Funkstille"
#: Messages per second of the broadcast: it takes a few seconds, so the outage hits it.
RATE = 20.0
#: How long Telegram refuses connections, then how long it answers 502 and then 500.
REFUSED_FOR = 3.0
BAD_GATEWAY_FOR = 1.5
SERVER_ERROR_FOR = 1.5
#: The sender's first pause after an error (1 s by default; shorter keeps the drill short,
#: and without the fix its 4 attempts would all fail within the outage all the same).
SENDER_BACKOFF = 0.5
WAIT = 30.0
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class DrillHarness(BotHarness):
    """The harness, also noting when each update was handled (in handling order)."""

    def __init__(self, fake: FakeTelegram, settings: Settings, database: Database) -> None:
        super().__init__(fake, settings, database)
        self.handled: list[tuple[int, float]] = []

    async def _on_done(self, update: object) -> None:
        if isinstance(update, Update):
            self.handled.append((update.update_id, time.monotonic()))
        await super()._on_done(update)


async def until(what: str, check: Callable[[], Any], timeout: float = WAIT) -> Any:  # noqa: ASYNC109
    return await poll_until(what, check, timeout)


def api_calls(metrics: Metrics, client: str, method: str, *, code: str | None = None) -> int:
    """Bot API calls the bot's own clients counted (code "0": no answer at all)."""
    total = 0.0
    for metric in metrics.registry.collect():
        if metric.name != "todo_bot_api_calls":
            continue
        for sample in metric.samples:
            labels = sample.labels
            if (
                sample.name.endswith("_total")
                and labels.get("client") == client
                and labels.get("method") == method
                and (code is None or labels.get("code") == code)
            ):
                total += sample.value
    return int(total)


def is_marker(call: ApiCall) -> bool:
    return call.method == "sendMessage" and MARKER in (call.visible_text or "")


def accepted(fake: FakeTelegram) -> Counter[int]:
    """The broadcast as Telegram accepted it, per chat."""
    return Counter(int(c.chat_id or 0) for c in fake.calls if c.ok and is_marker(c))


def replies(fake: FakeTelegram, chat_id: int, since: int = 0) -> list[str]:
    """What the bot showed the resident (new messages and edits), in order."""
    return [
        c.visible_text or ""
        for c in fake.calls[since:]
        if c.ok
        and c.chat_id == chat_id
        and c.method in ("sendMessage", "editMessageText")
        and not is_marker(c)
    ]


# --------------------------------------------------------------------------- the fake itself


async def test_the_fake_can_go_away_come_back_and_fail_every_method() -> None:
    async with FakeTelegram(call_delay=0.2) as fake, aiohttp.ClientSession() as session:
        base = f"{fake.url}/bot{fake.token}"

        async def get_me() -> tuple[int, str]:
            async with session.post(f"{base}/getMe") as response:
                return response.status, response.content_type

        slow = asyncio.ensure_future(get_me())
        await until("a call in flight", lambda: fake.in_flight == 1, 5)
        await fake.go_away()  # the call in flight is still answered
        assert await slow == (200, "application/json")
        assert fake.in_flight == 0 and fake.gone
        before = len(fake.calls)
        with pytest.raises(aiohttp.ClientConnectionError):
            await get_me()
        assert len(fake.calls) == before, "nothing reaches a fake that is gone"
        await fake.go_away()  # twice is harmless

        fake.fail("*", error_code=502, description="Bad Gateway", times=None, body=NGINX_502)
        await fake.come_back()
        assert not fake.gone
        assert await get_me() == (502, "text/html")
        async with session.post(f"{base}/getUpdates", json={"timeout": 0}) as response:
            assert response.status == 502 and "nginx" in await response.text()
        assert [c.error_code for c in fake.calls[before:]] == [502, 502]
        fake.clear_failures()
        assert await get_me() == (200, "application/json")
        await fake.wait_until_idle()


async def test_the_sender_waits_out_an_outage_and_counts_no_attempt_for_it(
    fake: FakeTelegram, sqlite_url: str
) -> None:
    """The sender alone, with tiny back-off (every recipient's attempts would be used up in
    milliseconds): an outage marks nobody failed; errors while Telegram is up still count
    (tests/test_delivery.py: a chat that keeps getting 502 ends up failed)."""
    async with Database(sqlite_url) as database, Kit(fake, database) as kit:
        await add_many_residents(database, fake, AUDIENCE_FIRST, 30)
        async with database.uow() as uow:
            broadcast_id = await broadcasts.create_announcement(
                uow, requested_by=ADMIN, html=MARKER, audience=Audience("all")
            )
        await fake.go_away()
        sender = kit.sender(rate=50.0, max_attempts=2, backoff=0.05)
        draining = asyncio.ensure_future(sender.drain(timeout=WAIT))
        await until("the sender to pause", lambda: sender.stats["outages"] == 1)
        fake.fail("*", error_code=502, description="Bad Gateway", times=None, body=NGINX_502)
        await fake.come_back()
        await fake.wait_for_method("getMe", ok=False)  # still probing, not sending
        fake.clear_failures()
        await draining
        sends_in_outage = [c for c in fake.calls if c.method == "sendMessage" and not c.ok]
        assert sends_in_outage == [], "nobody sends while the probe says Telegram is away"
        assert sender.stats["outages"] == 1
        row = await counters_match_rows(database, broadcast_id)
        assert (row.state, row.sent, row.failed, row.skipped) == ("done", 30, 0, 0)
        assert all(n == 1 for n in accepted(fake).values()) and len(accepted(fake)) == 30
        attempts = {r.attempts for r in (await recipients(database, broadcast_id)).values()}
        assert attempts == {1}, "the outage cost nobody an attempt"


async def test_a_sender_that_lost_its_lease_during_an_outage_sends_nothing_after_it(
    fake: FakeTelegram, sqlite_url: str
) -> None:
    """Messages waiting for their turn while Telegram is away are not sent when it comes
    back if the lease went to another process meanwhile (that one sends them)."""
    async with Database(sqlite_url) as database, Kit(fake, database) as kit:
        await add_many_residents(database, fake, AUDIENCE_FIRST, 30)
        async with database.uow() as uow:
            broadcast_id = await broadcasts.create_announcement(
                uow, requested_by=ADMIN, html=MARKER, audience=Audience("all")
            )
        await fake.go_away()
        sender = kit.sender(rate=50.0, backoff=0.05)
        stop = asyncio.Event()
        running = asyncio.create_task(sender.run(stop))
        try:
            await until("the sender to pause", lambda: sender.stats["outages"] == 1)
            async with database.uow() as uow, uow.write():  # another process takes over
                await uow.session.execute(
                    update(Lease).values(holder="other", expires_at=utcnow() + dt.timedelta(1))
                )
            await until("the lease to be gone", lambda: not sender.has_lease)
            await fake.come_back()
            await until("the sender to give its rows back", lambda: not sender._active)
        finally:
            stop.set()
            await running
        assert fake.calls_of("sendMessage") == [], "sent without the lease"
        states = {r.state for r in (await recipients(database, broadcast_id)).values()}
        assert states == {"pending"}


# --------------------------------------------------------------------------- the drill


async def test_telegram_gone_polling_backs_off_the_sender_pauses_and_both_resume(
    fake: FakeTelegram, db_url: str
) -> None:
    backend = db_url.split(":", 1)[0].split("+", 1)[0]
    settings = make_settings(fake, db_url, broadcast_max_rate=RATE)
    async with DrillHarness.running(fake, settings) as bot:
        assert isinstance(bot, DrillHarness)
        metrics: Metrics = bot.app.bot_data["metrics"]
        delivery = bot.app.bot_data["services"].delivery
        sender = delivery.sender
        sender.config.backoff = SENDER_BACKOFF
        iid = (await item_ids(bot.database))["TD-02"]

        # Before: every writer opens an item card; the presses later go to that card.
        users = {rid: bot.user(rid) for rid in WRITERS}
        cards: dict[int, int] = {}
        for rid, user in users.items():
            await bot.send(user, "/start item_TD-02")
            card = bot.screen(rid)
            assert any(d.startswith(f"sup:{iid}:1:") for d in datas_of(card))
            cards[rid] = card["message_id"]
        origin = next(d for d in datas_of(bot.screen(WRITERS[0])) if d.startswith("sup:"))
        origin = origin.rsplit(":", 1)[1]

        def press(rid: int, on: int) -> int:
            data = cb.SUPPORT.build(iid=iid, on=on, origin=origin)
            return fake.send_callback(users[rid], data, message_id=cards[rid])

        # A broadcast to everybody (the writers and 60 more), going out at RATE per second.
        await add_many_residents(bot.database, fake, AUDIENCE_FIRST, AUDIENCE)
        async with bot.database.uow() as uow:
            broadcast_id = await broadcasts.create_announcement(
                uow, requested_by=ADMIN, html=f"<b>{MARKER}</b>", audience=Audience("all")
            )
        delivery.wake()
        audience = set(WRITERS) | set(range(AUDIENCE_FIRST, AUDIENCE_FIRST + AUDIENCE))
        await until("a quarter of the broadcast", lambda: sum(accepted(fake).values()) >= 16)

        # ---- (a) Telegram refuses connections
        polls_before = api_calls(metrics, "bot", "getUpdates")
        sends_before = api_calls(metrics, "sender", "sendMessage")
        probes_before = api_calls(metrics, "sender", "getMe")
        went = time.monotonic()
        await fake.go_away()
        sent_before_outage = sum(accepted(fake).values())
        since = len(fake.calls)
        queued: dict[int, list[int]] = {rid: [] for rid in WRITERS}
        for rid, user in users.items():  # the residents keep writing: queued at Telegram
            queued[rid].append(fake.send_message(user, "/help"))
            queued[rid].append(press(rid, 1))
        await until("polling to fail", lambda: api_calls(metrics, "bot", "getUpdates", code="0"))
        await until(
            "the sender to hit the outage",
            lambda: api_calls(metrics, "sender", "sendMessage", code="0"),
        )
        await asyncio.sleep(max(0.0, went + REFUSED_FOR - time.monotonic()))  # the outage

        # ---- (b) Telegram answers 502 (an HTML page), then 500, to every method
        fake.fail("*", error_code=502, description="Bad Gateway", times=None, body=NGINX_502)
        await fake.come_back()
        for rid in WRITERS:
            queued[rid].append(press(rid, 0))
        await asyncio.sleep(BAD_GATEWAY_FOR)  # the outage goes on
        fake.clear_failures()
        fake.fail("*", error_code=500, description="Internal Server Error", times=None)
        for rid, user in users.items():
            queued[rid].append(press(rid, 1))
            queued[rid].append(fake.send_message(user, "/myitems"))
        await asyncio.sleep(SERVER_ERROR_FOR)  # the outage goes on

        # ---- Telegram is back
        fake.clear_failures()
        back = time.monotonic()
        outage = back - went
        polls = api_calls(metrics, "bot", "getUpdates") - polls_before
        sends = api_calls(metrics, "sender", "sendMessage") - sends_before
        probes = api_calls(metrics, "sender", "getMe") - probes_before
        recorded = await recipients(bot.database, broadcast_id)
        sent_rows = {chat for chat, r in recorded.items() if r.state == "sent"}
        unaccepted = sent_rows - set(accepted(fake))
        answered_in_outage = [c for c in fake.calls[since:] if c.ok]
        assert answered_in_outage == [], [c.summary() for c in answered_in_outage]
        everything = [u for ids in queued.values() for u in ids]
        assert not any(u in everything for u, _ in bot.handled), "handled while gone?"
        for update_id in everything:
            await bot.wait_handled(update_id, timeout=WAIT)
        handled_at = {u: t for u, t in bot.handled}
        first_update = min(handled_at[u] for u in everything) - back
        all_updates = max(handled_at[u] for u in everything) - back

        async def finished() -> bool:
            return (await broadcast_row(bot.database, broadcast_id)).state == "done"

        await until("the broadcast to finish", finished)
        broadcast_done = time.monotonic() - back

        # The bot is still running: polling, the sender, the application.
        assert bot.app.running and bot.app.updater.running
        assert delivery._task is not None and not delivery._task.done()
        settled = len(fake.calls)
        await bot.send(users[WRITERS[0]], "/help")  # and answers as usual
        assert replies(fake, WRITERS[0], settled)

        # Support, withdraw, support again: only handled in this order does it end supported.
        async with bot.database.uow() as uow:
            rows = await uow.session.execute(
                select(Resident.telegram_id)
                .join(Support, Support.resident_id == Resident.id)
                .where(Support.item_id == iid)
            )
            supporters = sorted(rows.scalars())
            support_count = await uow.engagement.support_count(iid)
        outbox = await counters_match_rows(bot.database, broadcast_id)
        states = Counter(r.state for r in (await recipients(bot.database, broadcast_id)).values())

    # ---- every queued update handled exactly once, in order per resident
    order = [u for u, _ in bot.handled]
    for rid, ids in queued.items():
        assert [u for u in order if u in ids] == ids, f"resident {rid}: order {order}"
    assert all(n == 1 for n in Counter(order).values()), "an update was handled twice"
    assert supporters == WRITERS and support_count == len(WRITERS)
    for rid in WRITERS:
        shown = replies(fake, rid)
        assert not any("Traceback" in t or "Error" in t for t in shown), shown
    assert fake.unanswered_callbacks() == []

    # ---- the broadcast: everybody once, nothing marked sent that Telegram did not accept
    per_chat = accepted(fake)
    duplicates = sum(n - 1 for n in per_chat.values())
    missing = audience - set(per_chat)
    report(
        f"Telegram gone ({backend})",
        f"tried: broadcast to {len(audience)} at {RATE:g}/s cut after "
        f"{sent_before_outage} messages; {outage:.1f} s without Telegram: connections refused "
        f"{REFUSED_FOR:g} s, then 502 (HTML page) {BAD_GATEWAY_FOR:g} s and 500 "
        f"{SERVER_ERROR_FOR:g} s for every method; {len(everything)} updates of "
        f"{len(WRITERS)} residents queued meanwhile",
        f"polling: {polls} getUpdates attempts in the outage (back-off, no hot loop); "
        f"first queued update handled {first_update:.2f} s after Telegram was back, "
        f"all {len(everything)} after {all_updates:.2f} s, each once, in order per resident",
        f"sender: {sends} send(s) + {probes} getMe probes in the outage, paused otherwise; "
        f"marked sent but not accepted when it came back: {len(unaccepted)}; broadcast done "
        f"{broadcast_done:.2f} s after Telegram was back; outbox sent/failed/skipped "
        f"{outbox.sent}/{outbox.failed}/{outbox.skipped}; duplicates {duplicates}, missing "
        f"{len(missing)}; bot still running",
    )
    assert unaccepted == set()
    assert missing == set(), sorted(missing)
    assert duplicates == 0, {c: n for c, n in per_chat.items() if n > 1}
    assert states == Counter({"sent": len(audience)}), states
    assert (outbox.sent, outbox.failed, outbox.skipped) == (len(audience), 0, 0)
    assert polls <= outage + 2, f"{polls} getUpdates attempts in {outage:.1f} s: a hot loop"
    assert probes <= outage / SENDER_BACKOFF + 2
    assert sends <= 5, f"{sends} sends while Telegram was away: the sender did not pause"
    assert first_update < 10 and broadcast_done < 20
