"""Webhook tables: endpoints, events, deliveries (monthly partitions on PostgreSQL) and delivery attempts.

Revision ID: 0001_webhooks
Revises:
"""

from __future__ import annotations

import time

from alembic import op

from catalytic.storage.partitions import partition_statements

revision = "0001_webhooks"
down_revision = None
branch_labels = None
depends_on = None

_DELIVERY_COLUMNS = """
    id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    endpoint_url TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {real},
    lease_until {real},
    claimed_by TEXT,
    last_attempt_at {real},
    last_status_code INTEGER,
    last_error TEXT,
    response_excerpt TEXT,
    delivered_at {real},
    created_at {real} NOT NULL,
    updated_at {real} NOT NULL,
    CONSTRAINT deliveries_status_check CHECK (status IN ('pending', 'succeeded', 'failed', 'dead'))
"""


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    real = "DOUBLE PRECISION" if postgres else "REAL"
    op.execute(
        f"""
        CREATE TABLE webhook_endpoints (
            id TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            event_types TEXT NOT NULL DEFAULT '[]',
            secrets TEXT NOT NULL,
            enabled BOOLEAN NOT NULL DEFAULT TRUE,
            disabled_reason TEXT,
            disabled_at {real},
            first_failure_at {real},
            last_failure_at {real},
            last_success_at {real},
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX webhook_endpoints_enabled_idx ON webhook_endpoints (enabled)")
    op.execute(
        f"""
        CREATE TABLE events (
            id TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at {real} NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX events_type_idx ON events (type)")
    op.execute("CREATE INDEX events_created_at_idx ON events (created_at)")
    columns = _DELIVERY_COLUMNS.format(real=real)
    if postgres:
        # The partition key must be part of the primary key of a partitioned table.
        op.execute(f"CREATE TABLE deliveries ({columns}, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at)")
        op.execute("CREATE TABLE deliveries_default PARTITION OF deliveries DEFAULT")
        for statement in partition_statements("deliveries", time.time()):
            op.execute(statement)
    else:
        op.execute(f"CREATE TABLE deliveries ({columns}, PRIMARY KEY (id))")
    op.execute("CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'pending'")
    op.execute("CREATE INDEX deliveries_endpoint_url_idx ON deliveries (endpoint_url)")
    op.execute("CREATE INDEX deliveries_created_at_idx ON deliveries (created_at)")
    op.execute("CREATE INDEX deliveries_event_type_idx ON deliveries (event_type)")
    op.execute("CREATE INDEX deliveries_endpoint_idx ON deliveries (endpoint_id, created_at)")
    op.execute("CREATE INDEX deliveries_event_idx ON deliveries (event_id)")
    op.execute(
        f"""
        CREATE TABLE delivery_attempts (
            id TEXT PRIMARY KEY,
            delivery_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            endpoint_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            status_code INTEGER,
            error TEXT,
            response_excerpt TEXT,
            duration_s {real} NOT NULL,
            worker TEXT,
            created_at {real} NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX delivery_attempts_delivery_idx ON delivery_attempts (delivery_id, attempt)")
    op.execute("CREATE INDEX delivery_attempts_created_at_idx ON delivery_attempts (created_at)")


def downgrade() -> None:
    for table in ("delivery_attempts", "deliveries", "events", "webhook_endpoints"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
