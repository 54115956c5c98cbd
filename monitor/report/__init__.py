"""`inferwatch report`: offline analysis of inference and API logs (SPEC §3).

    reading.py      globs, rotation order, decompression, streaming lines, schema sniffing
    aggregate.py    the daemon's decoders per line; per-model, timeline, slowest, sample
    distribution.py exact count/sum/min/max and grid percentiles in constant memory
    costing.py      api_usage priced as the ledger prices it, by day
    trend.py        Theil-Sen cost trend, Spearman's rank correlation, reservoir sample
    recommend.py    recommendations with their evidence
    document.py     the report as one JSON-ready document (what every format renders)
    render_text.py, render_json.py, render_html.py (+ charts.py, templates/report.html.j2)
    command.py      the command itself

This module only holds the command's help epilog, so `inferwatch --help` stays fast.
"""

HELP_EPILOG = """\
Files: each GLOB expands like a shell glob (sorted, hidden names only when asked for), the
generations of one log oldest first (app.log.2.gz, app.log.1, app.log). gzip, bzip2 and xz
files are recognised by their first bytes and decompressed as they stream; memory does not
grow with the size of the logs. Each file's schema (inference or api_usage) is decided from
the fields of its first lines. Lines are parsed by the daemon's own parsers; malformed lines
are counted and reported, never fatal.

Percentiles: nearest-rank over values rounded to a fixed log-linear grid. A value v > 0,
written v = m * 2^e with 0.5 <= m < 1, is rounded to the midpoint (j + 0.5) * 2^(e-8) of its
cell, j = floor(256 * m) (128 cells per power of two; at most 0.39 % off; values below
2^-1022 count as 0). The p-th
percentile of n values is the r-th smallest rounded value, r = ceil(p * n / 100) computed
exactly, clamped to the exact [min, max]. min, avg and max are exact.

Cost: api_usage requests priced as the daemon's ledger prices them (bundled price table, or
the cost section of --config), per calendar day of cost.timezone (UTC by default). A `cost`
field in a line is shown beside the computed cost, never instead of it. Trend: the
Theil-Sen slope (median of the pairwise slopes) of the daily cost over the last 90 whole
days: rising above +2 % of the mean daily cost per day, falling below -2 %, else flat; at
least 3 whole days needed.
"""
