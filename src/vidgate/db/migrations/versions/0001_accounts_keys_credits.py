"""accounts, API keys and the credit ledger

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# INTEGER PRIMARY KEY auto-increments on SQLite; BIGINT identity on PostgreSQL.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.CheckConstraint("credits >= 0", name="ck_accounts_credits_non_negative"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("account_id", BigIntPK, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_preview", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("last_used_at", Timestamp, nullable=True),
        sa.Column("revoked_at", Timestamp, nullable=True),
        sa.Column("rate_limit_per_second", sa.Double(), nullable=True),
        sa.Column("max_concurrent_jobs", sa.Integer(), nullable=True),
    )
    op.create_index("ix_api_keys_account_id", "api_keys", ["account_id"])
    op.create_table(
        "credit_ledger",
        sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
        sa.Column("account_id", BigIntPK, sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("task_id", sa.String(40), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.CheckConstraint(
            "kind IN ('grant', 'debit', 'refund', 'adjust')", name="ck_credit_ledger_kind"
        ),
        sa.UniqueConstraint("task_id", "kind", name="uq_credit_ledger_task_kind"),
    )
    op.create_index("ix_credit_ledger_account_id", "credit_ledger", ["account_id"])


def downgrade() -> None:
    op.drop_table("credit_ledger")
    op.drop_table("api_keys")
    op.drop_table("accounts")
