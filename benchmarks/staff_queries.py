"""How long /stats and /export take on a city-sized database, against a baseline measured
in the same run on the same data.

    python -m benchmarks.staff_queries                        # SQLite, 50,000 residents
    python -m benchmarks.staff_queries --residents 200000
    python -m benchmarks.staff_queries --postgres postgresql://postgres@127.0.0.1:5432/postgres

The PostgreSQL run creates (and drops again) a database of its own, `todo_bench`. The data
(benchmarks/citydata.py, shared with benchmarks.city): the sample content (78 items,
7 goals), then N residents with 5 supports and 4 follows per resident on average (popular
items more often) spread over 12 weeks, and one comment per 10 residents (90 % approved).
Printed per step: the best of several runs in milliseconds and the ratio to the baseline,
one full pass over the supports table (`SELECT count(*), max(created_at) FROM supports`).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import text

from benchmarks.citydata import NOW, TZ, Scale, fill, migrated, postgres_database, sqlite_url
from domain import export as export_service
from domain import stats as stats_service
from storage.uow import Database

SUPPORTS_PER_RESIDENT = 5
FOLLOWS_PER_RESIDENT = 4
RESIDENTS_PER_COMMENT = 10


def scale(residents: int) -> Scale:
    return Scale(
        residents=residents,
        supports=residents * SUPPORTS_PER_RESIDENT,
        comments=max(1, residents // RESIDENTS_PER_COMMENT),
        follows=residents * FOLLOWS_PER_RESIDENT,
    )


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
    database = await migrated(url)
    try:
        filled = await fill(database, scale(residents))
        rows = await measure(database)
    finally:
        await database.dispose()
    counts = {t: n for t, n in filled.counts.items() if t != "items"}
    print(f"\n{label}: " + ", ".join(f"{n:,} {t}" for t, n in counts.items()))
    print(f"(filled in {filled.seconds:.1f} s)")
    base = rows[0][1]
    print(f"{'step':<36} {'best ms':>9} {'× baseline':>11}")
    for name, ms in rows:
        print(f"{name:<36} {ms:>9.1f} {ms / base:>11.1f}")


async def with_postgres(admin_url: str, residents: int) -> None:
    async with postgres_database(admin_url, "todo_bench") as url:
        await run(url, residents, "PostgreSQL")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--residents", type=int, default=50_000)
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server's admin URL")
    args = parser.parse_args()
    if args.postgres:
        asyncio.run(with_postgres(args.postgres, args.residents))
        return
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(sqlite_url(folder), args.residents, "SQLite"))


if __name__ == "__main__":
    main()
