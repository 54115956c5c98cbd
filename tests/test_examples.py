"""The shipped example configuration stays valid."""

from pathlib import Path

from monitor.config import load_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_example_config_validates() -> None:
    config = load_config(EXAMPLES / "inferwatch.yml")
    assert [s.name for s in config.sources] == ["inference", "api"]
    assert config.server.listens_on_loopback
    # The README's install steps copy rules/*.yml and rules/slos/*.yml to these places.
    assert config.rule_files == ("/etc/inferwatch/rules/*.yml",)
    assert config.slo_files == ("/etc/inferwatch/slos/*.yml",)
