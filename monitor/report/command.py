"""`inferwatch report`: expand the globs, stream every file through the daemon's decoders into
one `Aggregator`, and render the result as text, JSON or HTML.

Nothing in a file stops the report: an unreadable file, a corrupt or truncated compressed
stream, a line that is not JSON — each is counted and named in the report (and on stderr for
files), and the lines read before it still count. Only "no file matches at all" is a usage
error (exit 2).
"""

from __future__ import annotations

import logging
import lzma
import zlib
from collections.abc import Sequence
from pathlib import Path

from monitor.clock import Clock, SystemClock
from monitor.config_models import CostConfig
from monitor.cost.pricing import PriceTable
from monitor.errors import UsageError
from monitor.ingest.decoders import FAST_DECODERS
from monitor.report.aggregate import Aggregator, FileCounts
from monitor.report.costing import CostTally
from monitor.report.document import Document, build_document
from monitor.report.reading import (
    DEFAULT_MAX_LINE_BYTES,
    Chunk,
    LogFile,
    expand,
    open_log,
    read_chunks,
    sniff_schema,
)

log = logging.getLogger(__name__)

FORMATS = ("text", "json", "html")
PRICED_SCHEMAS = frozenset({"api_usage"})  # as the ledger: only hosted-API calls are priced
SNIFF_CHUNKS = 8  # chunks held back at most while a file's schema is being decided
# What a damaged or truncated file raises, plain or compressed (gzip: OSError, EOFError,
# zlib.error; bz2: OSError, EOFError; xz: lzma.LZMAError, EOFError).
_READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)


def read_file(log_file: LogFile, aggregator: Aggregator, max_line_bytes: int) -> FileCounts:
    """Stream one file into the aggregator; what it held, and the error that ended it."""
    counts = FileCounts(path=log_file.path)
    try:
        opened = open_log(log_file.path)
    except OSError as exc:
        counts.error = f"cannot open: {exc.strerror or exc}"
        return counts
    counts.compression = opened.compression
    held: list[Chunk] = []
    try:
        for chunk in read_chunks(opened.stream, max_line_bytes):
            counts.oversized += chunk.oversized
            if counts.schema is None:
                held.append(chunk)
                schema = sniff_schema(line for c in held for line in c.lines)
                if schema is None and len(held) < SNIFF_CHUNKS:
                    continue
                _drain(held, schema or "inference", aggregator, counts)
                held = []
                continue
            aggregator.consume(chunk.lines, FAST_DECODERS[counts.schema],
                               counts.schema in PRICED_SCHEMAS, counts)
    except _READ_ERRORS as exc:
        counts.error = f"reading stopped: {exc}"
    finally:
        opened.close()
    if held:  # the file ended while its schema was still undecided
        schema = sniff_schema(line for c in held for line in c.lines)
        _drain(held, schema or "inference", aggregator, counts)
    return counts


def _drain(held: Sequence[Chunk], schema: str, aggregator: Aggregator,
           counts: FileCounts) -> None:
    counts.schema = schema
    decode = FAST_DECODERS[schema]
    for chunk in held:
        aggregator.consume(chunk.lines, decode, schema in PRICED_SCHEMAS, counts)


def analyse(patterns: Sequence[str], *, since: float | None = None,
            clock: Clock | None = None, cost: CostConfig | None = None,
            prices: PriceTable | None = None,
            max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Document:
    """The report's document for the files the patterns match (see the module docstring)."""
    clock = clock or SystemClock()
    now = clock.time()
    files, warnings = expand(patterns)
    if not files:
        problems = "; ".join(warnings) or "no file given"
        raise UsageError(f"report: no log file to read ({problems})")
    cost = cost or CostConfig()
    tally = CostTally(prices or PriceTable.load(cost.pricing_files), cost)
    aggregator = Aggregator(cutoff=None if since is None else now - since, cost=tally)
    results = []
    for log_file in files:
        counts = read_file(log_file, aggregator, max_line_bytes)
        if counts.error is not None:
            warnings.append(f"{counts.path}: {counts.error}")
        results.append(counts)
    for warning in warnings:
        log.warning("report: %s", warning)
    return build_document(aggregator=aggregator, files=results, warnings=warnings,
                          generated_at=now, since=since)


def run_report(patterns: Sequence[str], *, since: float | None = None,
               output: str = "text", config_path: str | None = None,
               clock: Clock | None = None) -> str:
    """The report rendered in `output` (text, json or html)."""
    if output not in FORMATS:
        raise UsageError(f"report: --format must be one of {', '.join(FORMATS)}")
    cost = None
    if config_path is not None:
        from monitor.config import load_config  # noqa: PLC0415 - only with --config

        cost = load_config(Path(config_path)).cost
    document = analyse(patterns, since=since, clock=clock, cost=cost)
    if output == "json":
        from monitor.report.render_json import render_json  # noqa: PLC0415

        return render_json(document)
    if output == "html":
        from monitor.report.render_html import render_html  # noqa: PLC0415

        return render_html(document)
    from monitor.report.render_text import render_text  # noqa: PLC0415

    return render_text(document)
