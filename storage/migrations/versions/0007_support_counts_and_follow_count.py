"""support_counts (supports per UTC hour) and items.follow_count, both filled from the rows

/stats counted up to a million supports in 8 weekly ranges and 300,000 follows per item;
it now sums these aggregates, which every write of the rows keeps equal to them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 14:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.models

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The UTC hour of supports.created_at, as the column stores it (storage.repositories'
#: hour_bucket_sql at the time of this migration).
HOUR = {
    "postgresql": "timezone('UTC', date_trunc('hour', timezone('UTC', created_at)))",
    "sqlite": "substr(created_at, 1, 13) || ':00:00.000000'",
}


def upgrade() -> None:
    op.create_table(
        "support_counts",
        sa.Column("bucket_start", storage.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.CheckConstraint("n >= 0", name=op.f("ck_support_counts_n_positive")),
        sa.PrimaryKeyConstraint("bucket_start", name=op.f("pk_support_counts")),
    )
    if op.get_bind().dialect.name == "sqlite":
        # Not batch_alter_table: it would copy `items` into a new table and drop the old
        # one, and SQLite (foreign keys on, which cannot be switched off inside the
        # migration's transaction) deletes the supports, follows and comments of every
        # item with it (ON DELETE CASCADE). ADD COLUMN keeps the table, CHECK included.
        op.execute(
            "ALTER TABLE items ADD COLUMN follow_count INTEGER DEFAULT '0' NOT NULL"
            " CONSTRAINT ck_items_follow_count_positive CHECK (follow_count >= 0)"
        )
    else:
        op.add_column(
            "items", sa.Column("follow_count", sa.Integer(), server_default="0", nullable=False)
        )
        op.create_check_constraint(
            op.f("ck_items_follow_count_positive"), "items", "follow_count >= 0"
        )

    hour = HOUR[op.get_bind().dialect.name]
    op.execute(
        f"INSERT INTO support_counts (bucket_start, n)"
        f" SELECT {hour}, count(*) FROM supports GROUP BY {hour}"
    )
    op.execute(
        "UPDATE items SET follow_count ="
        " (SELECT count(*) FROM follows WHERE follows.item_id = items.id)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # DROP COLUMN, not a copy of the table (see upgrade).
        op.execute("ALTER TABLE items DROP COLUMN follow_count")
    else:
        op.drop_constraint(op.f("ck_items_follow_count_positive"), "items", type_="check")
        op.drop_column("items", "follow_count")
    op.drop_table("support_counts")
