"""Privacy (GDPR): a resident's data as a file (/mydata), deleting an account (/deleteme),
and deleting the accounts of residents who have been away too long."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from storage.uow import UnitOfWork

log = logging.getLogger(__name__)

#: At most this many residents are warned or deleted per run (the next run goes on).
BATCH = 500


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


async def my_data(uow: UnitOfWork, resident_id: int, now: dt.datetime) -> dict[str, Any] | None:
    """Everything stored about the resident (dates as ISO 8601 text)."""
    data = await uow.privacy.resident_data(resident_id)
    if data is None:
        return None
    result: dict[str, Any] = {"exported_at": now.isoformat()}
    result.update(_plain(data))
    return result


def to_json_bytes(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8")


async def delete_account(uow: UnitOfWork, resident_id: int, *, keep_comments: bool) -> bool:
    """Delete the resident and everything linked to them, in one transaction. Their
    comments stay as "deleted account" (keep_comments) or are deleted too."""
    async with uow.write():
        return await uow.privacy.delete_resident(resident_id, keep_comments=keep_comments)


def months_before(day: dt.date, months: int) -> dt.date:
    """The same day `months` months earlier (the last day of a shorter month)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    for candidate in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    raise AssertionError("unreachable")


#: Sends the inactivity warning: (telegram id, language) → done. True when it was sent or
#: cannot ever be (the resident blocked the bot: marked blocked); False on a passing
#: problem (network, flood limit): tried again at the next run.
Warn = Callable[[int, str], Awaitable[bool]]


@dataclass(frozen=True)
class ExpiryResult:
    warned: int = 0
    deleted: int = 0


async def expire_inactive(
    uow: UnitOfWork,
    now: dt.datetime,
    *,
    months: int,
    grace_days: int,
    today: dt.date,
    warn: Warn,
) -> ExpiryResult:
    """Warn residents not seen for `months` months; delete (comments kept anonymous) those
    warned at least `grace_days` days ago who have not come back since (coming back clears
    the warning, see domain.residents.enter)."""
    deleted = 0
    for resident in await uow.privacy.warned_before(now - dt.timedelta(days=grace_days), BATCH):
        if await delete_account(uow, resident.id, keep_comments=True):
            deleted += 1
    await uow.end_reads()
    warned = 0
    cutoff = months_before(today, months)
    candidates = [
        (r.id, r.telegram_id, r.language, r.blocked_at is not None)
        for r in await uow.privacy.inactive_unwarned(cutoff, BATCH)
    ]
    await uow.end_reads()
    for resident_id, telegram_id, language, blocked in candidates:
        # A resident who blocked the bot cannot be told; the grace period still runs.
        if not blocked and not await warn(telegram_id, language):
            continue
        async with uow.write():
            await uow.privacy.mark_warned(resident_id, now)
        warned += 1
    if warned or deleted:
        log.info("inactivity: %d warned, %d deleted", warned, deleted)
    return ExpiryResult(warned=warned, deleted=deleted)
