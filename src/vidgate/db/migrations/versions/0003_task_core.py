"""task core: queues, surfaces, the task_events outbox, per-key in-flight counts; idempotency
replays re-render

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("in_flight_jobs", sa.Integer(), nullable=False, server_default="0")
        )
        batch.create_check_constraint(
            "ck_api_keys_in_flight_jobs_non_negative", "in_flight_jobs >= 0"
        )
    op.execute(
        "UPDATE api_keys SET in_flight_jobs = (SELECT count(*) FROM video_tasks "
        "WHERE video_tasks.api_key_id = api_keys.id "
        "AND video_tasks.status IN ('pending', 'processing'))"
    )
    with op.batch_alter_table("video_tasks") as batch:
        batch.add_column(
            sa.Column("surface", sa.String(16), nullable=False, server_default="apimall")
        )
        batch.add_column(
            sa.Column("queue", sa.String(64), nullable=False, server_default="default")
        )
        batch.drop_index("ix_video_tasks_due")
        batch.create_index("ix_video_tasks_queue_due", ["queue", "status", "run_after"])
    with op.batch_alter_table("video_tasks") as batch:
        batch.alter_column("surface", server_default=None)
        batch.alter_column("queue", server_default=None)
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(
            sa.Column("surface", sa.String(16), nullable=False, server_default="apimall")
        )
        batch.add_column(sa.Column("request_id", sa.String(40), nullable=True))
        batch.drop_column("response_body")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.alter_column("surface", server_default=None)
    op.create_table(
        "task_events",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(40), sa.ForeignKey("video_tasks.id"), nullable=False),
        sa.Column("account_id", BigIntPK, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_index("ix_task_events_task", "task_events", ["task_id", "id"])


def downgrade() -> None:
    op.drop_table("task_events")
    with op.batch_alter_table("idempotency_keys") as batch:
        batch.add_column(sa.Column("response_body", sa.JSON(), nullable=True))
        batch.drop_column("request_id")
        batch.drop_column("surface")
    with op.batch_alter_table("video_tasks") as batch:
        batch.drop_index("ix_video_tasks_queue_due")
        batch.create_index("ix_video_tasks_due", ["status", "run_after"])
        batch.drop_column("queue")
        batch.drop_column("surface")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint("ck_api_keys_in_flight_jobs_non_negative", type_="check")
        batch.drop_column("in_flight_jobs")
