"""Repositories: every query the bot makes lives here. They return ORM rows or plain tuples;
they never commit (the unit of work does)."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal,
    or_,
    select,
    type_coerce,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, selectinload

from storage.fastreads import FAST_READS, FastReads, compiled
from storage.models import (
    ActionField,
    ApprovedCommentCount,
    Comment,
    ContentVersion,
    ConversationState,
    EventSession,
    Follow,
    Item,
    ItemSearchText,
    ItemUpdate,
    ModerationMessage,
    Resident,
    ResidentCount,
    SessionItem,
    Support,
    SupportCount,
    UTCDateTime,
    utcnow,
)

ItemSort = Literal["support", "new", "discussed"]


#: Pseudonyms come from the system's randomness: a library or test that seeds the global
#: `random` must not make every new resident draw the same numbers.
_PSEUDONYMS = random.SystemRandom()
#: Statements built once per dialect (see Repository._prebuilt).
_PREBUILT: dict[tuple[str, str], Any] = {}


class Repository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _known(self, fact: str) -> dict[int, Any]:
        """What this unit of work (one update) has already read and is asked for again
        later in the same update, by name: "banned" (resident id -> banned?) and "items"
        (item id -> exists). Kept in the session's `info`, so it ends with the unit of
        work; plain values, never ORM objects, so later queries still read fresh rows."""
        known: dict[int, Any] = self.session.info.setdefault(fact, {})
        return known

    def _prebuilt(self, name: str, build: Callable[[], Any]) -> Any:
        """The statement `build()` makes, built once per dialect, with bindparam()
        placeholders for the values. For the queries of every update: building a statement
        and computing its cache key cost more CPU than running it (a resident lookup on
        SQLite: 244 µs built each time, 100 µs prebuilt; benchmarks/RESULTS.md)."""
        key = (name, self.dialect)
        statement = _PREBUILT.get(key)
        if statement is None:
            statement = _PREBUILT[key] = build()
        return statement

    async def _read(
        self, name: str, build: Callable[[], Any], params: Mapping[str, Any]
    ) -> Sequence[Sequence[Any]]:
        """The rows of the SELECT `build()` makes (a Core statement, prebuilt under
        `name`): by the unit of work's fast reads where they may run
        (storage/fastreads.py), else through the session. Both give the same values."""
        fast: FastReads | None = self.session.info.get(FAST_READS)
        if fast is not None and fast.usable:
            return await fast.fetch(compiled(name, fast.dialect, build), params)
        return (await self.session.execute(self._prebuilt(name, build), params)).all()

    @property
    def dialect(self) -> str:
        bind = self.session.bind
        assert bind is not None
        return bind.dialect.name

    def _insert(self, model: Any) -> Any:
        """INSERT with the dialect's ON CONFLICT support (PostgreSQL and SQLite), into a
        model (ORM) or a table (Core: cheaper where no ORM object comes back)."""
        module = postgresql if self.dialect == "postgresql" else sqlite
        return module.insert(model)


# --------------------------------------------------------------------------- residents


def _columns(table: Any, record: Any) -> list[Any]:
    """The table's columns a record type takes, in the record's order."""
    return [table.c[name] for name in record.__dataclass_fields__]


@dataclass(frozen=True, slots=True)
class ResidentRecord:
    """A resident's row as an update reads it (see ResidentRepository.with_state)."""

    id: int
    telegram_id: int
    language: str
    pseudonym: int
    display_name: str | None
    digest_enabled: bool
    notify_mode: str
    blocked_at: dt.datetime | None
    banned_at: dt.datetime | None
    inactivity_warned_at: dt.datetime | None
    last_seen_on: dt.date | None

    @classmethod
    def of(cls, resident: Resident) -> ResidentRecord:
        return cls(*(getattr(resident, name) for name in cls.__dataclass_fields__))


class ResidentRepository(Repository):
    PSEUDONYM_RANGES = ((1000, 9999), (10000, 99999), (100000, 9_999_999))

    async def by_telegram_id(self, telegram_id: int) -> Resident | None:
        result = await self.session.execute(
            select(Resident).where(Resident.telegram_id == telegram_id)
        )
        return result.scalar_one_or_none()

    async def get(self, resident_id: int) -> Resident | None:
        return await self.session.get(Resident, resident_id)

    async def with_state(
        self, telegram_id: int
    ) -> tuple[ResidentRecord, str | None, str | None] | None:
        """The resident, what the bot awaits from them and their stored role, in one query
        (every update makes it: plain columns, not an ORM object, cost half as much)."""
        from storage.models import Role

        def build() -> Any:
            table = Resident.__table__
            columns = _columns(table, ResidentRecord)
            # Table columns only: a Core statement, without the ORM's execution path.
            state, role = ConversationState.__table__, Role.__table__
            return (
                select(*columns, state.c.awaiting, role.c.role)
                .outerjoin(state, state.c.resident_id == table.c.id)
                .outerjoin(role, role.c.telegram_id == table.c.telegram_id)
                .where(table.c.telegram_id == bindparam("telegram_id"))
            )

        rows = await self._read("residents.with_state", build, {"telegram_id": telegram_id})
        if not rows:
            return None
        *values, awaiting, role = rows[0]
        resident = ResidentRecord(*values)
        self._known("banned")[resident.id] = resident.banned_at is not None
        return resident, awaiting, role

    async def ensure(
        self, telegram_id: int, language: str, seen_on: dt.date | None = None
    ) -> tuple[ResidentRecord, bool]:
        """The resident with this Telegram id, created (with a fresh pseudonym, seen on
        `seen_on`) if new; True if created here. Safe against a concurrent first contact of
        the same user from another process.

        One statement for a new resident: an INSERT that does nothing on any conflict
        (Telegram id or pseudonym) and returns the new row. Only when it returns nothing
        is there a second look: the resident exists after all, or the pseudonym was taken
        and another is drawn."""
        for low, high in self.PSEUDONYM_RANGES:
            for _ in range(4):
                now = utcnow()
                stmt = self._prebuilt("residents.ensure", self._ensuring)
                params = {
                    "p_telegram_id": telegram_id,
                    "p_language": language,
                    "p_pseudonym": _PSEUDONYMS.randint(low, high),
                    "p_now": now,
                    "p_seen_on": seen_on,
                }
                row = (await self.session.execute(stmt, params)).first()
                if row is not None:
                    created = ResidentRecord(*row)
                    if telegram_id != ANONYMOUS_TELEGRAM_ID:
                        await HourlyCountRepository(self.session, RESIDENTS).add_one(now)
                    self._known("banned")[created.id] = False
                    return created, True
                existing = await self.by_telegram_id(telegram_id)
                if existing is not None:
                    return ResidentRecord.of(existing), False
        raise RuntimeError("could not draw a free pseudonym")

    async def set_language(self, resident_id: int, language: str) -> None:
        await self._set(resident_id, language=language)

    async def set_display_name(self, resident_id: int, name: str | None) -> None:
        await self._set(resident_id, display_name=name)

    async def set_digest(self, resident_id: int, enabled: bool) -> None:
        await self._set(resident_id, digest_enabled=enabled)

    async def set_notify_mode(self, resident_id: int, mode: str) -> None:
        await self._set(resident_id, notify_mode=mode)

    async def mark_blocked(self, telegram_id: int) -> bool:
        result = await self.session.execute(
            update(Resident)
            .where(Resident.telegram_id == telegram_id, Resident.blocked_at.is_(None))
            .values(blocked_at=utcnow())
            .returning(Resident.id)
        )
        return result.scalar_one_or_none() is not None

    def _ensuring(self) -> Any:
        """The new resident's INSERT (Core: no ORM object to build), returning the row as
        a ResidentRecord takes it, or nothing on any conflict."""
        table = Resident.__table__
        return (
            self._insert(table)
            .values(
                telegram_id=bindparam("p_telegram_id"),
                language=bindparam("p_language"),
                pseudonym=bindparam("p_pseudonym"),
                created_at=bindparam("p_now"),
                last_seen_on=bindparam("p_seen_on"),
            )
            .on_conflict_do_nothing()
            .returning(*_columns(table, ResidentRecord))
        )

    async def touch(self, resident_id: int, today: dt.date) -> None:
        """Record that the resident was here today (and can be written to again)."""
        await self.session.execute(
            update(Resident)
            .where(Resident.id == resident_id)
            .values(last_seen_on=today, blocked_at=None)
        )

    async def _set(self, resident_id: int, **values: Any) -> None:
        await self.session.execute(
            update(Resident).where(Resident.id == resident_id).values(**values)
        )


# --------------------------------------------------------------------------- content


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """An item as the screens read it: plain values from a Core query (the ORM's way cost
    twice as much per row; see storage/fastreads.py)."""

    id: int
    key: str
    title: dict[str, str]
    description: dict[str, str]
    action_field_id: int
    status: str
    support_count: int
    comment_count: int
    follow_count: int
    created_at: dt.datetime
    merged_into_id: int | None


@dataclass(frozen=True, slots=True)
class FieldRecord:
    """An action field as the screens read it."""

    id: int
    key: str
    title: dict[str, str]
    position: int

    @classmethod
    def of(cls, field: ActionField) -> FieldRecord:
        return cls(*(getattr(field, name) for name in cls.__dataclass_fields__))


_ITEMS: Table = Item.__table__  # type: ignore[assignment]
_FIELDS: Table = ActionField.__table__  # type: ignore[assignment]
_SEARCH: Table = ItemSearchText.__table__  # type: ignore[assignment]
_STATES: Table = ConversationState.__table__  # type: ignore[assignment]
_ITEM_COLUMNS = _columns(_ITEMS, ItemRecord)
_FIELD_COLUMNS = _columns(_FIELDS, FieldRecord)


@dataclass(frozen=True, slots=True)
class ItemRow:
    item: ItemRecord
    field: FieldRecord

    @classmethod
    def of(cls, row: Sequence[Any]) -> ItemRow:
        """From a row of _ITEM_COLUMNS then _FIELD_COLUMNS (and whatever follows)."""
        n, m = len(_ITEM_COLUMNS), len(_FIELD_COLUMNS)
        return cls(ItemRecord(*row[:n]), FieldRecord(*row[n : n + m]))


class ContentRepository(Repository):
    async def action_fields(self) -> Sequence[ActionField]:
        result = await self.session.execute(
            select(ActionField).order_by(ActionField.position, ActionField.key)
        )
        return result.scalars().all()

    async def action_field(self, field_id: int) -> ActionField | None:
        return await self.session.get(ActionField, field_id)

    async def item_counts_by_field(self) -> dict[int, int]:
        result = await self.session.execute(
            select(Item.action_field_id, func.count())
            .where(Item.status != "merged")
            .group_by(Item.action_field_id)
        )
        return {field_id: count for field_id, count in result}

    def _listed(self) -> Select[Any]:
        return self._any_item().where(_ITEMS.c.status != "merged")

    @staticmethod
    def _order(sort: ItemSort) -> list[Any]:
        c = _ITEMS.c
        if sort == "new":
            return [c.created_at.desc(), c.id.desc()]
        if sort == "discussed":
            return [c.comment_count.desc(), c.support_count.desc(), c.key]
        return [c.support_count.desc(), c.comment_count.desc(), c.key]

    async def count_items(self, field_id: int | None) -> int:
        def build() -> Any:
            stmt = select(func.count()).select_from(_ITEMS).where(_ITEMS.c.status != "merged")
            if field_id is not None:
                stmt = stmt.where(_ITEMS.c.action_field_id == bindparam("p_field"))
            return stmt

        rows = await self._read(
            f"content.count_items.{field_id is None}", build, {"p_field": field_id}
        )
        return int(rows[0][0])

    async def list_items(
        self, field_id: int | None, sort: ItemSort, offset: int, limit: int
    ) -> list[ItemRow]:
        def build() -> Any:
            stmt = self._listed()
            if field_id is not None:
                stmt = stmt.where(_ITEMS.c.action_field_id == bindparam("p_field"))
            return (
                stmt.order_by(*self._order(sort))
                .offset(bindparam("p_offset"))
                .limit(bindparam("p_limit"))
            )

        name = f"content.list_items.{field_id is None}.{sort}"
        params = {"p_field": field_id, "p_offset": offset, "p_limit": limit}
        return [ItemRow.of(row) for row in await self._read(name, build, params)]

    async def item(self, item_id: int) -> ItemRow | None:
        def build() -> Any:
            return self._any_item().where(_ITEMS.c.id == bindparam("p_item"))

        rows = await self._read("content.item", build, {"p_item": item_id})
        if not rows:
            return None
        self._known("items")[item_id] = True
        return ItemRow.of(rows[0])

    async def item_as_seen_by(
        self, item_id: int, resident_id: int
    ) -> tuple[ItemRow, Engagement, int | None] | None:
        """The item with whether the resident supports and follows it, and the content
        version (for `card_links`), in one query (the card's; it took two before)."""

        def build() -> Any:
            item: Any = bindparam("p_item")
            resident: Any = bindparam("p_resident")
            supports, follows = Support.__table__.c, Follow.__table__.c
            supporting = exists().where(supports.resident_id == resident, supports.item_id == item)
            following = exists().where(follows.resident_id == resident, follows.item_id == item)
            versions = ContentVersion.__table__.c
            version = select(versions.n).where(versions.id == 1).scalar_subquery()
            return self._any_item(supporting, following, version).where(_ITEMS.c.id == item)

        params = {"p_item": item_id, "p_resident": resident_id}
        rows = await self._read("content.item_as_seen_by", build, params)
        if not rows:
            return None
        self._known("items")[item_id] = True
        row = rows[0]
        engagement = Engagement(supporting=bool(row[-3]), following=bool(row[-2]))
        return ItemRow.of(row), engagement, row[-1]

    async def has_item(self, item_id: int) -> bool:
        """Whether the item exists (items are never deleted: one this update has already
        read answers without a query)."""
        known = self._known("items")
        if item_id not in known:

            def build() -> Any:
                return select(_ITEMS.c.id).where(_ITEMS.c.id == bindparam("p_item"))

            known[item_id] = bool(await self._read("content.has_item", build, {"p_item": item_id}))
        return bool(known[item_id])

    async def item_by_key(self, key: str) -> ItemRow | None:
        def build() -> Any:
            return self._any_item().where(_ITEMS.c.key == bindparam("p_key"))

        rows = await self._read("content.item_by_key", build, {"p_key": key})
        return ItemRow.of(rows[0]) if rows else None

    @staticmethod
    def _any_item(*more: Any) -> Select[Any]:
        """Items with their action fields (`ItemRow.of`), then `more` columns."""
        return select(*_ITEM_COLUMNS, *_FIELD_COLUMNS, *more).join(
            _FIELDS, _ITEMS.c.action_field_id == _FIELDS.c.id
        )

    @staticmethod
    def _languages(count: int) -> list[Any]:
        """Placeholders p_language0, p_language1, … (fast reads take no expanding IN)."""
        return [bindparam(f"p_language{n}", type_=String()) for n in range(count)]

    @classmethod
    def _search_filter(cls, words: int, languages: int) -> ColumnElement[bool]:
        """Every word (bind parameters p_word0, p_word1, …: LIKE patterns) in the title or
        the text, in one of the languages (p_language0, …)."""
        conditions = []
        for n in range(words):
            pattern: BindParameter[str] = bindparam(f"p_word{n}", type_=String())
            conditions.append(
                exists().where(
                    _SEARCH.c.item_id == _ITEMS.c.id,
                    _SEARCH.c.language.in_(cls._languages(languages)),
                    or_(
                        _SEARCH.c.title.like(pattern, escape="\\"),
                        _SEARCH.c.body.like(pattern, escape="\\"),
                    ),
                )
            )
        return and_(*conditions)

    @staticmethod
    def _search_params(words: Sequence[str], languages: Sequence[str]) -> dict[str, Any]:
        params: dict[str, Any] = {
            f"p_word{n}": f"%{_escape_like(word)}%" for n, word in enumerate(words)
        }
        params.update({f"p_language{n}": language for n, language in enumerate(languages)})
        return params

    async def count_search(self, words: Sequence[str], languages: Sequence[str]) -> int:
        """Prebuilt per number of words (domain.text.search_words keeps at most 8) and of
        languages."""

        def build() -> Any:
            return (
                select(func.count())
                .select_from(_ITEMS)
                .where(_ITEMS.c.status != "merged", self._search_filter(len(words), len(languages)))
            )

        name = f"content.count_search.{len(words)}.{len(languages)}"
        rows = await self._read(name, build, self._search_params(words, languages))
        return int(rows[0][0])

    async def search(
        self, words: Sequence[str], languages: Sequence[str], offset: int, limit: int
    ) -> list[ItemRow]:
        """Items whose title or description (in one of `languages`) contains every word;
        items with more words in the title first, then the most supported."""

        def build() -> Any:
            title_hits: ColumnElement[int] = literal(0)
            for n in range(len(words)):
                title_hits = title_hits + case(
                    (
                        exists().where(
                            _SEARCH.c.item_id == _ITEMS.c.id,
                            _SEARCH.c.language.in_(self._languages(len(languages))),
                            _SEARCH.c.title.like(bindparam(f"p_word{n}"), escape="\\"),
                        ),
                        1,
                    ),
                    else_=0,
                )
            return (
                self._listed()
                .where(self._search_filter(len(words), len(languages)))
                .order_by(title_hits.desc(), _ITEMS.c.support_count.desc(), _ITEMS.c.key)
                .offset(bindparam("p_offset"))
                .limit(bindparam("p_limit"))
            )

        name = f"content.search.{len(words)}.{len(languages)}"
        params = self._search_params(words, languages) | {"p_offset": offset, "p_limit": limit}
        return [ItemRow.of(row) for row in await self._read(name, build, params)]

    async def count_sessions(self) -> int:
        return (await self.session.execute(select(func.count(EventSession.id)))).scalar_one()

    async def list_sessions(self, offset: int, limit: int) -> Sequence[EventSession]:
        result = await self.session.execute(
            select(EventSession)
            .order_by(EventSession.starts_at, EventSession.key)
            .offset(offset)
            .limit(limit)
        )
        return result.scalars().all()

    async def session_position(self, session_id: int) -> int | None:
        """0-based position of a session in the list order (to go back to its page)."""
        target = await self.session.get(EventSession, session_id)
        if target is None:
            return None
        stmt = select(func.count()).where(
            or_(
                EventSession.starts_at < target.starts_at,
                and_(EventSession.starts_at == target.starts_at, EventSession.key < target.key),
            )
        )
        return (await self.session.execute(stmt)).scalar_one()

    def _session_card(self) -> Select[EventSession]:
        return select(EventSession).options(
            selectinload(EventSession.speakers),
            selectinload(EventSession.highlights),
            selectinload(EventSession.recordings),
            selectinload(EventSession.items),
        )

    async def session_card(self, session_id: int) -> EventSession | None:
        result = await self.session.execute(
            self._session_card().where(EventSession.id == session_id)
        )
        return result.scalar_one_or_none()

    async def session_card_by_key(self, key: str) -> EventSession | None:
        result = await self.session.execute(self._session_card().where(EventSession.key == key))
        return result.scalar_one_or_none()

    async def set_status(
        self, item_id: int, status: str, merged_into_id: int | None = None
    ) -> None:
        await self.session.execute(
            update(Item)
            .where(Item.id == item_id)
            .values(status=status, merged_into_id=merged_into_id, updated_at=utcnow())
        )

    async def add_history(
        self,
        item_id: int,
        previous: str,
        status: str,
        note: str | None,
        merged_into_id: int | None,
        actor_telegram_id: int | None,
    ) -> None:
        self.session.add(
            ItemUpdate(
                item_id=item_id,
                previous_status=previous,
                status=status,
                note=note,
                merged_into_id=merged_into_id,
                actor_telegram_id=actor_telegram_id,
                created_at=utcnow(),
            )
        )
        await self.session.flush()

    async def history(self, item_id: int, limit: int) -> list[tuple[ItemUpdate, str | None]]:
        """The latest status changes, newest first, with the key merged into (if any)."""

        def build() -> Any:
            target = Item.__table__.alias("target")
            return (
                select(ItemUpdate, target.c.key)
                .outerjoin(target, target.c.id == ItemUpdate.merged_into_id)
                .where(ItemUpdate.item_id == bindparam("p_item"))
                .order_by(ItemUpdate.created_at.desc(), ItemUpdate.id.desc())
                .limit(bindparam("p_limit"))
            )

        stmt = self._prebuilt("content.history", build)
        result = await self.session.execute(stmt, {"p_item": item_id, "p_limit": limit})
        return [(u, k) for u, k in result]

    async def sessions_of_item(self, item_id: int) -> Sequence[EventSession]:
        stmt = self._prebuilt(
            "content.sessions_of_item",
            lambda: (
                select(EventSession)
                .join(SessionItem, SessionItem.session_id == EventSession.id)
                .where(SessionItem.item_id == bindparam("p_item"))
                .order_by(EventSession.starts_at)
            ),
        )
        result = await self.session.execute(stmt, {"p_item": item_id})
        return result.scalars().all()


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# --------------------------------------------------------------------------- hourly counts

#: The placeholder resident keeping the comments of deleted accounts (storage.privacy).
ANONYMOUS_TELEGRAM_ID = 0


def hour_bucket(moment: dt.datetime) -> dt.datetime:
    """The UTC hour `moment` falls into (its row in an HourlyCount table)."""
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def hour_bucket_sql(column: Any, dialect: str) -> ColumnElement[dt.datetime]:
    """`hour_bucket` in SQL, stored exactly as a bound `hour_bucket` value would be.
    PostgreSQL truncates in UTC (not the session's zone); SQLite keeps UTCDateTime as text
    'YYYY-MM-DD HH:MM:SS.ffffff' (naive UTC), so the hour is its first 13 characters."""
    if dialect == "postgresql":
        utc = func.timezone("UTC", column)
        expr: Any = func.timezone("UTC", func.date_trunc("hour", utc))
    else:
        expr = func.substr(column, 1, 13).op("||")(literal(":00:00.000000"))
    return type_coerce(expr, UTCDateTime())


@dataclass(frozen=True)
class Hourly:
    """What an HourlyCount table counts: rows of a table with `moment` (their created_at)
    matching `where`."""

    name: str
    counts: type[SupportCount] | type[ApprovedCommentCount] | type[ResidentCount]
    moment: Any
    where: tuple[ColumnElement[bool], ...] = ()


SUPPORTS = Hourly("supports", SupportCount, Support.created_at)
APPROVED_COMMENTS = Hourly(
    "approved_comments", ApprovedCommentCount, Comment.created_at, (Comment.status == "approved",)
)
RESIDENTS = Hourly(
    "residents",
    ResidentCount,
    Resident.created_at,
    (Resident.telegram_id != ANONYMOUS_TELEGRAM_ID,),
)
HOURLY = (SUPPORTS, APPROVED_COMMENTS, RESIDENTS)


class HourlyCountRepository(Repository):
    """Keeps an HourlyCount table equal to the rows it counts per UTC hour. Every write of
    those rows calls it in the same transaction (see models.HourlyCount)."""

    def __init__(self, session: AsyncSession, kind: Hourly) -> None:
        super().__init__(session)
        self.kind = kind
        self._table = cast(Table, kind.counts.__table__)

    async def add(self, deltas: Mapping[dt.datetime, int]) -> None:
        """Add `deltas[hour]` rows to each hour bucket (negative: rows gone)."""
        ups = [{"p_bucket": b, "p_delta": n} for b, n in deltas.items() if n > 0]
        downs = [{"p_bucket": b, "p_delta": -n} for b, n in deltas.items() if n < 0]
        if ups:
            await self.session.execute(self._prebuilt(f"{self._table.name}.up", self._up), ups)
        if downs:
            # An UPDATE, not the upsert: the database checks n >= 0 on the row an INSERT
            # proposes before it looks for the conflict.
            stmt = self._prebuilt(f"{self._table.name}.down", self._down)
            await self.session.execute(stmt, downs)

    async def add_one(self, moment: dt.datetime, sign: int = 1) -> None:
        """One row created at `moment` counted in (+1) or out (-1)."""
        await self.add({hour_bucket(moment): sign})

    async def add_moments(self, moments: Sequence[dt.datetime], sign: int) -> None:
        """Rows created at `moments` counted in (sign +1) or out (sign -1)."""
        buckets = Counter(hour_bucket(m) for m in moments)
        await self.add({b: sign * n for b, n in buckets.items()})

    async def add_rows(self, where: ColumnElement[bool], sign: int) -> None:
        """The counted rows also matching `where`, counted in (+1) or out (-1), grouped
        in SQL (a merge can move thousands)."""
        bucket = self._bucket()
        rows = await self.session.execute(
            select(bucket, func.count()).where(where, *self.kind.where).group_by(bucket)
        )
        await self.add({b: sign * int(n) for b, n in rows})

    async def rebuild(self) -> None:
        """Recount every bucket from the rows (after a bulk load, or to repair)."""
        await self.session.execute(delete(self._table))
        await self.session.execute(
            self._insert(self._table).from_select(["bucket_start", "n"], self._counted())
        )

    async def mismatches(self) -> list[tuple[dt.datetime, int, int]]:
        """(hour, n kept, rows counted) wherever they differ."""
        counted = {b: int(n) for b, n in await self.session.execute(self._counted())}
        c = self._table.c
        kept = {b: n for b, n in await self.session.execute(select(c.bucket_start, c.n))}
        return [
            (b, kept.get(b, 0), counted.get(b, 0))
            for b in sorted(counted.keys() | kept.keys())
            if kept.get(b, 0) != counted.get(b, 0)
        ]

    def _bucket(self) -> ColumnElement[dt.datetime]:
        return hour_bucket_sql(self.kind.moment, self.dialect)

    def _counted(self) -> Select[dt.datetime, int]:
        bucket = self._bucket()
        table = self.kind.moment.class_
        return (
            select(bucket, func.count()).select_from(table).where(*self.kind.where).group_by(bucket)
        )

    def _up(self) -> Any:
        table = self._table
        stmt = self._insert(table).values(
            bucket_start=bindparam("p_bucket", type_=UTCDateTime()), n=bindparam("p_delta")
        )
        return stmt.on_conflict_do_update(
            index_elements=[table.c.bucket_start], set_={"n": table.c.n + stmt.excluded.n}
        )

    def _down(self) -> Any:
        # Core, not the ORM: given a list of parameters, an ORM update() would be a bulk
        # update by primary key.
        table = self._table
        return (
            update(table)
            .where(table.c.bucket_start == bindparam("p_bucket", type_=UTCDateTime()))
            .values(n=table.c.n - bindparam("p_delta"))
        )


# --------------------------------------------------------------------------- engagement


@dataclass(frozen=True)
class Engagement:
    supporting: bool
    following: bool


@dataclass(frozen=True)
class MyItemRow:
    item: ItemRecord
    following: bool
    supporting: bool
    commented: bool


class EngagementRepository(Repository):
    async def state(self, resident_id: int, item_id: int) -> Engagement:
        def build() -> Any:
            resident: Any = bindparam("p_resident")
            item: Any = bindparam("p_item")
            supporting = exists().where(Support.resident_id == resident, Support.item_id == item)
            following = exists().where(Follow.resident_id == resident, Follow.item_id == item)
            return select(supporting, following)

        stmt = self._prebuilt("engagement.state", build)
        params = {"p_resident": resident_id, "p_item": item_id}
        row = (await self.session.execute(stmt, params)).one()
        return Engagement(supporting=bool(row[0]), following=bool(row[1]))

    async def add_support(self, resident_id: int, item_id: int) -> bool:
        """Insert the support; returns whether it was new (the counter moves only then)."""
        stmt = self._prebuilt("engagement.add_support", lambda: self._add(Support))
        now = utcnow()
        params = {"p_resident": resident_id, "p_item": item_id, "p_now": now}
        inserted = (await self.session.execute(stmt, params)).scalar_one_or_none() is not None
        if inserted:
            await self._bump(item_id, Item.support_count, +1)
            await HourlyCountRepository(self.session, SUPPORTS).add_one(now)
        return inserted

    async def remove_support(self, resident_id: int, item_id: int) -> bool:
        stmt = (
            delete(Support)
            .where(Support.resident_id == resident_id, Support.item_id == item_id)
            .returning(Support.created_at)
        )
        given = (await self.session.execute(stmt)).scalar_one_or_none()
        if given is None:
            return False
        await self._bump(item_id, Item.support_count, -1)
        await HourlyCountRepository(self.session, SUPPORTS).add_one(given, -1)
        return True

    async def follow(self, resident_id: int, item_id: int) -> bool:
        stmt = self._prebuilt("engagement.follow", lambda: self._add(Follow))
        params = {"p_resident": resident_id, "p_item": item_id, "p_now": utcnow()}
        inserted = (await self.session.execute(stmt, params)).scalar_one_or_none() is not None
        if inserted:
            await self._bump(item_id, Item.follow_count, +1)
        return inserted

    def _add(self, model: type[Support] | type[Follow]) -> Any:
        """INSERT of a (resident, item) row that does nothing if it is there already and
        returns the item id only when it inserted."""
        table = model.__table__  # Core, not the ORM's bulk-insert path: a third of the cost
        return (
            self._insert(table)
            .values(
                resident_id=bindparam("p_resident"),
                item_id=bindparam("p_item"),
                created_at=bindparam("p_now"),
            )
            .on_conflict_do_nothing(index_elements=[table.c.resident_id, table.c.item_id])
            .returning(table.c.item_id)
        )

    async def unfollow(self, resident_id: int, item_id: int) -> bool:
        stmt = (
            delete(Follow)
            .where(Follow.resident_id == resident_id, Follow.item_id == item_id)
            .returning(Follow.item_id)
        )
        removed = (await self.session.execute(stmt)).scalar_one_or_none() is not None
        if removed:
            await self._bump(item_id, Item.follow_count, -1)
        return removed

    async def _bump(self, item_id: int, column: Any, delta: int) -> None:
        stmt = self._prebuilt(
            f"engagement.bump.{column.key}",
            lambda: (
                # Core: the ORM's UPDATE also evaluated the condition against the session's
                # objects, and the screens read items as records (ItemRecord) anyway.
                update(_ITEMS)
                .where(_ITEMS.c.id == bindparam("p_item"))
                .values({column.key: _ITEMS.c[column.key] + bindparam("p_delta")})
            ),
        )
        await self.session.execute(stmt, {"p_item": item_id, "p_delta": delta})

    def _my_item_ids(self, resident_id: int) -> Any:
        return union(
            select(Follow.item_id).where(Follow.resident_id == resident_id),
            select(Support.item_id).where(Support.resident_id == resident_id),
            select(Comment.item_id).where(Comment.resident_id == resident_id),
        ).subquery()

    async def count_my_items(self, resident_id: int) -> int:
        ids = self._my_item_ids(resident_id)
        return (await self.session.execute(select(func.count()).select_from(ids))).scalar_one()

    async def my_items(self, resident_id: int, offset: int, limit: int) -> list[MyItemRow]:
        ids = self._my_item_ids(resident_id)
        item_id = _ITEMS.c.id
        following = exists().where(Follow.resident_id == resident_id, Follow.item_id == item_id)
        supporting = exists().where(Support.resident_id == resident_id, Support.item_id == item_id)
        commented = exists().where(Comment.resident_id == resident_id, Comment.item_id == item_id)
        stmt = (
            select(*_ITEM_COLUMNS, following, supporting, commented)
            .where(item_id.in_(select(ids.c[0])))
            .order_by(_ITEMS.c.key)
            .offset(offset)
            .limit(limit)
        )
        n = len(_ITEM_COLUMNS)
        return [
            MyItemRow(ItemRecord(*row[:n]), bool(row[n]), bool(row[n + 1]), bool(row[n + 2]))
            for row in await self.session.execute(stmt)
        ]

    async def move(self, source_id: int, target_id: int) -> None:
        """Merge: supports and follows of `source` go to `target`; someone who supported
        (or followed) both counts once. Counters are recounted from the rows; the hour
        buckets lose the source's supports of those who supported both (the target's row
        stays, the source's goes)."""
        also_target = aliased(Support)
        await HourlyCountRepository(self.session, SUPPORTS).add_rows(
            and_(
                Support.item_id == source_id,
                exists().where(
                    also_target.item_id == target_id,
                    also_target.resident_id == Support.resident_id,
                ),
            ),
            -1,
        )
        for model in (Support, Follow):
            rows = select(model.resident_id, literal(target_id), model.created_at).where(
                model.item_id == source_id
            )
            await self.session.execute(
                self._insert(model)
                .from_select(["resident_id", "item_id", "created_at"], rows)
                .on_conflict_do_nothing(index_elements=[model.resident_id, model.item_id])
            )
            await self.session.execute(delete(model).where(model.item_id == source_id))
        counted = (
            select(func.count()).where(Support.item_id == Item.id).correlate(Item).scalar_subquery()
        )
        following = (
            select(func.count()).where(Follow.item_id == Item.id).correlate(Item).scalar_subquery()
        )
        await self.session.execute(
            update(Item)
            .where(Item.id.in_((source_id, target_id)))
            .values(support_count=counted, follow_count=following)
            .execution_options(synchronize_session=False)
        )

    async def support_count(self, item_id: int) -> int:
        """The true number of supports (the counter on items must always equal it)."""
        stmt = select(func.count()).select_from(Support).where(Support.item_id == item_id)
        return (await self.session.execute(stmt)).scalar_one()


# --------------------------------------------------------------------------- comments


@dataclass(frozen=True)
class CommentRow:
    comment: Comment
    author: Resident
    item: Item


class ReviewMessages(Repository):
    """The moderators' copies of a review message (chat, message), of a comment or a
    proposal, so that every copy can be edited when someone decides."""

    async def _add_review_message(self, chat_id: int, message_id: int, **subject: int) -> None:
        stmt = (
            self._insert(ModerationMessage)
            .values(chat_id=chat_id, message_id=message_id, **subject)
            .on_conflict_do_nothing(
                index_elements=[ModerationMessage.chat_id, ModerationMessage.message_id]
            )
        )
        await self.session.execute(stmt)

    async def _review_messages(self, subject: Any, subject_id: int) -> list[tuple[int, int]]:
        stmt = select(ModerationMessage.chat_id, ModerationMessage.message_id).where(
            subject == subject_id
        )
        return [(c, m) for c, m in (await self.session.execute(stmt))]


class CommentRepository(ReviewMessages):
    async def add(self, resident_id: int, item_id: int, text: str) -> int:
        """A pending comment; its id. (Core: the ORM's add and flush cost three times
        as much, for an object nobody reads.)"""

        def build() -> Any:
            table = Comment.__table__
            return (
                self._insert(table)
                .values(
                    resident_id=bindparam("p_resident"),
                    item_id=bindparam("p_item"),
                    text=bindparam("p_text"),
                    status="pending",
                    created_at=bindparam("p_now"),
                )
                .returning(table.c.id)
            )

        stmt = self._prebuilt("comments.add", build)
        params = {"p_resident": resident_id, "p_item": item_id, "p_text": text, "p_now": utcnow()}
        return int((await self.session.execute(stmt, params)).scalar_one())

    def _with_author(self) -> Select[Comment, Resident, Item]:
        return (
            select(Comment, Resident, Item)
            .join(Resident, Comment.resident_id == Resident.id)
            .join(Item, Comment.item_id == Item.id)
        )

    async def get(self, comment_id: int) -> CommentRow | None:
        row = (
            await self.session.execute(self._with_author().where(Comment.id == comment_id))
        ).first()
        return CommentRow(*row) if row else None

    async def decide(
        self, comment_id: int, approve: bool, moderator_id: int, moderator_name: str
    ) -> bool:
        """Approve or reject a pending comment. Returns False when it was decided already
        (the first decision wins, whatever the order of concurrent presses)."""
        status = "approved" if approve else "rejected"
        result = await self.session.execute(
            update(Comment)
            .where(Comment.id == comment_id, Comment.status == "pending")
            .values(
                status=status,
                decided_at=utcnow(),
                decided_by_telegram_id=moderator_id,
                decided_by_name=moderator_name[:64],
            )
            .returning(Comment.item_id, Comment.created_at)
        )
        row = result.one_or_none()
        if row is None:
            return False
        item_id, written = row
        if approve:
            await self.session.execute(
                update(Item).where(Item.id == item_id).values(comment_count=Item.comment_count + 1)
            )
            await HourlyCountRepository(self.session, APPROVED_COMMENTS).add_one(written)
        return True

    async def count_approved(self, item_id: int) -> int:
        stmt = select(func.count()).where(Comment.item_id == item_id, Comment.status == "approved")
        return (await self.session.execute(stmt)).scalar_one()

    async def approved(self, item_id: int, offset: int, limit: int) -> list[CommentRow]:
        stmt = (
            self._with_author()
            .where(Comment.item_id == item_id, Comment.status == "approved")
            .order_by(Comment.created_at.desc(), Comment.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return [CommentRow(*row) for row in (await self.session.execute(stmt))]

    async def count_pending(self) -> int:
        stmt = select(func.count()).where(Comment.status == "pending")
        return (await self.session.execute(stmt)).scalar_one()

    async def pending(self, limit: int) -> list[CommentRow]:
        stmt = (
            self._with_author()
            .where(Comment.status == "pending")
            .order_by(Comment.created_at, Comment.id)
            .limit(limit)
        )
        return [CommentRow(*row) for row in (await self.session.execute(stmt))]

    async def add_moderation_message(self, comment_id: int, chat_id: int, message_id: int) -> None:
        await self._add_review_message(chat_id, message_id, comment_id=comment_id)

    async def moderation_messages(self, comment_id: int) -> list[tuple[int, int]]:
        return await self._review_messages(ModerationMessage.comment_id, comment_id)


# --------------------------------------------------------------------------- conversations


class ConversationRepository(Repository):
    async def get(self, resident_id: int) -> ConversationState | None:
        return await self.session.get(ConversationState, resident_id)

    async def _upsert(self, resident_id: int, **values: Any) -> None:
        """Insert or update the resident's row with these columns (and updated_at)."""
        values["updated_at"] = utcnow()
        columns = sorted(values)

        def build() -> Any:
            placeholders: dict[str, Any] = {c: bindparam(f"p_{c}") for c in columns}
            table = ConversationState.__table__
            insert = self._insert(table).values(resident_id=bindparam("p_resident"), **placeholders)
            return insert.on_conflict_do_update(
                index_elements=[table.c.resident_id],
                set_={c: getattr(insert.excluded, c) for c in columns},
            )

        stmt = self._prebuilt(f"conversations.upsert.{','.join(columns)}", build)
        params = {f"p_{c}": v for c, v in values.items()}
        await self.session.execute(stmt, {"p_resident": resident_id, **params})

    async def set_awaiting(self, resident_id: int, awaiting: str, payload: dict[str, Any]) -> None:
        await self._upsert(resident_id, awaiting=awaiting, payload=payload)

    async def take_awaiting(self, resident_id: int, awaiting: str) -> dict[str, Any] | None:
        """Consume what we waited for — atomically, so that the same message delivered
        twice at once is taken only once."""
        stmt = self._prebuilt(
            "conversations.take_awaiting",
            lambda: (
                update(_STATES)
                .where(
                    _STATES.c.resident_id == bindparam("p_resident"),
                    _STATES.c.awaiting == bindparam("p_awaiting"),
                )
                # Only `awaiting` is cleared: RETURNING gives the row after the update.
                .values(awaiting=None, updated_at=bindparam("p_now"))
                .returning(_STATES.c.payload)
            ),
        )
        params = {"p_resident": resident_id, "p_awaiting": awaiting, "p_now": utcnow()}
        row = (await self.session.execute(stmt, params)).first()
        if row is None:
            return None
        return dict(row[0] or {})

    async def clear_awaiting(self, resident_id: int) -> bool:
        stmt = (
            update(ConversationState)
            .where(
                ConversationState.resident_id == resident_id,
                ConversationState.awaiting.is_not(None),
            )
            .values(awaiting=None, updated_at=utcnow())
            .returning(ConversationState.resident_id)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def set_last_search(self, resident_id: int, query: str) -> None:
        await self._upsert(resident_id, last_search=query)
