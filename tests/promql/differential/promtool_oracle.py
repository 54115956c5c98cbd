"""Talking to `promtool test rules` (Prometheus 2.42) as an oracle, and writing its file format.

Shared by `generate.py` (which asks promtool for answers and writes the suite) and
`test_differential.py` (which re-checks the suite). Everything here follows what
`cmd/promtool/unittest.go` of v2.42.0 does:

- A failed `promql_expr_test` is reported on stderr as
      expr: "<Go %q of the expression>", time: <model.Duration>,
          exp: <samples>
          got: <samples>
  or, when the query fails, `expr: "<...>", time: <...>, err: <message>`. `<samples>` is
  `nil` or `{l="v", ...} <value>, ...` with the labels of `labels.Labels.String()` (values
  Go-quoted) and the value of `strconv.FormatFloat(v, 'E', -1, 64)`: shortest round-trip
  digits, so parsing it back gives the exact float64.
- Both lists are sorted by labels before comparing, and they are compared with
  `reflect.DeepEqual`: exact float equality, no tolerance, and NaN never equals NaN.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PROMTOOL = Path("/usr/bin/promtool")

# A label no input series has: a test expecting it always fails, so promtool prints what it
# got for every test of the generating run (a passing test prints nothing).
SENTINEL_LABELS = '{__differential_sentinel__="1"}'

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    labels: Labels
    value: float
    text: str  # the value exactly as promtool printed it


@dataclass(frozen=True)
class Failure:
    """One failed test in promtool's report."""

    expr: str
    time_ms: int
    error: str | None  # the query failed (parse or evaluation error)
    exp_text: str | None  # the printed lists, when the query ran
    got_text: str | None
    got: tuple[Sample, ...] | None


@dataclass(frozen=True)
class Check:
    """One `promql_expr_test` entry to write."""

    expr: str
    time_ms: int
    samples: tuple[Sample, ...] | None  # None: no exp_samples key (used for error cases)
    comment: str | None = None


# --- durations (prometheus/common model.Duration) -------------------------------------------

_UNITS_MS = (("y", 365 * 86_400_000), ("w", 7 * 86_400_000), ("d", 86_400_000),
             ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))
_DURATION_RE = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?"
                          r"(?:(\d+)ms)?")


def parse_duration(text: str) -> int:
    """A Prometheus duration (`1h30m`, `90s`, `0s`) in milliseconds."""
    m = _DURATION_RE.fullmatch(text)
    if not text or m is None:
        raise ValueError(f"not a duration: {text!r}")
    if text == "0":
        return 0
    return sum(int(g) * mult for g, (_, mult) in zip(m.groups(), _UNITS_MS, strict=True) if g)


def format_duration(ms: int) -> str:
    """`model.Duration.String()`: years and weeks only when exact, then d h m s ms."""
    if ms == 0:
        return "0s"
    out = ""
    for unit, mult in _UNITS_MS:
        if unit in ("y", "w") and ms % mult:
            continue
        if ms >= mult:
            out += f"{ms // mult}{unit}"
            ms %= mult
    return out


# --- Go string quoting -------------------------------------------------------------------------

_GO_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t",
               "\v": r"\v", "\\": "\\\\", '"': '\\"'}
_GO_UNESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                 "\\": "\\", '"': '"', "'": "'"}


def go_quote(s: str) -> str:
    """`strconv.Quote` (what promtool prints, and what the PromQL lexer reads back)."""
    out = ['"']
    for ch in s:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def go_unquote_at(text: str, pos: int) -> tuple[str, int]:
    """Read the Go double-quoted string starting at `text[pos]`; return it and the end index."""
    if text[pos] != '"':
        raise ValueError(f"expected '\"' at {pos}: {text[pos:pos + 40]!r}")
    i = pos + 1
    raw = bytearray()
    while True:
        ch = text[i]
        if ch == '"':
            return raw.decode("utf-8"), i + 1
        if ch == "\n":
            raise ValueError("newline inside a quoted string")
        if ch != "\\":
            raw += ch.encode("utf-8")
            i += 1
            continue
        esc = text[i + 1]
        if esc in _GO_UNESCAPES:
            raw += _GO_UNESCAPES[esc].encode("utf-8")
            i += 2
        elif esc == "x":
            raw.append(int(text[i + 2:i + 4], 16))  # a byte, may be part of a UTF-8 sequence
            i += 4
        elif esc in "uU":
            n = 4 if esc == "u" else 8
            raw += chr(int(text[i + 2:i + 2 + n], 16)).encode("utf-8")
            i += 2 + n
        elif esc in "01234567":
            raw.append(int(text[i + 1:i + 4], 8))
            i += 4
        else:
            raise ValueError(f"unknown escape \\{esc} at {i}")


# --- promtool's sample lists -------------------------------------------------------------------

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_VALUE = re.compile(r"[-+]?(?:Inf|NaN|[0-9.]+(?:E[-+][0-9]+)?)")


def parse_samples(text: str) -> tuple[Sample, ...]:
    """`parsedSamplesString`: `nil`, or `{a="b", c="d"} 1.5E+00, {} 2E+00`."""
    if text == "nil":
        return ()
    samples: list[Sample] = []
    pos = 0
    while True:
        if text[pos] != "{":
            raise ValueError(f"expected '{{' at {pos}: {text!r}")
        pos += 1
        labels: list[tuple[str, str]] = []
        while text[pos] != "}":
            m = _LABEL_NAME.match(text, pos)
            if m is None or text[m.end()] != "=":
                raise ValueError(f"bad label at {pos}: {text!r}")
            value, pos = go_unquote_at(text, m.end() + 1)
            labels.append((m.group(), value))
            if text.startswith(", ", pos):
                pos += 2
            elif text[pos] != "}":
                raise ValueError(f"expected ', ' or '}}' at {pos}: {text!r}")
        pos += 1
        if text[pos] != " ":
            raise ValueError(f"expected a space at {pos}: {text!r}")
        m = _VALUE.match(text, pos + 1)
        if m is None:
            raise ValueError(f"bad value at {pos + 1}: {text!r}")
        samples.append(Sample(tuple(labels), float(m.group()), m.group()))
        pos = m.end()
        if pos == len(text):
            return tuple(samples)
        if not text.startswith(", ", pos):
            raise ValueError(f"expected ', ' at {pos}: {text!r}")
        pos += 2


_ENTRY_START = re.compile(r'^    expr: "', re.MULTILINE)
_AFTER_TIME = re.compile(r", time: ([0-9a-z]+),(?: err: (?P<err>.*?)|\n        exp: (?P<exp>[^\n]*)"
                         r"\n        got: (?P<got>[^\n]*))\n*\Z", re.DOTALL)


def parse_failures(stderr: str) -> list[Failure]:
    """Every `promql_expr_test` failure in promtool's stderr, in file order."""
    starts = [m.start() for m in _ENTRY_START.finditer(stderr)]
    head = stderr[:starts[0]] if starts else stderr
    unexpected = [line for line in head.splitlines() if line.strip() not in ("", "FAILED:")]
    if unexpected:
        raise ValueError(f"promtool printed something that is not a test failure: {unexpected}")
    failures = []
    for start, end in zip(starts, [*starts[1:], len(stderr)], strict=True):
        chunk = stderr[start:end]
        expr, pos = go_unquote_at(chunk, len("    expr: "))
        m = _AFTER_TIME.match(chunk, pos)
        if m is None:
            raise ValueError(f"cannot read promtool's report: {chunk!r}")
        time_ms = parse_duration(m.group(1))
        if m.group("err") is not None:
            failures.append(Failure(expr, time_ms, m.group("err").rstrip("\n"), None, None, None))
        else:
            failures.append(Failure(expr, time_ms, None, m.group("exp"), m.group("got"),
                                    parse_samples(m.group("got"))))
    return failures


def run_promtool(files: Sequence[Path], promtool: Path = PROMTOOL,
                 timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), "test", "rules", *map(str, files)],
                          capture_output=True, text=True, timeout=timeout, check=False)


# --- writing promtool test files ------------------------------------------------------------


def yaml_str(s: str) -> str:
    """A YAML scalar that yaml.v2 and PyYAML both read back as exactly `s`."""
    if s and s.isprintable() and s == s.strip():
        return "'" + s.replace("'", "''") + "'"
    out = ['"']
    for ch in s:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def yaml_float(v: float) -> str:
    """A YAML float (1.1 and 1.2 resolvers, yaml.v2 and PyYAML) that reads back as exactly `v`.

    `repr` gives the shortest round-trip digits; PyYAML needs a dot in the mantissa and a
    signed exponent, which `repr` omits for e.g. 1e-05.
    """
    if math.isnan(v):
        return ".nan"
    if math.isinf(v):
        return ".inf" if v > 0 else "-.inf"
    r = repr(v)
    if "e" in r:
        mantissa, exponent = r.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        r = f"{mantissa}e{exponent}"
    return r


def render_labels(labels: Labels) -> str:
    """The `labels:` text of an exp_sample, as `parser.ParseMetric` reads it."""
    name = dict(labels).get("__name__")
    rest = [(k, v) for k, v in labels if k != "__name__"]
    body = ", ".join(f"{k}={go_quote(v)}" for k, v in rest)
    if name is not None and _METRIC_NAME.fullmatch(name):
        return f"{name}{{{body}}}"
    return "{" + ", ".join(f"{k}={go_quote(v)}" for k, v in labels) + "}"


def render_test_file(*, header: Iterable[str], group_name: str, interval: str,
                     evaluation_interval: str, input_series: Sequence[tuple[str, str]],
                     checks: Sequence[Check]) -> str:
    lines = [f"# {h}".rstrip() for h in header]
    lines += [f"evaluation_interval: {evaluation_interval}", "tests:",
              f"  - name: {yaml_str(group_name)}", f"    interval: {interval}",
              "    input_series:"]
    for series, values in input_series:
        lines += [f"      - series: {yaml_str(series)}", f"        values: {yaml_str(values)}"]
    lines.append("    promql_expr_test:")
    for check in checks:
        if check.comment:
            lines += [f"      # {c}".rstrip() for c in check.comment.splitlines()]
        lines += [f"      - expr: {yaml_str(check.expr)}",
                  f"        eval_time: {format_duration(check.time_ms)}"]
        if check.samples is None:
            continue
        if not check.samples:
            lines.append("        exp_samples: []")
            continue
        lines.append("        exp_samples:")
        for s in check.samples:
            lines += [f"          - labels: {yaml_str(render_labels(s.labels))}",
                      f"            value: {yaml_float(s.value)}"]
    return "\n".join(lines) + "\n"


def sentinel_sample() -> Sample:
    return Sample((("__differential_sentinel__", "1"),), 0.0, "0E+00")


def has_nan(samples: Iterable[Sample]) -> bool:
    return any(math.isnan(s.value) for s in samples)


# --- comparison the way `inferwatch test rules` compares (SPEC §3) ----------------------------

REL_TOLERANCE = 1e-9


def values_match(a: float, b: float, rel: float = REL_TOLERANCE) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b:
        return True
    return abs(a - b) <= rel * max(abs(a), abs(b))


def samples_match(exp: Sequence[Sample], got: Sequence[Sample],
                  rel: float = REL_TOLERANCE) -> bool:
    """Same label sets (both sorted, as promtool prints them), values within `rel`, NaN = NaN."""
    return len(exp) == len(got) and all(
        e.labels == g.labels and values_match(e.value, g.value, rel)
        for e, g in zip(exp, got, strict=True))


_LABEL_SET = re.compile(r"\{[^{}]*\}")
_SERIES_LIST = re.compile(r"\[[^\[\]]*\]")


def normalise_error(text: str) -> str:
    """An error message without the series it names: promtool creates the input series in Go
    map order, so which duplicate series a matching error lists varies from run to run."""
    return _SERIES_LIST.sub("[…]", _LABEL_SET.sub("{…}", text))
