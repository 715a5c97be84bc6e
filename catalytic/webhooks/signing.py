"""Standard Webhooks signatures: secrets, signing and verification.

A message is signed as ``v1,`` + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")) over the exact body bytes
sent; ``key`` is the base64-decoded part of a ``whsec_...`` secret. During a secret rotation the old and new
secrets both sign, and the ``webhook-signature`` header carries the signatures separated by spaces.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping

from catalytic.errors import InvalidInputError

__all__ = [
    "SECRET_PREFIX",
    "SignatureError",
    "generate_secret",
    "sign",
    "signature_header",
    "signed_headers",
    "verify",
]

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
DEFAULT_SECRET_BYTES = 32
DEFAULT_TOLERANCE_S = 300


class SignatureError(ValueError):
    """A webhook message whose headers are missing, stale, or whose signatures do not match."""


def generate_secret(nbytes: int = DEFAULT_SECRET_BYTES) -> str:
    """A fresh secret: ``whsec_`` + base64 of ``nbytes`` random bytes.

    Parameters
    ----------
    nbytes : int
        Random bytes in the key, 24 to 64.

    Returns
    -------
    str
        The secret, shown to the endpoint's owner once.

    Raises
    ------
    InvalidInputError
        When ``nbytes`` is out of range.

    Examples
    --------
    >>> generate_secret().startswith("whsec_")
    True
    """
    if not MIN_SECRET_BYTES <= nbytes <= MAX_SECRET_BYTES:
        raise InvalidInputError("nbytes", f"{nbytes} random bytes", f"{MIN_SECRET_BYTES} to {MAX_SECRET_BYTES}")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidInputError("secret", "must start with whsec_", "whsec_ + base64 of 24 to 64 bytes")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise InvalidInputError("secret", "is not valid base64", "whsec_ + base64 of 24 to 64 bytes") from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise InvalidInputError("secret", f"decodes to {len(key)} bytes", "whsec_ + base64 of 24 to 64 bytes")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message under one secret.

    Parameters
    ----------
    secret : str
        A ``whsec_...`` secret.
    msg_id : str
        The ``webhook-id`` header (the event id; the same on every retry).
    timestamp : int
        The ``webhook-timestamp`` header, integer epoch seconds of this attempt.
    body : bytes
        The exact body bytes sent.

    Returns
    -------
    str
        ``v1,`` followed by the base64 HMAC-SHA256.

    Raises
    ------
    InvalidInputError
        When the secret is malformed.

    Examples
    --------
    >>> sign("whsec_" + "A" * 32, "msg_1", 1700000000, b"{}")[:3]
    'v1,'
    """
    to_sign = msg_id.encode() + b"." + str(int(timestamp)).encode() + b"." + body
    digest = hmac.new(_key(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(active_secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per active secret, space-separated.

    Parameters
    ----------
    active_secrets : iterable of str
        The secrets signing now (the current one first, then those in a rotation's grace period).
    msg_id, timestamp, body
        As for :func:`sign`.

    Returns
    -------
    str

    Examples
    --------
    >>> len(signature_header(["whsec_" + "A" * 32, "whsec_" + "B" * 32], "m", 1, b"").split(" "))
    2
    """
    return " ".join(sign(s, msg_id, timestamp, body) for s in active_secrets)


def signed_headers(active_secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers plus the content type, for one attempt.

    Examples
    --------
    >>> sorted(signed_headers(["whsec_" + "A" * 32], "msg_1", 1700000000, b"{}"))
    ['content-type', 'webhook-id', 'webhook-signature', 'webhook-timestamp']
    """
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": signature_header(active_secrets, msg_id, timestamp, body),
    }


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, now: float, tolerance: float = DEFAULT_TOLERANCE_S
) -> None:
    """Check a received message the way a receiver does.

    Parameters
    ----------
    secret : str
        The receiver's ``whsec_...`` secret.
    headers : Mapping[str, str]
        The request headers (any case).
    body : bytes
        The raw request body.
    now : float
        The receiver's clock, epoch seconds.
    tolerance : float
        How far the message timestamp may be from ``now``.

    Raises
    ------
    SignatureError
        When a header is missing, the timestamp is outside the tolerance, or no signature matches.

    Examples
    --------
    >>> s = "whsec_" + "A" * 32
    >>> verify(s, signed_headers([s], "msg_1", 1700000000, b"{}"), b"{}", now=1700000001)
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent_at = int(timestamp)
    except ValueError as exc:
        raise SignatureError("webhook-timestamp is not an integer") from exc
    if abs(now - sent_at) > tolerance:
        raise SignatureError("webhook-timestamp is outside the tolerance")
    expected = sign(secret, msg_id, sent_at, body).encode()
    if not any(hmac.compare_digest(expected, candidate.encode()) for candidate in signatures.split(" ")):
        raise SignatureError("no signature matches")
