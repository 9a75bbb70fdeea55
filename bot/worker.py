"""`todo-bot run --role worker`: the scheduler and the sender, without handling updates.

Several workers may run against one PostgreSQL database. They elect a leader (bot/leader.py):
only the leader runs the sender and the scheduled jobs (weekly digest, catch-up, inactivity);
the others wait and one takes over within a few seconds when the leader dies. The sender's
own lease in the database keeps two senders from ever sending at the same time, even in the
moment a dying leader has not noticed yet. With HTTP_PORT set, /healthz says "leader" or
"standby" and /metrics works as in the other roles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from bot.leader import LeaderElection
from bot.settings import Settings

log = logging.getLogger(__name__)

AnyApplication = Any


class Worker:
    """One worker process: an Application without update intake, and its election."""

    def __init__(
        self, application: AnyApplication, settings: Settings, *, retry_seconds: float = 2.0
    ) -> None:
        self.application = application
        self.settings = settings
        self.services = application.bot_data["services"]
        self.election = LeaderElection(
            settings.database_url,
            retry_seconds=retry_seconds,
            on_elected=self._lead,
            on_lost=self._follow,
        )
        application.bot_data["leader"] = self.election

    async def _lead(self) -> None:
        delivery = self.services.delivery
        if delivery is not None:
            await delivery.start(self.application)
        log.info("worker: leading (sender and scheduled jobs running)")

    async def _follow(self) -> None:
        """Lost the lead: stop sending and the scheduled jobs at once."""
        delivery = self.services.delivery
        if delivery is not None:
            await delivery.stop()
            delivery.sender = None  # /healthz: no sender here now
        job_queue = self.application.job_queue
        if job_queue is not None:
            for job in job_queue.jobs():
                job.schedule_removal()
        log.info("worker: standing by")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Worker]:
        """Started (and campaigning) inside the block; stopped cleanly after it."""
        from bot.web import WebServer, create_web_app

        app = self.application
        await app.initialize()
        self.services.renderer.warm_up()
        await app.start()
        server = None
        if self.settings.http_port is not None:
            server = WebServer(
                create_web_app(app, mode="worker"),
                self.settings.webhook_listen,
                self.settings.http_port,
            )
            await server.start()
            app.bot_data["http_server"] = server
        campaign = asyncio.create_task(self.election.run(), name="leader-election")
        try:
            yield self
        finally:
            campaign.cancel()
            await asyncio.gather(campaign, return_exceptions=True)
            if server is not None:
                app.bot_data.pop("http_server", None)
                await server.stop()
            delivery = self.services.delivery
            if delivery is not None:
                await delivery.stop()
            if app.running:
                await app.stop()
            await app.shutdown()
            if app.post_shutdown is not None:
                await app.post_shutdown(app)


async def run_worker(application: AnyApplication, settings: Settings) -> None:
    """Serve as a worker until SIGINT or SIGTERM."""
    from bot.web import stop_on_signals

    stop = stop_on_signals()
    async with Worker(application, settings, retry_seconds=settings.leader_retry_seconds).running():
        log.info("to:DO Bot worker started: campaigning for the lead (Ctrl+C stops)")
        await stop.wait()
