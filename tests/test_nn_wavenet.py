"""WaveNet: causal convolutions, receptive field, gated layers, conditioning, fast generation.

Expectations are independent of the module: a loop over taps for the causal
convolution, the closed form RF = 1 + (k - 1) * (1 + blocks * (2^layers - 1))
against the support of an input gradient, the gated unit written out with
F.conv1d, and the naive generator (the network on the last RF classes) for
the ring-buffer generator.
"""


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sparkneural.nn import build, names
from sparkneural.nn.wavenet import MODES, CausalConv1d, GatedResidualLayer, WaveNet, generation_speed


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_wavenet(**kwargs) -> WaveNet:
    arguments = {
        "inputShape": [32],
        "outputSize": 256,
        "layersPerBlock": 4,
        "blocks": 2,
        "residualChannels": 8,
        "dilationChannels": 8,
        "skipChannels": 16,
        **kwargs,
    }
    torch.manual_seed(0)
    return WaveNet(**arguments).double()


def test_wavenet_is_registered():
    assert "wavenet" in names()
    assert isinstance(build("wavenet", inputShape=[16], outputSize=256, layersPerBlock=2, blocks=1), WaveNet)


@pytest.mark.parametrize("kernel, dilation", [(1, 1), (2, 1), (2, 4), (3, 2), (4, 3)])
def test_causal_conv_equals_a_loop_over_taps_with_the_last_tap_on_the_current_sample(kernel, dilation):
    torch.manual_seed(kernel * 10 + dilation)
    conv = CausalConv1d(2, 3, kernel, dilation).double()
    x = torch.randn(4, 2, 20, dtype=torch.float64)
    expected = torch.zeros(4, 3, 20, dtype=torch.float64) + conv.bias[:, None]
    for t in range(20):
        for j in range(kernel):
            s = t - (kernel - 1 - j) * dilation
            if s >= 0:
                expected[:, :, t] += x[:, :, s] @ conv.weight[:, :, j].T
    assert conv.weight.shape == torch.nn.Conv1d(2, 3, kernel).weight.shape
    torch.testing.assert_close(conv(x), expected)


def test_causal_conv_matches_nn_conv1d_on_a_left_padded_input():
    torch.manual_seed(1)
    conv = CausalConv1d(3, 5, 3, dilation=2)
    reference = torch.nn.Conv1d(3, 5, 3, dilation=2)
    reference.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 17)
    torch.testing.assert_close(conv(x), reference(F.pad(x, (4, 0))))


@pytest.mark.parametrize("length", [1, 5, 40])
def test_causal_conv_keeps_the_length_and_never_looks_ahead(length):
    torch.manual_seed(2)
    conv = CausalConv1d(2, 2, 3, dilation=4)
    x = torch.randn(1, 2, length)
    y = conv(x)
    assert y.shape == (1, 2, length)
    for t in range(length - 1):
        changed = x.clone()
        changed[:, :, t + 1 :] = torch.randn(1, 2, length - t - 1)
        torch.testing.assert_close(conv(changed)[:, :, : t + 1], y[:, :, : t + 1])


@pytest.mark.parametrize(
    "shape, conditions, x",
    [
        ([32], 0, torch.randint(0, 256, (3, 32)).float()),
        ([32, 1], 0, torch.randint(0, 256, (3, 32, 1)).float()),
        ([33], 4, torch.cat([torch.randint(0, 256, (3, 32)), torch.tensor([[0], [3], [1]])], 1).float()),
    ],
)
def test_wavenet_maps_a_window_of_classes_to_logits_per_step(shape, conditions, x):
    net = small_wavenet(inputShape=shape, numConditions=conditions)
    assert net.timesteps == 32
    assert net(x.double()).shape == (3, 32, 256)


def test_wavenet_output_at_t_ignores_inputs_after_t():
    net = small_wavenet()
    x = torch.randint(0, 256, (2, 32)).double()
    y = net(x)
    for t in (0, 7, 20, 30):
        changed = x.clone()
        changed[:, t + 1 :] = torch.randint(0, 256, (2, 31 - t)).double()
        torch.testing.assert_close(net(changed)[:, : t + 1], y[:, : t + 1])
        assert not torch.allclose(net(changed)[:, t + 1 :], y[:, t + 1 :])


@pytest.mark.parametrize("kernel, layers, blocks", [(2, 4, 2), (3, 3, 2), (2, 6, 1), (4, 2, 3)])
def test_receptive_field_formula_matches_the_gradient_support_of_the_last_output(kernel, layers, blocks):
    net = small_wavenet(kernelSize=kernel, layersPerBlock=layers, blocks=blocks)
    expected = 1 + (kernel - 1) * (1 + blocks * (2**layers - 1))
    assert net.receptive_field == expected
    length = expected + 20
    one_hot = F.one_hot(torch.randint(0, 256, (1, length)), 256).transpose(1, 2).double().requires_grad_()
    net.forward_one_hot(one_hot)[0, -1].sum().backward()
    support = (one_hot.grad[0].abs().sum(0) > 0).nonzero().flatten().tolist()
    assert support == list(range(length - expected, length))


def test_gated_layer_is_tanh_times_sigmoid_then_residual_and_skip_1x1():
    torch.manual_seed(3)
    layer = GatedResidualLayer(residual=4, dilation_channels=5, skip=6, kernel=2, dilation=4, condition=3).double()
    h = torch.randn(2, 4, 15, dtype=torch.float64)
    g = torch.randn(2, 3, dtype=torch.float64)
    padded = F.pad(h, (4, 0))
    v = g @ layer.condition.weight.T  # (batch, 2 * 5): filter then gate
    f = F.conv1d(padded, layer.filter_conv.weight, layer.filter_conv.bias, dilation=4) + v[:, :5, None]
    s = F.conv1d(padded, layer.gate_conv.weight, layer.gate_conv.bias, dilation=4) + v[:, 5:, None]
    z = torch.tanh(f) * torch.sigmoid(s)
    residual = h + torch.einsum("oc,bct->bot", layer.residual_conv.weight[:, :, 0], z) + layer.residual_conv.bias[:, None]
    skip = torch.einsum("oc,bct->bot", layer.skip_conv.weight[:, :, 0], z) + layer.skip_conv.bias[:, None]
    out_residual, out_skip = layer(h, g)
    torch.testing.assert_close(out_residual, residual)
    torch.testing.assert_close(out_skip, skip)


def test_the_trailing_value_is_the_condition_id_and_changes_the_logits():
    net = small_wavenet(inputShape=[33], numConditions=3)
    classes = torch.randint(0, 256, (1, 32))
    logits = [net(torch.cat([classes, torch.tensor([[c]])], 1).double()) for c in range(3)]
    one_hot = F.one_hot(classes, 256).transpose(1, 2).double()
    torch.testing.assert_close(logits[2], net.forward_one_hot(one_hot, torch.tensor([2])))
    assert not torch.allclose(logits[0], logits[1])
    assert not torch.allclose(logits[1], logits[2])
    # the condition reaches every step, the first one included
    assert (logits[0] - logits[1]).abs().amax(-1).min() > 0


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"inputShape": [32, 2]}, "inputShape"),
        ({"inputShape": [1], "numConditions": 2}, "inputShape"),
        ({"inputShape": [1, 16]}, "inputShape"),
        ({"kernelSize": 1}, "kernelSize"),
        ({"layersPerBlock": 0}, "layersPerBlock"),
        ({"blocks": 1.5}, "blocks"),
        ({"numConditions": -1}, "numConditions"),
        ({"outputSize": 1}, "outputSize"),
    ],
)
def test_wavenet_rejects_bad_arguments_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        build("wavenet", **{"inputShape": [16], "outputSize": 256, **kwargs})


@pytest.mark.parametrize(
    "conditions, kwargs, argument",
    [
        (0, {"mode": "beam"}, "mode"),
        (0, {"mode": "top_k"}, "topK"),
        (0, {"mode": "top_k", "topK": 257}, "topK"),
        (0, {"mode": "temperature", "temperature": 0.0}, "temperature"),
        (0, {"prime": [3, 256]}, "prime"),
        (0, {"prime": []}, "prime"),
        (0, {"condition": 1}, "condition"),
        (2, {}, "condition"),
        (2, {"condition": 2}, "condition"),
    ],
)
def test_generate_rejects_bad_arguments_naming_the_argument(conditions, kwargs, argument):
    net = small_wavenet(inputShape=[33] if conditions else [32], numConditions=conditions)
    with pytest.raises(ValueError, match=argument):
        net.generate(3, **kwargs)


def test_generate_returns_int64_classes_reproducible_by_seed():
    net = small_wavenet()
    first = net.generate(50, seed=7)
    assert first.dtype == np.int64 and first.shape == (50,)
    assert first.min() >= 0 and first.max() < 256
    np.testing.assert_array_equal(net.generate(50, seed=7), first)
    assert not np.array_equal(net.generate(50, seed=8), first)
    # the default prime is one class mu // 2 (silence)
    np.testing.assert_array_equal(net.generate(50, seed=7, prime=[127]), first)
    assert len(net.generate(0)) == 0


@pytest.mark.parametrize("conditions", [0, 3])
@pytest.mark.parametrize("mode", MODES)
def test_fast_generation_equals_naive_generation(mode, conditions):
    # RF = 1 + 1 + 255 = 257; 20 prime + 300 new classes slide the naive window past the RF
    net = small_wavenet(inputShape=[257] if conditions else [256], layersPerBlock=8, blocks=1, numConditions=conditions)
    assert net.receptive_field >= 256
    prime = torch.randint(0, 256, (20,), generator=torch.Generator().manual_seed(5)).numpy()
    for seed in (0, 1):
        kwargs = {"prime": prime, "mode": mode, "temperature": 0.7, "topK": 10, "seed": seed}
        kwargs["condition"] = seed + 1 if conditions else None
        fast = net.generate(300, fast=True, **kwargs)
        np.testing.assert_array_equal(fast, net.generate(300, fast=False, **kwargs))


def test_fast_generation_equals_naive_generation_for_a_wider_kernel():
    net = small_wavenet(kernelSize=3, layersPerBlock=3, blocks=3)  # RF = 1 + 2 * (1 + 3 * 7) = 45
    for mode in ("sample", "top_k"):
        kwargs = {"prime": [1, 2, 3], "mode": mode, "topK": 5, "seed": 3}
        np.testing.assert_array_equal(net.generate(120, fast=True, **kwargs), net.generate(120, fast=False, **kwargs))


def test_fast_generation_speed_against_naive(report):
    for receptive_field, samples in ((256, 60), (1024, 20)):
        speed = generation_speed(receptive_field, samples, repeats=1)
        rf = speed["receptive_field"]
        print(
            f"RF {rf}: fast {speed['fast_samples_per_s']:.0f} samples/s, "
            f"naive {speed['naive_samples_per_s']:.0f} samples/s, ratio {speed['ratio']:.1f}"
        )
        report(f"wavenet RF {rf} fast samples/s", speed["fast_samples_per_s"])
        report(f"wavenet RF {rf} naive samples/s", speed["naive_samples_per_s"])
        report(f"wavenet RF {rf} fast / naive", speed["ratio"])


def mu_law_classes(x: np.ndarray, mu: int = 255) -> np.ndarray:
    companded = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    return np.floor((companded + 1) / 2 * mu + 0.5).astype(np.int64)


def test_wavenet_learns_a_periodic_sequence_far_below_the_class_entropy(report):
    period = mu_law_classes(0.8 * np.sin(2 * np.pi * (np.arange(16) + 0.5) / 16))
    sequence = torch.tensor(np.tile(period, 64))
    frequencies = np.unique(period, return_counts=True)[1] / len(period)
    entropy = float(-(frequencies * np.log(frequencies)).sum())  # nats per step, about log(8)
    torch.manual_seed(0)
    net = WaveNet(inputShape=[48], outputSize=256, layersPerBlock=4, blocks=1, residualChannels=16, dilationChannels=16, skipChannels=32)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    offsets = torch.Generator().manual_seed(0)
    for _ in range(300):
        windows = sequence[torch.randint(0, len(sequence) - 49, (16, 1), generator=offsets) + torch.arange(49)]
        logits = net(windows[:, :-1].float())
        loss = F.cross_entropy(logits.transpose(1, 2), windows[:, 1:])  # step t predicts t + 1
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        logits = net(sequence[None, :200].float())[0]
        rf = net.receptive_field
        nll = float(F.cross_entropy(logits[rf - 1 : -1], sequence[rf:200]))
    report("wavenet periodic sequence NLL (nats/step)", nll)
    report("wavenet periodic sequence class entropy", entropy)
    assert nll < 0.1 * entropy
    # the nearly one-hot predictions make greedy and mean decoding continue the period, in both generators
    prime = sequence[:20].numpy()
    for mode in ("greedy", "mean"):
        for fast in (True, False):
            np.testing.assert_array_equal(net.generate(32, prime=prime, mode=mode, fast=fast), sequence[20:52].numpy())
