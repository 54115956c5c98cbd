"""SourcePipeline: bad lines are counted and never block the next, filters and labels, and
`apply()` puts exactly the right values into the metric store, checked against the truth the
demo generator reports for every line it writes."""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

import orjson
import pytest

from monitor.clock import FakeClock
from monitor.demo.lines import GeneratedLine
from monitor.demo.workload import generate_lines
from monitor.ingest.decoders import FAST_DECODERS
from monitor.ingest.files import LineChunk
from monitor.ingest.pipeline import SourcePipeline, build_filter
from monitor.ingest.schemas import Schema, parse_api_usage, parse_inference
from monitor.metrics import families as fam
from monitor.metrics.exposition import Exposition
from monitor.metrics.store import CounterSeries, HistogramSeries, LabelKey, MetricStore

TS = "2026-01-18T06:07:46.123Z"



def commit_batch(pipeline: SourcePipeline) -> None:
    """What a successful checkpoint does to a pipeline: apply its batch, then clear it."""
    pipeline.apply()
    pipeline.clear()

def line(**fields: Any) -> bytes:
    record: dict[str, Any] = {"timestamp": TS, "service": "svc", "duration_ms": 1000.0}
    record.update(fields)
    return orjson.dumps({k: v for k, v in record.items() if v is not ...})


FAST_DECODER_OF = {parse_inference: FAST_DECODERS["inference"],
                   parse_api_usage: FAST_DECODERS["api_usage"]}


@pytest.fixture(params=["dict path", "fast path"])
def fast(request: pytest.FixtureRequest) -> bool:
    """Run a test through the dict parser and through the typed fast decoder."""
    return bool(request.param == "fast path")


def make_pipeline(
    store: MetricStore | None = None, *, name: str = "inf", schema: Schema = parse_inference,
    fast: bool = False, **options: Any,
) -> SourcePipeline:
    decoder = FAST_DECODER_OF[schema] if fast else None
    return SourcePipeline(name=name, schema=schema, store=store or MetricStore(),
                          fast_decoder=decoder, clock=FakeClock(), **options)


def feed(pipeline: SourcePipeline, lines: list[bytes], oversized: int = 0) -> int:
    return pipeline.process(LineChunk(lines, oversized, 0), "test.log")


def counters(store: MetricStore, spec_name: str) -> dict[LabelKey, float]:
    family = store.family(f"inferwatch_{spec_name}")
    assert family is not None
    out = {}
    for key, series in family.series.items():
        assert isinstance(series, CounterSeries)
        out[key] = series.value
    return out


def total(store: MetricStore, spec_name: str, **labels: str) -> float:
    return sum(value for key, value in counters(store, spec_name).items()
               if all((n, v) in key for n, v in labels.items()))


def histogram(store: MetricStore, spec_name: str, key: LabelKey) -> HistogramSeries:
    family = store.family(f"inferwatch_{spec_name}")
    assert family is not None
    series = family.series[key]
    assert isinstance(series, HistogramSeries)
    return series


def results(store: MetricStore, source: str = "inf") -> dict[str, float]:
    return {dict(key)["result"]: value for key, value in counters(store, "log_lines").items()
            if dict(key)["source"] == source}


# -- bad lines ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    b'{"timestamp": "\xff\xfe", "duration_ms": 1}',  # invalid UTF-8
    b"\xc3\x28",
    b'{"timestamp": ',  # cut JSON
    b"not json at all",
    b"{'single': 'quotes'}",
    b"[1, 2, 3]",
    b'"a string"',
    b"42",
    b"null",
    b"true",
    line(timestamp=...),
    line(duration_ms=...),
    line(duration_ms="1000"),
    line(duration_ms=-3),
    line(duration_ms=True),
    line(timestamp=True),
    line(timestamp="soon"),
], ids=lambda b: b[:24].decode("utf-8", "replace"))
def test_a_bad_line_is_malformed_and_the_next_line_is_still_read(bad: bytes, fast: bool) -> None:
    store = MetricStore()
    pipeline = make_pipeline(store, fast=fast)
    assert feed(pipeline, [bad, line()]) == 2
    commit_batch(pipeline)
    assert results(store) == {"malformed": 1, "parsed": 1}
    assert total(store, "requests") == 1


def test_a_level_that_is_not_a_string_neither_raises_nor_blocks_the_next_line(fast: bool) -> None:
    store = MetricStore()
    pipeline = make_pipeline(store, fast=fast)
    feed(pipeline, [line(level=["ERROR"]), line()])
    commit_batch(pipeline)
    assert results(store) == {"parsed": 2}


@pytest.mark.parametrize("blank", [b"", b" ", b"\t  ", b"\r", b" \r"])
def test_empty_and_whitespace_lines_are_not_counted_at_all(blank: bytes, fast: bool) -> None:
    store = MetricStore()
    pipeline = make_pipeline(store, fast=fast)
    feed(pipeline, [blank, blank])
    commit_batch(pipeline)
    assert results(store) == {}
    assert total(store, "requests") == 0


@pytest.mark.parametrize("fields", [
    {"input_tokens": "1136"}, {"input_tokens": True}, {"output_tokens": [1]}, {"ttft_ms": "x"},
    {"status": True}, {"user_id": 7},
])
def test_a_wrong_optional_field_is_ignored_and_the_request_counted(
    fields: dict[str, Any], fast: bool,
) -> None:
    store = MetricStore()
    pipeline = make_pipeline(store, fast=fast)
    feed(pipeline, [line(**fields)])
    commit_batch(pipeline)
    assert results(store) == {"parsed": 1}
    assert total(store, "requests", status="success") == 1
    assert total(store, "input_tokens") == 0


def test_oversized_lines_reported_by_the_tailer_are_counted(fast: bool) -> None:
    store = MetricStore()
    pipeline = make_pipeline(store, fast=fast)
    assert feed(pipeline, [line()], oversized=2) == 3
    assert pipeline.pending_lines == 3
    commit_batch(pipeline)
    assert results(store) == {"parsed": 1, "oversized": 2}
    assert pipeline.pending_lines == 0


def test_malformed_lines_are_logged_at_most_once_a_minute_without_their_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    pipeline = SourcePipeline(name="inf", schema=parse_inference, store=MetricStore(),
                              clock=clock)
    secret = b'{"prompt_truncated": "TOP-SECRET-PROMPT", '
    with caplog.at_level(logging.WARNING, logger="monitor.ingest.pipeline"):
        feed(pipeline, [secret] * 5)
        clock.advance(59.0)
        feed(pipeline, [secret])
        clock.advance(1.0)
        feed(pipeline, [secret])
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert "skipped 1 malformed" in warnings[0]
    assert "skipped 6 malformed" in warnings[1]  # the 4 after the first, then 1 + 1
    assert all("TOP-SECRET" not in w for w in warnings)


# -- filters and labels ---------------------------------------------------------------------


def test_include_and_exclude_filters_count_filtered_lines() -> None:
    store = MetricStore()
    keep = build_filter({"service": re.compile("^svc$"), "meta.env": re.compile("prod")},
                        {"meta.route": re.compile("^/health")})
    pipeline = make_pipeline(store, line_filter=keep)
    feed(pipeline, [
        line(meta={"env": "prod", "route": "/v1/chat"}),  # kept
        line(meta={"env": "prod-eu"}),  # kept: re.search, not a full match
        line(meta={"env": "staging"}),  # include fails
        line(service="other", meta={"env": "prod"}),  # include fails
        line(meta={"route": "/v1"}),  # include path missing
        line(meta={"env": "prod", "route": "/health/live"}),  # excluded
        line(timestamp=..., meta={"env": "staging"}),  # filtered before its schema is checked
    ])
    commit_batch(pipeline)
    assert results(store) == {"parsed": 2, "filtered": 5}
    assert total(store, "requests") == 2


def test_no_filter_when_neither_include_nor_exclude() -> None:
    assert build_filter({}, {}) is None


def test_static_labels_override_service_and_model_and_add_extra_labels(fast: bool) -> None:
    store = MetricStore()
    pipeline = make_pipeline(store, fast=fast, static_labels={
        "service": "deepseek-r1", "model": "r1-1.5b", "team": "ml", "env": "prod"})
    feed(pipeline, [line(service="ignored", model="ignored-too")])
    commit_batch(pipeline)
    assert counters(store, "requests") == {
        (("source", "inf"), ("service", "deepseek-r1"), ("model", "r1-1.5b"),
         ("status", "success"), ("env", "prod"), ("team", "ml")): 1.0,
    }


@pytest.mark.parametrize("user_label", [False, True])
def test_user_label_only_when_enabled(user_label: bool, fast: bool) -> None:
    store = MetricStore()
    pipeline = make_pipeline(store, fast=fast, user_label=user_label)
    feed(pipeline, [line(user_id="alice"), line(user_id="bob"), line(user_id="alice"), line()])
    commit_batch(pipeline)
    got = {dict(key).get("user"): value for key, value in counters(store, "requests").items()}
    if user_label:
        assert got == {"alice": 2, "bob": 1, None: 1}
    else:
        assert got == {None: 4}


def test_prompt_and_response_text_never_reach_a_label() -> None:
    store = MetricStore()
    pipeline = make_pipeline(store, user_label=True)
    feed(pipeline, [line(prompt_truncated="PROMPT-TEXT", response_truncated="REPLY-TEXT",
                         user_id="u1", level="ERROR", error="boom")])
    commit_batch(pipeline)
    for family in store.families():
        for key in family.series:
            assert not any("TEXT" in value for _, value in key)


# -- apply(): exact values ----------------------------------------------------------------------

INF_KEY: LabelKey = (("source", "inf"), ("service", "svc"), ("model", "svc"))


def test_apply_counts_successes_errors_and_classes(fast: bool) -> None:
    store = MetricStore()
    pipeline = make_pipeline(store, fast=fast)
    feed(pipeline, [
        line(), line(),
        line(level="ERROR", error="CUDA out of memory"),
        line(status=504, error="upstream"),
        line(status=504),
        line(status=429),
    ])
    commit_batch(pipeline)
    assert total(store, "requests", status="success") == 2
    assert total(store, "requests", status="error") == 4
    assert {dict(k)["class"]: v for k, v in counters(store, "request_errors").items()} == {
        "oom": 1, "timeout": 2, "rate_limit": 1,
    }


def test_apply_moves_the_batch_once() -> None:
    store = MetricStore()
    pipeline = make_pipeline(store)
    feed(pipeline, [line()])
    commit_batch(pipeline)
    commit_batch(pipeline)
    assert total(store, "requests") == 1
    assert results(store) == {"parsed": 1}


@pytest.mark.parametrize("bound", fam.DURATION_BUCKETS)
def test_a_duration_equal_to_a_bound_falls_in_that_bounds_bucket(bound: float, fast: bool) -> None:
    store = MetricStore()
    pipeline = make_pipeline(store, fast=fast)
    feed(pipeline, [line(duration_ms=bound * 1000)])
    commit_batch(pipeline)
    series = histogram(store, "request_duration_seconds", INF_KEY)
    index = fam.DURATION_BUCKETS.index(bound)
    assert series.counts == [1 if i == index else 0 for i in range(len(series.counts))]
    assert series.count == 1
    assert series.sum == pytest.approx(bound)


def test_durations_just_above_a_bound_and_beyond_the_last_go_to_the_next_bucket(fast: bool) -> None:
    store = MetricStore()
    pipeline = make_pipeline(store, fast=fast)
    feed(pipeline, [line(duration_ms=250.001), line(duration_ms=600_000.5), line(duration_ms=0)])
    commit_batch(pipeline)
    counts = histogram(store, "request_duration_seconds", INF_KEY).counts
    assert counts[fam.DURATION_BUCKETS.index(0.5)] == 1
    assert counts[-1] == 1  # +Inf
    assert counts[0] == 1


def test_ttft_and_input_token_histograms_at_their_bounds(fast: bool) -> None:
    store = MetricStore()
    pipeline = make_pipeline(store, fast=fast)
    feed(pipeline, [line(ttft_ms=100, input_tokens=16), line(ttft_ms=100.5, input_tokens=17)])
    commit_batch(pipeline)
    ttft = histogram(store, "time_to_first_token_seconds", INF_KEY)
    assert ttft.counts[fam.TTFT_BUCKETS.index(0.1)] == 1
    assert ttft.counts[fam.TTFT_BUCKETS.index(0.2)] == 1
    tokens = histogram(store, "request_input_tokens", INF_KEY)
    assert tokens.counts[0] == 1
    assert tokens.counts[1] == 1
    assert tokens.sum == 33


def test_input_tokens_by_cache_outcome(fast: bool) -> None:
    store = MetricStore()
    pipeline = make_pipeline(store, fast=fast, name="api", schema=parse_api_usage)
    base = {"timestamp": TS, "model": "deepseek-chat", "status": 200}
    feed(pipeline, [
        orjson.dumps({**base, "usage": {"prompt_tokens": 100, "prompt_cache_hit_tokens": 64,
                                        "prompt_cache_miss_tokens": 36}}),
        orjson.dumps({**base, "usage": {"prompt_tokens": 50,
                                        "prompt_tokens_details": {"cached_tokens": 10}}}),
        orjson.dumps({**base, "usage": {"prompt_tokens": 7}}),
        orjson.dumps({**base, "model_name": "deepseek-chat", "request_tokens": 5}),
    ])
    commit_batch(pipeline)
    assert {dict(k)["cache"]: v for k, v in counters(store, "input_tokens").items()} == {
        "hit": 74, "miss": 76, "unknown": 12,
    }


# -- apply(): against the demo generator's truth ---------------------------------------------


def _bucket(bounds: tuple[float, ...], value: float) -> int:
    for i, bound in enumerate(bounds):
        if value <= bound:
            return i
    return len(bounds)


def _duration_s(generated: GeneratedLine) -> float:
    if generated.reported_cost is not None:
        # The flat API variant logs response_time in seconds, rounded to the millisecond.
        return round(generated.duration_ms / 1000.0, 3)
    return generated.duration_ms / 1000.0


@pytest.mark.parametrize(("schema_name", "schema", "service"), [
    ("inference", parse_inference, "DeepSeek-R1-Distill-Qwen-1.5B"),
    ("api_usage", parse_api_usage, ""),
])
def test_apply_matches_the_truth_of_generated_traffic(
    schema_name: Any, schema: Schema, service: str, fast: bool,
) -> None:
    generated = list(generate_lines(3000, schema_name, seed=7, error_rate=0.2))
    store = MetricStore()
    pipeline = make_pipeline(store, fast=fast, name="src", schema=schema)
    for start in range(0, len(generated), 500):  # several chunks, several batches
        feed(pipeline, [g.data.rstrip(b"\n") for g in generated[start:start + 500]])
        if start % 1000 == 0:
            commit_batch(pipeline)
    commit_batch(pipeline)

    requests: Counter[tuple[str, str]] = Counter()
    errors: Counter[tuple[str, str]] = Counter()
    inputs: Counter[tuple[str, str]] = Counter()
    outputs: Counter[str] = Counter()
    reasoning: Counter[str] = Counter()
    durations: dict[str, list[int]] = {}
    duration_sums: Counter[str] = Counter()
    for g in generated:
        requests[g.model, "error" if g.is_error else "success"] += 1
        if g.error_class is not None:
            errors[g.model, g.error_class] += 1
        if g.cache_hit_tokens is not None and g.cache_miss_tokens is not None:
            inputs[g.model, "hit"] += g.cache_hit_tokens
            inputs[g.model, "miss"] += g.cache_miss_tokens
        else:
            inputs[g.model, "unknown"] += g.input_tokens
        outputs[g.model] += g.output_tokens
        if g.reported_cost is None:
            # The flat variant's line carries no reasoning count, though GeneratedLine (and so
            # WorkloadStats) reports one for it: only what the line says can be counted.
            reasoning[g.model] += g.reasoning_tokens
        seconds = _duration_s(g)
        durations.setdefault(g.model, [0] * (len(fam.DURATION_BUCKETS) + 1))[
            _bucket(fam.DURATION_BUCKETS, seconds)] += 1
        duration_sums[g.model] += seconds

    def key(model: str, *more: tuple[str, str]) -> LabelKey:
        return (("source", "src"), ("service", service), ("model", model), *more)

    assert counters(store, "requests") == {
        key(model, ("status", status)): n for (model, status), n in requests.items()}
    assert counters(store, "request_errors") == {
        key(model, ("class", cls)): n for (model, cls), n in errors.items()}
    assert counters(store, "input_tokens") == {
        key(model, ("cache", cache)): n for (model, cache), n in inputs.items() if n}
    assert counters(store, "output_tokens") == {key(m): n for m, n in outputs.items() if n}
    assert counters(store, "reasoning_tokens") == {key(m): n for m, n in reasoning.items() if n}
    for model, counts in durations.items():
        series = histogram(store, "request_duration_seconds", key(model))
        assert series.counts == counts
        assert series.count == sum(counts)
        assert series.sum == pytest.approx(duration_sums[model], rel=1e-9)
    assert results(store, "src") == {"parsed": 3000}
    assert sum(errors.values()) > 300  # the comparison covered plenty of error lines
    assert len({cls for _, cls in errors}) >= 4


@pytest.mark.parametrize("schema", [parse_inference, parse_api_usage])
def test_a_lone_surrogate_escape_becomes_a_replacement_character(
        fast: bool, schema: Schema) -> None:
    # JSON lets a line escape half of a surrogate pair; as a label value it cannot be encoded
    # as UTF-8, which would fail every /metrics render and every checkpoint from then on.
    store = MetricStore()
    pipeline = make_pipeline(store, schema=schema, fast=fast, priced=True)
    lonely = (b'{"timestamp":"2026-01-18T06:07:46Z","service":"s\\udcff","model":"m\\ud800",'
              b'"user_id":"u\\udfff","request_id":"r\\uDBFF","duration_ms":5,'
              b'"prompt":"\\u4f60\\ud83d\\ude00"}')  # a proper pair elsewhere stays as it is
    assert feed(pipeline, [lonely]) == 1
    assert pipeline.counts.malformed == 0
    [event] = pipeline.priced_events
    assert (event.service, event.model, event.user, event.request_id) == (
        "s\ufffd", "m\ufffd", "u\ufffd", "r\ufffd")
    commit_batch(pipeline)
    body, _ = Exposition(store).render(None)
    assert 'model="m\ufffd"'.encode() in body
