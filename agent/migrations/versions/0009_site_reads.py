"""site_reads: reads, re-applies and resolve steps run by a site's worker for a process without its credentials

Revision ID: 0009_site_reads
Revises: 0008_audit_outbox
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009_site_reads"
down_revision: str | None = "0008_audit_outbox"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "site_reads",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("site", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("action_id", sa.String(length=36), nullable=True),
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("target_kind", sa.String(length=20), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("cause", sa.String(length=80), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("owner", sa.String(length=80), nullable=False),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["action_id"], ["actions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("site_reads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_site_reads_site"), ["site"], unique=False)
        batch_op.create_index(batch_op.f("ix_site_reads_action_id"), ["action_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_site_reads_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("site_reads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_site_reads_state"))
        batch_op.drop_index(batch_op.f("ix_site_reads_action_id"))
        batch_op.drop_index(batch_op.f("ix_site_reads_site"))
    op.drop_table("site_reads")
