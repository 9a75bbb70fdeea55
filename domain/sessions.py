"""The event week's sessions: list by day, session card with highlights and recordings."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from domain.text import pick
from domain.views import (
    HighlightView,
    ItemLink,
    Page,
    RecordingView,
    SessionCard,
    SessionSummary,
    SpeakerView,
    page_bounds,
)
from storage.models import EventSession
from storage.uow import UnitOfWork

SESSIONS_PER_PAGE = 7

_YOUTUBE_HOSTS = {
    "youtube.com",
    "www.youtube.com",
    "m.youtube.com",
    "youtu.be",
    "www.youtube-nocookie.com",
    "youtube-nocookie.com",
}
_VIMEO_HOSTS = {"vimeo.com", "www.vimeo.com", "player.vimeo.com"}


def timestamp_url(url: str, seconds: int) -> str | None:
    """A link to `seconds` into the recording, for players whose URLs take a start time
    (YouTube `?t=`, Vimeo `#t=`); None for any other URL."""
    parts = urlsplit(url)
    host = parts.netloc.lower().split(":")[0]
    if host in _YOUTUBE_HOSTS:
        query = [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k not in ("t", "start")
        ]
        query.append(("t", str(seconds)))
        return urlunsplit(
            (parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment)
        )
    if host in _VIMEO_HOSTS:
        return urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, f"t={seconds}s"))
    return None


def _summary(row: EventSession, language: str, tz: ZoneInfo) -> SessionSummary:
    return SessionSummary(
        id=row.id,
        key=row.key,
        title=pick(row.title, language),
        starts_at=row.starts_at.astimezone(tz),
        ends_at=row.ends_at.astimezone(tz),
        location=row.location,
    )


async def list_sessions(
    uow: UnitOfWork, language: str, page: int, tz: ZoneInfo
) -> Page[SessionSummary]:
    total = await uow.content.count_sessions()
    page, pages = page_bounds(total, page, SESSIONS_PER_PAGE)
    rows = await uow.content.list_sessions(page * SESSIONS_PER_PAGE, SESSIONS_PER_PAGE)
    return Page([_summary(r, language, tz) for r in rows], page, pages, total, SESSIONS_PER_PAGE)


async def page_of_session(uow: UnitOfWork, session_id: int) -> int:
    position = await uow.content.session_position(session_id)
    return 0 if position is None else position // SESSIONS_PER_PAGE


async def session_id_for_key(uow: UnitOfWork, key: str) -> int | None:
    row = await uow.content.session_card_by_key(key)
    return row.id if row else None


async def session_card(
    uow: UnitOfWork, session_id: int, language: str, tz: ZoneInfo
) -> SessionCard | None:
    row = await uow.content.session_card(session_id)
    if row is None:
        return None
    first_url = row.recordings[0].url if row.recordings else None
    return SessionCard(
        id=row.id,
        key=row.key,
        title=pick(row.title, language),
        summary=pick(row.summary, language),
        location=row.location,
        starts_at=row.starts_at.astimezone(tz),
        ends_at=row.ends_at.astimezone(tz),
        speakers=[SpeakerView(name=s.name, role=pick(s.role, language)) for s in row.speakers],
        highlights=[
            HighlightView(
                text=pick(h.text, language),
                at_seconds=h.at_seconds,
                url=(
                    timestamp_url(first_url, h.at_seconds)
                    if first_url and h.at_seconds is not None
                    else None
                ),
            )
            for h in row.highlights
        ],
        recordings=[
            RecordingView(
                title=pick(r.title, language), url=r.url, duration_seconds=r.duration_seconds
            )
            for r in row.recordings
        ],
        items=[ItemLink(id=i.id, key=i.key, title=pick(i.title, language)) for i in row.items],
    )
