"""Uploaded arrays: explicit masks and weights too large for a JSON body, streamed to disk and named by digest.

``POST /api/arrays`` takes a ``.npy`` file (``Content-Type: application/x-npy``) or the raw little-endian
bytes of a C-order array (``application/octet-stream``, with ``dtype`` and ``shape`` as query parameters). The
body is read as it arrives (``request.stream()``), never whole: each piece is checked, hashed (SHA-256),
summarised (minimum, maximum, NaN, infinities, whether every value is 0 or 1) and written to a partial file,
which is renamed into place only once complete, flushed and checked. A body that fails, is too large or is
cut off leaves no file behind. The size limit (``CATALYTIC_MAX_UPLOAD_BYTES``) and the tenant's
``TENANT_MAX_RESULT_BYTES`` (results held plus arrays uploaded) are checked before reading, against the
``Content-Length`` and the size the array header declares, and again as the bytes arrive.

The stored form is always a ``.npy`` file: the upload itself, or for raw bytes the version 1.0 header NumPy
writes for that dtype and shape followed by the bytes. Its digest, ``sha256:<hex>``, is the SHA-256 of that
file, so it covers dtype and shape and a client can check it with ``sha256sum`` on what it downloads back. A
lattice spec names the array as ``{"array": "sha256:<hex>"}`` in ``blocked`` or ``weights``; the server
reads it by memory-mapping the file, so no process holds it twice, and the summary taken at upload time
stands for the values (an 800 MB weights file is never scanned again to check it).

Layout under ``ARRAYS_DIR`` (default ``RESULTS_DIR/arrays``, outside the results sweeper's reach)::

    <hex>.npy                 the array
    <hex>.json                its summary (:class:`ArrayInfo`)
    tenants/<key>/<hex>       one empty file per tenant that uploaded it (key: SHA-256 of the tenant's name)
    .locks/arrays             the lock file (``flock``) held while files appear or go

An array belongs to the tenants that uploaded it: another tenant's digest answers 404 exactly as an unknown
one does. Every replica must see the same directory (a shared volume) to use arrays uploaded to another.

A tenant's marker is touched whenever it uploads or uses the array (names it in a lattice, downloads it), so
its modification time is the tenant's last use. ``DELETE /api/arrays/{digest}`` removes the tenant's marker
(:meth:`ArrayStore.release`), refused while a stored lattice or an unfinished job of the tenant names the array,
since those read the file again whenever they are materialised; the file and its summary go once no marker is
left. :func:`sweep_arrays`, run by the results sweeper, deletes arrays whose every marker is older than
CATALYTIC_ARRAY_TTL_S and that no stored lattice or unfinished job names, and partial files older than an hour.
Placing a finished upload, releasing a marker and the sweep's deletions take an exclusive ``flock`` on
``.locks/arrays`` in the directory, so an upload never lands its marker beside a file that is being deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import io
import json
import math
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from starlette.requests import ClientDisconnect

from catalytic.errors import MaskError, WeightsError
from catalytic.lattice import check_weight_stats
from catalytic.service.errors import NotFound, PayloadTooLarge, QuotaExceeded, ServiceError
from catalytic.service.schemas import DIGEST_PATTERN

__all__ = [
    "DTYPES",
    "FIELD_DTYPES",
    "NPY_MEDIA_TYPE",
    "RAW_MEDIA_TYPE",
    "ArrayInfo",
    "ArrayStore",
    "UploadInterrupted",
    "arrays_dir",
    "load_uploaded",
    "named_digests",
    "open_references",
    "parse_shape",
    "reference",
    "referencing",
    "sweep_arrays",
]

NPY_MEDIA_TYPE = "application/x-npy"
RAW_MEDIA_TYPE = "application/octet-stream"
DTYPES = ("float64", "float32", "uint8", "bool")
"""Dtypes an uploaded array may have (little-endian where that matters)."""
FIELD_DTYPES: Mapping[str, tuple[str, ...]] = {"weights": ("float64", "float32", "uint8"), "blocked": ("bool", "uint8")}
"""The dtypes each lattice field takes from an uploaded array."""
MAX_HEADER_BYTES = 65536
"""A .npy header longer than this is refused (NumPy's own reader stops at 10 000 bytes of header text)."""
_PIECE = 4 << 20
"""Bytes gathered from the stream before they are checked, hashed and written, on a thread."""
_DIGEST = re.compile(DIGEST_PATTERN)
PARTIAL_MAX_AGE_S = 3600.0
"""A ``*.partial`` file older than this was left by a process that stopped mid-write; the sweep deletes it."""


class UploadInterrupted(ServiceError):
    """The client stopped sending before the body was complete (nothing was kept)."""

    status = 400
    code = "upload_interrupted"


def _invalid(field: str, message: str, allowed: str) -> ServiceError:
    return ServiceError(f"{field}: {message}", fields=[{"field": field, "message": message, "allowed": allowed}])


def arrays_dir(settings: Any) -> str:
    """Where uploaded arrays live: ARRAYS_DIR, else ``arrays`` under RESULTS_DIR."""
    return settings.arrays_dir or os.path.join(settings.results_dir, "arrays")


def parse_shape(text: str | None) -> tuple[int, ...]:
    """A ``shape`` query parameter: comma-separated axis lengths, 1 to 32 of them, each >= 1.

    Examples
    --------
    >>> parse_shape("100,200")
    (100, 200)
    """
    allowed = "comma-separated axis lengths, each an integer >= 1, e.g. 100,200"
    if not text:
        raise _invalid("shape", "missing (a raw body needs its shape)", allowed)
    parts = text.split(",")
    if len(parts) > 32 or not all(p.strip().isdigit() and len(p.strip()) <= 18 for p in parts):
        raise _invalid("shape", f"{text[:64]!r} is not a list of axis lengths", allowed)
    shape = tuple(int(p) for p in parts)
    if min(shape) < 1:
        raise _invalid("shape", f"{text[:64]!r} has an empty axis", allowed)
    return shape


def _dtype(name: str | None, field: str) -> np.dtype[Any]:
    allowed = ", ".join(DTYPES) + " (little-endian)"
    if not name:
        raise _invalid(field, "missing", allowed)
    try:
        dtype = np.dtype(name)
    except (TypeError, ValueError):
        raise _invalid(field, f"{name[:32]!r} is not a dtype", allowed) from None
    if dtype.name not in DTYPES or dtype.byteorder == ">" or dtype.fields is not None:
        raise _invalid(field, f"{name[:32]!r} is not an allowed dtype", allowed)
    return dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype


@dataclass(frozen=True)
class ArrayInfo:
    """An uploaded array: its digest, dtype, shape, file size and the summary of its values taken on upload."""

    digest: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    minimum: float | None
    maximum: float | None
    nan: bool
    infinite: bool
    created_at: float

    def to_json(self) -> dict[str, Any]:
        """The answer of an upload (also the ``.json`` kept beside the file)."""
        body = asdict(self)
        body["shape"] = list(self.shape)
        body["url"] = f"/api/arrays/{self.digest}"
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ArrayInfo:
        fields = {k: body[k] for k in cls.__dataclass_fields__}
        fields["shape"] = tuple(fields["shape"])
        return cls(**fields)


class _Summary:
    """Running minimum, maximum, NaN and infinity flags over the values of an array, fed piece by piece."""

    def __init__(self, dtype: np.dtype[Any]) -> None:
        self.dtype = dtype
        self.carry = b""
        self.minimum: float | None = None
        self.maximum: float | None = None
        self.nan = False
        self.infinite = False

    def feed(self, data: bytes) -> None:
        if self.carry:
            data = self.carry + data
        whole = len(data) - len(data) % self.dtype.itemsize
        self.carry = data[whole:]
        if not whole:
            return
        values = np.frombuffer(data, dtype=self.dtype, count=whole // self.dtype.itemsize)
        if self.dtype == np.bool_:
            values = values.view(np.uint8)
        low, high = float(values.min()), float(values.max())
        if math.isnan(low) or math.isnan(high):
            self.nan = True
            return
        if math.isinf(low) or math.isinf(high):
            self.infinite = True
        self.minimum = low if self.minimum is None else min(self.minimum, low)
        self.maximum = high if self.maximum is None else max(self.maximum, high)


class _Receiver:
    """One upload on its way to disk: the .npy header (parsed or written), the data, the hash, the summary.

    :meth:`feed` and :meth:`finish` block (file writes, hashing); the route runs them on a thread.
    """

    def __init__(self, partial: Path, dtype: np.dtype[Any] | None, shape: tuple[int, ...] | None) -> None:
        self.partial = partial
        self.sha256 = hashlib.sha256()
        self.head = b""
        self.header_bytes = 0
        self.dtype: np.dtype[Any] | None = None
        self.shape: tuple[int, ...] | None = None
        self.data_bytes = 0
        self.received = 0
        self.summary: _Summary | None = None
        partial.parent.mkdir(parents=True, exist_ok=True)
        self.handle: BinaryIO = open(partial, "xb")  # noqa: SIM115 - closed by finish or discard
        if dtype is not None and shape is not None:
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(
                header, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
            )
            self._start(dtype, shape, len(header.getvalue()))
            self._write(header.getvalue())

    @property
    def expected(self) -> int | None:
        """The whole file's size, once the header is known."""
        if self.dtype is None or self.shape is None:
            return None
        return self.header_bytes + math.prod(self.shape) * self.dtype.itemsize

    def _start(self, dtype: np.dtype[Any], shape: tuple[int, ...], header_bytes: int) -> None:
        self.dtype, self.shape, self.header_bytes = dtype, shape, header_bytes
        self.summary = _Summary(dtype)

    def _write(self, data: bytes) -> None:
        self.sha256.update(data)
        self.handle.write(data)

    def feed(self, data: bytes) -> None:
        """Check, hash and write the next bytes of the body."""
        self.received += len(data)
        if self.summary is None:
            self.head += data
            if not self._parse_header():
                return
            header, data, self.head = self.head[: self.header_bytes], self.head[self.header_bytes :], b""
            self._write(header)
        expected = self.expected
        assert expected is not None and self.summary is not None
        if self.header_bytes + self.data_bytes + len(data) > expected:
            raise _invalid(
                "body", f"more bytes than the array's dtype and shape hold ({expected} bytes)", f"{expected} bytes"
            )
        self.data_bytes += len(data)
        self.summary.feed(data)
        self._write(data)

    def _parse_header(self) -> bool:
        allowed = "a .npy file: C order, dtype " + ", ".join(DTYPES)
        head = self.head
        if len(head) >= 6 and head[:6] != b"\x93NUMPY":
            raise _invalid("body", "does not start with the .npy magic string", allowed)
        if len(head) < 10:
            return False
        major = head[6]
        if major not in (1, 2, 3):
            raise _invalid("body", f".npy version {major} is not supported", "1, 2 or 3")
        prefix = 10 if major == 1 else 12
        if len(head) < prefix:
            return False
        size = int.from_bytes(head[8:prefix], "little")
        if size > MAX_HEADER_BYTES:
            raise _invalid("body", f"a .npy header of {size} bytes", f"at most {MAX_HEADER_BYTES} bytes")
        if len(head) < prefix + size:
            return False
        stream = io.BytesIO(head[: prefix + size])
        try:
            version = np.lib.format.read_magic(stream)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(stream, max_header_size=MAX_HEADER_BYTES)
        except (ValueError, TypeError, SyntaxError) as exc:
            raise _invalid("body", f"the .npy header cannot be read: {exc}", allowed) from None
        if fortran and len(shape) > 1:
            raise _invalid("body.fortran_order", "a Fortran-order array", "C order (fortran_order: False)")
        dtype = _dtype(dtype.str, "body.dtype")
        if not shape or min(shape) < 1:
            raise _invalid("body.shape", f"{list(shape)} has no vertices", "1 or more axes, each of length >= 1")
        self._start(dtype, tuple(int(n) for n in shape), prefix + size)
        return True

    def finish(self) -> ArrayInfo:
        """Check the body was complete and flush it to disk; :meth:`place` moves it into place."""
        expected = self.expected
        if expected is None or self.header_bytes + self.data_bytes != expected:
            got = self.received
            raise _invalid(
                "body", f"ended after {got} bytes", "the whole array: its header and every value its shape holds"
            )
        assert self.dtype is not None and self.shape is not None and self.summary is not None
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        digest = "sha256:" + self.sha256.hexdigest()
        summary = self.summary
        info = ArrayInfo(
            digest,
            self.dtype.name,
            self.shape,
            expected,
            summary.minimum,
            summary.maximum,
            summary.nan,
            summary.infinite,
            time.time(),
        )
        return info

    def place(self, root: Path, digest: str) -> None:
        """Move the finished file into place under its digest (call holding the directory's lock)."""
        final = root / f"{digest[7:]}.npy"
        if final.exists():
            self.partial.unlink()  # the same bytes are there already (the name is their digest)
        else:
            os.replace(self.partial, final)

    def discard(self) -> None:
        """Close and remove the partial file (a failed or interrupted upload keeps nothing)."""
        with contextlib.suppress(OSError):
            self.handle.close()
        with contextlib.suppress(OSError):
            self.partial.unlink()


def _check_declared(declared: int | None, expected: int, written_header: int) -> None:
    """Refuse a Content-Length other than the size the dtype and shape give, before reading on."""
    if declared is not None and declared + written_header != expected:
        body = expected - written_header
        raise _invalid("Content-Length", f"{declared} bytes", f"{body} bytes (what the dtype and shape hold)")


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    with open(partial, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


class ArrayStore:
    """Uploaded arrays in one directory, with their summaries and the tenants they belong to.

    Parameters
    ----------
    root : path
        ARRAYS_DIR (created on the first upload).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _tenant_dir(self, tenant: str) -> Path:
        return self.root / "tenants" / hashlib.sha256(tenant.encode()).hexdigest()[:32]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive hold on the directory while files appear or go (blocking: call on a thread)."""
        folder = self.root / ".locks"
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "arrays", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _markers(self, hex_digest: str) -> list[Path]:
        tenants = self.root / "tenants"
        if not tenants.is_dir():
            return []
        return [marker for folder in tenants.iterdir() if (marker := folder / hex_digest).exists()]

    def release(self, digest: str, tenant: str) -> bool:
        """Remove ``tenant``'s claim on an array; the file and its summary go once no tenant holds it.

        Returns False when ``tenant`` held no such array (blocking: call on a thread).
        """
        self.path(digest)  # a malformed digest is NotFound
        hex_digest = digest[7:]
        with self._locked():
            try:
                (self._tenant_dir(tenant) / hex_digest).unlink()
            except FileNotFoundError:
                return False
            if not self._markers(hex_digest):
                for suffix in (".npy", ".json"):
                    with contextlib.suppress(FileNotFoundError):
                        (self.root / f"{hex_digest}{suffix}").unlink()
        return True

    def sweep(self, now: float, ttl_s: float, keep: set[str] | frozenset[str] = frozenset()) -> dict[str, int]:
        """Delete arrays no tenant uploaded or used for ``ttl_s`` seconds, and stale partial files.

        Parameters
        ----------
        now : float
            Epoch seconds (the sweeper's clock).
        ttl_s : float
            CATALYTIC_ARRAY_TTL_S.
        keep : set of str
            Digests (``sha256:<hex>``) that stored lattices or unfinished jobs name: kept whatever their age.

        Returns
        -------
        dict
            ``arrays`` deleted, ``partials`` deleted, ``array_bytes`` of the arrays kept.
        """
        deleted = partials = kept_bytes = 0
        if not self.root.is_dir():
            return {"arrays": 0, "partials": 0, "array_bytes": 0}
        for entry in os.scandir(self.root):
            if entry.name.endswith(".partial") and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat(follow_symlinks=False).st_mtime < now - PARTIAL_MAX_AGE_S:
                        os.unlink(entry.path)
                        partials += 1
        kept = {digest[7:] for digest in keep}
        with self._locked():
            last_use: dict[str, float] = {}
            tenants = self.root / "tenants"
            folders = list(tenants.iterdir()) if tenants.is_dir() else []
            for folder in folders:
                for marker in os.scandir(folder):
                    with contextlib.suppress(FileNotFoundError):
                        mtime = marker.stat().st_mtime
                        last_use[marker.name] = max(mtime, last_use.get(marker.name, mtime))
            for entry in os.scandir(self.root):
                if not entry.name.endswith(".npy") or not entry.is_file(follow_symlinks=False):
                    continue
                hex_digest = entry.name[:-4]
                stat = entry.stat(follow_symlinks=False)
                # An array with no marker (a process died between placing it and marking it) dates from its file.
                used = last_use.pop(hex_digest, stat.st_mtime)
                if hex_digest in kept or used >= now - ttl_s:
                    kept_bytes += stat.st_size
                    continue
                for folder in folders:
                    with contextlib.suppress(FileNotFoundError):
                        (folder / hex_digest).unlink()
                for suffix in (".npy", ".json"):
                    with contextlib.suppress(FileNotFoundError):
                        (self.root / f"{hex_digest}{suffix}").unlink()
                deleted += 1
            for hex_digest in last_use:  # markers whose file is gone already
                for folder in folders:
                    with contextlib.suppress(FileNotFoundError):
                        (folder / hex_digest).unlink()
                with contextlib.suppress(FileNotFoundError):
                    (self.root / f"{hex_digest}.json").unlink()
        return {"arrays": deleted, "partials": partials, "array_bytes": kept_bytes}

    def path(self, digest: str) -> Path:
        """The .npy file of ``digest`` (which need not exist)."""
        if not _DIGEST.match(digest):
            raise NotFound(f"no array {digest[:80]!r}")
        return self.root / f"{digest[7:]}.npy"

    def info(self, digest: str, tenant: str) -> ArrayInfo:
        """The summary of an array ``tenant`` uploaded.

        Raises
        ------
        NotFound
            No such array, or one only other tenants uploaded (the same answer).
        """
        path = self.path(digest)
        marker = self._tenant_dir(tenant) / digest[7:]
        try:
            os.utime(marker)  # a use: the array's expiry counts from now
        except FileNotFoundError:
            raise NotFound(
                f"no array {digest!r}", fields=[{"field": "digest", "message": "unknown", "allowed": None}]
            ) from None
        try:
            return ArrayInfo.from_json(json.loads(path.with_suffix(".json").read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError) as exc:
            raise NotFound(f"no array {digest!r} ({type(exc).__name__})") from None

    def tenant_bytes(self, tenant: str) -> int:
        """Bytes of the arrays ``tenant`` uploaded (each counted once)."""
        folder = self._tenant_dir(tenant)
        if not folder.is_dir():
            return 0
        total = 0
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                total += (self.root / f"{entry.name}.npy").stat().st_size
        return total

    def _keep(self, info: ArrayInfo, tenant: str) -> None:
        summary = self.root / f"{info.digest[7:]}.json"
        if not summary.exists():
            _write_atomic(summary, json.dumps(info.to_json()).encode())
        folder = self._tenant_dir(tenant)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / info.digest[7:]).touch()

    def _place(self, receiver: _Receiver, info: ArrayInfo, tenant: str) -> None:
        with self._locked():
            receiver.place(self.root, info.digest)
            self._keep(info, tenant)

    async def receive(
        self,
        chunks: AsyncIterator[bytes],
        tenant: str,
        *,
        declared: int | None,
        limit: int,
        limit_name: str,
        quota_left: int | None = None,
        dtype: str | None = None,
        shape: tuple[int, ...] | None = None,
    ) -> ArrayInfo:
        """Stream an upload to disk, checking it as it arrives; the array's summary once it is kept.

        Parameters
        ----------
        chunks : async iterator of bytes
            The body (``request.stream()``).
        tenant : str
            Who uploads it.
        declared : int, optional
            The Content-Length.
        limit, limit_name : int, str
            The most bytes an upload may hold, and the setting that says so.
        quota_left : int, optional
            What is left of the tenant's TENANT_MAX_RESULT_BYTES.
        dtype, shape : optional
            Of a raw body; None for a .npy file.

        Raises
        ------
        PayloadTooLarge
            Over ``limit`` (declared, or as the bytes arrive: the rest is not read).
        QuotaExceeded
            Over the tenant's quota (413).
        ServiceError
            A bad header, dtype or shape, or a body of the wrong length (422).
        UploadInterrupted
            The client stopped sending.
        """

        def check(size: int) -> None:
            if size > limit:
                raise PayloadTooLarge(
                    f"the upload of {size} bytes or more is over {limit_name}={limit}",
                    fields=[{"field": "body", "message": f"{size} bytes or more", "allowed": f"at most {limit} bytes"}],
                )
            if quota_left is not None and size > quota_left:
                raise QuotaExceeded(
                    413, "max_result_bytes", quota_left, size, f"only {quota_left} bytes are left to this tenant"
                )

        if declared is not None:
            check(declared)
        kind = None if dtype is None else _dtype(dtype, "dtype")
        receiver = await asyncio.to_thread(
            _Receiver, self.root / f".upload-{secrets.token_hex(8)}.partial", kind, shape
        )
        try:
            pending: list[bytes] = []
            waiting = 0
            expected = receiver.expected
            if expected is not None:
                check(expected)
                _check_declared(declared, expected, receiver.header_bytes)
            async for chunk in chunks:
                waiting += len(chunk)
                check(receiver.received + waiting)
                pending.append(chunk)
                # Until the header is read, every piece goes at once: it tells the size to expect.
                if waiting >= _PIECE or expected is None:
                    await asyncio.to_thread(receiver.feed, b"".join(pending))
                    pending, waiting = [], 0
                    if expected is None and receiver.expected is not None:
                        expected = receiver.expected
                        check(expected)
                        _check_declared(declared, expected, 0)
            if pending:
                await asyncio.to_thread(receiver.feed, b"".join(pending))
            info = await asyncio.to_thread(receiver.finish)
            await asyncio.to_thread(self._place, receiver, info, tenant)
        except ClientDisconnect:
            receiver.discard()
            raise UploadInterrupted("the client stopped sending; nothing was kept") from None
        except BaseException:
            receiver.discard()  # a close and an unlink: quick enough for the loop, and sure to run when cancelled
            raise
        return info


def load_uploaded(
    root: str | os.PathLike[str], digest: str, field: str, shape: tuple[int, ...], info: ArrayInfo | None = None
) -> np.ndarray:
    """An uploaded array as ``field`` (``blocked`` or ``weights``) of a lattice of ``shape``, memory-mapped.

    A float64 weights file and a bool mask are used as mapped, without a copy; float32 or uint8 weights are
    converted to float64 and a uint8 mask viewed as bool. With ``info`` (the upload's summary) the dtype and shape
    are checked against the lattice and the values against the field's rules, without reading the file.

    Raises
    ------
    WeightsError, MaskError
        A dtype the field does not take, a shape other than the lattice's, or values it refuses (422).
    FileNotFoundError
        No such file (the array was never uploaded here).
    """
    error = WeightsError if field == "weights" else MaskError
    allowed_dtypes = FIELD_DTYPES[field]
    if info is not None:
        allowed = f"an uploaded array of dtype {' or '.join(allowed_dtypes)} and shape {list(shape)}"
        if info.dtype not in allowed_dtypes:
            raise error(f"{field}.array", f"dtype {info.dtype} does not fit {field}", allowed)
        if tuple(info.shape) != tuple(shape):
            raise error(f"{field}.array", f"shape {list(info.shape)} does not match the lattice", allowed)
        if field == "weights":
            check_weight_stats(
                info.minimum if info.minimum is not None else 0.0,
                info.maximum if info.maximum is not None else 0.0,
                math.prod(shape),
                nan=info.nan,
                infinite=info.infinite,
                allowed=f"{allowed}, every value finite and > 0",
            )
        elif info.maximum is not None and info.maximum > 1:
            raise error(f"{field}.array", f"holds the value {info.maximum:g}", "0 (open) and 1 (blocked) only")
    mapped = np.load(Path(root) / f"{digest[7:]}.npy", mmap_mode="r", allow_pickle=False)
    # A plain ndarray over the map: the kernels take it as any array, and it keeps the map open.
    array = np.asarray(mapped)
    if field == "weights" and array.dtype != np.dtype("<f8"):
        return np.ascontiguousarray(array, dtype="<f8")
    if field == "blocked" and array.dtype != np.bool_:
        return array.view(np.bool_)
    return array


def reference(value: Any) -> str | None:
    """The digest an inline lattice's ``blocked`` or ``weights`` names (``{"array": digest}``), else None."""
    digest = value.get("array") if isinstance(value, Mapping) else getattr(value, "array", None)
    return digest if isinstance(digest, str) else None


def open_references(body: Mapping[str, Any], store: ArrayStore, tenant: str) -> dict[str, tuple[str, np.ndarray]]:
    """The uploaded arrays a create body names, checked against its shape and memory-mapped: field -> (digest, array).

    Raises
    ------
    NotFound
        An array ``tenant`` did not upload (404, as for one nobody did).
    WeightsError, MaskError
        An array that does not fit its field (422).
    """
    shape = tuple(int(n) for n in body["shape"])
    opened = {}
    for field in ("blocked", "weights"):
        digest = reference(body.get(field))
        if digest is not None:
            info = store.info(digest, tenant)
            opened[field] = (digest, load_uploaded(store.root, digest, field, shape, info))
    return opened


def named_digests(spec: Any) -> set[str]:
    """The uploaded arrays (``{"array": digest}``) a stored lattice or job spec names, anywhere in it."""
    found: set[str] = set()
    stack = [spec]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            digest = value.get("array")
            if isinstance(digest, str) and _DIGEST.match(digest):
                found.add(digest)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


_REFERENCING = (
    ("lattice", "SELECT id, spec FROM service_lattices WHERE spec LIKE $1"),
    ("job", "SELECT id, spec FROM service_jobs WHERE status IN ('queued', 'running') AND spec LIKE $1"),
)


async def referencing(db: Any, digest: str | None = None, tenant: str | None = None) -> dict[str, str]:
    """Uploaded arrays that stored lattices and queued or running jobs name: digest -> ``lattice <id>``/``job <id>``.

    ``digest`` and ``tenant`` narrow the search to one array and to one tenant's lattices and jobs.
    """
    pattern = "%" + (digest[7:] if digest else '"array"') + "%"
    named: dict[str, str] = {}
    for kind, query in _REFERENCING:
        args: list[Any] = [pattern]
        if tenant is not None:
            query += " AND tenant = $2"
            args.append(tenant)
        for row in await db.fetch(query, *args):
            with contextlib.suppress(ValueError, TypeError):
                for found in named_digests(json.loads(row["spec"])):
                    if digest is None or found == digest:
                        named.setdefault(found, f"{kind} {row['id']}")
    return named


async def sweep_arrays(db: Any, root: str | os.PathLike[str] | None, now: float, ttl_s: float) -> dict[str, int]:
    """One expiry pass over ARRAYS_DIR (:meth:`ArrayStore.sweep`), keeping what stored lattices and jobs name."""
    if root is None or not Path(root).is_dir():
        return {"arrays": 0, "partials": 0, "array_bytes": 0}
    keep = set(await referencing(db))
    return await asyncio.to_thread(ArrayStore(root).sweep, now, ttl_s, keep)
