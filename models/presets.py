"""Named training recipes: Zaremba et al. 2014 (small / medium / large), tied variants, default.

``lr_decay`` / ``decay_after_epoch`` is Zaremba's schedule (constant, then divided by
``lr_decay`` every epoch); ``plateau`` divides by ``lr_decay`` when validation stalls.

Our loss is the mean over tokens; Zaremba et al.'s code sums it over the BPTT steps and
averages over the batch. SGD on that sum with rate ``r`` and gradient clip ``k`` is SGD on
our mean with rate ``r * bptt`` and clip ``k / bptt``, so the Zaremba recipes below carry
those scaled values (their lr 1.0 and clip 5 on 20 steps are lr 20 and clip 0.25 here).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Recipe:
    embedding_size: int
    hidden_size: int
    num_layers: int = 2
    tied: bool = False
    cell: str = "lstm"
    dropout_input: float = 0.0
    dropout_hidden: float = 0.0
    dropout_output: float = 0.0
    weight_drop: float = 0.0
    epochs: int = 13
    batch_size: int = 20
    bptt: int = 35
    lr: float = 1.0
    schedule: str = "zaremba"
    lr_decay: float = 2.0
    decay_after_epoch: int = 4
    clip: float = 5.0
    init_range: float = 0.1
    seed: int = 1111

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _zaremba(bptt: int, lr: float, clip: float) -> dict[str, Any]:
    """Their per-sequence-sum rate and clip, restated for a per-token-mean loss."""
    return {"bptt": bptt, "lr": lr * bptt, "clip": clip / bptt}


_SMALL = Recipe(200, 200, epochs=13, lr_decay=2.0, decay_after_epoch=4, **_zaremba(20, 1.0, 5.0))
_MEDIUM = Recipe(
    650,
    650,
    dropout_input=0.5,
    dropout_hidden=0.5,
    dropout_output=0.5,
    epochs=39,
    lr_decay=1.2,
    decay_after_epoch=6,
    init_range=0.05,
    **_zaremba(35, 1.0, 5.0),
)
_LARGE = Recipe(
    1500,
    1500,
    dropout_input=0.65,
    dropout_hidden=0.65,
    dropout_output=0.65,
    epochs=55,
    lr_decay=1.15,
    decay_after_epoch=14,
    init_range=0.04,
    **_zaremba(35, 1.0, 10.0),
)
_PLATEAU: dict[str, Any] = {
    "schedule": "plateau",
    "lr": 20.0,
    "lr_decay": 4.0,
    "clip": 0.25,
    "epochs": 40,
}

RECIPES: dict[str, Recipe] = {
    "small": _SMALL,
    "medium": _MEDIUM,
    "large": _LARGE,
    "small-tied": replace(_SMALL, tied=True),
    "medium-tied": replace(_MEDIUM, tied=True, **_PLATEAU),
    "large-tied": replace(_LARGE, tied=True, **_PLATEAU),
    # The GPU model: 2 x 650, tied, variational dropout + DropConnect (then --average).
    "medium-wd": replace(
        _MEDIUM,
        tied=True,
        dropout_input=0.5,
        dropout_hidden=0.3,
        dropout_output=0.5,
        weight_drop=0.3,
        init_range=0.1,
        **{**_PLATEAU, "epochs": 80},
    ),
    # The bundled CPU default: 2 x 200, tied, variational dropout + DropConnect.
    "default": Recipe(
        200,
        200,
        tied=True,
        dropout_input=0.3,
        dropout_hidden=0.2,
        dropout_output=0.3,
        weight_drop=0.2,
        **_PLATEAU,
    ),
    # A seconds-long recipe for tests and smoke runs.
    "tiny": Recipe(
        16,
        16,
        tied=True,
        epochs=2,
        batch_size=4,
        bptt=8,
        lr=20.0,
        schedule="plateau",
        lr_decay=4.0,
        clip=0.25,
    ),
}
