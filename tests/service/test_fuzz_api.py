"""The whole API document fuzzed in process: schemathesis over every operation, seeded and bounded.

Schemathesis reads /openapi.json from the app and calls it over ASGI (no socket), with its server-error,
response-schema and status-code checks. The app runs its lifespan once for the module, on SQLite, with the
webhook worker off and small vertex limits, so a fuzzed lattice stays small. A socket guard refuses, in this
process, every connection and name lookup that is not loopback: a fuzzed webhook URL can be a public address.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from catalytic.service.app import create_app
from catalytic.service.settings import Settings

pytestmark = [
    pytest.mark.slow,
    # schemathesis's own strategies draw from the random module; Hypothesis warns about that, not about this test
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

EXAMPLES_PER_OPERATION = 30
MIN_CASES = 800  # 30 examples over every operation give about 870
_LOOPBACK_NAMES = frozenset({"localhost", "testserver"})


def _is_loopback(host: Any) -> bool:
    if not isinstance(host, str | bytes):
        return False
    name = host.decode() if isinstance(host, bytes) else host
    if name.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="module")
def loopback_only() -> Iterator[None]:
    """Refuse every non-loopback connection and name lookup in this process while the fuzzer runs."""
    patch = pytest.MonkeyPatch()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def guarded(address: Any) -> None:
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            raise PermissionError(f"the test's socket guard refuses a connection to {address[0]!r}")

    def connect(self: socket.socket, address: Any) -> None:
        guarded(address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        guarded(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(host):
            raise socket.gaierror(socket.EAI_NONAME, f"the test's socket guard refuses to look up {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    patch.setattr(socket.socket, "connect", connect)
    patch.setattr(socket.socket, "connect_ex", connect_ex)
    patch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield
    patch.undo()


@pytest.fixture(scope="module")
def fuzz_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root: Path = tmp_path_factory.mktemp("fuzz")
    return Settings(
        CATALYTIC_SQLITE_PATH=str(root / "catalytic.db"),
        RESULTS_DIR=str(root / "results"),
        METRICS_PORT=0,
        CATALYTIC_WEBHOOK_WORKER=False,
        PARALLEL_CORES=1,
        LOG_LEVEL="CRITICAL",
        CATALYTIC_MAX_REQUEST_VERTICES=4096,
        CATALYTIC_INLINE_MAX_VERTICES=512,
        CATALYTIC_MAX_BODY_BYTES=256 * 1024,
        CATALYTIC_REQUEST_TIMEOUT_S=20,
        # schemathesis's ASGI client sends Host: testserver
        CATALYTIC_ALLOWED_HOSTS="testserver,localhost,127.0.0.1",
    )


@pytest.fixture(scope="module")
def api_schema(loopback_only: None, fuzz_settings: Settings) -> Any:
    from schemathesis.python import asgi

    app = create_app(fuzz_settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    with asgi.get_client(app) as client:  # the lifespan is running: wait for the kernels to load
        for _ in range(600):
            if client.get("/ready").status_code == 200:
                break
            time.sleep(0.1)
    schema.config.generation.update(max_examples=EXAMPLES_PER_OPERATION, deterministic=True, database="none")
    return schema


def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """Schemathesis's server-error check, except for a documented 503 that says when to retry.

    A backend asked for by name that this server lacks (``cupy`` without a GPU) is 503 with Retry-After by
    design: another replica may have it. Any other 5xx, and a 503 without Retry-After, still fails.
    """
    if response.status_code == 503 and "retry-after" in {k.lower() for k in response.headers}:
        return True
    return not_a_server_error(ctx, response, case)


_CHECKS = [no_server_error, response_schema_conformance, status_code_conformance]


def _fuzz(operation: Any, cases: list[str]) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,  # a fixed seed: the same cases every run
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # shrinking a failure could take minutes; report it as found
    )
    @given(case=st.one_of(*(operation.as_strategy(mode) for mode in GenerationMode)))
    def run(case: Any) -> None:
        cases.append(operation.label)
        case.call_and_validate(checks=_CHECKS)

    run()


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    for inner in getattr(exc, "exceptions", ()):  # Hypothesis and schemathesis group what they found
        text += "\n  " + _describe(inner).replace("\n", "\n  ")
    return text


def test_every_operation_answers_as_documented(api_schema: Any) -> None:
    # pytest-subtests style reporting of schemathesis's own pytest plugin does not run on this pytest; the
    # operations are fuzzed one after another here, and every failure is reported at the end.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    cases: list[str] = []
    failures: dict[str, str] = {}
    for operation in operations:
        try:
            _fuzz(operation, cases)
        except (Exception, BaseExceptionGroup) as exc:  # failed checks, with the requests that caused them
            failures[operation.label] = _describe(exc)
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
    assert set(cases) == {operation.label for operation in operations}
    assert len(cases) >= MIN_CASES, f"{len(cases)} cases"
    print(f"fuzzed {len(cases)} cases over {len(operations)} operations")  # the figures a run reports (pytest -s)


def test_the_socket_guard_refuses_public_addresses(loopback_only: None) -> None:
    with socket.socket() as sock, pytest.raises(PermissionError):
        sock.connect(("93.184.215.14", 443))
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("hooks.example", 443)
    assert socket.getaddrinfo("127.0.0.1", 80)
