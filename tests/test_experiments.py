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


def test_ptb_cells_trains_every_cell_and_reports(tmp_path: Path) -> None:
    from experiments import ptb_cells

    data = tmp_path / "data"
    data.mkdir()
    lines = "the cat sat on the mat\nthe dog ate the bone\na cat and a dog\n" * 20
    for split in ("train", "valid", "test"):
        (data / f"ptb.{split}.txt").write_text(lines)
    out = tmp_path / "result.json"
    ptb_cells.main(
        [
            "--cells",
            "lstm,gru",
            "--recipe",
            "tiny",
            "--epochs",
            "2",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "runs"),
            "--device",
            "cpu",
            "--json",
            str(out),
            "--plot",
            str(tmp_path / "plot.png"),
        ]
    )
    result = json.loads(out.read_text())
    for cell in ("lstm", "gru"):
        entry = result["cells"][cell]
        assert entry["epochs"] == 2
        assert len(entry["history"]) == 2
        assert 1 < entry["test"] < 100  # a 12-word corpus: far below uniform
    assert result["cells"]["lstm"]["parameters"] > result["cells"]["gru"]["parameters"]
    assert (tmp_path / "plot.png").stat().st_size > 1000
    redrawn = tmp_path / "again.png"
    ptb_cells.main(["--report", str(out), "--plot", str(redrawn)])
    assert redrawn.stat().st_size > 1000


def test_carry_gate_bias_opens_each_cells_keep_gate() -> None:
    from models.config import ModelConfig
    from models.network import LanguageModel

    where = {
        "lstm": lambda layer: layer.bias_ih_l0[8:16] + layer.bias_hh_l0[8:16],
        "gru": lambda layer: layer.rnn.bias_ih_l0[8:16] + layer.rnn.bias_hh_l0[8:16],
        "lstm_peephole": lambda layer: layer.bias_l0[8:16],
        "lstm_cifg": lambda layer: layer.bias_l0[:8],
    }
    for cell, bias in where.items():
        model = LanguageModel(ModelConfig(12, 4, 8, num_layers=1, tied=False, cell=cell))
        long_dependency.carry_gate_bias(model, 1.0)
        assert torch.allclose(bias(model.layers[0]), torch.ones(8)), cell


def test_merge_combines_cells_run_apart(tmp_path: Path) -> None:
    common = ["--gaps", "2,3", "--budget", "2000", "--steps", "2", "--test-size", "10"]
    for cell in ("lstm", "rnn"):
        long_dependency.main([*common, "--cells", cell, "--json", str(tmp_path / f"{cell}.json")])
    out = tmp_path / "all.json"
    long_dependency.main(
        ["--merge", str(tmp_path / "lstm.json"), str(tmp_path / "rnn.json"), "--json", str(out)]
    )
    merged = json.loads(out.read_text())
    assert set(merged["cells"]) == {"lstm", "rnn"}
    assert merged["devices"] == {"lstm": "cpu", "rnn": "cpu"}
