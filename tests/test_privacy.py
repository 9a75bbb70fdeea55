"""Privacy (GDPR): /privacy, /mydata (exactly the resident's data), /deleteme (both
variants, nothing identifying left anywhere, counters go down, cancel changes nothing) and
deletion after inactivity with a fixed clock."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import func, select

from domain import comments as comment_service
from domain import goals as goal_service
from domain import items as item_service
from domain import privacy as privacy_service
from domain import proposals as proposal_service
from domain import residents as resident_service
from storage.models import AuditEntry, Base, Comment, Item, Resident
from storage.privacy import ANONYMOUS_TELEGRAM_ID
from storage.uow import Database
from tests.conftest import make_settings
from tests.fake_telegram import FakeTelegram
from tests.harness import VOLATILE_COLUMNS, VOLATILE_TABLES, BotHarness, sent, texts
from tests.test_goals import two_goals

pytestmark = pytest.mark.usefixtures("well_behaved")

ADMIN = 900001
ANNA = 771_234_567
BERT = 772_345_678
ANNA_NAME = "Annabella Q"
BERT_NAME = "Bertold Z"
TZ_NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


async def item_id(database: Database, key: str) -> int:
    async with database.uow() as uow:
        found = await item_service.item_id_for_key(uow, key)
    assert found is not None
    return found


async def resident_id(database: Database, telegram_id: int) -> int:
    async with database.uow() as uow:
        resident = await uow.residents.by_telegram_id(telegram_id)
    assert resident is not None
    return resident.id


async def activity(bot: BotHarness, telegram_id: int, name: str, tag: str, keys: list[str]) -> None:
    """A resident with everything: name, supports, follows, comments (approved and
    pending), a proposal, a goal followed with a help offer, and a report."""
    await bot.send(bot.user(telegram_id, "de"), "/start")
    await seed(bot.database, telegram_id, name, tag, keys)


async def seed(database: Database, telegram_id: int, name: str, tag: str, keys: list[str]) -> None:
    async with database.uow() as uow, uow.write():
        await uow.residents.ensure(telegram_id, "de")
    rid = await resident_id(database, telegram_id)
    first = await item_id(database, keys[0])
    second = await item_id(database, keys[1])
    async with database.uow() as uow:
        await resident_service.set_display_name(uow, rid, name)
        await item_service.set_support(uow, rid, first, True)
        await item_service.set_follow(uow, rid, second, True)
        for number, item in enumerate((first, second)):
            assert await comment_service.start_comment(uow, rid, item, "H")
            outcome = await comment_service.submit_comment(
                uow, rid, f"Kommentar {tag} Nummer {number}"
            )
            assert outcome.comment_id is not None
            if number == 0:
                await comment_service.decide(uow, outcome.comment_id, True, ADMIN, "Admin", "de")
        step = await proposal_service.start(uow, rid)
        assert step.problem is None
        await proposal_service.receive_text(uow, rid, f"Vorschlag {tag}")
        step = await proposal_service.receive_text(uow, rid, f"Beschreibung {tag}")
        assert step.draft is not None
        fields = await uow.content.action_fields()
        step = await proposal_service.choose_field(uow, rid, step.draft.id, fields[0].id)
        assert step.draft is not None
        sent_proposal = await proposal_service.send(uow, rid, step.draft.id)
        assert sent_proposal.proposal_id is not None
        goal = await goal_service.goal_id_for_key(uow, "Z-1")
        assert goal is not None
        await goal_service.offer_help(uow, rid, goal, f"Hilfe {tag}")


async def both(bot: BotHarness) -> None:
    await two_goals(bot.database)
    await activity(bot, ANNA, ANNA_NAME, "anna-xyz", ["TD-01", "TD-02"])
    await activity(bot, BERT, BERT_NAME, "bert-xyz", ["TD-01", "TD-03"])
    await reports(bot.database)


async def reports(database: Database) -> None:
    # Each reports the other's approved comment.
    async with database.uow() as uow:
        comments = (
            await uow.session.execute(
                select(Comment.id, Resident.telegram_id)
                .join(Resident, Resident.id == Comment.resident_id)
                .where(Comment.status == "approved")
            )
        ).all()
        for comment, author in comments:
            reporter = BERT if author == ANNA else ANNA
            await comment_service.report(uow, await resident_id(database, reporter), comment, 10)


async def everything(database: Database) -> list[tuple[str, str, Any]]:
    """Every value of every column of every table: (table, column, value)."""
    values = []
    async with database.uow() as uow:
        for table in Base.metadata.sorted_tables:
            rows = (await uow.session.execute(select(*table.columns))).all()
            for row in rows:
                for column, value in zip(table.columns, row, strict=True):
                    values.append((table.name, column.name, value))
    return values


def stable(values: list[tuple[str, str, Any]]) -> list[tuple[str, str, Any]]:
    """Without what changes by itself while the bot runs (see tests.harness.snapshot)."""
    return [
        v for v in values if v[0] not in VOLATILE_TABLES and (v[0], v[1]) not in VOLATILE_COLUMNS
    ]


def traces(values: list[tuple[str, str, Any]], telegram_id: int, name: str) -> list[Any]:
    found = []
    for table, column, value in values:
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value == telegram_id:
            found.append((table, column, value))
            continue
        text = (
            json.dumps(value, ensure_ascii=False, default=str)
            if not isinstance(value, str)
            else value
        )
        if str(telegram_id) in text or name in text:
            found.append((table, column, value))
    return found


async def counts(database: Database) -> dict[str, tuple[int, int]]:
    async with database.uow() as uow:
        rows = (
            await uow.session.execute(select(Item.key, Item.support_count, Item.comment_count))
        ).all()
    return {k: (s, c) for k, s, c in rows}


# --------------------------------------------------------------------------- /privacy


async def test_privacy_names_retention_rights_and_controller(bot: BotHarness) -> None:
    calls = await bot.send(bot.user(ANNA, "en"), "/privacy")
    [text] = texts(calls)
    assert "24 months" in text and "30 days" in text
    assert "/mydata" in text and "/deleteme" in text
    assert "datenschutz@dortmund.de" in text and "InnoLab" in text
    calls = await bot.send(bot.user(BERT, "de"), "/privacy")
    [text] = texts(calls)
    assert "24 Monate" in text and "30 Tage" in text and "/deleteme" in text


# --------------------------------------------------------------------------- /mydata


async def test_mydata_holds_exactly_the_residents_data(bot: BotHarness) -> None:
    await both(bot)
    calls = await bot.send(bot.user(ANNA, "de"), "/mydata")
    [document] = sent(calls, "sendDocument")
    [upload] = document.files.values()
    assert upload.filename == "my-data.json"
    data = json.loads(upload.data)
    profile = data["profile"]
    assert profile["telegram_id"] == ANNA and profile["display_name"] == ANNA_NAME
    assert profile["language"] == "de" and profile["banned_at"] is None
    assert [s["item"] for s in data["supports"]] == ["TD-01"]
    assert sorted(f["item"] for f in data["follows"]) == ["TD-01", "TD-02"]
    assert [(c["item"], c["text"], c["status"]) for c in data["comments"]] == [
        ("TD-01", "Kommentar anna-xyz Nummer 0", "approved"),
        ("TD-02", "Kommentar anna-xyz Nummer 1", "pending"),
    ]
    assert [(p["title"], p["description"], p["status"]) for p in data["proposals"]] == [
        ("Vorschlag anna-xyz", "Beschreibung anna-xyz", "pending")
    ]
    assert [(h["goal"], h["note"]) for h in data["help_offers"]] == [("Z-1", "Hilfe anna-xyz")]
    assert [g["goal"] for g in data["goal_follows"]] == ["Z-1"]
    assert len(data["reports"]) == 1
    assert data["role"] is None
    raw = upload.data.decode()
    for other in (str(BERT), BERT_NAME, "bert-xyz", "TD-03"):
        assert other not in raw, other


# --------------------------------------------------------------------------- /deleteme


@pytest.mark.parametrize("keep", [True, False])
async def test_deleteme_leaves_nothing_identifying(bot: BotHarness, keep: bool) -> None:
    await both(bot)
    # A ban of Anna by the admin is audited with her Telegram id as the target.
    async with bot.database.uow() as uow:
        rid = await resident_id(bot.database, ANNA)
        pending = (
            await uow.session.execute(
                select(Comment.id).where(Comment.resident_id == rid, Comment.status == "pending")
            )
        ).scalar_one()
        await comment_service.decide(uow, pending, False, ADMIN, "Admin", "de", ban=True)
        audited = (
            await uow.session.execute(select(func.count()).select_from(AuditEntry))
        ).scalar_one()
    assert traces(await everything(bot.database), ANNA, ANNA_NAME) != []  # the scan can fail
    before = await counts(bot.database)
    anna = bot.user(ANNA, "de")
    calls = await bot.send(anna, "/deleteme")
    assert "Konto löschen" in texts(calls)[0]
    calls = await bot.tap(anna, "Kommentare anonym" if keep else "Konto und Kommentare")
    assert "Konto ist gelöscht" in texts(calls)[0]

    assert traces(await everything(bot.database), ANNA, ANNA_NAME) == []
    after = await counts(bot.database)
    assert after["TD-01"][0] == before["TD-01"][0] - 1  # her support is gone
    # Her approved comment was on TD-01.
    assert after["TD-01"][1] == before["TD-01"][1] - (0 if keep else 1)
    async with bot.database.uow() as uow:
        texts_left = set((await uow.session.execute(select(Comment.text))).scalars())
        assert (
            await uow.session.execute(select(func.count()).select_from(AuditEntry))
        ).scalar_one() == audited
    assert ("Kommentar anna-xyz Nummer 0" in texts_left) is keep
    assert "Kommentar bert-xyz Nummer 0" in texts_left  # Bert keeps everything
    assert traces(await everything(bot.database), BERT, BERT_NAME) != []

    # Writing again starts afresh.
    calls = await bot.send(anna, "/mydata")
    [document] = sent(calls, "sendDocument")
    data = json.loads(next(iter(document.files.values())).data)
    assert data["profile"]["display_name"] is None and data["comments"] == []
    assert data["supports"] == [] and data["profile"]["banned_at"] is None


@pytest.mark.parametrize("keep", [True, False])
async def test_delete_account_in_the_database(content: Database, keep: bool) -> None:
    """The same deletion on SQLite and PostgreSQL, without the bot."""
    await two_goals(content)
    await seed(content, ANNA, ANNA_NAME, "anna-xyz", ["TD-01", "TD-02"])
    await seed(content, BERT, BERT_NAME, "bert-xyz", ["TD-01", "TD-03"])
    await reports(content)
    rid = await resident_id(content, ANNA)
    async with content.uow() as uow:
        pending = (
            await uow.session.execute(
                select(Comment.id).where(Comment.resident_id == rid, Comment.status == "pending")
            )
        ).scalar_one()
        await comment_service.decide(uow, pending, False, ADMIN, "Admin", "de", ban=True)
    assert traces(await everything(content), ANNA, ANNA_NAME) != []
    before = await counts(content)
    async with content.uow() as uow:
        assert await privacy_service.delete_account(uow, rid, keep_comments=keep)
        assert not await privacy_service.delete_account(uow, rid, keep_comments=keep)
    assert traces(await everything(content), ANNA, ANNA_NAME) == []
    assert traces(await everything(content), BERT, BERT_NAME) != []
    after = await counts(content)
    assert after["TD-01"] == (before["TD-01"][0] - 1, before["TD-01"][1] - (0 if keep else 1))
    assert after["TD-03"] == before["TD-03"]


async def test_deleteme_cancel_changes_nothing(bot: BotHarness) -> None:
    await both(bot)
    anna = bot.user(ANNA, "de")
    await bot.send(anna, "/deleteme")
    before = await everything(bot.database)
    await bot.tap(anna, "Abbrechen")
    after = await everything(bot.database)
    assert stable(after) == stable(before)
    assert len(stable(before)) > 50


# --------------------------------------------------------------------------- inactivity


async def set_seen(database: Database, telegram_id: int, day: dt.date) -> None:
    async with database.uow() as uow, uow.write():
        rid = (await uow.residents.by_telegram_id(telegram_id)).id  # type: ignore[union-attr]
        await uow.residents.touch(rid, day)


async def test_inactivity_warns_then_deletes_unless_the_resident_comes_back(
    bot: BotHarness,
) -> None:
    await both(bot)
    delivery = bot.app.bot_data["services"].delivery
    today = dt.datetime.now(bot.settings.tz).date()
    long_ago = privacy_service.months_before(today, 25)
    await set_seen(bot.database, ANNA, long_ago)
    await set_seen(bot.database, BERT, long_ago)
    now = dt.datetime.now(dt.UTC)
    since = len(bot.fake.calls)
    result = await delivery.expire_inactive(now)
    assert result == privacy_service.ExpiryResult(warned=2, deleted=0)
    warnings = [c for c in bot.fake.calls[since:] if c.method == "sendMessage"]
    assert sorted(c.chat_id for c in warnings) == sorted([ANNA, BERT])  # type: ignore[type-var]
    assert all("24 Monaten" in (c.visible_text or "") for c in warnings)
    # Nothing more a day later; Bert comes back.
    assert await delivery.expire_inactive(now + dt.timedelta(days=1)) == (
        privacy_service.ExpiryResult()
    )
    await bot.send(bot.user(BERT, "de"), "/menu")
    # After the grace period Anna is deleted, comments kept anonymous; Bert stays.
    result = await delivery.expire_inactive(now + dt.timedelta(days=30, minutes=1))
    assert result == privacy_service.ExpiryResult(warned=0, deleted=1)
    values = await everything(bot.database)
    assert traces(values, ANNA, ANNA_NAME) == []
    assert traces(values, BERT, BERT_NAME) != []
    async with bot.database.uow() as uow:
        texts_left = set((await uow.session.execute(select(Comment.text))).scalars())
        anonymous = await uow.residents.by_telegram_id(ANONYMOUS_TELEGRAM_ID)
        bert = await uow.residents.by_telegram_id(BERT)
    assert "Kommentar anna-xyz Nummer 0" in texts_left
    assert anonymous is not None and bert is not None and bert.inactivity_warned_at is None


async def test_expire_inactive_with_a_fixed_clock(content: Database) -> None:
    """The domain function on its own: the clock and the sender are the test's."""
    database = content
    async with database.uow() as uow, uow.write():
        a, _ = await uow.residents.ensure(111, "de")
        b, _ = await uow.residents.ensure(222, "en")
        c, _ = await uow.residents.ensure(333, "de")
        await uow.residents.touch(a.id, dt.date(2024, 11, 23))  # 24 months and a day
        await uow.residents.touch(b.id, dt.date(2024, 11, 24))  # exactly 24 months
        await uow.residents.touch(c.id, dt.date(2024, 11, 1))
    told: list[tuple[int, str]] = []

    async def warn(telegram_id: int, language: str) -> bool:
        told.append((telegram_id, language))
        return telegram_id != 333  # 333: a passing problem, tried again

    async def run(now: dt.datetime) -> privacy_service.ExpiryResult:
        async with database.uow() as uow:
            return await privacy_service.expire_inactive(
                uow, now, months=24, grace_days=30, today=now.date(), warn=warn
            )

    assert await run(TZ_NOW) == privacy_service.ExpiryResult(warned=1, deleted=0)
    assert told == [(111, "de"), (333, "de")]
    told.clear()
    assert await run(TZ_NOW + dt.timedelta(days=29)) == privacy_service.ExpiryResult(warned=1)
    assert told == [(222, "en"), (333, "de")]
    assert await run(TZ_NOW + dt.timedelta(days=30)) == privacy_service.ExpiryResult(
        warned=0, deleted=1
    )
    async with database.uow() as uow:
        assert await uow.residents.by_telegram_id(111) is None
        assert await uow.residents.by_telegram_id(222) is not None
    assert privacy_service.months_before(dt.date(2026, 3, 31), 1) == dt.date(2026, 2, 28)
    assert privacy_service.months_before(dt.date(2026, 1, 15), 24) == dt.date(2024, 1, 15)


async def test_resident_coming_back_clears_the_warning(content: Database) -> None:
    async with content.uow() as uow:
        async with uow.write():
            a, _ = await uow.residents.ensure(111, "de")
            await uow.residents.touch(a.id, dt.date(2020, 1, 1))
            await uow.privacy.mark_warned(a.id, TZ_NOW)
        await resident_service.enter(uow, 111, "de", dt.date(2026, 11, 25))
        await uow.end_reads()
        resident = await uow.residents.by_telegram_id(111)
        assert resident is not None
        await uow.session.refresh(resident)
        assert resident.inactivity_warned_at is None


async def test_settings_defaults(fake: FakeTelegram) -> None:
    settings = make_settings(fake, "sqlite+aiosqlite:///:memory:")
    assert settings.inactivity_delete_months == 24 and settings.inactivity_grace_days == 30
    assert settings.actions_per_minute == 30
    assert settings.comments_per_hour == 5 and settings.proposals_per_hour == 3
