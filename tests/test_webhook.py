"""Webhook mode, duplicate updates, /healthz and /metrics: the real Application and
bot/web.py served by uvicorn on a loopback port, against the fake Bot API server. A POST is
answered only after the update was handled, so the tests look at the results right after it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from bot import callbacks as cb
from bot.app import ALLOWED_UPDATES, build_application
from bot.settings import Settings
from bot.web import MAX_UPDATE_BYTES, SECRET_HEADER, WebServer, create_web_app, webhook_running
from domain.importer import import_content
from storage.migrate import upgrade
from storage.models import ProcessedUpdate
from storage.uow import Database
from tests.conftest import TZ, content_raw, make_settings
from tests.fake_telegram import ApiCall, FakeTelegram
from tests.harness import BotHarness, datas_of, sent

SECRET = "s3cret-Token_1"
OLD_SECRET = "old-Secret_0"
HOOK_URL = "https://bot.example.org/tg/hook-path"
RESIDENT = 4242
JSON = dict[str, Any]


class WebhookBot:
    """The bot in webhook mode and an HTTP client that plays Telegram."""

    def __init__(self, harness: BotHarness, server: WebServer, client: httpx.AsyncClient) -> None:
        self.harness = harness
        self.fake = harness.fake
        self.database = harness.database
        self.server = server
        self.client = client
        self.base = f"http://127.0.0.1:{server.port}"

    async def post(
        self, body: bytes | JSON, *, secret: str | None = SECRET
    ) -> tuple[httpx.Response, list[ApiCall]]:
        """POST like Telegram does; the Bot API calls the bot made meanwhile."""
        since = len(self.fake.calls)
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        if isinstance(body, dict):
            response = await self.client.post(
                self.base + "/tg/hook-path", json=body, headers=headers
            )
        else:
            response = await self.client.post(
                self.base + "/tg/hook-path", content=body, headers=headers
            )
        return response, self.fake.calls[since:]

    async def deliver(self, update: JSON, **kwargs: Any) -> tuple[httpx.Response, list[ApiCall]]:
        """A new update (the fake registers its user and gives it an id), then POSTed."""
        update_id = self.fake.add_update(update)
        stored = self.fake.update(update_id)
        assert stored is not None
        return await self.post(stored, **kwargs)

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(self.base + path)

    async def processed(self) -> set[int]:
        async with self.database.uow() as uow:
            rows = await uow.session.execute(select(ProcessedUpdate.update_id))
            return set(rows.scalars())


def webhook_settings(fake: FakeTelegram, db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_url": HOOK_URL,
        "webhook_secret": SECRET,
        "webhook_secret_previous": OLD_SECRET,
        "webhook_listen": "127.0.0.1",
        "webhook_port": 0,
    }
    values.update(overrides)
    return make_settings(fake, db_url, **values)


@asynccontextmanager
async def webhook_bot(fake: FakeTelegram, settings: Settings) -> AsyncIterator[WebhookBot]:
    database = Database(settings.database_url)
    await upgrade(database.engine)
    async with database.uow() as uow:
        await import_content(uow, content_raw(), TZ)
    harness = BotHarness(fake, settings, database)
    app = build_application(settings, database, on_update_done=harness._on_done, webhook=True)
    harness.app = app
    try:
        async with (
            webhook_running(app, settings) as server,
            httpx.AsyncClient(timeout=20.0) as client,
        ):
            yield WebhookBot(harness, server, client)
    finally:
        await database.dispose()


@pytest.fixture
async def hook(fake: FakeTelegram, db_url: str) -> AsyncIterator[WebhookBot]:
    async with webhook_bot(fake, webhook_settings(fake, db_url)) as bot:
        yield bot


def free_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text (0 if it is not there)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        sample, _, value = line.rpartition(" ")
        if sample.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in sample for k, v in labels.items()):
            return float(value)
    return 0.0


# --------------------------------------------------------------------------- the webhook


async def test_webhook_is_registered_with_url_secret_and_allowed_updates(
    hook: WebhookBot,
) -> None:
    assert hook.fake.webhook is not None
    assert hook.fake.webhook["url"] == HOOK_URL
    assert hook.fake.webhook["secret_token"] == SECRET
    assert hook.fake.webhook["allowed_updates"] == ALLOWED_UPDATES
    [call] = hook.fake.calls_of("setWebhook")
    assert not call.params.get("drop_pending_updates")
    assert hook.fake.calls_of("getUpdates") == []


async def test_update_with_the_right_secret_is_handled_before_the_answer(
    hook: WebhookBot,
) -> None:
    user = hook.fake.user(RESIDENT, language_code="de")
    response, calls = await hook.deliver(hook.fake.message_update(user, "/start"))
    assert response.status_code == 200
    [reply] = sent(calls)
    assert reply.chat_id == RESIDENT
    assert "Willkommen" in (reply.visible_text or "")
    # The previous secret is still accepted while a new one is rolled out.
    response, calls = await hook.deliver(hook.fake.message_update(user, "/help"), secret=OLD_SECRET)
    assert response.status_code == 200
    assert len(sent(calls)) == 1


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x", SECRET[:-1]])
async def test_wrong_or_missing_secret_is_403_and_nothing_is_handled(
    hook: WebhookBot, secret: str | None
) -> None:
    user = hook.fake.user(RESIDENT, language_code="de")
    response, calls = await hook.deliver(hook.fake.message_update(user, "/start"), secret=secret)
    assert response.status_code == 403
    assert calls == []
    assert await hook.processed() == set()


async def test_oversized_body_is_413(hook: WebhookBot) -> None:
    user = hook.fake.user(RESIDENT, language_code="de")
    update = hook.fake.message_update(user, "/start")
    update["update_id"] = 77
    update["padding"] = "x" * MAX_UPDATE_BYTES
    response, calls = await hook.post(update)
    assert response.status_code == 413
    assert calls == []
    assert await hook.processed() == set()


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'{"message": {}}', b'{"update_id": "7"}', b"", b"\xff\xfe"],
)
async def test_malformed_or_non_update_body_is_400(hook: WebhookBot, body: bytes) -> None:
    response, calls = await hook.post(body)
    assert response.status_code == 400
    assert calls == []
    assert await hook.processed() == set()


async def test_the_same_update_twice_is_handled_once(hook: WebhookBot) -> None:
    user = hook.fake.user(RESIDENT, language_code="de")
    start = hook.fake.message_update(user, "/start")
    response, calls = await hook.deliver(start)
    assert response.status_code == 200
    assert len(sent(calls)) == 1
    response, calls = await hook.post(start)  # Telegram redelivers it
    assert response.status_code == 200
    assert calls == [], "a redelivered update does nothing"

    # Support TD-01, withdraw it, then the support press arrives again: still withdrawn.
    async with hook.database.uow() as uow:
        row = await uow.content.item_by_key("TD-01")
        assert row is not None
        td01 = row.item.id
    await hook.deliver(hook.fake.message_update(user, "/search Qualifizierungszentrum"))
    listing = hook.fake.last_message(RESIDENT)
    assert listing is not None
    [open_card] = [
        button["callback_data"]
        for row in listing["reply_markup"]["inline_keyboard"]
        for button in row
        if "TD-01" in button["text"]
    ]
    await hook.deliver(hook.fake.callback_update(user, open_card, message_id=listing["message_id"]))
    card = hook.fake.last_message(RESIDENT)
    assert card is not None
    support = cb.SUPPORT.build(iid=td01, on=1, origin="Q0")
    assert support in datas_of(card)
    press = hook.fake.callback_update(user, support, message_id=card["message_id"])
    response, _ = await hook.deliver(press)
    assert response.status_code == 200
    withdraw = cb.SUPPORT.build(iid=td01, on=0, origin="Q0")
    response, _ = await hook.deliver(
        hook.fake.callback_update(user, withdraw, message_id=card["message_id"])
    )
    assert response.status_code == 200
    async with hook.database.uow() as uow:
        assert await uow.engagement.support_count(td01) == 0
    response, calls = await hook.post(press)
    assert response.status_code == 200
    assert calls == []
    async with hook.database.uow() as uow:
        assert await uow.engagement.support_count(td01) == 0

    text = (await hook.get("/metrics")).text
    assert metric(text, "todo_bot_updates_total", type="message", outcome="duplicate") == 1
    assert metric(text, "todo_bot_updates_total", type="callback_query", outcome="duplicate") == 1


async def test_a_failed_update_is_answered_after_the_error_handler_and_can_be_retried(
    hook: WebhookBot,
) -> None:
    user = hook.fake.user(RESIDENT, language_code="de")
    hook.fake.fail("sendMessage", error_code=400, description="Bad Request: boom", times=1)
    update = hook.fake.message_update(user, "/start")
    response, calls = await hook.deliver(update)
    assert response.status_code == 200
    # The handler's message was refused; the error handler's "please try again" went out.
    messages = sent(calls)
    assert [m.ok for m in messages] == [False, True]
    assert await hook.processed() == set(), "a failed update's id is released"
    response, calls = await hook.post(update)  # a redelivery is handled this time
    assert response.status_code == 200
    [greeting] = sent(calls)
    assert greeting.ok and "/privacy" in (greeting.visible_text or "")
    text = (await hook.get("/metrics")).text
    assert metric(text, "todo_bot_updates_total", type="message", outcome="error") == 1
    assert metric(text, "todo_bot_updates_total", type="message", outcome="ok") == 1


# --------------------------------------------------------------------------- health, metrics


async def test_healthz_and_metrics_in_webhook_mode(hook: WebhookBot) -> None:
    health = await hook.get("/healthz")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok"
    assert body["database"] == "ok"
    assert body["mode"] == "webhook"
    assert "has_lease" in body["sender"]

    user = hook.fake.user(RESIDENT, language_code="de")
    await hook.deliver(hook.fake.message_update(user, "/start"))
    await hook.deliver(hook.fake.message_update(user, "/help"))
    response = await hook.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric(text, "todo_bot_updates_total", type="message", outcome="ok") == 2
    assert metric(text, "todo_bot_update_seconds_count", type="message") == 2
    assert metric(text, "todo_bot_api_calls_total", client="bot", method="sendMessage") == 2
    assert metric(text, "todo_bot_api_calls_total", client="bot", method="setWebhook") == 1
    assert metric(text, "todo_bot_outbox_recipients", state="pending") == 0
    assert "todo_bot_outbox_recipients{" in text
    assert "todo_bot_sender_max_rate" in text
    assert hook.fake.token not in text

    hook.fake.fail(
        "sendMessage", error_code=429, description="Too Many Requests", times=1, retry_after=1
    )
    await hook.deliver(hook.fake.message_update(user, "/help"))
    text = (await hook.get("/metrics")).text
    assert metric(text, "todo_bot_api_rate_limited_total", client="bot") == 1
    assert metric(text, "todo_bot_api_errors_total", method="sendMessage", code="429") == 1


async def test_healthz_is_503_when_the_database_is_unreachable(hook: WebhookBot) -> None:
    unreachable = Database(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/nothing")
    server = WebServer(
        create_web_app(hook.harness.app, mode="webhook", database=unreachable), "127.0.0.1", 0
    )
    await server.start()
    try:
        response = await hook.client.get(f"http://127.0.0.1:{server.port}/healthz")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unavailable"
        assert body["database"].startswith("unreachable")
        assert body["mode"] == "webhook"
        # /metrics still answers (the database gauges are left as they were).
        metrics = await hook.client.get(f"http://127.0.0.1:{server.port}/metrics")
        assert metrics.status_code == 200
        assert metric(metrics.text, "todo_bot_metrics_scrape_errors_total") == 1
    finally:
        await server.stop()
        await unreachable.dispose()


@pytest.mark.parametrize("bot_settings", [{"http_port": 0, "webhook_listen": "127.0.0.1"}])
async def test_polling_mode_serves_healthz_and_metrics_on_http_port(bot: BotHarness) -> None:
    server = bot.app.bot_data["http_server"]
    assert server.port != 0
    await bot.send(bot.user(RESIDENT, "de"), "/start")
    async with httpx.AsyncClient(timeout=20.0) as client:
        health = await client.get(f"http://127.0.0.1:{server.port}/healthz")
        assert health.status_code == 200
        assert health.json()["mode"] == "polling"
        text = (await client.get(f"http://127.0.0.1:{server.port}/metrics")).text
        # No webhook path in polling mode.
        refused = await client.post(f"http://127.0.0.1:{server.port}/tg/hook-path", json={})
        assert refused.status_code in (404, 405)
    assert metric(text, "todo_bot_updates_total", type="message", outcome="ok") == 1
    assert metric(text, "todo_bot_api_calls_total", client="bot", method="getUpdates") >= 1


async def test_polling_deletes_a_webhook_first(fake: FakeTelegram, sqlite_url: str) -> None:
    fake.webhook = {"url": HOOK_URL, "secret_token": SECRET}
    async with BotHarness.running(fake, make_settings(fake, sqlite_url)) as bot:
        calls = await bot.send(bot.user(RESIDENT, "de"), "/start")
        assert len(sent(calls)) == 1
    assert fake.webhook is None
    assert fake.calls_of("deleteWebhook")


async def test_processed_update_ids_are_claimed_and_pruned(bot: BotHarness) -> None:
    import datetime as dt

    from bot.processor import KEEP_UPDATE_IDS
    from storage.models import utcnow

    await bot.send(bot.user(RESIDENT, "de"), "/start")
    processor = bot.app.update_processor
    async with bot.database.uow() as uow:
        count = await uow.session.scalar(select(func.count()).select_from(ProcessedUpdate))
    assert count == 1
    assert await processor.prune(utcnow()) == 0
    later = utcnow() + KEEP_UPDATE_IDS + dt.timedelta(minutes=1)
    assert await processor.prune(later) == 1


async def test_a_claim_cut_short_by_a_crash_is_taken_over_by_the_redelivery(
    hook: WebhookBot,
) -> None:
    """A process died after claiming an update and before answering: Telegram delivers it
    again. While the claim is fresh (maybe still being handled) the redelivery does
    nothing; once it is older than CLAIM_STALE and never marked handled, it is handled."""
    import datetime as dt

    from bot.processor import CLAIM_STALE
    from storage.models import utcnow

    user = hook.fake.user(RESIDENT, language_code="de")
    start = hook.fake.update(hook.fake.add_update(hook.fake.message_update(user, "/start")))
    assert start is not None
    claimed_at = utcnow()
    async with hook.database.uow() as uow, uow.write():
        uow.session.add(ProcessedUpdate(update_id=start["update_id"], created_at=claimed_at))
    response, calls = await hook.post(start)
    assert (response.status_code, sent(calls)) == (200, []), "fresh claim: left alone"

    async with hook.database.uow() as uow, uow.write():
        row = await uow.session.get(ProcessedUpdate, start["update_id"])
        assert row is not None
        row.created_at = claimed_at - CLAIM_STALE - dt.timedelta(seconds=1)
    response, calls = await hook.post(start)
    assert response.status_code == 200
    assert len(sent(calls)) == 1, "the stale claim was taken over and the update handled"
    async with hook.database.uow() as uow:
        row = await uow.session.get(ProcessedUpdate, start["update_id"])
        assert row is not None and row.handled_at is not None
    response, calls = await hook.post(start)
    assert calls == [], "handled now: a further redelivery does nothing"


# --------------------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("args", "settings", "says"),
    [
        (["--webhook"], {}, "--webhook needs WEBHOOK_URL"),
        ([], {"WEBHOOK_URL": HOOK_URL}, "WEBHOOK_SECRET is required"),
        ([], {"WEBHOOK_URL": "http://bot.example.org/x", "WEBHOOK_SECRET": SECRET}, "https://"),
        ([], {"WEBHOOK_URL": HOOK_URL, "WEBHOOK_SECRET": "no spaces"}, "WEBHOOK_SECRET"),
    ],
)
def test_run_webhook_misconfigured_is_one_clear_line(
    tmp_path: Path, args: list[str], settings: dict[str, str], says: str
) -> None:
    from tests.test_cli import one_line_error, todo_bot

    result = todo_bot(
        tmp_path,
        "run",
        *args,
        TELEGRAM_BOT_TOKEN="123456:TEST-fake-token-abcdefghijklmnopqrstuv",
        DATABASE_URL=f"sqlite:///{tmp_path / 'bot.sqlite3'}",
        **settings,
    )
    assert result.returncode == 2
    assert says in one_line_error(result)


async def test_run_webhook_serves_updates_and_stops_cleanly(tmp_path: Path) -> None:
    import signal

    from tests.test_cli import BOOT_TIMEOUT, RunningBot, todo_bot

    db = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    assert todo_bot(tmp_path, "import", "--sample", DATABASE_URL=db).returncode == 0
    port = free_port()
    async with (
        FakeTelegram() as fake,
        RunningBot.start(
            tmp_path,
            fake,
            DATABASE_URL=db,
            WEBHOOK_URL=HOOK_URL,
            WEBHOOK_SECRET=SECRET,
            WEBHOOK_LISTEN="127.0.0.1",
            WEBHOOK_PORT=str(port),
        ) as bot,
        httpx.AsyncClient(timeout=20.0) as client,
    ):
        # The webhook is registered once the server listens.
        await bot.until(fake.wait_for_method("setWebhook", timeout=BOOT_TIMEOUT))
        assert fake.webhook is not None and fake.webhook["secret_token"] == SECRET
        update_id = fake.add_update(
            fake.message_update(fake.user(42, language_code="en"), "/start")
        )
        response = await client.post(
            f"http://127.0.0.1:{port}/tg/hook-path",
            json=fake.update(update_id),
            headers={SECRET_HEADER: SECRET},
        )
        assert response.status_code == 200
        assert [c.chat_id for c in sent(fake.calls)] == [42]
        health = await client.get(f"http://127.0.0.1:{port}/healthz")
        assert health.json()["mode"] == "webhook"
        assert await bot.stop(signal.SIGTERM) == 0
    assert "Traceback" not in bot.output
    assert fake.token.split(":", 1)[1] not in bot.output
    assert fake.calls_of("getUpdates") == []


async def test_an_update_that_cannot_be_handled_gets_no_200_and_is_handled_when_redelivered(
    hook: WebhookBot,
) -> None:
    processor = hook.harness.app.update_processor
    working = processor.database
    unreachable = Database(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/nothing")
    user = hook.fake.user(RESIDENT, language_code="de")
    update = hook.fake.message_update(user, "/start")
    processor.database = unreachable  # the database is down
    try:
        response, calls = await hook.deliver(update)
    finally:
        processor.database = working
        await unreachable.dispose()
    assert response.status_code == 500
    assert calls == []
    response, calls = await hook.post(update)  # Telegram tries again
    assert response.status_code == 200
    assert len(sent(calls)) == 1
    text = (await hook.get("/metrics")).text
    assert metric(text, "todo_bot_updates_total", type="message", outcome="error") == 1
    assert metric(text, "todo_bot_updates_total", type="message", outcome="ok") == 1
