"""The bytes of job results each tenant holds, kept as a running total instead of summed on every submission.

Counting TENANT_MAX_RESULT_BYTES summed ``LENGTH(body)`` over every result of the tenant, reading each body
(13,575 results of 1.1 kB took 35 ms per job submission on SQLite), so a busy tenant's submissions slowed down as
its results accumulated. Each result row now records ``held_bytes`` (its JSON body and its array, in the database
or in the store), and ``service_tenant_usage`` holds the sum per tenant, changed in the transaction that adds or
deletes a result. Both are filled from the rows already there.

Revision ID: 0007_result_usage
Revises: 0006_job_capability
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_result_usage"
down_revision = "0006_job_capability"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add service_results.held_bytes and service_tenant_usage, both filled from the existing results."""
    op.add_column("service_results", sa.Column("held_bytes", sa.BigInteger, nullable=False, server_default="0"))
    op.execute("UPDATE service_results SET held_bytes = LENGTH(body) + COALESCE(array_bytes, LENGTH(npy), 0)")
    op.create_table(
        "service_tenant_usage",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("result_bytes", sa.BigInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO service_tenant_usage (tenant, result_bytes) "
        "SELECT tenant, SUM(held_bytes) FROM service_results GROUP BY tenant"
    )


def downgrade() -> None:
    """Drop service_tenant_usage and service_results.held_bytes."""
    op.drop_table("service_tenant_usage")
    with op.batch_alter_table("service_results") as batch:
        batch.drop_column("held_bytes")
