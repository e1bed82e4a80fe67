"""pending availability checks: names waiting for a shared Zapmail call

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("paused_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_checks")),
    )
    with op.batch_alter_table("pending_checks", schema=None) as batch_op:
        batch_op.create_index("ix_pending_checks_requested_at", ["requested_at"], unique=False)
        batch_op.create_index("ix_pending_checks_token", ["token"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pending_checks", schema=None) as batch_op:
        batch_op.drop_index("ix_pending_checks_token")
        batch_op.drop_index("ix_pending_checks_requested_at")

    op.drop_table("pending_checks")
