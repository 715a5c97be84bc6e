"""Jobs claimed by capability: what a job wants (``gpu`` or ``cpu``), when any pod may take it, its device bytes,
where it ran and why; and the heartbeats that say which kinds of worker are alive.

A job whose ``owner`` is the empty string waits in the shared queue: no replica holds it, and the first worker
whose capability matches claims it (``catalytic.service.db.claim_shared_job``). Rows written before this
revision are ``cpu`` jobs held by their replica, as before.

Revision ID: 0006_job_capability
Revises: 0005_tenants
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_job_capability"
down_revision = "0005_tenants"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the capability columns and the claim index to service_jobs; create service_workers."""
    op.add_column("service_jobs", sa.Column("capability", sa.Text, nullable=False, server_default="cpu"))
    # Epoch seconds after which a CPU worker may take a gpu job; NULL: only a GPU worker ever may.
    op.add_column("service_jobs", sa.Column("cpu_after", sa.Float, nullable=True))
    op.add_column("service_jobs", sa.Column("device_bytes", sa.BigInteger, nullable=True))
    # JSON: {"wanted", "ran_on", "reason"}; ran_on is set when the job starts.
    op.add_column("service_jobs", sa.Column("placement", sa.Text, nullable=True))
    op.create_index("ix_service_jobs_claim", "service_jobs", ["status", "owner", "created_at"])
    op.create_table(
        "service_workers",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("capability", sa.Text, nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
    )
    op.create_index("ix_service_workers_seen", "service_workers", ["capability", "seen_at"])


def downgrade() -> None:
    """Drop service_workers, the claim index and the capability columns."""
    op.drop_index("ix_service_workers_seen", table_name="service_workers")
    op.drop_table("service_workers")
    op.drop_index("ix_service_jobs_claim", table_name="service_jobs")
    with op.batch_alter_table("service_jobs") as batch:
        batch.drop_column("placement")
        batch.drop_column("device_bytes")
        batch.drop_column("cpu_after")
        batch.drop_column("capability")
