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
from monitor.ingest.checkpoint import CheckpointWriter, known_sources, load_file_checkpoints
from monitor.ingest.decoders import FAST_DECODERS
from monitor.ingest.pipeline import SourcePipeline, build_filter
from monitor.ingest.schemas import Schema, build_custom_schema, parse_api_usage, parse_inference
from monitor.ingest.tailer import RotationAwareTailer
from monitor.ingest.watch import ChangeWatcher, make_watcher
from monitor.metrics import families as fam
from monitor.metrics.store import MetricStore
from monitor.storage import StateStore

log = logging.getLogger(__name__)

MIN_CYCLE_S = 0.05  # at most 20 read cycles a second, however chatty the writers are
PRUNE_AFTER_S = 7 * 86400.0


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
    ) -> None:
        self.ingest = ingest
        self.metrics = metrics
        self.state = state
        self.store = store
        self.clock = clock
        self._watcher_factory = watcher_factory
        self._writer = CheckpointWriter(state, store, clock)
        self._lag = store.register(fam.LOG_LAG_BYTES)
        self._files = store.register(fam.LOG_FILES)
        self.runtimes: dict[str, SourceRuntime] = {}
        self._pending_sources: Sequence[SourceConfig] | None = None
        self._last_commit = clock.monotonic()
        self.last_tick = clock.monotonic()
        self._add_sources(sources)

    # -- sources --------------------------------------------------------------------------------

    def _add_sources(self, sources: Sequence[SourceConfig]) -> None:
        seen = known_sources(self.state)
        for source in sources:
            tailer = RotationAwareTailer(
                source=source.name,
                patterns=[_absolute(p) for p in source.paths],
                exclude=[_absolute(p) for p in source.exclude_paths],
                start_at=source.start_at,
                max_line_bytes=source.max_line_bytes,
                saved=load_file_checkpoints(self.state, source.name),
                source_known=source.name in seen,
                clock=self.clock,
                rotate_wait=self.ingest.rotate_wait,
                copy_wait=max(2.0, 2 * self.ingest.rescan_interval),
            )
            pipeline = SourcePipeline(
                name=source.name,
                schema=schema_for(source),
                fast_decoder=FAST_DECODERS.get(source.log_schema),
                store=self.store,
                clock=self.clock,
                static_labels=source.labels,
                line_filter=build_filter(source.include, source.exclude),
                user_label=self.metrics.user_label,
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
        if leaving:
            self._checkpoint()  # commit their last lines and offsets before closing them
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
        watcher = self._watcher_factory(self.ingest.inotify)
        max_wait = self.ingest.rescan_interval if self.ingest.inotify else self.ingest.poll_interval
        stopping = asyncio.ensure_future(stop.wait())
        rescan, modified = True, set[str]()
        try:
            while True:
                started = self.clock.monotonic()
                self._apply_reconfigure()
                if rescan:
                    for rt in self.runtimes.values():
                        rt.tailer.scan()
                    watcher.watch(set().union(*(rt.tailer.directories()
                                                for rt in self.runtimes.values())))
                for rt in list(self.runtimes.values()):
                    await self._drain(rt, None if rescan else modified)
                self._checkpoint_if_due()
                self.last_tick = self.clock.monotonic()
                if stop.is_set():
                    break
                pause = MIN_CYCLE_S - (self.clock.monotonic() - started)
                if pause > 0:
                    await asyncio.wait([stopping], timeout=pause)
                changes = asyncio.ensure_future(watcher.wait(max_wait))
                await asyncio.wait([changes, stopping], return_when=asyncio.FIRST_COMPLETED)
                if not changes.done():
                    changes.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await changes
                    # Stopping: one more full pass reads everything written so far, then commits.
                    rescan, modified = True, set()
                    continue
                result = changes.result()
                rescan, modified = result.rescan, result.modified
        finally:
            stopping.cancel()
            self._checkpoint()
            for rt in self.runtimes.values():
                rt.tailer.close()
            watcher.close()

    async def _drain(self, rt: SourceRuntime, modified: set[str] | None) -> None:
        """Read everything available from one source, checkpointing every N lines."""
        tailer, pipeline = rt.tailer, rt.pipeline
        for tracked in tailer.files_with_data(modified):
            while tracked.fd >= 0:
                chunk = tailer.read(tracked)
                if chunk is None:
                    break
                pipeline.process(chunk, tracked.path)
                self.last_tick = self.clock.monotonic()  # progress, for the watchdog
                if self._pending_lines() >= self.ingest.checkpoint_lines:
                    self._checkpoint()
                await asyncio.sleep(0)  # let the HTTP server and timers run during catch-up

    def _pending_lines(self) -> int:
        return sum(rt.pipeline.pending_lines for rt in self.runtimes.values())

    def _checkpoint_if_due(self) -> None:
        # A source that has just caught up is committed at once: readiness should not wait
        # for the next interval.
        becoming_ready = any(not rt.ready and rt.tailer.caught_up()
                             for rt in self.runtimes.values())
        due = self.clock.monotonic() - self._last_commit >= self.ingest.checkpoint_interval
        if becoming_ready or (due and self._has_uncommitted_work()):
            self._checkpoint()
        if due or becoming_ready:
            self._update_gauges()

    def _has_uncommitted_work(self) -> bool:
        return bool(self._pending_lines() or self.store.dirty or any(
            rt.tailer.dirty_checkpoints() or rt.tailer.removed for rt in self.runtimes.values()
        ))

    def _checkpoint(self) -> bool:
        caught_up = [rt for rt in self.runtimes.values() if rt.tailer.caught_up()]
        committed = self._writer.commit([(rt.pipeline, rt.tailer)
                                         for rt in self.runtimes.values()])
        self._last_commit = self.clock.monotonic()
        if committed:
            for rt in caught_up:
                if not rt.ready:
                    rt.ready = True
                    log.info("source %s caught up", rt.config.name)
        return committed

    def _update_gauges(self) -> None:
        for name, rt in self.runtimes.items():
            key = self._lag.key((name,))
            self._lag.set(key, rt.tailer.lag_bytes())
            self._files.set(self._files.key((name,)), len(rt.tailer.files))

    def prune(self) -> int:
        """Forget positions of files closed and unseen for a week."""
        return self._writer.prune_offsets(
            [rt.tailer for rt in self.runtimes.values()], self.clock.time() - PRUNE_AFTER_S
        )
