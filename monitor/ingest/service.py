"""The ingestion loop: wait for changes, read every source, checkpoint, repeat.

All of it runs on the event loop. Reading yields between chunks, so a large catch-up never
starves the HTTP server; applying a batch and committing it never yields, so no request sees
uncommitted counts. A checkpoint is due every `checkpoint_interval` or every
`checkpoint_lines` lines, whichever comes first.

A source becomes *ready* after its first catch-up (every file read to the end it had when
looked at) has been committed; the daemon is ready when every source is. Reconfiguration (a
reload) swaps sources at the top of a cycle: removed sources commit and close, added sources
resume from their saved offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from monitor.clock import Clock
from monitor.config import IngestConfig, MetricsConfig, SourceConfig
from monitor.cost.feed import LedgerFeed
from monitor.cost.ledger import PRICED_SCHEMAS
from monitor.ingest.checkpoint import CheckpointWriter, known_sources, load_file_checkpoints
from monitor.ingest.decoders import FAST_DECODERS
from monitor.ingest.pipeline import SourcePipeline, build_filter
from monitor.ingest.schemas import Schema, build_custom_schema, parse_api_usage, parse_inference
from monitor.ingest.tailer import RotationAwareTailer
from monitor.ingest.watch import ChangeWatcher, PollingWatcher, make_watcher
from monitor.metrics import families as fam
from monitor.metrics.store import MetricStore
from monitor.storage import StateStore

log = logging.getLogger(__name__)

MIN_CYCLE_S = 0.05  # at most 20 read cycles a second, however chatty the writers are
# Once every source has read to the end of its files, new lines are committed (and so become
# visible to /metrics and the rules) this soon, rather than at the next checkpoint_interval:
# live tailing commits small batches promptly, a catch-up still commits in big ones.
LIVE_COMMIT_GAP_S = 0.1
STOP_DRAIN_S = 5.0  # on stop, read what is left for this long at most (TimeoutStopSec is 30 s)
PRUNE_AFTER_S = 7 * 86400.0
BUSY_READ_AHEAD = 4  # checkpoint_lines read on at most while the state file is busy


def _absolute(pattern: str) -> str:
    """Patterns made absolute once, so glob results and watch events name files alike."""
    return os.path.abspath(os.path.expanduser(pattern))  # noqa: PTH100,PTH111 - str globs


def schema_for(source: SourceConfig) -> Schema:
    if source.log_schema == "inference":
        return parse_inference
    if source.log_schema == "api_usage":
        return parse_api_usage
    assert source.fields is not None  # guaranteed by the config's validation
    return build_custom_schema({n: (spec.path, spec.unit) for n, spec in source.fields.items()})


@dataclass
class SourceRuntime:
    config: SourceConfig
    tailer: RotationAwareTailer
    pipeline: SourcePipeline
    ready: bool = False


class IngestService:
    """Owns the tailers and pipelines of all sources and the loop that drives them."""

    def __init__(
        self,
        *,
        sources: Sequence[SourceConfig],
        ingest: IngestConfig,
        metrics: MetricsConfig,
        state: StateStore,
        store: MetricStore,
        clock: Clock,
        watcher_factory: Callable[[bool], ChangeWatcher] = make_watcher,
        ledger: LedgerFeed | None = None,
    ) -> None:
        self.ingest = ingest
        self.ledger = ledger
        self.metrics = metrics
        self.state = state
        self.store = store
        self.clock = clock
        self._watcher_factory = watcher_factory
        self._writer = CheckpointWriter(state, store, clock, ledger)
        self._lag = store.register(fam.LOG_LAG_BYTES)
        self._files = store.register(fam.LOG_FILES)
        self.runtimes: dict[str, SourceRuntime] = {}
        self._read_errors = store.register(fam.LOG_READ_ERRORS)
        self._error_logged: dict[str, float] = {}  # where -> when last logged (bounded: paths)
        self._pending_sources: Sequence[SourceConfig] | None = None
        self._last_commit = clock.monotonic()
        self._last_commit_ok = True
        self.last_tick = clock.monotonic()
        self.max_wait = ingest.rescan_interval if ingest.inotify else ingest.poll_interval
        self.final_commit_ok = True
        # Called after each commit that applied new lines to the metric store.
        self.on_commit: list[Callable[[], None]] = []
        self._add_sources(sources)

    # -- sources --------------------------------------------------------------------------------

    def _add_sources(self, sources: Sequence[SourceConfig]) -> None:
        seen = known_sources(self.state)
        for source in sources:
            tailer = RotationAwareTailer(
                source=source.name,
                patterns=[_absolute(p) for p in source.paths],
                # A pattern without "/" matches base names (`*.gz`); keep it as written.
                exclude=[_absolute(p) if "/" in p else p for p in source.exclude_paths],
                start_at=source.start_at,
                max_line_bytes=source.max_line_bytes,
                saved=load_file_checkpoints(self.state, source.name),
                source_known=source.name in seen,
                clock=self.clock,
                rotate_wait=self.ingest.rotate_wait,
                copy_wait=max(2.0, 2 * self.ingest.rescan_interval),
            )
            tailer.on_error = self._error_reporter(source.name)
            pipeline = SourcePipeline(
                name=source.name,
                schema=schema_for(source),
                fast_decoder=FAST_DECODERS.get(source.log_schema),
                store=self.store,
                clock=self.clock,
                static_labels=source.labels,
                line_filter=build_filter(source.include_patterns, source.exclude_patterns),
                user_label=self.metrics.user_label,
                priced=self.ledger is not None and source.log_schema in PRICED_SCHEMAS,
            )
            self.runtimes[source.name] = SourceRuntime(source, tailer, pipeline)

    def reconfigure(self, sources: Sequence[SourceConfig]) -> None:
        """Use these sources from the next cycle on; unchanged ones keep running untouched."""
        self._pending_sources = sources

    def _apply_reconfigure(self) -> None:
        sources, self._pending_sources = self._pending_sources, None
        if sources is None:
            return
        wanted = {s.name: s for s in sources}
        leaving = [rt for name, rt in self.runtimes.items() if wanted.get(name) != rt.config]
        # Commit their last lines and offsets before closing them; if that fails, closing
        # would keep counts whose offsets are lost, so try again next cycle.
        if leaving and not self._checkpoint():
            self._pending_sources = sources
            return
        for rt in leaving:
            rt.tailer.close()
            del self.runtimes[rt.config.name]
            for family in (self._lag, self._files):
                family.remove(family.key((rt.config.name,)))
        self._add_sources([s for name, s in wanted.items() if name not in self.runtimes])
        log.info("sources now: %s", ", ".join(sorted(self.runtimes)) or "(none)")

    # -- readiness ------------------------------------------------------------------------------

    def is_ready(self) -> bool:
        return all(rt.ready for rt in self.runtimes.values())

    def sources_catching_up(self) -> list[str]:
        return sorted(name for name, rt in self.runtimes.items() if not rt.ready)

    # -- the loop -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Ingest until `stop` is set; then read what is left for at most STOP_DRAIN_S, commit
        and return. `final_commit_ok` says whether that last commit succeeded."""
        watcher = self._watcher_factory(self.ingest.inotify)
        self.max_wait = (self.ingest.poll_interval if isinstance(watcher, PollingWatcher)
                         else self.ingest.rescan_interval)
        stopping = asyncio.ensure_future(stop.wait())
        rescan, modified = True, set[str]()
        deadline: float | None = None  # set once stopping: the final pass's time budget
        last_scan = float("-inf")
        try:
            while True:
                started = self.clock.monotonic()
                self._apply_reconfigure()
                # A watcher that never times out (one busy source) must not starve the scan
                # that finds new files and directories elsewhere.
                if rescan or started - last_scan >= self.ingest.rescan_interval:
                    self._scan_all(watcher)
                    last_scan = started
                    rescan = True
                interrupted = stop.is_set if deadline is None else self._passed(deadline)
                for rt in list(self.runtimes.values()):
                    await self._drain(rt, None if rescan else modified, interrupted)
                self._checkpoint_if_due()
                self.last_tick = self.clock.monotonic()
                if deadline is not None:
                    break
                if stop.is_set():
                    # One last bounded pass over everything written so far, then commit.
                    deadline = self.clock.monotonic() + STOP_DRAIN_S
                    rescan, modified = True, set()
                    continue
                pause = MIN_CYCLE_S - (self.clock.monotonic() - started)
                if pause > 0:
                    await asyncio.wait([stopping], timeout=pause)
                changes = asyncio.ensure_future(watcher.wait(self.max_wait))
                await asyncio.wait([changes, stopping], return_when=asyncio.FIRST_COMPLETED)
                if not changes.done():
                    changes.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await changes
                    continue  # stopping: the top of the loop starts the final pass
                result = changes.result()
                rescan, modified = result.rescan, result.modified
        finally:
            stopping.cancel()
            self.final_commit_ok = self._checkpoint()
            if not self.final_commit_ok:
                log.error("stopped without committing the last %d line(s) read; they will be "
                          "read again at the next start", self._pending_lines())
            for rt in self.runtimes.values():
                rt.tailer.close()
            watcher.close()

    def _passed(self, deadline: float) -> Callable[[], bool]:
        return lambda: self.clock.monotonic() > deadline

    def _scan_all(self, watcher: ChangeWatcher) -> None:
        for rt in self.runtimes.values():
            try:
                rt.tailer.scan()
            except OSError as exc:  # one source's trouble never stops the others
                self._read_error(rt, rt.config.name, exc)
        watcher.watch(set().union(*(rt.tailer.directories() for rt in self.runtimes.values())))

    async def _drain(self, rt: SourceRuntime, modified: set[str] | None,
                     interrupted: Callable[[], bool]) -> None:
        """Read what is available from one source, checkpointing every N lines, until done
        or `interrupted()`. An I/O error costs that file this cycle, nothing more."""
        tailer, pipeline = rt.tailer, rt.pipeline
        for tracked in tailer.files_with_data(modified):
            try:
                while tracked.fd >= 0 and not interrupted():
                    chunk = tailer.read(tracked)
                    if chunk is None:
                        break
                    pipeline.process(chunk, tracked.path)
                    self.last_tick = self.clock.monotonic()  # progress, for the watchdog
                    pending = self._pending_lines()
                    if pending >= self.ingest.checkpoint_lines:
                        # While the ledger writer holds the state file, read on rather than
                        # wait, up to a few batches' worth.
                        self._checkpoint(
                            wait=pending >= BUSY_READ_AHEAD * self.ingest.checkpoint_lines)
                    await asyncio.sleep(0)  # let the HTTP server and timers run
            except OSError as exc:
                self._read_error(rt, tracked.path, exc)

    def _read_error(self, rt: SourceRuntime, where: str, exc: OSError) -> None:
        self._error_reporter(rt.config.name)(where, exc)

    def _error_reporter(self, source: str) -> Callable[[str, OSError], None]:
        def report(where: str, exc: OSError) -> None:
            self._read_errors.inc(self._read_errors.key((source,)))
            now = self.clock.monotonic()
            if now - self._error_logged.get(where, float("-inf")) >= 60.0:
                if len(self._error_logged) > 10_000:  # a bound, whatever the paths
                    self._error_logged.clear()
                self._error_logged[where] = now
                log.warning("source %s: cannot read %s: %s (retrying; logged once a minute)",
                            source, where, exc)
        return report

    def _pending_lines(self) -> int:
        return sum(rt.pipeline.pending_lines for rt in self.runtimes.values())

    def _checkpoint_if_due(self) -> None:
        # A source that has just caught up is committed at once (readiness should not wait for
        # the next interval), and so are new lines once every source is live (see
        # LIVE_COMMIT_GAP_S), unless the last attempt failed: then the interval applies.
        since = self.clock.monotonic() - self._last_commit
        due = since >= self.ingest.checkpoint_interval
        becoming_ready = self._last_commit_ok and any(
            not rt.ready and rt.tailer.caught_up() for rt in self.runtimes.values())
        live = (self._last_commit_ok and since >= LIVE_COMMIT_GAP_S
                and self._pending_lines() > 0
                and all(rt.tailer.caught_up() for rt in self.runtimes.values()))
        if becoming_ready or live or (due and self._has_uncommitted_work()):
            self._checkpoint()
        if due or becoming_ready:
            self._update_gauges()

    def _has_uncommitted_work(self) -> bool:
        return bool(self._pending_lines() or self.store.dirty or any(
            rt.tailer.dirty_checkpoints() or rt.tailer.removed for rt in self.runtimes.values()
        ))

    def _checkpoint(self, *, wait: bool = True) -> bool:
        caught_up = [rt for rt in self.runtimes.values() if rt.tailer.caught_up()]
        had_lines = self._pending_lines() > 0
        committed = self._writer.commit([(rt.pipeline, rt.tailer)
                                         for rt in self.runtimes.values()], wait=wait)
        if committed is None:
            return False  # busy: nothing was tried, so nothing failed
        self._last_commit = self.clock.monotonic()
        self._last_commit_ok = committed
        if committed:
            for rt in caught_up:
                if not rt.ready:
                    rt.ready = True
                    log.info("source %s caught up", rt.config.name)
            if had_lines:
                for listener in self.on_commit:
                    listener()
        return committed

    def _update_gauges(self) -> None:
        for name, rt in self.runtimes.items():
            key = self._lag.key((name,))
            self._lag.set(key, rt.tailer.lag_bytes())
            self._files.set(self._files.key((name,)), len(rt.tailer.files))

    def prune(self) -> int:
        """Forget positions of this configuration's files closed and unseen for a week (a
        removed source's positions are kept, for when it comes back)."""
        return self._writer.prune_offsets(
            [rt.tailer for rt in self.runtimes.values()], self.clock.time() - PRUNE_AFTER_S
        )
