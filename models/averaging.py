"""Polyak averaging of the weights over training steps (the "A" of NT-ASGD, Merity et
al. 2017): evaluating the running average instead of the last iterate smooths out SGD's
noise late in training and lowers validation perplexity."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module) -> None:
        self.parameters = list(model.parameters())
        self.average = [p.detach().clone() for p in self.parameters]
        self.count = 1

    @classmethod
    @torch.no_grad()
    def continuing(cls, model: nn.Module, mean: nn.Module, count: int) -> WeightAverage:
        """Carry on an average of ``count`` iterates whose mean is ``mean``'s weights, so a
        resumed run extends the average instead of restarting it from one iterate."""
        average = cls(model)
        for target, source in zip(average.average, mean.parameters(), strict=True):
            target.copy_(source)
        average.count = count
        return average

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the running mean (call after each step)."""
        self.count += 1
        for average, parameter in zip(self.average, self.parameters, strict=True):
            average.add_(parameter - average, alpha=1.0 / self.count)

    @contextlib.contextmanager
    @torch.no_grad()
    def swapped_in(self) -> Iterator[None]:
        """Put the averaged weights in the model for the block, then the raw ones back."""
        raw = [p.detach().clone() for p in self.parameters]
        for parameter, average in zip(self.parameters, self.average, strict=True):
            parameter.copy_(average)
        try:
            yield
        finally:
            for parameter, saved in zip(self.parameters, raw, strict=True):
                parameter.copy_(saved)
