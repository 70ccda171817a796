"""Autoencoders: x (batch, *inputShape) -> code (batch, bottleneck) -> reconstruction (batch, *inputShape).

kinds (D = number of input values, H = hiddenLayers, a = outputActivation):
- dense:        D -> bottleneck (ReLU code) -> D -> a           e.g. 784 -> 32 -> 784
- deep:         D -> H... -> bottleneck (ReLU) -> reversed(H)... -> D -> a
- conv:         [channels, h, w]: [conv 3x3 -> ReLU -> max-pool 2] per filter
                -> dense bottleneck (ReLU) -> dense -> [transposed conv 2x2,
                stride 2] per filter -> crop to exactly h x w -> a
- denoising:    as deep (H may be empty); in training mode the input gets
                x + noiseStd * N(0, I) before encoding. The loop's target is
                the clean input, so the net learns to remove the noise.
- sparse:       as deep; extra_loss = sparsityWeight * mean |code|
- variational:  as deep, with mu and log sigma^2 heads instead of the code layer;
                z = mu + sigma ⊙ eps, eps ~ N(0, I) in training (mu in eval);
                extra_loss = klWeight * mean over the batch of
                KL(N(mu, sigma^2) || N(0, I)) = -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)

outputActivation "sigmoid" keeps reconstructions in [0, 1] (for data in
[0, 1] and binary cross-entropy); "linear" leaves them unbounded (for MSE).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from sparkneural.nn.registry import register

KINDS = ("dense", "deep", "conv", "denoising", "variational", "sparse")
OUTPUT_ACTIVATIONS = ("sigmoid", "linear")
DEFAULT_DEEP_LAYERS = (128, 64)


def _dense_stack(widths: Sequence[int]) -> nn.Sequential:
    """Linear -> ReLU between each pair of consecutive widths."""
    layers: list[nn.Module] = []
    for width_in, width_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    return nn.Sequential(*layers)


def _positive_ints(name: str, values: Sequence[int], allow_empty: bool = False) -> list[int]:
    found = list(values)
    if (not found and not allow_empty) or any(
        not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in found
    ):
        what = "a list of positive integers" if allow_empty else "a non-empty list of positive integers"
        raise ValueError(f"{name}: expected {what}, found {found}")
    return found


class ConvDecoder(nn.Module):
    """code -> dense -> (filters[-1], h', w') -> transposed convs, each doubling h and w -> crop."""

    def __init__(
        self, bottleneck: int, filters: Sequence[int], channels: int, grid: tuple[int, int], out: tuple[int, int]
    ):
        super().__init__()
        self.dense = nn.Sequential(nn.Linear(bottleneck, filters[-1] * grid[0] * grid[1]), nn.ReLU())
        self.grid, self.out = (filters[-1], *grid), out
        widths = list(reversed(filters)) + [channels]
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(width_in, width_out, kernel_size=2, stride=2), nn.ReLU()]
        self.upsample = nn.Sequential(*layers[:-1])  # no ReLU on the output layer

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.upsample(self.dense(z).reshape(len(z), *self.grid))
        # ceil-mode pooling rounds odd sizes up, so upsampling can overshoot by a few pixels
        return x[..., : self.out[0], : self.out[1]]


@register("autoencoder")
class Autoencoder(nn.Module):
    """An autoencoder whose forward returns the reconstruction, shaped like the input.

    ``encode(x)`` gives the code (the mean for "variational"), ``decode(z)``
    the reconstruction, ``extra_loss()`` the KL or sparsity penalty of the
    last forward, and for "variational" ``sample(n)`` decodes draws from
    N(0, I). ``outputSize`` is accepted for the common constructor signature
    and ignored: the output always has the input's shape. ``klWeight=None``
    means 1 / D, which makes task loss + extra_loss the per-example negative
    ELBO divided by D when the task loss is a per-value mean.

    >>> ae = Autoencoder(inputShape=[64], outputSize=64, kind="deep", bottleneck=8, hiddenLayers=[32])
    >>> ae(torch.rand(5, 64)).shape, ae.encode(torch.rand(5, 64)).shape
    (torch.Size([5, 64]), torch.Size([5, 8]))
    >>> vae = Autoencoder(inputShape=[1, 28, 28], outputSize=784, kind="variational", bottleneck=16)
    >>> vae.sample(3).shape
    torch.Size([3, 1, 28, 28])
    """

    def __init__(
        self,
        inputShape: Sequence[int],
        outputSize: int | None = None,
        kind: str = "dense",
        bottleneck: int = 32,
        hiddenLayers: Sequence[int] | None = None,
        filters: Sequence[int] = (16, 8),
        outputActivation: str = "sigmoid",
        noiseStd: float = 0.1,
        klWeight: float | None = None,
        sparsityWeight: float = 1e-3,
    ):
        super().__init__()
        shape = _positive_ints("inputShape", [int(d) for d in inputShape])
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {list(KINDS)}, found {kind!r}")
        if outputActivation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"outputActivation: expected one of {list(OUTPUT_ACTIVATIONS)}, found {outputActivation!r}"
            )
        if not isinstance(bottleneck, int) or isinstance(bottleneck, bool) or bottleneck <= 0:
            raise ValueError(f"bottleneck: expected a positive integer, found {bottleneck!r}")
        for name, value in (("noiseStd", noiseStd), ("sparsityWeight", sparsityWeight), ("klWeight", klWeight)):
            if value is not None and not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"{name}: expected a non-negative number, found {value!r}")
        if kind in ("dense", "conv") and hiddenLayers:
            raise ValueError(
                f"hiddenLayers: kind {kind!r} has no hidden dense layers (use kind 'deep'), found {list(hiddenLayers)}"
            )
        self.inputShape, self.kind, self.bottleneck = shape, kind, bottleneck
        self.outputActivation = outputActivation
        self.noiseStd, self.sparsityWeight = float(noiseStd), float(sparsityWeight)
        size = math.prod(shape)
        self.klWeight = 1.0 / size if klWeight is None else float(klWeight)

        if kind == "conv":
            if len(shape) != 3:
                raise ValueError(f"inputShape: kind 'conv' expects [channels, h, w], found {shape}")
            filters = _positive_ints("filters", filters)
            channels, h, w = shape
            blocks: list[nn.Module] = []
            for width_in, width_out in zip([channels] + filters[:-1], filters):
                blocks += [nn.Conv2d(width_in, width_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
                h, w = math.ceil(h / 2), math.ceil(w / 2)
            self.encoder = nn.Sequential(*blocks, nn.Flatten())
            features = filters[-1] * h * w
            decoder: nn.Module = ConvDecoder(bottleneck, filters, channels, (h, w), (shape[1], shape[2]))
        else:
            if kind == "deep":
                hidden = _positive_ints("hiddenLayers", DEFAULT_DEEP_LAYERS if hiddenLayers is None else hiddenLayers)
            else:
                hidden = _positive_ints("hiddenLayers", hiddenLayers or [], allow_empty=True)
            self.encoder = nn.Sequential(nn.Flatten(), *_dense_stack([size, *hidden]))
            features = hidden[-1] if hidden else size
            decoder = nn.Sequential(
                *_dense_stack([bottleneck, *reversed(hidden)]), nn.Linear(hidden[0] if hidden else bottleneck, size)
            )

        if kind == "variational":
            self.mu = nn.Linear(features, bottleneck)
            self.logvar = nn.Linear(features, bottleneck)
        else:
            self.code = nn.Sequential(nn.Linear(features, bottleneck), nn.ReLU())
        self.decoder = decoder
        # values of the last forward that extra_loss reads
        self._last: dict[str, torch.Tensor] = {}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code (batch, bottleneck); the posterior mean for "variational". Never adds noise."""
        h = self.encoder(x)
        return self.mu(h) if self.kind == "variational" else self.code(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstruction (batch, *inputShape) of codes z (batch, bottleneck)."""
        out = self.decoder(z).reshape(len(z), *self.inputShape)
        return torch.sigmoid(out) if self.outputActivation == "sigmoid" else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "denoising" and self.training and self.noiseStd > 0:
            x = x + self.noiseStd * torch.randn_like(x)
        h = self.encoder(x)
        if self.kind == "variational":
            mu, logvar = self.mu(h), self.logvar(h)
            self._last = {"mu": mu, "logvar": logvar}
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu
        else:
            z = self.code(h)
            self._last = {"code": z}
        return self.decode(z)

    def extra_loss(self) -> torch.Tensor:
        """The penalty of the last forward: KL term ("variational"), L1 on the code ("sparse"), else 0."""
        if self.kind not in ("variational", "sparse"):
            return torch.zeros((), device=self._device())
        if not self._last:
            raise RuntimeError("extra_loss: call forward first; it reads the values of the last forward")
        if self.kind == "sparse":
            return self.sparsityWeight * self._last["code"].abs().mean()
        mu, logvar = self._last["mu"], self._last["logvar"]
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
        return self.klWeight * kl.mean()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode ``n`` draws z ~ N(0, I): new data (n, *inputShape) from a "variational" model."""
        if self.kind != "variational":
            raise ValueError(f"sample: expected kind 'variational' (the generative one), found {self.kind!r}")
        device = generator.device if generator is not None else self._device()
        z = torch.randn(n, self.bottleneck, generator=generator, device=device)
        return self.decode(z.to(self._device()))

    def _device(self) -> torch.device:
        return next(self.parameters()).device
