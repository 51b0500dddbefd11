"""A benchmark's result as a JSON file, the one way every bench script writes it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_result(path: Path | None, result: Any, indent: int = 1) -> None:
    """Write ``result`` to ``path`` (its folder made first); nothing when ``path`` is None."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=indent) + "\n")
