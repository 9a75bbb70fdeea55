"""Prometheus metrics, one private registry per application (tests run several at once).

Counted where it happens: updates in the update processor, Bot API calls in the bot's HTTP
request class (`MeteredRequest`) and in the sender's client (`BotApi(observer=...)`). The
outbox and sender gauges are computed when /metrics is scraped."""

from __future__ import annotations

import logging
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select
from telegram import Update
from telegram.request import RequestData

from bot.request import AiohttpRequest
from storage.models import BroadcastRecipient
from storage.uow import Database

log = logging.getLogger(__name__)

UPDATE_TYPES = ("message", "callback_query", "my_chat_member")
OUTBOX_STATES = ("pending", "sent", "failed")


def update_type(update: object) -> str:
    if isinstance(update, Update):
        for kind in UPDATE_TYPES:
            if getattr(update, kind, None) is not None:
                return kind
    return "other"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.updates = Counter(
            "todo_bot_updates",
            "Updates by type and outcome (ok, error, duplicate)",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "todo_bot_update_seconds",
            "Time to handle one update (duplicates not counted)",
            ["type"],
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )
        self.api_calls = Counter(
            "todo_bot_api_calls",
            "Bot API calls by client (bot, sender), method and HTTP status (0: no answer)",
            ["client", "method", "code"],
            registry=self.registry,
        )
        self.api_errors = Counter(
            "todo_bot_api_errors",
            "Bot API calls that failed, by client, method and code (0: network or timeout)",
            ["client", "method", "code"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "todo_bot_api_rate_limited",
            "Bot API answers 429 (flood control), by client",
            ["client"],
            registry=self.registry,
        )
        self.outbox = Gauge(
            "todo_bot_outbox_recipients",
            "Broadcast recipients by state (from the database at scrape time)",
            ["state"],
            registry=self.registry,
        )
        self.sender_lease = Gauge(
            "todo_bot_sender_has_lease",
            "1 while this process's sender holds the sending lease",
            registry=self.registry,
        )
        self.sender_rate = Gauge(
            "todo_bot_sender_max_rate",
            "Messages per second the sender paces itself to",
            registry=self.registry,
        )
        self.sender_sent = Gauge(
            "todo_bot_sender_sent",
            "Messages this process's sender delivered since start",
            registry=self.registry,
        )
        self.sender_current_rate = Gauge(
            "todo_bot_sender_current_rate",
            "Messages per second this process's sender delivered since the previous scrape",
            registry=self.registry,
        )
        self._last_sent: tuple[float, int] | None = None
        self.scrape_errors = Counter(
            "todo_bot_metrics_scrape_errors",
            "Scrapes whose database gauges could not be refreshed",
            registry=self.registry,
        )

    def _current_rate(self, now: float, sent: int) -> float:
        """Sent per second between the previous scrape and this one (0 at the first)."""
        previous, self._last_sent = self._last_sent, (now, sent)
        if previous is None or now <= previous[0] or sent < previous[1]:
            return 0.0
        return round((sent - previous[1]) / (now - previous[0]), 3)

    def api_call(self, client: str, method: str, code: int) -> None:
        labels = (client, method, str(code))
        self.api_calls.labels(*labels).inc()
        if code == 0 or code >= 400:
            self.api_errors.labels(*labels).inc()
        if code == 429:
            self.rate_limited.labels(client).inc()

    async def refresh(self, database: Database | None, sender: Any | None) -> None:
        """The gauges that are read from the database and the sender (at scrape time)."""
        if sender is not None:
            self.sender_lease.set(1 if sender.has_lease else 0)
            self.sender_rate.set(round(1.0 / sender.pacer.interval, 3))
            sent = int(sender.stats.get("sent", 0))
            self.sender_sent.set(sent)
            self.sender_current_rate.set(self._current_rate(time.monotonic(), sent))
        if database is None:
            return
        counts = dict.fromkeys(OUTBOX_STATES, 0)
        async with database.uow() as uow:
            rows = await uow.session.execute(
                select(BroadcastRecipient.state, func.count())
                .where(BroadcastRecipient.state.in_(OUTBOX_STATES))
                .group_by(BroadcastRecipient.state)
            )
            for state, count in rows:
                counts[state] = int(count)
        for state, count in counts.items():
            self.outbox.labels(state).set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def api_method(url: str) -> str:
    """`https://…/bot<token>/sendMessage` → `sendMessage` (never the token)."""
    return url.rstrip("/").rsplit("/", 1)[-1][:64] or "unknown"


class MeteredRequest(AiohttpRequest):
    """The bot's HTTP client for python-telegram-bot, counting every call by method and
    status."""

    def __init__(self, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> tuple[int, bytes]:
        name = api_method(url)
        try:
            code, payload = await super().do_request(url, method, request_data, *args, **kwargs)
        except Exception:
            self.metrics.api_call("bot", name, 0)
            raise
        self.metrics.api_call("bot", name, code)
        return code, payload
