"""The model card's figures (matplotlib, Agg canvas, no pyplot state): confusion matrices, the
CNN's learning curves, CNN feature maps of one public-domain photo, and a reliability plot.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix

from artsy.config import EMOTIONS
from artsy.training.evaluate import THRESHOLD

#: Bins of the reliability plot.
RELIABILITY_BINS = 10
#: Conv layers and channels shown in the feature-map figure.
FEATURE_MAP_LAYERS = 3
FEATURE_MAP_CHANNELS = 8


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path


def plot_confusion(labels: np.ndarray, p_positive: np.ndarray, title: str, path: Path) -> Path:
    """Confusion matrix at the 0.5 threshold: counts and row percentages."""
    matrix = confusion_matrix(labels, (p_positive >= THRESHOLD).astype(int), labels=[0, 1])
    figure = Figure(figsize=(4, 3.6))
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    rows = matrix.sum(axis=1, keepdims=True).clip(min=1)
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, f"{count}\n{100 * count / rows[row, 0]:.0f}%", ha="center",
                  va="center", color="white" if count > matrix.max() / 2 else "black")
    axes.set(xticks=[0, 1], yticks=[0, 1], xticklabels=EMOTIONS, yticklabels=EMOTIONS,
             xlabel="predicted", ylabel="true", title=title)
    return _save(figure, path)


def plot_learning_curves(histories: Sequence[Mapping[str, Sequence[float]]], path: Path) -> Path:
    """CNN accuracy and loss per epoch, training vs validation, one line per CV fold."""
    figure = Figure(figsize=(10, 4))
    for index, metric in enumerate(("accuracy", "loss")):
        axes = figure.add_subplot(1, 2, index + 1)
        for fold, history in enumerate(histories):
            epochs = np.arange(1, len(history[metric]) + 1)
            axes.plot(epochs, history[metric], color="tab:blue", alpha=0.6,
                      label="training" if fold == 0 else None)
            if f"val_{metric}" in history:
                axes.plot(epochs, history[f"val_{metric}"], color="tab:orange", alpha=0.6,
                          label="validation" if fold == 0 else None)
        axes.set(xlabel="epoch", ylabel=metric, title=f"CNN {metric} ({len(histories)} folds)")
        axes.legend()
    return _save(figure, path)


def public_photo(size: int) -> np.ndarray:
    """A public-domain photo (scikit-image's ``chelsea``) decoded like every artsy image."""
    import skimage.data
    from PIL import Image

    from artsy.io import decode_image

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).save(buffer, format="PNG")
    return decode_image(buffer.getvalue(), size=size).pixels


def plot_feature_maps(maps: Sequence[tuple[str, np.ndarray]], image: np.ndarray,
                      path: Path) -> Path:
    """The input image and the first channels of the first conv layers' activations."""
    shown = list(maps[:FEATURE_MAP_LAYERS])
    figure = Figure(figsize=(1.6 * (FEATURE_MAP_CHANNELS + 1), 1.7 * len(shown)))
    for row, (name, activation) in enumerate(shown):
        axes = figure.add_subplot(len(shown), FEATURE_MAP_CHANNELS + 1,
                                  row * (FEATURE_MAP_CHANNELS + 1) + 1)
        axes.imshow(image)
        axes.set_title(name, fontsize=8)
        axes.axis("off")
        for channel in range(min(FEATURE_MAP_CHANNELS, activation.shape[-1])):
            axes = figure.add_subplot(len(shown), FEATURE_MAP_CHANNELS + 1,
                                      row * (FEATURE_MAP_CHANNELS + 1) + channel + 2)
            axes.imshow(activation[..., channel], cmap="viridis")
            axes.axis("off")
    return _save(figure, path)


def plot_reliability(labels: np.ndarray, probabilities: Mapping[str, np.ndarray],
                     path: Path) -> Path:
    """Observed positive rate against mean predicted probability, in equal-width bins."""
    figure = Figure(figsize=(5, 5))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    edges = np.linspace(0, 1, RELIABILITY_BINS + 1)
    for name, p_positive in probabilities.items():
        bins = np.clip(np.digitize(p_positive, edges[1:-1]), 0, RELIABILITY_BINS - 1)
        used = [b for b in range(RELIABILITY_BINS) if np.any(bins == b)]
        predicted = [p_positive[bins == b].mean() for b in used]
        observed = [labels[bins == b].mean() for b in used]
        brier = float(np.mean((p_positive - labels) ** 2))
        axes.plot(predicted, observed, marker="o", label=f"{name} (Brier {brier:.3f})")
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted p(positive)",
             ylabel="observed positive rate", title="Reliability (out-of-fold)")
    axes.legend(fontsize=8)
    return _save(figure, path)
