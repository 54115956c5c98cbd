"""The floor: the plainest Python that computes the benchmark's aggregate from the log.

Run as its own process (`python bench/bare_loop.py LOG --buckets 0.025,0.05,…`): read the
file line by line, `orjson.loads` each line, count requests by status (error when
`"level": "ERROR"` or an `error` field is present), sum input and output tokens, and bucket
`duration_ms / 1000` with `bisect_left`. It prints one JSON object on stdout: the aggregate
and `loop_s`, the time of the loop alone (open to last line), so start-up and imports can be
told apart from the work. Only the standard library and orjson are imported, on purpose.
"""

from __future__ import annotations

import argparse
import json
import time
from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

import orjson


def aggregate(path: str, buckets: Sequence[float]) -> dict[str, Any]:
    """One pass over `path`; the aggregate in `bench/aggregate.py`'s JSON layout."""
    success = error = input_tokens = output_tokens = 0
    counts = [0] * (len(buckets) + 1)
    duration_sum = 0.0
    loads = orjson.loads
    with open(path, "rb") as handle:
        for line in handle:
            obj = loads(line)
            if obj.get("level") == "ERROR" or "error" in obj:
                error += 1
            else:
                success += 1
            input_tokens += obj.get("input_tokens", 0)
            output_tokens += obj.get("output_tokens", 0)
            seconds = obj["duration_ms"] / 1000.0
            counts[bisect_left(buckets, seconds)] += 1
            duration_sum += seconds
    return {"success": success, "error": error, "input_tokens": input_tokens,
            "output_tokens": output_tokens, "duration_buckets": counts,
            "duration_sum": duration_sum}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--buckets", required=True,
                        help="histogram upper bounds, comma-separated, ascending")
    args = parser.parse_args()
    buckets = tuple(float(b) for b in args.buckets.split(","))
    started = time.perf_counter()
    result = aggregate(args.log, buckets)
    result["loop_s"] = time.perf_counter() - started
    print(json.dumps(result))


if __name__ == "__main__":
    main()
