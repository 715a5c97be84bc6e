"""The results store: array results too large for a database row, as .npy files in a directory or a bucket.

A job's array result (a distance field, component labels) of more than ``RESULT_DB_MAX_BYTES`` is written
by the job worker process itself, streamed in 16 MiB pieces as it is serialised, so neither the worker nor
the server process ever holds the .npy bytes whole. The job record keeps the reference, the SHA-256 digest
and the size (:class:`StoredArray`); ``GET /api/jobs/{id}/result?format=npy`` streams the file back.

* :class:`DirectoryStore` (the embedded default, ``RESULTS_DIR``): files written beside their final name and
  renamed into place once complete and flushed, so a reader never sees half a file.
* :class:`BucketStore` (``RESULTS_S3_BUCKET``): any S3-compatible object store through boto3 (imported only
  there), with a multipart upload of 8 MiB parts; credentials come from boto3's usual chain (environment,
  shared files, instance or pod identity).

Results expire ``RESULT_TTL`` seconds after their job finished: :class:`ResultSweeper` deletes the expired
records and their files, and any file in the store older than the TTL that no record kept (a worker that
wrote its result just before its job was cancelled, or its replica died). It also sets the
``results_store_bytes{location="store"}`` gauge from what it listed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from catalytic.service.periodic import Periodic

__all__ = [
    "BucketStore",
    "DirectoryStore",
    "ResultNotStored",
    "ResultSweeper",
    "ResultsStore",
    "StoredArray",
    "open_store",
    "read_range",
    "result_name",
    "store_config",
    "write_result",
]

log = logging.getLogger("catalytic.service")

_CHUNK = 1 << 20
_PART = 8 << 20


class ResultNotStored(RuntimeError):
    """An array result could not be written to (or read from) the results store; the message says why."""


@dataclass(frozen=True)
class StoredArray:
    """Where an array result is and what it is: ``ref`` (``dir:NAME`` or ``s3://BUCKET/KEY``; None when the
    bytes are in ``npy``, for the database), the SHA-256 of the .npy bytes and their count."""

    ref: str | None
    sha256: str
    nbytes: int
    npy: bytes | None = None

    def to_message(self) -> dict[str, Any]:
        """A plain dict, sent from the worker process to the server process."""
        return asdict(self)


class ResultsStore(Protocol):
    """What both stores offer; every call blocks (the service runs them on threads or in workers)."""

    def write(self, name: str, array: np.ndarray) -> StoredArray: ...

    def chunks(self, ref: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]: ...

    def delete(self, ref: str) -> None: ...

    def sweep(self, older_than: float) -> tuple[int, int]: ...


class _Hashing:
    """A write-only file object that hashes and counts what passes through to ``sink``."""

    def __init__(self, sink: Callable[[memoryview], object]) -> None:
        self.sink = sink
        self.sha256 = hashlib.sha256()
        self.nbytes = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.sha256.update(view)
        self.nbytes += view.nbytes
        self.sink(view)
        return view.nbytes


def _write_npy(array: np.ndarray, sink: Callable[[memoryview], object]) -> tuple[str, int]:
    writer = _Hashing(sink)
    # write_array serialises a non-file object in 16 MiB pieces: the .npy bytes are never whole in memory.
    np.lib.format.write_array(writer, np.asanyarray(array), allow_pickle=False)
    return writer.sha256.hexdigest(), writer.nbytes


def npy_in_memory(array: np.ndarray) -> StoredArray:
    """A small array result kept for the database: its .npy bytes, digest and size."""
    parts: list[bytes] = []
    sha256, nbytes = _write_npy(array, lambda view: parts.append(bytes(view)))
    return StoredArray(None, sha256, nbytes, b"".join(parts))


def read_range(handle: Any, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
    """Bytes ``[start, stop)`` of an open binary file (default: to its end), in 1 MiB pieces."""
    handle.seek(start)
    left = None if stop is None else stop - start
    while left is None or left > 0:
        chunk = handle.read(_CHUNK if left is None else min(_CHUNK, left))
        if not chunk:
            return
        if left is not None:
            left -= len(chunk)
        yield chunk


class DirectoryStore:
    """Results as files in one directory (created on first write)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, ref: str) -> Path:
        if not ref.startswith("dir:"):
            raise ResultNotStored(f"{ref!r} is not in the results directory {self.root} (RESULTS_DIR)")
        name = ref[4:]
        if "/" in name or name.startswith("."):
            raise ResultNotStored(f"{ref!r} is not a result name")
        return self.root / name

    def write(self, name: str, array: np.ndarray) -> StoredArray:
        """Write ``array`` as ``NAME`` (atomically: a partial file never carries the final name)."""
        final = self.root / name
        partial = self.root / f".{name}.partial"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as handle:
                sha256, nbytes = _write_npy(array, handle.write)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise ResultNotStored(f"writing {final}: {exc.strerror or exc}") from exc
        return StoredArray(f"dir:{name}", sha256, nbytes)

    def chunks(self, ref: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """The file's bytes ``[start, stop)`` (default: all) in 1 MiB pieces."""
        try:
            handle = open(self._path(ref), "rb")  # noqa: SIM115 - closed by the generator
        except OSError as exc:
            raise ResultNotStored(f"reading {ref}: {exc.strerror or exc}") from exc
        with handle:
            yield from read_range(handle, start, stop)

    def delete(self, ref: str) -> None:
        """Remove the file (gone already is fine)."""
        self._path(ref).unlink(missing_ok=True)

    def sweep(self, older_than: float) -> tuple[int, int]:
        """Delete files last written before ``older_than`` (epoch s); (files deleted, bytes of those left)."""
        deleted = kept = 0
        if not self.root.is_dir():
            return 0, 0
        for entry in os.scandir(self.root):
            if not entry.is_file(follow_symlinks=False):
                continue
            stat = entry.stat(follow_symlinks=False)
            if stat.st_mtime < older_than:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                deleted += 1
            else:
                kept += stat.st_size
        return deleted, kept


class BucketStore:
    """Results as objects under ``prefix`` in an S3-compatible bucket."""

    def __init__(
        self, bucket: str, prefix: str = "", endpoint_url: str | None = None, region: str | None = None
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )

    def _key(self, ref: str) -> str:
        head = f"s3://{self.bucket}/"
        if not ref.startswith(head):
            raise ResultNotStored(f"{ref!r} is not in the results bucket {self.bucket} (RESULTS_S3_BUCKET)")
        return ref[len(head) :]

    def write(self, name: str, array: np.ndarray) -> StoredArray:
        """Upload ``array`` as ``PREFIX + NAME``: one PUT when small, else a multipart upload of 8 MiB parts."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.prefix + name
        buffer = bytearray()
        parts: list[dict[str, Any]] = []
        upload_id: str | None = None

        def flush_part() -> None:
            nonlocal upload_id
            if upload_id is None:
                upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
            number = len(parts) + 1
            answer = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=bytes(buffer)
            )
            parts.append({"ETag": answer["ETag"], "PartNumber": number})
            buffer.clear()

        def sink(view: memoryview) -> None:
            buffer.extend(view)
            if len(buffer) >= _PART:
                flush_part()

        try:
            sha256, nbytes = _write_npy(array, sink)
            if upload_id is None:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(buffer))
            else:
                if buffer:
                    flush_part()
                self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
        except (BotoCoreError, ClientError) as exc:
            if upload_id is not None:
                with contextlib.suppress(BotoCoreError, ClientError):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise ResultNotStored(f"uploading s3://{self.bucket}/{key}: {exc}") from exc
        return StoredArray(f"s3://{self.bucket}/{key}", sha256, nbytes)

    def chunks(self, ref: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """The object's bytes ``[start, stop)`` (default: all) in 1 MiB pieces (an HTTP range GET)."""
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {} if start == 0 and stop is None else {"Range": f"bytes={start}-{'' if stop is None else stop - 1}"}
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(ref), **extra)["Body"]
        except (BotoCoreError, ClientError) as exc:
            raise ResultNotStored(f"reading {ref}: {exc}") from exc
        try:
            yield from body.iter_chunks(_CHUNK)
        finally:
            body.close()

    def delete(self, ref: str) -> None:
        """Delete the object (gone already is fine)."""
        self.client.delete_object(Bucket=self.bucket, Key=self._key(ref))

    def sweep(self, older_than: float) -> tuple[int, int]:
        """Delete objects under the prefix last written before ``older_than``; (deleted, bytes of those left)."""
        deleted = kept = 0
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                if item["LastModified"].timestamp() < older_than:
                    self.client.delete_object(Bucket=self.bucket, Key=item["Key"])
                    deleted += 1
                else:
                    kept += int(item["Size"])
        return deleted, kept


def store_config(settings: Any) -> dict[str, Any]:
    """The results store of a :class:`catalytic.service.settings.Settings`, as a dict a worker process can open.

    ``arrays_dir`` says where a job worker finds the uploaded arrays a spec names by digest
    (:mod:`catalytic.service.uploads`).
    """
    from catalytic.service.uploads import arrays_dir

    uploads = arrays_dir(settings)
    if settings.results_s3_bucket:
        return {
            "arrays_dir": uploads,
            "kind": "s3",
            "bucket": settings.results_s3_bucket,
            "prefix": settings.results_s3_prefix,
            "endpoint_url": settings.results_s3_endpoint_url,
            "region": settings.results_s3_region,
            "db_max_bytes": settings.result_db_max_bytes,
        }
    return {
        "kind": "dir",
        "root": settings.results_dir,
        "db_max_bytes": settings.result_db_max_bytes,
        "arrays_dir": uploads,
    }


_OPENED: dict[tuple[Any, ...], ResultsStore] = {}
_OPENED_LOCK = threading.Lock()


def open_store(config: Mapping[str, Any]) -> ResultsStore:
    """The store a :func:`store_config` dict names, made once per process (a boto3 client is thread-safe)."""
    key = tuple(sorted((k, v) for k, v in config.items() if k not in ("db_max_bytes", "arrays_dir")))
    with _OPENED_LOCK:
        store = _OPENED.get(key)
        if store is None:
            if config["kind"] == "s3":
                store = BucketStore(config["bucket"], config["prefix"], config["endpoint_url"], config["region"])
            else:
                store = DirectoryStore(config["root"])
            _OPENED[key] = store
    return store


def result_name(job_id: str) -> str:
    """A fresh file name for a job's array result (each attempt its own: a replica that lost the job's lease
    and is still writing never overwrites the file of the replica that took it over)."""
    return f"{job_id}.{secrets.token_hex(4)}.npy"


def write_result(array: np.ndarray, config: Mapping[str, Any] | None, name: str) -> StoredArray:
    """Keep an array result: in the store when its .npy is over ``db_max_bytes``, else as bytes for the database.

    Raises
    ------
    ResultNotStored
        The store refused it (the message says why: a full disk, a missing bucket, no permission).
    """
    header = 128  # a .npy header is padded to a multiple of 64 bytes; 128 covers every shape the service makes
    if config is None or array.nbytes + header <= config["db_max_bytes"]:
        return npy_in_memory(array)
    try:
        store = open_store(config)
    except ResultNotStored:
        raise
    except Exception as exc:  # a client that cannot even be made (bad endpoint, no region): the true reason
        raise ResultNotStored(f"opening the results store: {type(exc).__name__}: {exc}") from exc
    return store.write(name, array)


T = TypeVar("T")


async def _on_store(call: Callable[..., T], *args: Any) -> T:
    """Run a call on the results store off the event loop; a failure sets ``results_store_up`` to 0."""
    from catalytic.service.metrics import RESULTS_STORE_UP

    try:
        return await asyncio.to_thread(call, *args)
    except Exception:
        RESULTS_STORE_UP.set(0)
        raise


class ResultSweeper(Periodic):
    """Every ``interval_s``: delete expired results (records, inline arrays and files), and stray files.

    Parameters
    ----------
    db : catalytic.storage.Database
    config : dict
        :func:`store_config` of this service.
    ttl_s : float
        RESULT_TTL.
    interval_s : float
        Seconds between passes (RESULT_SWEEP_S); the first pass runs at start.
    clock : callable
        Epoch seconds; tests inject their own.
    max_bytes : int
        RESULTS_STORE_MAX_BYTES, the size the store may reach (0: none declared).
    array_ttl_s : float
        CATALYTIC_ARRAY_TTL_S: uploaded arrays unused this long are deleted from ``config["arrays_dir"]``.
    """

    def __init__(
        self,
        db: Any,
        config: Mapping[str, Any],
        ttl_s: float,
        interval_s: float,
        clock: Callable[[], float] = time.time,
        *,
        max_bytes: int = 0,
        array_ttl_s: float = 7 * 24 * 3600,
    ) -> None:
        from catalytic.service.metrics import RESULTS_STORE_LIMIT_BYTES

        self.db = db
        self.config = dict(config)
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self.store_bytes: int | None = None
        """What the store kept at the latest sweep (None before the first)."""
        self.array_ttl_s = array_ttl_s
        self.arrays_swept: dict[str, int] = {}
        """The latest sweep of uploaded arrays: ``arrays`` and ``partials`` deleted, ``array_bytes`` kept."""
        RESULTS_STORE_LIMIT_BYTES.labels("store").set(max_bytes)
        self.interval_s = interval_s
        self.clock = clock

    async def sweep_once(self) -> dict[str, int]:
        """One pass; counts of result records and store files deleted, and the bytes the store keeps."""
        from catalytic.service import db as queries
        from catalytic.service.metrics import RESULTS_STORE_BYTES, RESULTS_STORE_UP

        now = self.clock()
        store = await _on_store(open_store, self.config)
        records = files = 0
        while True:
            expired = await queries.expired_results(self.db, now, self.ttl_s, limit=500)
            if not expired:
                break
            for row in expired:
                if row["array_ref"]:
                    await _on_store(store.delete, row["array_ref"])
                    files += 1
            async with self.db.transaction() as conn:
                await queries.delete_results(conn, [row["job_id"] for row in expired])
            records += len(expired)
        await queries.delete_finished_job_arrays(self.db, now - self.ttl_s)
        # A file older than the TTL has outlived any record that could name it.
        stray, kept = await _on_store(store.sweep, now - self.ttl_s)
        RESULTS_STORE_UP.set(1)
        RESULTS_STORE_BYTES.labels("store").set(kept)
        self.store_bytes = kept
        from catalytic.service.uploads import sweep_arrays

        swept = await sweep_arrays(self.db, self.config.get("arrays_dir"), now, self.array_ttl_s)
        self.arrays_swept = swept
        if records or stray or swept["arrays"] or swept["partials"]:
            log.info(
                "results sweeper: %d expired results, %d files, %d uploaded arrays, %d partial uploads deleted",
                records,
                files + stray,
                swept["arrays"],
                swept["partials"],
            )
        return {"records": records, "files": files + stray, "store_bytes": kept}

    task_name = "catalytic-result-sweeper"
    failure = "results sweep failed"

    async def run_once(self) -> dict[str, int]:
        return await self.sweep_once()

    @property
    def full(self) -> bool:
        """Whether the latest sweep found the store at RESULTS_STORE_MAX_BYTES or over it."""
        return self.max_bytes > 0 and self.store_bytes is not None and self.store_bytes >= self.max_bytes
