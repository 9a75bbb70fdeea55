"""Writes an imported content bundle. Keys are stable: existing rows are updated in place,
so supports, comments and follows (which point at ids) are never touched, and neither is
anything moderators change in the bot (such as an item's status)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import selectinload

from domain.content import (
    ContentBundle,
    GoalLinks,
    HighlightData,
    ImportReport,
    KindReport,
    RecordingData,
)
from storage.goal_writer import GoalWriter
from storage.models import (
    ActionField,
    EventSession,
    Goal,
    GoalItem,
    Highlight,
    Item,
    ItemSearchText,
    Recording,
    SessionItem,
    Speaker,
    utcnow,
)
from storage.repositories import Repository


def _assign(row: Any, values: dict[str, Any]) -> bool:
    """Set attributes that differ; returns whether anything changed."""
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


class ContentWriter(Repository):
    async def existing_keys(self) -> tuple[set[str], set[str], set[str]]:
        """Keys of action fields, sessions and items already in the database."""
        fields = set((await self.session.execute(select(ActionField.key))).scalars())
        sessions = set((await self.session.execute(select(EventSession.key))).scalars())
        items = set((await self.session.execute(select(Item.key))).scalars())
        return fields, sessions, items

    async def apply(self, bundle: ContentBundle) -> ImportReport:
        report = ImportReport()
        fields = await self._apply_fields(bundle, report.action_fields)
        items = await self._apply_items(bundle, fields, report.items)
        await self._apply_sessions(bundle, items, report.sessions)
        await self._apply_goals(bundle, fields, items, report)
        await self.session.flush()
        return report

    async def _apply_fields(self, bundle: ContentBundle, report: KindReport) -> dict[str, int]:
        rows = {f.key: f for f in (await self.session.execute(select(ActionField))).scalars()}
        for data in bundle.action_fields:
            row = rows.get(data.key)
            values = {"title": data.title, "position": data.position}
            if row is None:
                row = ActionField(key=data.key, **values)
                self.session.add(row)
                rows[data.key] = row
                report.created.append(data.key)
            else:
                (report.updated if _assign(row, values) else report.unchanged).append(data.key)
        report.kept = sorted(set(rows) - {f.key for f in bundle.action_fields})
        await self.session.flush()
        return {key: row.id for key, row in rows.items()}

    async def _apply_items(
        self, bundle: ContentBundle, field_ids: dict[str, int], report: KindReport
    ) -> dict[str, int]:
        rows = {i.key: i for i in (await self.session.execute(select(Item))).scalars()}
        now = utcnow()
        touched: list[tuple[Item, Any]] = []
        for data in bundle.items:
            row = rows.get(data.key)
            values = {
                "title": data.title,
                "description": data.description,
                "action_field_id": field_ids[data.action_field_key],
            }
            if row is None:
                # Items of one import share created_at; "newest" then goes by id (file order).
                row = Item(key=data.key, status="open", created_at=now, updated_at=now, **values)
                self.session.add(row)
                rows[data.key] = row
                report.created.append(data.key)
            elif _assign(row, values):
                row.updated_at = now
                report.updated.append(data.key)
            else:
                report.unchanged.append(data.key)
            touched.append((row, data))
        report.kept = sorted(set(rows) - {i.key for i in bundle.items})
        await self.session.flush()
        ids = [row.id for row, _ in touched]
        if ids:
            await self.session.execute(
                delete(ItemSearchText).where(ItemSearchText.item_id.in_(ids))
            )
            self.session.add_all(
                ItemSearchText(item_id=row.id, language=lang, title=s.title, body=s.body)
                for row, data in touched
                for lang, s in data.search.items()
            )
        await self.session.flush()
        return {key: row.id for key, row in rows.items()}

    async def _apply_sessions(
        self, bundle: ContentBundle, item_ids: dict[str, int], report: KindReport
    ) -> None:
        result = await self.session.execute(
            select(EventSession).options(
                selectinload(EventSession.speakers),
                selectinload(EventSession.highlights),
                selectinload(EventSession.recordings),
            )
        )
        rows = {s.key: s for s in result.scalars()}
        links = {
            (s, i)
            for s, i in (
                await self.session.execute(select(SessionItem.session_id, SessionItem.item_id))
            )
        }
        for data in bundle.sessions:
            row = rows.get(data.key)
            values = {
                "title": data.title,
                "summary": data.summary,
                "location": data.location,
                "starts_at": data.starts_at,
                "ends_at": data.ends_at,
            }
            created = row is None
            if row is None:
                row = EventSession(key=data.key, **values)
                row.speakers, row.highlights, row.recordings = [], [], []
                self.session.add(row)
                await self.session.flush()
                changed = True
            else:
                changed = _assign(row, values)
            changed |= self._sync_speakers(row, data.speakers)
            changed |= self._sync_highlights(row, data.highlights)
            changed |= self._sync_recordings(row, data.recordings)
            await self.session.flush()
            wanted = {item_ids[k] for k in data.item_keys}
            have = {i for s, i in links if s == row.id}
            if wanted != have:
                changed = True
                await self.session.execute(
                    delete(SessionItem).where(SessionItem.session_id == row.id)
                )
                self.session.add_all(SessionItem(session_id=row.id, item_id=i) for i in wanted)
            if created:
                report.created.append(data.key)
            else:
                (report.updated if changed else report.unchanged).append(data.key)
        report.kept = sorted(set(rows) - {s.key for s in bundle.sessions})

    async def _apply_goals(
        self,
        bundle: ContentBundle,
        field_ids: dict[str, int],
        item_ids: dict[str, int],
        report: ImportReport,
    ) -> None:
        """Goals by key, updated in place (follows, help offers and progress updates point
        at the goal's id and are never touched). Partners and milestones become the file's
        lists; status and progress change only when the file gives them. Items newly linked
        are listed in `report.goal_links`."""
        writer = GoalWriter(self.session)
        rows = {g.key: g for g in (await self.session.execute(select(Goal))).scalars()}
        links: dict[int, set[int]] = {}
        for goal_id, item_id in await self.session.execute(
            select(GoalItem.goal_id, GoalItem.item_id)
        ):
            links.setdefault(goal_id, set()).add(item_id)
        now = utcnow()
        for data in bundle.goals:
            row = rows.get(data.key)
            values: dict[str, Any] = {
                "title": data.title,
                "description": data.description,
                "action_field_id": field_ids[data.action_field_key],
            }
            if data.status is not None:
                values["status"] = data.status
            if data.progress is not None:
                values["progress"] = data.progress
            created = row is None
            if row is None:
                values.setdefault("status", "planned")
                values.setdefault("progress", 0)
                row = Goal(key=data.key, created_at=now, updated_at=now, **values)
                self.session.add(row)
                await self.session.flush()
                rows[data.key] = row
                changed = True
            else:
                changed = _assign(row, values)
            changed |= await writer.replace_partners(
                row.id, [(p.name, p.description, p.url) for p in data.partners]
            )
            changed |= await writer.replace_milestones(
                row.id, [(m.title, m.due_on, m.done) for m in data.milestones]
            )
            had = links.get(row.id, set())
            added, removed = await writer.set_items(row.id, (item_ids[k] for k in data.item_keys))
            if added:
                report.goal_links.append(
                    GoalLinks(row.id, row.key, created, tuple(sorted(added)), tuple(sorted(had)))
                )
            changed |= bool(added or removed)
            if created:
                report.goals.created.append(data.key)
            elif changed:
                row.updated_at = now
                report.goals.updated.append(data.key)
            else:
                report.goals.unchanged.append(data.key)
        report.goals.kept = sorted(set(rows) - {g.key for g in bundle.goals})
        await self.session.flush()

    @staticmethod
    def _sync_speakers(row: EventSession, speakers: Sequence[Any]) -> bool:
        current = [(s.name, s.role) for s in row.speakers]
        wanted = [(s.name, s.role) for s in speakers]
        if current == wanted:
            return False
        row.speakers = [
            Speaker(position=n, name=s.name, role=s.role) for n, s in enumerate(speakers)
        ]
        return True

    @staticmethod
    def _sync_highlights(row: EventSession, highlights: Sequence[HighlightData]) -> bool:
        """Keep a highlight's identity (and its created_at, which tells the digest what is
        new) while its text stays the same; a changed text is a new highlight."""
        return _sync_children(
            row.highlights,
            highlights,
            identity=lambda h: tuple(sorted(h.text.items())),
            make=lambda n, d: Highlight(
                position=n, text=d.text, at_seconds=d.at_seconds, created_at=utcnow()
            ),
            values=lambda n, d: {"position": n, "at_seconds": d.at_seconds},
            replace=lambda lst: setattr(row, "highlights", lst),
        )

    @staticmethod
    def _sync_recordings(row: EventSession, recordings: Sequence[RecordingData]) -> bool:
        """A recording is identified by its URL."""
        return _sync_children(
            row.recordings,
            recordings,
            identity=lambda r: r.url,
            make=lambda n, d: Recording(
                position=n,
                title=d.title,
                url=d.url,
                duration_seconds=d.duration_seconds,
                created_at=utcnow(),
            ),
            values=lambda n, d: {
                "position": n,
                "title": d.title,
                "duration_seconds": d.duration_seconds,
            },
            replace=lambda lst: setattr(row, "recordings", lst),
        )


def _sync_children(
    current: Sequence[Any],
    wanted: Sequence[Any],
    *,
    identity: Any,
    make: Any,
    values: Any,
    replace: Any,
) -> bool:
    existing: dict[Any, Any] = {}
    for child in current:
        existing.setdefault(identity(child), child)
    result = []
    changed = len(current) != len(wanted)
    for n, data in enumerate(wanted):
        child = existing.pop(identity(data), None)
        if child is None:
            child = make(n, data)
            changed = True
        else:
            changed |= _assign(child, values(n, data))
        result.append(child)
    if changed or existing:
        replace(result)
        return True
    return False
