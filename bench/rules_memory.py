"""Bytes per stored sample, measured in a fresh interpreter (run by bench/rules_bench.py).

`--trace`: tracemalloc while a SeriesStore loads the dataset through `append` (exact bytes the
store keeps: the sample arrays, and per series the labels, index entries and MemSeries); the
arrays' own size is reported beside it. Without it: the process's VmRSS before and after the
same load (tracemalloc's bookkeeping would inflate RSS, hence two runs). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tracemalloc

import rules_data as rd
from procs import memory_kib


def measure(shape: rd.Shape, *, trace: bool) -> dict[str, float]:
    gc.collect()
    rss_before = memory_kib(os.getpid())["VmRSS"]
    if trace:
        tracemalloc.start()
    store = rd.new_store()
    appended = rd.load(shape, store)
    gc.collect()
    if not trace:
        rss_after = memory_kib(os.getpid())["VmRSS"]
        return {"samples": appended, "series": len(store),
                "rss_delta_bytes_per_sample": (rss_after - rss_before) * 1024 / appended}
    traced = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    arrays = sum(sys.getsizeof(chunk) for stored in store.series.values()
                 for chunk in (*stored.ts, *stored.vs))
    return {"samples": appended, "series": len(store), "traced_bytes": traced,
            "bytes_per_sample": traced / appended,
            "array_bytes_per_sample": arrays / appended,
            "overhead_bytes_per_series": (traced - arrays) / len(store)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, required=True)
    parser.add_argument("--history-s", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args()
    shape = rd.shape_for(args.series, args.history_s, args.seed)
    print(json.dumps(measure(shape, trace=args.trace)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
