"""The aggregates /stats sums instead of counting rows: supports, approved comments and
residents per UTC hour (models.HourlyCount) and follows per item (`items.follow_count`).
After every path that writes those rows they equal a fresh count of the rows; /stats' weeks
equal the rows counted per local week (across a DST change too); and /stats really reads
them."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from sqlalchemy import func, inspect, select, text, update
from sqlalchemy.exc import IntegrityError

from domain import comments as comment_service
from domain import items as item_service
from domain import pipeline
from domain import privacy as privacy_service
from domain import residents as resident_service
from domain import stats as stats_service
from domain.staff import Actor
from storage import repositories
from storage.migrate import alembic_config, current_revision, head_revision, upgrade
from storage.models import ApprovedCommentCount, Follow, Item, ResidentCount, Support, SupportCount
from storage.uow import Database
from tests.conftest import TZ

ADMIN = Actor(900001, "@mod")
UTC = dt.UTC


class Clock:
    """What `utcnow()` returns to the repositories (when a support is given)."""

    def __init__(self) -> None:
        self.now: dt.datetime | None = None

    def __call__(self) -> dt.datetime:
        return self.now or dt.datetime.now(UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock()
    monkeypatch.setattr(repositories, "utcnow", fake)
    yield fake


async def residents(database: Database, n: int) -> list[int]:
    async with database.uow() as uow:
        return [
            (await resident_service.enter(uow, 6100 + i, "de", dt.date(2026, 11, 2))).id
            for i in range(n)
        ]


async def item_ids(database: Database) -> dict[str, int]:
    async with database.uow() as uow:
        rows = await uow.session.execute(select(Item.key, Item.id))
        return {key: item_id for key, item_id in rows}


async def support(database: Database, resident_id: int, item_id: int, on: bool = True) -> None:
    async with database.uow() as uow:
        assert await item_service.set_support(uow, resident_id, item_id, on) is not None


async def hours(database: Database, model: Any = SupportCount) -> dict[dt.datetime, int]:
    """An hourly count table without the emptied hours."""
    async with database.uow() as uow:
        rows = await uow.session.execute(select(model.bucket_start, model.n))
        return {hour: n for hour, n in rows if n}


async def counted_hours(database: Database) -> dict[dt.datetime, int]:
    """The supports rows counted per UTC hour, in Python."""
    async with database.uow() as uow:
        given = (await uow.session.execute(select(Support.created_at))).scalars()
        return dict(Counter(g.replace(minute=0, second=0, microsecond=0) for g in given))


async def assert_consistent(database: Database) -> None:
    """Every aggregate equals a fresh count of the rows."""
    assert await hours(database) == await counted_hours(database)
    async with database.uow() as uow:
        assert await uow.support_counts.mismatches() == []
        assert await uow.approved_comment_counts.mismatches() == []
        assert await uow.resident_counts.mismatches() == []
        supports = (
            select(func.count()).where(Support.item_id == Item.id).correlate(Item).scalar_subquery()
        )
        follows = (
            select(func.count()).where(Follow.item_id == Item.id).correlate(Item).scalar_subquery()
        )
        rows = await uow.session.execute(
            select(Item.key, Item.support_count, supports, Item.follow_count, follows)
        )
        for key, support_count, support_rows, follow_count, follow_rows in rows:
            assert (key, support_count, follow_count) == (key, support_rows, follow_rows)


async def comment(database: Database, author: int, item_id: int, words: str) -> int:
    async with database.uow() as uow:
        assert await comment_service.start_comment(uow, author, item_id, "item")
        outcome = await comment_service.submit_comment(uow, author, words)
        assert outcome.comment_id is not None
        return outcome.comment_id


async def decide(
    database: Database, comment_id: int, approve: bool, reported: bool = False
) -> None:
    async with database.uow() as uow:
        if reported:
            decided = await comment_service.decide_reported(uow, comment_id, approve, ADMIN, "de")
        else:
            decided = await comment_service.decide(
                uow, comment_id, approve, ADMIN.telegram_id, ADMIN.name, "de"
            )
        assert decided is not None and decided.won


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


# --------------------------------------------------------------------------- write paths


async def test_support_withdraw_and_support_again(content: Database, clock: Clock) -> None:
    mia, jo = await residents(content, 2)
    item = await item_ids(content)
    clock.now = at(2026, 11, 2, 9, 15, 30)
    await support(content, mia, item["TD-01"])
    await support(content, mia, item["TD-01"])  # pressed twice: counted once
    await support(content, jo, item["TD-01"])
    clock.now = at(2026, 11, 2, 10, 0)
    await support(content, jo, item["TD-02"])
    assert await hours(content) == {at(2026, 11, 2, 9): 2, at(2026, 11, 2, 10): 1}
    await assert_consistent(content)

    # Withdrawn hours later: the hour the support was given loses it, not this one.
    clock.now = at(2026, 11, 3, 18, 45)
    await support(content, mia, item["TD-01"], False)
    await support(content, mia, item["TD-01"], False)  # twice: nothing more to take
    assert await hours(content) == {at(2026, 11, 2, 9): 1, at(2026, 11, 2, 10): 1}
    await assert_consistent(content)

    # Given again: it counts in the hour it is given now.
    await support(content, mia, item["TD-01"])
    assert await hours(content) == {
        at(2026, 11, 2, 9): 1,
        at(2026, 11, 2, 10): 1,
        at(2026, 11, 3, 18): 1,
    }
    await assert_consistent(content)


async def test_follow_and_unfollow(content: Database) -> None:
    mia, jo = await residents(content, 2)
    item = await item_ids(content)
    async with content.uow() as uow:
        for resident in (mia, jo, mia):
            assert await item_service.set_follow(uow, resident, item["TD-03"], True)
        assert await item_service.set_follow(uow, jo, item["TD-03"], False)
        assert await item_service.set_follow(uow, jo, item["TD-03"], False)
        row = await uow.content.item_by_key("TD-03")
        assert row is not None
        assert row.item.follow_count == 1
    await support(content, jo, item["TD-04"])  # supporting follows too
    await assert_consistent(content)


async def test_merge_counts_who_supported_both_once(content: Database, clock: Clock) -> None:
    both, only_source, only_target = await residents(content, 3)
    item = await item_ids(content)
    clock.now = at(2026, 11, 2, 9, 5)
    await support(content, both, item["TD-01"])  # the source
    await support(content, only_source, item["TD-01"])
    clock.now = at(2026, 11, 2, 11, 5)
    await support(content, both, item["TD-02"])  # the target
    await support(content, only_target, item["TD-02"])
    async with content.uow() as uow:
        assert await item_service.set_follow(uow, only_target, item["TD-01"], True)

    async with content.uow() as uow:
        change = await pipeline.change_status(uow, ADMIN, "TD-01", "merged", merge_into="TD-02")
        assert change.problem is None

    # `both`'s support of the source (9:00) went, the one of the target (11:00) stayed.
    assert await hours(content) == {at(2026, 11, 2, 9): 1, at(2026, 11, 2, 11): 2}
    await assert_consistent(content)
    async with content.uow() as uow:
        counts = await uow.session.execute(
            select(Item.key, Item.support_count, Item.follow_count).where(
                Item.key.in_(("TD-01", "TD-02"))
            )
        )
        assert sorted(counts) == [("TD-01", 0, 0), ("TD-02", 3, 3)]


@pytest.mark.parametrize("keep_comments", [True, False])
async def test_account_deletion(content: Database, clock: Clock, keep_comments: bool) -> None:
    leaving, staying = await residents(content, 2)
    item = await item_ids(content)
    clock.now = at(2026, 11, 2, 9, 5)
    await support(content, leaving, item["TD-01"])
    await support(content, staying, item["TD-01"])
    clock.now = at(2026, 11, 2, 14, 5)
    await support(content, leaving, item["TD-02"])
    await decide(content, await comment(content, leaving, item["TD-03"], "Meine Meinung"), True)
    async with content.uow() as uow:
        assert await item_service.set_follow(uow, leaving, item["TD-04"], True)

    async with content.uow() as uow:
        assert await privacy_service.delete_account(uow, leaving, keep_comments=keep_comments)

    assert await hours(content) == {at(2026, 11, 2, 9): 1}
    kept = {at(2026, 11, 2, 14): 1} if keep_comments else {}
    assert await hours(content, ApprovedCommentCount) == kept
    await assert_consistent(content)


async def test_approved_comments_per_hour_written(content: Database, clock: Clock) -> None:
    author, reader = await residents(content, 2)
    item = await item_ids(content)
    clock.now = at(2026, 11, 2, 9, 10)
    first = await comment(content, author, item["TD-01"], "Gute Idee für Dortmund")
    clock.now = at(2026, 11, 2, 10, 10)
    second = await comment(content, author, item["TD-02"], "Bitte auch abends anbieten")
    third = await comment(content, reader, item["TD-02"], "Wird nicht freigegeben")
    assert await hours(content, ApprovedCommentCount) == {}  # pending: not counted

    # Decided a day later: counted in the hour it was written.
    clock.now = at(2026, 11, 3, 12, 0)
    await decide(content, first, True)
    await decide(content, second, True)
    await decide(content, third, False)
    written = {at(2026, 11, 2, 9): 1, at(2026, 11, 2, 10): 1}
    assert await hours(content, ApprovedCommentCount) == written
    await assert_consistent(content)

    # Hidden after a report: not counted; restored: counted again; removed: gone.
    async with content.uow() as uow:
        hidden = await comment_service.report(uow, reader, first, threshold=1)
        assert hidden == comment_service.ReportResult.HIDDEN
    assert await hours(content, ApprovedCommentCount) == {at(2026, 11, 2, 10): 1}
    await assert_consistent(content)
    await decide(content, first, True, reported=True)
    assert await hours(content, ApprovedCommentCount) == written
    await assert_consistent(content)

    async with content.uow() as uow:
        stats = await stats_service.collect(uow, at(2026, 11, 4, 8, 0), TZ)
    assert ([w.comments for w in stats.weeks][-1], stats.comments) == (2, 2)


async def test_residents_per_hour_of_first_contact(content: Database, clock: Clock) -> None:
    clock.now = at(2026, 11, 2, 9, 10)
    leaving, _ = await residents(content, 2)
    async with content.uow() as uow:
        await resident_service.enter(uow, 6100, "de", dt.date(2026, 11, 3))  # known already
    assert await hours(content, ResidentCount) == {at(2026, 11, 2, 9): 2}
    await comment(content, leaving, (await item_ids(content))["TD-01"], "Bleibt da")

    # Keeping the comments creates the placeholder resident: not counted.
    async with content.uow() as uow:
        assert await privacy_service.delete_account(uow, leaving, keep_comments=True)
    assert await hours(content, ResidentCount) == {at(2026, 11, 2, 9): 1}
    await assert_consistent(content)
    async with content.uow() as uow:
        stats = await stats_service.collect(uow, at(2026, 11, 3, 9, 0), TZ)
    assert (stats.residents, stats.active) == (1, 1)


async def test_a_count_never_goes_below_zero(content: Database) -> None:
    """The database refuses a negative hour (a withdrawal counted twice would be)."""
    async with content.uow() as uow, uow.write():
        uow.session.add(SupportCount(bucket_start=at(2026, 11, 2, 9), n=0))
    with pytest.raises(IntegrityError):
        async with content.uow() as uow, uow.write():
            await uow.support_counts.add({at(2026, 11, 2, 9): -1})
    with pytest.raises(IntegrityError):
        async with content.uow() as uow, uow.write():
            await uow.session.execute(update(Item).values(follow_count=-1))


async def test_rebuild_recounts_rows_written_behind_the_repositories_back(
    content: Database,
) -> None:
    mia, jo = await residents(content, 2)
    item = await item_ids(content)
    await support(content, mia, item["TD-01"])
    await support(content, jo, item["TD-02"])
    async with content.uow() as uow, uow.write():
        await uow.session.execute(update(Support).values(created_at=at(2026, 3, 29, 0, 59, 59)))
        assert await uow.support_counts.mismatches() != []
        await uow.support_counts.rebuild()
    assert await hours(content) == {at(2026, 3, 29, 0): 2}
    await assert_consistent(content)


# --------------------------------------------------------------------------- /stats


def weekly_rows(given: list[dt.datetime], now: dt.datetime, tz: ZoneInfo) -> list[int]:
    """The supports per /stats week, counted from the moments in Python."""
    starts = stats_service.week_starts(now, tz)
    stops = [*starts[1:], now]
    return [sum(1 for g in given if a <= g < b) for a, b in zip(starts, stops, strict=True)]


@pytest.mark.parametrize(
    ("now", "tz"),
    [
        # DST ended on Sunday 25 October (a week of 169 hours).
        (at(2026, 11, 4, 10, 30), TZ),
        # DST began on Sunday 29 March (a week of 167 hours).
        (at(2026, 4, 8, 16, 20, 5), TZ),
        # A zone whose midnight is no whole UTC hour: the half hours come from the rows.
        (at(2026, 11, 4, 10, 30), ZoneInfo("Asia/Kolkata")),
    ],
    ids=["autumn", "spring", "half-hour-zone"],
)
async def test_weeks_equal_the_rows_across_a_dst_change(
    content: Database, clock: Clock, now: dt.datetime, tz: ZoneInfo
) -> None:
    people = await residents(content, 6)
    item = await item_ids(content)
    starts = stats_service.week_starts(now, tz)
    # Either side of every week's start (local midnight), of the hour before `now`, the
    # DST switch itself, and one after `now` (not counted).
    moments = []
    for start in starts:
        utc = start.astimezone(UTC)
        moments += [utc - dt.timedelta(microseconds=1), utc, utc + dt.timedelta(minutes=59)]
    moments += [
        now.replace(minute=0, second=0) - dt.timedelta(seconds=1),
        now.replace(minute=0, second=0),
        now - dt.timedelta(microseconds=1),
        now,
        now + dt.timedelta(minutes=5),
    ]
    keys = sorted(item)
    given = []
    for n, moment in enumerate(moments):
        clock.now = moment
        await support(content, people[n % len(people)], item[keys[n // len(people)]])
        given.append(moment)
    await assert_consistent(content)

    async with content.uow() as uow:
        stats = await stats_service.collect(uow, now, tz)
    expected = weekly_rows(given, now, tz)
    assert [w.supports for w in stats.weeks] == expected
    # Each week: its start and 59 minutes later, and the last moment before the next
    # week; this week also the three moments of the last hour before `now`.
    assert expected == [3] * 7 + [5]
    assert [w.start for w in stats.weeks] == [s.date() for s in starts]


async def test_stats_read_the_aggregates(content: Database, clock: Clock) -> None:
    """/stats sums the hourly counts and items.follow_count: changed behind its back, the
    numbers change (so they are not counted from the rows)."""
    mia, _ = await residents(content, 2)
    item = await item_ids(content)
    now = at(2026, 11, 4, 10, 30)
    clock.now = at(2026, 11, 3, 8, 0)
    await support(content, mia, item["TD-01"])
    async with content.uow() as uow:
        before = await stats_service.collect(uow, now, TZ)
    assert ([w.supports for w in before.weeks][-1], before.follows) == (1, 1)
    assert (before.residents, [w.comments for w in before.weeks][-1]) == (2, 0)
    async with content.uow() as uow, uow.write():
        await uow.session.execute(update(SupportCount).values(n=SupportCount.n + 40))
        await uow.session.execute(
            update(Item).where(Item.id == item["TD-01"]).values(follow_count=7)
        )
        await uow.session.execute(update(ResidentCount).values(n=ResidentCount.n + 10))
        uow.session.add(ApprovedCommentCount(bucket_start=at(2026, 11, 3, 8), n=5))
    async with content.uow() as uow:
        after = await stats_service.collect(uow, now, TZ)
    assert ([w.supports for w in after.weeks][-1], after.follows) == (41, 7)
    assert (after.residents, [w.comments for w in after.weeks][-1]) == (12, 5)


# --------------------------------------------------------------------------- migration


async def test_migration_0007_fills_the_aggregates_from_the_rows(
    content: Database, clock: Clock
) -> None:
    """Rows written before 0007 (here: downgraded to 0006, which drops the aggregates):
    the upgrade counts them into support_counts and follow_count, and keeps every row."""
    people = await residents(content, 4)
    item = await item_ids(content)
    for n, (resident, key) in enumerate(
        [(0, "TD-01"), (1, "TD-01"), (2, "TD-01"), (0, "TD-02"), (3, "TD-03")]
    ):
        clock.now = at(2026, 10, 25, 0, 30) + dt.timedelta(minutes=40 * n)
        await support(content, people[resident], item[key])
    async with content.uow() as uow:
        assert await item_service.set_follow(uow, people[3], item["TD-04"], True)
    clock.now = at(2026, 10, 26, 7, 59)
    await decide(content, await comment(content, people[0], item["TD-01"], "Gut so"), True)
    await comment(content, people[1], item["TD-01"], "Noch offen")  # pending: not counted
    expected = await counted_hours(content)
    kept = {model: await hours(content, model) for model in (ApprovedCommentCount, ResidentCount)}
    assert kept[ApprovedCommentCount] == {at(2026, 10, 26, 7): 1}
    assert sum(kept[ResidentCount].values()) == 4
    assert expected == {
        at(2026, 10, 25, 0): 1,
        at(2026, 10, 25, 1): 2,
        at(2026, 10, 25, 2): 1,
        at(2026, 10, 25, 3): 1,
    }

    async with content.engine.begin() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0006"))
    assert await current_revision(content.engine) == "0006"
    async with content.engine.connect() as conn:
        columns = await conn.run_sync(
            lambda c: [column["name"] for column in inspect(c).get_columns("items")]
        )
    assert "follow_count" not in columns

    await upgrade(content.engine)
    assert await current_revision(content.engine) == head_revision()
    assert await hours(content) == expected
    for model, counted in kept.items():
        assert await hours(content, model) == counted
    await assert_consistent(content)
    async with content.uow() as uow:
        follows: Any = await uow.session.execute(
            text("SELECT key, follow_count FROM items WHERE follow_count > 0 ORDER BY key")
        )
        assert list(follows) == [("TD-01", 3), ("TD-02", 1), ("TD-03", 1), ("TD-04", 1)]
        rows = await uow.session.execute(
            text(
                "SELECT (SELECT count(*) FROM supports), (SELECT count(*) FROM follows),"
                " (SELECT count(*) FROM comments)"
            )
        )
        assert tuple(rows.one()) == (5, 6, 2)
