"""Checkpoints: a directory with ``model.safetensors`` and ``config.json``.

Loading never unpickles: weights come from safetensors, everything else from JSON, and
every tensor's name, shape and dtype is checked against the config before use. The
config also records the weights file's sha256, so flipped bytes are caught.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from models.config import ModelConfig
from models.network import LanguageModel
from models.normalizer import Normalizer
from models.vocabulary import Vocabulary

FORMAT = "lstm-serve-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
# Weights may be stored at half width (half the download, < 30 MB for 2 x 650) and are
# served in float32; float32 storage is exact.
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt or does not match its config."""


@dataclass
class Checkpoint:
    """A model with everything needed to serve it."""

    model: LanguageModel
    vocabulary: Vocabulary
    normalizer: Normalizer
    model_id: str
    card: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""


def expected_tensors(
    config: ModelConfig, storage_dtype: str = "float32"
) -> dict[str, tuple[list[int], str]]:
    """Name -> (shape, dtype) of every stored tensor (the tied decoder weight is not stored)."""
    model = LanguageModel(config)
    return {
        name: (list(tensor.shape), storage_dtype) for name, tensor in _stored_state(model).items()
    }


def _stored_state(model: LanguageModel) -> dict[str, torch.Tensor]:
    state = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    if model.config.tied:
        state.pop("decoder.weight")
    return state


def save(checkpoint: Checkpoint, directory: Path, storage_dtype: str = "float32") -> None:
    """Write weights, then the config that vouches for them (with their sha256)."""
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage dtype {storage_dtype!r}: expected one of {list(STORAGE_DTYPES)}")
    directory.mkdir(parents=True, exist_ok=True)
    weights_path = directory / WEIGHTS_FILE
    tmp = weights_path.with_suffix(".tmp")
    stored = _stored_state(checkpoint.model)
    dtype = STORAGE_DTYPES[storage_dtype]
    save_file({k: v.cpu().to(dtype) for k, v in stored.items()}, str(tmp))
    tmp.replace(weights_path)
    digest = _sha256(weights_path)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_id": checkpoint.model_id,
        "architecture": checkpoint.model.config.to_dict(),
        "parameter_count": checkpoint.model.parameter_count(),
        "vocabulary": checkpoint.vocabulary.words,
        "normalizer": checkpoint.normalizer.to_config(),
        "weights": {"file": WEIGHTS_FILE, "sha256": digest},
        "storage_dtype": storage_dtype,
        "tensors": {
            name: {"shape": shape, "dtype": dtype}
            for name, (shape, dtype) in expected_tensors(
                checkpoint.model.config, storage_dtype
            ).items()
        },
        "card": checkpoint.card,
    }
    config_tmp = directory / (CONFIG_FILE + ".tmp")
    config_tmp.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    config_tmp.replace(directory / CONFIG_FILE)
    checkpoint.weights_sha256 = digest


def load(directory: Path | str, device: torch.device | str = "cpu") -> Checkpoint:
    """Load and verify a checkpoint; raise ``CheckpointError`` with a clear reason."""
    directory = Path(directory)
    config = read_config(directory)
    try:
        model_config = ModelConfig.from_dict(config["architecture"])
        vocabulary = Vocabulary(config["vocabulary"])
        normalizer = Normalizer.from_config(config["normalizer"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{directory / CONFIG_FILE}: invalid config: {error}") from error
    storage_dtype = config.get("storage_dtype", "float32")
    if storage_dtype not in STORAGE_DTYPES:
        raise CheckpointError(
            f"{directory / CONFIG_FILE}: unknown storage_dtype {storage_dtype!r} "
            f"(expected one of {list(STORAGE_DTYPES)})"
        )
    if len(vocabulary) != model_config.vocab_size:
        raise CheckpointError(
            f"vocabulary has {len(vocabulary)} words but vocab_size is {model_config.vocab_size}"
        )
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"missing weights file {weights_path}")
    digest = _sha256(weights_path)
    recorded = config.get("weights", {}).get("sha256")
    if recorded and recorded != digest:
        raise CheckpointError(f"{weights_path} is corrupt: sha256 {digest} != recorded {recorded}")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights_path} is not a valid safetensors file: {error}") from error
    _check_tensors(tensors, expected_tensors(model_config, storage_dtype))
    model = LanguageModel(model_config)
    tensors = {name: tensor.float() for name, tensor in tensors.items()}
    model.load_state_dict(tensors, strict=not model_config.tied)
    if model_config.tied:
        model.decoder.weight = model.embedding.weight
    model.to(device).eval()
    return Checkpoint(
        model=model,
        vocabulary=vocabulary,
        normalizer=normalizer,
        model_id=str(config.get("model_id", directory.name)),
        card=dict(config.get("card", {})),
        weights_sha256=digest,
    )


def read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    if not path.is_file():
        raise CheckpointError(f"missing {path}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an {FORMAT} config")
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unknown format_version {version!r} (this code reads {FORMAT_VERSION})"
        )
    return config


def update_card(directory: Path, **entries: Any) -> None:
    """Merge ``entries`` into the config's card (e.g. a measured test perplexity)."""
    config = read_config(directory)
    config.setdefault("card", {}).update(entries)
    tmp = directory / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    tmp.replace(directory / CONFIG_FILE)


def _check_tensors(
    tensors: dict[str, torch.Tensor], expected: dict[str, tuple[list[int], str]]
) -> None:
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise CheckpointError(f"tensor names differ: missing {missing}, unexpected {extra}")
    for name, (shape, dtype) in expected.items():
        tensor = tensors[name]
        if list(tensor.shape) != shape:
            raise CheckpointError(f"tensor {name}: shape {list(tensor.shape)}, expected {shape}")
        actual = str(tensor.dtype).removeprefix("torch.")
        if actual != dtype:
            raise CheckpointError(f"tensor {name}: dtype {actual}, expected {dtype}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
