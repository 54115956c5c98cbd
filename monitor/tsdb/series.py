"""One stored series: samples in chunks of typed arrays, 16 bytes a sample.

Timestamps (ms, int64) and values (float64) live in parallel `array('q')`/`array('d')` chunks
of at most CHUNK_SAMPLES each, so there is no Python object per sample, appending is cheap, and
retention drops whole chunks. Samples are strictly increasing in time; an append at or before
the last timestamp is refused, as Prometheus refuses out-of-order samples.

Stale markers are stored as samples (their value is the staleness NaN) and their timestamps are
also kept in a small set, so readers tell a marker from a real NaN without inspecting bits.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right

from monitor.promql.values import STALE_NAN, Labels

CHUNK_SAMPLES = 1024


class MemSeries:
    """The samples of one label set."""

    __slots__ = ("chunk_first", "chunk_last", "labels", "last_t", "stale", "ts", "vs")

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.ts: list[array[int]] = []
        self.vs: list[array[float]] = []
        self.chunk_first: list[int] = []  # first timestamp of each chunk, for bisecting
        self.chunk_last: list[int] = []  # last timestamp of each chunk
        self.stale: set[int] = set()
        self.last_t = -(2**63)

    def __len__(self) -> int:
        return sum(len(chunk) for chunk in self.ts)

    def append(self, t: int, v: float) -> bool:
        """Add a sample; False if `t` is not after the last sample's time."""
        if t <= self.last_t:
            return False
        if not self.ts or len(self.ts[-1]) >= CHUNK_SAMPLES:
            self.ts.append(array("q"))
            self.vs.append(array("d"))
            self.chunk_first.append(t)
            self.chunk_last.append(t)
        self.ts[-1].append(t)
        self.vs[-1].append(v)
        self.chunk_last[-1] = t
        self.last_t = t
        return True

    def append_stale(self, t: int) -> bool:
        """Mark the series stale at `t` (it disappeared), unless it already is."""
        if self.is_stale_now():
            return False
        if self.append(t, STALE_NAN):
            self.stale.add(t)
            return True
        return False

    def holds(self, v: float) -> bool:
        """Whether the latest sample is `v` (not a stale marker)."""
        return bool(self.vs) and not self.is_stale_now() and self.vs[-1][-1] == v

    def is_stale_now(self) -> bool:
        return self.last_t in self.stale

    def trim(self, mint: int) -> int:
        """Drop whole chunks that end before `mint`; the number of samples dropped."""
        dropped = 0
        while self.chunk_last and self.chunk_last[0] < mint and len(self.ts) > 1:
            dropped += len(self.ts[0])
            self._forget_stale(self.chunk_first[0], self.chunk_last[0])
            del self.ts[0], self.vs[0], self.chunk_first[0], self.chunk_last[0]
        if len(self.ts) == 1 and self.chunk_last[0] < mint:
            dropped += len(self.ts[0])
            self.stale.clear()
            self.ts.clear()
            self.vs.clear()
            self.chunk_first.clear()
            self.chunk_last.clear()
        return dropped

    def _forget_stale(self, first: int, last: int) -> None:
        if self.stale:
            self.stale = {t for t in self.stale if not first <= t <= last}

    def empty(self) -> bool:
        return not self.ts

    def latest(self, ref: int, lookback: int) -> tuple[int, float] | None:
        """The last sample at or before `ref` and no older than `ref - lookback`, unless it
        is a stale marker: what an instant selector sees at `ref`."""
        chunk = bisect_right(self.chunk_first, ref) - 1
        if chunk < 0:
            return None
        ts = self.ts[chunk]
        index = bisect_right(ts, ref) - 1
        t = ts[index]
        if t < ref - lookback or t in self.stale:
            return None
        return t, self.vs[chunk][index]

    def window(self, mint: int, maxt: int) -> tuple[list[int], list[float]]:
        """The samples with mint <= t <= maxt, stale markers left out (a range selector)."""
        out_t: list[int] = []
        out_v: list[float] = []
        first = max(0, bisect_right(self.chunk_last, mint - 1))
        last = bisect_right(self.chunk_first, maxt)
        stale = self.stale
        for chunk in range(first, last):
            ts = self.ts[chunk]
            lo = bisect_left(ts, mint) if self.chunk_first[chunk] < mint else 0
            hi = bisect_right(ts, maxt) if self.chunk_last[chunk] > maxt else len(ts)
            if lo >= hi:
                continue
            if stale and any(ts[lo] <= t <= ts[hi - 1] for t in stale):
                vs = self.vs[chunk]
                for i in range(lo, hi):
                    t = ts[i]
                    if t not in stale:
                        out_t.append(t)
                        out_v.append(vs[i])
            else:
                out_t.extend(ts[lo:hi])
                out_v.extend(self.vs[chunk][lo:hi])
        return out_t, out_v
