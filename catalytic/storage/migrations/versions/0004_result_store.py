"""Job results of any size: where an array result is kept, its digest and size, and when the result expires.

Revision ID: 0004_result_store
Revises: 0003_job_leases
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_result_store"
down_revision = "0003_job_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the array reference, digest, size and expiry columns to service_results."""
    # array_ref: "dir:NAME" or "s3://BUCKET/KEY" when the .npy lives in the results store (npy is then NULL).
    op.add_column("service_results", sa.Column("array_ref", sa.Text, nullable=True))
    op.add_column("service_results", sa.Column("array_sha256", sa.Text, nullable=True))
    op.add_column("service_results", sa.Column("array_bytes", sa.BigInteger, nullable=True))
    # Float epoch seconds; NULL for results written before this revision (their created_at + RESULT_TTL stands in).
    op.add_column("service_results", sa.Column("expires_at", sa.Float, nullable=True))
    op.create_index("ix_service_results_expires_at", "service_results", ["expires_at"])


def downgrade() -> None:
    """Drop the result store columns."""
    op.drop_index("ix_service_results_expires_at", table_name="service_results")
    op.drop_column("service_results", "expires_at")
    op.drop_column("service_results", "array_bytes")
    op.drop_column("service_results", "array_sha256")
    op.drop_column("service_results", "array_ref")
