"""parity: website forwarding, daily domain health, operator settings, capacity snapshots

Revision ID: 0010
Revises: 0007
Create Date: 2026-12-14 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Two plain add_column calls and new tables: nothing batch-alters "provisions" (whose SQLite
# trigger a batch would drop, see 0006). SQLite >= 3.35 drops a column in place on downgrade.

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("provisions", sa.Column("forward_to", sa.String(length=2048), nullable=True))
    op.add_column("domains", sa.Column("forwarded_to", sa.String(length=2048), nullable=True))
    op.create_table(
        "domain_health",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain_id", sa.Integer(), nullable=False),
        sa.Column("checked_on", sa.Date(), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("records", sa.JSON(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_domain_health_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_health")),
        sa.UniqueConstraint(
            "domain_id", "checked_on", name=op.f("uq_domain_health_domain_id_checked_on")
        ),
    )
    op.create_table(
        "operator_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("next_cohort_size", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_operator_settings_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_settings")),
    )
    op.create_table(
        "capacity_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("wallet_cents", sa.Integer(), nullable=True),
        sa.Column("slots_purchased", sa.Integer(), nullable=True),
        sa.Column("slots_free", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capacity_snapshots")),
    )
    op.create_index("ix_capacity_snapshots_taken_at", "capacity_snapshots", ["taken_at"])


def downgrade() -> None:
    op.drop_index("ix_capacity_snapshots_taken_at", table_name="capacity_snapshots")
    op.drop_table("capacity_snapshots")
    op.drop_table("operator_settings")
    op.drop_table("domain_health")
    op.drop_column("domains", "forwarded_to")
    op.drop_column("provisions", "forward_to")
