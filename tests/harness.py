"""The real bot (python-telegram-bot Application, polling) against the fake Bot API server.
Tests feed updates and wait until the bot has handled them — no sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from sqlalchemy import event, select
from telegram import Update

from bot.app import ALLOWED_UPDATES, build_application
from bot.settings import Settings
from domain.importer import import_content
from storage.fastreads import CompiledRead, FastReads
from storage.migrate import upgrade
from storage.models import Base
from storage.uow import Database
from tests.fake_telegram import ApiCall, FakeTelegram

JSON = dict[str, Any]
WAIT = 10.0


class BotHarness:
    def __init__(self, fake: FakeTelegram, settings: Settings, database: Database) -> None:
        self.fake = fake
        self.settings = settings
        self.database = database
        self.app: Any = None
        self._done: set[int] = set()
        self._changed = asyncio.Condition()

    @classmethod
    @asynccontextmanager
    async def running(
        cls, fake: FakeTelegram, settings: Settings, *, with_content: bool = True
    ) -> AsyncIterator[BotHarness]:
        from tests.conftest import TZ, content_raw

        database = Database(settings.database_url)
        await upgrade(database.engine)
        if with_content:
            async with database.uow() as uow:
                await import_content(uow, content_raw(), TZ)
        harness = cls(fake, settings, database)
        app = build_application(settings, database, on_update_done=harness._on_done)
        harness.app = app
        await app.initialize()
        if app.post_init is not None:
            await app.post_init(app)
        await app.start()
        await app.updater.start_polling(poll_interval=0, timeout=1, allowed_updates=ALLOWED_UPDATES)
        try:
            yield harness
        finally:
            await app.updater.stop()
            await app.stop()
            if app.post_stop is not None:
                await app.post_stop(app)
            await app.shutdown()
            await database.dispose()

    async def _on_done(self, update: object) -> None:
        if isinstance(update, Update):
            async with self._changed:
                self._done.add(update.update_id)
                self._changed.notify_all()

    async def wait_handled(self, update_id: int, timeout: float = WAIT) -> None:  # noqa: ASYNC109
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: update_id in self._done), timeout)

    # ------------------------------------------------------------------ feeding updates

    async def feed(self, update: JSON) -> list[ApiCall]:
        """Deliver one update and return the Bot API calls the bot made for it."""
        since = len(self.fake.calls)
        update_id = self.fake.add_update(update)
        await self.wait_handled(update_id)
        return self.fake.calls[since:]

    async def feed_many(self, updates: list[JSON]) -> list[ApiCall]:
        """Deliver several updates at once (handled concurrently where the bot allows)."""
        since = len(self.fake.calls)
        ids = [self.fake.add_update(u) for u in updates]
        for update_id in ids:
            await self.wait_handled(update_id)
        return self.fake.calls[since:]

    def user(self, user_id: int, language_code: str | None = "de", **kwargs: Any) -> JSON:
        return self.fake.user(user_id, language_code=language_code, **kwargs)

    async def send(self, user: JSON, text: str | None, **kwargs: Any) -> list[ApiCall]:
        return await self.feed(self.fake.message_update(user, text, **kwargs))

    async def press(self, user: JSON, data: str, message_id: int | None = None) -> list[ApiCall]:
        """Press a button with this callback data (on the bot's last message by default)."""
        if message_id is None:
            last = self.fake.last_message(user["id"])
            assert last is not None, "no message to press a button on"
            message_id = last["message_id"]
        return await self.feed(self.fake.callback_update(user, data, message_id=message_id))

    async def tap(self, user: JSON, text: str, *, chat_id: int | None = None) -> list[ApiCall]:
        """Press the button whose label contains `text` on the bot's last message that has one."""
        chat = chat_id if chat_id is not None else user["id"]
        for message in reversed(self.fake.messages(chat)):
            for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
                for button in row:
                    if text in button["text"] and "callback_data" in button:
                        return await self.feed(
                            self.fake.callback_update(
                                user,
                                button["callback_data"],
                                message_id=message["message_id"],
                                chat_id=chat,
                            )
                        )
        raise AssertionError(
            f"no button containing {text!r} in chat {chat}: "
            f"{[b for m in self.fake.messages(chat) for b in buttons_of(m)]}"
        )

    # ------------------------------------------------------------------ looking at results

    def screen(self, chat_id: int) -> JSON:
        """The bot's last message in that chat (after edits)."""
        message = self.fake.last_message(chat_id)
        assert message is not None, f"the bot wrote nothing to {chat_id}"
        return message


async def until(
    what: str,
    check: Callable[[], Any],
    timeout: float,  # noqa: ASYNC109
    *,
    interval: float = 0.02,
    abort: Callable[[], str | None] | None = None,
    context: Callable[[], str] | None = None,
) -> Any:
    """Poll an observable condition (`check()`, sync or async) until it holds and return
    what it returned. Fail after `timeout`, or at once when `abort()` names a reason (a
    process exited); `context()` adds what helps to read the failure (process output)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        reason = abort() if abort is not None else None
        if reason is None and time.monotonic() > deadline:
            reason = "timed out"
        if reason is not None:
            extra = f"\n{context()}" if context is not None else ""
            raise AssertionError(f"{reason} waiting for {what}{extra}")
        await asyncio.sleep(interval)


def buttons_of(message: JSON) -> list[str]:
    return [
        b["text"]
        for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
        for b in row
    ]


def datas_of(message: JSON) -> list[str]:
    return [
        b.get("callback_data", "")
        for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
        for b in row
    ]


def urls_of(message: JSON) -> dict[str, str]:
    return {
        b["text"]: b["url"]
        for row in (message.get("reply_markup") or {}).get("inline_keyboard", [])
        for b in row
        if "url" in b
    }


def sent(calls: list[ApiCall], method: str = "sendMessage") -> list[ApiCall]:
    return [c for c in calls if c.method == method]


def texts(calls: list[ApiCall]) -> list[str]:
    return [c.visible_text or "" for c in calls if c.method in ("sendMessage", "editMessageText")]


#: What changes by itself while the bot runs: when a resident was last seen and the update
#: ids handled (every update writes them), and the sender's lease (renewed while it runs).
#: A snapshot leaves them out.
VOLATILE_COLUMNS = frozenset({("residents", "last_seen_on")})
VOLATILE_TABLES = frozenset({"processed_updates", "leases"})


async def snapshot(database: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (sorted), but the volatile ones: compare two to show that
    something refused changed nothing."""
    tables: dict[str, list[tuple[Any, ...]]] = {}
    async with database.uow() as uow:
        for table in Base.metadata.sorted_tables:
            if table.name in VOLATILE_TABLES:
                continue
            columns = [c for c in table.columns if (table.name, c.name) not in VOLATILE_COLUMNS]
            rows = (await uow.session.execute(select(*columns))).all()
            tables[table.name] = sorted((tuple(r) for r in rows), key=repr)
    return tables


@contextmanager
def statements(
    database: Database, prefix: str = "", *, fast_reads: bool = True
) -> Iterator[list[str]]:
    """The SQL statements (starting with `prefix`) the database runs meanwhile; with
    `fast_reads` False only those that go through SQLAlchemy's engine."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith(prefix):
            seen.append(statement)

    # Fast reads (storage/fastreads.py) go to the driver without the engine's events.
    fetch = FastReads.fetch

    async def recorded(self: FastReads, read: CompiledRead, params: Any) -> Any:
        if fast_reads and self.dialect is database.engine.dialect:
            record(None, None, read.sql)
        return await fetch(self, read, params)

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    FastReads.fetch = recorded  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        FastReads.fetch = fetch  # type: ignore[method-assign]
        event.remove(engine, "before_cursor_execute", record)
