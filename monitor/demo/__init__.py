"""The synthetic workload behind `inferwatch demo` and the benchmarks.

`lines` owns the pure, seeded line generators (the `inference` and `api_usage` schemas of
SPEC section 5) and the scripted incidents that bend their distributions; `workload` owns
the files: a writer that rotates exactly like `logging.handlers.RotatingFileHandler`, the
async `DemoWorkload` driver, and `generate_file` for benchmarks.
"""
