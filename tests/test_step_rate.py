"""``bench.micro.step_rate``: the inference thread's session-steps/s, graphs off and on."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.micro.step_rate import main


def test_steps_of_each_batch_size_with_graphs_off_and_on(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rate.json"
    argv = ["--model", str(tiny_checkpoint), "--device", "cpu", "--sessions", "40"]
    argv += ["--batch-sizes", "4,32", "--graphs", "off,on", "--duration-s", "0.2"]
    result = main([*argv, "--json", str(out)])
    rows = result["rows"]
    assert [(r["graphs"], r["batch"]) for r in rows] == [
        ("off", 4),
        ("off", 32),
        ("on", 4),
        ("on", 32),
    ]
    for row in rows:
        assert row["steps"] > 0 and row["rows_per_s"] > 0
        assert row["step_ms_p50"] <= row["step_ms_p99"]
    assert out.exists() and result["device"] == "cpu"


def test_batches_larger_than_the_sessions_are_refused(tiny_checkpoint: Path) -> None:
    with pytest.raises(SystemExit, match="must not exceed"):
        main(["--model", str(tiny_checkpoint), "--sessions", "8", "--batch-sizes", "16"])
