"""A simulated GPU for `inferwatch demo`: labelled as simulated everywhere it shows.

The demo host usually has no GPU, yet the GPU alerts are half of what a newcomer wants to see.
This sampler writes the GPU families for one device whose `gpu_info` says what it is
(`name="Simulated GPU (inferwatch demo, not a real device)"`, `uuid="GPU-SIMULATED-DEMO"`,
`driver_version="simulated"`): a 24 GiB card serving at about 60 % of its memory, which
climbs during the `gpu_memory_climb` incident to 97 % (a KV cache that keeps growing), holds,
and drops back at the incident's end (the model server restarted). It is used only by the
demo, never by `inferwatch run`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from monitor.clock import Clock
from monitor.demo.lines import Incident, IncidentKind
from monitor.metrics import families as fam
from monitor.metrics.store import MetricStore

TOTAL_BYTES = 24 * 1024**3
BASELINE_RATIO = 0.60
PEAK_RATIO = 0.97
CLIMB_SHARE = 2 / 3  # of the incident: climbing; the rest: holding at the peak
LABELS = ("0", "GPU-SIMULATED-DEMO")
NAME = "Simulated GPU (inferwatch demo, not a real device)"


def memory_ratio(elapsed_s: float, incidents: Sequence[Incident]) -> float:
    """The simulated share of GPU memory in use, `elapsed_s` into the demo."""
    for incident in incidents:
        if incident.kind != IncidentKind.GPU_MEMORY_CLIMB:
            continue
        into = elapsed_s - incident.start_s
        if 0 <= into < incident.duration_s:
            climb = incident.duration_s * CLIMB_SHARE
            progress = min(1.0, into / climb) if climb > 0 else 1.0
            return BASELINE_RATIO + (PEAK_RATIO - BASELINE_RATIO) * progress
    return BASELINE_RATIO


class SimulatedGpuSampler:
    """Implements monitor.samplers.base.Sampler for the demo's one simulated device."""

    def __init__(self, *, store: MetricStore, clock: Clock, incidents: Sequence[Incident],
                 started: float, rng: random.Random, interval_s: float = 1.0) -> None:
        self._store = store
        self._clock = clock
        self._incidents = tuple(incidents)
        self._started = started
        self._rng = rng
        self._interval_s = interval_s
        self._energy_j = 0.0
        self._last: float | None = None

    @property
    def name(self) -> str:
        return "gpu-simulated"

    @property
    def interval_s(self) -> float:
        return self._interval_s

    async def sample(self) -> None:
        now = self._clock.time()
        elapsed = now - self._started
        ratio = memory_ratio(elapsed, self._incidents)
        busy = min(1.0, max(0.0, 0.55 + 0.25 * math.sin(elapsed / 20) + self._rng.gauss(0, 0.05)))
        power = 70.0 + 230.0 * busy
        if self._last is not None:
            self._energy_j += power * max(0.0, now - self._last)
        self._last = now
        store = self._store
        store.register(fam.GPU_INFO).set(
            store.register(fam.GPU_INFO).key((*LABELS, NAME, "simulated")), 1.0)
        for spec, value in ((fam.GPU_UP, 1.0), (fam.GPU_MEMORY_TOTAL, float(TOTAL_BYTES)),
                            (fam.GPU_MEMORY_USED, float(round(TOTAL_BYTES * ratio))),
                            (fam.GPU_UTILIZATION, busy),
                            (fam.GPU_TEMPERATURE, 45.0 + 35.0 * busy),
                            (fam.GPU_POWER, power)):
            family = store.register(spec)
            family.set(family.key(LABELS), value)
        energy = store.register(fam.GPU_ENERGY)
        energy.set_total(energy.key(LABELS), self._energy_j)

    async def close(self) -> None:
        return None
