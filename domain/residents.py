"""Residents: first contact, language, display name, digest setting."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from domain.text import LANGUAGES, clean_user_text, language_for
from domain.views import Author
from storage.models import DISPLAY_NAME_MAX, Resident
from storage.uow import UnitOfWork


@dataclass(frozen=True)
class ResidentInfo:
    id: int
    telegram_id: int
    language: str
    author: Author
    digest_enabled: bool
    notify_mode: str = "instant"
    is_new: bool = False
    #: What the bot waits for from this resident (e.g. "comment"), if anything.
    awaiting: str | None = None

    @classmethod
    def of(
        cls, resident: Resident, *, is_new: bool = False, awaiting: str | None = None
    ) -> ResidentInfo:
        return cls(
            id=resident.id,
            telegram_id=resident.telegram_id,
            language=resident.language,
            author=Author(resident.display_name, resident.pseudonym),
            digest_enabled=resident.digest_enabled,
            notify_mode=resident.notify_mode,
            is_new=is_new,
            awaiting=awaiting,
        )


async def enter(
    uow: UnitOfWork, telegram_id: int, language_code: str | None, today: dt.date
) -> ResidentInfo:
    """The resident behind an update, created on first contact with the language their
    Telegram uses. Marks them seen today (one write a day at most)."""
    found = await uow.residents.with_state(telegram_id)
    if found is not None:
        resident, awaiting = found
        if resident.last_seen_on == today and resident.blocked_at is None:
            return ResidentInfo.of(resident, awaiting=awaiting)
    else:
        awaiting = None
    async with uow.write():
        resident, created = await uow.residents.ensure(telegram_id, language_for(language_code))
        await uow.residents.touch(resident.id, today)
    return ResidentInfo.of(resident, is_new=created, awaiting=awaiting)


async def set_language(uow: UnitOfWork, resident_id: int, language: str) -> bool:
    if language not in LANGUAGES:
        return False
    async with uow.write():
        await uow.residents.set_language(resident_id, language)
    return True


class InvalidDisplayName(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "empty" | "too_long" | "lines"


def validate_display_name(text: str) -> str:
    name = clean_user_text(text)
    if "\n" in name or "\r" in name:
        raise InvalidDisplayName("lines")
    name = " ".join(name.split())
    if not name:
        raise InvalidDisplayName("empty")
    if len(name) > DISPLAY_NAME_MAX:
        raise InvalidDisplayName("too_long")
    return name


async def set_display_name(uow: UnitOfWork, resident_id: int, name: str | None) -> str | None:
    """Set (validated) or clear the display name; returns what is stored."""
    value = validate_display_name(name) if name is not None else None
    async with uow.write():
        await uow.residents.set_display_name(resident_id, value)
    return value


async def set_digest(uow: UnitOfWork, resident_id: int, enabled: bool) -> None:
    async with uow.write():
        await uow.residents.set_digest(resident_id, enabled)


async def mark_blocked(uow: UnitOfWork, telegram_id: int) -> bool:
    """Telegram said the resident blocked the bot: stop writing to them until they return."""
    async with uow.write():
        return await uow.residents.mark_blocked(telegram_id)


async def reload(uow: UnitOfWork, resident_id: int) -> ResidentInfo | None:
    resident = await uow.residents.get(resident_id)
    if resident is None:
        return None
    await uow.session.refresh(resident)
    return ResidentInfo.of(resident)


async def languages_of(uow: UnitOfWork, telegram_ids: list[int]) -> dict[int, str]:
    """The language of each of these Telegram users who is a resident (others: absent)."""
    result = {}
    for telegram_id in telegram_ids:
        resident = await uow.residents.by_telegram_id(telegram_id)
        if resident is not None:
            result[telegram_id] = resident.language
    return result
