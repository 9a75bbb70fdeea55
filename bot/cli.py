"""`todo-bot run | migrate | import FILE | export [--out DIR]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from importlib import resources
from pathlib import Path

from bot.settings import ConfigError, Settings, load_settings

log = logging.getLogger("todo_bot")


def sample_data_path() -> Path:
    """The shipped sample data: package data when installed, data/ in a checkout."""
    packaged = resources.files("bot") / "data" / "sample.yaml"
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "data" / "sample.yaml"


def _setup_logging(settings: Settings) -> None:
    """Structured logs without the token, message texts or Telegram ids (bot/logs.py), for
    every command."""
    from bot.logs import configure

    token = settings.telegram_bot_token
    key = settings.log_hash_key
    configure(
        settings.log_level,
        settings.log_format,
        token=token.get_secret_value().strip() if token is not None else None,
        hash_key_setting=key.get_secret_value() if key is not None else None,
    )


async def _migrate(settings: Settings) -> str | None:
    from storage.migrate import current_revision, upgrade
    from storage.uow import Database

    async with Database(settings.database_url) as database:
        await upgrade(database.engine)
        return await current_revision(database.engine)


async def _import(settings: Settings, path: Path, *, if_empty: bool = False) -> int:
    from domain.importer import import_content, load_file
    from storage.migrate import upgrade
    from storage.uow import Database

    raw = load_file(path)
    async with Database(settings.database_url) as database:
        await upgrade(database.engine)
        async with database.uow() as uow:
            if if_empty and await uow.content.count_items(None):
                print("The database has content already: nothing imported.")
                return 0
            report = await import_content(uow, raw, settings.tz)
    print(f"Imported {path}:")
    for kind, r in report.kinds():
        print(
            f"  {kind}: {len(r.created)} new, {len(r.updated)} updated, "
            f"{len(r.unchanged)} unchanged"
        )
        if r.kept:
            print(f"    kept (in the database, not in the file): {', '.join(r.kept)}")
    return 0


async def _open_data(settings: Settings) -> tuple[tuple[int, int, int], dict[str, bytes]]:
    from domain.export import export_files
    from storage.migrate import upgrade
    from storage.models import utcnow
    from storage.uow import Database

    async with Database(settings.database_url) as database:
        await upgrade(database.engine)
        async with database.uow() as uow:
            data, files = await export_files(uow, settings.tz, utcnow())
    return data.counts(), files


def _export(settings: Settings, out: Path) -> int:
    (items, goals, comments), files = asyncio.run(_open_data(settings))
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (out / name).write_bytes(content)
    except OSError as exc:
        print(f"todo-bot: cannot write the export to {out}: {exc}", file=sys.stderr)
        return 1
    print(
        f"Exported the open data (no personal data) to {out.resolve()}: "
        f"items {items}, goals {goals}, approved comments {comments}"
    )
    for name in files:
        print(f"  {(out / name).resolve()}")
    return 0


async def _check_bot_api(settings: Settings, token: str) -> None:
    """One clear line instead of a traceback (that quotes the token) when the Bot API refuses
    the token or cannot be reached."""
    from telegram import Bot
    from telegram.error import InvalidToken, NetworkError

    try:
        async with Bot(token, base_url=f"{settings.telegram_api_url}/bot"):
            pass
    except InvalidToken:
        raise ConfigError(
            "TELEGRAM_BOT_TOKEN was rejected by the Bot API: copy the current token from "
            "@BotFather (a revoked token stops working)."
        ) from None
    except NetworkError as exc:
        raise ConfigError(
            f"cannot reach the Bot API at TELEGRAM_API_URL={settings.telegram_api_url} ({exc})"
        ) from None


def _check_role(settings: Settings, role: str) -> None:
    """Only `all` works with SQLite (one process); `web` needs the webhook."""
    from storage.database import is_sqlite_url

    if role != "all" and is_sqlite_url(settings.database_url):
        raise ConfigError(
            f"--role {role} needs PostgreSQL (DATABASE_URL=postgresql://…): with SQLite one "
            "process does everything, use --role all"
        )
    if role == "web" and settings.webhook_url is None:
        raise ConfigError(
            "--role web needs WEBHOOK_URL and WEBHOOK_SECRET: web replicas get their updates "
            "through the webhook"
        )


def _run(settings: Settings, *, webhook: bool = False, role: str | None = None) -> int:
    from bot.app import ALLOWED_UPDATES, build_application, tune_garbage_collector
    from storage.uow import Database

    role = role or settings.role
    _check_role(settings, role)
    settings = settings.model_copy(update={"role": role})
    token = settings.require_token()
    webhook = role != "worker" and (webhook or settings.webhook_url is not None)
    if webhook and settings.webhook_url is None:
        raise ConfigError(
            "--webhook needs WEBHOOK_URL (the public https:// URL Telegram posts to) and "
            "WEBHOOK_SECRET"
        )
    asyncio.run(_check_bot_api(settings, token))
    revision = asyncio.run(_migrate(settings))
    log.info("database ready at revision %s", revision)
    # Every update in flight holds a connection (the pool may overflow by half for the
    # sender, the jobs and /metrics).
    database = Database(settings.database_url, pool_size=settings.update_concurrency)
    app = build_application(settings, database, webhook=webhook or role == "worker")

    async def _close_database(_app: object) -> None:
        await database.dispose()

    app.post_shutdown = _close_database
    tune_garbage_collector()
    if role == "worker":
        from bot.worker import run_worker

        asyncio.run(run_worker(app, settings))
        return 0
    if webhook:
        from bot.web import run_webhook

        asyncio.run(run_webhook(app, settings))
        return 0
    log.info("to:DO Bot starts polling (press Ctrl+C to stop)")
    app.run_polling(allowed_updates=ALLOWED_UPDATES, drop_pending_updates=False, close_loop=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="todo-bot", description="to:DO Bot")
    commands = parser.add_subparsers(dest="command", required=True)
    runner = commands.add_parser(
        "run", help="apply migrations, then run the bot (long polling, or webhook)"
    )
    runner.add_argument(
        "--webhook",
        action="store_true",
        help="serve a webhook (needs WEBHOOK_URL and WEBHOOK_SECRET; implied by WEBHOOK_URL)",
    )
    runner.add_argument(
        "--role",
        choices=("all", "web", "worker"),
        help="all: one process does everything (default, also ROLE); web: handle updates "
        "(webhook; PostgreSQL); worker: scheduler and sender, one leader among several",
    )
    commands.add_parser("migrate", help="bring the database schema up to date")
    importer = commands.add_parser("import", help="import content from YAML or JSON")
    source = importer.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", type=Path, help="a .yaml/.yml or .json file")
    source.add_argument("--sample", action="store_true", help="the shipped sample data")
    importer.add_argument(
        "--if-empty", action="store_true", help="only import when the database has no items yet"
    )
    exporter = commands.add_parser(
        "export", help="write the open data (CSV and JSON, no personal data) into a folder"
    )
    exporter.add_argument(
        "--out", type=Path, default=Path("."), help="the folder (default: the current one)"
    )
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
        _setup_logging(settings)
        if args.command == "migrate":
            revision = asyncio.run(_migrate(settings))
            print(f"Database is up to date (revision {revision}).")
            return 0
        if args.command == "import":
            path = sample_data_path() if args.sample else args.file
            return asyncio.run(_import(settings, path, if_empty=args.if_empty))
        if args.command == "export":
            return _export(settings, args.out)
        return _run(settings, webhook=args.webhook, role=args.role)
    except ConfigError as exc:
        print(f"todo-bot: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one clear line instead of a traceback for operators
        from domain.importer import ImportFailed

        if isinstance(exc, ImportFailed):
            if len(exc.errors) == 1:  # e.g. a missing file: one line
                print(
                    f"todo-bot: import failed, nothing was written: {exc.errors[0]}",
                    file=sys.stderr,
                )
                return 1
            print(
                f"todo-bot: import failed, nothing was written ({len(exc.errors)} error(s)):",
                file=sys.stderr,
            )
            for line in exc.errors:
                print(f"  {line}", file=sys.stderr)
            return 1
        if isinstance(exc, OSError) or type(exc).__module__.startswith(("sqlalchemy", "asyncpg")):
            print(
                f"todo-bot: cannot use the database ({settings_url()}): "
                f"{type(exc).__name__}: {exc}".splitlines()[0],
                file=sys.stderr,
            )
            return 1
        raise


def settings_url() -> str:
    """The database URL without a password, for error messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(load_settings().database_url).render_as_string(hide_password=True)
    except Exception:
        return "DATABASE_URL"


if __name__ == "__main__":
    raise SystemExit(main())
