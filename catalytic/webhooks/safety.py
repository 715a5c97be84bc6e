"""Where webhooks may be sent: http(s) URLs whose every address is publicly routable, or allow-listed.

The check runs when an endpoint is registered and again right before each connection; the sender then
connects to the very address it checked, so a DNS answer that changes in between (rebinding) cannot redirect
a delivery to a private address. Numeric host spellings that the C resolver accepts (``2130706433``,
``0177.0.0.1``, ``0x7f.1``) are read the same way here, so they cannot slip past as "names".
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

from catalytic.errors import InvalidInputError

__all__ = [
    "IPAddress",
    "IPNetwork",
    "Resolver",
    "UnresolvableHostError",
    "UnsafeURLError",
    "check_address",
    "parse_numeric_host",
    "resolve_allowed",
    "split_url",
    "system_resolver",
    "validate_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

ALLOWED_SCHEMES = ("http", "https")
MAX_URL_LENGTH = 2048
_NUMERIC_PART = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_METADATA = {
    ipaddress.ip_address("169.254.169.254"): "cloud metadata (AWS, GCP, Azure, OpenStack)",
    ipaddress.ip_address("169.254.170.2"): "cloud metadata (AWS ECS)",
    ipaddress.ip_address("fd00:ec2::254"): "cloud metadata (AWS IPv6)",
    ipaddress.ip_address("100.100.100.200"): "cloud metadata (Alibaba)",
    ipaddress.ip_address("192.0.0.192"): "cloud metadata (Oracle)",
}


class UnsafeURLError(InvalidInputError):
    """A webhook URL that is malformed, not http(s), or points at an address that is not allowed."""

    def __init__(self, message: str, allowed: str = "an http(s) URL of a publicly routable host") -> None:
        super().__init__("url", message, allowed)


class UnresolvableHostError(UnsafeURLError):
    """The URL's host has no address right now (which may pass: the sender retries it)."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, through the operating system's resolver (in a thread).

    Parameters
    ----------
    host : str
        A DNS name.
    port : int
        The port the addresses are for.

    Returns
    -------
    list of str
        Unique addresses in resolver order.

    Raises
    ------
    OSError
        When the name does not resolve.

    Examples
    --------
    >>> "127.0.0.1" in asyncio.run(system_resolver("localhost", 80))  # doctest: +SKIP
    True
    """
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def parse_numeric_host(host: str) -> IPAddress | None:
    """The address a numeric host names, reading IPv4 the way ``inet_aton`` does; None for a DNS name.

    Raises
    ------
    UnsafeURLError
        When the host is numeric but not a valid address (e.g. ``0999.1``), or an IPv6 address with a zone.

    Examples
    --------
    >>> str(parse_numeric_host("2130706433")), str(parse_numeric_host("0177.1")), str(parse_numeric_host("0x7f.0.0.1"))
    ('127.0.0.1', '127.0.0.1', '127.0.0.1')
    >>> parse_numeric_host("example.com") is None
    True
    """
    if ":" in host:
        if "%" in host:
            raise UnsafeURLError("an IPv6 address with a zone id is not allowed")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise UnsafeURLError(f"{host!r} is not a valid IPv6 address") from exc
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMERIC_PART.match(p) for p in parts):
        return None
    try:
        values = [int(p, 16) if p.lower().startswith("0x") else int(p, 8) if len(p) > 1 and p[0] == "0" else int(p)
                  for p in (p if p.lower() != "0x" else "0x0" for p in parts)]  # fmt: skip
    except ValueError as exc:
        raise UnsafeURLError(f"{host!r} is a malformed numeric address") from exc
    # inet_aton: a.b.c.d, a.b.c (c is 16 bits), a.b (b is 24 bits), a (32 bits).
    last_bits = 32 - 8 * (len(values) - 1)
    if any(v > 255 for v in values[:-1]) or values[-1] >= 1 << last_bits:
        raise UnsafeURLError(f"{host!r} is a malformed numeric address")
    number = values[-1]
    for index, value in enumerate(values[:-1]):
        number |= value << (24 - 8 * index)
    return ipaddress.IPv4Address(number)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:
        return ipaddress.IPv4Address(int(address))  # the deprecated IPv4-compatible form ::a.b.c.d
    return None


def check_address(address: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why ``address`` may not receive webhooks, or None when it may.

    Parameters
    ----------
    address : IPv4Address or IPv6Address
        A resolved address.
    allowed : sequence of networks
        Networks exempt from the refusal (``WEBHOOK_ALLOW_CIDRS``).

    Returns
    -------
    str or None
        A short reason (``"loopback"``, ``"private"``, ...), or None.

    Examples
    --------
    >>> check_address(ipaddress.ip_address("10.1.2.3"))
    'private'
    >>> check_address(ipaddress.ip_address("127.0.0.1"), [ipaddress.ip_network("127.0.0.1/32")]) is None
    True
    """
    if any(address.version == net.version and address in net for net in allowed):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        inner = _embedded_ipv4(address)
        if inner is not None:
            reason = check_address(inner, allowed)
            if reason is not None:
                return f"{reason} (embedded in IPv6)"
    if address in _METADATA:
        return _METADATA[address]
    for reason, flag in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("unspecified", address.is_unspecified),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
    ):
        if flag:
            return reason
    if not address.is_global:
        return "not publicly routable"
    return None


def split_url(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of a webhook URL, after the syntax checks.

    Raises
    ------
    UnsafeURLError
        When the URL is too long, not http(s), has no host, carries credentials or a bad port.

    Examples
    --------
    >>> split_url("https://hooks.example.com/x")
    ('https', 'hooks.example.com', 443)
    """
    if not isinstance(url, str) or not url:
        raise UnsafeURLError("is empty")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURLError(f"is {len(url)} characters long", f"at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise UnsafeURLError("contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURLError(f"is malformed: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeURLError(f"scheme {parts.scheme!r} is not allowed", "http or https")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURLError("must not carry credentials (user:password@)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeURLError("has no host")
    return scheme, host, port if port is not None else (443 if scheme == "https" else 80)


async def resolve_allowed(
    host: str,
    port: int,
    allowed: Sequence[IPNetwork] = (),
    resolver: Resolver = system_resolver,
    *,
    timeout: float | None = None,
) -> list[IPAddress]:
    """Resolve ``host`` and return its addresses, refusing the lot when any one of them is not allowed.

    Raises
    ------
    UnresolvableHostError
        When the host does not resolve (within ``timeout`` seconds, if given).
    UnsafeURLError
        When it resolves to a forbidden address.
    """
    numeric = parse_numeric_host(host)
    if numeric is not None:
        addresses: list[IPAddress] = [numeric]
    else:
        try:
            async with asyncio.timeout(timeout):
                answers = await resolver(host, port)
        except TimeoutError as exc:
            raise UnresolvableHostError(f"resolving host {host!r} timed out") from exc
        except OSError as exc:
            raise UnresolvableHostError(f"host {host!r} does not resolve ({exc.__class__.__name__})") from exc
        addresses = []
        for answer in answers:
            try:
                addresses.append(ipaddress.ip_address(str(answer).split("%", 1)[0]))
            except ValueError as exc:
                raise UnsafeURLError(f"host {host!r} resolved to a malformed address") from exc
        if not addresses:
            raise UnresolvableHostError(f"host {host!r} resolves to no address")
    for address in addresses:
        reason = check_address(address, allowed)
        if reason is not None:
            raise UnsafeURLError(
                f"host {host!r} resolves to {address} ({reason})",
                "an http(s) URL of a publicly routable host, or a network in WEBHOOK_ALLOW_CIDRS",
            )
    return addresses


async def validate_url(
    url: str, allowed: Sequence[IPNetwork] = (), resolver: Resolver = system_resolver, *, timeout: float | None = None
) -> str:
    """Check a webhook URL at registration: syntax, scheme, and every address its host resolves to.

    Parameters
    ----------
    url : str
        The endpoint URL.
    allowed : sequence of networks
        Networks exempt from the private-address refusal.
    resolver : async callable
        ``(host, port) -> addresses``; the system resolver by default.
    timeout : float, optional
        Seconds the lookup may take.

    Returns
    -------
    str
        The URL, unchanged.

    Raises
    ------
    UnsafeURLError
        With ``field == "url"`` and the reason.

    Examples
    --------
    >>> async def public(host: str, port: int) -> list[str]:
    ...     return ["93.184.215.14"]
    >>> asyncio.run(validate_url("https://example.com/hook", resolver=public))
    'https://example.com/hook'
    """
    _, host, port = split_url(url)
    await resolve_allowed(host, port, allowed, resolver, timeout=timeout)
    return url
