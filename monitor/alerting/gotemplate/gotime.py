"""Go's `time.Time` for templates, in UTC: `String()`, `Format(layout)` and a few getters.

Prometheus's `humanizeTimestamp` prints a `*time.Time` (its `String()`, layout
"2006-01-02 15:04:05.999999999 -0700 MST"), and `toTime` hands one to the template, which may
call `.Format "2006-01-02"` or `.Unix` on it. The layout parser is a port of Go's
`nextStdChunk`; every time here is in UTC, so zones print as "UTC", "+0000" or "Z".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.alerting.gotemplate.values import GoFunc, GoValue

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
DEFAULT_LAYOUT = "2006-01-02 15:04:05.999999999 -0700 MST"
_ZERO_CHUNKS = {"1": "01", "2": "02", "3": "03", "4": "04", "5": "05", "6": "06"}
_ZONE_CHUNKS = ("-070000", "-07:00:00", "-0700", "-07:00", "-07",
                "Z070000", "Z07:00:00", "Z0700", "Z07:00", "Z07")


def _starts_lower(text: str) -> bool:
    return text[:1] != "" and "a" <= text[0] <= "z"


def next_std_chunk(layout: str) -> tuple[str, str, str]:
    """Go's `nextStdChunk`: (text before, the element as its layout spelling, rest)."""
    for i, ch in enumerate(layout):
        rest = layout[i:]
        if ch == "J" and rest.startswith("Jan"):
            if rest.startswith("January"):
                return layout[:i], "January", layout[i + 7 :]
            if not _starts_lower(layout[i + 3 :]):
                return layout[:i], "Jan", layout[i + 3 :]
        elif ch == "M" and len(rest) >= 3:
            if rest.startswith("Mon"):
                if rest.startswith("Monday"):
                    return layout[:i], "Monday", layout[i + 6 :]
                if not _starts_lower(layout[i + 3 :]):
                    return layout[:i], "Mon", layout[i + 3 :]
            if rest.startswith("MST"):
                return layout[:i], "MST", layout[i + 3 :]
        elif ch == "0":
            if rest[1:2] in _ZERO_CHUNKS:
                return layout[:i], "0" + rest[1], layout[i + 2 :]
            if rest.startswith("002"):
                return layout[:i], "002", layout[i + 3 :]
        elif ch == "1":
            if rest.startswith("15"):
                return layout[:i], "15", layout[i + 2 :]
            return layout[:i], "1", layout[i + 1 :]
        elif ch == "2":
            if rest.startswith("2006"):
                return layout[:i], "2006", layout[i + 4 :]
            return layout[:i], "2", layout[i + 1 :]
        elif ch == "_":
            if rest.startswith("_2"):
                if rest.startswith("_2006"):
                    return layout[: i + 1], "2006", layout[i + 5 :]
                return layout[:i], "_2", layout[i + 2 :]
            if rest.startswith("__2"):
                return layout[:i], "__2", layout[i + 3 :]
        elif ch in "345":
            return layout[:i], ch, layout[i + 1 :]
        elif ch in "Pp" and rest[:2] in ("PM", "pm"):
            return layout[:i], rest[:2], layout[i + 2 :]
        elif ch in "-Z":
            for zone in _ZONE_CHUNKS:
                if rest.startswith(zone):
                    return layout[:i], zone, layout[i + len(zone) :]
        elif ch in ".," and rest[1:2] in ("0", "9"):
            j = i + 1
            while j < len(layout) and layout[j] == rest[1]:
                j += 1
            if not (j < len(layout) and "0" <= layout[j] <= "9"):
                return layout[:i], layout[i:j], layout[j:]
    return layout, "", ""


class GoTime(GoValue):
    """A UTC instant in nanoseconds; a `*time.Time` unless `pointer` is false."""

    kind = "ptr"

    def __init__(self, unix_nanos: int, *, pointer: bool = True) -> None:
        self.unix_nanos = unix_nanos
        self.pointer = pointer
        self.type_name = "*time.Time" if pointer else "time.Time"
        self.kind = "ptr" if pointer else "struct"

    @property
    def moment(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.unix_nanos // 1000)

    def stringer(self) -> str:
        return self.format(DEFAULT_LAYOUT)

    def method(self, name: str) -> GoFunc | None:
        seconds, nanos = divmod(self.unix_nanos, 1_000_000_000)
        getters: dict[str, Any] = {
            "Unix": seconds,
            "UnixMilli": self.unix_nanos // 1_000_000,
            "UnixMicro": self.unix_nanos // 1_000,
            "UnixNano": self.unix_nanos,
            "Year": self.moment.year,
            "YearDay": self.moment.timetuple().tm_yday,
            "Day": self.moment.day,
            "Hour": self.moment.hour,
            "Minute": self.moment.minute,
            "Second": self.moment.second,
            "Nanosecond": nanos,
            "String": self.stringer(),
            "UTC": GoTime(self.unix_nanos, pointer=False),
        }
        if name == "Format":
            return GoFunc(("string",), self.format)
        if name in getters:
            value = getters[name]
            return GoFunc((), lambda: value)
        return None

    def format(self, layout: str) -> str:
        moment = self.moment
        nanos = self.unix_nanos % 1_000_000_000
        out: list[str] = []
        while layout:
            prefix, std, layout = next_std_chunk(layout)
            out.append(prefix)
            if not std:
                break
            hour12 = moment.hour % 12 or 12
            simple = {
                "2006": f"{moment.year:04d}", "06": f"{moment.year % 100:02d}",
                "January": _MONTHS[moment.month - 1], "Jan": _MONTHS[moment.month - 1][:3],
                "1": str(moment.month), "01": f"{moment.month:02d}",
                "Monday": _WEEKDAYS[moment.weekday()], "Mon": _WEEKDAYS[moment.weekday()][:3],
                "2": str(moment.day), "_2": f"{moment.day:>2d}", "02": f"{moment.day:02d}",
                "__2": f"{moment.timetuple().tm_yday:>3d}",
                "002": f"{moment.timetuple().tm_yday:03d}",
                "15": f"{moment.hour:02d}", "3": str(hour12), "03": f"{hour12:02d}",
                "4": str(moment.minute), "04": f"{moment.minute:02d}",
                "5": str(moment.second), "05": f"{moment.second:02d}",
                "PM": "PM" if moment.hour >= 12 else "AM",
                "pm": "pm" if moment.hour >= 12 else "am",
                "MST": "UTC",
            }
            if std in simple:
                out.append(simple[std])
            elif std[0] in ".,":
                out.append(_fraction(nanos, std))
            elif std.startswith("Z"):
                out.append("Z")
            else:
                out.append(_numeric_zone(std))
        return "".join(out)


def _fraction(nanos: int, std: str) -> str:
    digits = f"{nanos:09d}"[: min(len(std) - 1, 9)]
    if std[1] == "9":
        digits = digits.rstrip("0")
        if not digits:
            return ""
    return std[0] + digits


def _numeric_zone(std: str) -> str:
    """A zero UTC offset in the numeric layouts: +00, +0000, +00:00, +000000, +00:00:00."""
    body = std[1:].replace("07", "00")
    return "+" + body
