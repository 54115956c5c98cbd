"""PromQL builders for the dashboards: every selector filters on `instance=~"$instance"`.

With the variable at All (`.*`) the matcher also selects series that have no `instance`
label at all, which is every series in the daemon's own store; on a central Prometheus it
narrows the fleet to the chosen hosts. Aggregations name what they keep (`sum by (model)`),
so a panel sums the chosen hosts together unless it keeps `instance` itself.
"""

from __future__ import annotations

from collections.abc import Sequence

NAMESPACE = "inferwatch"
RATE = "$__rate_interval"
RANGE = "$__range"
INSTANCE_MATCHER = 'instance=~"$instance"'


def sel(name: str, *matchers: str) -> str:
    """`<ns>_<name>{instance=~"$instance", matchers...}`; matchers as PromQL text."""
    return f"{NAMESPACE}_{name}{{{', '.join((INSTANCE_MATCHER, *matchers))}}}"


def by(labels: Sequence[str]) -> str:
    return f"by ({', '.join(labels)}) " if labels else ""


def agg_rate(name: str, *matchers: str, keep: Sequence[str] = (), window: str = RATE,
             fn: str = "rate", op: str = "sum") -> str:
    """`sum by (keep) (rate(<selector>[window]))`."""
    return f"{op} {by(keep)}({fn}({sel(name, *matchers)}[{window}]))"


def quantile(q: float, histogram: str, *matchers: str, keep: Sequence[str] = ()) -> str:
    """The q-quantile of a histogram family's buckets over the rate interval."""
    return (f"histogram_quantile({q:g}, sum {by((*keep, 'le'))}"
            f"(rate({sel(histogram + '_bucket', *matchers)}[{RATE}])))")
