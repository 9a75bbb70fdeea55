"""A city-sized database for the benchmarks: the sample content, then residents, supports,
follows and comments generated in Python and written in bulk (executemany on SQLite, COPY
on PostgreSQL), with the counters on `items` kept as the bot keeps them.

Used by `benchmarks.staff_queries` and `benchmarks.city`. The rows are deterministic (a
fixed seed) and look like a city's use of the bot: a few items get most of the supports,
residents support ~10 items on average (some 1, some 40), supports and comments are spread
over 12 weeks with more in the recent ones, most comments are approved.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bot.cli import sample_data_path
from bot.settings import normalise_database_url
from domain import importer
from storage.database import create_engine
from storage.migrate import upgrade
from storage.models import Comment, Follow, Item, Support
from storage.uow import Database

TZ = ZoneInfo("Europe/Berlin")
NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
#: Supports, follows and comments are spread over this many days before NOW.
SPAN_DAYS = 84
TELEGRAM_BASE = 100_000_000
PSEUDONYM_BASE = 100_000
BATCH = 50_000
SEED = 20261124

COMMENT_TEXTS = (
    "Ein Kommentar zur Zukunft der Arbeit in Dortmund",
    "Das ist längst überfällig, gerade für die Nordstadt.",
    "Gute Idee, aber wer bezahlt das? Bitte mit den Betrieben zusammen planen.",
    "Ich arbeite in der Pflege und kann das nur unterstützen.",
    "Wichtig wäre, dass die Angebote auch abends und in mehreren Sprachen stattfinden.",
    "Bitte nicht nur Pilotprojekte – wir brauchen das dauerhaft.",
    "Als Ausbilder sehe ich jeden Tag, wie sehr das fehlt.",
)
#: Comment statuses and their shares (the rest of the weight: approved).
COMMENT_STATUS_WEIGHTS = {"approved": 90, "pending": 5, "rejected": 3, "hidden": 2}


@dataclass(frozen=True)
class Scale:
    residents: int
    supports: int
    comments: int
    follows: int

    def scaled(self, factor: float) -> Scale:
        return Scale(*(max(1, round(n * factor)) for n in dataclasses.astuple(self)))


CITY = Scale(residents=100_000, supports=1_000_000, comments=100_000, follows=300_000)


@dataclass(frozen=True)
class Filled:
    counts: dict[str, int]
    seconds: float


# --------------------------------------------------------------------------- databases


def sqlite_url(folder: str) -> str:
    return normalise_database_url(f"sqlite:///{folder}/bench.db")


async def migrated(url: str) -> Database:
    engine = create_engine(url)
    await upgrade(engine)
    await engine.dispose()
    return Database(url)


@asynccontextmanager
async def postgres_database(admin_url: str, name: str) -> AsyncIterator[str]:
    """A fresh database `name` on the server of `admin_url` (dropped again afterwards);
    yields its URL."""
    admin = create_async_engine(normalise_database_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            await connection.execute(text(f"CREATE DATABASE {name}"))
        base = admin_url.rsplit("/", 1)[0]
        yield normalise_database_url(f"{base}/{name}")
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        await admin.dispose()


# --------------------------------------------------------------------------- rows


def _skewed(rng: random.Random, span: float, power: float = 1.6) -> float:
    """A value in [0, span), small values more likely (recent moments, popular ranks)."""
    return span * float(rng.random() ** power)


def _moment(rng: random.Random) -> dt.datetime:
    seconds = int(_skewed(rng, SPAN_DAYS * 86_400))
    return NOW - dt.timedelta(seconds=seconds + 1)


def _amounts(rng: random.Random, people: int, total: int, cap: int) -> list[int]:
    """How many of something each of `people` has: exponential around the mean, capped,
    adjusted so that the sum is exactly `total`."""
    mean = total / people
    amounts = [min(cap, int(rng.expovariate(1 / mean) + 0.5)) for _ in range(people)]
    difference = total - sum(amounts)
    step = 1 if difference > 0 else -1
    while difference:
        who = rng.randrange(people)
        if 0 <= amounts[who] + step <= cap:
            amounts[who] += step
            difference -= step
    return amounts


def _pick(rng: random.Random, cumulative: list[float], items: Sequence[int], k: int) -> set[int]:
    """k distinct items, popular ones more likely."""
    if k >= len(items):
        return set(items)
    chosen: set[int] = set()
    while len(chosen) < k:
        chosen.update(rng.choices(items, cum_weights=cumulative, k=k - len(chosen)))
    return chosen


@dataclass
class Rows:
    residents: list[tuple[Any, ...]]
    supports: list[tuple[int, int, dt.datetime]]
    follows: list[tuple[int, int, dt.datetime]]
    comments: list[tuple[Any, ...]]


def generate(scale: Scale, item_ids: Sequence[int], first_resident_id: int) -> Rows:
    rng = random.Random(SEED)
    items = list(item_ids)
    popularity = items[:]
    rng.shuffle(popularity)
    weights = [1 / (rank + 1) ** 0.9 for rank in range(len(popularity))]
    cumulative = list(itertools.accumulate(weights))

    ids = list(range(first_resident_id, first_resident_id + scale.residents))
    residents: list[tuple[Any, ...]] = []
    for n, resident_id in enumerate(ids, start=1):
        seen = (NOW - dt.timedelta(days=int(_skewed(rng, 60, 2.0)))).date()
        residents.append(
            (
                resident_id,
                TELEGRAM_BASE + n,
                "en" if rng.random() < 0.3 else "de",
                PSEUDONYM_BASE + n,
                rng.random() < 0.7,  # digest_enabled
                rng.choices(("instant", "digest", "off"), (6, 3, 1))[0],
                NOW - dt.timedelta(days=SPAN_DAYS + 7, seconds=n) if rng.random() < 0.03 else None,
                NOW - dt.timedelta(days=rng.randrange(SPAN_DAYS + 14), seconds=n),
                seen,
            )
        )
    supports: list[tuple[int, int, dt.datetime]] = []
    follows: list[tuple[int, int, dt.datetime]] = []
    support_amounts = _amounts(rng, scale.residents, scale.supports, len(items))
    follow_amounts = _amounts(rng, scale.residents, scale.follows, len(items))
    for resident_id, n_supports, n_follows in zip(
        ids, support_amounts, follow_amounts, strict=True
    ):
        supported = sorted(_pick(rng, cumulative, popularity, n_supports))
        supports.extend((resident_id, item, _moment(rng)) for item in supported)
        # Supporting follows the item; some unfollowed again, some follow without supporting.
        followed = set(rng.sample(supported, min(n_follows, len(supported))))
        while len(followed) < n_follows:
            followed.add(rng.choices(popularity, cum_weights=cumulative)[0])
        follows.extend((resident_id, item, _moment(rng)) for item in sorted(followed))
    statuses = list(COMMENT_STATUS_WEIGHTS)
    status_weights = list(COMMENT_STATUS_WEIGHTS.values())
    comments: list[tuple[Any, ...]] = []
    for comment_id in range(1, scale.comments + 1):
        status = rng.choices(statuses, status_weights)[0]
        created = _moment(rng)
        decided = None if status == "pending" else min(NOW, created + dt.timedelta(minutes=40))
        comments.append(
            (
                comment_id,
                rng.choices(popularity, cum_weights=cumulative)[0],
                ids[int(_skewed(rng, len(ids), 2.5))],  # a few residents write a lot
                rng.choice(COMMENT_TEXTS),
                status,
                created,
                decided,
                None if decided is None else 1,
                None if decided is None else "Moderation",
            )
        )
    return Rows(residents, supports, follows, comments)


RESIDENT_COLUMNS = (
    "id",
    "telegram_id",
    "language",
    "pseudonym",
    "digest_enabled",
    "notify_mode",
    "blocked_at",
    "created_at",
    "last_seen_on",
)
SUPPORT_COLUMNS = ("resident_id", "item_id", "created_at")
COMMENT_COLUMNS = (
    "id",
    "item_id",
    "resident_id",
    "text",
    "status",
    "created_at",
    "decided_at",
    "decided_by_telegram_id",
    "decided_by_name",
)


# --------------------------------------------------------------------------- writing


def _sqlite_value(value: Any) -> Any:
    """As SQLAlchemy stores it in SQLite (UTCDateTime: naive UTC with microseconds)."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def _batches(rows: Sequence[tuple[Any, ...]]) -> Iterator[Sequence[tuple[Any, ...]]]:
    for start in range(0, len(rows), BATCH):
        yield rows[start : start + BATCH]


async def _write_sqlite(database: Database, tables: dict[str, tuple[tuple[str, ...], Any]]) -> None:
    async with database.engine.begin() as connection:
        for table, (columns, rows) in tables.items():
            sql = (
                f"INSERT INTO {table} ({', '.join(columns)})"
                f" VALUES ({', '.join('?' for _ in columns)})"
            )
            for batch in _batches(rows):
                converted = [tuple(_sqlite_value(v) for v in row) for row in batch]
                await connection.exec_driver_sql(sql, converted)


async def _write_postgres(
    database: Database, tables: dict[str, tuple[tuple[str, ...], Any]]
) -> None:
    import asyncpg  # type: ignore[import-untyped]  # PostgreSQL only

    dsn = make_url(database.url).set(drivername="postgresql").render_as_string(False)
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            for table, (columns, rows) in tables.items():
                for batch in _batches(rows):
                    await connection.copy_records_to_table(table, records=batch, columns=columns)
            for table in ("residents", "comments"):
                await connection.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT max(id) FROM {table}))"
                )
    finally:
        await connection.close()


async def import_sample(database: Database) -> None:
    async with database.uow() as uow:
        await importer.import_content(uow, importer.load_file(sample_data_path()), TZ)


async def fill(database: Database, scale: Scale) -> Filled:
    """Import the sample content and add `scale`'s rows; the counters on items follow the
    rows. Returns the row counts and the seconds it took."""
    started = time.perf_counter()
    await import_sample(database)
    async with database.engine.connect() as connection:
        item_ids = list((await connection.execute(select(Item.id).order_by(Item.id))).scalars())
        last = (await connection.execute(text("SELECT max(id) FROM residents"))).scalar()
        last_comment = (await connection.execute(text("SELECT max(id) FROM comments"))).scalar()
    rows = generate(scale, item_ids, (last or 0) + 1)
    if last_comment:
        rows.comments = [(c[0] + last_comment, *c[1:]) for c in rows.comments]
    tables = {
        "residents": (RESIDENT_COLUMNS, rows.residents),
        "supports": (SUPPORT_COLUMNS, rows.supports),
        "follows": (SUPPORT_COLUMNS, rows.follows),
        "comments": (COMMENT_COLUMNS, rows.comments),
    }
    if database.dialect == "postgresql":
        await _write_postgres(database, tables)
    else:
        await _write_sqlite(database, tables)
    supports = Counter(item for _, item, _ in rows.supports)
    approved = Counter(c[1] for c in rows.comments if c[4] == "approved")
    follows = Counter(item for _, item, _ in rows.follows)
    async with database.engine.begin() as connection:
        await connection.execute(
            update(Item)
            .where(Item.id == bindparam("item"))
            .values(
                support_count=bindparam("supports"),
                comment_count=bindparam("comments"),
                follow_count=bindparam("follows"),
            )
            .execution_options(synchronize_session=False),
            [
                {"item": i, "supports": supports[i], "comments": approved[i], "follows": follows[i]}
                for i in item_ids
            ],
        )
    async with database.uow() as uow, uow.write():
        # Supports, approved comments and residents per hour: an INSERT ... SELECT each.
        for counts in (uow.support_counts, uow.approved_comment_counts, uow.resident_counts):
            await counts.rebuild()
    if database.dialect == "postgresql":
        # What autovacuum does on a live server: statistics and the visibility map.
        async with database.engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(text("VACUUM ANALYZE"))
    seconds = time.perf_counter() - started
    return Filled(await row_counts(database), seconds)


async def row_counts(database: Database) -> dict[str, int]:
    counts: dict[str, int] = {}
    async with database.engine.connect() as connection:
        for table in ("items", "residents", "supports", "follows", "comments"):
            counts[table] = (
                await connection.execute(text(f"SELECT count(*) FROM {table}"))
            ).scalar_one()
    return counts


async def counter_mismatches(database: Database) -> list[str]:
    """Items whose support_count, comment_count or follow_count differs from their rows,
    and hours whose support, approved comment or resident count differs from the rows
    created in it (empty: all consistent)."""
    supports = (
        select(func.count()).where(Support.item_id == Item.id).correlate(Item).scalar_subquery()
    )
    approved = (
        select(func.count())
        .where(Comment.item_id == Item.id, Comment.status == "approved")
        .correlate(Item)
        .scalar_subquery()
    )
    follows = (
        select(func.count()).where(Follow.item_id == Item.id).correlate(Item).scalar_subquery()
    )
    stmt = select(
        Item.key,
        Item.support_count,
        supports,
        Item.comment_count,
        approved,
        Item.follow_count,
        follows,
    ).where(
        (Item.support_count != supports)
        | (Item.comment_count != approved)
        | (Item.follow_count != follows)
    )
    async with database.engine.connect() as connection:
        found = [
            f"{key}: supports {s} counted {s_rows}, comments {c} counted {c_rows},"
            f" follows {f} counted {f_rows}"
            for key, s, s_rows, c, c_rows, f, f_rows in await connection.execute(stmt)
        ]
    async with database.uow() as uow:
        for counts in (uow.support_counts, uow.approved_comment_counts, uow.resident_counts):
            found += [
                f"{counts.kind.name} in the hour {hour.isoformat()}: {n} counted {rows}"
                for hour, n, rows in await counts.mismatches()
            ]
    return found
