"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from catalytic.service import defaults
from catalytic.service.state import service

__all__ = ["health", "ready"]


async def health(request: Request) -> Response:
    """GET /health: the process answers (touches nothing that could block)."""
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """GET /ready: 200 when the database answers and the job queue has room, else 503."""
    st = service(request)
    try:
        async with asyncio.timeout(defaults.READY_TIMEOUT_S):
            database = bool(await st.db.ping())
    except (TimeoutError, OSError):
        database = False
    redis = await st.cache.ping()
    capacity = st.runner.has_capacity()
    # Until the kernels are loaded a request could wait seconds for them: keep traffic away until then.
    warm = st.warm_up is None or st.warm_up.done()
    body = {
        "ready": database and capacity and warm,
        "database": database,
        "kernels_loaded": warm,
        "queue": {"pending": st.runner.pending, "limit": st.runner.max_queued},
        "cache": {"l1_lattices": len(st.lattices), "l1_results": len(st.cache.l1), "redis": redis},
    }
    headers = None if body["ready"] else {"Retry-After": str(st.settings.retry_after_s)}
    return JSONResponse(body, status_code=200 if body["ready"] else 503, headers=headers)
