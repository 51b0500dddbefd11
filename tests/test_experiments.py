"""The variant experiments' pipeline runs end to end at toy size."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from experiments import long_dependency


def test_batches_put_the_answer_at_the_start() -> None:
    tokens, target = long_dependency.make_batch(16, 7, 4, 5, torch.Generator().manual_seed(0))
    assert tokens.shape == (16, 9)
    assert torch.equal(tokens[:, 0], target)
    assert bool(((tokens[:, 1:-1] >= 4) & (tokens[:, 1:-1] < 9)).all())
    assert bool((tokens[:, -1] == 9).all())


def test_equal_parameter_budget() -> None:
    sizes = {
        cell: long_dependency.hidden_for_budget(cell, 3000, 10, 8)
        for cell in ("rnn", "lstm", "gru")
    }
    assert sizes["rnn"] > sizes["gru"] > sizes["lstm"]
    for cell, hidden in sizes.items():
        assert long_dependency.parameters(cell, hidden, 10, 8) <= 3000
        assert long_dependency.parameters(cell, hidden + 1, 10, 8) > 3000


def test_experiment_runs_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    long_dependency.main(
        [
            "--gaps",
            "2,3",
            "--cells",
            "lstm,gru",
            "--budget",
            "2000",
            "--steps",
            "3",
            "--test-size",
            "20",
            "--json",
            str(out),
            "--plot",
            str(tmp_path / "plot.png"),
        ]
    )
    result = json.loads(out.read_text())
    assert set(result["cells"]) == {"lstm", "gru"}
    assert all(len(c["accuracy"]) == 2 for c in result["cells"].values())
    assert (tmp_path / "plot.png").stat().st_size > 1000
