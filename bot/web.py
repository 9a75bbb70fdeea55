"""The bot's HTTP side (Starlette, served by uvicorn): the webhook Telegram posts updates to,
`/healthz` and `/metrics`.

Webhook: like python-telegram-bot's customwebhookbot example the Application runs without
an Updater, but the update queue is not used: each POST is handled right there, through the
application's update processor (same unit of work, per-resident ordering and duplicate check
as in polling), and answered 200 only when it was handled — or when a handler failed and the
error handler told the resident to try again. If the process dies before that, Telegram gets
no 200 and delivers the update again; the processor's `processed_updates` check makes sure
an update that was handled is not handled twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import signal
import socket
from collections.abc import Generator, Sequence
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from telegram import Update
from telegram.ext import Application

from bot.logs import update_context
from bot.metrics import Metrics
from bot.settings import ConfigError, Settings
from storage.uow import Database

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: Telegram's updates are a few kilobytes; anything near this is not from Telegram.
MAX_UPDATE_BYTES = 1 << 20
HEALTH_TIMEOUT = 5.0

AnyApplication = Application[Any, Any, Any, Any, Any, Any]


def webhook_path(url: str) -> str:
    """The path of WEBHOOK_URL, which the server answers (a proxy may sit in front)."""
    return urlsplit(url).path or "/"


def webhook_secrets(settings: Settings) -> list[str]:
    """WEBHOOK_SECRET, and WEBHOOK_SECRET_PREVIOUS while a new secret is rolled out."""
    return [
        s.get_secret_value()
        for s in (settings.webhook_secret, settings.webhook_secret_previous)
        if s is not None
    ]


def _secret_ok(given: str | None, secrets: Sequence[str]) -> bool:
    if not given:
        return False
    raw = given.encode("latin-1", "replace")
    # Compare with every secret (no early exit) so the timing says nothing.
    results = [hmac.compare_digest(raw, s.encode("latin-1", "replace")) for s in secrets]
    return any(results)


class _TooLarge(Exception):
    pass


async def _read_limited(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def create_web_app(
    application: AnyApplication,
    *,
    mode: str,
    secrets: Sequence[str] = (),
    path: str | None = None,
    database: Database | None = None,
    max_body: int = MAX_UPDATE_BYTES,
) -> Starlette:
    """The ASGI app. `path` and `secrets`: the webhook (webhook mode only); `database`: what
    /healthz and /metrics look at (default: the bot's)."""
    services = application.bot_data["services"]
    metrics: Metrics | None = application.bot_data.get("metrics")
    db: Database = database if database is not None else services.database

    def sender() -> Any:
        delivery = services.delivery
        return None if delivery is None else delivery.sender

    async def webhook(request: Request) -> Response:
        if not _secret_ok(request.headers.get(SECRET_HEADER), secrets):
            return PlainTextResponse("forbidden", status_code=403)
        try:
            raw = await _read_limited(request, max_body)
        except _TooLarge:
            return PlainTextResponse("too large", status_code=413)
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or type(data.get("update_id")) is not int:
                raise ValueError("not an update")
            update = Update.de_json(data, application.bot)
        except Exception as exc:
            log.warning("webhook: refused a body that is no update (%s)", type(exc).__name__)
            return PlainTextResponse("bad request", status_code=400)
        try:
            await application.update_processor.process_update(
                update, application.process_update(update)
            )
        except Exception as exc:
            # Not handled (e.g. the database is down): no 200, so Telegram tries again.
            with update_context(update):
                log.error(
                    "webhook: update %s not handled: %s", update.update_id, type(exc).__name__
                )
            return PlainTextResponse("not handled", status_code=500)
        return Response(status_code=200)

    async def healthz(request: Request) -> Response:
        body: dict[str, Any] = {"status": "ok", "mode": mode, "database": "ok"}
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT), db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            body["status"] = "unavailable"
            body["database"] = f"unreachable ({type(exc).__name__})"
        leader = application.bot_data.get("leader")
        if leader is not None:  # a worker: does it lead (send, schedule) or stand by?
            body["leader"] = leader.state
        current = sender()
        if current is not None:
            body["sender"] = {
                "has_lease": current.has_lease,
                "sent": current.stats.get("sent", 0),
                "max_rate": round(1.0 / current.pacer.interval, 3),
            }
        return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)

    async def metrics_endpoint(request: Request) -> Response:
        if metrics is None:
            return PlainTextResponse("no metrics", status_code=404)
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT):
                await metrics.refresh(db, sender())
        except Exception as exc:
            metrics.scrape_errors.inc()
            log.warning("metrics: database gauges not refreshed: %s", type(exc).__name__)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    if path is not None:
        if path in ("/healthz", "/metrics"):
            raise ValueError(f"the webhook path {path} is taken by the health endpoints")
        routes.append(Route(path, webhook, methods=["POST"]))
    return Starlette(routes=routes)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the bot decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class WebServer:
    """uvicorn as a task next to the bot. The socket is bound and listening when `start`
    returns (port 0: a free one, see `port`), so nobody has to wait for it."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        self.host = host
        self.port = port
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
        )
        self.server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]), name="http")

    async def stop(self) -> None:
        """Stop accepting; requests in flight (updates being handled) finish first."""
        if self._task is None:
            return
        self.server.should_exit = True
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None


async def register_webhook(application: AnyApplication, settings: Settings) -> None:
    assert settings.webhook_url is not None and settings.webhook_secret is not None
    from bot.app import ALLOWED_UPDATES

    await application.bot.set_webhook(
        url=settings.webhook_url,
        secret_token=settings.webhook_secret.get_secret_value(),
        allowed_updates=ALLOWED_UPDATES,
        drop_pending_updates=False,
    )


@contextlib.asynccontextmanager
async def webhook_running(application: AnyApplication, settings: Settings) -> Any:
    """The Application (built with webhook=True) started, its webhook registered and the
    server listening on WEBHOOK_LISTEN:WEBHOOK_PORT; yields the WebServer. On exit the server
    stops first (updates in flight finish), then the Application. The webhook stays set:
    Telegram keeps the updates until a replica is back."""
    assert settings.webhook_url is not None
    server = WebServer(
        create_web_app(
            application,
            mode="webhook",
            secrets=webhook_secrets(settings),
            path=webhook_path(settings.webhook_url),
        ),
        settings.webhook_listen,
        settings.webhook_port,
    )
    await application.initialize()
    started = False
    try:
        if application.post_init is not None:
            await application.post_init(application)
        await application.start()
        started = True
        await server.start()
        await register_webhook(application, settings)
        yield server
    finally:
        await server.stop()
        if application.running:
            await application.stop()
        if started and application.post_stop is not None:
            await application.post_stop(application)
        await application.shutdown()
        if application.post_shutdown is not None:
            await application.post_shutdown(application)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (where the loop supports signal handlers)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows has no signal handlers
            loop.add_signal_handler(sig, stop.set)
    return stop


async def run_webhook(application: AnyApplication, settings: Settings) -> None:
    """`todo-bot run` in webhook mode: serve until SIGINT or SIGTERM."""
    stop = stop_on_signals()
    async with webhook_running(application, settings) as server:
        log.info(
            "to:DO Bot serves its webhook on %s:%s%s (Ctrl+C stops)",
            settings.webhook_listen,
            server.port,
            webhook_path(settings.webhook_url or ""),
        )
        await stop.wait()
