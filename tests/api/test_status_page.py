"""The status page (`GET /`, `GET /rules`) rendered from hand-built snapshots.

Each section shows what its rows hold; empty snapshots show the empty states; odd numbers (NaN,
infinities, None) render as text; and hostile strings in every field that comes from a log
line, a label or a user (alert names, label values, annotations, service and model names,
silence comments and creators, source and budget names, rule expressions and errors) come out
escaped: the raw HTML is parsed and no tag or attribute the templates did not write survives.
The bearer token guards both pages, and the headers forbid scripts.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient, TestServer
from status_page_checks import IMG, SCRIPT, assert_no_injected_markup, markup

from monitor.api.app import TokenHolder, create_app
from monitor.api.status import (
    add_status_page,
    bar_width,
    binary_bytes,
    budget_bar,
    config_duration,
    duration,
    number,
    percent,
    quoted,
    render_rules,
    render_status,
)
from monitor.api.status_model import (
    AlertRow,
    BudgetRow,
    DaemonRow,
    GpuRow,
    RuleGroupRow,
    RuleRow,
    SilenceRow,
    SloRow,
    SourceRow,
    StatusSnapshot,
)
from monitor.metrics.exposition import Exposition
from monitor.metrics.store import MetricStore

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOSTILE = (SCRIPT, IMG, "</style><b>x</b>", "' onmouseover='alert(1)", "&lt;already&gt;")
TOKEN = "page-token"


def daemon_row(**overrides: object) -> DaemonRow:
    row = DaemonRow(version="9.9.9", state="running", started_at=NOW - 3725, uptime_s=3725.0,
                    ready=True, listen_url="http://127.0.0.1:9464",
                    ledger_writer="writer pid 4242; 3 journal row(s) to convert")
    return replace(row, **overrides)  # type: ignore[arg-type]


def full_snapshot() -> StatusSnapshot:
    rule_anchor = "rule-0123456789ab"
    return StatusSnapshot(
        taken_at=NOW, timezone="Asia/Shanghai", daemon=daemon_row(),
        alerts=(
            AlertRow(name="HighLatency", state="firing", labels=(("severity", "page"),
                                                                 ("service", "chat-svc")),
                     active_since=NOW - 600, value=17.25, summary="p95 is 17.25 s",
                     origin="rule", link=f"/rules#{rule_anchor}"),
            AlertRow(name="BudgetThresholdCrossed", state="firing",
                     labels=(("budget", "daily"), ("threshold", "0.5")), active_since=NOW - 60,
                     value=None, origin="budget", link="/#budget-aaaaaaaaaaaa",
                     silenced_by=("silence-1",)),
            AlertRow(name="ErrorBurst", state="pending", labels=(("source", "api"),),
                     active_since=NOW - 30, value=0.5, origin="rule",
                     link=f"/rules#{rule_anchor}"),
        ),
        rule_groups=(RuleGroupRow(name="requests", file="/etc/inferwatch/rules/requests.yml",
                                  interval_s=15.0, last_evaluation=NOW - 3,
                                  last_duration_s=0.0042, rules=(
            RuleRow(name="HighLatency", kind="alerting", anchor=rule_anchor,
                    expr='histogram_quantile(0.95, sum(rate(x_bucket[5m])) by (le)) > 15',
                    for_s=600.0, labels=(("severity", "page"),),
                    annotations=(("summary", "p95 is {{ $value }} s"),), state="firing",
                    active=1, health="ok", last_evaluation=NOW - 3),
            RuleRow(name="job:requests:rate5m", kind="recording", anchor="rule-bbbbbbbbbbbb",
                    expr="sum(rate(inferwatch_requests_total[5m]))", health="err",
                    last_error="query timed out", last_evaluation=NOW - 3),
        )),),
        silences=(SilenceRow(id="silence-1", state="active", matchers=('budget="daily"',),
                             starts_at=NOW - 100, ends_at=NOW + 7200, comment="known overspend",
                             created_by="ops@example.com"),
                  SilenceRow(id="silence-2", state="pending", matchers=('team=~"ml.*"',),
                             starts_at=NOW + 600, ends_at=NOW + 4200, comment="maintenance",
                             created_by="alice")),
        budgets=(BudgetRow(name="daily", anchor="budget-aaaaaaaaaaaa", period="day",
                           period_label="2026-01-01", period_end=NOW + 36000, currency="CNY",
                           spent=5.0, limit=10.0, forecast=8.0, thresholds=(0.5, 0.8, 1.0),
                           spent_text="5.00", limit_text="10.00", forecast_text="8.00",
                           firing=("BudgetThresholdCrossed",)),
                 BudgetRow(name="monthly", anchor="budget-cccccccccccc", period="month",
                           period_label="2026-01", period_end=NOW + 86400 * 30,
                           currency="CNY", spent=90.0, limit=100.0, forecast=150.0,
                           thresholds=(0.5, 1.0))),
        slos=(SloRow(id="chat-requests-availability", anchor="slo-dddddddddddd",
                     service="chat", name="requests-availability", objective_ratio=0.999,
                     time_window_s=30 * 86400, remaining_ratio=0.42,
                     burn_rates=(("5m", 14.5), ("1h", 2.0), ("30d", 0.58)),
                     exhaustion_s=86400 * 3.0),),
        sources=(SourceRow(name="inference", schema="inference", ready=True,
                           lag_bytes=3 * 1024 * 1024, files=2, parsed=123456, malformed=7,
                           oversized=1, filtered=0, read_errors=0),
                 SourceRow(name="api", schema="api_usage", ready=False, lag_bytes=0,
                           files=1)),
        gpus=(GpuRow(gpu="0", uuid="GPU-1234", name="NVIDIA H100 80GB HBM3", up=True,
                     utilization_ratio=0.63, memory_used_bytes=40 * 1024**3,
                     memory_total_bytes=80 * 1024**3, temperature_celsius=61.0,
                     power_watts=312.5, driver_version="550.54"),),
    )


def empty_snapshot() -> StatusSnapshot:
    return StatusSnapshot(taken_at=NOW, timezone="UTC",
                          daemon=daemon_row(ready=False, catching_up=("inference",)))


def hostile_snapshot(payload: str) -> StatusSnapshot:
    """Every text field that can come from outside holds `payload`."""
    full = full_snapshot()
    return replace(
        full,
        alerts=tuple(replace(a, name=f"{a.name}{payload}", labels=(*a.labels, (
            "model", payload), (f"x{payload}", payload)), summary=payload,
            silenced_by=(payload,)) for a in full.alerts),
        rule_groups=tuple(replace(g, name=payload, file=payload, rules=tuple(
            replace(r, name=payload, expr=payload, labels=(("service", payload),),
                    annotations=(("summary", payload),), last_error=payload)
            for r in g.rules)) for g in full.rule_groups),
        silences=tuple(replace(s, id=payload, matchers=(f'service="{payload}"',),
                               comment=payload, created_by=payload) for s in full.silences),
        budgets=tuple(replace(b, name=payload, period_label=payload, currency=payload,
                              firing=(payload,)) for b in full.budgets),
        slos=tuple(replace(s, id=payload, service=payload, name=payload,
                           burn_rates=((payload, 1.0),), firing=(payload,))
                   for s in full.slos),
        sources=tuple(replace(s, name=payload, schema=payload) for s in full.sources),
        gpus=tuple(replace(g, gpu=payload, uuid=payload, name=payload, driver_version=payload)
                   for g in full.gpus),
        daemon=replace(full.daemon, catching_up=(payload,), listen_url=payload, ready=False,
                       ledger_writer=payload),
        notes=(payload,),
    )


def visible(html: str) -> str:
    return re.sub(r"\s+", " ", " ".join(markup(html).text))


class FakeStatus:
    def __init__(self, snapshot: StatusSnapshot) -> None:
        self.current = snapshot
        self.calls = 0

    def snapshot(self) -> StatusSnapshot:
        self.calls += 1
        return self.current


class FakeControl:
    def is_ready(self) -> bool:
        return True

    def sources_catching_up(self) -> list[str]:
        return []

    async def reload(self) -> str | None:
        return None


Client = TestClient
MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def client_for() -> AsyncIterator[MakeClient]:
    clients: list[Client] = []

    async def make(snapshot: StatusSnapshot, token: str | None = None) -> Client:
        app = create_app(exposition=Exposition(MetricStore()), control=FakeControl(),
                         token=TokenHolder(token))
        add_status_page(app, source=FakeStatus(snapshot))
        client: Client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


# -- sections ---------------------------------------------------------------------------------


def test_every_section_shows_its_rows() -> None:
    html = render_status(full_snapshot(), refresh_s=10)
    text = visible(html)
    assert '<meta http-equiv="refresh" content="10">' in html
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in html
    assert "(2 firing) inferwatch status" in text
    # daemon
    assert "inferwatch 9.9.9" in text and "ready" in text
    assert "up for 1h 2m" in text
    assert "cost ledger writer pid 4242; 3 journal row(s) to convert" in text
    # alerts: firing then pending, labels, value, since (Asia/Shanghai is UTC+8), rule link
    assert text.index("HighLatency") < text.index("ErrorBurst")
    assert 'service="chat-svc"' in text and "17.25" in text
    assert "2026-01-01 07:50:00 CST 10m ago" in text
    assert html.count('href="/rules#rule-0123456789ab"') == 4  # name and "from", twice
    assert 'id="alert-HighLatency"' in html
    assert "silenced" in text and "silence-1" in text
    assert 'href="/#budget-aaaaaaaaaaaa"' in html
    # silences
    assert 'budget="daily"' in text and "known overspend" in text and "ops@example.com" in text
    assert "in 2h" in text and 'team=~"ml.*"' in text and "in 10m" in text
    # budgets: spent bar half the limit, forecast marked at 80 %, thresholds ticked
    assert "5.00 of 10.00 CNY (50.0 %)" in text
    assert "8.00 CNY (80.0 % of the limit)" in text
    assert 'class="fill warn" style="width: 50.00%"' in html
    assert 'class="forecast" style="left: 80.00%"' in html
    assert 'class="tick" style="left: 50.00%"' in html
    assert 'id="budget-aaaaaaaaaaaa"' in html
    # SLOs
    assert "chat / requests-availability" in text and "42.0 %" in text
    assert "99.900 % over 30d" in text
    times = "\N{MULTIPLICATION SIGN}"
    assert "5m 1h 30d" in text and f"14.5{times}" in text and f"0.58{times}" in text
    assert "3d at the last hour's burn rate" in text
    # sources
    assert "3.0 MiB" in text and "123,456" in text and "malformed 7" in text
    assert "catching up" in text
    # GPUs
    assert "GPU 0 · NVIDIA H100 80GB HBM3" in text
    assert "memory 40.0 GiB of 80.0 GiB (50.0 %)" in text
    assert "utilization 63.0 %" in text and "61 °C" in text and "312.5 W" in text


def test_a_forecast_beyond_the_limit_rescales_the_bar() -> None:
    monthly = full_snapshot().budgets[1]
    bar = budget_bar(monthly)
    assert bar["forecast"] == "100.00%"  # 150 on a 150 scale
    assert bar["limit"] == "66.67%"
    assert bar["spent"] == "60.00%"
    assert bar["level"] == "warn"  # 90 % spent, past the first threshold (50 %)
    html = render_status(replace(full_snapshot(), budgets=(monthly,)))
    assert "150.0 % of the limit" in visible(html)


def test_empty_snapshot_shows_every_empty_state() -> None:
    text = visible(render_status(empty_snapshot()))
    for message in ("No alert is firing.", "No alert is pending.",
                    "No active or pending silence.", "No budget is configured",
                    "No SLO is configured", "No log source is configured", "No GPU is reported"):
        assert message in text
    assert "catching up" in text and "inference" in text
    assert "No rule group is loaded" in visible(render_rules(empty_snapshot()))


def test_refresh_can_be_turned_off() -> None:
    assert "http-equiv" not in render_status(empty_snapshot(), refresh_s=0)


def test_odd_numbers_render_as_text() -> None:
    nan, inf = math.nan, math.inf
    odd = replace(
        full_snapshot(),
        daemon=daemon_row(uptime_s=nan, started_at=inf),
        alerts=(AlertRow(name="Odd", state="firing", labels=(), active_since=nan, value=nan),
                AlertRow(name="Big", state="pending", labels=(), active_since=None,
                         value=-inf)),
        budgets=(BudgetRow(name="b", anchor="budget-x", period="day", period_label="d",
                           period_end=nan, currency="CNY", spent=nan, limit=0.0,
                           forecast=inf),),
        slos=(SloRow(id="s", anchor="slo-x", service="s", name="n", objective_ratio=nan,
                     time_window_s=0, remaining_ratio=-inf, burn_rates=(("1h", nan),)),
              SloRow(id="t", anchor="slo-y", service="t", name="n", objective_ratio=0.99,
                     time_window_s=60, remaining_ratio=None)),
        sources=(SourceRow(name="s", schema="inference", ready=True, lag_bytes=nan,
                           files=None, parsed=inf, malformed=nan),),
        gpus=(GpuRow(gpu="0", uuid="", name="", up=None, utilization_ratio=nan,
                     memory_used_bytes=inf, memory_total_bytes=inf,
                     temperature_celsius=None),
              GpuRow(gpu="1", uuid="u", name="x", up=False, utilization_ratio=None,
                     memory_used_bytes=None, memory_total_bytes=0.0,
                     temperature_celsius=nan)),
    )
    html = render_status(odd)
    text = visible(html)
    assert "NaN" in text and "-Inf" in text and "+Inf" in text and "no data" in text
    widths = re.findall(r'style="(?:width|left): ([^"]*)"', html)
    assert len(widths) > 5
    for width in widths:
        assert re.fullmatch(r"\d+(\.\d+)?%", width), width
    assert "nan%" not in html.lower() and "inf%" not in html.lower()
    render_rules(odd)


@pytest.mark.parametrize(("value", "expected"), [
    (None, "—"), (math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf"), (0.5, "0.5"),
    (1234567.0, "1.235e+06"), (True, "True"), ("text", "text"),
])
def test_number(value: object, expected: str) -> None:
    assert number(value) == expected


def test_the_other_formatters_never_raise() -> None:
    assert duration(3725) == "1h 2m" and duration(5) == "5s" and duration(0) == "0s"
    assert duration(-90) == "-1m 30s" and duration(math.nan) == "—" and duration(1e300) == "ages"
    assert config_duration(0.2) == "200ms" and config_duration(5400) == "1h30m"
    assert config_duration(math.nan) == "—" and config_duration(1e300) == "ages"
    assert binary_bytes(0) == "0 B" and binary_bytes(1536) == "1.5 KiB"
    assert binary_bytes(1e30) == "867361737988.4 EiB" and binary_bytes(math.nan) == "NaN"
    assert percent(0.125) == "12.5 %" and percent(None) == "—" and percent(math.inf) == "+Inf"
    assert quoted('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert bar_width(1.7) == "100.00%" and bar_width(-1) == "0.00%" and bar_width(math.nan) == "0%"


# -- escaping ----------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_strings_are_escaped_everywhere(payload: str) -> None:
    snapshot = hostile_snapshot(payload)
    for html in (render_status(snapshot), render_rules(snapshot)):
        found = assert_no_injected_markup(html)
        # what the page shows is the payload itself, as text
        assert payload in "".join(found.text)
    status = render_status(snapshot)
    if payload == SCRIPT:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in status
    if payload == IMG:
        assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in status
        # in a label value the quote is escaped as Prometheus prints it, too
        assert 'model=&#34;\\&#34;&gt;&lt;img src=x onerror=alert(1)&gt;&#34;' in status


# -- over HTTP ---------------------------------------------------------------------------------


async def test_pages_over_http_with_headers(client_for: MakeClient) -> None:
    client = await client_for(full_snapshot())
    for path in ("/", "/rules"):
        response = await client.get(path)
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        body = await response.text()
        assert "<script" not in body and "https://" not in body


async def test_rules_page_lists_groups_with_anchors(client_for: MakeClient) -> None:
    client = await client_for(full_snapshot())
    body = await (await client.get("/rules")).text()
    text = visible(body)
    assert 'id="rule-0123456789ab"' in body
    assert "requests 2 rules" in text and "/etc/inferwatch/rules/requests.yml" in text
    assert "every 15s" in text and "4.2 ms" in text
    assert "histogram_quantile(0.95, sum(rate(x_bucket[5m])) by (le)) &gt; 15" in body
    assert "for 10m" in text and 'severity="page"' in text
    assert 'summary="p95 is {{ $value }} s"' in text
    assert "last error query timed out" in text
    assert "firing" in text and "record" in text and "err" in text


async def test_the_bearer_token_guards_both_pages(client_for: MakeClient) -> None:
    client = await client_for(full_snapshot(), TOKEN)
    for path in ("/", "/rules"):
        assert (await client.get(path)).status == 401
        wrong = await client.get(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
        right = await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status == 200


async def test_each_request_takes_a_fresh_snapshot(client_for: MakeClient) -> None:
    source = FakeStatus(empty_snapshot())
    app = create_app(exposition=Exposition(MetricStore()), control=FakeControl(),
                     token=TokenHolder(None))
    add_status_page(app, source=source, refresh_s=3)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        first = await (await client.get("/")).text()
        source.current = full_snapshot()
        second = await (await client.get("/")).text()
    assert "No alert is firing." in first and "HighLatency" in second
    assert 'content="3"' in second and source.calls == 2


async def test_lone_surrogates_in_labels_do_not_fail_the_pages(client_for: MakeClient) -> None:
    # A label value may hold a lone surrogate (a "\ud800" escape in a log line's JSON); UTF-8
    # cannot encode it, and the page once answered 500 instead of showing the alert.
    snapshot = full_snapshot()
    alert = replace(snapshot.alerts[0], labels=(("model", "m\ud800"),), summary="s\udcff")
    group = snapshot.rule_groups[0]
    rule = replace(group.rules[0], expr='x{model="m\ud800"} > 1')
    snapshot = replace(snapshot, alerts=(alert, *snapshot.alerts[1:]),
                       rule_groups=(replace(group, rules=(rule, *group.rules[1:])),
                                    *snapshot.rule_groups[1:]))
    client = await client_for(snapshot)
    for path, shown in (("/", 'model=&#34;m\N{REPLACEMENT CHARACTER}&#34;'),
                        ("/rules", 'model=&#34;m\N{REPLACEMENT CHARACTER}&#34;')):
        response = await client.get(path)
        assert response.status == 200
        assert shown in await response.text()
