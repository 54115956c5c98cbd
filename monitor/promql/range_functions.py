"""Functions of a range vector, one value per series and step (promql/functions.go, 2.42).

Each function sees one series' samples in [start, end] (stale markers already dropped, never
empty) and the call's scalar arguments. `None` means "no output for this series at this step"
(rate and friends need two samples). Floating-point order of operations is Go's: sums and
means use the Kahan-Neumaier compensation where 2.42 does (sum/avg/stddev/stdvar_over_time,
deriv, predict_linear) and nowhere else, so results match to the last bit.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import msgspec

from monitor.promql.gomath import go_div, sqrt
from monitor.promql.quantile import quantile


class FunctionError(ValueError):
    """A function call Prometheus rejects at evaluation time; the message is Prometheus's."""


class RangeInput(msgspec.Struct, gc=False):
    """One series' samples in one window, built once per series per step (hence a msgspec
    Struct: cheap to build; it only holds the window's own lists, never itself)."""

    ts: list[int]  # sample timestamps (ms) in the window, ascending, never empty
    vs: list[float]
    start_ms: int  # window start: the (offset/@-adjusted) reference time minus the range
    end_ms: int  # window end: the reference time
    params: tuple[float, ...]  # the call's scalar arguments, the matrix argument left out
    # The evaluation time, which predict_linear extrapolates from (Prometheus's enh.Ts). It
    # differs from end_ms under offset or @; None means end_ms.
    t_ms: int | None = None


_le = operator.le

RangeFunction = Callable[[RangeInput], float | None]


def kahan_sum_inc(inc: float, total: float, compensation: float) -> tuple[float, float]:
    """kahanSumInc: one Neumaier-compensated addition."""
    t = total + inc
    if abs(total) >= abs(inc):
        compensation += (total - t) + inc
    else:
        compensation += (inc - t) + total
    return t, compensation


def _range_seconds(window: RangeInput) -> float:
    # time.Duration.Seconds(): whole seconds plus the nanosecond remainder over 1e9.
    whole, millis = divmod(window.end_ms - window.start_ms, 1000)
    return float(whole) + float(millis * 1_000_000) / 1e9


def _extrapolated_rate(window: RangeInput, is_counter: bool, is_rate: bool) -> float | None:
    ts, vs = window.ts, window.vs
    if len(vs) < 2:
        return None
    result = vs[-1] - vs[0]
    if is_counter and not all(map(_le, vs, vs[1:])):  # a reset somewhere: the rare case
        previous = vs[0]
        for value in vs[1:]:
            if value < previous:
                result += previous
            previous = value
    to_start = float(ts[0] - window.start_ms) / 1000
    to_end = float(window.end_ms - ts[-1]) / 1000
    sampled = float(ts[-1] - ts[0]) / 1000
    average = sampled / float(len(vs) - 1)
    if is_counter and result > 0 and vs[0] >= 0:
        # A counter cannot go below zero: extrapolate at most to where it would be zero.
        to_zero = sampled * (vs[0] / result)
        to_start = min(to_start, to_zero)
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    factor = go_div(interval, sampled)
    if is_rate:
        factor /= _range_seconds(window)
    return result * factor


def rate(window: RangeInput) -> float | None:
    return _extrapolated_rate(window, is_counter=True, is_rate=True)


def increase(window: RangeInput) -> float | None:
    return _extrapolated_rate(window, is_counter=True, is_rate=False)


def delta(window: RangeInput) -> float | None:
    return _extrapolated_rate(window, is_counter=False, is_rate=False)


def _instant_value(window: RangeInput, is_rate: bool) -> float | None:
    if len(window.vs) < 2:
        return None
    last, previous = window.vs[-1], window.vs[-2]
    result = last if is_rate and last < previous else last - previous
    interval = window.ts[-1] - window.ts[-2]
    if interval == 0:
        return None
    if is_rate:
        result /= float(interval) / 1000
    return result


def irate(window: RangeInput) -> float | None:
    return _instant_value(window, is_rate=True)


def idelta(window: RangeInput) -> float | None:
    return _instant_value(window, is_rate=False)


def _go_percent_f(value: float) -> str:
    """fmt's %f."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:f}"


def holt_winters(window: RangeInput) -> float | None:
    sf, tf = window.params
    if sf <= 0 or sf >= 1:
        raise FunctionError(f"invalid smoothing factor. Expected: 0 < sf < 1, got: "
                            f"{_go_percent_f(sf)}")
    if tf <= 0 or tf >= 1:
        raise FunctionError(f"invalid trend factor. Expected: 0 < tf < 1, got: "
                            f"{_go_percent_f(tf)}")
    vs = window.vs
    if len(vs) < 2:
        return None
    s0, s1, trend = 0.0, vs[0], vs[1] - vs[0]
    for i in range(1, len(vs)):
        x = sf * vs[i]
        if i > 1:  # calcTrendValue(i-1, ...) keeps the initial trend at i-1 == 0
            trend = tf * (s1 - s0) + (1 - tf) * trend
        y = (1 - sf) * (s1 + trend)
        s0, s1 = s1, x + y
    return s1


def avg_over_time(window: RangeInput) -> float | None:
    mean = count = compensation = 0.0
    for value in window.vs:
        count += 1
        if math.isinf(mean):
            if math.isinf(value) and (mean > 0) == (value > 0):
                continue  # same-signed infinities: the mean is right already
            if not math.isinf(value) and not math.isnan(value):
                continue  # a finite value cannot move an infinite mean
        mean, compensation = kahan_sum_inc(value / count - mean / count, mean, compensation)
    return mean if math.isinf(mean) else mean + compensation


def count_over_time(window: RangeInput) -> float | None:
    return float(len(window.vs))


def last_over_time(window: RangeInput) -> float | None:
    return window.vs[-1]


def present_over_time(window: RangeInput) -> float | None:
    return 1.0


def max_over_time(window: RangeInput) -> float | None:
    result = window.vs[0]
    for value in window.vs:
        if value > result or math.isnan(result):
            result = value
    return result


def min_over_time(window: RangeInput) -> float | None:
    result = window.vs[0]
    for value in window.vs:
        if value < result or math.isnan(result):
            result = value
    return result


def sum_over_time(window: RangeInput) -> float | None:
    total = compensation = 0.0
    for value in window.vs:
        total, compensation = kahan_sum_inc(value, total, compensation)
    return total if math.isinf(total) else total + compensation


def quantile_over_time(window: RangeInput) -> float | None:
    return quantile(window.params[0], list(window.vs))


def _variance(values: list[float]) -> float:
    count = mean = mean_c = aux = aux_c = 0.0
    for value in values:
        count += 1
        step = value - (mean + mean_c)
        mean, mean_c = kahan_sum_inc(step / count, mean, mean_c)
        aux, aux_c = kahan_sum_inc(step * (value - (mean + mean_c)), aux, aux_c)
    return (aux + aux_c) / count


def stdvar_over_time(window: RangeInput) -> float | None:
    return _variance(window.vs)


def stddev_over_time(window: RangeInput) -> float | None:
    return sqrt(_variance(window.vs))


def resets(window: RangeInput) -> float | None:
    count, previous = 0, window.vs[0]
    for value in window.vs[1:]:
        if value < previous:
            count += 1
        previous = value
    return float(count)


def changes(window: RangeInput) -> float | None:
    count, previous = 0, window.vs[0]
    for value in window.vs[1:]:
        if value != previous and not (math.isnan(value) and math.isnan(previous)):
            count += 1
        previous = value
    return float(count)


def linear_regression(ts: list[int], vs: list[float],
                      intercept_ms: int) -> tuple[float, float]:
    """Least-squares slope (per second) and the intercept at `intercept_ms`."""
    n = sum_x = c_x = sum_y = c_y = sum_xy = c_xy = sum_x2 = c_x2 = 0.0
    initial = vs[0]
    constant = True
    for i, (t, value) in enumerate(zip(ts, vs, strict=True)):
        if constant and i > 0 and value != initial:
            constant = False
        n += 1.0
        x = float(t - intercept_ms) / 1e3
        sum_x, c_x = kahan_sum_inc(x, sum_x, c_x)
        sum_y, c_y = kahan_sum_inc(value, sum_y, c_y)
        sum_xy, c_xy = kahan_sum_inc(x * value, sum_xy, c_xy)
        sum_x2, c_x2 = kahan_sum_inc(x * x, sum_x2, c_x2)
    if constant:
        if math.isinf(initial):
            return math.nan, math.nan
        return 0.0, initial
    sum_x, sum_y, sum_xy, sum_x2 = sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2
    cov_xy = sum_xy - sum_x * sum_y / n
    var_x = sum_x2 - sum_x * sum_x / n
    slope = go_div(cov_xy, var_x)
    return slope, sum_y / n - slope * sum_x / n


def deriv(window: RangeInput) -> float | None:
    if len(window.vs) < 2:
        return None
    # The first sample's time as the origin keeps the sums small (prometheus#2674).
    slope, _ = linear_regression(window.ts, window.vs, window.ts[0])
    return slope


def predict_linear(window: RangeInput) -> float | None:
    if len(window.vs) < 2:
        return None
    at = window.end_ms if window.t_ms is None else window.t_ms
    slope, intercept = linear_regression(window.ts, window.vs, at)
    return slope * window.params[0] + intercept


RANGE_FUNCTIONS: dict[str, RangeFunction] = {
    "avg_over_time": avg_over_time,
    "changes": changes,
    "count_over_time": count_over_time,
    "delta": delta,
    "deriv": deriv,
    "holt_winters": holt_winters,
    "idelta": idelta,
    "increase": increase,
    "irate": irate,
    "last_over_time": last_over_time,
    "max_over_time": max_over_time,
    "min_over_time": min_over_time,
    "predict_linear": predict_linear,
    "present_over_time": present_over_time,
    "quantile_over_time": quantile_over_time,
    "rate": rate,
    "resets": resets,
    "stddev_over_time": stddev_over_time,
    "stdvar_over_time": stdvar_over_time,
    "sum_over_time": sum_over_time,
}
