"""Pictures of a prediction: the frame-influence strip (the paper's Figure 4) and emotion over time.

Matplotlib runs with its file-only Agg backend, so figures are written on machines without a display.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib import cm, colors  # noqa: E402

from tg_dfer.inference.records import min_max  # noqa: E402
from tg_dfer.io.atomic import atomic_path  # noqa: E402

# Sec. 4.5.2: the paper's colour bar runs from dark purple (low attention) to light yellow (high): viridis.
INFLUENCE_CMAP = "viridis"


def influence_strip(crops: list[np.ndarray], influence: np.ndarray, labels: list[str], title: str,
                    path: str | Path, dpi: int = 72) -> Path:
    """The crops the model saw in one row, each framed in the colour of its min-max-normalised influence.

    ``crops`` are (H, W, 3) uint8 RGB images, ``influence`` (T,) the raw per-frame scores of the
    predicted class, ``labels`` one caption per frame (time or frame number). Writes a PNG.
    """
    if not crops or len(crops) != len(influence) or len(labels) != len(crops):
        raise ValueError(f"{len(crops)} crops, {len(influence)} influence values and {len(labels)} labels")
    T = len(crops)
    normalised = min_max(influence)
    cmap = plt.get_cmap(INFLUENCE_CMAP)
    figure, axes = plt.subplots(1, T, figsize=(1.05 * T + 1.0, 1.9), squeeze=False,
                                gridspec_kw={"wspace": 0.06, "left": 0.01, "right": 0.9, "top": 0.74, "bottom": 0.1})
    for ax, crop, value, label in zip(axes[0], crops, normalised, labels):
        ax.imshow(crop)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor(cmap(value))
            spine.set_linewidth(5)
        ax.set_xlabel(label, fontsize=7, labelpad=2)
    bar_axis = figure.add_axes([0.915, 0.12, 0.012, 0.6])
    bar = figure.colorbar(cm.ScalarMappable(colors.Normalize(0, 1), cmap), cax=bar_axis)
    bar.set_label("influence\n(min-max)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    figure.suptitle(title, fontsize=9, x=0.01, ha="left")
    return _save(figure, path, dpi)


def emotion_timeline(times: np.ndarray, probs: np.ndarray, class_names: list[str], title: str,
                     path: str | Path, dpi: int = 80) -> Path:
    """Class probabilities (W, C) of sliding windows against their centre times (W,) in seconds."""
    times, probs = np.asarray(times, dtype=float), np.asarray(probs, dtype=float)
    if probs.ndim != 2 or probs.shape != (len(times), len(class_names)):
        raise ValueError(f"probs of shape {probs.shape} for {len(times)} windows and {len(class_names)} classes")
    figure, ax = plt.subplots(figsize=(7, 3))
    for k, name in enumerate(class_names):
        ax.plot(times, probs[:, k], marker="o", markersize=3, label=name)
    ax.set_xlabel("time (s, window centre)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=min(4, len(class_names)), loc="upper right")
    ax.set_title(title, fontsize=9)
    figure.tight_layout()
    return _save(figure, path, dpi)


def _save(figure, path: str | Path, dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=dpi, format="png")
    finally:
        plt.close(figure)
    return path
