"""What a million output tokens of a self-hosted model cost, from its GPU's hourly price.

A source with `gpu_hourly_cost` (in cost.currency) gets
`self_hosted_cost_per_million_tokens{source,currency}` = gpu_hourly_cost / (output tokens of
the last hour / 1e6): the number to set beside an API's output price when deciding between a
hosted API and one's own GPU server. The hour's output comes from the local series store
(`increase(<ns>_output_tokens_total{source=...}[1h])`), so it reads what Prometheus would; a
source that produced no tokens in the last hour has no value (the series is removed), never
an infinite one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from monitor.clock import Clock
from monitor.config import SourceConfig
from monitor.metrics import families as fam
from monitor.metrics.store import MetricStore
from monitor.promql.engine import Engine, QueryError
from monitor.promql.values import Sample

log = logging.getLogger(__name__)

WINDOW = "1h"


class SelfHostedCost:
    def __init__(self, *, engine: Engine, store: MetricStore, clock: Clock) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self._gauge = store.register(fam.SELF_HOSTED_COST_PER_MILLION_TOKENS)
        self._output = store.full_name(fam.OUTPUT_TOKENS) + "_total"

    def update(self, sources: Sequence[SourceConfig], currency: str) -> None:
        wanted = {}
        t_ms = int(self.clock.time() * 1000)
        for source in sources:
            if source.gpu_hourly_cost is None:
                continue
            tokens = self._tokens_last_hour(source.name, t_ms)
            if tokens is None or tokens <= 0:
                continue
            per_million = float(source.gpu_hourly_cost) / (tokens / 1e6)
            wanted[self._gauge.key((source.name, currency))] = per_million
        for stale in set(self._gauge.series) - set(wanted):
            self._gauge.remove(stale)
        for key, value in wanted.items():
            self._gauge.set(key, value)

    def _tokens_last_hour(self, source: str, t_ms: int) -> float | None:
        quoted = source.replace("\\", "\\\\").replace('"', '\\"')
        expr = f'sum(increase({self._output}{{source="{quoted}"}}[{WINDOW}]))'
        try:
            value = self.engine.instant(expr, t_ms)
        except QueryError as exc:
            log.warning("self-hosted cost of source %s: %s", source, exc)
            return None
        if not isinstance(value, list) or not value:
            return None
        sample = value[0]
        if not isinstance(sample, Sample) or not math.isfinite(sample.v):
            return None
        return sample.v
