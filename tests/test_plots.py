"""Each plot writes a readable PNG of a sensible size, and rejects inconsistent input."""

import matplotlib.image as mpimg
import numpy as np
import pytest

from sparkneural import plots


def _png_shape(path):
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4), image.shape
    # Not a blank canvas: something was drawn.
    assert image[..., :3].std() > 0.01
    return image.shape


def _between(shape, low=(200, 250), high=(2000, 2500)):
    height, width = shape[:2]
    assert low[0] <= height <= high[0] and low[1] <= width <= high[1], shape


def test_training_curves_draws_one_panel_per_metric(tmp_path):
    history = [
        {"epoch": e, "loss": 1.0 / e, "accuracy": 1 - 0.5 / e, "val_loss": 1.2 / e, "val_accuracy": 1 - 0.6 / e, "seconds": 0.1}
        for e in range(1, 11)
    ]
    path = plots.training_curves(history, tmp_path / "curves.png", metrics=("loss", "accuracy"))
    assert path == str(tmp_path / "curves.png")
    height, width, _ = _png_shape(path)
    _between((height, width))
    assert width > 1.5 * height  # two panels side by side


def test_training_curves_names_a_missing_metric(tmp_path):
    with pytest.raises(ValueError, match="'f1' is not in the history"):
        plots.training_curves([{"epoch": 1, "loss": 0.5}], tmp_path / "x.png", metrics=("f1",))


def test_confusion_matrix_writes_a_square_figure(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 300).astype(float)
    predictions = np.where(rng.random(300) < 0.8, labels, rng.integers(0, 10, 300))
    path = plots.confusion_matrix(labels, predictions, tmp_path / "sub" / "confusion.png")
    _between(_png_shape(path))


def test_confusion_matrix_checks_class_names(tmp_path):
    with pytest.raises(ValueError, match="expected 2 names"):
        plots.confusion_matrix([0, 1, 1], [0, 1, 0], tmp_path / "x.png", classNames=["a", "b", "c"])


def test_pca_scatter_accepts_a_list_of_vectors(tmp_path):
    from pyspark.ml.linalg import DenseVector

    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(10.0), 20)
    points = [DenseVector(rng.normal(size=2) + [label, -label]) for label in labels]
    _between(_png_shape(plots.pca_scatter(points, labels, tmp_path / "pca.png")))


def test_cluster_centres_grid_holds_every_centre(tmp_path):
    centres = np.random.default_rng(2).uniform(0, 16, size=(10, 64))
    height, width, _ = _png_shape(plots.cluster_centres(centres, tmp_path / "centres.png"))
    _between((height, width))
    assert width > height  # 2 rows of 5


def test_cluster_centres_rejects_the_wrong_image_shape(tmp_path):
    with pytest.raises(ValueError, match="expected 64 values"):
        plots.cluster_centres(np.zeros((3, 60)), tmp_path / "x.png")


def test_reconstructions_shows_two_rows(tmp_path):
    rng = np.random.default_rng(3)
    originals = rng.uniform(0, 1, size=(12, 64))
    path = plots.reconstructions(originals, originals + rng.normal(0, 0.05, size=originals.shape), tmp_path / "r.png", n=8)
    height, width, _ = _png_shape(path)
    _between((height, width))
    assert width > 2 * height


def test_waveform_and_spectrogram(tmp_path):
    rate = 8000
    t = np.arange(rate) / rate
    samples = np.sin(2 * np.pi * 440 * t) * np.linspace(0, 1, rate) + 0.3 * np.sin(2 * np.pi * 1800 * t)
    _between(_png_shape(plots.waveform_and_spectrogram(samples, rate, tmp_path / "audio.png")))


def test_strategy_bars(tmp_path):
    scores = {"frozen CLS + logistic": 0.842, "frozen mean-pool + MLP": 0.871, "fine-tuned": 0.913}
    _between(_png_shape(plots.strategy_bars(scores, tmp_path / "bars.png")))


def test_attention_heatmap_checks_the_matrix_shape(tmp_path):
    source = ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]"]
    target = source[:5]
    weights = np.random.default_rng(4).dirichlet(np.ones(len(source)), size=len(target))
    _between(_png_shape(plots.attention_heatmap(weights, source, target, tmp_path / "att.png")))
    with pytest.raises(ValueError, match="expected shape"):
        plots.attention_heatmap(weights.T, source, target, tmp_path / "bad.png")


def test_plotting_leaves_pyplot_state_alone(tmp_path):
    import matplotlib
    import matplotlib.pyplot as plt

    backend, open_figures = matplotlib.get_backend(), plt.get_fignums()
    plots.strategy_bars({"a": 0.5}, tmp_path / "one.png")
    assert matplotlib.get_backend() == backend and plt.get_fignums() == open_figures
