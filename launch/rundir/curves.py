"""Seeds' learning curves on one grid, and their figure: mean and a band across seeds.

Seeds log at different actor steps (evaluations are asynchronous, runs end at different
steps), so each seed is interpolated onto one grid that runs from the latest first step
to the last step any seed reached. A grid point beyond a seed's last step averages the
seeds still followed there; the figure draws those stretches dashed (fewer seeds), so the
curve reaches the end of the budget the table reports. The band is a bootstrap percentile
interval of the mean across seeds: it never leaves the range of the seeds' values (a
t-interval of non-negative returns can go below zero).
"""

from __future__ import annotations

import numpy as np

from bprl.launch.rundir import plots

GRID_POINTS = 200  # at most this many grid points (the union of the seeds' steps if fewer)
BAND_SAMPLES = 2_000


def on_grid(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(grid, values [seeds, grid]): each seed interpolated on the grid, nan past its end."""
    start = max(s[0] for s, _ in curves)
    end = max(s[-1] for s, _ in curves)
    grid = np.unique(np.concatenate([s for s, _ in curves]))
    grid = grid[(grid >= start) & (grid <= end)]
    if len(grid) > GRID_POINTS:
        grid = np.linspace(start, end, GRID_POINTS)
    if len(grid) == 0:
        grid = np.array([end])
    values = np.stack([np.where(grid <= s[-1], np.interp(grid, s, v), np.nan) for s, v in curves])
    return grid, values


def mean_curve(
    curves: list[tuple[np.ndarray, np.ndarray]], seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(grid, mean, band low, band high, seeds at each point): the mean over the seeds
    followed at each grid point and its 95% bootstrap percentile band (the mean itself
    where one seed is left)."""
    grid, values = on_grid(curves)
    present = ~np.isnan(values)
    count = present.sum(axis=0)
    mean = np.nanmean(values, axis=0)
    low, high = mean.copy(), mean.copy()
    rng = np.random.default_rng(seed)
    for n in np.unique(count):
        if n < 2:
            continue
        columns = np.nonzero(count == n)[0]
        # the n seeds present in each of these columns, resampled BAND_SAMPLES times
        block = np.stack([values[present[:, c], c] for c in columns], axis=1)  # [n, cols]
        picks = rng.integers(0, n, (BAND_SAMPLES, n))
        means = block[picks].mean(axis=1)  # [samples, cols]
        low[columns] = np.quantile(means, 0.025, axis=0)
        high[columns] = np.quantile(means, 0.975, axis=0)
    return grid, mean, low, high, count


def plot_metric(metric: str, by_variant: dict, path: str, threshold: float | None = None) -> str:
    """Mean and 95% band per variant against actor steps (dashed where some seeds had
    ended); the threshold as a dashed black line."""
    fig, ax = plots.new_figure()
    for variant, seeds in by_variant.items():
        steps, mean, low, high, count = mean_curve(seeds)
        every = count == len(seeds)
        (line,) = ax.plot(
            np.where(every, steps, np.nan),
            np.where(every, mean, np.nan),
            marker="o" if len(steps) < 20 else None,
            ms=3,
        )
        line.set_label(f"{variant} ({len(seeds)} seeds)")
        if not every.all():  # from the last point all seeds share, with the seeds left
            last_shared = int(np.nonzero(every)[0][-1]) if every.any() else 0
            ax.plot(steps[last_shared:], mean[last_shared:], linestyle="--", color=line.get_color())
        if len(seeds) > 1:
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
    if threshold is not None:
        ax.axhline(threshold, color="black", linestyle="--", linewidth=1)
        ax.plot([], [], color="black", linestyle="--", label=f"threshold {threshold:g}")
    title = f"{metric}: mean and 95% band across seeds\n(dashed: where some seeds had ended)"
    return plots.save_figure(fig, ax, path, title, metric.replace("_", " "))
