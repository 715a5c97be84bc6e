"""A small local webhook receiver: an HTTP/1.1 server on loopback that records what it is sent.

It answers with whatever a ``respond`` function decides, which makes it the counterpart used to try the sender
locally (the tests and ``python -m bench webhooks`` use it). It is not a production HTTP server: it reads only
``Content-Length`` bodies and listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["LocalReceiver", "ReceivedRequest", "Reply", "ThreadedReceiver"]

MAX_BODY_BYTES = 8 * 2**20
_REASONS = {200: "OK", 204: "No Content", 302: "Found", 410: "Gone", 429: "Too Many Requests", 500: "Server Error"}


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as received: header names lower-cased, the body's exact bytes."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: float


@dataclass(frozen=True)
class Reply:
    """What the receiver answers."""

    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


Responder = Callable[[ReceivedRequest], Reply | Awaitable[Reply]]


def _accept_all(request: ReceivedRequest) -> Reply:
    return Reply()


class LocalReceiver:
    """An asyncio HTTP server that records requests and answers through ``respond``.

    Parameters
    ----------
    respond : callable, optional
        ``request -> Reply`` (or an awaitable of one); 204 No Content by default.
    host : str
        The address to listen on; loopback by default.
    port : int
        0 picks a free port.

    Examples
    --------
    >>> async def demo() -> int:
    ...     receiver = LocalReceiver()
    ...     await receiver.start()
    ...     try:
    ...         return receiver.port
    ...     finally:
    ...         await receiver.close()
    >>> asyncio.run(demo()) > 0
    True
    """

    def __init__(self, respond: Responder = _accept_all, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.respond = respond
        self.host = host
        self.port = port
        self.requests: list[ReceivedRequest] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The receiver's base URL."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen (on the running event loop)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            # Closed connections end their handlers normally; waiting for them keeps shutdown free of cancellations.
            if self._handlers:
                await asyncio.wait(list(self._handlers), timeout=5)
            await self._server.wait_closed()
            self._server = None

    async def _read_request(self, reader: asyncio.StreamReader) -> ReceivedRequest | None:
        line = await reader.readline()
        if not line:
            return None
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if length > MAX_BODY_BYTES:
            raise ValueError("body too large")
        body = await reader.readexactly(length) if length else b""
        return ReceivedRequest(method, path, headers, body, time.time())

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                reply = self.respond(request)
                if inspect.isawaitable(reply):
                    reply = await reply
                closing = "close" in (request.headers.get("connection", "").lower(), reply.headers.get("connection"))
                head = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}"]
                head += [f"{k}: {v}" for k, v in reply.headers.items() if k != "connection"]
                head += [
                    f"content-length: {len(reply.body)}",
                    "connection: close" if closing else "connection: keep-alive",
                ]
                writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + reply.body)
                await writer.drain()
                if closing:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


class ThreadedReceiver:
    """A :class:`LocalReceiver` on its own event loop in a background thread (for synchronous callers).

    Examples
    --------
    >>> with ThreadedReceiver() as receiver:
    ...     receiver.url.startswith("http://127.0.0.1:")
    True
    """

    def __init__(self, respond: Responder = _accept_all, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.receiver = LocalReceiver(respond, host=host, port=port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        """The receiver's base URL."""
        return self.receiver.url

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request received so far."""
        return self.receiver.requests

    def start(self) -> ThreadedReceiver:
        """Start the thread and listen."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.receiver.start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        """Stop listening and end the thread."""
        asyncio.run_coroutine_threadsafe(self.receiver.close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> ThreadedReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
