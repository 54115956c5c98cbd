"""`inferwatch export rules`: the configured rule files copied and the SLO rules rendered into
one directory that promtool and the daemon's own loader both accept. The promtool check skips
without /usr/bin/promtool unless INFERWATCH_REQUIRE_INTEGRATION=1, then fails."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.cli import main

ROOT = Path(__file__).resolve().parents[1]
PROMTOOL = Path("/usr/bin/promtool")


@pytest.mark.integration
def test_export_writes_rule_files_and_slo_rules_that_both_loaders_accept(
        tmp_path: Path, write_config: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "inferwatch.yml", {
        "rule_files": [str(ROOT / "rules" / "host.yml"), str(ROOT / "rules" / "gpu.yml")],
        "slo_files": [str(ROOT / "rules" / "slos" / "inference.yml")],
    })
    out = tmp_path / "export"
    assert main(["export", "rules", "--config", str(config), "--out", str(out)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["gpu.yml", "host.yml", "slos.yml"]
    assert capsys.readouterr().out.split() == [str(out / n) for n in ("host.yml", "gpu.yml",
                                                                       "slos.yml")]
    assert (out / "host.yml").read_bytes() == (ROOT / "rules" / "host.yml").read_bytes()
    slos = (out / "slos.yml").read_text()
    assert "slo:sli_error:ratio_rate5m" in slos
    assert "slo:period_error_budget_remaining:ratio" in slos
    assert main(["check", "rules", *(str(out / n) for n in written)]) == 0
    if not PROMTOOL.exists():
        if os.environ.get("INFERWATCH_REQUIRE_INTEGRATION") == "1":
            pytest.fail("promtool missing and INFERWATCH_REQUIRE_INTEGRATION=1")
        pytest.skip("promtool not installed")
    checked = subprocess.run([str(PROMTOOL), "check", "rules", *(str(out / n) for n in written)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_export_refuses_a_file_as_the_output_directory(
        tmp_path: Path, write_config: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "inferwatch.yml", {})
    (tmp_path / "taken").write_text("x")
    assert main(["export", "rules", "--config", str(config),
                 "--out", str(tmp_path / "taken")]) == 2
    assert "is not a directory" in capsys.readouterr().err
