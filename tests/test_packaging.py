"""`pip install .` gives a working bot: the wheel ships templates, migrations, the sample data
and the `todo-bot` command, and works without the checkout on sys.path."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SETTING_NAMES = frozenset(name.upper() for name in Settings.model_fields)
#: What pip prints when it cannot fetch the build backend (no network, no index).
NO_BACKEND = re.compile(
    r"No matching distribution found for hatchling|Could not find a version that satisfies "
    r"the requirement hatchling|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Network is unreachable|ProxyError"
)


def build_wheel(out: Path) -> Path:
    """`pip wheel` of the checkout into `out` (the session fixture `wheel` in conftest.py
    shares it between this module and tests/test_image.py: it is slow)."""
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check"]
    if importlib.util.find_spec("hatchling") is not None:
        command.append("--no-build-isolation")  # faster, and works offline
    command += ["-w", str(out), str(ROOT)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        # In CI the image test (tests/test_image.py) and this module must run, not skip.
        in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
        if NO_BACKEND.search(output) and not in_ci:
            pytest.skip(
                "cannot build the wheel: the build backend hatchling is not installed and "
                "cannot be downloaded (`pip install hatchling` to run this test)"
            )
        pytest.fail(f"building the wheel failed:\n{output}")
    wheels = list(out.glob("todo_bot-*.whl"))
    assert len(wheels) == 1, output
    return wheels[0]


def test_wheel_ships_templates_migrations_sample_data_and_the_command(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        sample = archive.read("bot/data/sample.yaml")
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD"))
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()

    checkout = [
        *ROOT.glob("templates/*/*.html"),
        *ROOT.glob("templates/*/labels.txt"),
        *ROOT.glob("storage/migrations/versions/*.py"),
    ]
    expected = {p.relative_to(ROOT).as_posix() for p in checkout} | {
        "storage/migrations/env.py",
        "storage/migrations/script.py.mako",
        "storage/migrations/versions/0001_initial_schema.py",
        "bot/data/sample.yaml",
    }
    for language in ("de", "en"):
        assert f"templates/{language}/labels.txt" in expected
        assert f"templates/{language}/start.html" in expected
    assert sorted(expected - names) == []
    assert sample == (ROOT / "data" / "sample.yaml").read_bytes()
    # Nothing local leaks into the package.
    assert not [n for n in names if n.startswith(("tests/", "var/", ".env"))]

    parser = configparser.ConfigParser()
    parser.read_string(entry_points)
    assert parser["console_scripts"]["todo-bot"].strip() == "bot.cli:main"


PROBE = """
import json, sys
from zoneinfo import ZoneInfo
import bot, domain, handlers, storage, templates
from bot.rendering import TEMPLATES_DIR, Renderer
from storage.migrate import MIGRATIONS_DIR
renderer = Renderer(ZoneInfo("Europe/Berlin"))
print(json.dumps({
    "sys_path": sys.path,
    "modules": [m.__file__ for m in (bot, domain, handlers, storage, templates)],
    "templates": str(TEMPLATES_DIR),
    "migrations": str(MIGRATIONS_DIR),
    "start": {lang: renderer.render("start", lang, new_resident=True) for lang in ("de", "en")},
    "button": {lang: renderer.label(lang, "menu_items") for lang in ("de", "en")},
}))
"""


def test_the_installed_wheel_migrates_imports_the_sample_and_renders(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    # -S: no .pth files, so the editable install cannot put the checkout on sys.path; the
    # dependencies come from the virtual environment's site-packages.
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("TELEGRAM_", "PYTHON")) and k.upper() not in SETTING_NAMES
    }
    env["PYTHONPATH"] = os.pathsep.join([str(site), *sorted(dependencies)])
    env["DATABASE_URL"] = f"sqlite:///{work / 'bot.sqlite3'}"

    def python(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-S", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    probe = python("-c", PROBE)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert not [p for p in found["sys_path"] if p and Path(p).resolve() == ROOT]
    for path in (*found["modules"], found["templates"], found["migrations"]):
        assert Path(path).is_relative_to(site), path
    assert "Willkommen" in found["start"]["de"]
    assert "Welcome" in found["start"]["en"]
    assert "to:DO" in found["button"]["en"]

    migrated = python("-m", "bot", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "up to date" in migrated.stdout

    imported = python("-m", "bot", "import", "--sample")
    assert imported.returncode == 0, imported.stderr
    assert f"Imported {site / 'bot' / 'data' / 'sample.yaml'}:" in imported.stdout
    assert re.search(r"sessions: 26 new", imported.stdout), imported.stdout
    assert re.search(r"items: 78 new", imported.stdout), imported.stdout
    assert (work / "bot.sqlite3").is_file()
