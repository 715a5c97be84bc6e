"""The ``catalytic`` command: ``serve``, ``worker``, ``migrate``, ``warmup``, ``keys``; ``path``, ``analyze``,
``components``.

Exit status: 0 on success, 1 when ``path`` finds no path, 2 on bad input or a refused configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

__all__ = ["bind_address", "main"]

log = logging.getLogger("catalytic.cli")

CLI_MAX_SIZES = 20
"""Component sizes the one-off `components` command lists (the count is always exact)."""
PROGRESS_MIN_VERTICES = 1_000_000
"""Lattices at least this large get a progress bar on stderr (unless --json)."""


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None


def bind_address(host: str) -> str:
    """The address to bind for ``--host``: an IPv6 literal may come in URL brackets (``[::1]``), sockets take it bare.

    Examples
    --------
    >>> bind_address("[::1]"), bind_address("::1"), bind_address("127.0.0.1")
    ('::1', '::1', '127.0.0.1')
    """
    host = host.strip()
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _lattice_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shape", type=_int_list, required=True, help="axis lengths, e.g. 10,10,10")
    parser.add_argument("--periodic", action="store_true", help="wrap every axis (torus)")
    parser.add_argument(
        "--random-obstacles", type=float, default=0.0, metavar="P", help="block each vertex with probability P"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random obstacles")
    parser.add_argument(
        "--backend", default=None, help="auto, numpy, numba or cupy (default: CATALYTIC_BACKEND or auto)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="catalytic", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="API port (default 8080)")
    serve.add_argument("--workers", type=int, default=None, help="uvicorn worker processes (default 1)")

    worker = commands.add_parser("worker", help="run the webhook delivery worker")
    worker.add_argument("--host", default=None, help="address of the probe and metrics port (default 127.0.0.1)")
    worker.add_argument(
        "--port", type=int, default=None, help="port serving /health, /ready and /metrics (default 8081; 0: none)"
    )
    commands.add_parser("migrate", help="apply database migrations")
    warmup = commands.add_parser("warmup", help="compile the numba kernels into NUMBA_CACHE_DIR (image builds)")
    warmup.add_argument(
        "--seed-from", default=None, metavar="DIR", help="first copy a prebuilt cache from DIR into NUMBA_CACHE_DIR"
    )
    warmup.add_argument("--backend", default="numba", help="the backend to warm (default numba)")
    warmup.add_argument(
        "--check", action="store_true", help="also compare every answer with the numpy backend's (exit 1 if any differ)"
    )
    warmup.add_argument("--json", action="store_true", help="print the report as one JSON object")

    keys = commands.add_parser("keys", help="manage the API keys of the api_keys table (stored as digests)")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    add = key_commands.add_parser("add", help="make a key for a tenant; prints it once")
    add.add_argument("tenant", help="the tenant the key belongs to")
    add.add_argument("--label", default="", help="free text shown by keys list (who holds the key)")
    key_commands.add_parser("list", help="ids, tenants, labels and dates of the keys (never a key)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by id (every server stops taking it within 5 s)")
    revoke.add_argument("key_id", help="the id keys add printed")

    path = commands.add_parser("path", help="one shortest path")
    _lattice_arguments(path)
    path.add_argument("--start", type=_int_list, default=None, help="start coordinates (default: the origin corner)")
    path.add_argument("--goal", type=_int_list, default=None, help="goal coordinates (default: the far corner)")
    path.add_argument("--method", default="auto", help="auto, bfs, bidirectional, astar or dijkstra")

    for name, text in (("analyze", "structure report"), ("components", "connected components")):
        _lattice_arguments(commands.add_parser(name, help=text))
    return parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from catalytic.service import defaults
    from catalytic.service.logs import configure_logging
    from catalytic.service.settings import SettingError, Settings, is_loopback

    settings = Settings()
    configure_logging(settings.log_level)
    try:
        keys = settings.api_keys
    except SettingError as exc:
        print(f"catalytic serve: {exc}", file=sys.stderr)
        return 2
    host = bind_address(args.host or defaults.HOST)
    port = args.port or defaults.PORT
    workers = args.workers or defaults.WORKERS
    if not keys and not is_loopback(host):
        log.error("refusing to serve on %s without API keys: set CATALYTIC_API_KEYS or CATALYTIC_API_KEYS_FILE", host)
        return 2
    from catalytic.storage import is_postgres_url, migrate, sqlite_file

    if settings.migrate_on_start:
        migrate(settings.database_url, sqlite_path=settings.sqlite_path)
    keeper = None
    if not is_postgres_url(settings.database_url):
        # The embedded database's -wal and -shm files are deleted by whichever connection closes last. While
        # server processes start, each opening and closing connections of its own, one of them could close
        # "last" while another is half-way through opening, which would leave that one on deleted files, blind
        # to every later commit. This supervising process keeps a connection open for the service's lifetime,
        # so no server process's connection is ever the last one.
        import sqlite3

        keeper = sqlite3.connect(sqlite_file(settings.database_url, settings.sqlite_path))
        keeper.execute("PRAGMA journal_mode = WAL").fetchall()
        keeper.execute("SELECT count(*) FROM sqlite_master").fetchall()
    own_metrics_dir = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from catalytic.service.exposition import clear_multiprocess_dir

        # A given directory (an emptyDir) outlives a container restart: the dead processes' samples go first.
        clear_multiprocess_dir(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if workers > 1:
        # Several processes share one metrics port: each writes its samples to PROMETHEUS_MULTIPROC_DIR and this
        # supervising process serves their sum. The variable must be set before any worker imports the metrics.
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            own_metrics_dir = tempfile.mkdtemp(prefix="catalytic-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_metrics_dir
        if settings.metrics_port:
            # Not catalytic.service.metrics: this process must add no samples of its own to the aggregate.
            from catalytic.service.exposition import start_metrics_server

            start_metrics_server(settings.metrics_port, settings.metrics_host)
        os.environ["METRICS_PORT"] = "0"
    log.info(
        "serving on %s:%d with %d worker(s); database: %s",
        f"[{host}]" if ":" in host else host,
        port,
        workers,
        "PostgreSQL" if settings.database_url else "SQLite",
    )
    # The server processes share PARALLEL_CORES between them (Settings.cores_per_process).
    os.environ["WEB_CONCURRENCY"] = str(workers)
    try:
        uvicorn.run(
            "catalytic.service.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
    finally:
        if keeper is not None:
            keeper.close()
        if own_metrics_dir is not None:
            import shutil

            shutil.rmtree(own_metrics_dir, ignore_errors=True)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from catalytic.service.logs import configure_logging
    from catalytic.service.settings import Settings
    from catalytic.webhooks.config import WebhookConfig
    from catalytic.webhooks.health import DEFAULT_HOST, DEFAULT_PORT
    from catalytic.webhooks.worker import run_worker

    settings = Settings()
    configure_logging(settings.log_level)
    port = DEFAULT_PORT if args.port is None else args.port
    address = (bind_address(args.host or DEFAULT_HOST), port) if port else None
    config = WebhookConfig(database_url=settings.database_url, sqlite_path=settings.sqlite_path)
    try:
        asyncio.run(run_worker(config, health_address=address))
    except OSError as exc:
        if address is None or exc.errno is None:
            raise
        log.error("cannot serve the worker's probes on %s:%d: %s", address[0], address[1], exc)
        return 2
    return 0


def _warmup(args: argparse.Namespace) -> int:
    from catalytic.service.logs import configure_logging
    from catalytic.warmup import check, seed_cache, warm_up

    configure_logging("INFO")
    cache_dir = os.environ.get("NUMBA_CACHE_DIR")
    if args.seed_from:
        if not cache_dir:
            print("catalytic warmup: --seed-from needs NUMBA_CACHE_DIR (the writable cache to fill)", file=sys.stderr)
            return 2
        try:
            copied = seed_cache(args.seed_from, cache_dir)
        except FileNotFoundError as exc:
            print(f"catalytic warmup: {exc}", file=sys.stderr)
            return 2
        log.info("copied %d cache files from %s to %s", copied, args.seed_from, cache_dir)
    report = warm_up(args.backend).to_dict()
    differ = check(args.backend) if args.check else []
    if args.check:
        report["differ_from_numpy"] = differ
    if args.json:
        print(json.dumps(report))
    else:
        _print_human("warmup", report)
    return 1 if differ else 0


def _migrate() -> int:
    from catalytic.service.logs import configure_logging
    from catalytic.service.settings import Settings
    from catalytic.storage import migrate

    settings = Settings()
    configure_logging(settings.log_level)
    migrate(settings.database_url, sqlite_path=settings.sqlite_path)
    return 0


def _keys(args: argparse.Namespace) -> int:
    from catalytic.service import keys
    from catalytic.service.logs import configure_logging
    from catalytic.service.settings import Settings
    from catalytic.storage import migrate, open_database

    settings = Settings()
    configure_logging(settings.log_level)
    migrate(settings.database_url, sqlite_path=settings.sqlite_path)

    async def run() -> int:
        db = await open_database(settings.database_url, sqlite_path=settings.sqlite_path)
        try:
            if args.keys_command == "add":
                try:
                    key_id, key = await keys.add_key(db, args.tenant, args.label)
                except ValueError as exc:
                    print(f"catalytic keys add: {exc}", file=sys.stderr)
                    return 2
                # The key itself goes to stdout only, this once; it is stored as a digest.
                print(json.dumps({"id": key_id, "tenant": args.tenant, "key": key}))
                return 0
            if args.keys_command == "list":
                for row in await keys.list_keys(db):
                    print(json.dumps(row))
                return 0
            if await keys.revoke_key(db, args.key_id):
                return 0
            print(f"catalytic keys revoke: no valid key {args.key_id!r}", file=sys.stderr)
            return 2
        finally:
            await db.close()

    return asyncio.run(run())


def _lattice(args: argparse.Namespace) -> Any:
    from catalytic.lattice import Lattice

    obstacles = [{"kind": "random", "p": args.random_obstacles, "seed": args.seed}] if args.random_obstacles else []
    return Lattice(args.shape, periodic=args.periodic, obstacles=obstacles)


def _endpoints(lattice: Any, args: argparse.Namespace) -> tuple[list[int], list[int]]:
    """Start and goal: as given, else corner to corner when both are open, else the first and last open vertex."""
    if args.start is not None and args.goal is not None:
        return args.start, args.goal
    import numpy as np

    first, last = 0, lattice.vertices - 1
    if not (lattice.is_open(first) and lattice.is_open(last)):
        open_indices = np.flatnonzero(lattice.open_mask_flat())
        if open_indices.size == 0:
            from catalytic.errors import BlockedVertexError

            raise BlockedVertexError("shape", "every vertex is blocked", "a lattice with an open vertex")
        first, last = int(open_indices[0]), int(open_indices[-1])
    start = args.start if args.start is not None else lattice.coords_of(first).tolist()
    goal = args.goal if args.goal is not None else lattice.coords_of(last).tolist()
    return start, goal


def _load_kernels(lattice: Any, operation: str, params: dict[str, Any], backend: str | None) -> float:
    """Milliseconds to load (or compile) the kernels the operation needs, so ``elapsed_ms`` is compute alone.

    A fresh process pays for loading the compiled kernels on its first call; the same operation on a tiny
    lattice of the same kind (axes, wrap, method) pays it here, timed apart.
    """
    import time

    from catalytic.lattice import Lattice
    from catalytic.operations import run_operation

    tiny = Lattice((2,) * lattice.ndim, periodic=lattice.periodic)
    corner = [0] * lattice.ndim
    tiny_params = {"start": corner, "goal": [1] * lattice.ndim, "method": params["method"]} if params else {}
    if operation == "distance_field":
        tiny_params = {"sources": [corner]}
    t0 = time.perf_counter()
    run_operation(tiny, operation, tiny_params, backend=backend)
    return (time.perf_counter() - t0) * 1e3


def _one_off(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from catalytic.errors import InvalidInputError, InvalidTypeError, MemoryBudgetError
    from catalytic.operations import run_operation

    operation = {"path": "shortest_path"}.get(args.command, args.command)
    try:
        lattice = _lattice(args)
        show = lattice.vertices >= PROGRESS_MIN_VERTICES and not args.json
        # the bar is the kernels' own progress (a fraction of the work, in per cent), as jobs report it
        with tqdm(total=100, desc=operation, unit="%", disable=not show, file=sys.stderr) as bar:
            params: dict[str, Any] = {}
            if operation == "shortest_path":
                start, goal = _endpoints(lattice, args)
                params = {"start": start, "goal": goal, "method": args.method}
            bar.set_postfix_str("loading kernels")
            startup_ms = _load_kernels(lattice, operation, params, args.backend)
            bar.set_postfix_str("computing")

            def progress(fraction: float) -> None:
                bar.update(max(0, round(100 * fraction) - bar.n))

            answer, _ = run_operation(
                lattice, operation, params, backend=args.backend, max_sizes=CLI_MAX_SIZES, progress=progress
            )
            answer["startup_ms"] = startup_ms
            bar.set_postfix_str("done")
    except (InvalidInputError, InvalidTypeError, MemoryBudgetError) as exc:
        print(f"catalytic {args.command}: {exc}", file=sys.stderr)
        return 2
    if operation == "shortest_path":
        answer = {"start": params["start"], "goal": params["goal"], **answer}
    if args.json:
        print(json.dumps(answer))
    else:
        _print_human(operation, answer)
    return 1 if operation == "shortest_path" and not answer["found"] else 0


def _print_human(operation: str, answer: dict[str, Any]) -> None:
    if operation == "shortest_path" and not answer["found"]:
        print(f"no path from {answer['start']} to {answer['goal']}")
        return
    for key, value in answer.items():
        if key == "path":
            shown = value if len(value) <= 12 else [*value[:5], "...", *value[-5:]]
            value = " -> ".join(str(c) for c in shown)
        print(f"{key:>18}: {value}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``catalytic`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status.

    Examples
    --------
    >>> main(["path", "--shape", "3,3", "--json"])  # doctest: +SKIP
    {"start": [0, 0], "goal": [2, 2], "found": true, ...}
    """
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "worker":
        return _worker(args)
    if args.command == "migrate":
        return _migrate()
    if args.command == "warmup":
        return _warmup(args)
    if args.command == "keys":
        return _keys(args)
    return _one_off(args)


if __name__ == "__main__":
    sys.exit(main())
