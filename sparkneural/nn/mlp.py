"""Multi-layer perceptrons with plain, residual, highway or densely connected blocks.

- plain:    y = act(W x)
- residual: y = act(W x) + P x          (P is the identity when widths agree,
                                          a linear projection otherwise)
- highway:  y = H(x) * T(x) + x * (1 - T(x)),  T(x) = sigmoid(W_T x + b_T),
            b_T starts in [-3, -1] so each block starts close to the identity
- dense:    layer l reads the concatenation [x_0, x_1, ..., x_{l-1}]
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from sparkneural.nn.registry import register

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}
BLOCK_TYPES = ("plain", "residual", "highway", "dense")


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"activation: expected one of {sorted(ACTIVATIONS)}, found {name!r}"
        ) from None


class PlainBlock(nn.Module):
    def __init__(self, width_in: int, width_out: int, act: str, dropout: float, batch_norm: bool):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(width_in, width_out)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(width_out))
        layers.append(activation(act))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.body = nn.Sequential(*layers)
        self.out_features = width_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResidualBlock(PlainBlock):
    def __init__(self, width_in: int, width_out: int, act: str, dropout: float, batch_norm: bool):
        super().__init__(width_in, width_out, act, dropout, batch_norm)
        self.shortcut = (
            nn.Identity() if width_in == width_out else nn.Linear(width_in, width_out, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class HighwayBlock(nn.Module):
    """y = H(x) * T(x) + x * (1 - T(x)); the carry path needs equal widths."""

    def __init__(self, width: int, act: str, dropout: float, batch_norm: bool, gate_bias: float = -2.0):
        super().__init__()
        self.transform = PlainBlock(width, width, act, dropout, batch_norm)
        self.gate = nn.Linear(width, width)
        nn.init.constant_(self.gate.bias, gate_bias)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.sigmoid(self.gate(x))
        return self.transform(x) * t + x * (1.0 - t)


class DenseBlock(nn.Module):
    """Each layer reads every earlier output; the block returns them all concatenated."""

    def __init__(self, width_in: int, growths: Sequence[int], act: str, dropout: float, batch_norm: bool):
        super().__init__()
        self.layers = nn.ModuleList()
        width = width_in
        for growth in growths:
            self.layers.append(PlainBlock(width, growth, act, dropout, batch_norm))
            width += growth
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, dim=-1)))
        return torch.cat(features, dim=-1)


@register("mlp")
class MLP(nn.Module):
    """A feed-forward network: flattened input -> hidden blocks -> ``outputSize`` logits.

    ``hiddenLayers`` lists the hidden widths. Highway blocks keep a constant
    width, so an input projection to ``hiddenLayers[0]`` comes first and every
    hidden width must be the same.

    >>> net = MLP(inputShape=[64], outputSize=10, hiddenLayers=[32, 32], blockType="residual")
    >>> net(torch.zeros(5, 64)).shape
    torch.Size([5, 10])
    """

    def __init__(
        self,
        inputShape: Sequence[int],
        outputSize: int,
        hiddenLayers: Sequence[int] = (100,),
        activation: str = "relu",
        dropout: float = 0.0,
        batchNorm: bool = False,
        blockType: str = "plain",
        highwayGateBias: float = -2.0,
    ):
        super().__init__()
        if blockType not in BLOCK_TYPES:
            raise ValueError(f"blockType: expected one of {list(BLOCK_TYPES)}, found {blockType!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(ACTIVATIONS)}, found {activation!r}")
        if not -3.0 <= highwayGateBias <= -1.0:
            raise ValueError(f"highwayGateBias: expected a value in [-3, -1], found {highwayGateBias}")
        hidden = [int(w) for w in hiddenLayers]
        if any(w <= 0 for w in hidden):
            raise ValueError(f"hiddenLayers: expected positive widths, found {hidden}")
        width = math.prod(int(d) for d in inputShape)
        blocks: list[nn.Module] = [nn.Flatten()]
        if blockType == "dense":
            block = DenseBlock(width, hidden, activation, dropout, batchNorm)
            blocks.append(block)
            width = block.out_features
        elif blockType == "highway":
            if hidden and len(set(hidden)) != 1:
                raise ValueError(f"hiddenLayers: highway blocks need equal widths, found {hidden}")
            if hidden:
                blocks.append(nn.Linear(width, hidden[0]))
                width = hidden[0]
            blocks.extend(
                HighwayBlock(width, activation, dropout, batchNorm, highwayGateBias) for _ in hidden
            )
        else:
            block_class = ResidualBlock if blockType == "residual" else PlainBlock
            for w in hidden:
                blocks.append(block_class(width, w, activation, dropout, batchNorm))
                width = w
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(width, int(outputSize))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
