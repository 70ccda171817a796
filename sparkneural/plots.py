"""Figures for notebooks and reports, written as PNG files.

Each function takes small, already-collected data (numpy arrays, lists,
pandas objects — never a Spark DataFrame), draws one figure with
matplotlib's Agg renderer, writes it to ``path`` and returns the path as a
string. Figures are built on ``matplotlib.figure.Figure`` rather than
``pyplot``, so calling them never changes the backend or the open figures
of a notebook that imports this module.

>>> from sparkneural import plots
>>> plots.training_curves(model.history, "out/curves.png", metrics=("loss", "accuracy"))
'out/curves.png'
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PathLike = str | os.PathLike


def _figure(width: float, height: float, **kwargs: Any) -> Figure:
    figure = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: PathLike) -> str:
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def _matrix(rows: Any) -> np.ndarray:
    """A 2-D float array from an array, a list of lists/arrays/MLlib vectors or a pandas Series of arrays."""
    if hasattr(rows, "to_numpy"):
        rows = rows.to_numpy()
    return np.asarray([np.asarray(row, dtype=np.float64).ravel() for row in rows])


def training_curves(history: Sequence[Mapping[str, float]], path: PathLike, metrics: Sequence[str] = ("loss",)) -> str:
    """Train and validation curves per epoch, one panel per metric.

    ``history`` is a sparkneural ``model.history``: one dict per epoch with
    ``epoch``, the training metrics (``loss``, ``accuracy``, ...) and their
    ``val_`` counterparts when a validation split was used.

    >>> training_curves(model.history, "curves.png", metrics=("loss", "accuracy"))
    'curves.png'
    """
    if not history:
        raise ValueError("history: expected at least one epoch record, found none")
    if not metrics:
        raise ValueError("metrics: expected at least one metric name")
    epochs = [record.get("epoch", i + 1) for i, record in enumerate(history)]
    figure = _figure(4.5 * len(metrics), 3.6, layout="constrained")
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        drawn = False
        for key, label, style in ((metric, "train", "-o"), (f"val_{metric}", "validation", "--s")):
            values = [record.get(key) for record in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], style, markersize=3, label=label)
                drawn = True
        if not drawn:
            raise ValueError(f"metrics: {metric!r} is not in the history; it has {sorted(history[0])}")
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    figure.suptitle("Training curves")
    return _save(figure, path)


def confusion_matrix(
    labels: Sequence[Any], predictions: Sequence[Any], path: PathLike, classNames: Sequence[str] | None = None
) -> str:
    """Counts of (true class, predicted class), with the count written in each cell.

    Classes are the sorted union of the values in ``labels`` and
    ``predictions``; ``classNames`` names them in that order.

    >>> pdf = model.transform(test).select("label", "prediction").toPandas()
    >>> confusion_matrix(pdf["label"], pdf["prediction"], "confusion.png")
    'confusion.png'
    """
    labels, predictions = np.asarray(labels).ravel(), np.asarray(predictions).ravel()
    if len(labels) != len(predictions) or len(labels) == 0:
        raise ValueError(
            f"labels and predictions: expected the same non-zero length, found {len(labels)} and {len(predictions)}"
        )
    classes = np.unique(np.concatenate([labels, predictions]))
    if classNames is None:
        classNames = [f"{c:g}" if isinstance(c, (float, np.floating)) else str(c) for c in classes]
    elif len(classNames) != len(classes):
        raise ValueError(f"classNames: expected {len(classes)} names (one per class), found {len(classNames)}")
    index = {c: i for i, c in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for true, predicted in zip(labels, predictions):
        counts[index[true], index[predicted]] += 1

    size = max(4.0, 0.5 * len(classes) + 2.0)
    figure = _figure(size + 1.0, size, layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=ax, label="count")
    threshold = counts.max() / 2
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if counts[i, j] > threshold else "black")
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classNames, rotation=45 if max(map(len, classNames)) > 3 else 0)
    ax.set_yticks(ticks, classNames)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    accuracy = np.trace(counts) / counts.sum()
    ax.set_title(f"Confusion matrix (accuracy {accuracy:.3f})")
    return _save(figure, path)


def pca_scatter(points2d: Any, labels: Sequence[Any], path: PathLike) -> str:
    """The data on its first two principal components, one colour per label.

    >>> pdf = pca_model.transform(df).select("pcaFeatures", "label").toPandas()
    >>> pca_scatter(pdf["pcaFeatures"], pdf["label"], "pca.png")
    'pca.png'
    """
    points = _matrix(points2d)
    labels = np.asarray(labels).ravel()
    if points.ndim != 2 or points.shape[1] < 2 or len(points) != len(labels):
        raise ValueError(f"points2d: expected one row of 2 values per label ({len(labels)}), found shape {points.shape}")
    figure = _figure(6.5, 5.0, layout="constrained")
    ax = figure.subplots()
    classes = np.unique(labels)
    palette = _palette(len(classes))
    for colour, value in zip(palette, classes):
        chosen = labels == value
        name = f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)
        ax.scatter(points[chosen, 0], points[chosen, 1], s=8, alpha=0.7, color=colour, label=name)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title("PCA projection")
    ax.grid(alpha=0.3)
    ax.legend(title="label", loc="center left", bbox_to_anchor=(1.01, 0.5), markerscale=2, frameon=False)
    return _save(figure, path)


def _palette(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _image_grid(figure: Figure, images: np.ndarray, imageShape: Sequence[int], rows: int, cols: int, titles: Sequence[str]):
    axes = figure.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < len(images):
            ax.imshow(images[i].reshape(imageShape), cmap="gray_r", interpolation="nearest")
            ax.set_title(titles[i], fontsize=9)
        else:
            ax.axis("off")
    return axes


def cluster_centres(centres: Any, path: PathLike, imageShape: Sequence[int] = (8, 8)) -> str:
    """K-means centres drawn as images in a grid (at most 5 per row).

    >>> cluster_centres(kmeans_model.clusterCenters(), "centres.png")
    'centres.png'
    """
    images = _matrix(centres)
    size = math.prod(imageShape)
    if images.shape[1] != size:
        raise ValueError(f"centres: expected {size} values each for imageShape {tuple(imageShape)}, found {images.shape[1]}")
    cols = min(len(images), 5)
    rows = math.ceil(len(images) / cols)
    figure = _figure(1.6 * cols, 1.8 * rows + 0.5, layout="constrained")
    _image_grid(figure, images, imageShape, rows, cols, [f"cluster {i}" for i in range(len(images))])
    figure.suptitle(f"K-means cluster centres (K = {len(images)})")
    return _save(figure, path)


def reconstructions(
    originals: Any, reconstructions: Any, path: PathLike, imageShape: Sequence[int] = (8, 8), n: int = 10
) -> str:
    """The first ``n`` inputs (top row) above their reconstructions (bottom row).

    >>> pdf = ae_model.transform(test).limit(10).toPandas()
    >>> reconstructions(pdf["features"], pdf["reconstruction"], "recon.png")
    'recon.png'
    """
    top, bottom = _matrix(originals)[:n], _matrix(reconstructions)[:n]
    size = math.prod(imageShape)
    if top.shape != bottom.shape or top.shape[1] != size:
        raise ValueError(
            f"originals and reconstructions: expected equal shapes, rows of {size} values; found {top.shape} and {bottom.shape}"
        )
    count = len(top)
    figure = _figure(1.2 * count + 0.8, 3.0, layout="constrained")
    axes = figure.subplots(2, count, squeeze=False)
    # One colour scale per column, so an input and its reconstruction compare directly.
    for j in range(count):
        low, high = min(top[j].min(), bottom[j].min()), max(top[j].max(), bottom[j].max())
        for i, image in enumerate((top[j], bottom[j])):
            ax = axes[i, j]
            ax.imshow(image.reshape(imageShape), cmap="gray_r", vmin=low, vmax=high, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("reconstruction")
    mse = float(np.mean((top - bottom) ** 2))
    figure.suptitle(f"Inputs and reconstructions (MSE {mse:.4g})")
    return _save(figure, path)


def waveform_and_spectrogram(samples: Any, sampleRate: int, path: PathLike) -> str:
    """An audio clip's waveform (top) and its spectrogram in dB (bottom), on one time axis.

    >>> waveform_and_spectrogram(audio, 16000, "clip.png")
    'clip.png'
    """
    samples = np.asarray(samples, dtype=np.float64).ravel()
    if len(samples) < 2 or sampleRate <= 0:
        raise ValueError(
            f"samples/sampleRate: expected at least 2 samples and a positive rate, found {len(samples)} and {sampleRate}"
        )
    figure = _figure(8.0, 5.0, layout="constrained")
    wave, spec = figure.subplots(2, 1, sharex=True)
    seconds = np.arange(len(samples)) / sampleRate
    wave.plot(seconds, samples, linewidth=0.6)
    wave.set_ylabel("amplitude")
    wave.set_title("Waveform")
    wave.grid(alpha=0.3)
    # Window of ~32 ms (a power of two), clipped for very short clips.
    nfft = int(min(len(samples), 2 ** max(4, round(math.log2(max(16, 0.032 * sampleRate))))))
    _, _, _, image = spec.specgram(samples, NFFT=nfft, Fs=sampleRate, noverlap=nfft // 2, cmap="magma")
    figure.colorbar(image, ax=spec, label="power (dB)")
    spec.set_xlabel("time (s)")
    spec.set_ylabel("frequency (Hz)")
    spec.set_title(f"Spectrogram ({sampleRate} Hz, {nfft}-sample window)")
    return _save(figure, path)


def strategy_bars(scores: Mapping[str, float], path: PathLike, ylabel: str = "test accuracy") -> str:
    """One bar per strategy (e.g. BERT frozen vs fine-tuned), labelled with its score.

    >>> strategy_bars({"frozen + logistic": 0.86, "fine-tuned": 0.91}, "bert.png")
    'bert.png'
    """
    if not scores:
        raise ValueError("scores: expected at least one strategy")
    names, values = list(scores), [float(v) for v in scores.values()]
    figure = _figure(max(4.5, 1.3 * len(names) + 1.5), 4.0, layout="constrained")
    ax = figure.subplots()
    bars = ax.bar(range(len(names)), values, color=_palette(len(names)))
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], padding=2)
    long_names = max(map(len, names)) > 12
    ax.set_xticks(range(len(names)), names, rotation=20 if long_names else 0, ha="right" if long_names else "center")
    if all(0.0 <= v <= 1.0 for v in values):
        ax.set_ylim(0.0, 1.08)
    else:
        ax.margins(y=0.12)
    ax.set_xlabel("strategy")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{ylabel[:1].upper()}{ylabel[1:]} by strategy")
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def attention_heatmap(matrix: Any, sourceTokens: Sequence[str], targetTokens: Sequence[str], path: PathLike) -> str:
    """Attention weights, one row per target (query) token and one column per source (key) token.

    >>> attention_heatmap(weights, ["[CLS]", "the", "cat"], ["[CLS]", "the", "cat"], "attention.png")
    'attention.png'
    """
    weights = np.asarray(matrix, dtype=np.float64)
    if weights.shape != (len(targetTokens), len(sourceTokens)):
        expected = (len(targetTokens), len(sourceTokens))
        raise ValueError(f"matrix: expected shape {expected} = (targets, sources), found {weights.shape}")
    width = max(4.5, 0.45 * len(sourceTokens) + 2.5)
    height = max(3.5, 0.4 * len(targetTokens) + 1.8)
    figure = _figure(width, height, layout="constrained")
    ax = figure.subplots()
    image = ax.imshow(weights, cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=ax, label="attention weight")
    ax.set_xticks(range(len(sourceTokens)), sourceTokens, rotation=60, ha="right")
    ax.set_yticks(range(len(targetTokens)), targetTokens)
    ax.set_xlabel("source (key) token")
    ax.set_ylabel("target (query) token")
    ax.set_title("Attention weights")
    return _save(figure, path)
