"""SQLAlchemy models: the single source of truth for the schema (Alembic migrates it)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import JSON

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ITEM_STATUSES = ("open", "in_review", "adopted", "in_progress", "done", "declined", "merged")
#: "hidden": reported by enough residents, waiting for a moderator's decision.
COMMENT_STATUSES = ("pending", "approved", "rejected", "hidden")
PROPOSAL_STATUSES = ("pending", "approved", "rejected")
GOAL_STATUSES = ("planned", "active", "paused", "done")
ROLES = ("admin", "moderator")
NOTE_MAX = 1000
NOTIFY_MODES = ("instant", "digest", "off")
BROADCAST_KINDS = ("digest", "announcement", "notification")
BROADCAST_STATES = ("scheduled", "pending", "running", "done", "cancelled")
RECIPIENT_STATES = ("pending", "sent", "failed", "skipped")
KEY_MAX = 32
COMMENT_MAX = 1000
DISPLAY_NAME_MAX = 32


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware datetimes, stored as UTC on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


#: A translated text: {"de": "...", "en": "..."}.
Translations = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, str]: Translations, dt.datetime: UTCDateTime}  # noqa: RUF012


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Resident(Base):
    """Any Telegram user of the bot. Only what the bot needs (see /privacy)."""

    __tablename__ = "residents"
    __table_args__ = (
        CheckConstraint("pseudonym > 0", name="pseudonym_positive"),
        CheckConstraint(
            f"display_name IS NULL OR length(display_name) BETWEEN 1 AND {DISPLAY_NAME_MAX}",
            name="display_name_length",
        ),
        CheckConstraint(_in("notify_mode", NOTIFY_MODES), name="notify_mode_known"),
        #: Who gets the digest (an index-only count instead of reading every resident).
        Index("ix_residents_digest_enabled_blocked_at", "digest_enabled", "blocked_at"),
        #: /stats' residents and active residents (covering), and the inactivity check.
        Index("ix_residents_last_seen_on_telegram_id", "last_seen_on", "telegram_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    telegram_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    language: Mapped[str] = mapped_column(String(8))
    pseudonym: Mapped[int] = mapped_column(Integer, unique=True)
    display_name: Mapped[str | None] = mapped_column(String(DISPLAY_NAME_MAX))
    digest_enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    #: How the resident hears about items they follow: right away (merged), only in the
    #: weekly digest, or not at all.
    notify_mode: Mapped[str] = mapped_column(String(16), server_default="instant")
    #: Set when Telegram told us the resident blocked the bot; we stop writing to them.
    blocked_at: Mapped[dt.datetime | None]
    #: Banned by a moderator: can still read, but not support, comment or propose.
    banned_at: Mapped[dt.datetime | None]
    #: When the resident was warned that their data will be deleted for inactivity.
    inactivity_warned_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_on: Mapped[dt.date | None] = mapped_column(Date)


class ActionField(Base):
    __tablename__ = "action_fields"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY_MAX), unique=True)
    title: Mapped[dict[str, str]]
    position: Mapped[int] = mapped_column(Integer, default=0)


class EventSession(Base):
    """One of the event week's session slots ("Veranstaltungsslot")."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY_MAX), unique=True)
    title: Mapped[dict[str, str]]
    summary: Mapped[dict[str, str] | None]
    location: Mapped[str | None] = mapped_column(String(200))
    starts_at: Mapped[dt.datetime] = mapped_column(index=True)
    ends_at: Mapped[dt.datetime]

    speakers: Mapped[list[Speaker]] = relationship(
        order_by="Speaker.position", cascade="all, delete-orphan", lazy="raise"
    )
    highlights: Mapped[list[Highlight]] = relationship(
        order_by="Highlight.position", cascade="all, delete-orphan", lazy="raise"
    )
    recordings: Mapped[list[Recording]] = relationship(
        order_by="Recording.position", cascade="all, delete-orphan", lazy="raise"
    )
    items: Mapped[list[Item]] = relationship(
        secondary="session_items", order_by="Item.key", lazy="raise", viewonly=True
    )

    __table_args__ = (CheckConstraint("ends_at >= starts_at", name="ends_after_start"),)


class Speaker(Base):
    __tablename__ = "speakers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[dict[str, str] | None]


class Highlight(Base):
    __tablename__ = "highlights"
    __table_args__ = (CheckConstraint("at_seconds IS NULL OR at_seconds >= 0", name="at_positive"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[dict[str, str]]
    at_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Recording(Base):
    __tablename__ = "recordings"
    __table_args__ = (
        CheckConstraint(
            "duration_seconds IS NULL OR duration_seconds >= 0", name="duration_positive"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[dict[str, str]]
    url: Mapped[str] = mapped_column(String(2000))
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SessionItem(Base):
    __tablename__ = "session_items"

    session_id: Mapped[int] = mapped_column(
        ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Item(Base):
    """One point of the to:DO list."""

    __tablename__ = "items"
    __table_args__ = (
        CheckConstraint(_in("status", ITEM_STATUSES), name="status_known"),
        CheckConstraint("support_count >= 0", name="support_count_positive"),
        CheckConstraint("comment_count >= 0", name="comment_count_positive"),
        CheckConstraint("follow_count >= 0", name="follow_count_positive"),
        Index("ix_items_support_count", "support_count"),
        Index("ix_items_comment_count", "comment_count"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY_MAX), unique=True)
    title: Mapped[dict[str, str]]
    description: Mapped[dict[str, str]]
    action_field_id: Mapped[int] = mapped_column(
        ForeignKey("action_fields.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    #: Denormalised counters, changed in the same transaction as the rows they count.
    support_count: Mapped[int] = mapped_column(Integer, server_default="0")
    comment_count: Mapped[int] = mapped_column(Integer, server_default="0")
    follow_count: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    #: Set when the item was merged into another one (status "merged").
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"))

    action_field: Mapped[ActionField] = relationship(lazy="raise", foreign_keys=[action_field_id])


class ItemSearchText(Base):
    """Normalised (case-folded, accents removed) title and description per language."""

    __tablename__ = "item_search"

    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    language: Mapped[str] = mapped_column(String(8), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)


class Support(Base):
    """One resident supports one item — at most once, the primary key says so."""

    __tablename__ = "supports"

    resident_id: Mapped[int] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    #: Indexed for counts per period (/stats per week, the digest).
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)


class HourlyCount:
    """How many of some rows were created in one UTC hour: /stats sums these instead of
    counting up to a million rows (a week is at most 169 rows here).

    Changed in the same transaction as the rows they count (storage.repositories'
    HourlyCountRepository), so `n` always equals the count of the rows whose `created_at`
    lies in [bucket_start, bucket_start + 1 hour). Hours because every period /stats counts
    over starts at a whole UTC hour: weeks start at local midnight in Europe/Berlin (UTC+1
    or UTC+2), which is always a whole UTC hour; a period's part outside whole hours (the
    current hour up to "now", or a zone with a half-hour offset) is counted from the rows.
    A bucket whose rows all went keeps n = 0."""

    #: The UTC hour (minutes, seconds and microseconds zero).
    bucket_start: Mapped[dt.datetime] = mapped_column(primary_key=True)
    n: Mapped[int] = mapped_column(Integer)


class SupportCount(HourlyCount, Base):
    """`supports` per hour given: support, withdraw (the hour it was given loses it), merge
    (who supported both counts once), account deletion."""

    __tablename__ = "support_counts"
    __table_args__ = (CheckConstraint("n >= 0", name="n_positive"),)


class ApprovedCommentCount(HourlyCount, Base):
    """Approved `comments` per hour written: approval, hiding and restoring after reports,
    deletion with an account."""

    __tablename__ = "approved_comment_counts"
    __table_args__ = (CheckConstraint("n >= 0", name="n_positive"),)


class ResidentCount(HourlyCount, Base):
    """`residents` per hour of their first contact (not the placeholder with Telegram id 0
    that keeps the comments of deleted accounts): creation, account deletion."""

    __tablename__ = "resident_counts"
    __table_args__ = (CheckConstraint("n >= 0", name="n_positive"),)


class Follow(Base):
    __tablename__ = "follows"

    resident_id: Mapped[int] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Comment(Base):
    __tablename__ = "comments"
    __table_args__ = (
        CheckConstraint(_in("status", COMMENT_STATUSES), name="status_known"),
        CheckConstraint(f"length(text) BETWEEN 1 AND {COMMENT_MAX}", name="text_length"),
        CheckConstraint(
            "(status = 'pending') = (decided_at IS NULL)", name="decided_iff_not_pending"
        ),
        Index("ix_comments_item_status_created", "item_id", "status", "created_at"),
        Index("ix_comments_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    resident_id: Mapped[int] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), index=True
    )
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[dt.datetime | None]
    #: The moderator who decided (staff), kept as a label for "decided by".
    decided_by_telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    decided_by_name: Mapped[str | None] = mapped_column(String(64))

    item: Mapped[Item] = relationship(lazy="raise")
    resident: Mapped[Resident] = relationship(lazy="raise")


class ModerationMessage(Base):
    """Where a pending comment was shown to moderators, so every copy can show the decision."""

    __tablename__ = "moderation_messages"
    __table_args__ = (
        UniqueConstraint("chat_id", "message_id"),
        CheckConstraint("(comment_id IS NULL) <> (proposal_id IS NULL)", name="one_subject"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    comment_id: Mapped[int | None] = mapped_column(
        ForeignKey("comments.id", ondelete="CASCADE"), index=True
    )
    proposal_id: Mapped[int | None] = mapped_column(
        ForeignKey("proposals.id", ondelete="CASCADE"), index=True
    )
    chat_id: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[int] = mapped_column(BigInteger)


class ConversationState(Base):
    """What the bot waits for from a resident ("the comment text for TD-07"), kept in the
    database so that a restart between the button and the text loses nothing."""

    __tablename__ = "conversation_states"

    resident_id: Mapped[int] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True
    )
    awaiting: Mapped[str | None] = mapped_column(String(32))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_search: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Broadcast(Base):
    """Something the bot sends to many people: a digest, an announcement, notifications.
    The audience is resolved into BroadcastRecipient rows when it starts."""

    __tablename__ = "broadcasts"
    __table_args__ = (
        CheckConstraint(_in("kind", BROADCAST_KINDS), name="kind_known"),
        CheckConstraint(_in("state", BROADCAST_STATES), name="state_known"),
        CheckConstraint(
            "total >= 0 AND sent >= 0 AND failed >= 0 AND skipped >= 0", name="counters_positive"
        ),
        Index("ix_broadcasts_state_due", "state", "scheduled_for"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    #: Telegram id of the moderator who asked for it (None: the scheduler).
    requested_by: Mapped[int | None] = mapped_column(BigInteger)
    audience: Mapped[dict[str, Any]] = mapped_column(JSON)
    template: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    #: Lower goes first: notifications, then announcements, then the digest.
    priority: Mapped[int] = mapped_column(Integer, server_default="1")
    #: Makes a periodic broadcast unique, e.g. "digest:2026-W48".
    period_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    scheduled_for: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    total: Mapped[int] = mapped_column(Integer, server_default="0")
    sent: Mapped[int] = mapped_column(Integer, server_default="0")
    failed: Mapped[int] = mapped_column(Integer, server_default="0")
    skipped: Mapped[int] = mapped_column(Integer, server_default="0")
    #: The moderator's progress message, edited while it runs.
    progress_chat_id: Mapped[int | None] = mapped_column(BigInteger)
    progress_message_id: Mapped[int | None] = mapped_column(BigInteger)


class BroadcastRecipient(Base):
    __tablename__ = "broadcast_recipients"
    __table_args__ = (
        CheckConstraint(_in("state", RECIPIENT_STATES), name="state_known"),
        Index("ix_broadcast_recipients_pending", "broadcast_id", "state", "resident_id"),
    )

    broadcast_id: Mapped[int] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True
    )
    resident_id: Mapped[int] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    chat_id: Mapped[int] = mapped_column(BigInteger)
    language: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    reason: Mapped[str | None] = mapped_column(String(200))
    sent_at: Mapped[dt.datetime | None]
    #: Per-recipient parameters (notifications: what happened on which items).
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class BroadcastAsset(Base):
    """A picture that goes with a broadcast (the digest chart), rendered once per language
    and uploaded once: afterwards Telegram's file_id is re-sent."""

    __tablename__ = "broadcast_assets"

    broadcast_id: Mapped[int] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True
    )
    language: Mapped[str] = mapped_column(String(8), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    file_id: Mapped[str | None] = mapped_column(String(200))


class NotificationEvent(Base):
    """Something happened on an item a resident follows. Pending events of one resident are
    merged into one message after a short delay (and outside quiet hours)."""

    __tablename__ = "notification_events"
    __table_args__ = (
        Index("ix_notification_events_pending", "broadcast_id", "created_at"),
        CheckConstraint("item_id IS NOT NULL OR goal_id IS NOT NULL", name="has_subject"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resident_id: Mapped[int] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), index=True
    )
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    goal_id: Mapped[int | None] = mapped_column(ForeignKey("goals.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    #: Set when the event was put into a notification broadcast.
    broadcast_id: Mapped[int | None] = mapped_column(
        ForeignKey("broadcasts.id", ondelete="SET NULL")
    )


class Lease(Base):
    """A named lease that one process holds at a time (e.g. "sender"), renewed while alive
    and taken over when it expires."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime]


#: What an item card shows besides the item itself, and which its cache depends on
#: (storage/repositories.py: ContentRepository.card_links).
CARD_CONTENT_TABLES = ("sessions", "session_items", "goals", "goal_items", "item_updates")


class ContentVersion(Base):
    """One row, counted up by database triggers (migration 0008) on every change to the
    tables in CARD_CONTENT_TABLES, in the changing transaction: a process that has cached
    what an item card links to knows from this number whether it still holds."""

    __tablename__ = "content_version"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class ProcessedUpdate(Base):
    """A Telegram update id that was handled: a redelivered update is not handled again."""

    __tablename__ = "processed_updates"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    #: When it was claimed (taken up for handling).
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    #: When its handling ended; a claim without it that is old was cut short by a crash.
    handled_at: Mapped[dt.datetime | None]


class ItemUpdate(Base):
    """A dated change of an item's status, with a note: the item card's history."""

    __tablename__ = "item_updates"
    __table_args__ = (
        CheckConstraint(_in("status", ITEM_STATUSES), name="status_known"),
        CheckConstraint(f"note IS NULL OR length(note) <= {NOTE_MAX}", name="note_length"),
        Index("ix_item_updates_item_created", "item_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    previous_status: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_telegram_id: Mapped[int | None] = mapped_column(BigInteger)


class Goal(Base):
    """What the InnoLab makes out of one or more items."""

    __tablename__ = "goals"
    __table_args__ = (
        CheckConstraint(_in("status", GOAL_STATUSES), name="status_known"),
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress_percent"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(KEY_MAX), unique=True)
    title: Mapped[dict[str, str]]
    description: Mapped[dict[str, str]]
    action_field_id: Mapped[int] = mapped_column(
        ForeignKey("action_fields.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), server_default="planned")
    progress: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class GoalItem(Base):
    __tablename__ = "goal_items"

    goal_id: Mapped[int] = mapped_column(
        ForeignKey("goals.id", ondelete="CASCADE"), primary_key=True
    )
    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Partner(Base):
    """An organisation in a goal's alliance."""

    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    goal_id: Mapped[int] = mapped_column(ForeignKey("goals.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[dict[str, str] | None]
    url: Mapped[str | None] = mapped_column(String(2000))


class Milestone(Base):
    __tablename__ = "milestones"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    goal_id: Mapped[int] = mapped_column(ForeignKey("goals.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[dict[str, str]]
    due_on: Mapped[dt.date | None] = mapped_column(Date)
    done: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class GoalUpdate(Base):
    """A dated progress update of a goal (percentage, status, note)."""

    __tablename__ = "goal_updates"
    __table_args__ = (
        CheckConstraint("progress IS NULL OR progress BETWEEN 0 AND 100", name="progress_percent"),
        CheckConstraint(f"note IS NULL OR length(note) <= {NOTE_MAX}", name="note_length"),
        Index("ix_goal_updates_goal_created", "goal_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    goal_id: Mapped[int] = mapped_column(ForeignKey("goals.id", ondelete="CASCADE"))
    progress: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_telegram_id: Mapped[int | None] = mapped_column(BigInteger)


class GoalFollow(Base):
    __tablename__ = "goal_follows"

    resident_id: Mapped[int] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True
    )
    goal_id: Mapped[int] = mapped_column(
        ForeignKey("goals.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class HelpOffer(Base):
    """ "I want to help": a resident offers to work on a goal, with an optional note."""

    __tablename__ = "help_offers"
    __table_args__ = (CheckConstraint("note IS NULL OR length(note) <= 500", name="note_length"),)

    resident_id: Mapped[int] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True
    )
    goal_id: Mapped[int] = mapped_column(
        ForeignKey("goals.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Proposal(Base):
    """A resident's own proposal for the to:DO list, reviewed like a comment."""

    __tablename__ = "proposals"
    __table_args__ = (
        CheckConstraint(_in("status", PROPOSAL_STATUSES), name="status_known"),
        CheckConstraint("length(title) BETWEEN 1 AND 120", name="title_length"),
        CheckConstraint("length(description) BETWEEN 1 AND 1000", name="description_length"),
        Index("ix_proposals_status_created", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    resident_id: Mapped[int] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text)
    action_field_id: Mapped[int | None] = mapped_column(
        ForeignKey("action_fields.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[dt.datetime | None]
    decided_by_telegram_id: Mapped[int | None] = mapped_column(BigInteger)
    decided_by_name: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    #: The item an approved proposal became.
    item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"))


class CommentReport(Base):
    """A resident reported an approved comment (once per resident and comment)."""

    __tablename__ = "comment_reports"

    comment_id: Mapped[int] = mapped_column(
        ForeignKey("comments.id", ondelete="CASCADE"), primary_key=True
    )
    resident_id: Mapped[int] = mapped_column(
        ForeignKey("residents.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Role(Base):
    """Moderators and promoted admins (the admins of ADMIN_IDS need no row)."""

    __tablename__ = "roles"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role_known"),)

    telegram_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    granted_by: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Who did what when: every moderator action."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    actor_telegram_id: Mapped[int] = mapped_column(BigInteger)
    actor_name: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
