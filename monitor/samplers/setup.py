"""The samplers a configuration asks for (the GPU sampler is opened by the daemon, because
whether NVML loads decides whether it exists)."""

from __future__ import annotations

from monitor.clock import Clock
from monitor.config import Config
from monitor.metrics.store import MetricStore
from monitor.samplers.base import Sampler
from monitor.samplers.host import HostSampler
from monitor.samplers.probes import ProbeSampler
from monitor.samplers.processes import ProcessSampler


def build_samplers(config: Config, *, store: MetricStore, clock: Clock) -> list[Sampler]:
    samplers: list[Sampler] = []
    if config.host.enabled:
        samplers.append(HostSampler(config.host, store=store, clock=clock))
    if config.processes:
        # Processes have no interval of their own: they are part of the host's picture.
        samplers.append(ProcessSampler(config.processes, store=store,
                                       interval_s=config.host.interval, clock=clock))
    samplers.extend(ProbeSampler(probe, store=store, clock=clock) for probe in config.probes)
    return samplers
