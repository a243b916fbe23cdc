"""intake_settings: switches every daemon on the database obeys (the automation brake)

Revision ID: 0005_intake_settings
Revises: 0004_notification_outbox
Create Date: 2026-12-04

One row per switch (``automation``: ``paused`` | ``running``) with who changed it, when and why; absent = running.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005_intake_settings"
down_revision: str | None = "0004_notification_outbox"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table("intake_settings",
                    sa.Column("key", sa.String(length=40), nullable=False),
                    sa.Column("value", sa.String(length=40), nullable=False),
                    sa.Column("changed_by", sa.String(length=200), nullable=False),
                    sa.Column("changed_at", sa.DateTime(), nullable=False),
                    sa.Column("reason", sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint("key"))


def downgrade() -> None:
    op.drop_table("intake_settings")
