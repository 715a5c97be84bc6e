"""How the service's metrics are served: the registry of the metrics port, the port itself, the multiprocess directory.

This module defines no metric of its own: the supervising process of ``catalytic serve --workers N`` imports it
to serve the aggregate of its workers' samples, and a metric defined here would add that process's zeros to the
aggregate (a ``min`` gauge would then read 0 for ever). The GPU memory gauges are read at scrape time, in
whichever process serves the port, so they need no file of their own.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

__all__ = ["GpuMemoryCollector", "clear_multiprocess_dir", "scrape_registry", "start_metrics_server"]

log = logging.getLogger("catalytic.service")

_server_lock = threading.Lock()
_server_started = False
_gpu_lock = threading.Lock()
_gpu_on_default = False


def clear_multiprocess_dir(path: str) -> int:
    """Delete the sample files left in ``path`` by processes of an earlier start; returns how many.

    Called once by the process that owns the directory, before any process writes to it. A Kubernetes
    ``emptyDir`` outlives a container restart, and without this a restarted pod would keep serving the
    counters and gauges of its dead processes beside its own.
    """
    removed = 0
    for name in glob.glob(os.path.join(path, "*.db")):
        try:
            os.remove(name)
        except FileNotFoundError:
            continue
        removed += 1
    if removed:
        log.info("removed %d stale metric files from %s", removed, path)
    return removed


class GpuMemoryCollector(Collector):
    """``gpu_memory_used_bytes`` and ``gpu_memory_total_bytes`` per visible GPU, read from NVML at scrape time.

    The reading is the device's: under the NVIDIA device plugin a GPU is given whole to one pod, so on a
    GPU pod it is the memory held by this pod's processes (the server and its compute and job processes),
    whose process ids NVML cannot always match from inside a container's PID namespace. Without a driver
    (a CPU node) nothing is emitted.

    Parameters
    ----------
    nvml : module, optional
        ``cuda.bindings.nvml`` or a stand-in with ``init_v2``, ``device_get_count_v2``,
        ``device_get_handle_by_index_v2`` and ``device_get_memory_info_v2``; imported on first use by default.
    """

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml
        self._ready: bool | None = None

    def _library(self) -> Any:
        if self._ready is None:
            try:
                if self._nvml is None:
                    from cuda.bindings import nvml

                    self._nvml = nvml
                self._nvml.init_v2()
                self._ready = True
            except Exception as exc:  # no driver, no library, no device: a CPU node, nothing to report
                log.debug("NVML unavailable, no GPU memory metrics: %s", exc)
                self._ready = False
        return self._nvml if self._ready else None

    def describe(self) -> list[Any]:
        """Nothing up front: whether there are samples is known only when NVML is asked."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield both gauges, one sample per GPU NVML lists."""
        nvml = self._library()
        if nvml is None:
            return
        used = GaugeMetricFamily(
            "gpu_memory_used_bytes",
            "Device memory in use on each GPU visible to this pod (NVML; the device plugin gives a GPU to one pod).",
            labels=["gpu"],
        )
        total = GaugeMetricFamily(
            "gpu_memory_total_bytes", "Device memory of each GPU visible to this pod.", labels=["gpu"]
        )
        try:
            for index in range(int(nvml.device_get_count_v2())):
                memory = nvml.device_get_memory_info_v2(nvml.device_get_handle_by_index_v2(index))
                used.add_metric([str(index)], float(memory.used))
                total.add_metric([str(index)], float(memory.total))
        except Exception as exc:  # a GPU lost mid-scrape must not fail the scrape of every other metric
            log.warning("NVML read failed: %s", exc)
            return
        yield used
        yield total


def scrape_registry() -> Any:
    """The registry the metrics port serves: the multiprocess aggregate when configured, else the default.

    Either way it includes the GPU memory gauges (:class:`GpuMemoryCollector`).
    """
    global _gpu_on_default
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        registry.register(GpuMemoryCollector())
        return registry
    from prometheus_client import REGISTRY

    with _gpu_lock:
        if not _gpu_on_default:
            REGISTRY.register(GpuMemoryCollector())
            _gpu_on_default = True
    return REGISTRY


def start_metrics_server(port: int, host: str = "0.0.0.0") -> bool:
    """Serve ``/metrics`` on its own port in a daemon thread, once per process.

    Returns False when the port is taken (another worker of this server already serves the aggregate).
    """
    global _server_started
    with _server_lock:
        if _server_started:
            return True
        try:
            start_http_server(port, addr=host, registry=scrape_registry())
        except OSError as exc:
            log.info("metrics port %d not bound by this process: %s", port, exc)
            return False
        _server_started = True
        log.info("metrics served on %s:%d", host, port)
        return True
