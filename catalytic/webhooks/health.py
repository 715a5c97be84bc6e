"""The delivery worker's own small HTTP port: ``/health``, ``/ready`` and ``/metrics``.

``catalytic worker`` runs in a pod of its own, so the orchestrator needs something to probe and Prometheus needs
something to scrape. ``/health`` answers 503 when a delivery loop has made no progress for longer than any
healthy round and idle wait can last (:meth:`Worker.stalled_for`), so a liveness probe restarts a worker whose
loop hangs, not only one whose process died. ``/ready`` answers 200 once the worker has a database and its
latest round reached it. ``/metrics`` serves the process's Prometheus registry (the webhook metrics).

The server is plain asyncio on the worker's own event loop: a loop blocked by anything stops answering, which
the liveness probe also catches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from catalytic.webhooks.worker import Worker

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "PATHS", "HealthServer"]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8081
"""The worker's probe and metrics port (``catalytic worker --port``)."""
DEFAULT_HOST = "127.0.0.1"
PATHS = ("/health", "/ready", "/metrics")
"""What the port serves (probes in manifests are checked against it)."""
_MAX_HEADER_LINES = 100
_READ_TIMEOUT_S = 5.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HealthServer:
    """Answers probes and scrapes for one worker; started before the worker has a database.

    Examples
    --------
    >>> async def serve_probes() -> None:
    ...     server = await HealthServer.start("127.0.0.1", 0)
    ...     await server.close()
    """

    def __init__(self, server: asyncio.Server) -> None:
        self._server = server
        self._worker: Worker | None = None

    @classmethod
    async def start(cls, host: str, port: int) -> HealthServer:
        """Bind ``host:port`` (port 0 picks a free one) and start answering.

        Raises
        ------
        OSError
            When the address cannot be bound.
        """
        holder: list[HealthServer] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await holder[0]._handle(reader, writer)

        server = await asyncio.start_server(handle, host, port)
        holder.append(cls(server))
        logger.info("worker probes and metrics on %s:%d", host, holder[0].port)
        return holder[0]

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.sockets[0].getsockname()[1])

    def attach(self, worker: Worker) -> None:
        """Report on ``worker`` from now on."""
        self._worker = worker

    async def close(self) -> None:
        """Stop answering."""
        self._server.close()
        await self._server.wait_closed()

    def _health(self) -> tuple[int, dict[str, Any]]:
        worker = self._worker
        if worker is None:
            return 200, {"status": "starting"}
        stalled = worker.stalled_for()
        limit = worker.stall_limit_s
        if stalled > limit:
            return 503, {"status": "stalled", "stalled_s": round(stalled, 1), "limit_s": limit}
        return 200, {"status": "ok", "stalled_s": round(stalled, 1), "limit_s": limit}

    def _ready(self) -> tuple[int, dict[str, Any]]:
        worker = self._worker
        ready = worker is not None and worker.last_round_ok
        return (200 if ready else 503), {"ready": ready}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                request_line = (await reader.readline()).decode("latin-1").split()
                for _ in range(_MAX_HEADER_LINES):
                    if (await reader.readline()) in (b"\r\n", b"\n", b""):
                        break
            method, target = [*request_line, "", ""][:2]
            path = target.split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                status, body, content_type = 405, b"", "text/plain"
            elif path == "/metrics":
                from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

                status, body, content_type = 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST
            elif path in ("/health", "/ready"):
                status, payload = self._health() if path == "/health" else self._ready()
                body, content_type = json.dumps(payload).encode(), "application/json"
            else:
                status, body, content_type = 404, b"", "text/plain"
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + (b"" if method == "HEAD" else body))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
