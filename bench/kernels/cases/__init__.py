"""The cases of the kernels suite, one module each, in the order they run and are reported.

Adding a case: a module with ``NAME`` and ``run(cfg) -> Case``, listed in ``MODULES``, with its shape and
obstacle density in :func:`bench.kernels.config.config`.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.kernels.cases import corner_5d, grid_2d_4096, grid_3d_200, grid_5d_20, pairs_5d
from bench.kernels.config import Config
from bench.kernels.rows import Case

MODULES = (corner_5d, pairs_5d, grid_5d_20, grid_3d_200, grid_2d_4096)
RUNNERS: dict[str, Callable[[Config], Case]] = {module.NAME: module.run for module in MODULES}
CASES = tuple(RUNNERS)
