"""SLO spec files in Sloth's `prometheus/v1` format: valid specs (written here after the shapes
of Sloth's examples), the data model they give, `{{.window}}` substitution, the burn-rate
windows of each period, and every validation error with its file:line, SLO and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from monitor.errors import ConfigError
from monitor.slo.spec import (
    AlertKind,
    AlertSpec,
    SliEvents,
    SliRaw,
    Slo,
    SloFileError,
    alert_windows,
    load_slo_file,
    load_slo_files,
    parse_slo_file,
    prom_duration,
    render_window,
)

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "rules" / "slos" / "inference.yml"

CHECKOUT = """\
version: "prometheus/v1"
service: "checkout"
labels:
  team: "payments"
  tier: 2
slos:
  # One failed request in 1000 over 30 days.
  - name: "requests-availability"
    objective: 99.9
    description: "Availability of the checkout API."
    labels:
      team: "checkout"
    sli:
      events:
        error_query: sum(rate(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total{job="checkout"}[{{ .window }}]))
    alerting:
      name: CheckoutErrors
      labels:
        category: "availability"
      annotations:
        summary: "Checkout requests fail"
        runbook: "https://runbooks.example/checkout"
      page_alert:
        labels:
          severity: critical
        annotations:
          summary: "Checkout requests fail fast"
      ticket_alert:
        labels:
          severity: "warning"
          channel: "#checkout"
  - name: "queue-freshness"
    objective: 95
    sli:
      raw:
        error_ratio_query: |
          1 - avg(avg_over_time(queue_fresh_ratio[{{.window}}]))
    alerting:
      name: CheckoutQueueStale
      ticket_alert:
        disable: true
      budget_alert:
        labels:
          severity: info
"""


def parse(text: str, file: str = "slos.yml") -> list[Slo]:
    return list(parse_slo_file(textwrap.dedent(text), file=file).slos)


def problems_of(text: str, file: str = "slos.yml") -> str:
    with pytest.raises(SloFileError) as caught:
        parse_slo_file(textwrap.dedent(text), file=file)
    return str(caught.value)


# --- valid specs and the model -----------------------------------------------------------------


def test_events_slo_merges_labels_and_alert_metadata_as_sloth() -> None:
    availability, freshness = parse(CHECKOUT)
    assert availability.id == "checkout-requests-availability"
    assert (availability.name, availability.service) == ("requests-availability", "checkout")
    assert availability.description == "Availability of the checkout API."
    assert availability.objective == 99.9
    assert availability.objective_ratio == 99.9 / 100
    assert availability.error_budget_ratio == 0.0009999999999999432  # Sloth's (100 - 99.9) / 100
    assert availability.labels == {"team": "checkout", "tier": "2"}  # the SLO's team wins
    assert availability.time_window_s == 30 * 86400
    assert (availability.file, availability.line) == ("slos.yml", 8)
    assert availability.id_labels() == {"sloth_id": "checkout-requests-availability",
                                        "sloth_slo": "requests-availability",
                                        "sloth_service": "checkout"}
    assert isinstance(availability.sli, SliEvents)
    assert isinstance(freshness.sli, SliRaw)

    page = availability.alert_rule("page")
    assert page is not None
    assert page.name == "CheckoutErrors"
    assert page.labels == {"sloth_severity": "page", "category": "availability",
                           "severity": "critical"}
    assert page.annotations == {
        "title": "(page) {{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error budget "
                 "burn rate is too fast.",
        "summary": "Checkout requests fail fast",  # the page alert's own wins over alerting's
        "runbook": "https://runbooks.example/checkout",
    }
    ticket = availability.alert_rule("ticket")
    assert ticket is not None
    assert ticket.labels == {"sloth_severity": "ticket", "category": "availability",
                             "severity": "warning", "channel": "#checkout"}
    assert ticket.annotations["summary"] == "Checkout requests fail"
    assert ticket.annotations["title"].startswith("(ticket) ")
    budget = availability.alert_rule("budget")
    assert budget is not None
    assert budget.name == "CheckoutErrorsBudgetHalfSpent"
    assert budget.labels == {"sloth_severity": "info", "category": "availability"}


def test_raw_slo_and_disabled_alerts() -> None:
    freshness = parse(CHECKOUT)[1]
    assert freshness.id == "checkout-queue-freshness"
    assert freshness.labels == {"team": "payments", "tier": "2"}
    assert freshness.description == ""
    assert freshness.error_budget_ratio == 0.05
    assert freshness.alert_rule("ticket") is None
    page = freshness.alert_rule("page")
    assert page is not None
    assert page.labels == {"sloth_severity": "page"}
    assert freshness.alerting.budget_alert == AlertSpec(False, {"severity": "info"}, {})
    budget = freshness.alert_rule("budget")
    assert budget is not None
    assert budget.labels == {"sloth_severity": "info", "severity": "info"}


def test_window_substitution_as_sloth_renders_the_sli() -> None:
    availability, freshness = parse(CHECKOUT)
    assert availability.error_ratio_query("1h") == (
        '(sum(rate(http_requests_total{job="checkout",code=~"5.."}[1h])))\n'
        "/\n"
        '(sum(rate(http_requests_total{job="checkout"}[1h])))\n')
    assert freshness.error_ratio_query("3d") == (
        "(1 - avg(avg_over_time(queue_fresh_ratio[3d]))\n)")
    assert render_window("x[{{.window}}] + y[{{ .window }}] + z[{{  .window   }}]", "30m") == (
        "x[30m] + y[30m] + z[30m]")


def test_slo_without_alerts_like_sloths_no_alerts_example() -> None:
    (slo,) = parse("""\
        version: "prometheus/v1"
        service: "myapp"
        slos:
          - name: "http-availability"
            objective: 99.99
            sli:
              events:
                error_query: sum(rate(http_total{code=~"5.."}[{{.window}}]))
                total_query: sum(rate(http_total[{{.window}}]))
            alerting:
              page_alert:
                disable: true
              ticket_alert:
                disable: yes
        """)
    assert [slo.alert_rule(kind) for kind in ("page", "ticket", "budget")] == [None] * 3


def test_an_explicitly_disabled_budget_alert() -> None:
    (slo,) = parse("""\
        version: prometheus/v1
        service: svc
        slos:
          - name: ok
            objective: 100
            sli: {raw: {error_ratio_query: "x[{{.window}}]"}}
            alerting: {name: Svc, budget_alert: {disable: true}}
        """)
    assert slo.objective == 100.0
    assert slo.alert_rule("page") is not None
    assert slo.alert_rule("budget") is None


def test_time_window_at_the_top_and_per_slo() -> None:
    fast, slow = parse("""\
        version: "prometheus/v1"
        service: "svc"
        time_window: 4w
        slos:
          - name: four-weeks
            objective: 99
            sli: {raw: {error_ratio_query: "x[{{.window}}]"}}
            alerting: {name: A}
          - name: month
            objective: 99
            time_window: 720h
            sli: {raw: {error_ratio_query: "x[{{.window}}]"}}
            alerting: {name: B}
        """)
    assert fast.time_window_s == 28 * 86400
    assert slow.time_window_s == 30 * 86400


def test_several_documents_keep_their_line_numbers() -> None:
    text = "# two services\n" + CHECKOUT + "---\n" + textwrap.dedent("""\
        version: "prometheus/v1"
        service: "search"
        slos:
          - name: "latency"
            objective: 99
            sli:
              events:
                error_query: sum(rate(slow_total[{{.window}}]))
                total_query: sum(rate(all_total[{{.window}}]))
            alerting: {name: SearchSlow}
        ---
        # only a comment
        """)
    spec = parse_slo_file(text, file="multi.yml")
    assert [group.service for group in spec.groups] == ["checkout", "search"]
    assert [slo.id for slo in spec.slos] == ["checkout-requests-availability",
                                             "checkout-queue-freshness", "search-latency"]
    second_start = text.splitlines().index("---") + 1
    assert spec.slos[2].line == second_start + 4
    broken = text.replace("objective: 99\n", "objective: 0\n")
    message = problems_of(broken, file="multi.yml")
    assert f"multi.yml:{second_start + 5}: " in message
    assert 'slo "latency": objective: must be > 0 and <= 100' in message


def test_alert_windows_of_sloths_catalogue() -> None:
    month = alert_windows(30 * 86400)
    assert [pair.factor for pair in (month.page_quick, month.page_slow, month.ticket_quick,
                                     month.ticket_slow)] == [14.4, 6.0, 3.0, 1.0]
    assert [(pair.short_s, pair.long_s) for pair in (month.page_quick, month.page_slow,
                                                     month.ticket_quick, month.ticket_slow)] == [
        (300, 3600), (1800, 21600), (7200, 86400), (21600, 259200)]
    assert month.windows_s() == (300, 1800, 3600, 7200, 21600, 86400, 259200)
    four_weeks = alert_windows(28 * 86400)
    # Sloth: factor = budget % x period hours / 100 / long-window hours
    assert four_weeks.page_quick.factor == 2 * 672 / 100 / 1
    assert four_weeks.page_slow.factor == 5 * 672 / 100 / 6
    assert four_weeks.ticket_slow.factor == pytest.approx(0.9333333333333333)
    with pytest.raises(ValueError, match="10d"):
        alert_windows(10 * 86400)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (300, "5m"), (5400, "1h30m"), (86400, "1d"), (3 * 86400, "3d"),
    (28 * 86400, "4w"), (30 * 86400, "30d"), (365 * 86400, "1y"), (0.25, "250ms"),
])
def test_durations_print_as_prometheus_prints_them(seconds: float, text: str) -> None:
    assert prom_duration(seconds) == text


def test_the_bundled_inference_slos() -> None:
    spec = load_slo_file(BUNDLED)
    availability, latency = spec.slos
    assert (availability.id, availability.objective) == ("inference-requests-availability",
                                                         99.9)
    assert (latency.id, latency.objective) == ("inference-requests-latency", 95.0)
    assert availability.time_window_s == latency.time_window_s == 30 * 86400
    assert 'inferwatch_requests_total{status="error"}[5m]' in availability.error_ratio_query("5m")
    assert 'le=~"10(\\\\.0)?"' in latency.error_ratio_query("5m")
    kinds: tuple[AlertKind, ...] = ("page", "ticket", "budget")
    for slo in spec.slos:
        for kind in kinds:
            rule = slo.alert_rule(kind)
            assert rule is not None
            assert rule.labels["severity"] == {"budget": "info"}.get(kind, kind)


def test_glob_loading_refuses_an_slo_id_defined_twice(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text(CHECKOUT)
    (tmp_path / "b.yml").write_text(CHECKOUT.replace("queue-freshness", "other"))
    with pytest.raises(ConfigError) as caught:
        load_slo_files([str(tmp_path / "*.yml")])
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'b.yml'}:8: ")
    assert "'checkout-requests-availability' is repeated (first at " \
           f"{tmp_path / 'a.yml'}:8)" in message
    (tmp_path / "b.yml").unlink()
    assert [spec.file for spec in load_slo_files([str(tmp_path / "*.yml")])] == [
        str(tmp_path / "a.yml")]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(SloFileError, match="cannot read file"):
        load_slo_file(tmp_path / "missing.yml")


# --- validation errors ------------------------------------------------------------------------

HEAD = 'version: "prometheus/v1"\nservice: "svc"\nslos:\n'
# One valid SLO at lines 4-10; cases replace parts of it.
SLO = """\
  - name: "avail"
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(errors_total[{{.window}}]))
        total_query: sum(rate(requests_total[{{.window}}]))
    alerting: {name: SvcAvail}
"""
BODY = HEAD + SLO


def replaced(old: str, new: str, text: str = BODY) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


ERRORS = {
    "empty file": ("# nothing\n", None, "the file is empty"),
    "wrong version": (replaced('"prometheus/v1"', '"prometheus/v2"'), 1,
                      "version: must be \"prometheus/v1\", not 'prometheus/v2'"),
    "no version": (BODY.replace('version: "prometheus/v1"\n', ""), None,
                   'version: must be "prometheus/v1"'),
    "kubernetes manifest": ("apiVersion: sloth.slok.dev/v1\nkind: PrometheusServiceLevel\n", 1,
                            "only Sloth's `version: \"prometheus/v1\"` spec is supported"),
    "not a mapping": ("- a\n- b\n", 1, "an SLO spec must be a mapping, not a list"),
    "unknown top key": (BODY + "services: []\n", 11, "unknown field 'services' in an SLO spec"),
    "service missing": (replaced('service: "svc"\n', ""), None, "service: is required"),
    "service invalid": (replaced('"svc"', '"my svc"'), 2,
                        "service: 'my svc' must start and end with an alphanumeric"),
    "no slos": (HEAD, 3, "slos: at least one SLO is required"),
    "slo not a mapping": (HEAD + "  - just-a-name\n", 4, "an SLO must be a mapping"),
    "name missing": (replaced('  - name: "avail"\n    objective', "  - objective"), 4,
                     "slos[0].name: is required"),
    "name too short": (replaced('"avail"', '"a"'), 4,
                       "slo \"a\": name: 'a' must start and end with an alphanumeric"),
    "name with a space": (replaced('"avail"', '"av ail"'), 4, "name: 'av ail' must start"),
    "objective zero": (replaced("99.9", "0"), 5,
                       'slo "avail": objective: must be > 0 and <= 100'),
    "objective over 100": (replaced("99.9", "100.01"), 5, "must be > 0 and <= 100"),
    "objective quoted": (replaced("99.9", '"99.9"'), 5,
                         "objective: must be a number, not the string '99.9'"),
    "objective boolean": (replaced("99.9", "true"), 5, "objective: must be a number"),
    "objective missing": (replaced("    objective: 99.9\n", ""), 4,
                          'slo "avail": objective: is required'),
    "objective infinite": (replaced("99.9", ".inf"), 5, "objective: must be a number"),
    "time window syntax": (replaced("    sli:", "    time_window: 30 days\n    sli:"), 6,
                           'slo "avail": time_window: invalid duration'),
    "time window unsupported": (replaced("    sli:", "    time_window: 7d\n    sli:"), 6,
                                "time_window: 7d is not supported: the burn-rate windows of "
                                "Sloth's catalogue exist for 28d or 30d"),
    "label name": (replaced("    sli:", "    labels: {bad-name: x}\n    sli:"), 6,
                   "slo \"avail\": labels.bad-name: invalid label name 'bad-name'"),
    "label __name__": (replaced("slos:\n", "labels: {__name__: x}\nslos:\n"), 3,
                       "labels.__name__: invalid label name '__name__'"),
    "label empty": (replaced("slos:\n", "labels:\n  owner:\nslos:\n"), 4,
                    "labels.owner: the label value is required"),
    "label not a string": (replaced("slos:\n", "labels:\n  owner: [a]\nslos:\n"), 4,
                           "labels.owner: must be a string, not a list"),
    "slo plugins": (replaced("slos:\n", "slo_plugins: {chain: []}\nslos:\n"), 3,
                    "slo_plugins: SLO plugins are Go code that only Sloth runs and are not "
                    "supported"),
    "slo level plugins": (replaced("    sli:", "    plugins: {chain: []}\n    sli:"), 6,
                          'slo "avail": plugins: SLO plugins are Go code'),
    "sli missing": (replaced(SLO[SLO.index("    sli:"):SLO.index("    alerting")], ""), 4,
                    'slo "avail": sli: an SLI type is required: sli.events or sli.raw'),
    "sli plugin": (replaced("      events:", "      plugin: {id: sloth-common/availability}\n"
                                             "      events:"), 7,
                   'slo "avail": sli.plugin: SLI plugins are Go code that only Sloth runs and '
                   "are not supported"),
    "two sli types": (replaced("      events:", "      raw: {error_ratio_query: "
                                                "'x[{{.window}}]'}\n      events:"), 6,
                      'slo "avail": sli: only one SLI type is allowed'),
    "same queries": (replaced("errors_total", "requests_total"), 7,
                     "sli.events: error_query and total_query are the same"),
    "total missing": (replaced("        total_query: sum(rate(requests_total[{{.window}}]))\n",
                               ""), 7,
                      'slo "avail": sli.events.total_query: the query template is required'),
    "no window": (replaced("errors_total[{{.window}}]", "errors_total[5m]"), 8,
                  "sli.events.error_query: the template must contain the {{.window}} variable"),
    "other template action": (replaced("[{{.window}}]))\n        total",
                                       "[{{.Window}}]))\n        total"), 8,
                              "sli.events.error_query: only {{.window}} may appear between "
                              "{{ }}, not '{{.Window}}'"),
    "trim marker": (replaced("[{{.window}}]))\n        total", "[{{- .window}}]))\n        total"),
                    8, "not '{{- .window}}'"),
    "unclosed action": (replaced("errors_total[{{.window}}]", "errors_total[{{.window}"), 8,
                        "only {{.window}} may appear between {{ }}, not '{{.window}))'"),
    "invalid promql": (replaced("sum(rate(errors_total", "sum(rate(errors_total{"), 8,
                       "sli.events.error_query: not valid PromQL (with {{.window}} = 5m)"),
    "unsupported promql": (replaced("sum(rate(errors_total[{{.window}}]))",
                                    "limitk(1, rate(errors_total[{{.window}}]))"), 8,
                           "not valid PromQL (with {{.window}} = 5m)"),
    "comment swallows the bracket": (
        replaced("error_query: sum(rate(errors_total[{{.window}}]))",
                 "error_query: \"sum(rate(errors_total[{{.window}}])) # errors\""),
        7, "sli.events: (error_query) / (total_query) is not valid PromQL"),
    "raw query missing": (replaced(SLO[SLO.index("      events:"):SLO.index("    alerting")],
                                   "      raw: {}\n"), 7,
                          "sli.raw.error_ratio_query: the query template is required"),
    "unknown sli key": (replaced("      events:", "      event: {}\n      events:"), 7,
                        "unknown field 'event' in the SLI"),
    "alerting missing": (replaced("    alerting: {name: SvcAvail}\n", ""), 4,
                         'slo "avail": alerting.name: the alert name is required while '
                         "page_alert and ticket_alert are enabled"),
    "budget alert without a name": (replaced(
        "{name: SvcAvail}", "{page_alert: {disable: true}, ticket_alert: {disable: true}, "
                            "budget_alert: {labels: {a: b}}}"), 10,
        "alerting.name: the alert name is required while budget_alert is enabled"),
    "disable not a boolean": (replaced("{name: SvcAvail}",
                                       "{name: SvcAvail, page_alert: {disable: maybe}}"), 10,
                              "alerting.page_alert.disable: must be true or false"),
    "misspelt alert": (replaced("{name: SvcAvail}", "{name: SvcAvail, ticket_alerts: {}}"), 10,
                       "unknown field 'ticket_alerts' in the alerting block"),
    "alert label name": (replaced("{name: SvcAvail}",
                                  "{name: SvcAvail, page_alert: {labels: {a-b: c}}}"), 10,
                         "alerting.page_alert.labels.a-b: invalid label name 'a-b'"),
    "annotation empty": (replaced("{name: SvcAvail}",
                                  "{name: SvcAvail, annotations: {summary: ''}}"), 10,
                         "alerting.annotations.summary: the annotation value is required"),
    "annotation name": (replaced("{name: SvcAvail}",
                                 "{name: SvcAvail, annotations: {a-b: c}}"), 10,
                        "invalid annotation name 'a-b'"),
    "annotation template": (replaced(
        "{name: SvcAvail}", "{name: SvcAvail, ticket_alert: {annotations: "
                            "{summary: '{{ $labels.x '}}}"), 10,
        "alerting.ticket_alert.annotations.summary: invalid alert template"),
    "slo repeated": (BODY + SLO, 11, "slo \"avail\": the SLO ID 'svc-avail' is repeated "
                                     "(first at line 4)"),
    "yaml syntax": (BODY + "  - name: [\n", 12, "invalid YAML"),
    "duplicate key": (replaced("    objective: 99.9\n", "    objective: 99.9\n    objective: 99\n"),
                      6, "duplicate key 'objective'"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_each_problem_names_file_line_slo_and_field(case: str) -> None:
    text, line, expected = ERRORS[case]
    message = problems_of(text, file="spec.yml")
    first = message.splitlines()[0]
    assert first.startswith("spec.yml:" if line is None else f"spec.yml:{line}: "), message
    assert expected in message


def test_every_problem_is_reported_at_once() -> None:
    text = replaced("99.9", "0", replaced('"svc"', '"s v c"'))
    text = replaced("{name: SvcAvail}", "{name: SvcAvail, page_alert: {disable: 3}}", text)
    with pytest.raises(SloFileError) as caught:
        parse_slo_file(text, file="spec.yml")
    lines = str(caught.value).splitlines()
    assert [problem.line for problem in caught.value.problems] == [2, 5, 10]
    assert lines[0].startswith("spec.yml:2: service:")
    assert lines[1].startswith('spec.yml:5: slo "avail": objective:')
    assert lines[2].startswith('spec.yml:10: slo "avail": alerting.page_alert.disable:')


def test_a_sloth_spec_with_unknown_fields_is_refused_not_ignored() -> None:
    # Sloth would ignore `ticket_alerts` and keep the ticket alert on; here it is an error.
    message = problems_of(replaced("{name: SvcAvail}",
                                   "{name: SvcAvail, ticket_alerts: {disable: true}}"))
    assert "unknown field 'ticket_alerts'" in message


def test_a_problem_is_a_config_error_with_the_file() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_slo_file(replaced("99.9", "0"), file="x.yml")
    assert caught.value.file == "x.yml"
    assert caught.value.line == 5
