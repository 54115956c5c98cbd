"""The *LLM service* and *Cost* dashboards: what the requests in the logs did and cost.

Request panels read the families counted from the logs (requests, errors, latency, time to
first token, tokens, generation speed, prompt length); cost panels read the spend counter,
the budget gauges, the cache savings counter and the self-hosted cost per 1M tokens. Where a
bundled rule alerts on what a panel shows, the panel's threshold is that rule's.
"""

from __future__ import annotations

from monitor.grafana.model import (
    GREEN,
    ORANGE,
    RED,
    Dashboard,
    Panel,
    Row,
    Target,
    steps_above,
)
from monitor.grafana.promql import RANGE, agg_rate, quantile, sel
from monitor.grafana.thresholds import threshold

TOKENS_PER_SECOND = "suffix: tok/s"
TOKENS = "suffix: tokens"
MONEY = "none"


ERROR = 'status="error"'
HIT = 'cache="hit"'
HIT_OR_MISS = 'cache=~"hit|miss"'
INSTANCE_METRIC = "inferwatch_build_info"


def _ratio(numerator: str, denominator: str, join: str = "/") -> str:
    return f"{numerator}\n{join}\n{denominator}"


def _error_ratio(*keep: str) -> str:
    return _ratio(agg_rate("requests_total", ERROR, keep=keep),
                  agg_rate("requests_total", keep=keep))


def llm_service() -> Dashboard:
    latency_limit = threshold("HighLatencyP95")
    error_limit = threshold("HighErrorRatio")
    ttft_limit = threshold("TimeToFirstTokenHigh")
    slow_limit = threshold("SlowGeneration")
    prompt_limit = threshold("LongPrompts")
    latency_steps = steps_above(GREEN, (latency_limit, RED))
    overview = Row("Overview", (
        Panel("Requests/s", "stat", (Target(agg_rate("requests_total")),), unit="reqps",
              width=6, height=4, decimals=2),
        Panel("Error ratio", "stat", (Target(_error_ratio()),), unit="percentunit", width=6,
              height=4, decimals=2, thresholds=steps_above(GREEN, (error_limit, RED)),
              description=f"Failed over all requests; HighErrorRatio pages above "
                          f"{error_limit:g} (per source, service and model) for 5 minutes."),
        Panel("p95 latency", "stat",
              (Target(quantile(0.95, "request_duration_seconds")),), unit="s", width=6,
              height=4, thresholds=latency_steps,
              description=f"HighLatencyP95 pages above {latency_limit:g}s for 10 minutes."),
        Panel("Output tokens/s", "stat", (Target(agg_rate("output_tokens_total")),),
              unit=TOKENS_PER_SECOND, width=6, height=4, decimals=1),
    ))
    traffic = Row("Traffic and errors", (
        Panel("Requests/s by source and model", "timeseries",
              (Target(agg_rate("requests_total", keep=("source", "model")),
                      "{{source}} {{model}}"),), unit="reqps"),
        Panel("Error ratio by class", "timeseries",
              (Target(_ratio(agg_rate("request_errors_total", keep=("class",)),
                             agg_rate("requests_total"), "/ on () group_left ()"),
                      "{{class}}"),),
              unit="percentunit", stack=True,
              thresholds=steps_above(GREEN, (error_limit, RED)),
              description="Failed requests of each error class over all requests; the stack's "
                          f"top is the error ratio. The line is HighErrorRatio's "
                          f"{error_limit:g}."),
    ))
    latency = Row("Latency", (
        Panel("Request latency p50 / p95 / p99", "timeseries", tuple(
            Target(quantile(q, "request_duration_seconds"), f"p{round(q * 100)}")
            for q in (0.5, 0.95, 0.99)), unit="s", thresholds=latency_steps),
        Panel("p95 latency by model", "timeseries",
              (Target(quantile(0.95, "request_duration_seconds", keep=("source", "model")),
                      "{{source}} {{model}}"),), unit="s", thresholds=latency_steps),
        Panel("Request latency heatmap", "heatmap",
              (Target(agg_rate("request_duration_seconds_bucket", keep=("le",),
                               fn="increase"), "{{le}}", format="heatmap"),), unit="s",
              description="Requests per latency bucket and interval."),
        Panel("Time to first token p50 / p95", "timeseries", tuple(
            Target(quantile(q, "time_to_first_token_seconds"), f"p{round(q * 100)}")
            for q in (0.5, 0.95)), unit="s",
            thresholds=steps_above(GREEN, (ttft_limit, RED)),
            description=f"TimeToFirstTokenHigh alerts when p95 stays above {ttft_limit:g}s."),
    ))
    tokens = Row("Tokens", (
        Panel("Tokens/s", "timeseries", (
            Target(agg_rate("input_tokens_total", keep=("cache",)), "input ({{cache}})"),
            Target(agg_rate("output_tokens_total"), "output"),
            Target(agg_rate("reasoning_tokens_total"), "output: reasoning"),
        ), unit=TOKENS_PER_SECOND,
            description="Input tokens by prompt-cache outcome; reasoning tokens are a part "
                        "of the output tokens."),
        Panel("Output tokens per second per request (p10 / p50)", "timeseries", tuple(
            Target(quantile(q, "output_tokens_per_second"), f"p{round(q * 100)}")
            for q in (0.1, 0.5)), unit=TOKENS_PER_SECOND,
            thresholds=steps_above(RED, (slow_limit, GREEN)),
            description=f"Generation speed of single requests; SlowGeneration alerts when "
                        f"p10 stays below {slow_limit:g}."),
        Panel("Input length p50 / p95", "timeseries", tuple(
            Target(quantile(q, "request_input_tokens"), f"p{round(q * 100)}")
            for q in (0.5, 0.95)), unit=TOKENS,
            thresholds=steps_above(GREEN, (prompt_limit, ORANGE)),
            description=f"LongPrompts reports p95 above {prompt_limit:g} tokens."),
        Panel("Input length distribution", "bargauge",
              (Target(agg_rate("request_input_tokens_bucket", keep=("le",), window=RANGE,
                               fn="increase"), "{{le}}", instant=True, format="heatmap"),),
              unit="short", decimals=0,
              description="Requests per prompt-length bucket (tokens, upper bound) over the "
                          "time range."),
    ))
    return Dashboard(
        uid="inferwatch-llm-service", title="inferwatch / LLM service",
        description="Requests read from the inference and API logs: traffic, errors, "
                    "latency, time to first token, tokens and prompt length.",
        rows=(overview, traffic, latency, tokens), instance_metric=INSTANCE_METRIC)


def cost() -> Dashboard:
    budget_steps = steps_above(GREEN, (threshold("BudgetThresholdCrossed", 0), ORANGE),
                               (threshold("BudgetThresholdCrossed", 1), RED))
    spend_range = agg_rate("cost_total", keep=("currency",), window=RANGE, fn="increase")
    spend = Row("Spend and budgets", (
        Panel("Spend today", "stat", (Target(spend_range, "{{currency}}", instant=True),),
              unit=MONEY, decimals=2, width=6, height=5, time_from="now/d",
              description="Increase of cost_total since midnight of the dashboard's time "
                          "zone. The budgets count in cost.timezone from the exact ledger."),
        Panel("Spend this month", "stat", (Target(spend_range, "{{currency}}", instant=True),),
              unit=MONEY, decimals=2, width=6, height=5, time_from="now/M",
              description="Increase of cost_total since the first of the month. A single "
                          "daemon keeps storage.retention of samples (6h by default): point "
                          "the dashboard at a Prometheus for whole months."),
        Panel("Budget spent", "bargauge",
              (Target(sel("budget_spent_ratio"), "{{budget}}", instant=True),),
              unit="percentunit", min=0, max=1, thresholds=budget_steps, width=6, height=5,
              description="Spend in each budget's current period over its limit; "
                          "BudgetThresholdCrossed alerts at these steps."),
        Panel("Forecast over limit", "bargauge",
              (Target(_ratio(sel("budget_forecast"), sel("budget_limit")), "{{budget}}",
                      instant=True),),
              unit="percentunit", min=0, max=1.5, width=6, height=5,
              thresholds=steps_above(GREEN, (1.0, RED)),
              description="Projected spend at the end of the period over the limit; "
                          "BudgetForecastExceeded fires above 100 %."),
        Panel("Budgets: spent, forecast and limit", "timeseries", (
            Target(sel("budget_spent"), "{{budget}} spent ({{currency}})"),
            Target(sel("budget_forecast"), "{{budget}} forecast ({{currency}})"),
            Target(sel("budget_limit"), "{{budget}} limit ({{currency}})"),
        ), unit=MONEY, decimals=2, width=24),
    ))
    by_what = Row("By model and user", (
        Panel("Spend per hour by model", "timeseries",
              (Target(agg_rate("cost_total", keep=("model", "currency")) + " * 3600",
                      "{{model}} ({{currency}})"),), unit=MONEY, decimals=3, stack=True),
        Panel("Spend by model (time range)", "bargauge",
              (Target(agg_rate("cost_total", keep=("model", "currency"), window=RANGE,
                               fn="increase"), "{{model}} ({{currency}})", instant=True),),
              unit=MONEY, decimals=2),
        Panel("Spend by user (time range)", "bargauge",
              (Target(agg_rate("cost_total", keep=("user", "currency"), window=RANGE,
                               fn="increase"), "{{user}} ({{currency}})", instant=True),),
              unit=MONEY, decimals=2,
              description="Needs metrics.user_label: true (off by default: user IDs are "
                          "unbounded); without it all spend shows under an empty user."),
        Panel("Requests by user (time range)", "bargauge",
              (Target(agg_rate("requests_total", keep=("user",), window=RANGE,
                               fn="increase"), "{{user}}", instant=True),),
              unit="short", decimals=0,
              description="Needs metrics.user_label: true, as the panel beside it."),
    ))
    cache = Row("Prompt cache and self-hosting", (
        Panel("Prompt cache hit ratio", "timeseries",
              (Target(_ratio(agg_rate("input_tokens_total", HIT, keep=("model",)),
                             agg_rate("input_tokens_total", HIT_OR_MISS, keep=("model",))),
                      "{{model}}"),), unit="percentunit", min=0, max=1, width=8,
              description="Input tokens served from the provider's prompt cache over the "
                          "input tokens whose cache outcome the logs report."),
        Panel("Saved by prompt cache hits (time range)", "stat",
              (Target(agg_rate("cost_cache_savings_total", keep=("currency",), window=RANGE,
                               fn="increase"), "{{currency}}", instant=True),),
              unit=MONEY, decimals=2, width=8,
              description="What the cache-hit input tokens would have cost more at the "
                          "cache-miss price (cost_cache_savings_total)."),
        Panel("Cost per 1M output tokens: self-hosted vs API", "timeseries", (
            Target(sel("self_hosted_cost_per_million_tokens"),
                   "{{source}} self-hosted ({{currency}})"),
            Target(_ratio(
                agg_rate("cost_total", keep=("instance", "source", "currency"), window="1h",
                         fn="increase"),
                "(" + agg_rate("output_tokens_total", keep=("instance", "source"),
                               window="1h", fn="increase") + " / 1e6)",
                "/ on (instance, source) group_left ()"),
                "{{source}} API spend ({{currency}})"),
        ), unit=MONEY, decimals=2, width=8,
            description="Self-hosted: the source's gpu_hourly_cost over its last hour of "
                        "output tokens. API: the last hour's spend of a priced source over its "
                        "output tokens (input tokens are paid for too, so this is what a "
                        "million generated tokens really cost)."),
    ))
    return Dashboard(
        uid="inferwatch-cost", title="inferwatch / Cost",
        description="Token spend from the price table, budgets and their forecasts, the "
                    "prompt cache's savings and self-hosted cost per 1M tokens.",
        rows=(spend, by_what, cache), instance_metric=INSTANCE_METRIC)
