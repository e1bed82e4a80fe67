"""sender profile: the names and picture a student set for every mailbox

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-14 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Only a new table: nothing here batch-alters "provisions" (see 0006 on its trigger).

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sender_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("provision_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), nullable=False),
        sa.Column("picture", sa.LargeBinary(), nullable=True),
        sa.Column("picture_sha256", sa.String(length=64), nullable=True),
        sa.Column("content_type", sa.String(length=32), nullable=True),
        sa.Column("picture_token", sa.String(length=64), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'applied', 'failed')", name=op.f("ck_sender_profiles_status")
        ),
        sa.ForeignKeyConstraint(
            ["provision_id"],
            ["provisions.id"],
            name=op.f("fk_sender_profiles_provision_id_provisions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sender_profiles")),
        sa.UniqueConstraint("picture_token", name=op.f("uq_sender_profiles_picture_token")),
        sa.UniqueConstraint("provision_id", name=op.f("uq_sender_profiles_provision_id")),
    )


def downgrade() -> None:
    op.drop_table("sender_profiles")
