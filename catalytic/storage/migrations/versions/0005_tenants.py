"""Tenants: every lattice, job, result, webhook endpoint, event and delivery names its tenant; API keys held as
digests; the record of idempotent submissions.

Rows written before this revision belong to the implicit tenant, ``default``
(:data:`catalytic.tenancy.IMPLICIT_TENANT`), the tenant of a keyless service.

Revision ID: 0005_tenants
Revises: 0004_result_store
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_tenants"
down_revision = "0004_result_store"
branch_labels = None
depends_on = None

_TENANT_TABLES = (
    "service_lattices",
    "service_jobs",
    "service_results",
    "webhook_endpoints",
    "events",
    "deliveries",
)


def upgrade() -> None:
    """Add the tenant columns and their indexes, and create api_keys and service_idempotency."""
    for table in _TENANT_TABLES:
        # A constant default: PostgreSQL adds it without rewriting the table (deliveries' partitions included).
        op.add_column(table, sa.Column("tenant", sa.Text, nullable=False, server_default="default"))
    op.create_index("ix_service_lattices_tenant", "service_lattices", ["tenant", "id"])
    op.create_index("ix_service_jobs_tenant_status", "service_jobs", ["tenant", "status"])
    op.create_index("ix_service_results_tenant", "service_results", ["tenant"])
    op.create_index("ix_webhook_endpoints_tenant", "webhook_endpoints", ["tenant", "enabled"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        # SHA-256 (hex) of the key; the key itself is shown once, when it is made, and never stored.
        sa.Column("key_sha256", sa.Text, nullable=False, unique=True),
        sa.Column("label", sa.Text, nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_table(
        "service_idempotency",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("route", sa.Text, nullable=False),
        # SHA-256 of the route and the body as sent: the same key with another body is refused.
        sa.Column("request_sha256", sa.Text, nullable=False),
        # NULL while the first request with this key is still being answered.
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("body", sa.Text, nullable=True),
        sa.Column("location", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_service_idempotency_created_at", "service_idempotency", ["created_at"])


def downgrade() -> None:
    """Drop the tenant columns, api_keys and service_idempotency."""
    op.drop_index("ix_service_idempotency_created_at", table_name="service_idempotency")
    op.drop_table("service_idempotency")
    op.drop_table("api_keys")
    op.drop_index("ix_webhook_endpoints_tenant", table_name="webhook_endpoints")
    op.drop_index("ix_service_results_tenant", table_name="service_results")
    op.drop_index("ix_service_jobs_tenant_status", table_name="service_jobs")
    op.drop_index("ix_service_lattices_tenant", table_name="service_lattices")
    for table in reversed(_TENANT_TABLES):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tenant")
