"""Browsing, searching, supporting and following to:DO items."""

from __future__ import annotations

from dataclasses import dataclass

from domain.text import DEFAULT_LANGUAGE, clean_user_text, pick, search_words
from domain.views import (
    FieldView,
    HistoryLine,
    ItemCard,
    ItemLink,
    ItemSummary,
    MyItem,
    Page,
    SessionLink,
    page_bounds,
)
from storage.repositories import FieldRecord, ItemRow, ItemSort
from storage.uow import UnitOfWork

ITEMS_PER_PAGE = 8
#: Status changes shown on the item card.
HISTORY_ON_CARD = 5


def summary(row: ItemRow, language: str) -> ItemSummary:
    return ItemSummary(
        id=row.item.id,
        key=row.item.key,
        title=pick(row.item.title, language),
        status=row.item.status,
        supporters=row.item.support_count,
        comments=row.item.comment_count,
        field_title=pick(row.field.title, language),
    )


async def action_fields(uow: UnitOfWork, language: str) -> list[FieldView]:
    counts = await uow.content.item_counts_by_field()
    return [
        FieldView(id=f.id, key=f.key, title=pick(f.title, language), items=counts.get(f.id, 0))
        for f in await uow.content.action_fields()
    ]


async def action_field(uow: UnitOfWork, field_id: int, language: str) -> FieldView | None:
    row = await uow.content.action_field(field_id)
    return FieldView(id=row.id, key=row.key, title=pick(row.title, language)) if row else None


async def list_items(
    uow: UnitOfWork, language: str, field_id: int | None, sort: ItemSort, page: int
) -> Page[ItemSummary]:
    total = await uow.content.count_items(field_id)
    page, pages = page_bounds(total, page, ITEMS_PER_PAGE)
    rows = await uow.content.list_items(field_id, sort, page * ITEMS_PER_PAGE, ITEMS_PER_PAGE)
    return Page([summary(r, language) for r in rows], page, pages, total, ITEMS_PER_PAGE)


async def search(uow: UnitOfWork, language: str, query: str, page: int) -> Page[ItemSummary]:
    """Items matching every word of `query` in the resident's language or in German,
    ignoring case and accents (ä/Ä/a, ß/ss)."""
    words = search_words(query)
    if not words:
        return Page([], 0, 1, 0, ITEMS_PER_PAGE)
    languages = sorted({language, DEFAULT_LANGUAGE})
    total = await uow.content.count_search(words, languages)
    page, pages = page_bounds(total, page, ITEMS_PER_PAGE)
    rows = await uow.content.search(words, languages, page * ITEMS_PER_PAGE, ITEMS_PER_PAGE)
    return Page([summary(r, language) for r in rows], page, pages, total, ITEMS_PER_PAGE)


async def item_id_for_key(uow: UnitOfWork, key: str) -> int | None:
    row = await uow.content.item_by_key(key)
    return row.item.id if row else None


async def item_card(
    uow: UnitOfWork, resident_id: int, item_id: int, language: str
) -> ItemCard | None:
    found = await uow.content.item_as_seen_by(item_id, resident_id)
    if found is None:
        return None
    row, state, version = found
    links = await uow.cards.card_links(item_id, version, HISTORY_ON_CARD)
    merged_into = None
    if row.item.merged_into_id is not None:
        target = await uow.content.item(row.item.merged_into_id)
        if target is not None:
            title = pick(target.item.title, language)
            merged_into = ItemLink(target.item.id, target.item.key, title)
    return ItemCard(
        id=row.item.id,
        key=row.item.key,
        title=pick(row.item.title, language),
        description=pick(row.item.description, language),
        status=row.item.status,
        supporters=row.item.support_count,
        comments=row.item.comment_count,
        field_id=row.field.id,
        field_title=pick(row.field.title, language),
        supporting=state.supporting,
        following=state.following,
        sessions=[
            SessionLink(id=sid, key=key, title=pick(title, language), starts_at=starts_at)
            for sid, key, title, starts_at in links.sessions
        ],
        history=[HistoryLine(*line) for line in links.history],
        merged_into=merged_into,
        goals=[ItemLink(gid, key, pick(title, language)) for gid, key, title in links.goals],
    )


@dataclass(frozen=True)
class EngagementChange:
    """What a button press did: `changed` is False when the state was already so (a double
    tap or a replayed update); `followed` is True when it started following the item."""

    changed: bool
    followed: bool = False
    #: Refused: the resident is banned (can read, but not support).
    banned: bool = False


async def set_support(
    uow: UnitOfWork, resident_id: int, item_id: int, support: bool
) -> EngagementChange | None:
    """Set (not toggle) the resident's support: pressing twice leaves what they meant.
    Supporting also follows the item. None if the item does not exist; a banned resident
    cannot support (`banned`), but may still withdraw a support."""
    async with uow.write():
        if not await uow.content.has_item(item_id):
            return None
        if support and await uow.moderation.is_banned(resident_id):
            return EngagementChange(False, banned=True)
        if support:
            changed = await uow.engagement.add_support(resident_id, item_id)
            followed = await uow.engagement.follow(resident_id, item_id)
            return EngagementChange(changed, followed)
        return EngagementChange(await uow.engagement.remove_support(resident_id, item_id))


async def set_follow(
    uow: UnitOfWork, resident_id: int, item_id: int, follow: bool
) -> EngagementChange | None:
    async with uow.write():
        if not await uow.content.has_item(item_id):
            return None
        if follow:
            return EngagementChange(await uow.engagement.follow(resident_id, item_id), True)
        return EngagementChange(await uow.engagement.unfollow(resident_id, item_id))


async def my_items(uow: UnitOfWork, resident_id: int, language: str, page: int) -> Page[MyItem]:
    total = await uow.engagement.count_my_items(resident_id)
    page, pages = page_bounds(total, page, ITEMS_PER_PAGE)
    rows = await uow.engagement.my_items(resident_id, page * ITEMS_PER_PAGE, ITEMS_PER_PAGE)
    fields = {f.id: FieldRecord.of(f) for f in await uow.content.action_fields()}
    entries = [
        MyItem(
            summary=summary(ItemRow(r.item, fields[r.item.action_field_id]), language),
            following=r.following,
            supporting=r.supporting,
            commented=r.commented,
        )
        for r in rows
    ]
    return Page(entries, page, pages, total, ITEMS_PER_PAGE)


AWAITING_SEARCH = "search"
SEARCH_QUERY_MAX = 200


async def start_search(uow: UnitOfWork, resident_id: int) -> None:
    """The next text of this resident is a search query."""
    async with uow.write(one_statement=True):
        await uow.conversations.set_awaiting(resident_id, AWAITING_SEARCH, {})


async def take_search(uow: UnitOfWork, resident_id: int) -> bool:
    async with uow.write(one_statement=True):
        return await uow.conversations.take_awaiting(resident_id, AWAITING_SEARCH) is not None


async def remember_search(uow: UnitOfWork, resident_id: int, query: str) -> str:
    """Keep the last query (cleaned like every typed text, on one line), so that result
    pages and "Back" can return to it."""
    query = " ".join(clean_user_text(query).split())[:SEARCH_QUERY_MAX]
    async with uow.write(one_statement=True):
        await uow.conversations.set_last_search(resident_id, query)
    return query


async def last_search(uow: UnitOfWork, resident_id: int) -> str | None:
    state = await uow.conversations.get(resident_id)
    return state.last_search if state else None
