"""Ray execution: batches of queries over workers, and lattices partitioned into slabs across actors.

Ray is imported lazily, inside the functions that need it; importing this package does not import Ray.
Every function connects to ``address``, else ``RAY_ADDRESS`` when set, else a local Ray it starts (or the one
this process already started). Answers are identical to the single-node kernels (:mod:`catalytic.kernels`).

* :func:`batch_shortest_paths`, :func:`batch_distance_fields`: many queries of one lattice; one actor per
  worker keeps the lattice materialised once; results in order; a progress bar (tqdm.auto).
* :class:`PartitionedLattice`, :func:`partitioned_distance_field`, :func:`partitioned_shortest_path`,
  :func:`partitioned_components`: a lattice held as slabs along axis 0, exchanging boundary faces per round.
* :func:`run_job_on_ray`: the service's hand-off of one operation when ``RAY_ADDRESS`` is set.
"""

from __future__ import annotations

from catalytic.distributed._runtime import connect
from catalytic.distributed.batch import batch_distance_fields, batch_shortest_paths
from catalytic.distributed.hook import run_job_on_ray
from catalytic.distributed.partition import (
    PartitionedLattice,
    partitioned_components,
    partitioned_distance_field,
    partitioned_shortest_path,
)

__all__ = [
    "PartitionedLattice",
    "batch_distance_fields",
    "batch_shortest_paths",
    "connect",
    "partitioned_components",
    "partitioned_distance_field",
    "partitioned_shortest_path",
    "run_job_on_ray",
]
