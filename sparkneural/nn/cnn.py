"""Convolutional networks: LeNet-5 style for images, a Conv1d stack for signals.

lenet, input (batch, channels, h, w):
    [conv k x k (filters[i]) -> ReLU -> max-pool p] for each i
    -> flatten -> dense denseUnits -> ReLU -> dropout -> dense outputSize
    with the defaults (filters [20, 50], k 5, p 2, padding "same"):
    [1, 28, 28] -> 20 x 14 x 14 -> 50 x 7 x 7 -> 500 -> outputSize
    [1,  8,  8] -> 20 x  4 x  4 -> 50 x 2 x 2 -> 500 -> outputSize
    padding "valid" gives the original LeNet sizes: 28 -> 24 -> 12 -> 8 -> 4.

conv1d, input (batch, channels, length):
    [conv1d k (filters[i], stride, dilation d_i) -> ReLU] for each i
    -> global pooling over time (average by default) -> dropout
    -> [dense denseUnits -> ReLU] -> dense outputSize
    Output length per layer: "same" ceil(L / s), "causal" ceil(L / s),
    "valid" floor((L - d(k - 1) - 1) / s) + 1. A "causal" layer pads
    d(k - 1) zeros on the left only, so its output at t reads inputs <= t.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from sparkneural.nn.registry import register

PADDINGS_2D = ("same", "valid")
PADDINGS_1D = ("same", "valid", "causal")
POOLINGS_1D = ("average", "max", "flatten")


def _positive_ints(name: str, values: Sequence[int]) -> list[int]:
    found = list(values)
    if not found or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in found):
        raise ValueError(f"{name}: expected a non-empty list of positive integers, found {found}")
    return found


def _positive_int(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name}: expected a positive integer, found {value!r}")
    return value


def _check_dropout(value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"dropout: expected a probability in [0, 1), found {value}")
    return float(value)


def _check_input_shape(inputShape: Sequence[int], rank: int, meaning: str) -> list[int]:
    shape = [int(d) for d in inputShape]
    if len(shape) != rank or any(d <= 0 for d in shape):
        raise ValueError(f"inputShape: expected {meaning} ({rank} positive integers), found {list(inputShape)}")
    return shape


@register("lenet")
class LeNet(nn.Module):
    """LeNet-5 style classifier for images of shape ``[channels, h, w]``.

    Each entry of ``filters`` adds a conv -> ReLU -> max-pool block; the
    default two blocks are the 20 and 50 filter layers of LeNet-5.

    >>> net = LeNet(inputShape=[1, 8, 8], outputSize=10)
    >>> net(torch.zeros(3, 1, 8, 8)).shape
    torch.Size([3, 10])
    """

    def __init__(
        self,
        inputShape: Sequence[int],
        outputSize: int,
        filters: Sequence[int] = (20, 50),
        kernelSize: int = 5,
        poolSize: int = 2,
        padding: str = "same",
        denseUnits: int = 500,
        dropout: float = 0.0,
    ):
        super().__init__()
        channels, h, w = _check_input_shape(inputShape, 3, "[channels, h, w]")
        filters = _positive_ints("filters", filters)
        kernel = _positive_int("kernelSize", kernelSize)
        pool = _positive_int("poolSize", poolSize)
        if padding not in PADDINGS_2D:
            raise ValueError(f"padding: expected one of {list(PADDINGS_2D)}, found {padding!r}")
        units = _positive_int("denseUnits", denseUnits)
        dropout = _check_dropout(dropout)

        blocks: list[nn.Module] = []
        width_in = channels
        for i, width in enumerate(filters):
            if padding == "valid":
                h, w = h - kernel + 1, w - kernel + 1
            h, w = h // pool, w // pool
            if h < 1 or w < 1:
                raise ValueError(
                    f"inputShape: {list(inputShape)} is too small for {i + 1} conv/pool blocks "
                    f"(kernelSize {kernel}, poolSize {pool}, padding {padding!r}); "
                    "use padding 'same', fewer filters or a smaller poolSize"
                )
            blocks += [nn.Conv2d(width_in, width, kernel, padding=padding), nn.ReLU(), nn.MaxPool2d(pool)]
            width_in = width
        self.features = nn.Sequential(*blocks, nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(width_in * h * w, units),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(units, int(outputSize)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class PaddedConv1d(nn.Module):
    """Conv1d with explicit zero padding, so "same" and "causal" also work with stride > 1."""

    def __init__(self, width_in: int, width_out: int, kernel: int, stride: int, dilation: int, padding: str):
        super().__init__()
        total = dilation * (kernel - 1)
        if padding == "causal":
            self.pad = (total, 0)
        elif padding == "same":
            self.pad = (total // 2, total - total // 2)
        else:
            self.pad = (0, 0)
        self.conv = nn.Conv1d(width_in, width_out, kernel, stride=stride, dilation=dilation)

    def output_length(self, length: int) -> int:
        span = self.conv.dilation[0] * (self.conv.kernel_size[0] - 1)
        return (length + sum(self.pad) - span - 1) // self.conv.stride[0] + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))


@register("conv1d")
class Conv1dNet(nn.Module):
    """A stack of 1-D convolutions over ``[channels, length]`` signals, then a dense head.

    ``pooling`` reduces the time axis before the head: "average" (default,
    global average pooling: the head sees the same width for any length and
    each filter acts as a detector whose response is averaged over time),
    "max" (global max pooling) or "flatten" (keeps the position of every
    feature; the head then depends on the input length). ``dilation`` is one
    integer or one per layer, e.g. ``[1, 2, 4, 8]`` for a WaveNet-like stack.

    >>> net = Conv1dNet(inputShape=[2, 100], outputSize=3, filters=[8, 8], padding="causal", dilation=[1, 2])
    >>> net(torch.zeros(4, 2, 100)).shape
    torch.Size([4, 3])
    """

    def __init__(
        self,
        inputShape: Sequence[int],
        outputSize: int,
        filters: Sequence[int] = (32, 32),
        kernelSize: int = 3,
        stride: int = 1,
        padding: str = "same",
        dilation: int | Sequence[int] = 1,
        pooling: str = "average",
        denseUnits: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__()
        channels, length = _check_input_shape(inputShape, 2, "[channels, length]")
        filters = _positive_ints("filters", filters)
        kernel = _positive_int("kernelSize", kernelSize)
        stride = _positive_int("stride", stride)
        if padding not in PADDINGS_1D:
            raise ValueError(f"padding: expected one of {list(PADDINGS_1D)}, found {padding!r}")
        dilations = [dilation] * len(filters) if isinstance(dilation, int) else list(dilation)
        if len(dilations) != len(filters):
            raise ValueError(
                f"dilation: expected one integer or one per layer ({len(filters)}), found {dilation}"
            )
        dilations = _positive_ints("dilation", dilations)
        if pooling not in POOLINGS_1D:
            raise ValueError(f"pooling: expected one of {list(POOLINGS_1D)}, found {pooling!r}")
        if not isinstance(denseUnits, int) or isinstance(denseUnits, bool) or denseUnits < 0:
            raise ValueError(f"denseUnits: expected a non-negative integer (0: no hidden layer), found {denseUnits!r}")
        dropout = _check_dropout(dropout)

        layers: list[nn.Module] = []
        width_in = channels
        for width, d in zip(filters, dilations):
            conv = PaddedConv1d(width_in, width, kernel, stride, d, padding)
            length = conv.output_length(length)
            if length < 1:
                raise ValueError(
                    f"inputShape: length {inputShape[-1]} is too short for {len(layers) // 2 + 1} "
                    f"'valid' layers with kernelSize {kernel}, stride {stride} and dilation {dilations}"
                )
            layers += [conv, nn.ReLU()]
            width_in = width
        self.features = nn.Sequential(*layers)
        self.pooling = pooling
        self.outputLength = length  # time steps left after the conv stack
        width = width_in * length if pooling == "flatten" else width_in
        head: list[nn.Module] = [nn.Dropout(dropout)]
        if denseUnits:
            head += [nn.Linear(width, denseUnits), nn.ReLU()]
            width = denseUnits
        head.append(nn.Linear(width, int(outputSize)))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        if self.pooling == "average":
            h = h.mean(dim=-1)
        elif self.pooling == "max":
            h = h.amax(dim=-1)
        else:
            h = h.flatten(1)
        return self.head(h)


def receptive_field(kernelSize: int, dilations: Sequence[int]) -> int:
    """Input steps one output step of a stride-1 stack reads: 1 + (k - 1) * sum(d)."""
    return 1 + (kernelSize - 1) * sum(dilations)
