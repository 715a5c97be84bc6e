"""Refusing cross-site requests: a checked ``Host``, a checked ``Origin``, JSON bodies only.

A service on a loopback address is still reachable from every web page its user opens: a page can POST to
``http://127.0.0.1:8080`` (a "simple" request, sent without a CORS preflight when its body is ``text/plain`` or a
form), and a host name the attacker controls can be re-pointed at 127.0.0.1 (DNS rebinding), after which the
browser treats the service as the attacker's own origin. :class:`CrossSiteMiddleware` closes both doors before
any route (or the API-key check) runs:

* ``Host``: outside the allow-list (``CATALYTIC_ALLOWED_HOSTS``; loopback names by default when keyless) → 403.
  A rebound name arrives with the attacker's host name in ``Host``.
* ``Origin``: a state-changing request (POST, PUT, PATCH, DELETE) whose ``Origin`` is neither the service's own
  nor listed in ``CORS_ALLOW_ORIGINS`` → 403, before anything is read or written. Browsers send ``Origin`` on
  every cross-origin request of these methods; clients that are not browsers send none and pass.
* ``Content-Type``: a request body that is not JSON (``application/json`` or ``application/*+json``) → 415, so
  no form or ``text/plain`` body, the kinds a page may send without a preflight, is ever parsed.

Starlette's CORS middleware, added by the app when ``CORS_ALLOW_ORIGINS`` is set, only adds the headers that let
a listed origin's page read the answers; it refuses nothing by itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request

from catalytic.service.errors import Forbidden, ServiceError, UnsupportedMediaType, exception_handlers

__all__ = ["STATE_CHANGING", "CrossSiteMiddleware", "host_name", "is_json"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BINARY_BODIES = {"/api/arrays": frozenset({"application/x-npy", "application/octet-stream"})}
"""The routes that take a body other than JSON, and its media types (neither is one a cross-site form can send)."""


def host_name(host: str) -> str:
    """The name of a ``Host`` header or an origin's netloc, without port or IPv6 brackets, lower case.

    Examples
    --------
    >>> host_name("LocalHost:8080"), host_name("[::1]:8080"), host_name("::1")
    ('localhost', '::1', '::1')
    """
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


def is_json(content_type: str) -> bool:
    """Whether a ``Content-Type`` names JSON: ``application/json`` or ``application/<anything>+json``.

    Examples
    --------
    >>> is_json("application/json; charset=utf-8"), is_json("application/problem+json"), is_json("text/plain")
    (True, True, False)
    """
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def _has_body(headers: dict[bytes, bytes]) -> bool:
    length = headers.get(b"content-length")
    if length is not None:
        return length.strip() not in (b"", b"0")
    return b"transfer-encoding" in headers


class CrossSiteMiddleware:
    """ASGI middleware answering 403 to a foreign ``Host`` or ``Origin`` and 415 to a body that is not JSON.

    Parameters
    ----------
    app : ASGI app
    allowed_hosts : tuple of str, or None
        ``Host`` names served (lower case, no port); None serves any host.
    allowed_origins : tuple of str
        Origins (``scheme://host[:port]``, lower case) that may send state-changing requests besides the
        service's own; ``*`` allows any.
    """

    def __init__(self, app: Any, allowed_hosts: tuple[str, ...] | None, allowed_origins: tuple[str, ...]) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        self._hosts = None if allowed_hosts is None else frozenset(allowed_hosts)
        self.allowed_origins = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        handlers = exception_handlers()
        # The service's own handler renders the refusal, so it has the body every other error has.
        handler = next(handlers[kind] for kind in type(refusal).__mro__ if kind in handlers)
        response = await handler(request, refusal)
        await response(scope, receive, send)

    def refusal(self, scope: Scope) -> ServiceError | None:
        """The error a request is refused with, or None when it may go on."""
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        if self._hosts is not None and host and host_name(host) not in self._hosts:
            return Forbidden(
                f"the host {host_name(host)!r} is not served here; list it in CATALYTIC_ALLOWED_HOSTS",
                fields=[
                    {"field": "Host", "message": "not an allowed host", "allowed": ", ".join(self.allowed_hosts or ())}
                ],
            )
        if scope["method"] not in STATE_CHANGING:
            return None
        origin = headers.get(b"origin")
        if origin is not None and not self._origin_allowed(origin.decode("latin-1"), host):
            return Forbidden(
                f"a {scope['method']} from the origin {origin.decode('latin-1')!r} is refused; "
                "list the origin in CORS_ALLOW_ORIGINS to allow it",
                fields=[{"field": "Origin", "message": "a foreign origin", "allowed": "this service's own origin"}],
            )
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        binary = content_type.partition(";")[0].strip().lower() in BINARY_BODIES.get(scope["path"], ())
        if _has_body(headers) and not is_json(content_type) and not binary:
            given = headers.get(b"content-type", b"").decode("latin-1") or "none"
            return UnsupportedMediaType(
                f"the body's media type is {given}; send JSON",
                fields=[{"field": "Content-Type", "message": given, "allowed": "application/json"}],
            )
        return None

    def _origin_allowed(self, origin: str, host: str) -> bool:
        normalised = origin.strip().lower().rstrip("/")
        if "*" in self.allowed_origins or normalised in self.allowed_origins:
            return True
        # The service's own pages (same scheme-less host and port as the request) are not cross-site.
        parts = urlsplit(normalised)
        return parts.scheme in ("http", "https") and bool(host) and parts.netloc == host.strip().lower()
