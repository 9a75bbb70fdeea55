"""hourly counts (supports, approved comments, residents per UTC hour) and
items.follow_count, all filled from the rows

/stats counted up to a million supports and 100,000 comments in 8 weekly ranges, 100,000
residents and 300,000 follows per item; it now sums these aggregates, which every write of
the rows keeps equal to them.

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

#: The UTC hour of a created_at column, as the column stores it (storage.repositories'
#: hour_bucket_sql at the time of this migration).
HOUR = {
    "postgresql": "timezone('UTC', date_trunc('hour', timezone('UTC', {column})))",
    "sqlite": "substr({column}, 1, 13) || ':00:00.000000'",
}
#: Each table: the rows it counts (table, condition).
COUNTED = {
    "support_counts": ("supports", "true"),
    "approved_comment_counts": ("comments", "status = 'approved'"),
    # Not the placeholder keeping the comments of deleted accounts.
    "resident_counts": ("residents", "telegram_id <> 0"),
}


def upgrade() -> None:
    for name in COUNTED:
        op.create_table(
            name,
            sa.Column("bucket_start", storage.models.UTCDateTime(timezone=True), nullable=False),
            sa.Column("n", sa.Integer(), nullable=False),
            sa.CheckConstraint("n >= 0", name=op.f(f"ck_{name}_n_positive")),
            sa.PrimaryKeyConstraint("bucket_start", name=op.f(f"pk_{name}")),
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

    hour = HOUR[op.get_bind().dialect.name].format(column="created_at")
    for name, (table, condition) in COUNTED.items():
        op.execute(
            f"INSERT INTO {name} (bucket_start, n)"
            f" SELECT {hour}, count(*) FROM {table} WHERE {condition} GROUP BY {hour}"
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
    for name in reversed(COUNTED):
        op.drop_table(name)
