"""The synthetic workload behind `inferwatch demo` and the benchmarks, and the demo itself.

`lines` owns the pure, seeded line generators (the `inference` and `api_usage` schemas of
SPEC section 5) and the scripted incidents that bend their distributions; `workload` owns
the files: a writer that rotates exactly like `logging.handlers.RotatingFileHandler`, the
async `DemoWorkload` driver, and `generate_file` for benchmarks. `sink` is the loopback
webhook receiver the demo's alerts are delivered to, and `runner` puts it all together.
"""
