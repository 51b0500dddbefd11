"""Checkpoints round-trip exactly and every broken one fails with a clear message."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from models.checkpoint import CheckpointError, load, save
from models.vocabulary import Vocabulary
from tests.conftest import make_checkpoint

VOCAB = Vocabulary(["<eos>", "<unk>", "a", "b", "c", "d"])


@pytest.fixture
def checkpoint_dir(tmp_path: Path) -> Path:
    return make_checkpoint(tmp_path / "ckpt", VOCAB, hidden=8)


def test_round_trip_is_exact(checkpoint_dir: Path) -> None:
    first = load(checkpoint_dir)
    copy = checkpoint_dir.parent / "copy"
    save(first, copy)
    second = load(copy)
    for (name, a), (_, b) in zip(
        first.model.state_dict().items(), second.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    tokens = torch.tensor([[0, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(first.model(tokens)[0], second.model(tokens)[0])
    assert second.vocabulary.words == VOCAB.words
    assert second.normalizer == first.normalizer
    assert second.model.decoder.weight is second.model.embedding.weight
    assert first.weights_sha256 == second.weights_sha256


def _edit_config(directory: Path, edit) -> None:
    path = directory / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: shutil.rmtree(d), "does not exist"),
        (lambda d: (d / "config.json").unlink(), "missing"),
        (lambda d: (d / "model.safetensors").unlink(), "missing weights"),
        (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
        (
            lambda d: _edit_config(d, lambda c: c.update(format_version=99)),
            "unknown format_version 99",
        ),
        (lambda d: _edit_config(d, lambda c: c.update(format="other")), "not an"),
        (
            lambda d: _edit_config(
                d, lambda c: c["architecture"].update(hidden_size=9, embedding_size=9)
            ),
            "shape",
        ),
        (
            lambda d: _edit_config(d, lambda c: c["architecture"].update(cell="transformer")),
            "unknown cell type",
        ),
        (lambda d: _edit_config(d, lambda c: c["vocabulary"].append("zzz")), "vocab_size"),
        (
            lambda d: _edit_config(d, lambda c: c["architecture"].update(bogus=1)),
            "unknown architecture fields",
        ),
        (lambda d: _edit_config(d, lambda c: c.update(storage_dtype="int4")), "storage_dtype"),
        (
            lambda d: _edit_config(d, lambda c: c.update(storage_dtype="float16")),
            "dtype float32, expected float16",
        ),
    ],
)
def test_broken_checkpoints_fail_clearly(checkpoint_dir: Path, breakage, message: str) -> None:
    breakage(checkpoint_dir)
    with pytest.raises(CheckpointError, match=message):
        load(checkpoint_dir)


def test_flipped_byte_is_caught(checkpoint_dir: Path) -> None:
    path = checkpoint_dir / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load(checkpoint_dir)


def test_garbage_weights_without_checksum(checkpoint_dir: Path) -> None:
    _edit_config(checkpoint_dir, lambda c: c["weights"].pop("sha256"))
    (checkpoint_dir / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load(checkpoint_dir)


def _rewrite_tensors(directory: Path, edit) -> None:
    path = directory / "model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))
    _edit_config(directory, lambda c: c["weights"].pop("sha256", None))


def test_wrong_dtype_missing_and_extra_tensors(checkpoint_dir: Path) -> None:
    _rewrite_tensors(
        checkpoint_dir, lambda t: t.update({"decoder.bias": t["decoder.bias"].double()})
    )
    with pytest.raises(CheckpointError, match="dtype float64"):
        load(checkpoint_dir)
    _rewrite_tensors(checkpoint_dir, lambda t: t.pop("decoder.bias"))
    with pytest.raises(CheckpointError, match=r"missing \['decoder.bias'\]"):
        load(checkpoint_dir)
    _rewrite_tensors(checkpoint_dir, lambda t: t.update(extra=torch.zeros(1)))
    with pytest.raises(CheckpointError, match="unexpected"):
        load(checkpoint_dir)


def test_loading_never_unpickles(checkpoint_dir: Path) -> None:
    """A pickle where the weights should be is rejected, not executed."""
    torch.save({"x": torch.zeros(1)}, checkpoint_dir / "model.safetensors")
    _edit_config(checkpoint_dir, lambda c: c["weights"].pop("sha256"))
    with pytest.raises(CheckpointError):
        load(checkpoint_dir)


def test_half_width_storage_serves_float32(checkpoint_dir: Path) -> None:
    from models import convert

    half = checkpoint_dir.parent / "half"
    convert.main([str(checkpoint_dir), str(half), "--storage", "float16"])
    full, loaded = load(checkpoint_dir), load(half)
    assert json.loads((half / "config.json").read_text())["storage_dtype"] == "float16"
    assert (half / "model.safetensors").stat().st_size < 0.6 * (
        checkpoint_dir / "model.safetensors"
    ).stat().st_size
    for (name, a), (_, b) in zip(
        full.model.state_dict().items(), loaded.model.state_dict().items(), strict=True
    ):
        assert b.dtype == torch.float32, name
        assert torch.equal(a.half().float(), b), name
    assert loaded.model.decoder.weight is loaded.model.embedding.weight
