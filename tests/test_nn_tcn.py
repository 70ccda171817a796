"""TCN: causality, receptive field, registry, argument checks, learning a noisy sine.

Expectations are independent of the module: the closed form
RF = 1 + 2 (k - 1) (2^L - 1) against perturbations of single inputs and the
support of an input gradient, a parameter count worked out by hand, and the
naive "last value" predictor as the baseline to beat.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from sparkneural.nn import build, names
from sparkneural.nn.registry import check_kwargs
from sparkneural.nn.tcn import TCN


pytestmark = pytest.mark.usefixtures("one_torch_thread")

def closed_form_rf(kernel: int, levels: int) -> int:
    return 1 + 2 * (kernel - 1) * (2**levels - 1)


def small_tcn(**kwargs) -> TCN:
    arguments = {"inputShape": [3, 40], "outputSize": 2, "channels": [4, 5, 5], "kernelSize": 3, **kwargs}
    torch.manual_seed(0)
    return TCN(**arguments).double().eval()


def test_feature_map_at_a_step_ignores_later_inputs():
    net = small_tcn()
    x = torch.randn(6, 3, 40, dtype=torch.float64)
    before = net.feature_map(x)
    assert before.shape == (6, 5, 40)
    for t in (0, 17, 39):
        changed = x.clone()
        changed[:, :, t] += 3.0
        after = net.feature_map(changed)
        torch.testing.assert_close(after[:, :, :t], before[:, :, :t], rtol=0, atol=0)
        assert (after[:, :, t] - before[:, :, t]).abs().max() > 1e-3


def test_last_output_reads_exactly_the_receptive_field():
    net = small_tcn()
    rf = closed_form_rf(3, 3)  # 29 < length 40
    length = 40
    x = torch.randn(32, 3, length, dtype=torch.float64)
    out = net(x)

    # the earliest input the last step reads reaches it along one path only (the first tap of
    # every convolution, through ReLUs that may be off), so its effect is small but not zero
    inside = x.clone()
    inside[:, :, length - rf] += 3.0
    assert (net(inside) - out).abs().max() > 1e-9

    before = x.clone()
    before[:, :, : length - rf] = torch.randn(32, 3, length - rf, dtype=torch.float64) * 10
    torch.testing.assert_close(net(before), out, rtol=0, atol=0)

    x.requires_grad_(True)
    net(x).sum().backward()
    reads = x.grad.abs().sum(dim=(0, 1)) > 0
    assert reads.tolist() == [False] * (length - rf) + [True] * rf


@pytest.mark.parametrize(
    "kernel, channels",
    [(3, [32, 32, 32, 32]), (2, [8, 8]), (5, [3, 6, 2]), (1, [4, 4, 4]), (2, [4] * 7)],
)
def test_receptive_field_matches_the_closed_form(kernel, channels):
    net = TCN(inputShape=[1, 10], outputSize=1, channels=channels, kernelSize=kernel)
    assert net.receptive_field == closed_form_rf(kernel, len(channels))


def test_flat_rows_are_reshaped_channel_major():
    net = small_tcn()
    x = torch.randn(4, 3, 40, dtype=torch.float64)
    torch.testing.assert_close(net(x.reshape(4, -1)), net(x))


def test_registry_builds_it():
    assert "tcn" in names()
    arguments = {"inputShape": [2, 50], "outputSize": 3, "channels": [8, 8], "kernelSize": 2}
    check_kwargs("tcn", {**arguments, "dropout": 0.1})
    with pytest.raises(ValueError, match="dilation"):
        check_kwargs("tcn", {**arguments, "dilation": 2})
    net = build("tcn", **arguments)
    assert isinstance(net, TCN)
    assert net(torch.zeros(7, 2, 50)).shape == (7, 3)
    # by hand: block 1 = conv 2->8 (2*8*2+8) + conv 8->8 (8*8*2+8) + 1x1 residual 2->8 (2*8+8);
    # block 2 = two convs 8->8, identity residual; head 8*3+3
    assert sum(p.numel() for p in net.parameters()) == (40 + 136 + 24) + (136 + 136) + 27


@pytest.mark.parametrize(
    "override, argument",
    [
        ({"channels": []}, "channels"),
        ({"channels": [8, 0]}, "channels"),
        ({"kernelSize": 0}, "kernelSize"),
        ({"kernelSize": 2.0}, "kernelSize"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"inputShape": [50]}, "inputShape"),
        ({"inputShape": [1, 2, 50]}, "inputShape"),
        ({"inputShape": [0, 50]}, "inputShape"),
        ({"outputSize": 0}, "outputSize"),
    ],
)
def test_bad_arguments_raise_a_value_error_naming_the_argument(override, argument):
    arguments = {"inputShape": [2, 50], "outputSize": 3, "channels": [8, 8], "kernelSize": 2, **override}
    with pytest.raises(ValueError, match=f"^{argument}: "):
        TCN(**arguments)


def sine_windows(series: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every window of ``length`` steps (batch, 1, length) and the value right after it (batch,)."""
    rows = series.unfold(0, length + 1, 1)
    return rows[:, None, :length].contiguous(), rows[:, length].contiguous()


def test_it_learns_the_next_value_of_a_noisy_sine_better_than_the_last_value(report):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(0)
        steps = torch.arange(2000, dtype=torch.float32)
        # period 2 pi / 0.4 ~ 15.7 steps, not an integer, so held-out windows start at new phases
        series = torch.sin(0.4 * steps) + 0.05 * torch.randn(2000, generator=generator)
        x_train, y_train = sine_windows(series[: 256 + 32], 32)
        x_test, y_test = sine_windows(series[1000 : 1000 + 512 + 32], 32)

        torch.manual_seed(0)
        net = TCN(inputShape=[1, 32], outputSize=1, channels=[8, 8, 8], kernelSize=3)
        assert net.receptive_field <= 32
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(300):
            optimizer.zero_grad()
            F.mse_loss(net(x_train).squeeze(1), y_train).backward()
            optimizer.step()

        net.eval()
        with torch.no_grad():
            rmse = math.sqrt(F.mse_loss(net(x_test).squeeze(1), y_test).item())
        naive = math.sqrt(F.mse_loss(x_test[:, 0, -1], y_test).item())
    finally:
        torch.set_num_threads(threads)
    report("tcn_sine_rmse_over_last_value_rmse", rmse / naive)
    assert rmse <= 0.5 * naive, (rmse, naive)
