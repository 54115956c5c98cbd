"""The rules benchmark's workload: 200 alerting rules and three dashboard range queries.

Ten rule templates, each written once per service (`svc-00` … `svc-19`), so every rule selects
1/20 of a family and the group's total work grows with the number of series. The templates are
the usual kinds of inference alerts: a gauge threshold, rate() of a counter summed by labels,
histogram_quantile over bucket rates, the ratio of two rates (one-to-one and aggregated), an
SLO burn rate over 1 h, avg_over_time, absent(), and a vector `and` join.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml
from rules_data import SERVICES

from monitor.alerting.groups import RuleGroup
from monitor.alerting.manager import build_group
from monitor.alerting.rulefmt import parse_rule_file
from monitor.alerting.rules import TemplateContext

GROUP_INTERVAL = "15s"


@dataclass(frozen=True)
class RuleTemplate:
    name: str
    expr: str  # `{S}` is the service
    kind: str  # what it exercises, for the per-template table


TEMPLATES: tuple[RuleTemplate, ...] = (
    RuleTemplate(
        "ErrorRatioHigh",
        'sum by (service, model) (rate(inferwatch_requests_total{{service="{S}",'
        'status="error"}}[5m])) / sum by (service, model) '
        '(rate(inferwatch_requests_total{{service="{S}"}}[5m])) > 0.05',
        "ratio of two summed rates"),
    RuleTemplate(
        "LatencyP95High",
        'histogram_quantile(0.95, sum by (service, model, le) '
        '(rate(inferwatch_request_duration_seconds_bucket{{service="{S}"}}[5m]))) > 15',
        "histogram_quantile of bucket rates"),
    RuleTemplate(
        "MeanLatencyHigh",
        'rate(inferwatch_request_duration_seconds_sum{{service="{S}"}}[5m]) / '
        'rate(inferwatch_request_duration_seconds_count{{service="{S}"}}[5m]) > 6',
        "one-to-one ratio of rates"),
    RuleTemplate(
        "ThroughputLow",
        'sum by (service) (rate(inferwatch_requests_total{{service="{S}",'
        'status="success"}}[5m])) < 2',
        "sum of rates, threshold"),
    RuleTemplate(
        "QueueBacklog",
        'inferwatch_queue_depth{{service="{S}"}} > 30',
        "gauge threshold"),
    RuleTemplate(
        "KVCacheSaturated",
        'avg_over_time(inferwatch_kv_cache_usage_ratio{{service="{S}"}}[10m]) > 0.9',
        "avg_over_time of a gauge"),
    RuleTemplate(
        "ErrorBudgetBurn",
        'sum by (service) (increase(inferwatch_request_errors_total{{service="{S}"}}[1h])) / '
        'sum by (service) (increase(inferwatch_requests_total{{service="{S}"}}[1h])) '
        '> 14.4 * 0.001',
        "1 h burn rate (long windows)"),
    RuleTemplate(
        "RateLimited",
        'sum by (service, instance) (rate(inferwatch_request_errors_total{{service="{S}",'
        'class="rate_limit"}}[5m])) > 0.05',
        "rate of a filtered counter"),
    RuleTemplate(
        "ServiceAbsent",
        'absent(inferwatch_requests_total{{service="{S}",status="success"}})',
        "absent()"),
    RuleTemplate(
        "GPUIdleUnderLoad",
        'avg by (instance, service) (inferwatch_gpu_utilization_ratio{{service="{S}"}}) < 0.3 '
        'and on (instance, service) sum by (instance, service) '
        '(rate(inferwatch_requests_total{{service="{S}"}}[5m])) > 1',
        "vector `and` join"),
)

RANGE_QUERIES: tuple[tuple[str, str], ...] = (
    ("requests by model", "sum by (model) (rate(inferwatch_requests_total[5m]))"),
    ("p95 latency", "histogram_quantile(0.95, sum by (le) "
                    "(rate(inferwatch_request_duration_seconds_bucket[5m])))"),
    ("plain gauge", "inferwatch_gpu_utilization_ratio"),
)


@dataclass(frozen=True)
class BenchRule:
    name: str
    template: str
    expr: str


def services() -> list[str]:
    return [f"svc-{i:02d}" for i in range(SERVICES)]


def bench_rules() -> list[BenchRule]:
    """The 200 rules, template-major (all ErrorRatioHigh first, …)."""
    return [BenchRule(f"{t.name}_{service.replace('-', '_')}", t.name, t.expr.format(S=service))
            for t in TEMPLATES for service in services()]


def rule_file_text(rules: list[BenchRule]) -> str:
    """The rules as one Prometheus rule file (one group), valid for `promtool check rules`."""
    document = {"groups": [{"name": "bench", "interval": GROUP_INTERVAL, "rules": [
        {"alert": rule.name, "expr": rule.expr, "for": "5m",
         "labels": {"severity": "page" if rule.template == "ErrorBudgetBurn" else "warning",
                    "team": "inference"},
         "annotations": {
             "summary": f"{rule.template} on {{{{ $labels.service }}}}",
             "description": "{{ $labels.instance }} {{ $labels.model }}: value "
                            "{{ $value | humanize }}"}}
        for rule in rules]}]}
    return yaml.safe_dump(document, sort_keys=False, width=200)


def build_rule_group(text: str) -> RuleGroup:
    """A fresh RuleGroup (no alert state) from the rule file text, as the daemon builds it."""
    (spec,) = parse_rule_file(text, file="bench-rules.yml")
    templates = TemplateContext(external_labels={}, external_url="http://localhost:9090")
    return build_group(spec, 15_000, templates)
