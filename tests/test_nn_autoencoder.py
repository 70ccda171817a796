import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from sparkneural.nn import build, names

KINDS = ["dense", "deep", "conv", "denoising", "variational", "sparse"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def autoencoder(shape, **kwargs):
    return build("autoencoder", inputShape=shape, outputSize=int(torch.tensor(shape).prod()), **kwargs)


def test_autoencoder_is_registered():
    assert "autoencoder" in names()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [[1, 8, 8], [1, 28, 28], [3, 7, 9]])
def test_every_kind_reconstructs_the_exact_input_shape_through_a_bottleneck(kind, shape):
    net = autoencoder(shape, kind=kind, bottleneck=8)
    x = torch.rand(2, *shape)
    assert net(x).shape == x.shape
    assert net.encode(x).shape == (2, 8)
    assert net.extra_loss().shape == ()


@pytest.mark.parametrize("bottleneck", [32, 16, 8])
def test_dense_autoencoder_is_784_to_bottleneck_to_784(bottleneck):
    net = autoencoder([784], bottleneck=bottleneck)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(bottleneck, 784), (784, bottleneck)]
    assert net(torch.rand(3, 784)).shape == (3, 784)


def test_deep_autoencoder_mirrors_its_hidden_layers():
    net = autoencoder([64], kind="deep", bottleneck=8, hiddenLayers=[48, 24])
    widths = [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert sorted(widths) == sorted([48, 24, 8, 24, 48, 64])
    assert [m.out_features for m in net.decoder if isinstance(m, torch.nn.Linear)] == [24, 48, 64]


def test_dense_autoencoder_computes_a_relu_code_then_a_sigmoid_output():
    torch.manual_seed(0)
    net = autoencoder([10], bottleneck=4)
    encoder, decoder = net.code[0], net.decoder[-1]
    x = torch.rand(5, 10)
    code = torch.relu(F.linear(x, encoder.weight, encoder.bias))
    torch.testing.assert_close(net.encode(x), code)
    torch.testing.assert_close(net(x), torch.sigmoid(F.linear(code, decoder.weight, decoder.bias)))


def test_linear_output_is_the_sigmoid_models_logit():
    torch.manual_seed(0)
    linear = autoencoder([10], bottleneck=4, outputActivation="linear")
    torch.manual_seed(0)
    sigmoid = autoencoder([10], bottleneck=4, outputActivation="sigmoid")
    x = torch.rand(5, 10)
    torch.testing.assert_close(sigmoid(x), torch.sigmoid(linear(x)))


def test_variational_extra_loss_is_the_kl_divergence_to_a_standard_normal():
    torch.manual_seed(0)
    net = autoencoder([64], kind="variational", bottleneck=6, hiddenLayers=[32], klWeight=0.5)
    x = torch.rand(7, 64)
    net.train()(x)
    h = net.encoder(x)
    mu, logvar = net.mu(h), net.logvar(h)
    posterior = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    kl = torch.distributions.kl_divergence(posterior, torch.distributions.Normal(0.0, 1.0)).sum(dim=1)
    torch.testing.assert_close(net.extra_loss(), 0.5 * kl.mean())
    torch.testing.assert_close(net.encode(x), mu)


def test_variational_kl_weight_defaults_to_one_over_the_input_size():
    assert autoencoder([1, 8, 8], kind="variational").klWeight == pytest.approx(1 / 64)


def test_variational_forward_samples_the_code_in_training_and_uses_the_mean_in_eval():
    torch.manual_seed(0)
    net = autoencoder([16], kind="variational", bottleneck=4)
    x = torch.rand(3, 16)
    torch.testing.assert_close(net.eval()(x), net.decode(net.encode(x)))
    torch.manual_seed(1)
    eps_draw = net.train()(x)
    torch.manual_seed(1)
    h = net.encoder(x)
    mu, logvar = net.mu(h), net.logvar(h)
    torch.testing.assert_close(eps_draw, net.decode(mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)))
    assert not torch.allclose(eps_draw, net.eval()(x))


def test_variational_sample_decodes_standard_normal_draws():
    net = autoencoder([1, 8, 8], kind="variational", bottleneck=5)
    draws = net.sample(4, generator=torch.Generator().manual_seed(3))
    assert draws.shape == (4, 1, 8, 8)
    assert ((draws >= 0) & (draws <= 1)).all()
    expected = net.decode(torch.randn(4, 5, generator=torch.Generator().manual_seed(3)))
    torch.testing.assert_close(draws, expected)
    with pytest.raises(ValueError, match="variational"):
        autoencoder([64], kind="dense").sample(2)


def test_denoising_adds_gaussian_noise_only_in_training():
    torch.manual_seed(0)
    net = autoencoder([32], kind="denoising", bottleneck=8, noiseStd=0.3)
    x = torch.rand(4, 32)
    clean = net.decode(net.encode(x))
    torch.testing.assert_close(net.eval()(x), clean)
    torch.manual_seed(5)
    noisy = net.train()(x)
    torch.manual_seed(5)
    expected = net.decode(net.encode(x + 0.3 * torch.randn_like(x)))
    torch.testing.assert_close(noisy, expected)
    assert not torch.allclose(noisy, clean)


def test_sparse_extra_loss_is_the_weighted_mean_absolute_code():
    torch.manual_seed(0)
    net = autoencoder([20], kind="sparse", bottleneck=6, sparsityWeight=0.01)
    x = torch.rand(5, 20)
    net(x)
    torch.testing.assert_close(net.extra_loss(), 0.01 * net.encode(x).abs().mean())


def test_other_kinds_have_no_extra_loss_and_penalties_need_a_forward_first():
    assert autoencoder([8], kind="dense").extra_loss().item() == 0.0
    with pytest.raises(RuntimeError, match="forward"):
        autoencoder([8], kind="sparse").extra_loss()


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"kind": "contractive"}, "kind"),
        ({"outputActivation": "tanh"}, "outputActivation"),
        ({"kind": "dense", "hiddenLayers": [16]}, "hiddenLayers"),
        ({"kind": "deep", "hiddenLayers": [16, 0]}, "hiddenLayers"),
        ({"kind": "conv"}, "inputShape"),  # a flat input
        ({"bottleneck": 0}, "bottleneck"),
        ({"noiseStd": -1.0}, "noiseStd"),
        ({"klWeight": -1.0}, "klWeight"),
    ],
)
def test_autoencoder_rejects_bad_arguments_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        autoencoder([64], **kwargs)


@pytest.mark.parametrize("kind, factor", [("dense", 5.0), ("variational", 3.0)])
def test_autoencoder_training_cuts_the_reconstruction_error_on_digits(kind, factor):
    torch.manual_seed(0)
    x = torch.tensor(load_digits().data[:512] / 16.0, dtype=torch.float32)
    net = autoencoder([64], kind=kind, bottleneck=16, hiddenLayers=[32] if kind == "variational" else None)
    with torch.no_grad():
        before = F.mse_loss(net.eval()(x), x)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    for step in range(300):
        batch = x[step % 8 * 64 : step % 8 * 64 + 64]
        loss = F.binary_cross_entropy(net(batch), batch) + net.extra_loss()  # what the loop adds up
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = F.mse_loss(net.eval()(x), x)
    assert after < before / factor
