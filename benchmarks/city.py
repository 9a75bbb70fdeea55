"""What residents and moderators wait for on a city-scale database: the read paths of the
item list, the item card, comments, search, "My items", the digest audience and /stats,
through the same domain and repository functions the handlers call, each with a fresh unit
of work as in production.

    python -m benchmarks.city                  # SQLite, 100,000 residents, 1,000,000 supports
    python -m benchmarks.city --quick          # 10x fewer rows (a smoke test, well under 1 min)
    python -m benchmarks.city --postgres postgresql://postgres@127.0.0.1:5432/postgres

With --postgres it runs on SQLite and then on PostgreSQL (in a database of its own,
`todo_bench_city`, dropped again afterwards). The data (benchmarks/citydata.py): the sample
content (78 items, 7 goals), 100,000 residents, 1,000,000 supports, 300,000 follows and
100,000 comments (90 % approved), skewed towards popular items and recent weeks.

Printed per query and database: p50 and p95 in milliseconds over many calls (varying the
item, the page, the resident, the words), and p50 as a multiple of the baseline measured
in the same run (a resident looked up by primary key, also with a fresh unit of work).
`--explain` prints the plan (EXPLAIN ANALYZE on PostgreSQL, EXPLAIN QUERY PLAN on SQLite)
of every SELECT one call of each query makes.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, text

from benchmarks.citydata import (
    CITY,
    NOW,
    TZ,
    Scale,
    counter_mismatches,
    fill,
    migrated,
    postgres_database,
    sqlite_url,
)
from bot.callbacks import SORT_CODES
from domain import broadcasts as broadcast_service
from domain import comments as comment_service
from domain import digest as digest_service
from domain import items as item_service
from domain import stats as stats_service
from storage.uow import Database

DATABASE_NAME = "todo_bench_city"
BASELINE = "baseline: resident by primary key"
SEARCHES = (
    "weiterbildung",
    "pflege",
    "anerkennung abschlüsse",
    "sprachkurse",
    "fachkräfte betriebe",
    "wohnraum",
    "strasse",
    "ausbildung jugendliche",
    "arbeit",
    "klima handwerk",
)
#: The sender's batch (SenderConfig.batch): recipients read per step of a digest.
DIGEST_BATCH = 500
TARGET_MS = {"postgresql": 20.0, "sqlite": 50.0}
LABELS = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}

Step = Callable[[random.Random], Awaitable[object]]


@dataclass
class Workload:
    """What the queries vary over, read from the generated database."""

    items: list[int]
    fields: list[int]
    residents: list[int]
    typical: list[int]
    broadcast_id: int
    recipients: list[int]


@dataclass
class Result:
    database: str
    generation: float
    counts: dict[str, int]
    samples: dict[str, list[float]]
    notes: dict[str, float]
    mismatches: list[str]

    def p(self, name: str, share: float) -> float:
        return percentile(self.samples[name], share)


def percentile(values: list[float], share: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


async def _ids(database: Database, sql: str) -> list[int]:
    async with database.engine.connect() as connection:
        return [int(v) for v in (await connection.execute(text(sql))).scalars()]


async def prepare(database: Database, notes: dict[str, float]) -> Workload:
    """Pools to draw from, and this week's digest created and started as the scheduler and
    the sender would (timed once: they run once a week, in the background)."""
    items = await _ids(database, "SELECT id FROM items WHERE status <> 'merged' ORDER BY id")
    fields = await _ids(database, "SELECT id FROM action_fields ORDER BY id")
    residents = await _ids(database, "SELECT id FROM residents ORDER BY id")
    # "Typical": as many supports as the median resident (10 at city scale).
    typical = await _ids(
        database,
        "SELECT resident_id FROM supports GROUP BY resident_id"
        " HAVING count(*) BETWEEN 8 AND 12 ORDER BY resident_id",
    )
    started = time.perf_counter()
    async with database.uow() as uow:
        created = await broadcast_service.create_digest(
            uow, period_key="digest:bench-city", now=NOW
        )
    notes["digest: collect the week and create it"] = time.perf_counter() - started
    assert created is not None
    started = time.perf_counter()
    async with database.uow() as uow, uow.write():
        await uow.outbox.start(created.broadcast_id, NOW)
    notes["digest: start (audience into recipient rows)"] = time.perf_counter() - started
    recipients = await _ids(
        database,
        "SELECT resident_id FROM broadcast_recipients"
        f" WHERE broadcast_id = {created.broadcast_id} ORDER BY resident_id",
    )
    return Workload(
        items, fields, residents, typical or residents, created.broadcast_id, recipients
    )


def queries(database: Database, w: Workload) -> dict[str, Step]:
    """Each step opens a unit of work of its own, as a handler's update does."""

    def language(rng: random.Random) -> str:
        return "en" if rng.random() < 0.3 else "de"

    async def baseline(rng: random.Random) -> object:
        async with database.uow() as uow:
            return await uow.residents.get(rng.choice(w.residents))

    def item_list(sort: Any) -> Step:
        async def step(rng: random.Random) -> object:
            # Half the time all items (any of its pages), else one action field.
            field = None if rng.random() < 0.5 else rng.choice(w.fields)
            page = rng.randrange(10) if field is None else rng.randrange(2)
            async with database.uow() as uow:
                return await item_service.list_items(uow, language(rng), field, sort, page)

        return step

    async def card(rng: random.Random) -> object:
        async with database.uow() as uow:
            return await item_service.item_card(
                uow, rng.choice(w.residents), rng.choice(w.items), language(rng)
            )

    async def comments(rng: random.Random) -> object:
        # Mostly the first page (the button on the card), sometimes paging on.
        page = 0 if rng.random() < 0.6 else rng.randrange(1, 40)
        async with database.uow() as uow:
            return await comment_service.approved_comments(
                uow, rng.choice(w.items), language(rng), page
            )

    async def search(rng: random.Random) -> object:
        async with database.uow() as uow:
            return await item_service.search(uow, language(rng), rng.choice(SEARCHES), 0)

    async def my_items(rng: random.Random) -> object:
        async with database.uow() as uow:
            return await item_service.my_items(uow, rng.choice(w.typical), language(rng), 0)

    async def audience(rng: random.Random) -> object:
        async with database.uow() as uow:
            return await uow.outbox.count_audience({"type": "digest"})

    async def digest_batch(rng: random.Random) -> object:
        # The sender's step: the next recipients, and what each of them follows.
        after = rng.choice(w.recipients[:-DIGEST_BATCH] or [0])
        async with database.uow() as uow:
            rows = await uow.outbox.pending(w.broadcast_id, after, DIGEST_BATCH)
            return await digest_service.followed_items(uow, [r.resident_id for r in rows])

    async def stats(rng: random.Random) -> object:
        async with database.uow() as uow:
            return await stats_service.collect(uow, NOW, TZ)

    steps: dict[str, Step] = {BASELINE: baseline}
    for name in SORT_CODES.values():
        steps[f"item list, sorted by {name}"] = item_list(name)
    steps |= {
        "item card": card,
        "comments page of an item": comments,
        "search (German words)": search,
        '"My items" (typical resident)': my_items,
        "digest audience (who gets it)": audience,
        f"digest batch ({DIGEST_BATCH} recipients + follows)": digest_batch,
        "/stats numbers": stats,
    }
    return steps


async def sample(steps: dict[str, Step], samples: int, seed: int = 1) -> dict[str, list[float]]:
    """Round robin over the queries (so that noise from the machine hits all alike),
    after a warm-up round."""
    rng = random.Random(seed)
    for step in steps.values():
        for _ in range(3):
            await step(rng)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(samples):
        for name, step in steps.items():
            started = time.perf_counter()
            await step(rng)
            times[name].append((time.perf_counter() - started) * 1000)
    return times


async def explain(database: Database, steps: dict[str, Step]) -> None:
    """The plan of every SELECT that one call of each query makes."""
    postgres = database.dialect == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    for name, step in steps.items():
        statements: list[tuple[str, Any]] = []

        def capture(*args: Any, into: list[tuple[str, Any]] = statements) -> None:
            statement, parameters = args[2], args[3]
            if statement.lstrip().upper().startswith(("SELECT", "WITH")):
                into.append((statement, parameters))

        event.listen(database.engine.sync_engine, "before_cursor_execute", capture)
        try:
            await step(random.Random(7))
        finally:
            event.remove(database.engine.sync_engine, "before_cursor_execute", capture)
        print(f"\n### {name}")
        async with database.engine.connect() as connection:
            for statement, parameters in statements:
                plan = await connection.exec_driver_sql(prefix + statement, parameters)
                print("\n" + " ".join(statement.split())[:300])
                for row in plan:
                    print("    " + " | ".join(str(v) for v in row))


async def bench(
    url: str, scale: Scale, samples: int, *, show_plans: bool = False, quiet: bool = False
) -> Result:
    database = await migrated(url)
    try:
        filled = await fill(database, scale)
        mismatches = await counter_mismatches(database)
        label = LABELS.get(database.dialect, database.dialect)
        if not quiet:
            counts = ", ".join(f"{n:,} {table}" for table, n in filled.counts.items())
            print(f"{label}: generated in {filled.seconds:.1f} s ({counts})", flush=True)
            if mismatches:
                print("  counters differ from the rows: " + "; ".join(mismatches))
        notes: dict[str, float] = {}
        workload = await prepare(database, notes)
        steps = queries(database, workload)
        if show_plans:
            await explain(database, steps)
        times = await sample(steps, samples)
        result = Result(label, filled.seconds, filled.counts, times, notes, mismatches)
        if not quiet:
            print(table([result]), flush=True)
        return result
    finally:
        await database.dispose()


def table(results: list[Result]) -> str:
    """A markdown table: one row per query, p50 / p95 / p50 × baseline per database."""
    head = "| query |"
    rule = "| --- |"
    for r in results:
        head += f" {r.database} p50 ms | p95 ms | × base |"
        rule += " ---: | ---: | ---: |"
    lines = [head, rule]
    for name in results[0].samples:
        line = f"| {name} |"
        for r in results:
            base = r.p(BASELINE, 0.5)
            line += f" {r.p(name, 0.5):.1f} | {r.p(name, 0.95):.1f} | {r.p(name, 0.5) / base:.1f} |"
        lines.append(line)
    return "\n".join(lines)


def summary(results: list[Result], samples: int) -> str:
    lines = ["", table(results), ""]
    for r in results:
        target = TARGET_MS["postgresql" if r.database == "PostgreSQL" else "sqlite"]
        missed = [n for n in r.samples if n != BASELINE and r.p(n, 0.95) > target]
        lines.append(
            f"{r.database}: generated in {r.generation:.1f} s; {samples} samples per query;"
            f" p95 target {target:.0f} ms: "
            + ("all met" if not missed else "missed by " + ", ".join(missed))
        )
        for note, seconds in r.notes.items():
            lines.append(f"  (once) {note}: {seconds * 1000:.0f} ms")
        if r.mismatches:
            lines.append("  counters differ from the rows: " + "; ".join(r.mismatches))
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> None:
    scale = CITY.scaled(0.1) if args.quick else CITY
    samples = args.samples or (30 if args.quick else 100)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        results.append(await bench(sqlite_url(folder), scale, samples, show_plans=args.explain))
    if args.postgres:
        async with postgres_database(args.postgres, DATABASE_NAME) as url:
            results.append(await bench(url, scale, samples, show_plans=args.explain))
    print(summary(results, samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer rows")
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server's admin URL")
    parser.add_argument("--samples", type=int, help="calls per query (default 100, quick 30)")
    parser.add_argument("--explain", action="store_true", help="print each query's plans")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
