"""Command-line value parsers shared by the bench scripts."""

from __future__ import annotations


def int_list(spec: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]`` (empty items skipped)."""
    return [int(x) for x in spec.split(",") if x.strip()]
