"""The report's targets and cell formatting, shared by every section of ``REPORT.md``.

Numbers print the same way in every table ("-" for missing), and each target sits next to
the helpers that mark it met or missed.
"""

from __future__ import annotations

import math
from typing import Any

SPEEDUP_TARGET = 5.0
ECHO_SHARE_TARGET = 0.5
WS_FEEDS_TARGET = 5000.0
WS_P99_TARGET_MS = 100.0
HEADLINE_LEVEL = 64
WS_HEADLINE_SESSIONS = 1000


def fmt_num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def fmt_pct(value: Any) -> str:
    return "-" if value is None else f"{value:.1%}"


def ratio_of(a: Any, b: Any) -> float | None:
    return a / b if a and b else None


def by_level(levels: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(r["connections"]): r for r in levels}


def mark(ok: bool | None) -> str:
    return "" if ok is None else (" (target met)" if ok else " (**target missed**)")


def part_section(doc: dict[str, Any], key: str, heading: str) -> tuple[Any, list[str]]:
    """A part of the run and its section's opening lines; ``None`` (and a "Not measured"
    line) when the part was skipped or failed."""
    part = doc["parts"].get(key)
    lines = [heading, ""]
    if not part or "error" in part:
        return None, [*lines, f"Not measured: {part.get('error') if part else 'skipped'}", ""]
    return part, lines


def headline(levels: list[dict[int, Any]], line: str) -> str:
    """The headline sentence, or why it is missing (the level was not in this run)."""
    if all(HEADLINE_LEVEL in level for level in levels):
        return line
    return f"(The headline level {HEADLINE_LEVEL} was not in this run.)"
