"""Learning-curve figures (matplotlib, no display): one module that launch/ and reports use."""

from __future__ import annotations

import numpy as np


def new_figure():
    """(figure, axes) for one learning-curve chart, drawn without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4.5))


def save_figure(fig, ax, path: str, title: str, ylabel: str, xlabel: str = "actor steps") -> str:
    """Labels, grid and legend, then the PNG at `path`; closes the figure."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_curves(
    path: str,
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    title: str,
    ylabel: str,
    xlabel: str = "actor steps",
) -> str:
    """One line per label, `curves[label] = (x, y)`, written as a PNG at `path`."""
    fig, ax = new_figure()
    for label, (steps, values) in curves.items():
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=3, label=label)
    return save_figure(fig, ax, path, title, ylabel, xlabel)
