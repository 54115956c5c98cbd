"""Prometheus rule files for SLOs: the rules Sloth generates, as YAML text (`export rules`).

Owns the generated rules. For each SLO, three groups as Sloth writes them
(`internal/plugin/slo/core/{sli_rules,metadata_rules,alert_rules}_v1/plugin.go`,
`internal/storage/io/std_prometheus.go`), same group names, record names, labels and
expressions, so that Sloth's dashboards and alert routes work unchanged:

- `sloth-slo-sli-recordings-<id>`: `slo:sli_error:ratio_rate<w>` for each burn-rate window
  (5m, 30m, 1h, 2h, 6h, 1d, 3d) from the SLI query, and for the SLO period (`ratio_rate30d`,
  `ratio_rate4w` for 28d) as the mean of the 5m ratio over the period (or, not `optimized`,
  from the SLI query too).
- `sloth-slo-meta-recordings-<id>`: `slo:objective:ratio`, `slo:error_budget:ratio`,
  `slo:time_period:days`, `slo:current_burn_rate:ratio`, `slo:period_burn_rate:ratio`,
  `slo:period_error_budget_remaining:ratio`, `sloth_slo_info`.
- `sloth-slo-alerts-<id>`: the page and ticket multiwindow, multi-burn-rate alerts, then our
  addition, `<alerting.name>BudgetHalfSpent`: the alert that Sloth's contrib plugin
  `sloth.dev/contrib/error_budget_exhausted_alert/v1` writes with `threshold: 0.5`, without
  the plugin's `for: 5m`, so that it fires on the same minute as the daemon's own (which,
  like the burn-rate alerts, has no `for`).

The YAML is written as Sloth's yaml.v2 writes it (key order, sorted label keys, literal blocks
for multi-line expressions, double quotes for strings that would read back as another type,
lines folded at 80 columns) and numbers are printed as Go prints them, so the output for
Sloth's examples is Sloth's, byte for byte, after the header comment; `sloth_version` in
`sloth_slo_info` says inferwatch made it.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import yaml

from monitor import __version__
from monitor.slo.model import (
    BUDGET_ALERT_THRESHOLD,
    VERSION,
    AlertKind,
    BurnRateWindow,
    Slo,
    prom_duration,
)

SLI_ERROR_RECORD = "slo:sli_error:ratio_rate"
OBJECTIVE_RECORD = "slo:objective:ratio"
ERROR_BUDGET_RECORD = "slo:error_budget:ratio"
TIME_PERIOD_RECORD = "slo:time_period:days"
CURRENT_BURN_RATE_RECORD = "slo:current_burn_rate:ratio"
PERIOD_BURN_RATE_RECORD = "slo:period_burn_rate:ratio"
BUDGET_REMAINING_RECORD = "slo:period_error_budget_remaining:ratio"
INFO_RECORD = "sloth_slo_info"
WINDOW_LABEL = "sloth_window"
GROUP_PREFIXES = ("sloth-slo-sli-recordings-", "sloth-slo-meta-recordings-", "sloth-slo-alerts-")

Rule = dict[str, Any]
Group = dict[str, Any]


@dataclass(frozen=True)
class GeneratorInfo:
    """The labels of `sloth_slo_info` that say what generated the rules."""

    version: str = f"inferwatch-{__version__}"
    mode: str = "cli-gen-prom"  # Sloth's mode for a CLI writing Prometheus rules
    spec: str = VERSION


def sli_record(window_s: int) -> str:
    """`slo:sli_error:ratio_rate5m` for 300 s."""
    return SLI_ERROR_RECORD + prom_duration(window_s)


# --- numbers and strings as Go prints them ---------------------------------------------------


def _shortest(value: float) -> tuple[str, int]:
    """The shortest round-trip digits of a finite, non-zero |value| and the decimal exponent
    of the first digit."""
    _, digits, exponent = Decimal(repr(abs(value))).normalize().as_tuple()
    text = "".join(map(str, digits))
    assert isinstance(exponent, int)
    return text, len(text) + exponent - 1


def go_float(value: float) -> str:
    """`fmt.Sprint(value)` of a float64 (%g, shortest): `14.4`, `6`, `1e+06`, `1e-05`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    digits, exponent = _shortest(value)
    if exponent < -4 or exponent >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    return sign + _fixed(digits, exponent)


def go_float_f(value: float) -> str:
    """`strconv.FormatFloat(value, 'f', -1, 64)`: shortest digits, never an exponent."""
    if not math.isfinite(value) or value == 0:
        return go_float(value)
    digits, exponent = _shortest(value)
    return ("-" if value < 0 else "") + _fixed(digits, exponent)


def _fixed(digits: str, exponent: int) -> str:
    if exponent < 0:
        return "0." + "0" * (-exponent - 1) + digits
    whole = digits[:exponent + 1].ljust(exponent + 1, "0")
    fraction = digits[exponent + 1:]
    return whole + ("." + fraction if fraction else "")


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\", '"': '\\"'}


def go_quote(text: str) -> str:
    """`strconv.Quote(text)`: Go's %q."""
    out = []
    for char in text:
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable() and not "\ud800" <= char <= "\udfff":
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif "\ud800" <= char <= "\udfff":
            out.append("\\ufffd")
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) < 0x10000 else f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def label_filter(labels: Mapping[str, str]) -> str:
    """A selector's matchers as prometheus/common's LabelSet.String() writes them."""
    return "{" + ", ".join(sorted(f"{key}={go_quote(value)}"
                                  for key, value in labels.items())) + "}"


# --- the rules -------------------------------------------------------------------------------


def _sorted_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {key: labels[key] for key in sorted(labels, key=_go_yaml_key)}


def _sli_rules(slo: Slo, labels: Mapping[str, str], *, optimized: bool) -> list[Rule]:
    windows = slo.alert_windows
    rules = []
    for window_s in (*windows.windows_s(), slo.time_window_s):
        window = prom_duration(window_s)
        expr = slo.error_ratio_query(window)
        if optimized and window_s == slo.time_window_s:
            # The mean of the shortest window's ratio over the period (Sloth's default).
            short = sli_record(windows.page_quick.short_s)
            selector = f"{short}{label_filter(slo.id_labels())}[{window}]"
            expr = (f"sum_over_time({selector})\n/ ignoring ({WINDOW_LABEL})\n"
                    f"count_over_time({selector})\n")
        rules.append({"record": sli_record(window_s), "expr": expr,
                      "labels": _sorted_labels({**slo.id_labels(), WINDOW_LABEL: window,
                                                **labels})})
    return rules


def _burn_rate_expr(slo: Slo, sli_window_s: int) -> str:
    matchers = label_filter(slo.id_labels())
    ids = ", ".join(slo.id_labels())
    return (f"{sli_record(sli_window_s)}{matchers}\n/ on({ids}) group_left\n"
            f"{ERROR_BUDGET_RECORD}{matchers}\n")


def _meta_rules(slo: Slo, labels: Mapping[str, str], info: GeneratorInfo) -> list[Rule]:
    common = _sorted_labels({**slo.id_labels(), **labels})
    objective = go_float(slo.objective_ratio)
    info_labels = {**common, "sloth_version": info.version, "sloth_mode": info.mode,
                   "sloth_spec": info.spec, "sloth_objective": go_float_f(slo.objective)}
    return [
        {"record": OBJECTIVE_RECORD, "expr": f"vector({objective})", "labels": common},
        {"record": ERROR_BUDGET_RECORD, "expr": f"vector(1-{objective})", "labels": common},
        {"record": TIME_PERIOD_RECORD, "expr": f"vector({go_float(slo.time_window_s / 86400)})",
         "labels": common},
        {"record": CURRENT_BURN_RATE_RECORD,
         "expr": _burn_rate_expr(slo, slo.alert_windows.page_quick.short_s), "labels": common},
        {"record": PERIOD_BURN_RATE_RECORD, "expr": _burn_rate_expr(slo, slo.time_window_s),
         "labels": common},
        {"record": BUDGET_REMAINING_RECORD,
         "expr": f"1 - {PERIOD_BURN_RATE_RECORD}{label_filter(slo.id_labels())}",
         "labels": common},
        {"record": INFO_RECORD, "expr": "vector(1)", "labels": _sorted_labels(info_labels)},
    ]


def _pair(slo: Slo, pair: BurnRateWindow) -> str:
    matchers = label_filter(slo.id_labels())
    threshold = f"({go_float(pair.factor)} * {go_float(slo.error_budget_ratio)})"
    short, long = (f"    max({sli_record(window)}{matchers} > {threshold}) "
                   f"without ({WINDOW_LABEL})" for window in (pair.short_s, pair.long_s))
    return f"(\n{short}\n    and\n{long}\n)"


def burn_rate_alert_expr(slo: Slo, kind: AlertKind) -> str:
    """The page or ticket alert's expression, as Sloth's multiwindow alert template."""
    windows = slo.alert_windows
    if kind == "budget":
        raise ValueError("the budget alert is not a burn-rate alert: see budget_alert_expr")
    quick, slow = ((windows.page_quick, windows.page_slow) if kind == "page"
                   else (windows.ticket_quick, windows.ticket_slow))
    return f"{_pair(slo, quick)}\nor\n{_pair(slo, slow)}\n"


def budget_alert_expr(slo: Slo, labels: Mapping[str, str]) -> str:
    """Half the period's budget spent, as Sloth's error_budget_exhausted_alert plugin."""
    return (f"{BUDGET_REMAINING_RECORD}{label_filter({**slo.id_labels(), **labels})} <= "
            f"{go_float(BUDGET_ALERT_THRESHOLD)}")


def _alert_rules(slo: Slo, labels: Mapping[str, str]) -> list[Rule]:
    rules: list[Rule] = []
    for kind in ("page", "ticket", "budget"):
        alert = slo.alert_rule(kind)
        if alert is None:
            continue
        rule: Rule = {"alert": alert.name}
        if kind == "budget":
            rule["expr"] = budget_alert_expr(slo, labels)
        else:
            rule["expr"] = burn_rate_alert_expr(slo, alert.kind)
        rule["labels"] = _sorted_labels(alert.labels)
        rule["annotations"] = _sorted_labels(alert.annotations)
        rules.append(rule)
    return rules


def slo_rule_groups(slo: Slo, *, extra_labels: Mapping[str, str] | None = None,
                    info: GeneratorInfo | None = None, optimized: bool = True) -> list[Group]:
    """The rule groups of one SLO.

    `extra_labels` are added to every recorded series, as Sloth's `--extra-labels`. With
    `optimized` False the period's ratio is the SLI query over the whole period (the true event
    ratio, what the daemon computes) instead of the mean of the 5m ratios: Sloth's sli_rules
    plugin with `disableOptimized: true`.
    """
    labels = {**slo.labels, **(extra_labels or {})}
    sli, meta, alerts = GROUP_PREFIXES
    groups = [{"name": sli + slo.id, "rules": _sli_rules(slo, labels, optimized=optimized)},
              {"name": meta + slo.id, "rules": _meta_rules(slo, labels, info or GeneratorInfo())}]
    alert_rules = _alert_rules(slo, labels)
    if alert_rules:
        groups.append({"name": alerts + slo.id, "rules": alert_rules})
    return groups


HEADER = ("---\n# Code generated by inferwatch {version} from Sloth \"prometheus/v1\" SLO specs: "
          "Sloth's rules,\n# plus an alert when half the error budget is spent. DO NOT EDIT.\n\n")


def render_rules(slos: Sequence[Slo], *, extra_labels: Mapping[str, str] | None = None,
                 info: GeneratorInfo | None = None, optimized: bool = True,
                 header: bool = True) -> str:
    """A Prometheus rule file with the groups of every SLO, in order (see slo_rule_groups)."""
    groups = [group for slo in slos
              for group in slo_rule_groups(slo, extra_labels=extra_labels, info=info,
                                           optimized=optimized)]
    text = yaml.dump({"groups": groups}, Dumper=_GoYamlDumper, sort_keys=False,
                     default_flow_style=False, allow_unicode=True, width=80, indent=2)
    return (HEADER.format(version=__version__) if header else "") + text


# --- YAML as gopkg.in/yaml.v2 writes it ------------------------------------------------------


class _GoYamlDumper(yaml.SafeDumper):
    """Strings styled as yaml.v2 styles them: literal blocks for multi-line text, double
    quotes for text that would read back as another type, otherwise the emitter's choice;
    no anchors and aliases for values that appear twice."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_V2_NOT_STRINGS = frozenset({
    "y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "n", "N", "no", "No", "NO", "off", "Off",
    "OFF", "true", "True", "TRUE", "false", "False", "FALSE", "", "~", "null", "Null", "NULL",
    ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf",
    "-.INF", "<<"})
_V2_FLOAT_RE = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_V2_INT_RE = re.compile(r"[-+]?(0[xX][0-9a-fA-F]+|0[oO]?[0-7]+|0[bB][01]+|[0-9]+)")
_BASE60_RE = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?")
_TIMESTAMP_RE = re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ][0-9].*)?")


def _reads_as_other_type(text: str) -> bool:
    """True when yaml.v2 would resolve this plain text to a non-string (its `resolve`)."""
    if text in _V2_NOT_STRINGS or _BASE60_RE.fullmatch(text):
        return True
    if text[0] not in "0123456789+-.":
        return False
    plain = text.replace("_", "")
    return bool(_TIMESTAMP_RE.fullmatch(text) or _V2_INT_RE.fullmatch(plain)
                or _V2_FLOAT_RE.fullmatch(plain))


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else '"' if _reads_as_other_type(text) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_GoYamlDumper.add_representer(str, _represent_str)


def _go_yaml_cmp(a: str, b: str) -> int:
    """yaml.v2's map key order (sorter.go): letters after other characters, digit runs by
    their numeric value."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x == y:
            continue
        x_letter, y_letter = x.isalpha(), y.isalpha()
        if x_letter and y_letter:
            return -1 if x < y else 1
        if x_letter or y_letter:
            return -1 if y_letter else 1
        # yaml.v2 reads a digit run that continues a non-zero digit with a leading 1.
        carry = (x == "0" or y == "0") and any(c != "0" for c in _leading_digits(a, i))
        x_num, x_end = _digit_run(a, i, int(carry))
        y_num, y_end = _digit_run(b, i, int(carry))
        if x_num != y_num:
            return -1 if x_num < y_num else 1
        if x_end != y_end:
            return -1 if x_end < y_end else 1
        return -1 if x < y else 1
    return (len(a) > len(b)) - (len(a) < len(b))


def _digit_run(text: str, start: int, value: int) -> tuple[int, int]:
    end = start
    while end < len(text) and text[end].isdigit():
        value = value * 10 + int(text[end])
        end += 1
    return value, end


def _leading_digits(text: str, index: int) -> str:
    start = index
    while start > 0 and text[start - 1].isdigit():
        start -= 1
    return text[start:index]


_go_yaml_key = functools.cmp_to_key(_go_yaml_cmp)
