"""Parse functions for the parse-process tests; a module of their own, so that a spawned parse process imports them.

They stand in for :func:`catalytic.service.bodies.parse_body` and take the same arguments.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from catalytic.service.bodies import parse_body

GATE_WAIT_S = 30.0
"""How long a gated parse waits for its release before going on anyway (so a broken test fails, not hangs)."""


def gated_parse(model: Any, raw: bytes, max_vertices: int) -> Any:
    """Parse only once the file named by the body's ``"gate"`` marker exists; write ``<gate>.started`` first.

    The gate path is carried in the body's first bytes as ``{"__gate__":"<path>"}`` followed by the real body.
    """
    header, _, body = raw.partition(b"\n")
    gate = Path(header.decode())
    gate.with_suffix(".started").write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + GATE_WAIT_S
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return parse_body(model, body, max_vertices)


def dying_parse(model: Any, raw: bytes, max_vertices: int) -> Any:
    """End the parse process on a body that holds ``"die"``; parse any other as usual."""
    if b'"die"' in raw:
        os._exit(1)
    return parse_body(model, raw, max_vertices)
