"""The webhook metrics, on prometheus-client's default registry.

``catalytic worker`` serves them on its own port (:mod:`catalytic.webhooks.health`); ``catalytic serve`` exposes
them with its own when it runs the worker in-process. The gauges read the deliveries table, which every worker
reads alike: the rules take their maximum over workers, never their sum. Under prometheus-client's
multiprocess mode the latest reading wins (``mostrecent``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "DELIVERIES_TOTAL",
    "DELIVERY_DURATION_SECONDS",
    "ENDPOINTS_DISABLED_TOTAL",
    "EVENT_TO_DELIVERY_SECONDS",
    "OLDEST_DUE_WAIT_SECONDS",
    "OLDEST_PENDING_AGE_SECONDS",
    "OUTCOMES",
    "QUEUE_SIZE",
]

OUTCOMES = ("succeeded", "retry", "failed", "dead", "refused")

DELIVERIES_TOTAL = Counter(
    "webhook_deliveries",
    "Delivery attempts by outcome: succeeded, retry (will be retried), failed (not retryable), dead (out of "
    "attempts), refused (the address was not allowed at connect time).",
    ["outcome"],
)
DELIVERY_DURATION_SECONDS = Histogram(
    "webhook_delivery_duration_seconds",
    "Wall time of one delivery attempt, from connect to the end of the response.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0),
)
EVENT_TO_DELIVERY_SECONDS = Histogram(
    "webhook_event_to_delivery_seconds",
    "Time from an event being recorded to its receiver acknowledging it, for successful deliveries (retries included).",
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0, 36000.0, 86400.0),
)
QUEUE_SIZE = Gauge("webhook_queue_size", "Pending deliveries that are due now.", multiprocess_mode="mostrecent")
OLDEST_PENDING_AGE_SECONDS = Gauge(
    "webhook_oldest_pending_delivery_age_seconds",
    "Age of the oldest pending delivery since its event (retries waiting for their time included); 0 when none.",
    multiprocess_mode="mostrecent",
)
OLDEST_DUE_WAIT_SECONDS = Gauge(
    "webhook_oldest_due_delivery_wait_seconds",
    "How long the longest-waiting delivery that is due and unclaimed has been due: how far the workers are behind "
    "their schedule; 0 when none waits.",
    multiprocess_mode="mostrecent",
)
ENDPOINTS_DISABLED_TOTAL = Counter(
    "webhook_endpoints_disabled", "Endpoints disabled automatically (410 Gone, or failing for too long)."
)
