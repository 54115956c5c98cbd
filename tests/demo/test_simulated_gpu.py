"""The demo's simulated GPU (monitor/demo/gpu.py): labelled as simulated, its memory climbing
past the demo rule's 90 % during the incident and back after it."""

from __future__ import annotations

import random

from monitor.clock import FakeClock
from monitor.demo.gpu import NAME, SimulatedGpuSampler, memory_ratio
from monitor.demo.lines import Incident, IncidentKind, default_incident_schedule
from monitor.metrics.store import GaugeSeries, MetricStore

CLIMB = Incident(IncidentKind.GPU_MEMORY_CLIMB, 100.0, 30.0)


def test_memory_climbs_during_the_incident_and_drops_after_it() -> None:
    assert memory_ratio(50, [CLIMB]) == 0.60
    assert 0.60 < memory_ratio(110, [CLIMB]) < 0.90
    assert memory_ratio(125, [CLIMB]) == 0.97  # holding at the peak
    assert memory_ratio(130, [CLIMB]) == 0.60  # the incident is over
    climbs = [i for i in default_incident_schedule(600) if i.kind == "gpu_memory_climb"]
    assert len(climbs) == 1


async def test_every_series_says_it_is_simulated() -> None:
    clock = FakeClock()
    store = MetricStore()
    sampler = SimulatedGpuSampler(store=store, clock=clock, incidents=[CLIMB],
                                  started=clock.time(), rng=random.Random(1))
    clock.advance(125)
    await sampler.sample()
    info = store.family("inferwatch_gpu_info")
    assert info is not None
    [(labels, _)] = info.series.items()
    assert dict(labels) == {"gpu": "0", "uuid": "GPU-SIMULATED-DEMO", "name": NAME,
                            "driver_version": "simulated"}
    used = store.family("inferwatch_gpu_memory_used_bytes")
    total = store.family("inferwatch_gpu_memory_total_bytes")
    assert used is not None and total is not None
    [used_series] = used.series.values()
    [total_series] = total.series.values()
    assert isinstance(used_series, GaugeSeries) and isinstance(total_series, GaugeSeries)
    assert used_series.value / total_series.value > 0.9
