"""burned-domain replacements: the tier's allowance and fee, burned/retired domains, requests

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Plain add_column calls and one new table: nothing batch-alters "provisions" (see 0006).

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tiers",
        sa.Column("replacements_included", sa.Integer(), nullable=False, server_default="1"),
    )
    op.add_column(
        "tiers",
        sa.Column("replacement_fee_cents", sa.Integer(), nullable=False, server_default="2900"),
    )
    op.add_column("domains", sa.Column("burned_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("domains", sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "domain_replacements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provision_id", sa.Integer(), nullable=False),
        sa.Column("old_domain_id", sa.Integer(), nullable=False),
        sa.Column("new_domain_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("payment", sa.String(length=16), nullable=False),
        sa.Column("fee_cents", sa.Integer(), nullable=False),
        sa.Column("stripe_invoice_id", sa.String(length=255), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column("run_epoch", sa.Integer(), server_default="0", nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending_payment', 'provisioning', 'completed', 'failed', 'cancelled')",
            name=op.f("ck_domain_replacements_status"),
        ),
        sa.CheckConstraint(
            "payment IN ('included', 'charged')", name=op.f("ck_domain_replacements_payment")
        ),
        sa.ForeignKeyConstraint(
            ["provision_id"],
            ["provisions.id"],
            name=op.f("fk_domain_replacements_provision_id_provisions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["old_domain_id"],
            ["domains.id"],
            name=op.f("fk_domain_replacements_old_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["new_domain_id"],
            ["domains.id"],
            name=op.f("fk_domain_replacements_new_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["requested_by_id"],
            ["users.id"],
            name=op.f("fk_domain_replacements_requested_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_replacements")),
        sa.UniqueConstraint("old_domain_id", name=op.f("uq_domain_replacements_old_domain_id")),
        sa.UniqueConstraint("new_domain_id", name=op.f("uq_domain_replacements_new_domain_id")),
        sa.UniqueConstraint(
            "stripe_invoice_id", name=op.f("uq_domain_replacements_stripe_invoice_id")
        ),
    )
    op.create_index("ix_domain_replacements_provision_id", "domain_replacements", ["provision_id"])


def downgrade() -> None:
    op.drop_index("ix_domain_replacements_provision_id", table_name="domain_replacements")
    op.drop_table("domain_replacements")
    op.drop_column("domains", "retired_at")
    op.drop_column("domains", "burned_at")
    op.drop_column("tiers", "replacement_fee_cents")
    op.drop_column("tiers", "replacements_included")
