"""channels: per-provider slots of upstream jobs in flight, the channel's own cost per task

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channel_slots",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.CheckConstraint("in_flight >= 0", name="ck_channel_slots_non_negative"),
    )
    # Tasks already routed hold a slot of their channel, as the transitions will expect.
    op.execute(
        "INSERT INTO channel_slots (name, in_flight) SELECT channel, count(*) FROM video_tasks "
        "WHERE channel IS NOT NULL AND status IN ('pending', 'processing') GROUP BY channel"
    )
    with op.batch_alter_table("video_tasks") as batch:
        batch.add_column(sa.Column("channel_cost", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("video_tasks") as batch:
        batch.drop_column("channel_cost")
    op.drop_table("channel_slots")
