"""Webhooks: signed, durable, at-least-once notifications of what happened (jobs finishing, lattices changing).

::

    emit(conn, type, data)      the outbox: event + one pending delivery per subscribed endpoint, in the caller's
                                transaction (store.py)
    Worker / run_worker         claims due deliveries, signs and sends them, retries, disables (worker.py)
    announce / listen_*         wake idle workers: PostgreSQL NOTIFY, Redis PUBLISH, in-process (wakeup.py)
    routes / mount              the management API under /api/webhooks (api.py)
    sign / verify               Standard Webhooks signatures (signing.py)
    validate_url                where a webhook may go (safety.py)

The worker and the API import httpx and Starlette; import them from their modules.
"""

from __future__ import annotations

from catalytic.webhooks.config import WebhookConfig
from catalytic.webhooks.safety import UnsafeURLError, validate_url
from catalytic.webhooks.signing import generate_secret, sign, verify
from catalytic.webhooks.store import EVENT_TYPES, emit

__all__ = [
    "EVENT_TYPES",
    "UnsafeURLError",
    "WebhookConfig",
    "emit",
    "generate_secret",
    "sign",
    "validate_url",
    "verify",
]
