"""pipeline: statuses, goals, proposals, reports, roles, audit

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 07:26:17.370588
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import storage.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("actor_telegram_id", sa.BigInteger(), nullable=False),
        sa.Column("actor_name", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_created_at"), ["created_at"], unique=False)

    op.create_table(
        "roles",
        sa.Column("telegram_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("granted_by", sa.BigInteger(), nullable=True),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("role IN ('admin', 'moderator')", name=op.f("ck_roles_role_known")),
        sa.PrimaryKeyConstraint("telegram_id", name=op.f("pk_roles")),
    )
    op.create_table(
        "goals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column(
            "title",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "description",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("action_field_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="planned", nullable=False),
        sa.Column("progress", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('planned', 'active', 'paused', 'done')", name=op.f("ck_goals_status_known")
        ),
        sa.CheckConstraint("progress BETWEEN 0 AND 100", name=op.f("ck_goals_progress_percent")),
        sa.ForeignKeyConstraint(
            ["action_field_id"],
            ["action_fields.id"],
            name=op.f("fk_goals_action_field_id_action_fields"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_goals")),
        sa.UniqueConstraint("key", name=op.f("uq_goals_key")),
    )
    with op.batch_alter_table("goals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_goals_action_field_id"), ["action_field_id"], unique=False
        )

    op.create_table(
        "goal_follows",
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("goal_id", sa.Integer(), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["goal_id"],
            ["goals.id"],
            name=op.f("fk_goal_follows_goal_id_goals"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_goal_follows_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("resident_id", "goal_id", name=op.f("pk_goal_follows")),
    )
    with op.batch_alter_table("goal_follows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_goal_follows_goal_id"), ["goal_id"], unique=False)

    op.create_table(
        "goal_items",
        sa.Column("goal_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["goal_id"], ["goals.id"], name=op.f("fk_goal_items_goal_id_goals"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_goal_items_item_id_items"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("goal_id", "item_id", name=op.f("pk_goal_items")),
    )
    with op.batch_alter_table("goal_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_goal_items_item_id"), ["item_id"], unique=False)

    op.create_table(
        "goal_updates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("goal_id", sa.Integer(), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor_telegram_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "note IS NULL OR length(note) <= 1000", name=op.f("ck_goal_updates_note_length")
        ),
        sa.CheckConstraint(
            "progress IS NULL OR progress BETWEEN 0 AND 100",
            name=op.f("ck_goal_updates_progress_percent"),
        ),
        sa.ForeignKeyConstraint(
            ["goal_id"],
            ["goals.id"],
            name=op.f("fk_goal_updates_goal_id_goals"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_goal_updates")),
    )
    with op.batch_alter_table("goal_updates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_goal_updates_goal_created", ["goal_id", "created_at"], unique=False
        )

    op.create_table(
        "help_offers",
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("goal_id", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "note IS NULL OR length(note) <= 500", name=op.f("ck_help_offers_note_length")
        ),
        sa.ForeignKeyConstraint(
            ["goal_id"], ["goals.id"], name=op.f("fk_help_offers_goal_id_goals"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_help_offers_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("resident_id", "goal_id", name=op.f("pk_help_offers")),
    )
    with op.batch_alter_table("help_offers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_help_offers_goal_id"), ["goal_id"], unique=False)

    op.create_table(
        "item_updates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("previous_status", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("merged_into_id", sa.Integer(), nullable=True),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor_telegram_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'in_review', 'adopted', 'in_progress', 'done', 'declined', 'merged')",
            name=op.f("ck_item_updates_status_known"),
        ),
        sa.CheckConstraint(
            "note IS NULL OR length(note) <= 1000", name=op.f("ck_item_updates_note_length")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["items.id"],
            name=op.f("fk_item_updates_item_id_items"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["merged_into_id"],
            ["items.id"],
            name=op.f("fk_item_updates_merged_into_id_items"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item_updates")),
    )
    with op.batch_alter_table("item_updates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_item_updates_item_created", ["item_id", "created_at"], unique=False
        )

    op.create_table(
        "milestones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("goal_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column(
            "title",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("done", sa.Boolean(), server_default=sa.text("(false)"), nullable=False),
        sa.ForeignKeyConstraint(
            ["goal_id"], ["goals.id"], name=op.f("fk_milestones_goal_id_goals"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_milestones")),
    )
    with op.batch_alter_table("milestones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_milestones_goal_id"), ["goal_id"], unique=False)

    op.create_table(
        "partners",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("goal_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "description",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.ForeignKeyConstraint(
            ["goal_id"], ["goals.id"], name=op.f("fk_partners_goal_id_goals"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_partners")),
    )
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_partners_goal_id"), ["goal_id"], unique=False)

    op.create_table(
        "proposals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("action_field_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", storage.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_by_telegram_id", sa.BigInteger(), nullable=True),
        sa.Column("decided_by_name", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected')", name=op.f("ck_proposals_status_known")
        ),
        sa.CheckConstraint(
            "length(description) BETWEEN 1 AND 1000", name=op.f("ck_proposals_description_length")
        ),
        sa.CheckConstraint(
            "length(title) BETWEEN 1 AND 120", name=op.f("ck_proposals_title_length")
        ),
        sa.ForeignKeyConstraint(
            ["action_field_id"],
            ["action_fields.id"],
            name=op.f("fk_proposals_action_field_id_action_fields"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["items.id"], name=op.f("fk_proposals_item_id_items"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_proposals_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proposals")),
    )
    with op.batch_alter_table("proposals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_proposals_resident_id"), ["resident_id"], unique=False)
        batch_op.create_index("ix_proposals_status_created", ["status", "created_at"], unique=False)

    op.create_table(
        "comment_reports",
        sa.Column("comment_id", sa.Integer(), nullable=False),
        sa.Column("resident_id", sa.Integer(), nullable=False),
        sa.Column("created_at", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["comment_id"],
            ["comments.id"],
            name=op.f("fk_comment_reports_comment_id_comments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["resident_id"],
            ["residents.id"],
            name=op.f("fk_comment_reports_resident_id_residents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("comment_id", "resident_id", name=op.f("pk_comment_reports")),
    )
    with op.batch_alter_table("comment_reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_comment_reports_resident_id"), ["resident_id"], unique=False
        )

    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_items_merged_into_id_items"),
            "items",
            ["merged_into_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("moderation_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("proposal_id", sa.Integer(), nullable=True))
        batch_op.alter_column("comment_id", existing_type=sa.INTEGER(), nullable=True)
        batch_op.create_index(
            batch_op.f("ix_moderation_messages_proposal_id"), ["proposal_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_moderation_messages_proposal_id_proposals"),
            "proposals",
            ["proposal_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_check_constraint(
            op.f("ck_moderation_messages_one_subject"),
            "(comment_id IS NULL) <> (proposal_id IS NULL)",
        )

    with op.batch_alter_table("notification_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("goal_id", sa.Integer(), nullable=True))
        batch_op.alter_column("item_id", existing_type=sa.INTEGER(), nullable=True)
        batch_op.create_foreign_key(
            batch_op.f("fk_notification_events_goal_id_goals"),
            "goals",
            ["goal_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_check_constraint(
            op.f("ck_notification_events_has_subject"), "item_id IS NOT NULL OR goal_id IS NOT NULL"
        )

    with op.batch_alter_table("comments", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_comments_status_known"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_comments_status_known"),
            "status IN ('pending', 'approved', 'rejected', 'hidden')",
        )

    with op.batch_alter_table("residents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("banned_at", storage.models.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("comments", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_comments_status_known"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_comments_status_known"), "status IN ('pending', 'approved', 'rejected')"
        )

    with op.batch_alter_table("residents", schema=None) as batch_op:
        batch_op.drop_column("banned_at")

    with op.batch_alter_table("notification_events", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_notification_events_has_subject"), type_="check")
        batch_op.drop_constraint(
            batch_op.f("fk_notification_events_goal_id_goals"), type_="foreignkey"
        )
        batch_op.alter_column("item_id", existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column("goal_id")

    with op.batch_alter_table("moderation_messages", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_moderation_messages_one_subject"), type_="check")
        batch_op.drop_constraint(
            batch_op.f("fk_moderation_messages_proposal_id_proposals"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_moderation_messages_proposal_id"))
        batch_op.alter_column("comment_id", existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column("proposal_id")

    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_items_merged_into_id_items"), type_="foreignkey")
        batch_op.drop_column("merged_into_id")

    with op.batch_alter_table("comment_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_comment_reports_resident_id"))

    op.drop_table("comment_reports")
    with op.batch_alter_table("proposals", schema=None) as batch_op:
        batch_op.drop_index("ix_proposals_status_created")
        batch_op.drop_index(batch_op.f("ix_proposals_resident_id"))

    op.drop_table("proposals")
    with op.batch_alter_table("partners", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_partners_goal_id"))

    op.drop_table("partners")
    with op.batch_alter_table("milestones", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_milestones_goal_id"))

    op.drop_table("milestones")
    with op.batch_alter_table("item_updates", schema=None) as batch_op:
        batch_op.drop_index("ix_item_updates_item_created")

    op.drop_table("item_updates")
    with op.batch_alter_table("help_offers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_help_offers_goal_id"))

    op.drop_table("help_offers")
    with op.batch_alter_table("goal_updates", schema=None) as batch_op:
        batch_op.drop_index("ix_goal_updates_goal_created")

    op.drop_table("goal_updates")
    with op.batch_alter_table("goal_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_goal_items_item_id"))

    op.drop_table("goal_items")
    with op.batch_alter_table("goal_follows", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_goal_follows_goal_id"))

    op.drop_table("goal_follows")
    with op.batch_alter_table("goals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_goals_action_field_id"))

    op.drop_table("goals")
    op.drop_table("roles")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_created_at"))

    op.drop_table("audit_log")
