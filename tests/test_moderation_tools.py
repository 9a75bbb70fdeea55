"""The moderators' tools beyond Approve / Reject, end to end through the fake Bot API:
rejecting with a reason, banning, reports hiding a comment at the threshold, residents'
own proposals becoming items, and /queue listing all three kinds of work."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from bot import callbacks as cb
from storage.models import AuditEntry, Comment, Follow, Item, Proposal, Resident, Support
from storage.repositories import ItemRecord
from tests.fake_telegram import ApiCall
from tests.harness import BotHarness, datas_of, sent, texts
from tests.test_moderation import comment_count, comment_row, shown_comments, write_comment

JSON = dict[str, Any]
ADMIN = 900001
ALICE = 1001  # German resident
BOB = 1002  # English resident
READERS = (2001, 2002, 2003, 2004)
#: The test data has TD-01 … TD-05: an approved proposal becomes the next.
NEXT_KEY = "TD-06"


@pytest.fixture
def bot_settings() -> dict[str, Any]:
    return {"notify_delay_seconds": 0, "quiet_hours": "", "report_threshold": 3}


pytestmark = pytest.mark.usefixtures("well_behaved")


def answers(calls: list[ApiCall]) -> list[str]:
    return [str(c.params.get("text") or "") for c in calls if c.method == "answerCallbackQuery"]


def to(calls: list[ApiCall], chat_id: int) -> list[str]:
    return [c.visible_text or "" for c in sent(calls) if c.chat_id == chat_id]


async def started(bot: BotHarness, user_id: int, language: str = "de") -> JSON:
    user = bot.user(user_id, language)
    await bot.send(user, "/start")
    return user


async def resident(bot: BotHarness, telegram_id: int) -> Resident:
    async with bot.database.uow() as uow:
        row = await uow.residents.by_telegram_id(telegram_id)
        assert row is not None
        await uow.session.refresh(row)
        return row


async def item(bot: BotHarness, key: str) -> ItemRecord:
    async with bot.database.uow() as uow:
        row = await uow.content.item_by_key(key)
        assert row is not None
        return row.item


async def audit(bot: BotHarness) -> list[tuple[str, str]]:
    async with bot.database.uow() as uow:
        entries = (await uow.session.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars()
        return [(e.action, e.target) for e in entries]


async def approved_comment(bot: BotHarness, admin: JSON, author: JSON, text: str) -> int:
    comment_id, _ = await write_comment(bot, author, text)
    await bot.press(admin, f"mod:a:{comment_id}", message_id=bot.screen(ADMIN)["message_id"])
    assert (await comment_row(bot, comment_id)).status == "approved"
    return comment_id


# --------------------------------------------------------------------------- reject with reason


async def test_reject_asks_for_a_reason_which_reaches_the_author(bot: BotHarness) -> None:
    admin = await started(bot, ADMIN)
    alice = await started(bot, ALICE)
    comment_id, calls = await write_comment(bot, alice, "Alles Quatsch hier.")
    [review] = [c for c in sent(calls) if c.chat_id == ADMIN]
    assert review.button_texts() == ["✅ Freigeben", "🚫 Ablehnen", "⛔ Sperren"]

    calls = await bot.press(admin, f"mod:r:{comment_id}", message_id=review.message_id)
    assert (await comment_row(bot, comment_id)).status == "pending", "nothing decided yet"
    assert "Begründung" in bot.screen(ADMIN)["text"]

    calls = await bot.send(admin, "Bitte sachlich bleiben.")
    row = await comment_row(bot, comment_id)
    assert (row.status, row.decided_by_telegram_id) == ("rejected", ADMIN)
    [told] = to(calls, ALICE)
    assert "Begründung: Bitte sachlich bleiben." in told
    assert await audit(bot) == [("comment_reject", f"TD-01 #{comment_id}")]


async def test_reject_without_a_reason(bot: BotHarness) -> None:
    admin = await started(bot, ADMIN)
    alice = await started(bot, ALICE)
    comment_id, _ = await write_comment(bot, alice, "Hmm.")
    await bot.press(admin, f"mod:r:{comment_id}", message_id=bot.screen(ADMIN)["message_id"])
    calls = await bot.press(admin, cb.NO_REASON.build(kind="c", oid=comment_id))
    assert (await comment_row(bot, comment_id)).status == "rejected"
    [told] = to(calls, ALICE)
    assert "Begründung" not in told
    # The same button again changes nothing and says so.
    calls = await bot.press(admin, cb.NO_REASON.build(kind="c", oid=comment_id))
    assert answers(calls) and to(calls, ALICE) == []


# --------------------------------------------------------------------------- bans


async def test_ban_blocks_support_comment_and_proposals_until_unbanned(bot: BotHarness) -> None:
    admin = await started(bot, ADMIN)
    alice = await started(bot, ALICE)
    comment_id, _ = await write_comment(bot, alice, "Spam spam spam")
    calls = await bot.press(
        admin, f"mod:b:{comment_id}", message_id=bot.screen(ADMIN)["message_id"]
    )
    assert (await comment_row(bot, comment_id)).status == "rejected"
    assert (await resident(bot, ALICE)).banned_at is not None
    [told] = to(calls, ALICE)
    assert "gesperrt" in told
    assert ("ban", str(ALICE)) in await audit(bot)

    # Support: refused with an alert, nothing counted.
    td02 = await item(bot, "TD-02")
    calls = await bot.press(alice, cb.SUPPORT.build(iid=td02.id, on=1, origin="H"))
    [alert] = answers(calls)
    assert "gesperrt" in alert
    assert (await item(bot, "TD-02")).support_count == td02.support_count
    # Comment: refused, no wait for a text, so the next text is no comment.
    await bot.send(alice, "/start item_TD-02")
    calls = await bot.tap(alice, "Kommentieren")
    assert "gesperrt" in texts(calls)[-1]
    await bot.send(alice, "Noch mehr Spam")
    # Proposal: refused.
    [reply] = sent(await bot.send(alice, "/propose"))
    assert "gesperrt" in (reply.visible_text or "")
    # Reading still works.
    [reply] = sent(await bot.send(alice, "/start item_TD-02"))
    assert "TD-02" in (reply.visible_text or "")
    async with bot.database.uow() as uow:
        comments = (await uow.session.execute(select(func.count()).select_from(Comment))).scalar()
        proposals = (await uow.session.execute(select(func.count()).select_from(Proposal))).scalar()
    assert (comments, proposals) == (1, 0)

    [reply] = sent(await bot.send(admin, f"/unban {ALICE}"))
    assert (await resident(bot, ALICE)).banned_at is None
    await bot.press(alice, cb.SUPPORT.build(iid=td02.id, on=1, origin="H"))
    assert (await item(bot, "TD-02")).support_count == td02.support_count + 1
    assert ("unban", str(ALICE)) in await audit(bot)


async def test_staff_cannot_be_banned(bot: BotHarness) -> None:
    admin = await started(bot, ADMIN)
    comment_id, _ = await write_comment(bot, admin, "Ein Kommentar vom Admin")
    message_id = bot.screen(ADMIN)["message_id"]
    calls = await bot.press(admin, f"mod:b:{comment_id}", message_id=message_id)
    [alert] = answers(calls)
    assert "nicht gesperrt" in alert
    assert (await comment_row(bot, comment_id)).status == "pending"
    assert (await resident(bot, ADMIN)).banned_at is None


# --------------------------------------------------------------------------- reports


async def test_reports_hide_a_comment_at_the_threshold_until_a_moderator_decides(
    bot: BotHarness,
) -> None:
    admin = await started(bot, ADMIN)
    alice = await started(bot, ALICE)
    readers = [await started(bot, uid) for uid in READERS]
    comment_id = await approved_comment(bot, admin, alice, "Ein fragwürdiger Kommentar")
    assert await comment_count(bot, "TD-01") == 1
    report = cb.REPORT.build(cid=comment_id, page=0, origin="H")

    # The author sees no report button on their own comment, and cannot report it.
    await shown_comments(bot, alice)
    assert report not in datas_of(bot.screen(ALICE))
    calls = await bot.press(alice, report)
    assert "eigenen" in answers(calls)[0]

    for reader in readers[:2]:
        await shown_comments(bot, reader)
        calls = await bot.press(reader, report)
        assert "Danke" in answers(calls)[0]
    # Reporting twice counts once.
    calls = await bot.press(readers[0], report)
    assert "schon gemeldet" in answers(calls)[0]
    assert (await comment_row(bot, comment_id)).status == "approved"
    assert "fragwürdiger" in await shown_comments(bot, readers[3])

    calls = await bot.press(readers[2], report)  # the third: hidden
    assert (await comment_row(bot, comment_id)).status == "hidden"
    assert await comment_count(bot, "TD-01") == 0
    assert "fragwürdiger" not in await shown_comments(bot, readers[3])
    [review] = [c for c in sent(calls) if c.chat_id == ADMIN]
    assert "fragwürdiger" in (review.visible_text or "")
    assert "3" in (review.visible_text or "")
    assert review.callback_datas() == [
        f"moh:a:{comment_id}",
        f"moh:r:{comment_id}",
        f"moh:b:{comment_id}",
    ]

    # The moderator restores it: shown and counted again.
    await bot.press(admin, f"moh:a:{comment_id}", message_id=review.message_id)
    assert (await comment_row(bot, comment_id)).status == "approved"
    assert await comment_count(bot, "TD-01") == 1
    assert "fragwürdiger" in await shown_comments(bot, readers[3])


async def test_a_removed_reported_comment_is_gone_and_the_author_told(bot: BotHarness) -> None:
    admin = await started(bot, ADMIN)
    alice = await started(bot, ALICE)
    readers = [await started(bot, uid) for uid in READERS[:3]]
    comment_id = await approved_comment(bot, admin, alice, "Beleidigung")
    for reader in readers:
        await bot.press(reader, cb.REPORT.build(cid=comment_id, page=0, origin="H"))
    await bot.press(admin, f"moh:r:{comment_id}", message_id=bot.screen(ADMIN)["message_id"])
    calls = await bot.press(admin, cb.NO_REASON.build(kind="h", oid=comment_id))
    assert (await comment_row(bot, comment_id)).status == "rejected"
    assert await comment_count(bot, "TD-01") == 0
    [told] = to(calls, ALICE)
    assert "gemeldet" in told and "entfernt" in told


# --------------------------------------------------------------------------- proposals


async def propose(bot: BotHarness, user: JSON, title: str, description: str) -> list[ApiCall]:
    await bot.send(user, "/propose")
    await bot.send(user, title)
    await bot.send(user, description)
    field = next(
        b["callback_data"]
        for row in bot.screen(user["id"])["reply_markup"]["inline_keyboard"]
        for b in row
        if b["callback_data"].startswith("ppf:")
    )
    await bot.press(user, field)
    assert title in bot.screen(user["id"])["text"], "the preview shows the proposal"
    send = next(
        b["callback_data"]
        for row in bot.screen(user["id"])["reply_markup"]["inline_keyboard"]
        for b in row
        if b["callback_data"].startswith("pps:")
    )
    calls = await bot.press(user, send)
    # Pressing Send again stores nothing more.
    await bot.press(user, send)
    return calls


async def test_an_approved_proposal_becomes_the_next_item_which_its_author_follows(
    bot: BotHarness,
) -> None:
    admin = await started(bot, ADMIN)
    bob = await started(bot, BOB, "en")
    calls = await propose(bot, bob, "Repair cafés in every district", "Fix instead of throw away.")
    [review] = [c for c in sent(calls) if c.chat_id == ADMIN]
    assert "Repair cafés in every district" in (review.visible_text or "")
    async with bot.database.uow() as uow:
        [proposal] = (await uow.session.execute(select(Proposal))).scalars().all()
    assert proposal.status == "pending"

    calls = await bot.press(admin, f"mop:a:{proposal.id}", message_id=review.message_id)
    new = await item(bot, NEXT_KEY)
    assert new.title["en"] == "Repair cafés in every district" and new.status == "open"
    [told] = to(calls, BOB)
    assert NEXT_KEY in told
    async with bot.database.uow() as uow:
        follows = (
            await uow.session.execute(select(Follow.resident_id).where(Follow.item_id == new.id))
        ).scalars()
        assert list(follows) == [(await resident(bot, BOB)).id]
    [reply] = sent(await bot.send(bob, "/search repair"))
    assert NEXT_KEY in (reply.visible_text or "")
    assert ("proposal_approve", NEXT_KEY) in await audit(bot)


async def test_bad_proposal_input_is_refused_and_a_rejected_one_changes_nothing(
    bot: BotHarness,
) -> None:
    admin = await started(bot, ADMIN)
    alice = await started(bot, ALICE)
    await bot.send(alice, "/propose")
    [reply] = sent(await bot.send(alice, "x" * 121))
    assert "120" in (reply.visible_text or "")
    await bot.send(alice, "Kürzer")
    [reply] = sent(await bot.send(alice, "y" * 1001))
    assert "1.000" in (reply.visible_text or "")
    await bot.send(alice, "/cancel")
    async with bot.database.uow() as uow:
        count = (await uow.session.execute(select(func.count()).select_from(Proposal))).scalar()
    assert count == 0

    calls = await propose(bot, alice, "Mehr Bänke", "Im Westpark.")
    async with bot.database.uow() as uow:
        [proposal] = (await uow.session.execute(select(Proposal))).scalars().all()
        items = (await uow.session.execute(select(func.count()).select_from(Item))).scalar()
    await bot.press(admin, f"mop:r:{proposal.id}", message_id=bot.screen(ADMIN)["message_id"])
    calls = await bot.send(admin, "Gibt es schon als TD-12.")
    [told] = to(calls, ALICE)
    assert "Gibt es schon als TD-12." in told
    async with bot.database.uow() as uow:
        assert (await uow.session.execute(select(func.count()).select_from(Item))).scalar() == items


# --------------------------------------------------------------------------- the queue


async def test_queue_lists_pending_comments_proposals_and_hidden_comments(
    bot: BotHarness,
) -> None:
    admin = await started(bot, ADMIN)
    alice = await started(bot, ALICE)
    bob = await started(bot, BOB, "en")
    readers = [await started(bot, uid) for uid in READERS[:3]]
    hidden = await approved_comment(bot, admin, alice, "Wird gemeldet")
    for reader in readers:
        await bot.press(reader, cb.REPORT.build(cid=hidden, page=0, origin="H"))
    pending, _ = await write_comment(bot, bob, "Waiting for review")
    await propose(bot, bob, "Night buses", "More of them.")

    calls = await bot.send(admin, "/queue")
    messages = to(calls, ADMIN)
    header = messages[0]
    assert "1 Kommentar" in header and "1 Vorschlag" in header and "1 gemeldeter" in header
    datas = [d for c in sent(calls) for d in c.callback_datas()]
    assert f"mod:a:{pending}" in datas and f"moh:a:{hidden}" in datas
    assert any(d.startswith("mop:a:") for d in datas)


async def test_supports_survive_a_ban(bot: BotHarness) -> None:
    """A ban stops new supports; existing ones stay (and can still be withdrawn)."""
    admin = await started(bot, ADMIN)
    alice = await started(bot, ALICE)
    td05 = await item(bot, "TD-05")
    await bot.press(alice, cb.SUPPORT.build(iid=td05.id, on=1, origin="H"))
    comment_id, _ = await write_comment(bot, alice, "Spam")
    await bot.press(admin, f"mod:b:{comment_id}", message_id=bot.screen(ADMIN)["message_id"])
    assert (await item(bot, "TD-05")).support_count == td05.support_count + 1
    await bot.press(alice, cb.SUPPORT.build(iid=td05.id, on=0, origin="H"))
    async with bot.database.uow() as uow:
        supports = (await uow.session.execute(select(func.count()).select_from(Support))).scalar()
    assert supports == 0
