"""The Docker image without Docker: the Dockerfile's install and start commands, read from the
Dockerfile itself, run in a fresh virtual environment outside the checkout. `todo-bot run`
migrates a SQLite database, answers /start from the fake Bot API and stops on SIGTERM; in
webhook mode the image's HEALTHCHECK command succeeds against it (and fails once it stopped).

Equivalents: `pip wheel … /wheels .` is the shared `wheel` fixture (the project only; the
dependencies come from the test environment, so no network is needed), `pip install
/wheels/*.whl` installs that wheel into a new venv whose dependencies are this environment's
site-packages (added by a .pth line: the checkout's editable install is not seen there)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.settings import Settings
from tests.fake_telegram import FakeTelegram
from tests.test_cli import assert_greets_with_main_menu, reply_to
from tests.test_webhook import free_port

ROOT = Path(__file__).resolve().parent.parent
SETTING_NAMES = frozenset(name.upper() for name in Settings.model_fields)
BOOT_TIMEOUT = 60.0
EXIT_TIMEOUT = 20.0


# --------------------------------------------------------------------------- the Dockerfile


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """`(INSTRUCTION, arguments)` of every line, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


@dataclass
class Image:
    wheel_run: list[str]
    install_run: list[str]
    cmd: list[str]
    env: dict[str, str]
    healthcheck: str


def read_image() -> Image:
    steps = instructions((ROOT / "Dockerfile").read_text(encoding="utf-8"))
    runs = [shlex.split(args) for kind, args in steps if kind == "RUN"]
    [wheel_run] = [r for r in runs if r[:2] == ["pip", "wheel"]]
    [install_run] = [r for r in runs if r[:2] == ["pip", "install"]]
    [cmd] = [json.loads(args) for kind, args in steps if kind == "CMD"]
    env: dict[str, str] = {}
    for kind, args in steps:
        if kind == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(args))  # type: ignore[misc]
    [check] = [args for kind, args in steps if kind == "HEALTHCHECK"]
    options, _, command = check.partition(" CMD ")
    assert all(o.startswith("--") for o in options.split()), options
    return Image(wheel_run, install_run, cmd, env, command.strip())


def test_the_dockerfile_builds_wheels_installs_them_and_checks_health() -> None:
    image = read_image()
    assert image.wheel_run[-1] == "." and "/wheels" in image.wheel_run
    assert "/wheels/*.whl" in image.install_run
    assert image.cmd == ["todo-bot", "run"]
    assert {"DATABASE_URL", "PYTHONUNBUFFERED", "WEBHOOK_PORT"} <= set(image.env)
    assert image.env["DATABASE_URL"].startswith("sqlite+aiosqlite:////home/todo/var/")
    settings = {k for k in image.env if not k.startswith("PYTHON")}
    assert settings <= SETTING_NAMES, settings - SETTING_NAMES
    if "LOG_FORMAT" in SETTING_NAMES:
        assert image.env.get("LOG_FORMAT") == "json"
    assert image.healthcheck.startswith("python -c ")
    assert "/healthz" in image.healthcheck and "curl" not in image.healthcheck


# --------------------------------------------------------------------------- the venv


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed as the Dockerfile installs it."""
    image = read_image()
    target = tmp_path_factory.mktemp("image") / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(target)], check=True, timeout=120
    )
    python = target / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    dependencies = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_test_dependencies.pth").write_text("\n".join(sorted(dependencies)) + "\n")
    # `pip install --no-cache-dir /wheels/*.whl` -> the same options, this wheel, this venv.
    command = [*image.install_run, "&&"]
    options = [a for a in command[2 : command.index("&&")] if a.startswith("-")]
    installed = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", *options),
            *("--no-deps", "--no-index", "--disable-pip-version-check", str(wheel)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    where = subprocess.run(
        [str(python), "-c", "import bot, storage; print(bot.__file__, storage.__file__)"],
        cwd=target,
        env=image_env(target, target),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(Path(f).is_relative_to(site) for f in where), where
    return target


def image_env(venv: Path, work: Path, **settings: str) -> dict[str, str]:
    """The outside environment without bot settings or Python paths, the Dockerfile's ENV
    (its database path moved into `work`), the venv first on PATH, then `settings`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("TELEGRAM_", "PYTHON", "VIRTUAL_ENV"))
        and k.upper() not in SETTING_NAMES
    }
    env.update(read_image().env)
    env["DATABASE_URL"] = env["DATABASE_URL"].replace("/home/todo/var", str(work))
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env.update(settings)
    return env


class Container:
    """The image's CMD as a process; its output goes to a file."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def until_ready(self, awaitable: asyncio.Future[object] | object) -> object:
        waiter = asyncio.ensure_future(awaitable)  # type: ignore[arg-type]
        exited = asyncio.ensure_future(self.process.wait())
        await asyncio.wait({waiter, exited}, return_when=asyncio.FIRST_COMPLETED)
        if waiter.done():
            exited.cancel()
            return waiter.result()
        waiter.cancel()
        raise AssertionError(f"exited with {self.process.returncode}:\n{self.output}")

    async def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), EXIT_TIMEOUT)


@asynccontextmanager
async def container(venv: Path, work: Path, env: dict[str, str]) -> AsyncIterator[Container]:
    cmd = read_image().cmd
    log = work / f"container-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            str(venv / "bin" / cmd[0]),
            *cmd[1:],
            cwd=work,
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        yield Container(process, log)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_image_migrates_answers_start_and_stops_on_sigterm(
    venv: Path, tmp_path: Path
) -> None:
    work = tmp_path / "home"
    work.mkdir()
    async with FakeTelegram() as fake:
        env = image_env(venv, work, TELEGRAM_BOT_TOKEN=fake.token, TELEGRAM_API_URL=fake.url)
        async with container(venv, work, env) as bot:
            fake.send_message(fake.user(42, language_code="en"), "/start")
            reply = await bot.until_ready(fake.wait_for_call(reply_to(42), timeout=BOOT_TIMEOUT))
            assert_greets_with_main_menu(reply)  # type: ignore[arg-type]
            assert await bot.stop() in (0, 143), bot.output
        output = bot.output
    assert "Traceback" not in output, output
    assert "database ready at revision" in output
    # The installed package was used, not the checkout.
    assert str(ROOT) not in output
    database = work / "todo-bot.sqlite3"
    with sqlite3.connect(database) as connection:
        [(revision,)] = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    assert re.fullmatch(r"\w+", revision)


async def healthcheck(env: dict[str, str], cwd: Path) -> int:
    process = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        read_image().healthcheck,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), 15)


async def test_the_healthcheck_passes_against_a_running_webhook(venv: Path, tmp_path: Path) -> None:
    work = tmp_path / "home"
    work.mkdir()
    async with FakeTelegram() as fake:
        env = image_env(
            venv,
            work,
            TELEGRAM_BOT_TOKEN=fake.token,
            TELEGRAM_API_URL=fake.url,
            WEBHOOK_URL="https://bot.example.org/telegram/image",
            WEBHOOK_SECRET="image-Secret_1",
            WEBHOOK_PORT=str(free_port()),
        )
        assert await healthcheck(env, work) != 0, "nothing listens yet"
        async with container(venv, work, env) as bot:

            async def healthy() -> None:
                while await healthcheck(env, work) != 0:  # noqa: ASYNC110 (polling a command)
                    await asyncio.sleep(0.2)

            await bot.until_ready(asyncio.wait_for(healthy(), BOOT_TIMEOUT))
            assert fake.webhook is not None
            assert fake.webhook["url"] == "https://bot.example.org/telegram/image"
            assert await bot.stop() in (0, 143), bot.output
        assert "Traceback" not in bot.output, bot.output
        assert await healthcheck(env, work) != 0, "stopped: unhealthy"


# --------------------------------------------------------------------------- compose.yaml


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    return data


def test_compose_runs_postgres_two_workers_and_two_web_replicas_behind_nginx() -> None:
    services = compose()["services"]
    assert set(services) == {"db", "worker-1", "worker-2", "web-1", "web-2", "proxy"}

    db = services["db"]
    assert db["image"] == "postgres:15"
    assert any(v.endswith(":/var/lib/postgresql/data") for v in db["volumes"])
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert set(compose()["volumes"]) >= {v.split(":")[0] for v in db["volumes"]}

    for name in ("worker-1", "worker-2", "web-1", "web-2"):
        role = name.split("-")[0]
        service = services[name]
        assert service["build"] == "."
        assert service["command"] == ["todo-bot", "run", "--role", role]
        env = service["environment"]
        # ROLE too: the image's HEALTHCHECK picks the port by it.
        assert env["ROLE"] == role
        assert (
            env["DATABASE_URL"].startswith("postgresql://todo:")
            and "@db:5432/" in env["DATABASE_URL"]
        )
        assert set(env) <= SETTING_NAMES, set(env) - SETTING_NAMES
        assert service["depends_on"] == {"db": {"condition": "service_healthy"}}
        assert service["env_file"] == ".env"
        if role == "worker":
            assert env["HTTP_PORT"] == "9090"
            assert "WEBHOOK_URL" not in env
        else:
            assert env["WEBHOOK_URL"].startswith("${WEBHOOK_URL")
            assert env["WEBHOOK_SECRET"].startswith("${WEBHOOK_SECRET")
            assert env["WEBHOOK_PORT"] == "8080" and env["WEBHOOK_LISTEN"] == "0.0.0.0"
            assert "HTTP_PORT" not in env

    proxy = services["proxy"]
    assert proxy["image"] == "nginx:alpine"
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in proxy["volumes"]
    assert proxy["depends_on"] == {
        "web-1": {"condition": "service_healthy"},
        "web-2": {"condition": "service_healthy"},
    }


def test_nginx_sends_the_webhook_and_healthz_to_both_web_replicas() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    conf = re.sub(r"#.*", "", conf)
    upstream = re.search(r"upstream\s+(\w+)\s*\{([^}]*)\}", conf)
    assert upstream is not None
    name, body = upstream.groups()
    servers = re.findall(r"^\s*server\s+([\w.-]+:\d+)", body, re.MULTILINE)
    web_port = compose()["services"]["web-1"]["environment"]["WEBHOOK_PORT"]
    assert servers == [f"web-1:{web_port}", f"web-2:{web_port}"]
    assert "location = /healthz" in conf
    assert conf.count(f"proxy_pass http://{name};") == 2
    assert re.search(
        r"proxy_set_header\s+X-Telegram-Bot-Api-Secret-Token\s+"
        r"\$http_x_telegram_bot_api_secret_token;",
        conf,
    )
    assert "/metrics" not in re.sub(r"location\s*=\s*/healthz", "", conf)
