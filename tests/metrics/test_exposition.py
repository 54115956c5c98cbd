"""`/metrics` rendering: escaping round-trips through prometheus_client's parsers, empty labels
are left out, `le` prints like Go, OpenMetrics on request, and `promtool check metrics`
accepts the exposition of a store filled by realistic traffic."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable

import pytest
from conftest import require_program
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from monitor.clock import FakeClock
from monitor.demo.workload import generate_lines
from monitor.ingest.files import LineChunk
from monitor.ingest.pipeline import SourcePipeline
from monitor.ingest.schemas import parse_api_usage, parse_inference
from monitor.metrics import families as fam
from monitor.metrics.exposition import Exposition
from monitor.metrics.store import MetricStore

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMTOOL = "/usr/bin/promtool"

AWKWARD_VALUES = [
    'say "hi"',
    "back\\slash",
    "two\nlines",
    "模型-DeepSeek",
    "emoji 🚀 and tab\t",
    "trailing backslash \\",
    '\\n is not a newline, "\\"',
]



def commit_batch(pipeline: SourcePipeline) -> None:
    """What a successful checkpoint does to a pipeline: apply its batch, then clear it."""
    pipeline.apply()
    pipeline.clear()

def store_with_awkward_labels() -> MetricStore:
    store = MetricStore()
    requests = store.register(fam.REQUESTS)
    for i, value in enumerate(AWKWARD_VALUES):
        requests.inc(requests.key(("src", "svc", value, "success")), i + 1)
    return store


Parser = Callable[[str], Iterable[Metric]]


def samples(text: str, parser: Parser = parse_text) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, dict(s.labels), s.value)
            for family in parser(text) for s in family.samples]


@pytest.mark.parametrize("accept", [None, OPENMETRICS])
def test_label_values_round_trip_through_the_parsers(accept: str | None) -> None:
    body, _ = Exposition(store_with_awkward_labels()).render(accept)
    parser = parse_openmetrics if accept else parse_text
    got = {labels["model"]: value for name, labels, value in samples(body.decode(), parser)
           if name == "inferwatch_requests_total"}
    assert got == {value: i + 1 for i, value in enumerate(AWKWARD_VALUES)}


def test_empty_label_values_are_left_out() -> None:
    store = MetricStore()
    requests = store.register(fam.REQUESTS)
    requests.inc(requests.key(("api", "", "deepseek-chat", "success")))
    body, _ = Exposition(store).render(None)
    text = body.decode()
    assert 'service=""' not in text
    (_, labels, value), = samples(text)
    assert labels == {"source": "api", "model": "deepseek-chat", "status": "success"}
    assert value == 1


def test_text_format_by_default() -> None:
    body, content_type = Exposition(store_with_awkward_labels()).render(None)
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# EOF" not in body
    assert Exposition(MetricStore()).render("text/plain")[1].startswith("text/plain")


@pytest.mark.parametrize("accept", [
    OPENMETRICS,
    "application/openmetrics-text; version=1.0.0",
    "application/openmetrics-text",
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4",
])
def test_openmetrics_when_the_accept_header_asks_for_it(accept: str) -> None:
    body, content_type = Exposition(store_with_awkward_labels()).render(accept)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    assert b"# TYPE inferwatch_requests counter" in body
    assert b"inferwatch_requests_total{" in body


def test_histogram_le_values_print_like_go_and_are_cumulative() -> None:
    store = MetricStore()
    durations = store.register(fam.REQUEST_DURATION)
    counts = [0] * (len(fam.DURATION_BUCKETS) + 1)
    counts[fam.DURATION_BUCKETS.index(10.0)] = 2
    counts[-1] = 1
    durations.merge_histogram(durations.key(("s", "v", "m")), counts, 700.0, 3)
    body, _ = Exposition(store).render(None)
    text = body.decode()
    assert 'le="10"' in text
    assert 'le="0.025"' in text
    assert 'le="+Inf"' in text
    assert 'le="10.0"' not in text
    buckets = {labels["le"]: value for name, labels, value in samples(text)
               if name.endswith("_bucket")}
    assert buckets["7.5"] == 0
    assert buckets["10"] == 2
    assert buckets["600"] == 2
    assert buckets["+Inf"] == 3
    got = {name: value for name, _, value in samples(text) if not name.endswith("_bucket")}
    assert got == {"inferwatch_request_duration_seconds_count": 3,
                   "inferwatch_request_duration_seconds_sum": 700.0}


def test_families_without_series_are_not_exposed() -> None:
    store = MetricStore()
    store.register(fam.REQUESTS)
    body, _ = Exposition(store).render(None)
    assert body == b""


def test_overflow_series_and_dropped_counter_are_exposed() -> None:
    store = MetricStore(series_limit=1)
    requests = store.register(fam.REQUESTS)
    for model in ("a", "b", "c"):
        requests.inc(requests.key(("s", "v", model, "success")))
    got = {(name, labels.get("model"), labels.get("family")): value
           for name, labels, value in samples(Exposition(store).render(None)[0].decode())}
    assert got == {
        ("inferwatch_requests_total", "a", None): 1,
        ("inferwatch_requests_total", "__overflow__", None): 2,
        ("inferwatch_series_dropped_total", None, "inferwatch_requests"): 2,
    }


# -- promtool ------------------------------------------------------------------------------------


def realistic_store() -> MetricStore:
    store = MetricStore()
    for name, schema_name, schema, labels in (
        ("inference", "inference", parse_inference, {"service": "deepseek-r1", "team": "ml"}),
        ("api", "api_usage", parse_api_usage, {}),
    ):
        pipeline = SourcePipeline(name=name, schema=schema, store=store, clock=FakeClock(),
                                  static_labels=labels, user_label=True)
        lines = [g.data.rstrip(b"\n") for g in generate_lines(2000, schema_name, seed=3,
                                                                error_rate=0.1)]
        pipeline.process(LineChunk([*lines, b"garbage", b"[]"], 1, 0), "demo.log")
        commit_batch(pipeline)
    for spec in (fam.LOG_LINES, fam.LOG_LAG_BYTES, fam.LOG_FILES, fam.LOG_READ_ERRORS,
                 fam.CHECKPOINT_FAILURES):
        store.register(spec)
    lag = store.register(fam.LOG_LAG_BYTES)
    lag.set(lag.key(("inference",)), 1234)
    files = store.register(fam.LOG_FILES)
    files.set(files.key(("inference",)), 2)
    failures = store.register(fam.CHECKPOINT_FAILURES)
    failures.inc(failures.key(()))
    info = store.register(fam.BUILD_INFO)
    info.set(info.key(("0.1.0",)), 1)
    return store


@pytest.mark.integration
def test_promtool_check_metrics_accepts_a_realistic_exposition() -> None:
    # promtool lints the text format, which is what Prometheus scrapes by default.
    promtool = require_program("promtool", "prometheus")
    body, _ = Exposition(realistic_store()).render(None)
    assert body.count(b"\n") > 500
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                            timeout=30, check=False)
    output = (result.stdout + result.stderr).decode()
    assert (result.returncode, output) == (0, "")


def test_a_label_with_a_lone_surrogate_renders_as_a_replacement_character() -> None:
    # From a config label or any other route than the log pipeline: the store's label
    # cleaning is where every label value passes.
    store = MetricStore()
    requests = store.register(fam.REQUESTS)
    requests.inc(requests.key(("src", "svc\udcff", "m", "success")))
    body, _ = Exposition(store).render(None)
    assert 'service="svc\ufffd"'.encode() in body
