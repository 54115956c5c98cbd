"""Go's strconv where PromQL functions expose it, on the one strconv port of the project
(monitor/alerting/gotemplate/numbers.py and quoting.py, which Prometheus's templates need in
full).

- `parse_float`: strconv.ParseFloat(s, 64), which reads histogram `le` labels. Python's float()
  accepts spaces, "+nan" and non-ASCII digits and turns "1e400" into inf; Go refuses all of
  those (the last with ErrRange), and Prometheus then skips the bucket.
- `format_float`: strconv.FormatFloat(v, 'f', -1, 64), the label value count_values writes.
- `format_float_g`: strconv.FormatFloat(v, 'g', -1, 64), what fmt's %v prints.
- `go_quote`: strconv.Quote, what %q prints for a string.
"""

from __future__ import annotations

from monitor.alerting.gotemplate import numbers
from monitor.alerting.gotemplate.quoting import go_quote

__all__ = ["format_float", "format_float_g", "go_quote", "parse_float"]


def parse_float(text: str) -> float | None:
    """strconv.ParseFloat(text, 64), or None where Go returns an error."""
    try:
        return numbers.parse_float(text)
    except numbers.NumError:
        return None


def format_float(value: float) -> str:
    """strconv.FormatFloat(value, 'f', -1, 64): the shortest exact digits, never exponents."""
    return numbers.format_float(value, "f", -1)


def format_float_g(value: float) -> str:
    """strconv.FormatFloat(value, 'g', -1, 64), which is also what fmt's %v prints."""
    return numbers.format_float(value, "g", -1)
