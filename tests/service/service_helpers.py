"""Helpers of the service tests: an in-process app with its lifespan and an httpx client bound to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from catalytic.service.app import create_app
from catalytic.service.settings import Settings


class Service:
    """A running in-process app and a client bound to it."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    @property
    def state(self) -> Any:
        return self.app.state.service


async def start_service(settings: Settings, headers: dict[str, str] | None = None) -> AsyncIterator[Service]:
    """Run the app's lifespan around an httpx client on ASGITransport."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=headers) as client:
            yield Service(app, client)
