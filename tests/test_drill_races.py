"""Fault drill "races": one resident presses the Support button of one item 50 times at
once, and Telegram delivers one of those presses twice (twice in one getUpdates batch, and
once more later, as after a restart). Exactly one support comes out: one row, a counter of
one, a card that says so, every press answered. Then the same race below the bot's
per-resident ordering: 50 concurrent transactions setting the support directly, as two web
replicas could. On SQLite and PostgreSQL; the numbers go to the "fault drills" summary.

(tests/test_bad_input.py presses five times at once, on SQLite only.)"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter

from sqlalchemy import func, select
from telegram import Update

from bot.metrics import Metrics
from bot.settings import Settings
from domain import items
from storage.models import Follow, Item, Support
from storage.uow import Database
from tests.conftest import make_settings
from tests.delivery_helpers import item_ids
from tests.drills import report
from tests.fake_telegram import FakeTelegram
from tests.harness import BotHarness, buttons_of, datas_of

PRESSES = 50
RESIDENT = 7301
KEY = "TD-02"


class CountingHarness(BotHarness):
    """The harness, also counting how often each update id came through the processor."""

    def __init__(self, fake: FakeTelegram, settings: Settings, database: Database) -> None:
        super().__init__(fake, settings, database)
        self.seen: Counter[int] = Counter()

    async def _on_done(self, update: object) -> None:
        if isinstance(update, Update):
            self.seen[update.update_id] += 1
        await super()._on_done(update)


async def support_rows(database: Database, item_id: int) -> tuple[int, int, int]:
    """(support rows, follow rows, the item's support counter) for the item."""
    async with database.uow() as uow:
        supports = await uow.session.scalar(
            select(func.count()).select_from(Support).where(Support.item_id == item_id)
        )
        follows = await uow.session.scalar(
            select(func.count()).select_from(Follow).where(Follow.item_id == item_id)
        )
        counter = await uow.session.scalar(select(Item.support_count).where(Item.id == item_id))
    return int(supports or 0), int(follows or 0), int(counter or 0)


def duplicates_counted(metrics: Metrics) -> int:
    total = 0.0
    for metric in metrics.registry.collect():
        for sample in metric.samples:
            if sample.name == "todo_bot_updates_total" and sample.labels["outcome"] == "duplicate":
                total += sample.value
    return int(total)


async def test_fifty_presses_and_a_twice_delivered_update_give_one_support(
    fake: FakeTelegram, db_url: str
) -> None:
    backend = db_url.split(":", 1)[0].split("+", 1)[0]
    # Allow all 50 presses (30 a minute by default): every one of them reaches the database.
    settings = make_settings(fake, db_url, actions_per_minute=1000)
    async with CountingHarness.running(fake, settings) as bot:
        assert isinstance(bot, CountingHarness)
        iid = (await item_ids(bot.database))[KEY]
        alice = bot.user(RESIDENT)
        await bot.send(alice, f"/start item_{KEY}")
        card = bot.screen(RESIDENT)
        support = next(d for d in datas_of(card) if d.startswith(f"sup:{iid}:1:"))

        presses = [
            fake.callback_update(alice, support, message_id=card["message_id"])
            for _ in range(PRESSES)
        ]
        ids = [fake.add_update(p) for p in presses]
        twin = copy.deepcopy(presses[PRESSES // 2])  # the same update (same id) once more
        fake.add_update(twin)
        assert [u["update_id"] for u in fake.pending_updates].count(twin["update_id"]) == 2
        for update_id in ids:
            await bot.wait_handled(update_id)
        # ... and again later, as after a restart that fetched it once more.
        redelivered = Update.de_json(copy.deepcopy(presses[0]), bot.app.bot)
        assert redelivered is not None
        await bot.app.update_queue.put(redelivered)

        def redelivery_seen() -> bool:
            return bot.seen[ids[0]] == 2 and bot.seen[twin["update_id"]] == 2

        async with bot._changed:
            await asyncio.wait_for(bot._changed.wait_for(redelivery_seen), 10)
        rows, follows, counter = await support_rows(bot.database, iid)
        duplicates = duplicates_counted(bot.app.bot_data["metrics"])
        twin_seen = bot.seen[twin["update_id"]]
        card = bot.screen(RESIDENT)
        answered = len(
            set(fake.answered_callback_ids) & {p["callback_query"]["id"] for p in presses}
        )

        # The same race below the bot: 50 transactions at once (as on two web replicas).
        async with bot.database.uow() as uow:
            resident = await uow.residents.by_telegram_id(RESIDENT)
            assert resident is not None
            other_iid = (await item_ids(bot.database))["TD-03"]

        async def set_support() -> bool:
            async with bot.database.uow() as uow:
                change = await items.set_support(uow, resident.id, other_iid, True)
            assert change is not None
            return change.changed

        changes = await asyncio.gather(*(set_support() for _ in range(PRESSES)))
        direct = await support_rows(bot.database, other_iid)

    report(
        f"races ({backend})",
        f"tried: {PRESSES} presses of one resident's Support button on {KEY} at once, one of "
        f"them delivered twice in one getUpdates batch and once more later; then {PRESSES} "
        "concurrent set-support transactions for the same resident on TD-03",
        f"bot: support rows {rows}, follows {follows}, counter {counter}; duplicate deliveries "
        f"ignored {duplicates}; presses answered {answered}/{PRESSES}",
        f"direct: {sum(changes)} of {PRESSES} transactions changed something; support rows "
        f"{direct[0]}, follows {direct[1]}, counter {direct[2]}",
    )
    assert (rows, follows, counter) == (1, 1, 1)
    assert twin_seen == 2 and duplicates == 2, (twin_seen, duplicates)
    assert answered == PRESSES and fake.unanswered_callbacks() == []
    assert "1 Unterstützer" in card["text"]
    assert any("zurückziehen" in b for b in buttons_of(card))
    assert sum(changes) == 1 and direct == (1, 1, 1)
