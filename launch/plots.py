"""Learning-curve figures (matplotlib, no display): one module that launch/ and reports use."""

from __future__ import annotations

import numpy as np


def plot_curves(
    path: str,
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    title: str,
    ylabel: str,
    xlabel: str = "actor steps",
) -> str:
    """One line per label, `curves[label] = (x, y)`, written as a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, (steps, values) in curves.items():
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
