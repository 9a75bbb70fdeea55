"""Helpers for the delivery tests: residents and activity in the database, senders pointed
at the fake Bot API server, and reading back what was delivered."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, update

from bot.delivery.api import BotApi
from bot.delivery.sender import Sender, SenderConfig
from bot.rendering import Renderer
from domain import comments, items
from storage.models import (
    Broadcast,
    BroadcastRecipient,
    Comment,
    Follow,
    Highlight,
    Item,
    Lease,
    Recording,
    Resident,
    Support,
    utcnow,
)
from storage.uow import Database
from tests.fake_telegram import ApiCall, FakeTelegram

BERLIN = ZoneInfo("Europe/Berlin")
ADMIN = 900001
#: Fast enough for tests; the notification flush inside the sender's step never fires
#: (tests call flush_notifications with their own `now`).
FAST = SenderConfig(
    rate=500.0,
    batch=100,
    max_attempts=3,
    backoff=0.01,
    lease_ttl=10.0,
    poll=0.05,
    progress_every=0.1,
    notify_delay=dt.timedelta(days=3650),
    quiet=None,
    tz=BERLIN,
)
LONG_AGO = dt.datetime(2020, 1, 6, 9, 0, tzinfo=dt.UTC)


class Kit:
    """Senders (each with its own Bot API client) against the fake; closed at the end."""

    def __init__(self, fake: FakeTelegram, database: Database) -> None:
        self.fake = fake
        self.database = database
        self.renderer = Renderer(BERLIN)
        self._senders: list[Sender] = []
        self._apis: list[BotApi] = []

    def sender(
        self,
        *,
        holder: str | None = None,
        database: Database | None = None,
        timeout: float = 15.0,
        config: SenderConfig = FAST,
        **overrides: Any,
    ) -> Sender:
        api = BotApi(self.fake.url, self.fake.token, timeout=timeout)
        sender = Sender(
            database or self.database,
            self.renderer,
            api,
            self.fake.bot_username,
            replace(config, **overrides),
            holder=holder,
        )
        self._apis.append(api)
        self._senders.append(sender)
        return sender

    async def __aenter__(self) -> Kit:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sender in self._senders:
            await sender.close()
        for api in self._apis:
            await api.close()


# --------------------------------------------------------------------------- residents


async def add_resident(
    database: Database,
    fake: FakeTelegram,
    telegram_id: int,
    language: str = "de",
    *,
    digest: bool = True,
    notify: str = "instant",
) -> int:
    """A resident who has started the bot (so the fake lets the bot write to them)."""
    fake.allow_chat(telegram_id)
    async with database.uow() as uow, uow.write():
        resident, _ = await uow.residents.ensure(telegram_id, language)
        await uow.session.execute(
            update(Resident)
            .where(Resident.id == resident.id)
            .values(digest_enabled=digest, notify_mode=notify)
        )
        return resident.id


async def add_many_residents(
    database: Database, fake: FakeTelegram, first_telegram_id: int, count: int, language: str = "de"
) -> None:
    """Many residents at once (pseudonyms are simply their number)."""
    now = utcnow()
    rows = [
        {
            "telegram_id": first_telegram_id + n,
            "language": language,
            "pseudonym": 50_000_000 + first_telegram_id + n,
            "created_at": now,
        }
        for n in range(count)
    ]
    for n in range(count):
        fake.allow_chat(first_telegram_id + n)
    async with database.uow() as uow, uow.write():
        await uow.session.execute(insert(Resident), rows)


async def mark_blocked(database: Database, resident_id: int) -> None:
    """The resident blocked the bot earlier (Telegram told us)."""
    async with database.uow() as uow, uow.write():
        await uow.session.execute(
            update(Resident).where(Resident.id == resident_id).values(blocked_at=utcnow())
        )


async def blocked_at(database: Database, telegram_id: int) -> dt.datetime | None:
    async with database.uow() as uow:
        resident = await uow.residents.by_telegram_id(telegram_id)
        assert resident is not None
        return resident.blocked_at


# --------------------------------------------------------------------------- content


async def item_ids(database: Database) -> dict[str, int]:
    async with database.uow() as uow:
        return {k: i for k, i in await uow.session.execute(select(Item.key, Item.id))}


async def age_content(database: Database, when: dt.datetime = LONG_AGO) -> None:
    """Make the imported items, recordings and highlights old news."""
    async with database.uow() as uow, uow.write():
        for model in (Item, Recording, Highlight):
            await uow.session.execute(update(model).values(created_at=when))


async def support(database: Database, resident_id: int, key: str) -> None:
    """The resident supports the item (and so follows it)."""
    ids = await item_ids(database)
    async with database.uow() as uow:
        assert await items.set_support(uow, resident_id, ids[key], True) is not None


async def bulk_support(database: Database, resident_ids: list[int], keys: list[str]) -> None:
    """Many supports (and so follows) at once, now (the digest counts the support rows)."""
    ids = await item_ids(database)
    now = utcnow()
    pairs = [
        {"resident_id": r, "item_id": ids[k], "created_at": now} for r in resident_ids for k in keys
    ]
    async with database.uow() as uow, uow.write():
        await uow.session.execute(insert(Support), pairs)
        await uow.session.execute(insert(Follow), pairs)
        await uow.support_counts.rebuild()  # rows written directly: recount the hours


async def follow(database: Database, resident_id: int, key: str) -> None:
    ids = await item_ids(database)
    async with database.uow() as uow:
        assert await items.set_follow(uow, resident_id, ids[key], True) is not None


async def approved_comment(database: Database, author_id: int, key: str, text: str) -> int:
    """The author comments on the item and a moderator approves it."""
    ids = await item_ids(database)
    async with database.uow() as uow:
        assert await comments.start_comment(uow, author_id, ids[key], "item")
        outcome = await comments.submit_comment(uow, author_id, text)
        assert outcome.comment_id is not None
        decision = await comments.decide(uow, outcome.comment_id, True, ADMIN, "@mod", "de")
        assert decision is not None and decision.won
        return outcome.comment_id


async def move_activity(database: Database, when: dt.datetime) -> None:
    """Let every support and approved comment so far have happened at `when`."""
    async with database.uow() as uow, uow.write():
        await uow.session.execute(update(Support).values(created_at=when))
        await uow.session.execute(
            update(Comment).where(Comment.status == "approved").values(decided_at=when)
        )
        await uow.support_counts.rebuild()  # rows changed directly: recount the hours


# --------------------------------------------------------------------------- outcomes


async def broadcast_row(database: Database, broadcast_id: int) -> Broadcast:
    async with database.uow() as uow:
        row = await uow.outbox.get(broadcast_id)
        assert row is not None
        return row


async def broadcast_rows(database: Database, kind: str | None = None) -> list[Broadcast]:
    async with database.uow() as uow:
        stmt = select(Broadcast).order_by(Broadcast.id)
        if kind is not None:
            stmt = stmt.where(Broadcast.kind == kind)
        return list((await uow.session.execute(stmt)).scalars())


async def recipients(database: Database, broadcast_id: int) -> dict[int, BroadcastRecipient]:
    """The broadcast's recipient rows by chat id."""
    async with database.uow() as uow:
        rows = await uow.session.execute(
            select(BroadcastRecipient).where(BroadcastRecipient.broadcast_id == broadcast_id)
        )
        return {r.chat_id: r for r in rows.scalars()}


async def counters_match_rows(database: Database, broadcast_id: int) -> Broadcast:
    """The counters on the broadcast row agree with its recipient rows."""
    row = await broadcast_row(database, broadcast_id)
    states = [r.state for r in (await recipients(database, broadcast_id)).values()]
    assert row.total == len(states)
    assert (row.sent, row.failed, row.skipped) == (
        states.count("sent"),
        states.count("failed"),
        states.count("skipped"),
    )
    return row


async def expire_lease(database: Database) -> None:
    """Time passes: whoever held the sender lease has lost it."""
    async with database.uow() as uow, uow.write():
        await uow.session.execute(
            update(Lease).values(expires_at=utcnow() - dt.timedelta(seconds=1))
        )


def delivered(fake: FakeTelegram, chat_id: int, *, since: int = 0) -> list[ApiCall]:
    """Messages and photos the fake accepted for this chat."""
    return [
        c
        for c in fake.calls[since:]
        if c.ok and c.method in ("sendMessage", "sendPhoto") and c.chat_id == chat_id
    ]


def refused(fake: FakeTelegram, code: int) -> list[ApiCall]:
    return [c for c in fake.calls if c.error_code == code]
