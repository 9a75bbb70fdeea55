"""How long /stats and /export take on a city-sized database, against a baseline measured
in the same run on the same data.

    python -m benchmarks.staff_queries                        # SQLite, 50,000 residents
    python -m benchmarks.staff_queries --residents 200000
    python -m benchmarks.staff_queries --postgres postgresql://postgres@127.0.0.1:5432/postgres

The PostgreSQL run creates (and drops again) a database of its own, `todo_bench`. The data:
the sample content (78 items, 7 goals), then N residents, 5 supports and 4 follows per
resident spread over 10 weeks, and one approved comment per 10 residents. Printed per step:
the best of several runs in milliseconds and the ratio to the baseline, one full pass over
the supports table (`SELECT count(*), max(created_at) FROM supports`), which every honest
count of supports must at least do once.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.cli import sample_data_path
from bot.settings import normalise_database_url
from domain import export as export_service
from domain import importer
from domain import stats as stats_service
from storage.database import create_engine
from storage.migrate import upgrade
from storage.models import UTCDateTime
from storage.uow import Database

TZ = ZoneInfo("Europe/Berlin")
NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
SUPPORTS_PER_RESIDENT = 5
FOLLOWS_PER_RESIDENT = 4
RESIDENTS_PER_COMMENT = 10

#: Portable SQL (SQLite and PostgreSQL): a recursive sequence instead of generate_series,
#: arithmetic instead of random() so that both databases get the same rows.
SEQUENCE = "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :count)"
FILL = [
    (
        "residents",
        SEQUENCE + " INSERT INTO residents (telegram_id, language, pseudonym, digest_enabled,"
        " notify_mode, created_at, last_seen_on)"
        " SELECT 100000000 + n, CASE WHEN n % 3 = 0 THEN 'en' ELSE 'de' END, 100000 + n,"
        " true, 'instant', :now, :today FROM seq",
    ),
    (
        "supports",
        SEQUENCE + ", pick(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM pick WHERE k < :per - 1)"
        " INSERT INTO supports (resident_id, item_id, created_at)"
        " SELECT r.id, i.id, :now_minus_weeks"
        " FROM seq JOIN residents r ON r.telegram_id = 100000000 + seq.n"
        " CROSS JOIN pick"
        " JOIN items i ON i.id = (SELECT min(id) FROM items) + (seq.n * 7 + pick.k * 13) % :items",
    ),
    (
        "follows",
        SEQUENCE + ", pick(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM pick WHERE k < :per - 1)"
        " INSERT INTO follows (resident_id, item_id, created_at)"
        " SELECT r.id, i.id, :now"
        " FROM seq JOIN residents r ON r.telegram_id = 100000000 + seq.n"
        " CROSS JOIN pick"
        " JOIN items i ON i.id = (SELECT min(id) FROM items) + (seq.n * 11 + pick.k * 17) % :items",
    ),
    (
        "comments",
        SEQUENCE + " INSERT INTO comments (item_id, resident_id, text, status, created_at,"
        " decided_at, decided_by_telegram_id, decided_by_name)"
        " SELECT (SELECT min(id) FROM items) + seq.n % :items, r.id,"
        " 'Ein Kommentar zur Zukunft der Arbeit in Dortmund', 'approved', :now, :now, 1, 'b'"
        " FROM seq JOIN residents r ON r.telegram_id = 100000000 + seq.n * :every",
    ),
]


async def fill(database: Database, residents: int) -> dict[str, int]:
    async with database.uow() as uow:
        await importer.import_content(uow, importer.load_file(sample_data_path()), TZ)
    counts: dict[str, int] = {}
    async with database.engine.begin() as connection:
        items = (await connection.execute(text("SELECT count(*) FROM items"))).scalar_one()
        for table, sql in FILL:
            per = {"supports": SUPPORTS_PER_RESIDENT, "follows": FOLLOWS_PER_RESIDENT}.get(table, 1)
            count = residents // RESIDENTS_PER_COMMENT if table == "comments" else residents
            params: dict[str, Any] = {
                "count": count,
                "per": per,
                "items": items,
                "every": RESIDENTS_PER_COMMENT,
                "now": NOW,
                "today": NOW.date(),
                "now_minus_weeks": NOW - dt.timedelta(days=3),
            }
            moments = [n for n in ("now", "now_minus_weeks") if re.search(rf":{n}\b", sql)]
            statement = text(sql).bindparams(*(bindparam(n, type_=UTCDateTime()) for n in moments))
            await connection.execute(statement, params)
        for table in ("residents", "supports", "follows", "comments"):
            counts[table] = (
                await connection.execute(text(f"SELECT count(*) FROM {table}"))
            ).scalar_one()
        # The counters the items table keeps, as the bot would have kept them.
        await connection.execute(
            text(
                "UPDATE items SET support_count = (SELECT count(*) FROM supports s"
                " WHERE s.item_id = items.id), comment_count = (SELECT count(*) FROM comments c"
                " WHERE c.item_id = items.id AND c.status = 'approved')"
            )
        )
        if database.engine.dialect.name == "postgresql":
            await connection.execute(text("ANALYZE"))
    return counts


async def best_of(runs: int, step: Callable[[], Awaitable[object]]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        await step()
        best = min(best, time.perf_counter() - started)
    return best * 1000


async def measure(database: Database) -> list[tuple[str, float]]:
    async def baseline() -> None:
        async with database.uow() as uow:
            await uow.session.execute(text("SELECT count(*), max(created_at) FROM supports"))

    async def stats() -> None:
        async with database.uow() as uow:
            await stats_service.collect(uow, NOW, TZ)

    async def export() -> None:
        async with database.uow() as uow:
            await export_service.export_files(uow, TZ, NOW)

    await baseline()  # warm caches and the pool
    return [
        ("baseline: one pass over supports", await best_of(5, baseline)),
        ("/stats numbers (stats.collect)", await best_of(5, stats)),
        ("/export files (CSV + JSON)", await best_of(3, export)),
    ]


async def run(url: str, residents: int, label: str) -> None:
    engine = create_engine(url)
    await upgrade(engine)
    await engine.dispose()
    database = Database(url)
    try:
        started = time.perf_counter()
        counts = await fill(database, residents)
        filled = time.perf_counter() - started
        rows = await measure(database)
    finally:
        await database.dispose()
    print(f"\n{label}: " + ", ".join(f"{n:,} {t}" for t, n in counts.items()))
    print(f"(filled in {filled:.1f} s)")
    base = rows[0][1]
    print(f"{'step':<36} {'best ms':>9} {'× baseline':>11}")
    for name, ms in rows:
        print(f"{name:<36} {ms:>9.1f} {ms / base:>11.1f}")


async def with_postgres(admin_url: str, residents: int) -> None:
    admin = create_async_engine(normalise_database_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text("DROP DATABASE IF EXISTS todo_bench"))
            await connection.execute(text("CREATE DATABASE todo_bench"))
        base = admin_url.rsplit("/", 1)[0]
        await run(normalise_database_url(f"{base}/todo_bench"), residents, "PostgreSQL")
    finally:
        async with admin.connect() as connection:
            await connection.execute(text("DROP DATABASE IF EXISTS todo_bench WITH (FORCE)"))
        await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--residents", type=int, default=50_000)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server's admin URL")
    args = parser.parse_args()
    if args.postgres:
        asyncio.run(with_postgres(args.postgres, args.residents))
        return
    with tempfile.TemporaryDirectory() as folder:
        url = normalise_database_url(f"sqlite:///{Path(folder) / 'bench.db'}")
        asyncio.run(run(url, args.residents, "SQLite"))


if __name__ == "__main__":
    main()
