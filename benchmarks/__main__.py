"""Every benchmark, one after the other, each in a process of its own, then one summary.

    python -m benchmarks                 # full runs (about half an hour on 2 cores)
    python -m benchmarks --quick         # shorter runs
    python -m benchmarks --postgres postgresql://postgres@127.0.0.1:5432/postgres
    python -m benchmarks --only latency,memory

Runs updates, latency, city (only if benchmarks/city.py exists), broadcast, staff_queries
(on SQLite, and with --postgres once more on PostgreSQL) and memory. Each one's own output
goes through as it runs; the summary at the end has one line per headline figure with its
target (where one was set) and whether it was met. --quick and --postgres are passed only
to benchmarks whose command line has them (read from their --help).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ("updates", "latency", "city", "broadcast", "staff_queries", "memory")
#: staff_queries has no --quick: a smaller database instead.
QUICK_STAFF_RESIDENTS = "10000"


@dataclass
class Headline:
    benchmark: str
    figure: str
    value: str
    target: str = "–"
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return "–" if self.met is None else ("yes" if self.met else "NO")


@dataclass
class Run:
    name: str
    args: list[str]
    code: int = 0
    seconds: float = 0.0
    output: str = ""
    json_path: Path | None = None
    headlines: list[Headline] = field(default_factory=list)


def flags_of(module: str) -> str:
    """The --help text of a benchmark (to see which flags it takes)."""
    result = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout


def plan(args: argparse.Namespace, tmp: Path) -> list[Run]:
    wanted = set(args.only.split(",")) if args.only else set(ORDER)
    runs: list[Run] = []
    for name in ORDER:
        if name not in wanted:
            continue
        if importlib.util.find_spec(f"benchmarks.{name}") is None:
            print(f"benchmarks/{name}.py is not there: skipped", file=sys.stderr)
            continue
        help_text = flags_of(name)
        common: list[str] = []
        if args.quick and "--quick" in help_text:
            common.append("--quick")
        if name == "staff_queries":
            if args.quick and "--quick" not in help_text:
                common += ["--residents", QUICK_STAFF_RESIDENTS]
            runs.append(Run(name, common))
            if args.postgres:
                runs.append(Run(name, [*common, "--postgres", args.postgres]))
            continue
        if args.postgres and "--postgres" in help_text:
            common += ["--postgres", args.postgres]
        run = Run(name, common)
        if "--json" in help_text:
            run.json_path = tmp / f"{name}.json"
            run.args = [*common, "--json", str(run.json_path)]
        runs.append(run)
    return runs


def execute(run: Run) -> None:
    """Run it; its stdout goes through and is kept, its stderr goes through."""
    command = [sys.executable, "-m", f"benchmarks.{run.name}", *run.args]
    shown = " ".join(a if "://" not in a else "ADMIN_URL" for a in command[1:])
    print(f"\n=== python {shown}", flush=True)
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line)
    run.code = process.wait()
    run.seconds = time.monotonic() - started
    run.output = "".join(lines)


# --------------------------------------------------------------------------- headlines


def table_rows(output: str) -> list[list[str]]:
    """Rows of the tables a benchmark printed: markdown (| a | b |) or columns separated by
    two or more spaces."""
    rows = []
    for line in output.splitlines():
        stripped = line.strip()
        if not stripped or set(stripped) <= set("-| :"):
            continue
        if stripped.startswith("|"):
            rows.append([c.strip() for c in stripped.strip("|").split("|")])
        else:
            rows.append(re.split(r"\s{2,}", stripped))
    return rows


def number(text: str) -> float | None:
    match = re.search(r"-?[\d,]*\.?\d+", text)
    return float(match.group().replace(",", "")) if match else None


def from_updates(run: Run) -> list[Headline]:
    """Updates per second of each variant, and ours against bare sequential python-telegram-bot
    (columns: variant, updates, seconds, updates/s, CPU ms/upd, × bare seq, × bare 64)."""
    out = []
    for row in table_rows(run.output):
        if len(row) >= 7 and row[0].startswith(("to:DO", "bare")) and number(row[3]) is not None:
            out.append(Headline(run.name, f"{row[0]}: updates/s (burst of {row[1]})", row[3]))
            ratio = number(row[5])
            if row[0].startswith("to:DO") and ratio is not None:
                out.append(
                    Headline(
                        run.name, f"{row[0]}: × bare sequential", row[5], "≥ 0.6", ratio >= 0.6
                    )
                )
    return out


def from_latency(run: Run) -> list[Headline]:
    if run.json_path is None or not run.json_path.exists():
        return []
    data = json.loads(run.json_path.read_text())
    out = []
    for m in data["fixed"]:
        if not m["variant"].startswith("to:DO"):
            continue
        where = f"{m['variant']} at {m['rate']:g}/s, {m['delay_ms']:g} ms per call"
        p99 = m["p99_ms"]
        value = "∞ (unanswered)" if p99 is None else f"{p99:.0f} ms"
        if m["delay_ms"] == 30 and m["rate"] == 100:
            out.append(
                Headline(
                    run.name, f"{where}: p99", value, "< 100 ms", p99 is not None and p99 < 100
                )
            )
        else:
            out.append(Headline(run.name, f"{where}: p99", value))
        out.append(
            Headline(
                run.name,
                f"{where}: replies out of order",
                str(m["out_of_order"]),
                "0",
                m["out_of_order"] == 0,
            )
        )
        errors = m.get("errors", 0)
        out.append(Headline(run.name, f"{where}: errors logged", str(errors), "0", errors == 0))
    lowest = data.get("ladder_from")
    for variant, rate in data["sustained"].items():
        value = f"{rate:g}/s" if rate else (f"< {lowest:g}/s" if lowest else "none")
        out.append(Headline(run.name, f"{variant}: highest load with p99 < 200 ms", value))
    return out


def from_city(run: Run) -> list[Headline]:
    out = []
    for match in re.finditer(
        r"^(?P<db>\w+): generated .*?p95 target (?P<target>\d+) ms: (?P<verdict>.+)$",
        run.output,
        re.MULTILINE,
    ):
        ok = match["verdict"].strip() == "all met"
        out.append(
            Headline(
                run.name,
                f"{match['db']}: every query's p95",
                match["verdict"].strip(),
                f"< {match['target']} ms",
                ok,
            )
        )
    return out


def from_broadcast(run: Run) -> list[Headline]:
    out = []
    for row in table_rows(run.output):
        if len(row) < 10 or row[1] != "to:DO sender":
            continue
        scenario, share, errors, peak, dupes, missing = (
            row[0],
            row[5],
            row[6],
            row[7],
            row[8],
            row[9],
        )
        if share != "–":
            out.append(Headline(run.name, f"{scenario}: share of the allowed rate", share))
        out.append(Headline(run.name, f"{scenario}: 429s", errors, "0", errors == "0"))
        if scenario.startswith("memory"):
            mb = number(peak)
            out.append(
                Headline(
                    run.name,
                    f"{scenario}: sender peak MB",
                    peak,
                    "< 150 MB",
                    mb is not None and mb < 150,
                )
            )
        out.append(
            Headline(run.name, f"{scenario}: recipients missed", missing, "0", missing == "0")
        )
        if scenario.startswith("crash"):
            out.append(Headline(run.name, f"{scenario}: sent twice", dupes))
    return out


def from_staff(run: Run) -> list[Headline]:
    db = "PostgreSQL" if "--postgres" in run.args else "SQLite"
    out = []
    for row in table_rows(run.output):
        if len(row) >= 3 and row[0].startswith(("/stats", "/export")):
            out.append(
                Headline(run.name, f"{db}: {row[0]} (best ms, × baseline)", f"{row[1]} ({row[2]}×)")
            )
    return out


def from_memory(run: Run) -> list[Headline]:
    if run.json_path is None or not run.json_path.exists():
        return []
    out = []
    for r in json.loads(run.json_path.read_text()):
        mb = max(r["rss"], r["peak"])
        out.append(
            Headline(run.name, f"bot RSS {r['moment']}", f"{mb:.0f} MB", "< 150 MB", mb < 150)
        )
    return out


PARSERS: dict[str, Callable[[Run], list[Headline]]] = {
    "updates": from_updates,
    "latency": from_latency,
    "city": from_city,
    "broadcast": from_broadcast,
    "staff_queries": from_staff,
    "memory": from_memory,
}


def print_summary(runs: list[Run]) -> None:
    print("\n## Summary\n")
    print("| benchmark | figure | value | target | met |")
    print("| --- | --- | ---: | --- | --- |")
    for run in runs:
        if run.code != 0:
            print(f"| {run.name} | exit code | {run.code} | 0 | NO |")
        if not run.headlines and run.code == 0:
            print(f"| {run.name} | (no figure recognised in its output) | – | – | – |")
        for h in run.headlines:
            print(f"| {h.benchmark} | {h.figure} | {h.value} | {h.target} | {h.verdict} |")
    print()
    for run in runs:
        print(
            f"- {run.name} {' '.join(a if '://' not in a else 'ADMIN_URL' for a in run.args)}"
            f": {run.seconds:.0f} s"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="a PostgreSQL server's admin URL")
    parser.add_argument("--only", help="comma-separated: " + ",".join(ORDER))
    args = parser.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    with tempfile.TemporaryDirectory() as folder:
        runs = plan(args, Path(folder))
        for run in runs:
            execute(run)
            try:
                run.headlines = PARSERS[run.name](run)
            except Exception as exc:  # a changed output format must not lose the others
                print(f"could not read {run.name}'s figures: {exc!r}", file=sys.stderr)
        print_summary(runs)
    return 0 if all(r.code == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
