"""The sender: delivers every broadcast in the outbox, once per recipient, as fast as the
rate limit allows, and survives restarts.

- One sender at a time across all processes: it holds the "sender" lease in the database.
- Recipients are streamed from the database in batches (keyset pagination), so memory does
  not grow with the audience.
- Each outcome is written right after the send (a writer task commits whatever has
  arrived, in one transaction); after a crash only the messages in flight at that moment
  can go out twice.
- 429 pauses everybody for `retry_after` and retries the same message; 403 and "chat not
  found" mark the resident inactive; network errors, timeouts and 5xx are retried with
  backoff a bounded number of times, then the recipient is marked failed with the reason.
- Such an error counts against the recipient only while Telegram is up (getMe answers). When
  Telegram is away for everybody (getMe fails too: refused connections, 5xx for every
  method), sending pauses until getMe answers again, and the messages are retried without
  counting: an outage marks nobody failed, and nothing is marked sent that was not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import logging
import os
import socket
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from bot.delivery.api import ApiResult, BotApi, Upload
from bot.delivery.compose import Call, Composer, composer_for
from bot.delivery.ratelimit import ChatSpacing, Pacer
from bot.rendering import Renderer
from domain import broadcasts as broadcast_service
from storage.database import is_disconnect
from storage.models import Broadcast, utcnow
from storage.outbox import RecipientRow, Result
from storage.uow import Database

log = logging.getLogger(__name__)

LEASE = "sender"
#: How often the writer tries to record a batch the database refuses (a connection that is
#: gone is waited for without limit).
WRITE_ATTEMPTS = 6
#: While Telegram is away, getMe is tried after `backoff`, then twice as long each time, up
#: to this many seconds (so sending resumes at most this long after Telegram is back).
OUTAGE_MAX_WAIT = 15.0


@dataclass
class SenderConfig:
    rate: float = 25.0
    paid: bool = False
    batch: int = 500
    max_attempts: int = 4
    backoff: float = 1.0
    lease_ttl: float = 10.0
    poll: float = 2.0
    progress_every: float = 3.0
    notify_delay: dt.timedelta = dt.timedelta(seconds=600)
    quiet: tuple[dt.time, dt.time] | None = None
    tz: ZoneInfo = dataclasses.field(default_factory=lambda: ZoneInfo("Europe/Berlin"))

    @property
    def workers(self) -> int:
        # Enough senders in parallel to use the rate even while some wait a second for
        # their chat (a digest with a picture is two messages to one chat).
        return max(4, min(2000, int(self.rate * 1.5) + 4))


@dataclass
class _Active:
    broadcast: Broadcast
    composer: Composer
    task: asyncio.Task[None] | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)
    sent_in_run: int = 0


class Sender:
    def __init__(
        self,
        database: Database,
        renderer: Renderer,
        api: BotApi,
        bot_username: str,
        config: SenderConfig,
        *,
        holder: str | None = None,
    ) -> None:
        self.database = database
        self.renderer = renderer
        self.api = api
        self.bot_username = bot_username
        self.config = config
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.pacer = Pacer(config.rate)
        self.spacing = ChatSpacing()
        self.stats: Counter[str] = Counter()
        #: When the first and the last recipient of this process's run were delivered.
        self.first_sent_at: float | None = None
        self.last_sent_at: float | None = None
        self._lease_until = 0.0
        self._queue: asyncio.PriorityQueue[tuple[int, int, RecipientRow, Composer]] = (
            asyncio.PriorityQueue(maxsize=max(2 * config.batch, config.workers * 2))
        )
        self._results: asyncio.Queue[tuple[Result | None, int]] = asyncio.Queue()
        self._seq = itertools.count()
        self._active: dict[int, _Active] = {}
        self._outstanding: Counter[int] = Counter()
        self._settled = asyncio.Condition()
        self._file_ids: dict[tuple[int, str], str] = {}
        self._uploads: dict[tuple[int, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._assets: dict[tuple[int, str], bytes] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._step_lock = asyncio.Lock()
        #: The results the writer is committing right now.
        self._writing: list[Result] = []
        #: Set while Telegram answers; cleared during an outage (nobody sends then).
        self._telegram_up = asyncio.Event()
        self._telegram_up.set()
        self._outage_lock = asyncio.Lock()
        #: When the last outage ended (time.monotonic()).
        self._back_at = float("-inf")

    # ------------------------------------------------------------------ life cycle

    @property
    def has_lease(self) -> bool:
        """True while our lease is certainly still ours (renewed at every step)."""
        return time.monotonic() < self._lease_until

    def wake(self) -> None:
        """New work (a broadcast was queued in this process): look now, not at the next poll."""
        self._wake.set()

    async def _ensure_tasks(self) -> None:
        if self._tasks:
            return
        # Get ready before the first send: a cold connection (TCP, TLS) or a template
        # compiled between two sends (which stalls the event loop) makes a send arrive
        # late, and a late send counts as too close to the later ones at Telegram's end.
        self.renderer.warm_up()
        await self.api.call("getMe", {})
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"sender-worker-{n}")
            for n in range(self.config.workers)
        ]
        self._tasks.append(asyncio.create_task(self._writer(), name="sender-writer"))

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set."""
        try:
            while not stop.is_set():
                try:
                    await self.step()
                except Exception as exc:
                    if not is_disconnect(exc):
                        log.exception("sender step failed; trying again")
                    else:  # no trace every poll while the database is away
                        log.warning("sender step: database unreachable (%s)", type(exc).__name__)
                self._wake.clear()
                waits = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self._wake.wait()),
                ]
                await asyncio.wait(
                    waits, timeout=self.config.poll, return_when=asyncio.FIRST_COMPLETED
                )
                for w in waits:
                    w.cancel()
        finally:
            await self.close()

    async def drain(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Deliver everything that is due now, then return (for tests and tools)."""
        async with asyncio.timeout(timeout):
            while True:
                await self.step()
                tasks = [a.task for a in self._active.values() if a.task is not None]
                if not tasks:
                    return
                await asyncio.wait(tasks, timeout=self.config.poll)

    async def close(self) -> None:
        for active in list(self._active.values()):
            if active.task is not None:
                active.task.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(
            *self._tasks, *(a.task for a in self._active.values() if a.task), return_exceptions=True
        )
        self._tasks = []
        self._active.clear()
        await self._write_leftovers()
        if self.has_lease:
            self._lease_until = 0.0
            try:
                async with self.database.uow() as uow, uow.write():
                    await uow.leases.release(LEASE, self.holder)
            except Exception:
                log.warning("could not release the sender lease")

    # ------------------------------------------------------------------ one round

    async def step(self) -> None:
        """Hold the lease, queue due notifications, start due broadcasts."""
        async with self._step_lock:
            await self._step()

    async def _step(self) -> None:
        now = utcnow()
        asked = time.monotonic()
        async with self.database.uow() as uow:
            async with uow.write():
                held = await uow.leases.acquire(
                    LEASE, self.holder, dt.timedelta(seconds=self.config.lease_ttl), now
                )
            # Trust the lease a little less long than it lasts (clocks, slow commits).
            self._lease_until = asked + 0.8 * self.config.lease_ttl if held else 0.0
            if not held:
                return
            await broadcast_service.flush_notifications(
                uow,
                now,
                delay=self.config.notify_delay,
                quiet=self.config.quiet,
                tz=self.config.tz,
            )
            due = await uow.outbox.due(now)
        for broadcast in due:
            if broadcast.id not in self._active:
                await self._ensure_tasks()
                await self._start(broadcast)

    async def _start(self, broadcast: Broadcast) -> None:
        async with self.database.uow() as uow:
            if broadcast.state in ("pending", "scheduled"):
                async with uow.write():
                    await uow.outbox.start(broadcast.id, utcnow())
            fresh = await uow.outbox.get(broadcast.id)
            if fresh is None or fresh.state != "running":
                return
            assets = await uow.outbox.assets(fresh.id)
        for language, asset in assets.items():
            self._assets[(fresh.id, language)] = asset.data
            if asset.file_id:
                self._file_ids[(fresh.id, language)] = asset.file_id
        composer = composer_for(
            fresh,
            self.renderer,
            self.bot_username,
            paid=self.config.paid,
            chart_languages=set(assets),
        )
        active = _Active(fresh, composer)
        self._active[fresh.id] = active
        active.task = asyncio.create_task(self._stream(active), name=f"broadcast-{fresh.id}")

    async def _stream(self, active: _Active) -> None:
        broadcast = active.broadcast
        progress = _Progress(self, broadcast) if broadcast.progress_chat_id else None
        ticker: asyncio.Task[None] | None = None
        try:
            if progress:
                await progress.update()
                ticker = asyncio.create_task(progress.keep_updating())
            after = 0
            while self.has_lease:
                async with self.database.uow() as uow:
                    rows = await uow.outbox.pending(broadcast.id, after, self.config.batch)
                    if rows:
                        await active.composer.prepare(uow, rows)
                if not rows:
                    break
                for row in rows:
                    self._outstanding[broadcast.id] += 1
                    await self._queue.put(
                        (broadcast.priority, next(self._seq), row, active.composer)
                    )
                after = rows[-1].resident_id
            async with self._settled:
                await self._settled.wait_for(lambda: self._outstanding[broadcast.id] == 0)
            if ticker is not None:
                ticker.cancel()
            if self.has_lease:
                async with self.database.uow() as uow, uow.write():
                    finished = await uow.outbox.finish(broadcast.id, utcnow())
                if finished and progress:
                    await progress.update(final=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_disconnect(exc):
                log.warning("broadcast %s interrupted: database unreachable", broadcast.id)
            else:
                log.exception(
                    "broadcast %s interrupted; it continues at the next round", broadcast.id
                )
            # What is queued still goes out (or back, without the lease) and is recorded (the
            # writer waits for the database). Only then can the next round tell what is still
            # pending: otherwise it queues those rows again (sent twice), and their late
            # results skew its count of outstanding rows (it would wait forever).
            if ticker is not None:
                ticker.cancel()
            async with self._settled:
                await self._settled.wait_for(lambda: self._outstanding[broadcast.id] <= 0)
        finally:
            if ticker is not None:
                ticker.cancel()
            self._active.pop(broadcast.id, None)
            self._outstanding.pop(broadcast.id, None)

    # ------------------------------------------------------------------ sending

    async def _worker(self) -> None:
        while True:
            _, _, row, composer = await self._queue.get()
            result: Result | None
            try:
                result = await self._deliver(row, composer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("delivering to one recipient failed")
                result = Result(
                    row.broadcast_id,
                    row.resident_id,
                    "failed",
                    f"internal error: {type(exc).__name__}",
                    row.attempts + 1,
                )
            await self._results.put((result, row.broadcast_id))

    async def _deliver(self, row: RecipientRow, composer: Composer) -> Result | None:
        """Send everything this recipient gets. None: not sent because the lease is gone
        (the row stays pending for whoever holds it now)."""
        calls = composer.calls(row)
        if not calls:
            return Result(row.broadcast_id, row.resident_id, "skipped", "nothing to send")
        attempts = row.attempts
        for call in calls:
            while True:
                await self._telegram_up.wait()
                if not self.has_lease:
                    return None
                tried_at = time.monotonic()
                try:
                    answer = await self._send(call, row)
                except _LeaseLost:
                    return None
                self.stats["calls"] += 1
                if answer.ok:
                    break
                self.stats[f"error_{answer.error_code}"] += 1
                if answer.error_code == 429:
                    self.pacer.pause(float(answer.retry_after or 1))
                    continue
                if answer.transient and not await self._counts_against(tried_at):
                    continue  # Telegram was away for everybody: the same message again
                if answer.chat_gone:
                    return Result(
                        row.broadcast_id,
                        row.resident_id,
                        "skipped",
                        answer.description or "chat gone",
                        attempts + 1,
                        inactive_chat_id=row.chat_id,
                    )
                attempts += 1
                if not answer.transient or attempts >= self.config.max_attempts:
                    return Result(
                        row.broadcast_id, row.resident_id, "failed", _reason(answer), attempts
                    )
                await asyncio.sleep(self.config.backoff * 2 ** (attempts - 1))
        self.stats["sent"] += 1
        self.last_sent_at = time.monotonic()
        if self.first_sent_at is None:
            self.first_sent_at = self.last_sent_at
        active = self._active.get(row.broadcast_id)
        if active is not None:
            active.sent_in_run += 1
        return Result(row.broadcast_id, row.resident_id, "sent", None, attempts + 1)

    async def _counts_against(self, tried_at: float) -> bool:
        """A transient error (no answer, timeout, 5xx) of a send started at `tried_at`: does
        it count as one of the recipient's attempts? Yes if Telegram is up (getMe answers):
        then it was about this message. No if Telegram is away for everybody: then nobody
        sends until getMe answers again (tried with growing pauses while the lease lasts),
        and the message is retried as if nothing happened."""
        async with self._outage_lock:
            if self._back_at > tried_at:
                return False  # an outage, over by now, covered this send
            probe = await self.api.call("getMe", {})
            if probe.ok or not probe.transient:
                return True
            self._telegram_up.clear()
            self.stats["outages"] += 1
            went = time.monotonic()
            log.warning("Telegram does not answer (%s): sending paused", _reason(probe))
            delay = self.config.backoff
            try:
                while self.has_lease:
                    await asyncio.sleep(delay)
                    delay = min(2 * delay, OUTAGE_MAX_WAIT)
                    probe = await self.api.call("getMe", {})
                    if probe.ok:
                        log.info(
                            "Telegram answers again after %.1f s: sending resumes",
                            time.monotonic() - went,
                        )
                        break
            finally:
                self._back_at = time.monotonic()
                self._telegram_up.set()
            return False

    async def _pace(self, chat_id: int) -> None:
        """Wait for the chat's turn and the overall pace; the message goes out right after.
        Not while Telegram is away (an outage may begin while waiting for the pace)."""
        async with self.spacing.turn(chat_id):
            while True:
                await self._telegram_up.wait()
                await self.pacer.acquire()
                if self._telegram_up.is_set():
                    break
        if not self.has_lease:  # lost while waiting (an outage can last long)
            raise _LeaseLost

    async def _send(self, call: Call, row: RecipientRow) -> ApiResult:
        if call.asset_language is None:
            await self._pace(row.chat_id)
            return await self.api.call(call.method, call.params)
        key = (row.broadcast_id, call.asset_language)
        if key not in self._file_ids:
            # One upload; everyone after that re-sends the file_id. Waiting for it comes
            # before pacing, so the waiting ones do not all go out at once afterwards.
            async with self._uploads[key]:
                if key not in self._file_ids:
                    await self._pace(row.chat_id)
                    answer = await self.api.call(
                        call.method, call.params, Upload("photo", "chart.png", self._assets[key])
                    )
                    file_id = _photo_file_id(answer)
                    if file_id:
                        self._file_ids[key] = file_id
                        async with self.database.uow() as uow, uow.write():
                            await uow.outbox.set_file_id(
                                row.broadcast_id, call.asset_language, file_id
                            )
                    return answer
        await self._pace(row.chat_id)
        return await self.api.call(call.method, {**call.params, "photo": self._file_ids[key]})

    async def _write_leftovers(self) -> None:
        """On a graceful stop: record what was delivered but not written yet (including a
        batch the writer was cancelled in), so that a restart does not send it again.
        Recording is idempotent, so a batch that did commit does no harm."""
        leftovers = list(self._writing)
        while not self._results.empty():
            result, _ = self._results.get_nowait()
            if result is not None:
                leftovers.append(result)
        self._writing = []
        if not leftovers:
            return
        try:
            async with asyncio.timeout(10):
                async with self.database.uow() as uow, uow.write():
                    await uow.outbox.record(leftovers, utcnow())
        except Exception:
            log.warning("could not record %d delivered messages on stop", len(leftovers))

    async def _writer(self) -> None:
        while True:
            batch = [await self._results.get()]
            while len(batch) < 200 and not self._results.empty():
                batch.append(self._results.get_nowait())
            results = [r for r, _ in batch if r is not None]
            self._writing = results
            attempt = 0
            while True:
                try:
                    if results:
                        async with self.database.uow() as uow, uow.write():
                            await uow.outbox.record(results, utcnow())
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    attempt += 1
                    if is_disconnect(exc):
                        # Sent is sent: wait for the database however long it is away,
                        # or these recipients would get the message again.
                        log.warning(
                            "writing delivery results: database unreachable (%s), attempt %d",
                            type(exc).__name__,
                            attempt,
                        )
                    else:
                        log.exception("writing delivery results failed (attempt %d)", attempt)
                        if attempt >= WRITE_ATTEMPTS:
                            break
                    delay = 0.5 * self.config.backoff * 2 ** min(attempt - 1, 10)
                    await asyncio.sleep(min(30.0, delay))
            self._writing = []
            async with self._settled:
                for _, broadcast_id in batch:
                    self._outstanding[broadcast_id] -= 1
                self._settled.notify_all()


class _LeaseLost(Exception):
    """The lease ran out while a message waited for its turn: it is not sent."""


def _reason(answer: ApiResult) -> str:
    code = f"{answer.error_code} " if answer.error_code else ""
    return f"{code}{answer.description}".strip()[:200] or "unknown error"


def _photo_file_id(answer: ApiResult) -> str | None:
    if not answer.ok or not isinstance(answer.result, dict):
        return None
    sizes = answer.result.get("photo") or []
    if sizes and isinstance(sizes[-1], dict):
        return str(sizes[-1].get("file_id") or "") or None
    return None


class _Progress:
    """The moderator's progress message: sent / failed / remaining, rate, time left."""

    def __init__(self, sender: Sender, broadcast: Broadcast) -> None:
        self.sender = sender
        self.broadcast_id = broadcast.id
        self.chat_id = broadcast.progress_chat_id
        self.message_id = broadcast.progress_message_id
        self.requested_by = broadcast.requested_by
        self.started = time.monotonic()
        self.language: str | None = None

    async def keep_updating(self) -> None:
        """Edit the message every few seconds until cancelled."""
        while True:
            await asyncio.sleep(self.sender.config.progress_every)
            try:
                await self.update()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("updating the progress message failed", exc_info=True)

    async def update(self, *, final: bool = False) -> None:
        if self.chat_id is None:
            return
        sender = self.sender
        async with sender.database.uow() as uow:
            broadcast = await uow.outbox.get(self.broadcast_id)
            if broadcast is None:
                return
            if self.language is None:
                requester = (
                    await uow.residents.by_telegram_id(self.requested_by)
                    if self.requested_by
                    else None
                )
                self.language = requester.language if requester else "de"
        active = sender._active.get(self.broadcast_id)
        elapsed = max(0.001, time.monotonic() - (active.started if active else self.started))
        sent_now = active.sent_in_run if active else 0
        rate = sent_now / elapsed
        remaining = max(0, broadcast.total - broadcast.sent - broadcast.failed - broadcast.skipped)
        values: dict[str, Any] = {
            "broadcast": broadcast,
            "remaining": remaining,
            "rate": rate,
            "seconds_left": int(remaining / rate) if rate > 0 else None,
            "final": final,
        }
        text = sender.renderer.render("broadcast_progress", self.language, **values)
        params: dict[str, Any] = {"chat_id": self.chat_id, "text": text, "parse_mode": "HTML"}
        if self.message_id is None:
            answer = await sender.api.call("sendMessage", params)
            if answer.ok and isinstance(answer.result, dict):
                self.message_id = int(answer.result["message_id"])
                async with sender.database.uow() as uow, uow.write():
                    await uow.outbox.set_progress_message(
                        self.broadcast_id, self.chat_id, self.message_id
                    )
            return
        await sender.api.call("editMessageText", {**params, "message_id": self.message_id})
