"""Feature maps at chosen strides, for the models that read more than one pooled vector (``crnn``, ``detector``).

``backbone="small"`` is a small CNN trained from scratch (conv-BN-ReLU pairs, each block pooling by its own
``(height, width)`` factors, so the CTC reader can keep width resolution); any other name is a timm model
(:func:`.models.load_backbone`: random init or a local checkpoint, never a download), read through timm's
``forward_intermediates`` at the levels asked for and pruned of the layers after the deepest one.
"""

from __future__ import annotations

import torch
from pydantic import AfterValidator
from torch import nn

from common.errors import UserError


def one_of(*allowed: int) -> AfterValidator:
    """A config field's check that an int is one of ``allowed`` (``Literal[4, 8]`` would refuse ``--set x=8``,
    a string)."""

    def check(value: int) -> int:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(map(str, allowed))}")
        return value

    return AfterValidator(check)


class FeatureLevels(nn.Module):
    """``forward(x)`` -> a list of feature maps; ``channels`` and ``strides`` (width reduction) per map."""

    channels: list[int]
    strides: list[int]


def conv_block(c_in: int, c_out: int, pool: tuple[int, int]) -> nn.Sequential:
    layers = [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if pool != (1, 1):
        layers.append(nn.MaxPool2d(pool, pool))
    return nn.Sequential(*layers)


class SmallConvNet(FeatureLevels):
    """Blocks of ``width, 2 width, 4 width, 4 width, ...`` channels, block i pooling by ``pools[i]``; returns the
    outputs of the blocks in ``take``."""

    def __init__(self, width: int, pools: list[tuple[int, int]], take: list[int]):
        super().__init__()
        chans = [width * min(2**i, 4) for i in range(len(pools))]
        self.blocks = nn.ModuleList(
            conv_block(c_in, c_out, pool)
            for c_in, c_out, pool in zip([3, *chans[:-1]], chans, pools, strict=True)
        )
        self.take = list(take)
        self.channels = [chans[i] for i in self.take]
        widths = [1]
        for _, pw in pools:
            widths.append(widths[-1] * pw)
        self.strides = [widths[i + 1] for i in self.take]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, block in enumerate(self.blocks[: max(self.take) + 1]):
            x = block(x)
            if i in self.take:
                out.append(x)
        return out


class TimmLevels(FeatureLevels):
    """A timm model's intermediate feature maps at the ``feature_info`` indices ``take``."""

    def __init__(self, name: str, pretrained_path: str | None, pick):
        """``pick(reductions) -> indices`` chooses the levels from the model's list of reductions."""
        super().__init__()
        from competitions.street_char_rec.models import load_backbone

        model = load_backbone(name, pretrained_path)
        if not hasattr(model, "forward_intermediates"):
            raise UserError(f"backbone {name!r} has no forward_intermediates in timm; choose another")
        info = model.feature_info
        reductions = [int(f["reduction"]) for f in info]
        self.take = sorted(pick(reductions))
        model.prune_intermediate_layers(self.take, prune_head=True)
        self.model = model
        self.channels = [int(info[i]["num_chs"]) for i in self.take]
        self.strides = [reductions[i] for i in self.take]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model.forward_intermediates(
            x, indices=self.take, intermediates_only=True, stop_early=True
        )
