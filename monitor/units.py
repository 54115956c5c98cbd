"""Prometheus-style durations (`30s`, `1h30m`, `7d`), byte sizes (`1MiB`), RFC 3339 times."""

from __future__ import annotations

import re
from datetime import datetime

_DURATION_UNITS = (("y", 365 * 86400), ("w", 7 * 86400), ("d", 86400), ("h", 3600),
                   ("m", 60), ("s", 1), ("ms", 0.001))
_DURATION_RE = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_BYTES_RE = re.compile(r"^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$")
_BYTE_UNITS = {None: 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2,
               "GB": 1000**3, "GiB": 1024**3}


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration; raises ValueError with the offending text.

    As in Prometheus, units run from largest to smallest, each at most once, and `0` alone
    is allowed.
    """
    if text == "0":
        return 0.0
    match = _DURATION_RE.match(text)
    if not text or match is None or not any(match.groups()):
        raise ValueError(
            f"invalid duration {text!r}: use Prometheus syntax such as 30s, 5m, 1h30m, 7d"
        )
    seconds = 0.0
    for value, (_, unit_seconds) in zip(match.groups(), _DURATION_UNITS, strict=True):
        if value is not None:
            seconds += int(value) * unit_seconds
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest Prometheus duration for `seconds`, at millisecond resolution (`1h30m`)."""
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    sign, millis = ("-", -millis) if millis < 0 else ("", millis)
    parts = []
    for unit, unit_seconds in _DURATION_UNITS:
        count, millis = divmod(millis, round(unit_seconds * 1000))
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)


def parse_bytes(value: int | str) -> int:
    """Bytes in an integer or a size such as `1MiB`; raises ValueError."""
    if isinstance(value, bool):
        # ValueError, not TypeError: pydantic turns only ValueError into a validation error.
        raise ValueError("a byte size must be a number or a size such as 1MiB")  # noqa: TRY004
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a byte size cannot be negative: {value}")
        return value
    match = _BYTES_RE.match(value.strip())
    if match is None:
        raise ValueError(f"invalid byte size {value!r}: use a number or e.g. 512KiB, 1MiB")
    return int(match.group(1)) * _BYTE_UNITS[match.group(2)]


def parse_rfc3339(text: str) -> float:
    """An RFC 3339 time (`2026-01-01T08:00:00Z`, `...+08:00`, fractions allowed) as Unix
    seconds; ValueError otherwise. A time without a zone is refused, not guessed."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an RFC 3339 time: {text!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"not an RFC 3339 time (no zone, e.g. Z or +08:00): {text!r}")
    return moment.timestamp()
