"""The delivery transport: keep-alive, one request per write, clean failures mapped to httpx errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from servers import free_port

from catalytic.webhooks.receiver import LocalReceiver, ReceivedRequest, Reply
from catalytic.webhooks.transport import DeliveryTransport


@asynccontextmanager
async def client_and_receiver(
    respond: Callable[[ReceivedRequest], Reply] | None = None,
) -> AsyncIterator[tuple[httpx.AsyncClient, LocalReceiver]]:
    receiver = LocalReceiver(respond) if respond else LocalReceiver()
    await receiver.start()
    client = httpx.AsyncClient(transport=DeliveryTransport(connect_timeout=2), trust_env=False)
    try:
        yield client, receiver
    finally:
        await client.aclose()
        await receiver.close()


def test_keep_alive_reuses_one_connection() -> None:
    async def run() -> None:
        async with client_and_receiver(lambda r: Reply(200, body=r.body[::-1])) as (client, receiver):
            for index in range(5):
                answer = await client.post(receiver.url + f"/p?i={index}", content=b"abc")
                assert (answer.status_code, answer.content) == (200, b"cba")
            assert receiver.connections == 1
            assert [r.path for r in receiver.requests] == [f"/p?i={i}" for i in range(5)]
            assert receiver.requests[0].headers["content-length"] == "3"

    asyncio.run(run())


def test_a_connection_the_server_closes_is_not_reused() -> None:
    async def run() -> None:
        async with client_and_receiver(lambda r: Reply(204, {"connection": "close"})) as (client, receiver):
            for _ in range(3):
                assert (await client.post(receiver.url, content=b"x")).status_code == 204
                await asyncio.sleep(0.01)
            assert receiver.connections == 3

    asyncio.run(run())


def test_a_partly_read_response_closes_its_connection() -> None:
    async def run() -> None:
        async with client_and_receiver(lambda r: Reply(200, body=b"z" * 300_000)) as (client, receiver):
            async with client.stream("POST", receiver.url, content=b"x") as response:
                async for _ in response.aiter_bytes():
                    break
            answer = await client.post(receiver.url, content=b"x")
            assert len(answer.content) == 300_000
            assert receiver.connections == 2

    asyncio.run(run())


async def _serve_once(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> asyncio.Server:
    return await asyncio.start_server(handler, "127.0.0.1", 0)


def test_failures_map_to_httpx_errors() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    async def run() -> None:
        client = httpx.AsyncClient(transport=DeliveryTransport(connect_timeout=2), trust_env=False)
        servers = [await _serve_once(hang_up), await _serve_once(garbage)]
        try:
            with pytest.raises(httpx.ConnectError):
                await client.post(f"http://127.0.0.1:{free_port()}/", content=b"x")
            ports = [s.sockets[0].getsockname()[1] for s in servers]
            with pytest.raises(httpx.RemoteProtocolError, match="without a response"):
                await client.post(f"http://127.0.0.1:{ports[0]}/", content=b"x")
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post(f"http://127.0.0.1:{ports[1]}/", content=b"x")
            with pytest.raises(httpx.UnsupportedProtocol):
                await DeliveryTransport().handle_async_request(httpx.Request("POST", "ftp://127.0.0.1/"))
        finally:
            await client.aclose()
            for server in servers:
                server.close()
                await server.wait_closed()

    asyncio.run(run())
