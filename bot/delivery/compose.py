"""What each recipient of a broadcast gets: the Bot API calls, rendered in their language."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from markupsafe import Markup

from bot.rendering import Renderer
from bot.telegram_text import CAPTION_LIMIT, visible_length
from domain.digest import DigestData, followed_items, personal
from domain.text import pick
from storage.models import Broadcast
from storage.outbox import RecipientRow
from storage.uow import UnitOfWork

MAX_LINK_BUTTONS = 6


@dataclass(frozen=True)
class Call:
    method: str
    params: dict[str, Any]
    #: For sendPhoto: the broadcast's picture in this language (uploaded once, then file_id).
    asset_language: str | None = None


class Composer(Protocol):
    async def prepare(self, uow: UnitOfWork, rows: list[RecipientRow]) -> None: ...

    def calls(self, row: RecipientRow) -> list[Call] | None:
        """None: nothing to send to this recipient (skipped)."""


def deep_link(bot_username: str, key: str, kind: str = "item") -> str:
    return f"https://t.me/{bot_username}?start={kind}_{key}"


@dataclass
class _Base:
    renderer: Renderer
    broadcast: Broadcast
    bot_username: str
    paid: bool = False

    def message(self, chat_id: int, text: str, markup: dict[str, Any] | None = None) -> Call:
        params: dict[str, Any] = {
            "chat_id": chat_id,
            "text": text,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": True},
        }
        if markup:
            params["reply_markup"] = markup
        if self.paid:
            params["allow_paid_broadcast"] = True
        return Call("sendMessage", params)

    def item_links(self, language: str, items: list[tuple[str, str]]) -> dict[str, Any] | None:
        rows = [
            [
                {
                    "text": self.renderer.label(language, "item_button", key, title, limit=64),
                    "url": deep_link(self.bot_username, key),
                }
            ]
            for key, title in items[:MAX_LINK_BUTTONS]
        ]
        return {"inline_keyboard": rows} if rows else None


@dataclass
class AnnouncementComposer(_Base):
    """The moderator's text (validated Telegram HTML) in the announcement frame."""

    _texts: dict[str, str] = field(default_factory=dict)

    async def prepare(self, uow: UnitOfWork, rows: list[RecipientRow]) -> None:
        return None

    def text(self, language: str) -> str:
        if language not in self._texts:
            self._texts[language] = self.renderer.render(
                "announcement", language, html=Markup(self.broadcast.params["html"])
            )
        return self._texts[language]

    def calls(self, row: RecipientRow) -> list[Call] | None:
        return [self.message(row.chat_id, self.text(row.language))]


@dataclass
class NotificationComposer(_Base):
    """One message per resident with everything that happened on the items and goals they
    follow since the last one (several events of one item or goal become one entry)."""

    _items: dict[int, tuple[str, dict[str, str]]] = field(default_factory=dict)
    _goals: dict[int, tuple[str, dict[str, str]]] = field(default_factory=dict)

    async def prepare(self, uow: UnitOfWork, rows: list[RecipientRow]) -> None:
        events = [e for r in rows for e in (r.payload or {}).get("events", [])]
        items = {int(e["item_id"]) for e in events if e.get("item_id")} - set(self._items)
        goals = {int(e["goal_id"]) for e in events if e.get("goal_id")} - set(self._goals)
        for item_id, item in (await uow.activity.items(items)).items():
            self._items[item_id] = (item.key, dict(item.title))
        for goal_id, goal in (await uow.goals.by_ids(goals)).items():
            self._goals[goal_id] = (goal.key, dict(goal.title))

    def calls(self, row: RecipientRow) -> list[Call] | None:
        changes = notification_changes(
            (row.payload or {}).get("events", []), self._items, self._goals, row.language
        )
        if not changes:
            return None
        text = self.renderer.render("notification", row.language, changes=changes)
        links = [
            {
                "text": self.renderer.label(
                    row.language,
                    "goal_button" if c.is_goal else "item_button",
                    c.key,
                    c.title,
                    limit=64,
                ),
                "url": deep_link(self.bot_username, c.key, "goal" if c.is_goal else "item"),
            }
            for c in changes[:MAX_LINK_BUTTONS]
        ]
        return [self.message(row.chat_id, text, {"inline_keyboard": [[b] for b in links]})]


@dataclass
class Change:
    """What happened to one item or goal, for the notification."""

    is_goal: bool
    key: str
    title: str
    comments: int = 0
    status: str | None = None
    note: str | None = None
    merged_into: str | None = None
    formed: bool = False
    progress: int | None = None
    progress_note: str | None = None


def notification_changes(
    events: list[dict[str, Any]],
    items: dict[int, tuple[str, dict[str, str]]],
    goals: dict[int, tuple[str, dict[str, str]]],
    language: str,
) -> list[Change]:
    """Merge a resident's events per item and goal: counts add up, the latest status or
    progress wins."""
    changes: dict[tuple[bool, int], Change] = {}
    for event in sorted(events, key=lambda e: str(e.get("at", ""))):
        is_goal = bool(event.get("goal_id"))
        subject = int(event["goal_id"] if is_goal else event["item_id"])
        known = (goals if is_goal else items).get(subject)
        if known is None:
            continue
        change = changes.setdefault(
            (is_goal, subject), Change(is_goal, known[0], pick(known[1], language))
        )
        params = event.get("params") or {}
        kind = str(event.get("kind"))
        if kind == "comment":
            change.comments += 1
        elif kind == "status":
            change.status = params.get("status")
            change.note = params.get("note")
            change.merged_into = params.get("merged_into")
        elif kind == "goal":
            change.formed = True
        elif kind == "progress":
            change.progress = params.get("progress")
            change.progress_note = params.get("note")
            if params.get("status"):
                change.status = params["status"]
    return sorted(changes.values(), key=lambda c: (not c.is_goal, c.key))


@dataclass
class DigestComposer(_Base):
    """The weekly digest, personal to what the resident follows; with the chart picture
    (as the caption's photo when the text fits into a caption, else before the text)."""

    chart_languages: set[str] = field(default_factory=set)
    _data: DigestData | None = None
    _follows: dict[int, set[int]] = field(default_factory=dict)

    @property
    def data(self) -> DigestData:
        if self._data is None:
            self._data = DigestData.from_json(self.broadcast.params["data"])
        return self._data

    async def prepare(self, uow: UnitOfWork, rows: list[RecipientRow]) -> None:
        self._follows = await followed_items(uow, [r.resident_id for r in rows])

    def calls(self, row: RecipientRow) -> list[Call] | None:
        return self.calls_for(row.chat_id, row.language, self._follows.get(row.resident_id, set()))

    def calls_for(self, chat_id: int, language: str, followed: set[int]) -> list[Call] | None:
        view = personal(self.data, followed, language)
        if view is None:
            return None
        text = self.renderer.render("digest", language, digest=view)
        titles = {line.key: line.title for line in [*view.followed, *view.top, *view.new_items]}
        links = self.item_links(language, [(k, titles[k]) for k in view.keys])
        chart = language if language in self.chart_languages else None
        if chart is None and self.chart_languages:
            chart = sorted(self.chart_languages)[0]
        if chart is None:
            return [self.message(chat_id, text, links)]
        photo: dict[str, Any] = {"chat_id": chat_id, "parse_mode": "HTML"}
        if self.paid:
            photo["allow_paid_broadcast"] = True
        if visible_length(text) <= CAPTION_LIMIT:
            photo["caption"] = text
            if links:
                photo["reply_markup"] = links
            return [Call("sendPhoto", photo, chart)]
        photo["caption"] = self.renderer.render("digest_chart_caption", language, digest=view)
        return [Call("sendPhoto", photo, chart), self.message(chat_id, text, links)]


def composer_for(
    broadcast: Broadcast,
    renderer: Renderer,
    bot_username: str,
    *,
    paid: bool,
    chart_languages: set[str] | None = None,
) -> AnnouncementComposer | NotificationComposer | DigestComposer:
    if broadcast.kind == "announcement":
        return AnnouncementComposer(renderer, broadcast, bot_username, paid)
    if broadcast.kind == "notification":
        return NotificationComposer(renderer, broadcast, bot_username, paid)
    if broadcast.kind == "digest":
        return DigestComposer(
            renderer, broadcast, bot_username, paid, chart_languages=set(chart_languages or ())
        )
    raise ValueError(f"unknown broadcast kind {broadcast.kind!r}")
