"""What the webhook management routes answer, as pydantic models: the source of their part of the API document.

The routes build their answers from the store's views (:func:`catalytic.webhooks.store.endpoint_view` and the
delivery and event views); these models describe those answers field by field, and the tests hold each answer
against its model.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "Attempt",
    "Delivery",
    "DeliveryList",
    "EndpointList",
    "EndpointView",
    "EndpointWithSecret",
    "Event",
    "EventQueued",
    "Replayed",
    "ReplayedOne",
    "SecretRotated",
]


class EndpointView(BaseModel):
    """A registered endpoint, without its secrets."""

    id: str
    url: str
    description: str
    event_types: list[str] = Field(description="The event types sent to it; empty: every type.")
    enabled: bool
    disabled_reason: str | None
    disabled_at: float | None
    failing_since: float | None
    last_failure_at: float | None
    last_success_at: float | None
    created_at: float
    updated_at: float


class EndpointWithSecret(EndpointView):
    """A newly registered endpoint and its signing secret, shown this once."""

    secret: str = Field(description="The Standard Webhooks signing secret (whsec_...).")


class EndpointList(BaseModel):
    """One page of endpoints, oldest first."""

    endpoints: list[EndpointView]
    limit: int
    offset: int


class SecretRotated(BaseModel):
    """The new signing secret; the previous ones sign on until ``previous_secrets_expire_at``."""

    secret: str
    previous_secrets_expire_at: float


class EventQueued(BaseModel):
    """A test event was queued for the endpoint."""

    event_id: str


class Attempt(BaseModel):
    """One delivery attempt and its outcome."""

    attempt: int
    outcome: str
    status_code: int | None
    error: str | None
    response_excerpt: str | None
    duration_s: float
    created_at: float


class Delivery(BaseModel):
    """One event's delivery to one endpoint, with every attempt."""

    id: str
    event_id: str
    endpoint_id: str
    url: str
    event_type: str
    status: Literal["pending", "succeeded", "failed", "dead"]
    attempts: int
    next_attempt_at: float | None
    last_attempt_at: float | None
    last_status_code: int | None
    last_error: str | None
    response_excerpt: str | None
    delivered_at: float | None
    created_at: float
    updated_at: float
    attempt_log: list[Attempt]


class DeliveryList(BaseModel):
    """An endpoint's deliveries, newest first."""

    deliveries: list[Delivery]


class Event(BaseModel):
    """One event, its payload and its deliveries."""

    id: str
    type: str
    created_at: float
    payload: dict[str, Any]
    deliveries: list[Delivery]


class Replayed(BaseModel):
    """How many failed or dead deliveries were queued again."""

    replayed: int


class ReplayedOne(BaseModel):
    """One delivery was queued again."""

    replayed: int
    delivery_id: str
