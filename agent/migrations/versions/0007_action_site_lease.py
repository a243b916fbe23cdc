"""actions: site (the worker queue an action was routed to) and lease_until (a worker's claim, kept by heartbeat)

Revision ID: 0007_action_site_lease
Revises: 0006_console_operators
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007_action_site_lease"
down_revision: str | None = "0006_console_operators"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("site", sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_actions_site"), ["site"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_actions_site"))
        batch_op.drop_column("lease_until")
        batch_op.drop_column("site")
