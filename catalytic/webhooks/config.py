"""Settings of the webhook worker and management API, read once from the environment.

===========================  ==========================================  =======================================
variable                     meaning                                     default
===========================  ==========================================  =======================================
DATABASE_URL                 postgresql://... or sqlite:///path          unset: the SQLite file SQLITE_PATH
SQLITE_PATH                  the embedded database file                  catalytic.db
SQLITE_SYNCHRONOUS           SQLite's PRAGMA synchronous (FULL, NORMAL)  FULL
WEBHOOK_ALLOW_CIDRS          comma-separated networks exempt from the    none
                             private-address refusal
WEBHOOK_RETRY_SCHEDULE       seconds before each attempt, comma list     0,5,300,1800,7200,18000,36000,36000
WEBHOOK_RETRY_JITTER         +/- fraction applied to each delay          0.1
WEBHOOK_DISABLE_AFTER        seconds of continuous failure that disable  432000 (5 days)
                             an endpoint
WEBHOOK_MAX_PAYLOAD_BYTES    largest serialised event                    262144
WEBHOOK_MAX_ENDPOINTS_PER_   endpoints one tenant may register (403      50
TENANT                       quota_exceeded past it)
WEBHOOK_CONNECT_TIMEOUT      seconds to connect                          5
WEBHOOK_TOTAL_TIMEOUT        seconds for a whole attempt                 15
WEBHOOK_LEASE_SECONDS        how long a claimed delivery stays claimed   15
                             without a renewal (renewed every third of
                             it while its attempt runs)
WEBHOOK_BATCH_SIZE           deliveries claimed per round                100
WEBHOOK_CONCURRENCY          attempts in flight per round                64
WEBHOOK_ROUNDS_IN_FLIGHT     rounds a worker runs side by side           2
WEBHOOK_POLL_INTERVAL        first pause after a failed round (doubling  0.5
                             up to 5 s)
WEBHOOK_IDLE_MAX_S           longest idle wait without a wake-up or a    30
                             due retry (a safety net, not a poll)
REDIS_URL                    redis://... wake channel on SQLite (emits   unset: in-process wake-ups only
                             PUBLISH, workers SUBSCRIBE)
WEBHOOK_SECRET_GRACE         seconds an old secret keeps signing after   86400
                             rotation
===========================  ==========================================  =======================================
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "DEFAULT_RETRY_SCHEDULE",
    "MAX_RESPONSE_EXCERPT_BYTES",
    "WebhookConfig",
]

DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
DEFAULT_DISABLE_AFTER_S = 5 * 86400.0
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024
DEFAULT_SECRET_GRACE_S = 86400.0
DEFAULT_IDLE_MAX_S = 30.0
DEFAULT_LEASE_S = 15.0
MAX_RESPONSE_EXCERPT_BYTES = 16 * 1024
MAX_RETRY_AFTER_S = 86400.0


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class WebhookConfig(BaseSettings):
    """Typed, frozen webhook settings (see the module docstring for the variables).

    Examples
    --------
    >>> WebhookConfig(retry_schedule="0,1,2", allow_cidrs="127.0.0.1/32").retry_schedule
    (0.0, 1.0, 2.0)
    """

    model_config = SettingsConfigDict(env_prefix="WEBHOOK_", frozen=True, extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url"))
    sqlite_path: str = Field(default="catalytic.db", validation_alias=AliasChoices("SQLITE_PATH", "sqlite_path"))
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = Field(
        default="FULL",
        validation_alias=AliasChoices("CATALYTIC_SQLITE_SYNCHRONOUS", "SQLITE_SYNCHRONOUS", "sqlite_synchronous"),
    )
    allow_cidrs: Annotated[tuple[str, ...], NoDecode] = ()
    retry_schedule: Annotated[tuple[float, ...], NoDecode] = DEFAULT_RETRY_SCHEDULE
    retry_jitter: float = Field(default=0.1, ge=0.0, le=0.5)
    disable_after: float = Field(default=DEFAULT_DISABLE_AFTER_S, gt=0)
    max_payload_bytes: int = Field(default=DEFAULT_MAX_PAYLOAD_BYTES, ge=1024, le=16 * 2**20)
    connect_timeout: float = Field(default=5.0, gt=0, le=60)
    total_timeout: float = Field(default=15.0, gt=0, le=300)
    lease_seconds: float = Field(default=DEFAULT_LEASE_S, gt=0, le=3600)
    batch_size: int = Field(default=100, ge=1, le=10_000)
    concurrency: int = Field(default=64, ge=1, le=1024)
    rounds_in_flight: int = Field(default=2, ge=1, le=16)
    poll_interval: float = Field(default=0.5, gt=0, le=60)
    idle_max_s: float = Field(default=DEFAULT_IDLE_MAX_S, gt=0, le=3600)
    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL", "redis_url"))
    secret_grace: float = Field(default=DEFAULT_SECRET_GRACE_S, ge=0, le=30 * 86400)
    max_endpoints_per_tenant: int = Field(default=50, ge=1)

    @field_validator("redis_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("allow_cidrs", mode="before")
    @classmethod
    def _parse_cidrs(cls, value: Any) -> Any:
        cidrs = _split(value)
        for cidr in cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"WEBHOOK_ALLOW_CIDRS: {cidr!r} is not a network (allowed: e.g. 10.0.0.0/8)") from exc
        return tuple(cidrs)

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: Any) -> Any:
        delays = _split(value)
        if not delays:
            raise ValueError("WEBHOOK_RETRY_SCHEDULE: needs at least one delay (allowed: e.g. 0,5,300)")
        if len(delays) > 50:
            raise ValueError("WEBHOOK_RETRY_SCHEDULE: too many attempts (allowed: 1 to 50 delays)")
        try:
            parsed = tuple(float(d) for d in delays)
        except (TypeError, ValueError) as exc:
            raise ValueError("WEBHOOK_RETRY_SCHEDULE: delays are seconds (allowed: numbers >= 0)") from exc
        if any(d < 0 or d != d for d in parsed):
            raise ValueError("WEBHOOK_RETRY_SCHEDULE: delays are seconds (allowed: numbers >= 0)")
        return parsed

    @property
    def longest_round_s(self) -> float:
        """The longest a round's attempts can take: its batch in waves of ``concurrency``, each bounded by the
        total timeout. Leases are renewed while a round runs, so a lease may be shorter than this."""
        return -(-self.batch_size // self.concurrency) * self.total_timeout

    @property
    def max_attempts(self) -> int:
        """How many attempts a delivery gets before it is dead."""
        return len(self.retry_schedule)

    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The allow-listed networks, parsed."""
        return tuple(ipaddress.ip_network(c, strict=False) for c in self.allow_cidrs)
