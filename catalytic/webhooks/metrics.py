"""The webhook metrics, on prometheus-client's default registry (the service exposes them with its own)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "DELIVERIES_TOTAL",
    "DELIVERY_DURATION_SECONDS",
    "ENDPOINTS_DISABLED_TOTAL",
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
QUEUE_SIZE = Gauge("webhook_queue_size", "Pending deliveries that are due now.")
ENDPOINTS_DISABLED_TOTAL = Counter(
    "webhook_endpoints_disabled", "Endpoints disabled automatically (410 Gone, or failing for too long)."
)
