"""The rules benchmark's summary: medians, scaling, ratios against Prometheus, the tables.

`build` turns the measured runs into one JSON-able document; `print_report` prints it. Time
ratios here are inferwatch / Prometheus (1x = par, lower is better); scaling is the time ratio
between the largest and smallest rule datasets divided by their series ratio (1x = linear).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from report import Ratio, format_ratios, medians, ratio

if TYPE_CHECKING:
    from rules_bench import DatasetRun

NAMES = {"group": "RuleGroup.evaluate", "engine": "Engine.instant x200",
         "iw_http": "inferwatch HTTP", "prom": "Prometheus HTTP"}
BYTES_PER_SAMPLE_AIM = 16.0
LINEAR = 1.0


def _scaling(runs: Sequence[DatasetRun]) -> dict[str, dict[str, Any]]:
    rules = sorted((r for r in runs if r.role == "rules"), key=lambda r: r.shape.series)
    if len(rules) < 2:
        return {}
    small, big = rules[0], rules[-1]
    small_med, big_med = medians(small.samples), medians(big.samples)
    series_ratio = big.shape.series / small.shape.series
    out = {}
    for contender in NAMES:
        if contender in small_med and contender in big_med and small_med[contender] > 0:
            time_ratio = big_med[contender] / small_med[contender]
            out[contender] = {
                "from": small.label, "to": big.label, "series_ratio": series_ratio,
                "time_ratio": time_ratio,
                "exponent": math.log(time_ratio) / math.log(series_ratio),
                "per_series_ratio": time_ratio / series_ratio,
            }
    return out


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def _ratios(runs: Sequence[DatasetRun], scaling: dict[str, dict[str, Any]],
            memory: dict[str, Any] | None) -> list[Ratio]:
    items: list[Ratio] = []
    for run in runs:
        med = medians(run.samples)
        prom = med.get("prom")
        items.append(ratio(f"rules {run.label}: inferwatch HTTP / Prometheus HTTP",
                           med.get("iw_http"), prom, None,
                           f"{_ms(med.get('iw_http'))} vs {_ms(prom)}", higher_is_better=False))
        items.append(ratio(f"rules {run.label}: RuleGroup.evaluate / Prometheus HTTP",
                           med.get("group"), prom, None,
                           f"{_ms(med.get('group'))} vs {_ms(prom)}", higher_is_better=False))
    for contender, scale in scaling.items():
        target = LINEAR if contender != "prom" else None
        items.append(ratio(
            f"scaling {scale['from']}->{scale['to']}: {NAMES[contender]}, per series",
            scale["time_ratio"], scale["series_ratio"], target,
            f"time x{scale['time_ratio']:.1f} for series x{scale['series_ratio']:.0f} "
            f"(exponent {scale['exponent']:.2f})", higher_is_better=False))
    for run in runs:
        med = medians(run.samples)
        for key in sorted(k for k in med if k.startswith("range:") and k.endswith(":iw_http")):
            name = key.split(":")[1]
            prom = med.get(f"range:{name}:prom")
            items.append(ratio(f"query_range {run.label} {name!r}: HTTP / HTTP", med[key], prom,
                               None, f"{med[key]:.3f} s vs "
                                     f"{'n/a' if prom is None else f'{prom:.3f} s'}",
                               higher_is_better=False))
    if memory is not None:
        items.append(ratio("bytes per stored sample / aim of 16", memory["bytes_per_sample"],
                           BYTES_PER_SAMPLE_AIM, None,
                           f"{memory['bytes_per_sample']:.1f} B (arrays "
                           f"{memory['array_bytes_per_sample']:.1f} B)",
                           higher_is_better=False))
        prom_bps = memory.get("prometheus_chunk_bytes_per_sample")
        items.append(ratio("bytes per sample: inferwatch memory / Prometheus chunks",
                           memory["bytes_per_sample"], prom_bps, None,
                           f"{memory['bytes_per_sample']:.1f} B vs "
                           f"{'n/a' if prom_bps is None else f'{prom_bps:.2f} B'}",
                           higher_is_better=False))
    return items


def build(runs: Sequence[DatasetRun], *, version: str | None, repeat: int,
          warnings: Sequence[str]) -> dict[str, Any]:
    scaling = _scaling(runs)
    memory = None
    for run in runs:
        if run.memory is not None:
            memory = dict(run.memory, dataset=run.label)
            chunks = run.timings.get("prometheus_chunk_bytes")
            if chunks:
                memory["prometheus_chunk_bytes_per_sample"] = chunks / run.shape.samples
    ratios = _ratios(runs, scaling, memory)
    return {
        "prometheus": version, "repeat": repeat,
        "datasets": [run.to_json() for run in runs],
        "scaling": scaling, "memory": memory,
        "ratios": [item.to_json() for item in ratios],
        "answers_compared": sum(run.checked for run in runs),
        "answers_nonempty": sum(run.nonempty for run in runs),
        "mismatches": [f"{run.label}: {m}" for run in runs for m in run.mismatches],
        "warnings": list(warnings),
    }


# -- printing ---------------------------------------------------------------------------------


def _cell(value: float | None, scale: float = 1000.0, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * scale:.{digits}f}"


def _x(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or not b else f"{a / b:.2f}x"


def _print_datasets(datasets: Sequence[dict[str, Any]]) -> None:
    print(f"{'dataset':<8} {'series':>7} {'samples':>11} {'history':>8} {'load s':>7} "
          f"{'export s':>8} {'promtool s':>10} {'OM MB':>6}")
    for d in datasets:
        t = d["timings_s"]
        history = f"{d['history_s'] // 3600}h{d['history_s'] % 3600 // 60:02d}m"
        print(f"{d['label']:<8} {d['series']:>7,} {d['series'] * d['samples_per_series']:>11,} "
              f"{history:>8} {t['load_s']:>7.2f} {_cell(t.get('export_s'), 1, 2):>8} "
              f"{_cell(t.get('promtool_s'), 1, 2):>10} "
              f"{_cell(t.get('openmetrics_bytes'), 1e-6, 0):>6}")


def _print_rules(datasets: Sequence[dict[str, Any]]) -> None:
    print("one evaluation of the 200 rules at the last sample, median ms "
          "(x = inferwatch / Prometheus HTTP)")
    print(f"{'dataset':<8} {'series':>7} {'group':>8} {'engine':>8} {'iw HTTP':>8} "
          f"{'Prom HTTP':>9} {'HTTP x':>7} {'group x':>7} {'engine x':>8} {'alerts':>6}")
    for d in datasets:
        m = d["medians"]
        print(f"{d['label']:<8} {d['series']:>7,} {_cell(m.get('group')):>8} "
              f"{_cell(m.get('engine')):>8} {_cell(m.get('iw_http')):>8} "
              f"{_cell(m.get('prom')):>9} {_x(m.get('iw_http'), m.get('prom')):>7} "
              f"{_x(m.get('group'), m.get('prom')):>7} {_x(m.get('engine'), m.get('prom')):>8} "
              f"{d['alerts_active']:>6}")
    for d in datasets:
        if d["role"] == "range":
            print(f"{d['label']}: the same rules over {d['series']:,} series with a 6 h history, "
                  "a control: the cost should follow the rules' windows, not the history")


def _print_scaling(scaling: dict[str, dict[str, Any]]) -> None:
    if not scaling:
        return
    any_scale = next(iter(scaling.values()))
    print(f"\nscaling {any_scale['from']} -> {any_scale['to']} series "
          f"(x{any_scale['series_ratio']:.0f}; linear = time x{any_scale['series_ratio']:.0f}, "
          "exponent 1.00)")
    for contender, s in scaling.items():
        verdict = "" if contender == "prom" else (
            "linear or better" if s["exponent"] <= LINEAR + 0.05 else "WORSE than linear")
        print(f"  {NAMES[contender]:<20} time x{s['time_ratio']:>6.1f}   exponent "
              f"{s['exponent']:.2f}   {verdict}")


def _print_templates(dataset: dict[str, Any]) -> None:
    per = dataset["per_template_median_s"]
    if "engine" not in per:
        return
    print(f"\nper rule kind at {dataset['label']} ({dataset['series']:,} series), 20 rules each, "
          "median ms")
    print(f"{'rule kind':<18} {'group':>8} {'engine':>8} {'iw HTTP':>8} {'Prom HTTP':>9} "
          f"{'HTTP x':>7}")
    for template, engine in per["engine"].items():
        group = per.get("group", {}).get(template)
        iw = per.get("iw_http", {}).get(template)
        prom = per.get("prom", {}).get(template)
        print(f"{template:<18} {_cell(group):>8} {_cell(engine):>8} {_cell(iw):>8} "
              f"{_cell(prom):>9} {_x(iw, prom):>7}")


def _print_range(dataset: dict[str, Any]) -> None:
    m = dataset["medians"]
    names = sorted({k.split(":")[1] for k in m if k.startswith("range:")},
                   key=lambda n: list(m).index(f"range:{n}:engine"))
    if not names:
        return
    print(f"\nquery_range over 6 h at 15 s steps (1,441 points), {dataset['series']:,} series, "
          "median s")
    print(f"{'query':<18} {'engine':>8} {'iw HTTP':>8} {'Prom HTTP':>9} {'HTTP x':>8}")
    for name in names:
        engine, iw, prom = (m.get(f"range:{name}:{c}") for c in ("engine", "iw_http", "prom"))
        print(f"{name:<18} {_cell(engine, 1, 3):>8} {_cell(iw, 1, 3):>8} "
              f"{_cell(prom, 1, 3):>9} {_x(iw, prom):>8}")


def _print_memory(memory: dict[str, Any] | None) -> None:
    if memory is None:
        return
    print(f"\nmemory per stored sample ({memory['dataset']}: {memory['series']:,} series, "
          f"{memory['samples']:,} samples; tracemalloc while loading through append)")
    print(f"  whole store  {memory['bytes_per_sample']:6.2f} B/sample (aim ~"
          f"{BYTES_PER_SAMPLE_AIM:.0f}): sample arrays {memory['array_bytes_per_sample']:.2f} "
          f"B/sample + {memory['overhead_bytes_per_series']:,.0f} B per series (labels, index)")
    print(f"  RSS delta    {memory['rss_delta_bytes_per_sample']:6.2f} B/sample")
    prom = memory.get("prometheus_chunk_bytes_per_sample")
    if prom is not None:
        print(f"  Prometheus   {prom:6.2f} B/sample in its blocks' XOR chunks (what its head "
              "also holds in memory, index excluded)")


def print_report(document: dict[str, Any]) -> None:
    datasets = document["datasets"]
    rules = [d for d in datasets if d["role"] == "rules"]
    peer = (f"peer: {document['prometheus']} over the same samples (promtool backfill)"
            if document["prometheus"] else "no Prometheus peer")
    print(f"\ninferwatch rules benchmark: 200 alerting rules, a sample every 15 s; {peer}; "
          f"medians of {document['repeat']}")
    print()
    _print_datasets(datasets)
    print()
    _print_rules(datasets)
    _print_scaling(document["scaling"])
    if rules:
        _print_templates(max(rules, key=lambda d: d["series"]))
    for dataset in datasets:
        if dataset["role"] == "range":
            _print_range(dataset)
    _print_memory(document["memory"])
    ratios = [Ratio(**{k: v for k, v in item.items() if k != "verdict"})
              for item in document["ratios"]]
    print("\nratios (inferwatch / peer: 1x = par, lower is better; scaling: 1x = linear)")
    print(format_ratios(ratios))
    compared, mismatches = document["answers_compared"], document["mismatches"]
    if compared:
        print(f"\nanswers compared with Prometheus: {compared} ({document['answers_nonempty']} "
              f"non-empty), {'all equal' if not mismatches else f'{len(mismatches)} differ'}")
    if document["warnings"]:
        print(f"\n{len(document['warnings'])} warning(s):")
        for warning in document["warnings"]:
            print(f"  - {warning}")
