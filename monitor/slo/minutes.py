"""Per-minute (errors, total) counts of one SLO, with rolling sums over fixed windows.

Minute k holds the events of the half-open interval (60(k-1), 60k] in epoch seconds, as
monitor/cost/forecast.py does: it is what a counter increases by between the samples at
60(k-1) and 60k, and a window of w minutes "ending now" at minute n is (60(n-w), 60n] — the
range `[w]` of a PromQL query evaluated at 60n.

`MinuteBuckets` keeps the last `capacity` minutes in two `array('d')` ring buffers (16 bytes
a minute: 691 KB for 30 days, dense whatever the traffic) and a `bytearray` of "has data"
flags. A minute nobody recorded (the daemon was down) has no data: it counts as neither good
nor bad, and a window's ratio is errors/total over the minutes that do have data. A minute
recorded with no traffic (0, 0) has data and adds nothing either; the flag only tells the
two apart for `minutes_with_data` and for persistence (`items`).

For each window the running sums of errors, totals and minutes with data are maintained:
moving the end forward by one minute subtracts the minute leaving each window, so a tick
costs O(number of windows), whatever the number of requests and the window lengths. `add`
for a minute already passed (a late log line) adds to that minute and to the sums of every
window that still holds it. Sums of integral counts are exact in doubles (below 2**53). For
fractional counts (a raw error-ratio SLI) a window whose minutes all hold 0 reads exactly 0
(each window counts its minutes above 0), and once a fractional count has been added every
window is re-summed exactly once a day of minutes (about 1 ms for 30 days), so rounding drift
cannot build up.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

RESUM_EVERY = 1440  # minutes between exact re-sums of every window
_SLICE_GAP = 64  # a forward jump longer than this clears slices and re-sums instead of looping


@dataclass(frozen=True, slots=True)
class WindowTotals:
    """The sums over one window ending at the buckets' current minute."""

    minutes: int  # the window's length
    errors: float
    total: float
    minutes_with_data: int


class MinuteBuckets:
    """Per-minute error and total counts over the last `capacity` minutes (see the module
    docstring), with O(1) sums over each of `windows` (lengths in minutes) ending now.

    `now` is the latest minute seen: it moves forward with `advance`, or with `add` for a
    later minute, and never back. Not thread-safe: one owner calls everything.
    """

    __slots__ = ("_capacity", "_err_nonzero", "_err_sums", "_errors", "_fractional", "_index",
                 "_last_resum", "_now", "_seen", "_seen_counts", "_tot_nonzero", "_tot_sums",
                 "_totals", "_windows")

    def __init__(self, windows: Iterable[int], *, capacity: int | None = None) -> None:
        lengths = sorted(set(windows))
        if not lengths or lengths[0] < 1:
            raise ValueError(f"windows must be whole positive minutes, got {lengths}")
        capacity = lengths[-1] if capacity is None else capacity
        if capacity < lengths[-1]:
            raise ValueError(f"capacity {capacity} is shorter than the longest window "
                             f"{lengths[-1]}")
        self._capacity = capacity
        self._windows = tuple(lengths)
        self._index = {w: i for i, w in enumerate(lengths)}
        self._errors = array("d", bytes(8 * capacity))
        self._totals = array("d", bytes(8 * capacity))
        self._seen = bytearray(capacity)
        self._err_sums = [0.0] * len(lengths)
        self._tot_sums = [0.0] * len(lengths)
        self._seen_counts = [0] * len(lengths)
        # Minutes with errors (totals) above 0 per window: at 0 the sum is exactly 0.
        self._err_nonzero = [0] * len(lengths)
        self._tot_nonzero = [0] * len(lengths)
        self._now: int | None = None
        self._last_resum = 0
        self._fractional = False

    @property
    def now(self) -> int | None:
        """The latest minute, or None before the first `add`/`advance`."""
        return self._now

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def windows(self) -> tuple[int, ...]:
        return self._windows

    def nbytes(self) -> int:
        """Bytes held by the per-minute buffers (what grows with `capacity`)."""
        return (self._errors.itemsize * len(self._errors)
                + self._totals.itemsize * len(self._totals) + len(self._seen))

    def advance(self, minute: int) -> None:
        """Move the end of every window to `minute`; minutes skipped over have no data.
        Raises ValueError for a minute before `now`."""
        now = self._now
        if now is None:
            self._now = self._last_resum = minute
            return
        if minute < now:
            raise ValueError(f"minute {minute} is before the current minute {now}")
        gap = minute - now
        if gap == 0:
            return
        if gap > _SLICE_GAP:
            self._clear(now + 1, min(minute, now + self._capacity))
            self._now = minute
            self._resum()
            return
        cap, errors, totals, seen = self._capacity, self._errors, self._totals, self._seen
        err_sums, tot_sums, seen_counts = self._err_sums, self._tot_sums, self._seen_counts
        err_nonzero, tot_nonzero = self._err_nonzero, self._tot_nonzero
        for m in range(now + 1, minute + 1):
            for i, w in enumerate(self._windows):
                j = (m - w) % cap
                if seen[j]:
                    seen_counts[i] -= 1
                    if errors[j]:
                        err_nonzero[i] -= 1
                        err_sums[i] = err_sums[i] - errors[j] if err_nonzero[i] else 0.0
                    if totals[j]:
                        tot_nonzero[i] -= 1
                        tot_sums[i] = tot_sums[i] - totals[j] if tot_nonzero[i] else 0.0
            k = m % cap  # the slot of minute m - cap, now leaving the buffer
            errors[k] = 0.0
            totals[k] = 0.0
            seen[k] = 0
        self._now = minute
        if self._fractional and minute - self._last_resum >= RESUM_EVERY:
            self._resum()

    def add(self, minute: int, errors: float, total: float) -> bool:
        """Add counts to `minute` (and mark it as having data). A minute after `now` moves the
        windows forward first; one older than `capacity` minutes is dropped (returns False).
        Counts are deltas, never negative; errors above total are kept (a ratio above 1 is
        what PromQL would compute from two counters sampled apart)."""
        errors, total = self._checked(minute, errors, total)
        now = self._now
        if now is None or minute > now:
            self.advance(minute)
            now = minute
        elif minute <= now - self._capacity:
            return False
        k = minute % self._capacity
        new_seen = not self._seen[k]
        new_err = errors > 0 and not self._errors[k]
        new_tot = total > 0 and not self._totals[k]
        self._errors[k] += errors
        self._totals[k] += total
        self._seen[k] = 1
        for i, w in enumerate(self._windows):
            if minute > now - w:
                self._err_sums[i] += errors
                self._tot_sums[i] += total
                self._seen_counts[i] += new_seen
                self._err_nonzero[i] += new_err
                self._tot_nonzero[i] += new_tot
        return True

    def load(self, rows: Iterable[tuple[int, float, float]], now: int) -> int:
        """Replace everything with `rows` of (minute, errors, total), as `items` gave them (a
        restart reading them back), ending at `now`: one pass and one re-sum, about 20 times
        faster than `add` row by row. Rows outside the buffer are skipped; returns how many
        were kept."""
        self._clear(now - self._capacity + 1, now)
        self._now = now
        kept = 0
        for minute, row_errors, row_total in rows:
            if not now - self._capacity < minute <= now:
                continue
            errors, total = self._checked(minute, row_errors, row_total)
            k = minute % self._capacity
            self._errors[k] += errors
            self._totals[k] += total
            self._seen[k] = 1
            kept += 1
        self._resum()
        return kept

    def totals(self, window: int) -> WindowTotals:
        """The sums over the `window` minutes ending at `now` (one of `windows`)."""
        i = self._index.get(window)
        if i is None:
            raise KeyError(f"no running sums for a {window}-minute window; "
                           f"windows are {self._windows}")
        return WindowTotals(window, self._err_sums[i], self._tot_sums[i], self._seen_counts[i])

    def get(self, minute: int) -> tuple[float, float] | None:
        """(errors, total) of one minute, or None if it has no data or is out of the buffer."""
        now = self._now
        if now is None or not now - self._capacity < minute <= now:
            return None
        k = minute % self._capacity
        return (self._errors[k], self._totals[k]) if self._seen[k] else None

    def items(self) -> Iterator[tuple[int, float, float]]:
        """(minute, errors, total) of every minute with data in the buffer, oldest first."""
        now = self._now
        if now is None:
            return
        for minute in range(now - self._capacity + 1, now + 1):
            k = minute % self._capacity
            if self._seen[k]:
                yield minute, self._errors[k], self._totals[k]

    def _checked(self, minute: int, errors: float, total: float) -> tuple[float, float]:
        errors, total = float(errors), float(total)
        if not (errors >= 0.0 and total >= 0.0) or math.isinf(errors) or math.isinf(total):
            raise ValueError(f"counts must be finite and not negative, got errors={errors} "
                             f"total={total} for minute {minute}")
        if not (errors.is_integer() and total.is_integer()):
            self._fractional = True
        return errors, total

    def _clear(self, first: int, last: int) -> None:
        """Forget minutes first..last (at most `capacity` of them)."""
        for lo, hi in self._slices(first, last):
            self._errors[lo:hi] = array("d", bytes(8 * (hi - lo)))
            self._totals[lo:hi] = array("d", bytes(8 * (hi - lo)))
            self._seen[lo:hi] = bytes(hi - lo)

    def _resum(self) -> None:
        """Every window's sums again from the buffers, exactly (math.fsum)."""
        now = self._now
        assert now is not None
        for i, w in enumerate(self._windows):
            err_values: list[float] = []
            tot_values: list[float] = []
            seen_count = 0
            for lo, hi in self._slices(now - w + 1, now):
                err_values += self._errors[lo:hi]
                tot_values += self._totals[lo:hi]
                seen_count += self._seen.count(1, lo, hi)
            self._err_sums[i] = math.fsum(err_values)
            self._tot_sums[i] = math.fsum(tot_values)
            self._seen_counts[i] = seen_count
            self._err_nonzero[i] = len(err_values) - err_values.count(0.0)
            self._tot_nonzero[i] = len(tot_values) - tot_values.count(0.0)
        self._last_resum = now

    def _slices(self, first: int, last: int) -> list[tuple[int, int]]:
        """The buffer index ranges [lo, hi) holding minutes first..last."""
        cap = self._capacity
        start, count = first % cap, last - first + 1
        if start + count <= cap:
            return [(start, start + count)]
        return [(start, cap), (0, start + count - cap)]
