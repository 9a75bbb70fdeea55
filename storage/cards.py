"""What an item card links to, cached per process while the content stays the same."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from storage.goals import GoalRepository
from storage.repositories import ContentRepository, Repository


@dataclass(frozen=True)
class CardLinks:
    """What an item card shows besides the item: its sessions (id, key, title, start),
    its latest status changes (when, status, note, key merged into) and its goals (id, key,
    title), as plain values that outlive the unit of work."""

    version: int
    sessions: tuple[tuple[int, str, dict[str, str], dt.datetime], ...]
    history: tuple[tuple[dt.datetime, str, str | None, str | None], ...]
    goals: tuple[tuple[int, str, dict[str, str]], ...]


#: A Database's CardLinks per item (the session's info carries it: Database.uow).
CARD_LINKS = "card_links"


class CardLinksRepository(Repository):
    async def card_links(self, item_id: int, version: int | None, history: int) -> CardLinks:
        """The item's sessions, latest `history` status changes and goals. Cached per
        process while the content version (read with the item) stays the same: triggers
        count it up in every transaction that changes one of CARD_CONTENT_TABLES, so a
        change made by any process shows on the next card. Three queries fewer for the
        screen residents open most."""
        cache: dict[int, CardLinks] | None = self.session.info.get(CARD_LINKS)
        cached = cache.get(item_id) if cache is not None else None
        if cached is not None and version is not None and cached.version == version:
            return cached
        content = ContentRepository(self.session)
        links = CardLinks(
            version=version if version is not None else -1,
            sessions=tuple(
                (s.id, s.key, dict(s.title), s.starts_at)
                for s in await content.sessions_of_item(item_id)
            ),
            history=tuple(
                (u.created_at, u.status, u.note, key)
                for u, key in await content.history(item_id, history)
            ),
            goals=tuple(
                (g.id, g.key, dict(g.title))
                for g in await GoalRepository(self.session).of_item(item_id)
            ),
        )
        if cache is not None and version is not None:
            cache[item_id] = links
        return links
