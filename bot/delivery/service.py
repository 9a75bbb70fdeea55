"""Delivery wired into the bot: the sender runs in the background, APScheduler (through
python-telegram-bot's JobQueue) triggers the weekly digest, and a catch-up job sends a
digest missed while the bot was down. What is due and what was sent lives in the database."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from telegram.ext import Application, ContextTypes

from bot.charts import bar_chart
from bot.delivery.api import BotApi
from bot.delivery.compose import DigestComposer
from bot.delivery.sender import Sender, SenderConfig
from bot.rendering import Renderer
from bot.schedule import parse_cron, previous_fire
from bot.settings import Settings
from domain import broadcasts as broadcast_service
from domain import privacy as privacy_service
from domain import residents as resident_service
from domain.broadcasts import DigestCreated, parse_quiet_hours, week_key
from domain.digest import DigestData, collect, followed_items
from domain.staff import Actor
from domain.text import LANGUAGES, pick
from storage.models import Broadcast, utcnow
from storage.uow import Database

log = logging.getLogger(__name__)

CATCH_UP_EVERY = 300.0
#: The inactivity check (warn, then delete) runs once a day, first a minute after start.
PRIVACY_EVERY = 86400.0
PRIVACY_FIRST = 60.0
#: How late the scheduler's own run may come and still count as on time (the grace period
#: only decides about catching up a digest missed while the bot was down).
ON_TIME = dt.timedelta(minutes=1)


class Delivery:
    def __init__(self, settings: Settings, database: Database, renderer: Renderer) -> None:
        self.settings = settings
        self.database = database
        self.renderer = renderer
        self.trigger = parse_cron(settings.digest_cron, settings.tz)
        self.grace = dt.timedelta(hours=settings.digest_grace_hours)
        self.config = SenderConfig(
            rate=settings.broadcast_max_rate,
            paid=settings.broadcast_paid,
            notify_delay=dt.timedelta(seconds=settings.notify_delay_seconds),
            quiet=parse_quiet_hours(settings.quiet_hours),
            tz=settings.tz,
        )
        self.sender: Sender | None = None
        self.api: BotApi | None = None
        #: Told about every Bot API call of the sender (metrics): (method, code).
        self.api_observer: Callable[[str, int], None] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: The sender's database (Database.beside()).
        self._sender_database: Database | None = None

    # ------------------------------------------------------------------ life cycle

    async def start(
        self, app: Application[Any, Any, Any, Any, Any, Any], *, run: bool = True
    ) -> None:
        """Open the Bot API client; with `run`, also start the sender and the scheduled
        jobs (not in a web replica: the leading worker sends, the web side only queues and
        shows previews)."""
        self.api = BotApi(
            self.settings.telegram_api_url,
            self.settings.require_token(),
            connections=min(256, max(8, int(self.config.rate))),
            observer=self.api_observer,
        )
        if not run:
            self.sender = Sender(
                self.database, self.renderer, self.api, app.bot.username, self.config
            )
            return
        self._sender_database = self.database.beside()
        self.sender = Sender(
            self._sender_database, self.renderer, self.api, app.bot.username, self.config
        )
        self._stop.clear()
        self._task = asyncio.create_task(self.sender.run(self._stop), name="sender")
        if app.job_queue is not None:
            app.job_queue.run_custom(
                self._digest_job,
                job_kwargs={
                    "trigger": self.trigger,
                    "coalesce": True,
                    "misfire_grace_time": int(max(self.grace, ON_TIME).total_seconds()),
                },
                name="weekly-digest",
            )
            app.job_queue.run_repeating(
                self._catch_up_job, interval=CATCH_UP_EVERY, first=1, name="digest-catch-up"
            )
            app.job_queue.run_repeating(
                self._privacy_job,
                interval=PRIVACY_EVERY,
                first=PRIVACY_FIRST,
                name="inactivity-expiry",
            )

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.api is not None:
            await self.api.close()
            self.api = None
        if self._sender_database is not None and self._sender_database is not self.database:
            await self._sender_database.dispose()
        self._sender_database = None

    def wake(self) -> None:
        if self.sender is not None:
            self.sender.wake()

    # ------------------------------------------------------------------ inactivity

    async def _privacy_job(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.expire_inactive(utcnow())

    async def expire_inactive(self, now: dt.datetime) -> privacy_service.ExpiryResult:
        """Warn residents away for INACTIVITY_DELETE_MONTHS, delete those warned
        INACTIVITY_GRACE_DAYS ago who did not come back."""
        async with self.database.uow() as uow:
            return await privacy_service.expire_inactive(
                uow,
                now,
                months=self.settings.inactivity_delete_months,
                grace_days=self.settings.inactivity_grace_days,
                today=now.astimezone(self.settings.tz).date(),
                warn=self.warn_inactive,
            )

    async def warn_inactive(self, telegram_id: int, language: str) -> bool:
        """Send the inactivity warning. True when sent or the chat is gone (then the
        resident is marked blocked), False on a passing problem."""
        if self.api is None:
            return False
        text = self.renderer.render(
            "inactivity_warning",
            language,
            months=self.settings.inactivity_delete_months,
            grace_days=self.settings.inactivity_grace_days,
        )
        result = await self.api.call(
            "sendMessage", {"chat_id": telegram_id, "text": text, "parse_mode": "HTML"}
        )
        if result.ok:
            return True
        if result.chat_gone:
            async with self.database.uow() as uow:
                await resident_service.mark_blocked(uow, telegram_id)
            return True
        log.warning("inactivity warning to a resident failed: %s", result.description)
        return False

    # ------------------------------------------------------------------ the digest

    async def _digest_job(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        # Run a moment after the cron time: on time even when the grace period is 0.
        await self.check_digest(utcnow(), grace=max(self.grace, ON_TIME))

    async def _catch_up_job(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self.check_digest(utcnow())

    async def check_digest(
        self, now: dt.datetime, *, grace: dt.timedelta | None = None
    ) -> DigestCreated | None:
        """Create this week's digest if its time has come (and is not longer ago than the
        grace period) and it does not exist yet."""
        fired = previous_fire(self.trigger, now)
        if fired is None or now - fired > (self.grace if grace is None else grace):
            return None
        return await self.create_digest(week_key(fired, self.settings.tz), now)

    async def create_digest(
        self,
        period_key: str,
        now: dt.datetime,
        *,
        requested_by: int | None = None,
        progress_chat_id: int | None = None,
        actor: Actor | None = None,
    ) -> DigestCreated | None:
        async with self.database.uow() as uow:
            created = await broadcast_service.create_digest(
                uow,
                period_key=period_key,
                now=now,
                charts=self.charts,
                requested_by=requested_by,
                progress_chat_id=progress_chat_id,
                actor=actor,
            )
        if created is not None:
            log.info("digest %s created (%s)", created.broadcast_id, period_key)
            self.wake()
        return created

    async def charts(self, data: DigestData) -> dict[str, bytes]:
        """The digest chart, drawn once per language (in a thread: it takes a moment)."""
        pictures = {}
        for language in LANGUAGES:
            labels = [pick(f.title, language) for f in data.fields]
            values = [f.supports for f in data.fields]
            title = self.renderer.label(language, "chart_title")
            pictures[language] = await asyncio.to_thread(bar_chart, labels, values, title=title)
        return pictures

    async def preview(
        self, chat_id: int, language: str, resident_id: int, now: dt.datetime
    ) -> bool:
        """Send a moderator this week's digest as they would get it (nothing is stored).
        False if there is nothing to show."""
        assert self.sender is not None and self.api is not None
        async with self.database.uow() as uow:
            start = await broadcast_service.digest_period_start(uow, now)
            data = await collect(uow, start, now)
            follows = await followed_items(uow, [resident_id])
        broadcast = Broadcast(id=0, kind="digest", params={"data": data.to_json()})
        pictures = await self.charts(data) if data.has_chart else {}
        composer = DigestComposer(
            self.renderer, broadcast, self.sender.bot_username, chart_languages=set(pictures)
        )
        calls = composer.calls_for(chat_id, language, follows.get(resident_id, set()))
        if not calls:
            return False
        from bot.delivery.api import Upload

        for call in calls:
            if call.asset_language is not None:
                await self.api.call(
                    call.method,
                    call.params,
                    Upload("photo", "chart.png", pictures[call.asset_language]),
                )
            else:
                await self.api.call(call.method, call.params)
        return True
