"""accounts for resellers (states, admin keys, per-key budgets, model lists, expiry, audit log)
and result retention

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("status", sa.String(16), nullable=False, server_default="active")
        )
        batch.add_column(sa.Column("status_changed_at", Timestamp, nullable=True))
        batch.create_check_constraint(
            "ck_accounts_status", "status IN ('pending', 'active', 'suspended')"
        )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="user"))
        batch.add_column(sa.Column("expires_at", Timestamp, nullable=True))
        batch.add_column(sa.Column("allowed_models", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("budget_credits", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("budget_period", sa.String(8), nullable=True))
        batch.create_check_constraint("ck_api_keys_role", "role IN ('user', 'admin')")
        batch.create_check_constraint(
            "ck_api_keys_budget_period",
            "budget_period IS NULL OR budget_period IN ('day', 'month', 'total')",
        )
    op.create_table(
        "key_budget_spend",
        sa.Column(
            "api_key_id", BigIntPK, sa.ForeignKey("api_keys.id"), primary_key=True, nullable=False
        ),
        sa.Column("period_start", Timestamp, primary_key=True, nullable=False),
        sa.Column("spent", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("spent >= 0", name="ck_key_budget_spend_non_negative"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("actor_key_id", BigIntPK, sa.ForeignKey("api_keys.id"), nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=False),
        sa.Column("target_id", sa.String(64), nullable=False),
        sa.Column("account_id", BigIntPK, sa.ForeignKey("accounts.id"), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_audit_log_account_id", "audit_log", ["account_id"])
    with op.batch_alter_table("video_tasks") as batch:
        batch.add_column(sa.Column("files_expired_at", Timestamp, nullable=True))
        batch.add_column(sa.Column("budget_period_start", Timestamp, nullable=True))
    op.create_index("ix_video_tasks_completed_at", "video_tasks", ["completed_at"])


def downgrade() -> None:
    op.drop_index("ix_video_tasks_completed_at", "video_tasks")
    with op.batch_alter_table("video_tasks") as batch:
        batch.drop_column("budget_period_start")
        batch.drop_column("files_expired_at")
    op.drop_table("audit_log")
    op.drop_table("key_budget_spend")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint("ck_api_keys_budget_period", type_="check")
        batch.drop_constraint("ck_api_keys_role", type_="check")
        batch.drop_column("budget_period")
        batch.drop_column("budget_credits")
        batch.drop_column("allowed_models")
        batch.drop_column("expires_at")
        batch.drop_column("role")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_constraint("ck_accounts_status", type_="check")
        batch.drop_column("status_changed_at")
        batch.drop_column("status")
