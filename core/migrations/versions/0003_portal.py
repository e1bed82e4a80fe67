"""portal: wizard drafts, availability budget, subscription ordering, upgrade payments

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "wizard_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_wizard_drafts_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wizard_drafts")),
        sa.UniqueConstraint("user_id", "kind", name=op.f("uq_wizard_drafts_user_id_kind")),
    )
    op.create_table(
        "availability_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("called_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("name_count", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_availability_calls")),
    )
    with op.batch_alter_table("availability_calls", schema=None) as batch_op:
        batch_op.create_index("ix_availability_calls_called_at", ["called_at"], unique=False)

    with op.batch_alter_table("provisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subscription_status", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("stripe_event_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("heyreach_lead_count", sa.Integer(), nullable=True))

    with op.batch_alter_table("upgrades", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stripe_proration_invoice_id", sa.String(length=255), nullable=True)
        )
        batch_op.add_column(
            sa.Column("proration_paid_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("fee_paid_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_upgrades_stripe_proration_invoice_id"), ["stripe_proration_invoice_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("upgrades", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("uq_upgrades_stripe_proration_invoice_id"), type_="unique"
        )
        batch_op.drop_column("fee_paid_at")
        batch_op.drop_column("proration_paid_at")
        batch_op.drop_column("stripe_proration_invoice_id")

    with op.batch_alter_table("provisions", schema=None) as batch_op:
        batch_op.drop_column("heyreach_lead_count")
        batch_op.drop_column("stripe_event_at")
        batch_op.drop_column("subscription_status")

    with op.batch_alter_table("availability_calls", schema=None) as batch_op:
        batch_op.drop_index("ix_availability_calls_called_at")

    op.drop_table("availability_calls")
    op.drop_table("wizard_drafts")
