"""The city-scale benchmark (benchmarks/city.py) at a tiny scale: it generates consistent
data and measures every query."""

from __future__ import annotations

from pathlib import Path

from benchmarks import city
from benchmarks.citydata import Scale, sqlite_url

TINY = Scale(residents=300, supports=3_000, comments=300, follows=900)


async def test_city_benchmark_measures_every_query_on_consistent_data(tmp_path: Path) -> None:
    result = await city.bench(sqlite_url(str(tmp_path)), TINY, samples=3, quiet=True)

    assert result.mismatches == []
    assert result.counts == {
        "items": 78,
        "residents": 300,
        "supports": 3_000,
        "follows": 900,
        "comments": 300,
    }
    table = city.table([result])
    expected = [
        city.BASELINE,
        "item list, sorted by support",
        "item list, sorted by new",
        "item list, sorted by discussed",
        "item card",
        "comments page of an item",
        "search (German words)",
        '"My items" (typical resident)',
        "digest audience (who gets it)",
        "digest batch (500 recipients + follows)",
        "/stats numbers",
    ]
    assert list(result.samples) == expected
    for name in expected:
        assert f"| {name} |" in table
        assert len(result.samples[name]) == 3
