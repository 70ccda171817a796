import torch

from sparkdl.nn import build, names


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
