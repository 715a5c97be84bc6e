"""The loop every periodic job of a server process shares: a round now, then one every ``interval_s``, on a task
of its own, until :meth:`Periodic.close`. A failed round is logged and the next one runs as planned."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging

__all__ = ["Periodic"]


class Periodic(abc.ABC):
    """Base of the probes and the sweepers; subclasses define :meth:`run_once`, ``interval_s`` and ``task_name``."""

    task_name = "catalytic-periodic"
    failure = "periodic round failed"
    """Logged, with the traceback, when a round raises."""
    interval_s: float
    _task: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def run_once(self) -> object:
        """One round."""

    def start(self) -> None:
        """Run a round now and every ``interval_s`` until :meth:`close`."""
        self._task = asyncio.create_task(self._loop(), name=self.task_name)

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                logging.getLogger(type(self).__module__).exception(self.failure)
            await asyncio.sleep(self.interval_s)

    async def close(self) -> None:
        """Stop the loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
