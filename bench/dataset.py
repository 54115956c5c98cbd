"""The benchmark's input: generated `inference` logs under bench/data/, with their truth.

Each file is written once by the demo workload's generator (`generate_lines`, the same bytes
`generate_file` writes for a seed) and kept: `inference-<lines>-s<seed>.log` beside
`…truth.json`, which records what the generator said each line means (requests by status,
tokens, the duration histogram). A later run reuses the pair when the sidecar names the same
line count, seed, generator layout and file size; anything else is regenerated.
"""

from __future__ import annotations

import json
import os
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aggregate import Aggregate

from monitor.demo.lines import GeneratedLine
from monitor.demo.workload import BENCH_START_TIME, generate_lines
from monitor.metrics.families import DURATION_BUCKETS

DATA_DIR = Path(__file__).resolve().parent / "data"
_FORMAT_VERSION = 1
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Dataset:
    """One generated log file and what it holds."""

    path: Path
    lines: int
    seed: int
    size: int
    truth: Aggregate

    @property
    def truth_path(self) -> Path:
        return truth_path(self.path)


def log_path(lines: int, seed: int, directory: Path = DATA_DIR) -> Path:
    return directory / f"inference-{lines}-s{seed}.log"


def truth_path(path: Path) -> Path:
    return path.with_suffix(".truth.json")


def record_line(truth: Aggregate, line: GeneratedLine,
                buckets: Sequence[float] = DURATION_BUCKETS) -> None:
    """Count one generated line the way inferwatch's metrics would."""
    if line.is_error:
        truth.error += 1
    else:
        truth.success += 1
    truth.input_tokens += line.input_tokens
    truth.output_tokens += line.output_tokens
    seconds = line.duration_ms / 1000.0
    truth.duration_buckets[bisect_left(buckets, seconds)] += 1
    truth.duration_sum += seconds


def _write(path: Path, lines: Iterable[GeneratedLine]) -> tuple[int, Aggregate]:
    truth = Aggregate(duration_buckets=[0] * (len(DURATION_BUCKETS) + 1))
    size = 0
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        chunk: list[bytes] = []
        pending = 0
        for line in lines:
            record_line(truth, line)
            chunk.append(line.data)
            pending += len(line.data)
            if pending >= _CHUNK_BYTES:
                out.write(b"".join(chunk))
                size, chunk, pending = size + pending, [], 0
        out.write(b"".join(chunk))
        size += pending
    os.replace(partial, path)
    return size, truth


def _load(path: Path, lines: int, seed: int) -> Dataset | None:
    try:
        meta = json.loads(truth_path(path).read_text())
        size = path.stat().st_size
    except (OSError, ValueError):
        return None
    wanted = {"version": _FORMAT_VERSION, "lines": lines, "seed": seed,
              "buckets": list(DURATION_BUCKETS), "size": size}
    if any(meta.get(key) != value for key, value in wanted.items()):
        return None
    return Dataset(path, lines, seed, size, Aggregate.from_json(meta["truth"]))


def ensure_dataset(lines: int, seed: int, directory: Path = DATA_DIR) -> Dataset:
    """The `lines`-line file of `seed`: reused when intact, else generated (and reported)."""
    path = log_path(lines, seed, directory)
    found = _load(path, lines, seed)
    if found is not None:
        print(f"data: reusing {path} ({found.size / 1e6:.0f} MB)")
        return found
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    size, truth = _write(path, generate_lines(lines, "inference", seed,
                                              start_time=BENCH_START_TIME))
    meta = {"version": _FORMAT_VERSION, "lines": lines, "seed": seed,
            "buckets": list(DURATION_BUCKETS), "size": size, "truth": truth.to_json()}
    truth_path(path).write_text(json.dumps(meta, indent=1) + "\n")
    print(f"data: generated {path.name}: {lines} lines, {size / 1e6:.0f} MB, "
          f"{size / lines:.0f} B/line in {time.perf_counter() - started:.1f} s")
    return Dataset(path, lines, seed, size, truth)


def warm_page_cache(path: Path) -> None:
    """Read the file once so the first timed contender does not pay for the disk."""
    with path.open("rb") as handle:
        while handle.read(_CHUNK_BYTES * 8):
            pass
