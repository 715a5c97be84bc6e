"""Where webhooks may go: every spelling of a private address is refused, at registration and at connect time."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Sequence

import pytest

from catalytic.webhooks.safety import (
    UnresolvableHostError,
    UnsafeURLError,
    check_address,
    parse_numeric_host,
    split_url,
    validate_url,
)

PUBLIC = "93.184.215.14"


def resolver_for(table: dict[str, Sequence[str]]) -> Callable[[str, int], Awaitable[list[str]]]:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"no such host {host}")
        return list(table[host])

    return resolve


def check(url: str, table: dict[str, Sequence[str]] | None = None, allow: Sequence[str] = ()) -> str:
    networks = [ipaddress.ip_network(a) for a in allow]
    return asyncio.run(validate_url(url, networks, resolver_for(table or {})))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1/",
        "http://2130706433/",  # decimal
        "http://0177.0.0.1/",  # octal
        "http://017700000001/",  # octal, one part
        "http://0x7f000001/",  # hex
        "http://0x7f.0x0.0x0.0x1/",
        "http://10.0.0.1/",
        "http://0x0a.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.170.2/",
        "http://100.100.100.200/",
        "http://100.64.1.1/",
        "http://0.0.0.0/",
        "http://0/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://[::1]/",
        "http://[::]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[::127.0.0.1]/",
        "http://[64:ff9b::10.0.0.1]/",
        "http://[2002:c0a8:0101::1]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[fd00:ec2::254]/",
        "http://[ff02::1]/",
        "http://127.0.0.1.:8080/",
        "https://[0:0:0:0:0:0:0:1]:443/",
    ],
)
def test_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURLError) as info:
        check(url)
    assert info.value.field == "url"


@pytest.mark.parametrize(
    ("host", "answers"),
    [
        ("internal.example", ["10.1.2.3"]),
        ("rebind.example", [PUBLIC, "127.0.0.1"]),  # one bad answer spoils the lot
        ("v6.example", ["::1"]),
        ("meta.example", ["169.254.169.254"]),
        ("mapped.example", ["::ffff:192.168.0.1"]),
        ("zone.example", ["fe80::1%eth0"]),
    ],
)
def test_names_resolving_to_private_addresses_are_refused(host: str, answers: list[str]) -> None:
    with pytest.raises(UnsafeURLError, match="resolves to"):
        check(f"https://{host}/hook", {host: answers})


def test_public_names_and_addresses_pass() -> None:
    assert check("https://hooks.example/x?y=1", {"hooks.example": [PUBLIC, "2606:2800:220:1::1"]})
    assert check(f"http://{PUBLIC}:8080/")
    assert check("http://[2606:2800:220:1::1]/")


def test_allow_list_exempts_its_networks_only() -> None:
    assert check("http://127.0.0.1:9999/", allow=["127.0.0.1/32"])
    assert check("http://local.test/", {"local.test": ["127.0.0.1"]}, allow=["127.0.0.1/32"])
    with pytest.raises(UnsafeURLError):
        check("http://127.0.0.2/", allow=["127.0.0.1/32"])
    with pytest.raises(UnsafeURLError):
        check("http://[::1]/", allow=["127.0.0.1/32"])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://example.com/", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("http:///nohost", "no host"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://example.com:99999/", "malformed"),
        ("http://exa mple.com/", "whitespace"),
        ("http://example.com/\r\nX: y", "whitespace"),
        ("http://" + "a" * 3000 + ".com/", "characters long"),
        ("http://0999.1/", "malformed numeric"),
        ("http://[fe80::1%25eth0]/", "zone"),
        ("", "empty"),
    ],
)
def test_malformed_urls(url: str, message: str) -> None:
    with pytest.raises(UnsafeURLError, match=message):
        check(url)


def test_unresolvable_host_is_its_own_error() -> None:
    with pytest.raises(UnresolvableHostError, match="does not resolve"):
        check("https://nowhere.example/")
    with pytest.raises(UnresolvableHostError, match="no address"):
        check("https://empty.example/", {"empty.example": []})


def test_numeric_parsing_matches_inet_aton() -> None:
    import socket

    for host in ["127.0.0.1", "127.1", "2130706433", "0x7f.1", "0177.0.1", "1.2.3", "10.258", "0x0"]:
        parsed = parse_numeric_host(host)
        assert parsed is not None
        assert parsed.packed == socket.inet_aton(host), host
    assert parse_numeric_host("cafe.bad") is None
    assert parse_numeric_host("1.2.3.4.5") is None


def test_check_address_reasons() -> None:
    assert check_address(ipaddress.ip_address("127.0.0.1")) == "loopback"
    assert "metadata" in str(check_address(ipaddress.ip_address("169.254.169.254")))
    assert check_address(ipaddress.ip_address(PUBLIC)) is None
    assert split_url("HTTPS://Example.COM") == ("https", "example.com", 443)


def test_a_slow_lookup_times_out() -> None:
    async def hang(host: str, port: int) -> list[str]:
        await asyncio.sleep(10)
        return [PUBLIC]

    with pytest.raises(UnresolvableHostError, match="timed out"):
        asyncio.run(validate_url("https://slow.example/", resolver=hang, timeout=0.05))
