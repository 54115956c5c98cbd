"""`inferwatch export rules`: the Prometheus rule files a central Prometheus needs to compute
what this daemon computes.

Into `--out`: every file `rule_files` matches, copied as it is (they are Prometheus rule
files already), and `slos.yml`, the Sloth-equivalent recording and burn-rate rules of the
`slo_files` SLOs. The SLO period ratios are written as true event ratios over the window
(Sloth's `disableOptimized`), which is what the daemon computes, so both alert on the same
minutes. Budget rules for a fleet are the bundled `rules/cost.yml`.
"""

from __future__ import annotations

import glob
import shutil
from pathlib import Path

from monitor.config import Config
from monitor.errors import UsageError
from monitor.slo.export import render_rules
from monitor.slo.spec import load_slo_files

SLO_FILE = "slos.yml"


def export_rules(config: Config, out: Path) -> list[Path]:
    """Write the files; the paths written, in order."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    names: set[str] = set()
    for pattern in config.rule_files:
        for path in sorted(glob.glob(pattern)):  # noqa: PTH207 - absolute str globs from config
            name = Path(path).name
            if name in names or name == SLO_FILE:
                name = f"{Path(path).parent.name}-{name}"
            if name in names:
                raise UsageError(f"two rule files would both be written as {name}: rename one")
            names.add(name)
            target = out / name
            shutil.copyfile(path, target)
            written.append(target)
    slos = [slo for spec in load_slo_files(config.slo_files) for slo in spec.slos]
    if slos:
        target = out / SLO_FILE
        target.write_text(render_rules(slos, optimized=False), encoding="utf-8")
        written.append(target)
    return written
