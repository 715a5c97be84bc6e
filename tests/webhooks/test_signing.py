"""Standard Webhooks signatures, checked against the reference receiver library."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from catalytic.errors import InvalidInputError
from catalytic.webhooks.signing import SignatureError, generate_secret, sign, signed_headers, verify


def test_secret_format() -> None:
    for nbytes in (24, 32, 64):
        secret = generate_secret(nbytes)
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret[6:])) == nbytes
    assert generate_secret() != generate_secret()
    for bad in (23, 65):
        with pytest.raises(InvalidInputError, match="nbytes"):
            generate_secret(bad)


def test_known_vector() -> None:
    # HMAC-SHA256 over "id.timestamp.body" with the decoded key, base64 encoded.
    import hashlib
    import hmac

    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    expected = base64.b64encode(hmac.new(key, b'msg_1.1700000000.{"a":1}', hashlib.sha256).digest()).decode()
    assert sign(secret, "msg_1", 1700000000, b'{"a":1}') == "v1," + expected


def test_reference_receiver_accepts_our_signature() -> None:
    secret = generate_secret()
    body = '{"type":"job.succeeded","data":{"é":"ü"}}'.encode()
    headers = signed_headers([secret], "msg_abc", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == {"type": "job.succeeded", "data": {"é": "ü"}}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)


def test_rotation_signs_with_both_secrets() -> None:
    old, new = generate_secret(), generate_secret()
    body = b"{}"
    headers = signed_headers([new, old], "msg_r", int(time.time()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(body, headers) == {}
    assert Webhook(new).verify(body, headers) == {}


def test_own_verify() -> None:
    secret = generate_secret()
    headers = signed_headers([secret], "msg_v", 1000, b"x")
    verify(secret, headers, b"x", now=1100)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(secret, headers, b"x", now=2000)
    with pytest.raises(SignatureError, match="no signature"):
        verify(secret, headers, b"y", now=1000)
    with pytest.raises(SignatureError, match="missing"):
        verify(secret, {"webhook-id": "m"}, b"x", now=1000)


@pytest.mark.parametrize("bad", ["nope", "whsec_!!!", "whsec_" + base64.b64encode(b"short").decode()])
def test_malformed_secrets_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInputError, match="secret"):
        sign(bad, "m", 1, b"")
