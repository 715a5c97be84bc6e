"""A lean HTTP/1.1 transport for httpx: h11 over asyncio streams, with keep-alive per checked address.

The worker sends many small POSTs to few hosts. httpcore's general-purpose pool costs 1 to 2.5 ms of CPU per
request on the benchmark machine, against 0.2 ms for the httpx client itself; this transport does the one
thing the worker needs (a request with a bytes body, one write per request, the response streamed back) and
keeps idle connections keyed by scheme, address, port and TLS server name, so a connection verified for one
name never carries a request for another.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import h11
import httpx

__all__ = ["DeliveryTransport"]

READ_CHUNK = 64 * 1024
DEFAULT_MAX_IDLE = 64

_Origin = tuple[str, str, int, str]


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    protocol: h11.Connection = field(default_factory=lambda: h11.Connection(our_role=h11.CLIENT))

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class _ResponseStream(httpx.AsyncByteStream):
    """The response body; hands the connection back for reuse when the exchange ended cleanly."""

    def __init__(self, transport: DeliveryTransport, origin: _Origin, connection: _Connection) -> None:
        self._transport = transport
        self._origin = origin
        self._connection: _Connection | None = connection
        self._complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        while True:
            event = await self._transport._next_event(connection)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._complete = True
                return

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._transport._release(self._origin, connection, reusable=self._complete)


class DeliveryTransport(httpx.AsyncBaseTransport):
    """An httpx transport for webhook deliveries (HTTP/1.1, http and https, keep-alive, no proxies).

    Parameters
    ----------
    ssl_context : ssl.SSLContext, optional
        For https; a default verifying context when omitted.
    connect_timeout : float
        Seconds to open a connection (TLS handshake included).
    max_idle : int
        Idle connections kept per origin.

    Examples
    --------
    >>> import httpx
    >>> client = httpx.AsyncClient(transport=DeliveryTransport(connect_timeout=5.0))
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 5.0,
        max_idle: int = DEFAULT_MAX_IDLE,
    ) -> None:
        self._ssl_context = ssl_context
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle
        self._idle: dict[_Origin, list[_Connection]] = {}

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context

    async def _connect(self, origin: _Origin, request: httpx.Request) -> _Connection:
        scheme, host, port, server_name = origin
        tls = {"ssl": self._ssl(), "server_hostname": server_name} if scheme == "https" else {}
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=READ_CHUNK, **tls)  # type: ignore[arg-type]
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}", request=request) from exc
        return _Connection(reader, writer)

    def _take_idle(self, origin: _Origin) -> _Connection | None:
        pool = self._idle.get(origin)
        while pool:
            connection = pool.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    def _release(self, origin: _Origin, connection: _Connection, *, reusable: bool) -> None:
        protocol = connection.protocol
        if reusable and protocol.our_state is h11.DONE and protocol.their_state is h11.DONE and connection.usable():
            protocol.start_next_cycle()
            pool = self._idle.setdefault(origin, [])
            if len(pool) < self._max_idle:
                pool.append(connection)
                return
        connection.close()

    async def _next_event(self, connection: _Connection) -> object:
        protocol = connection.protocol
        while True:
            try:
                event = protocol.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc)) from exc
            if event is h11.NEED_DATA:
                try:
                    data = await connection.reader.read(READ_CHUNK)
                except OSError as exc:
                    raise httpx.ReadError(f"{type(exc).__name__}: {exc}") from exc
                if not data and protocol.their_state is h11.SEND_RESPONSE:
                    raise httpx.RemoteProtocolError("the server closed the connection without a response")
                protocol.receive_data(data)
                continue
            return event

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the response with its body still to be streamed."""
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"scheme {scheme!r} is not supported", request=request)
        port = url.port or (443 if scheme == "https" else 80)
        server_name = str(request.extensions.get("sni_hostname") or url.host)
        origin: _Origin = (scheme, url.host, port, server_name)
        body = await request.aread()
        connection = self._take_idle(origin) or await self._connect(origin, request)
        try:
            protocol = connection.protocol
            target = url.raw_path
            headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"transfer-encoding"]
            if not any(k.lower() == b"content-length" for k, _ in headers):
                headers.append((b"content-length", str(len(body)).encode()))
            wire = protocol.send(h11.Request(method=request.method, target=target, headers=headers)) or b""
            if body:
                wire += protocol.send(h11.Data(data=body)) or b""
            wire += protocol.send(h11.EndOfMessage()) or b""
            # One write per request: a separate write for the body would wait on the peer's delayed ACK.
            connection.writer.write(wire)
            try:
                await connection.writer.drain()
            except OSError as exc:
                raise httpx.WriteError(f"{type(exc).__name__}: {exc}", request=request) from exc
            while True:
                event = await self._next_event(connection)
                if isinstance(event, h11.Response):
                    break
                if isinstance(event, h11.ConnectionClosed):
                    raise httpx.RemoteProtocolError("the server closed the connection without a response")
        except BaseException:
            connection.close()
            raise
        return httpx.Response(
            status_code=event.status_code,
            headers=[(bytes(k), bytes(v)) for k, v in event.headers],
            stream=_ResponseStream(self, origin, connection),
            extensions={"http_version": b"HTTP/" + bytes(event.http_version), "reason_phrase": bytes(event.reason)},
            request=request,
        )

    async def aclose(self) -> None:
        """Close every idle connection."""
        pools, self._idle = list(self._idle.values()), {}
        for pool in pools:
            for connection in pool:
                connection.close()
                with contextlib.suppress(OSError):
                    await connection.writer.wait_closed()
