import pytest
import torch
import torch.nn.functional as F

from sparkneural.nn import build, names
from sparkneural.nn.cnn import receptive_field


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_lenet_and_conv1d_are_registered():
    assert {"lenet", "conv1d"} <= set(names())


@pytest.mark.parametrize(
    "shape, padding, flat",
    [
        ([1, 8, 8], "same", 50 * 2 * 2),  # 8 -> pool 4 -> pool 2
        ([1, 28, 28], "same", 50 * 7 * 7),  # 28 -> 14 -> 7
        ([1, 28, 28], "valid", 50 * 4 * 4),  # LeNet-5: 28 -> 24 -> 12 -> 8 -> 4
        ([3, 32, 32], "valid", 50 * 5 * 5),  # 32 -> 28 -> 14 -> 10 -> 5
    ],
)
def test_lenet_maps_images_to_logits_through_the_expected_feature_size(shape, padding, flat):
    net = build("lenet", inputShape=shape, outputSize=10, padding=padding)
    assert net.classifier[0].in_features == flat
    assert net(torch.randn(2, *shape)).shape == (2, 10)


def test_lenet_options_change_the_layers():
    net = build(
        "lenet", inputShape=[1, 8, 8], outputSize=3, filters=[4, 6, 8], kernelSize=3, poolSize=2, denseUnits=16, dropout=0.5
    )
    assert [m.out_channels for m in net.features if isinstance(m, torch.nn.Conv2d)] == [4, 6, 8]
    assert net.classifier[0].in_features == 8 * 1 * 1 and net.classifier[0].out_features == 16
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"inputShape": [1, 8, 8], "padding": "valid"}, "inputShape"),  # 8 -> 4 -> 2, then a 5x5 conv
        ({"inputShape": [64]}, "inputShape"),
        ({"inputShape": [1, 8, 8], "padding": "full"}, "padding"),
        ({"inputShape": [1, 8, 8], "filters": []}, "filters"),
        ({"inputShape": [1, 8, 8], "dropout": 1.0}, "dropout"),
    ],
)
def test_lenet_rejects_bad_arguments_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        build("lenet", outputSize=10, **kwargs)


def test_lenet_computes_conv_relu_pool_twice_then_two_dense_layers():
    torch.manual_seed(0)
    net = build("lenet", inputShape=[1, 8, 8], outputSize=10).eval()
    conv1, conv2 = net.features[0], net.features[3]
    dense1, dense2 = net.classifier[0], net.classifier[3]
    x = torch.randn(3, 1, 8, 8)
    h = F.max_pool2d(F.relu(F.conv2d(x, conv1.weight, conv1.bias, padding=2)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, conv2.weight, conv2.bias, padding=2)), 2)
    expected = F.linear(F.relu(F.linear(h.reshape(3, -1), dense1.weight, dense1.bias)), dense2.weight, dense2.bias)
    torch.testing.assert_close(net(x), expected)


@pytest.mark.parametrize(
    "padding, stride, dilation, lengths",
    [
        ("same", 1, 1, [100, 100]),
        ("same", 2, 1, [50, 25]),  # ceil(L / s) per layer
        ("causal", 1, [1, 2], [100, 100]),
        ("causal", 3, 1, [34, 12]),
        ("valid", 1, [2, 4], [96, 88]),  # L - d (k - 1)
        ("valid", 2, 1, [49, 24]),  # floor((L - 3) / 2) + 1
    ],
)
def test_conv1d_output_lengths_follow_the_padding_formulas(padding, stride, dilation, lengths):
    net = build(
        "conv1d", inputShape=[2, 100], outputSize=4, filters=[8, 5], kernelSize=3,
        stride=stride, padding=padding, dilation=dilation,
    )
    x = torch.randn(3, 2, 100)
    shapes = [tuple(net.features[: 2 * (i + 1)](x).shape) for i in range(2)]
    assert shapes == [(3, 8, lengths[0]), (3, 5, lengths[1])]
    assert net.outputLength == lengths[1]
    assert net(x).shape == (3, 4)


@pytest.mark.parametrize("pooling, head_width", [("average", 5), ("max", 5), ("flatten", 5 * 30)])
def test_conv1d_pooling_sets_the_head_width(pooling, head_width):
    net = build("conv1d", inputShape=[1, 30], outputSize=2, filters=[4, 5], pooling=pooling, denseUnits=7, dropout=0.1)
    assert net.head[1].in_features == head_width and net.head[-1].out_features == 2
    assert net(torch.randn(6, 1, 30)).shape == (6, 2)


def test_conv1d_global_average_pooling_is_the_time_mean_of_the_features():
    torch.manual_seed(0)
    net = build("conv1d", inputShape=[3, 20], outputSize=2, filters=[6]).eval()
    x = torch.randn(4, 3, 20)
    head = net.head[-1]
    torch.testing.assert_close(net(x), F.linear(net.features(x).mean(dim=-1), head.weight, head.bias))


def test_conv1d_rejects_bad_arguments_naming_the_argument():
    for kwargs, argument in [
        ({"dilation": [1, 2, 4]}, "dilation"),  # two layers, three dilations
        ({"padding": "full"}, "padding"),
        ({"pooling": "sum"}, "pooling"),
        ({"padding": "valid", "kernelSize": 9}, "inputShape"),  # 10 -> 2 -> nothing
        ({"stride": 0}, "stride"),
    ]:
        with pytest.raises(ValueError, match=argument):
            build("conv1d", inputShape=[1, 10], outputSize=2, filters=[4, 4], **kwargs)


def _input_steps_read(net, output_step: int, length: int) -> list[int]:
    """Input positions with a non-zero gradient for one output step of the conv stack."""
    x = torch.rand(1, 1, length, requires_grad=True)
    net.features(x)[0, :, output_step].sum().backward()
    return torch.nonzero(x.grad[0, 0]).flatten().tolist()


def _all_positive(net):
    # positive weights and inputs keep every ReLU open, so gradients show exactly which inputs are read
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(0.1, 0.5)
    return net


@pytest.mark.parametrize("kernel, dilations", [(2, [1, 2, 4, 8]), (3, [1, 2, 4])])
def test_causal_conv1d_reads_exactly_the_receptive_field_before_each_step(kernel, dilations):
    net = _all_positive(
        build(
            "conv1d", inputShape=[1, 64], outputSize=1, filters=[3] * len(dilations),
            kernelSize=kernel, padding="causal", dilation=dilations,
        )
    )
    field = 1 + (kernel - 1) * sum(dilations)  # 16 for k=2, d=1..8 (WaveNet), 15 for k=3, d=1..4
    assert receptive_field(kernel, dilations) == field
    for t in (0, 20, 63):
        assert _input_steps_read(net, t, 64) == list(range(max(0, t - field + 1), t + 1))


def test_same_padded_conv1d_reads_inputs_after_the_step():
    net = _all_positive(build("conv1d", inputShape=[1, 64], outputSize=1, filters=[3, 3], kernelSize=3, padding="same"))
    assert _input_steps_read(net, 20, 64) == [18, 19, 20, 21, 22]


def test_lenet_learns_to_tell_horizontal_from_vertical_bars():
    torch.manual_seed(0)
    images = torch.zeros(64, 1, 8, 8)
    labels = torch.arange(64) % 2
    for k in range(64):
        row = k // 2 % 8
        if labels[k]:
            images[k, 0, :, row] = 1.0
        else:
            images[k, 0, row, :] = 1.0
    images += 0.1 * torch.randn_like(images)
    net = build("lenet", inputShape=[1, 8, 8], outputSize=2, filters=[4, 8], denseUnits=16)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(60):
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert (net.eval()(images).argmax(dim=1) == labels).float().mean() == 1.0
