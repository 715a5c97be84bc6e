"""Job leases: the owning replica's lease expiry and the number of started attempts.

Revision ID: 0003_job_leases
Revises: 0002_service
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_job_leases"
down_revision = "0002_service"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the lease columns to service_jobs."""
    # Float epoch seconds; NULL on a queued job whose owner never renewed it (its created_at stands in).
    op.add_column("service_jobs", sa.Column("lease_expires_at", sa.Float, nullable=True))
    op.add_column("service_jobs", sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    """Drop the lease columns."""
    op.drop_column("service_jobs", "attempts")
    op.drop_column("service_jobs", "lease_expires_at")
