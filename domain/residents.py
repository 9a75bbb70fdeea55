"""Residents: first contact, language, display name, digest setting."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from domain.staff import effective_role
from domain.text import LANGUAGES, clean_user_text, language_for
from domain.views import Author
from storage.models import DISPLAY_NAME_MAX, Resident
from storage.repositories import ResidentRecord
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
    #: "admin", "moderator" or None (see domain.staff).
    role: str | None = None
    banned: bool = False

    @classmethod
    def of(
        cls,
        resident: Resident | ResidentRecord,
        *,
        is_new: bool = False,
        awaiting: str | None = None,
        role: str | None = None,
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
            role=role,
            banned=resident.banned_at is not None,
        )


async def enter(
    uow: UnitOfWork,
    telegram_id: int,
    language_code: str | None,
    today: dt.date,
    admin_ids: Iterable[int] = (),
) -> ResidentInfo:
    """The resident behind an update, created on first contact with the language their
    Telegram uses, with their role. Marks them seen today (one write a day at most)."""
    found = await uow.residents.with_state(telegram_id)
    stored_role: str | None = None
    awaiting: str | None = None
    if found is not None:
        resident, awaiting, stored_role = found
        role = effective_role(telegram_id, stored_role, admin_ids)
        if resident.last_seen_on == today and resident.blocked_at is None:
            return ResidentInfo.of(resident, awaiting=awaiting, role=role)
    async with uow.write():
        created = False
        if found is None:
            resident, created = await uow.residents.ensure(
                telegram_id, language_for(language_code), seen_on=today
            )
        if not created:  # created seen today, with nothing to clear
            await uow.residents.touch(resident.id, today)
        if resident.inactivity_warned_at is not None:
            # Back after the inactivity warning: the account is no longer deleted.
            await uow.privacy.clear_warning(resident.id)
    if found is None:  # made a moderator (/mod add) before writing to the bot
        stored_role = await uow.roles.role(telegram_id)
    role = effective_role(telegram_id, stored_role, admin_ids)
    return ResidentInfo.of(resident, is_new=created, awaiting=awaiting, role=role)


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


async def reload(uow: UnitOfWork, previous: ResidentInfo) -> ResidentInfo:
    """The resident's settings as stored now (after a change), keeping role and prompt."""
    resident = await uow.residents.get(previous.id)
    if resident is None:
        return previous
    await uow.session.refresh(resident)
    return ResidentInfo.of(resident, awaiting=previous.awaiting, role=previous.role)


async def languages_of(uow: UnitOfWork, telegram_ids: list[int]) -> dict[int, str]:
    """The language of each of these Telegram users who is a resident (others: absent)."""
    result = {}
    for telegram_id in telegram_ids:
        resident = await uow.residents.by_telegram_id(telegram_id)
        if resident is not None:
            result[telegram_id] = resident.language
    return result
