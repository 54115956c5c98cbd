"""CPU cost of one GPU sampling tick: `GpuSampler.sample()` over 8 fake GPUs.

The GPUs are the tests' fake `libnvidia-ml.so.1` (tests/samplers/fake_nvml), built with gcc
into a temporary directory and loaded through the real pynvml ctypes path in a child process
(tests/samplers/nvml_helpers.SamplerChild). Each GPU runs `procs_per_gpu` compute processes,
so the per-process memory path (and its process-name cache) is part of the cost. The figure
is `time.process_time()` around each `sample()` in that process — every thread, the NVML
worker included — and the median over `runs` samples, after one warm-up sample.

The fake answers in microseconds; a real driver's calls cost more (an ioctl each), so this
measures inferwatch's own overhead per tick, not NVML's.

    .venv/bin/python bench/gpu_bench.py [--gpus 8] [--runs 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "samplers"))

from nvml_helpers import FakeNvml, SamplerChild, build_fake_nvml


def measure_gpu_sample_cpu(n_gpus: int = 8, runs: int = 100, procs_per_gpu: int = 2) -> float:
    """Median CPU seconds of one `sample()` over `n_gpus` fake GPUs."""
    with tempfile.TemporaryDirectory(prefix="inferwatch-gpu-bench-") as tmp:
        lib_dir = Path(tmp)
        build_fake_nvml(lib_dir)
        script = FakeNvml.with_gpus(lib_dir / "script", n_gpus)
        for gpu in script.gpus:
            gpu.procs = [(os.getpid(), 2**30)] * procs_per_gpu
        script.write()
        child = SamplerChild(lib_dir=lib_dir, script=script.path)
        try:
            opened = child.request("open", enabled="true", xid_wait_ms=500)
            if opened.error is not None:
                raise RuntimeError(opened.error)
            warm = child.request("sample")
            if not warm.ok:
                raise RuntimeError(warm.error)
            if len(warm.by_gpu("gpu_up")) != n_gpus:
                raise RuntimeError(f"expected {n_gpus} GPUs, the sampler saw "
                                   f"{len(warm.by_gpu('gpu_up'))}")
            done = child.request("bench", runs=runs, timeout=60.0 + runs)
            if not done.ok:
                raise RuntimeError(done.error)
            return statistics.median(done["cpu_s"])
        finally:
            child.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    cpu = measure_gpu_sample_cpu(args.gpus, args.runs)
    print(f"GPU sample, {args.gpus} fake GPUs: {cpu * 1e3:.3f} ms CPU per sample "
          f"(median of {args.runs}, time.process_time)")


if __name__ == "__main__":
    main()
