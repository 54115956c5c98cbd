"""The sampler interface: something that reads the machine and writes the metric store.

A sampler reads its source (psutil, NVML, an HTTP endpoint) and writes gauges and mirrored
counters of the metric store. The store belongs to the event loop: a sampler whose reads may
block (NVML calls can hang on a sick GPU) does them in a worker thread with a deadline and
writes the store back on the loop. `monitor/samplers/runner.py` calls `sample()` every
`interval_s`; an exception costs that sample only (logged, counted in
`<ns>_sampler_failures_total{sampler}`), never the loop.
"""

from __future__ import annotations

from typing import Protocol


class Sampler(Protocol):
    @property
    def name(self) -> str:
        """Short and stable: the `sampler` label of the failure counter ("host", "gpu")."""
        ...

    @property
    def interval_s(self) -> float: ...

    async def sample(self) -> None:
        """Read the source once and update the store."""
        ...

    async def close(self) -> None:
        """Release what the sampler holds (threads, sessions, libraries)."""
        ...
