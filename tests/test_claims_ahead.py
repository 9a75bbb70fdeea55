"""Polling: the updates of one getUpdates answer are claimed together, in one statement,
and still each exactly once (bot/processor.py: ClaimsAhead)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from storage.models import ProcessedUpdate
from tests.fake_telegram import FakeTelegram
from tests.harness import BotHarness, statements

RESIDENTS = range(7001, 7021)


async def test_a_batch_of_updates_is_claimed_in_few_statements_and_each_answered_once(
    bot: BotHarness, fake: FakeTelegram
) -> None:
    for resident in RESIDENTS:  # every resident known: /start needs no other writes
        await bot.send(bot.user(resident), "/start")
    since = len(fake.calls)
    with statements(bot.database, "INSERT INTO processed_updates") as seen:
        ids = [fake.add_update(fake.message_update(bot.user(r), "/help")) for r in RESIDENTS]
        for update_id in ids:
            await bot.wait_handled(update_id)
    answered = [c.chat_id for c in fake.calls[since:] if c.method == "sendMessage"]
    assert sorted(answered) == list(RESIDENTS)
    # 20 updates, fetched in one or two getUpdates answers: not one claim each.
    assert 1 <= len(seen) <= 4, seen
    async with bot.database.uow() as uow:
        stored = await uow.session.execute(
            select(func.count()).where(ProcessedUpdate.update_id.in_(ids))
        )
    assert stored.scalar_one() == len(ids)


async def test_an_update_delivered_twice_in_one_batch_is_handled_once(
    bot: BotHarness, fake: FakeTelegram
) -> None:
    user = bot.user(7100)
    await bot.send(user, "/start")
    since = len(fake.calls)
    update = fake.message_update(user, "/help")
    first = fake.add_update(update)
    second = fake.add_update(dict(update))  # the same update id again
    assert first == second
    other = fake.add_update(fake.message_update(bot.user(7101), "/help"))
    await bot.wait_handled(other)
    await asyncio.wait_for(bot.wait_handled(first), 5)
    replies = [c for c in fake.calls[since:] if c.method == "sendMessage" and c.chat_id == 7100]
    assert len(replies) == 1
