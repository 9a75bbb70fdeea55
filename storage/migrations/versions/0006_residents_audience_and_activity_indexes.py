"""residents: indexes for the digest audience (digest_enabled, blocked_at) and for counting
active residents (last_seen_on, telegram_id)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 12:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("residents", schema=None) as batch_op:
        batch_op.create_index(
            "ix_residents_digest_enabled_blocked_at", ["digest_enabled", "blocked_at"], unique=False
        )
        batch_op.create_index(
            "ix_residents_last_seen_on_telegram_id", ["last_seen_on", "telegram_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("residents", schema=None) as batch_op:
        batch_op.drop_index("ix_residents_last_seen_on_telegram_id")
        batch_op.drop_index("ix_residents_digest_enabled_blocked_at")
