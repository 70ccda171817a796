import math

import pytest
import torch

from sparkneural.nn import build, names
from sparkneural.nn.mlp import MLP, DenseBlock, HighwayBlock


def test_mlp_is_registered_and_maps_inputs_to_logits():
    assert "mlp" in names()
    net = build("mlp", inputShape=[8, 8], outputSize=10, hiddenLayers=[32, 16])
    assert net(torch.randn(5, 8, 8)).shape == (5, 10)


def test_plain_mlp_computes_relu_layers_then_a_linear_head():
    torch.manual_seed(0)
    net = build("mlp", inputShape=[4], outputSize=2, hiddenLayers=[3])
    x = torch.randn(6, 4)
    linear = net.features[1].body[0]
    expected = torch.relu(x @ linear.weight.T + linear.bias) @ net.head.weight.T + net.head.bias
    torch.testing.assert_close(net(x), expected)


@pytest.mark.parametrize("block", ["plain", "residual", "highway", "dense"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu"])
def test_every_block_and_activation_gives_logits(block, activation):
    net = MLP(inputShape=[12], outputSize=3, hiddenLayers=[8, 8], blockType=block, activation=activation, dropout=0.1, batchNorm=True)
    assert net(torch.randn(4, 12)).shape == (4, 3)


def _train_xor(block: str, depth: int = 30, steps: int = 600) -> float:
    torch.manual_seed(0)
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([0, 1, 1, 0])
    net = MLP(inputShape=[2], outputSize=2, hiddenLayers=[16] * depth, activation="tanh", blockType=block)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    return float((net(x).argmax(1) == y).float().mean())


def test_deep_tanh_mlp_learns_xor_only_with_residual_blocks():
    torch.set_num_threads(1)
    assert _train_xor("residual") == 1.0
    assert _train_xor("plain") < 1.0


def test_highway_blocks_start_close_to_identity():
    torch.manual_seed(0)
    block = HighwayBlock(32, "tanh", 0.0, False, gate_bias=-3.0)
    x = torch.randn(64, 32)
    gate = torch.sigmoid(block.gate(x))
    # y - x = T(x) * (H(x) - x): small because T(x) = sigmoid(W x - 3) starts near 0.05
    assert float(gate.mean()) < 0.1
    assert float((block(x) - x).abs().mean()) < 0.15 * float(x.abs().mean())
    with pytest.raises(ValueError, match=r"highwayGateBias: expected a value in \[-3, -1\]"):
        MLP(inputShape=[4], outputSize=2, hiddenLayers=[4], blockType="highway", highwayGateBias=0.0)


def test_dense_block_widths_grow_by_concatenation():
    block = DenseBlock(10, [4, 6, 3], "relu", 0.0, False)
    assert [layer.body[0].in_features for layer in block.layers] == [10, 14, 20]
    assert block.out_features == 23
    x = torch.randn(2, 10)
    out = block(x)
    assert out.shape == (2, 23)
    torch.testing.assert_close(out[:, :10], x)  # the input itself is carried through


def test_residual_projection_only_when_widths_differ():
    net = MLP(inputShape=[6], outputSize=2, hiddenLayers=[6, 4], blockType="residual")
    first, second = net.features[1], net.features[2]
    assert isinstance(first.shortcut, torch.nn.Identity)
    assert isinstance(second.shortcut, torch.nn.Linear) and second.shortcut.weight.shape == (4, 6)
    assert math.prod(net(torch.randn(3, 6)).shape) == 6
