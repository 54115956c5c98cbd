"""The real-Prometheus harness itself: start, reload, scrape a target, query, clean up.

Prometheus scrapes its own /metrics (the only target that needs nothing else running), so a
failure here is the harness's, not the daemon's. Skips without /usr/bin/prometheus unless
INFERWATCH_REQUIRE_INTEGRATION=1, then fails.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from real_prometheus import (
    PrometheusError,
    PrometheusTimeout,
    prometheus_binary,
    running_prometheus,
    scrape_config,
)

pytestmark = pytest.mark.integration


def test_scrapes_reloads_and_answers_queries(tmp_path: Path) -> None:
    binary = prometheus_binary()
    # Its own port is known only once it runs: start with no target, then reload with itself.
    with running_prometheus(binary, tmp_path / "prom", scrape_config({})) as prom:
        start = time.time()
        host = prom.url.removeprefix("http://")
        prom.reload(scrape_config({"self": [host]}))
        targets = prom.wait_for_targets_up(1, timeout=20)
        assert [t["labels"]["job"] for t in targets] == ["self"]
        series = prom.wait_for_series('up{job="self"} == 1', timeout=20)
        assert series[0]["metric"]["instance"] == host
        matrix = prom.query_range('up{job="self"}', start=start, end=time.time() + 1, step=1)
        assert matrix
        assert matrix[0]["values"]
        assert prom.series('up{job="self"}')
        with pytest.raises(PrometheusError):
            prom.query("sum(")
        with pytest.raises(PrometheusTimeout):
            prom.wait_for_series('up{job="nobody"}', timeout=0.3)
    assert prom.process.poll() is not None
