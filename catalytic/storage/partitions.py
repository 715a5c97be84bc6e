"""Monthly range partitions of the PostgreSQL ``deliveries`` table (keyed on ``created_at``, float epoch seconds)."""

from __future__ import annotations

import datetime as dt
import logging

from catalytic.storage.database import Database

__all__ = ["MONTHS_AHEAD", "ensure_month_partitions", "month_bounds", "month_partition_sql"]

logger = logging.getLogger(__name__)

MONTHS_AHEAD = 3


def month_bounds(year: int, month: int) -> tuple[float, float]:
    """Epoch seconds of the first instant of ``year-month`` (UTC) and of the month after it."""
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
    return start.timestamp(), end.timestamp()


def _months_from(now: float, count: int) -> list[tuple[int, int]]:
    moment = dt.datetime.fromtimestamp(now, tz=dt.UTC)
    months = []
    year, month = moment.year, moment.month
    for _ in range(count):
        months.append((year, month))
        year, month = year + month // 12, month % 12 + 1
    return months


def month_partition_sql(table: str, year: int, month: int) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for the partition of ``table`` holding rows created in ``year-month``."""
    start, end = month_bounds(year, month)
    return (
        f"CREATE TABLE IF NOT EXISTS {table}_y{year:04d}m{month:02d} PARTITION OF {table} "
        f"FOR VALUES FROM ({start!r}) TO ({end!r})"
    )


def partition_statements(table: str, now: float, months_ahead: int = MONTHS_AHEAD) -> list[str]:
    """The statements creating the partitions of the current month and ``months_ahead`` months after it."""
    return [month_partition_sql(table, y, m) for y, m in _months_from(now, months_ahead + 1)]


async def ensure_month_partitions(
    db: Database, now: float, *, table: str = "deliveries", months_ahead: int = MONTHS_AHEAD
) -> int:
    """Create the partitions of the current month and the next ``months_ahead`` ones, where missing.

    Parameters
    ----------
    db : Database
        An open database; on SQLite nothing is done (the table is not partitioned there).
    now : float
        The current time, epoch seconds.
    table : str
        The partitioned table.
    months_ahead : int
        How many months after the current one get a partition.

    Returns
    -------
    int
        The number of partitions that could not be created (rows for that month already sit in the default
        partition); 0 when every month is covered.

    Examples
    --------
    >>> month_bounds(2026, 12)
    (1796083200.0, 1798761600.0)
    """
    if db.dialect != "postgresql":
        return 0
    failures = 0
    for sql in partition_statements(table, now, months_ahead):
        try:
            await db.execute(sql)
        except Exception as exc:  # a month already present in the default partition: keep going, report it
            failures += 1
            logger.warning("could not create a partition of %s: %s", table, exc)
    return failures
