"""Service tables: lattices, uploaded arrays, jobs and job results.

Revision ID: 0002_service
Revises: 0001_webhooks
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_service"
down_revision = "0001_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the service tables."""
    op.create_table(
        "service_lattices",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("vertices", sa.BigInteger, nullable=False),
        sa.Column("open_vertices", sa.BigInteger, nullable=False),
        sa.Column("edges", sa.BigInteger, nullable=False),
        sa.Column("memory", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    # Arrays a user uploaded (packed mask bits, float64 weights), owned by a lattice or by a job's inline lattice.
    op.create_table(
        "service_arrays",
        sa.Column("owner_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "service_jobs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("lattice_id", sa.Text, nullable=True),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("backend", sa.Text, nullable=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("owner", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("has_array", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_service_jobs_status", "service_jobs", ["status"])
    op.create_table(
        "service_results",
        sa.Column("job_id", sa.Text, primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("npy", sa.LargeBinary, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    """Drop the service tables."""
    op.drop_table("service_results")
    op.drop_index("ix_service_jobs_status", table_name="service_jobs")
    op.drop_table("service_jobs")
    op.drop_table("service_arrays")
    op.drop_table("service_lattices")
