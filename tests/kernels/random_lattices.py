"""Random lattices for the kernels' cross-checks: shapes drawn per axis count, random periodic axes and
obstacle densities, all from one seed."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from catalytic.lattice import Lattice


def random_lattice(seed: int, ndim: int, sides: Mapping[int, int]) -> Lattice:
    """A lattice of ``ndim`` axes, each of 1 to ``sides[ndim]`` vertices, periodic at random, with 0 to 45 %
    random obstacles."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, sides[ndim] + 1, size=ndim))
    periodic = [bool(flag) for flag in rng.integers(0, 2, size=ndim)]
    p = float(rng.uniform(0.0, 0.45))
    return Lattice(shape, periodic=periodic, obstacles=[{"kind": "random", "p": p, "seed": seed}])
