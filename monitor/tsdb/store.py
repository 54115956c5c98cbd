"""The in-memory series store: every exported series, sampled, for rules and queries.

Series are indexed by label pair (postings), so a selector finds its candidates from the
matchers that cannot match the empty string, then checks every matcher on them. As in
Prometheus, a matcher that matches the empty string also matches series without the label,
and regex matchers are fully anchored. Samples older than the retention are dropped by whole
chunks; a series left without samples leaves the index.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from monitor.goregexp import RegexpError, compile_go_regexp
from monitor.promql.values import Labels
from monitor.tsdb.series import MemSeries

EQUAL, NOT_EQUAL, REGEX, NOT_REGEX = "=", "!=", "=~", "!~"


def compile_label_regex(pattern: str) -> Any:
    """A matcher's regex, fully anchored, as Prometheus compiles it (Go's RE2 syntax, linear
    time). ValueError for an invalid pattern."""
    try:
        return compile_go_regexp(f"^(?:{pattern})$")
    except RegexpError as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


@dataclass(frozen=True)
class Matcher:
    """A label matcher as in a PromQL selector."""

    name: str
    op: str
    value: str
    _regex: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, name: str, op: str, value: str) -> Matcher:
        if op not in (EQUAL, NOT_EQUAL, REGEX, NOT_REGEX):
            raise ValueError(f"unknown matcher operator {op!r}")
        regex = compile_label_regex(value) if op in (REGEX, NOT_REGEX) else None
        return cls(name, op, value, regex)

    def matches(self, value: str) -> bool:
        if self.op == EQUAL:
            return value == self.value
        if self.op == NOT_EQUAL:
            return value != self.value
        assert self._regex is not None
        found = self._regex.match(value) is not None
        return found if self.op == REGEX else not found

    @property
    def matches_empty(self) -> bool:
        return self.matches("")


class SeriesStore:
    """All stored series and their label index."""

    def __init__(self, retention_ms: int) -> None:
        self.retention_ms = retention_ms
        self.series: dict[Labels, MemSeries] = {}
        self._postings: dict[str, dict[str, set[Labels]]] = {}
        self.generation = 0  # bumped whenever series are removed: holders of MemSeries recheck

    def __len__(self) -> int:
        return len(self.series)

    def get_or_create(self, labels: Labels) -> MemSeries:
        found = self.series.get(labels)
        if found is None:
            found = self.series[labels] = MemSeries(labels)
            for name, value in labels:
                self._postings.setdefault(name, {}).setdefault(value, set()).add(labels)
        return found

    def append(self, labels: Labels, t: int, v: float) -> bool:
        return self.get_or_create(labels).append(t, v)

    def select(self, matchers: Iterable[Matcher]) -> list[MemSeries]:
        """Series matching every matcher, sorted by labels."""
        matchers = list(matchers)
        candidates: set[Labels] | None = None
        for matcher in sorted(matchers, key=lambda m: m.op != EQUAL):
            if matcher.matches_empty:
                continue  # it may match series that lack the label: no help narrowing
            found = self._matching_postings(matcher)
            candidates = found if candidates is None else candidates & found
            if not candidates:
                return []
        pool: Iterable[Labels] = self.series if candidates is None else candidates
        selected = [self.series[labels] for labels in pool
                    if all(m.matches(_value(labels, m.name)) for m in matchers)]
        selected.sort(key=lambda s: s.labels)
        return selected

    def _matching_postings(self, matcher: Matcher) -> set[Labels]:
        by_value = self._postings.get(matcher.name, {})
        if matcher.op == EQUAL:
            return set(by_value.get(matcher.value, ()))
        found: set[Labels] = set()
        for value, labels in by_value.items():
            if matcher.matches(value):
                found |= labels
        return found

    def label_names(self, series: Iterable[MemSeries] | None = None) -> list[str]:
        if series is None:
            return sorted(name for name, values in self._postings.items() if values)
        return sorted({name for s in series for name, _ in s.labels})

    def label_values(self, name: str, series: Iterable[MemSeries] | None = None) -> list[str]:
        if series is None:
            return sorted(v for v, labels in self._postings.get(name, {}).items() if labels)
        return sorted({value for s in series for n, value in s.labels if n == name})

    def trim(self, now_ms: int) -> int:
        """Drop samples older than the retention; remove series left empty."""
        mint = now_ms - self.retention_ms
        dropped = 0
        emptied = []
        for labels, stored in self.series.items():
            if stored.chunk_last and stored.chunk_last[0] < mint:
                dropped += stored.trim(mint)
                if stored.empty():
                    emptied.append(labels)
        for labels in emptied:
            self._forget(labels)
        if emptied:
            self.generation += 1
        return dropped

    def _forget(self, labels: Labels) -> None:
        del self.series[labels]
        for name, value in labels:
            by_value = self._postings.get(name)
            if by_value is None:
                continue
            holders = by_value.get(value)
            if holders is not None:
                holders.discard(labels)
                if not holders:
                    del by_value[value]
            if not by_value:
                del self._postings[name]

    def samples(self) -> Iterator[int]:
        for stored in self.series.values():
            yield len(stored)


def _value(labels: Labels, name: str) -> str:
    for key, value in labels:
        if key == name:
            return value
    return ""
