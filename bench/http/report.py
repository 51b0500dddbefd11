"""``REPORT.md`` and PNG plots from the ``results.json`` document of ``bench.http.orchestrator``.

This module assembles the sections (``report_sections``, ``report_ws``,
``report_overload``) and the plots (``plots``); each lives in its own module so that no
one file holds every table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.http.plots import plot
from bench.http.report_overload import overload_section
from bench.http.report_sections import echo_section, header_lines, predict_section
from bench.http.report_ws import ws_rates_section, ws_section

__all__ = ["plot", "write_report"]


def write_report(doc: dict[str, Any], out: Path) -> Path:
    """Write ``REPORT.md`` (and the plots) into ``out``; returns the report's path."""
    try:
        pngs = plot(doc, out)
    except Exception as exc:  # a plot failure must not lose the tables
        pngs = []
        doc.setdefault("plot_error", str(exc))
    lines = [
        *header_lines(doc),
        *predict_section(doc),
        *echo_section(doc),
        *ws_section(doc),
        *ws_rates_section(doc),
        *overload_section(doc),
    ]
    lines += [
        "## 5. Memory at 100,000 live sessions",
        "",
        "Not measured over HTTP here; see the engine benchmark (`bench/micro/engine_bench.py`).",
        "",
    ]
    if pngs:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in pngs] + [""]
    lines += [
        "Raw wrk output, loadgen JSON and server logs: `bench/out/http/` (not in git); "
        "every number: `results.json`.",
        "",
    ]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines))
    return path
