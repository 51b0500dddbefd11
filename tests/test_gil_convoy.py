"""``python -m bench.micro.gil_convoy`` runs and prints one row per switch interval."""

from __future__ import annotations

from bench.micro import gil_convoy


def test_prints_a_ratio_per_interval(capsys) -> None:
    gil_convoy.main(["--seconds", "0.2", "--intervals-ms", "5,0.1"])
    rows = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.strip().endswith(")") or " ms " in line
    ]
    assert len(rows) == 2
    for row in rows:
        ratio = float(row.split()[-1])
        assert 0 < ratio < 2
