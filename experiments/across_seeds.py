"""A per-seed statistic of an arm, summarised across its seeds with a bootstrap interval.

The analysis scripts (experiments/next_target_table.py, experiments/prior_modes.py) take
`--arm NAME=DIR`, where DIR is a sweep's directory (its finished `seed_<k>` runs; all of
them while none has finished) or one run. Each computes its statistic once per seed; this
module says what the arm's figure is: the mean over seeds with a 95% percentile bootstrap
interval over seeds (seeds resampled with replacement, so the interval stays within the
seeds' range), and an arm's difference from another arm the same way (each arm's seeds
resampled on their own).
"""

from __future__ import annotations

import os

import numpy as np
from absl import flags

from bprl.launch.rundir import layout

BOOTSTRAP_SAMPLES = 10_000
# The analysis scripts' shared flags (defined once: absl refuses a second definition, and
# the tests import both scripts).
ARMS = flags.DEFINE_multi_string("arm", [], "NAME=DIR: a sweep's seeds (or one run).")
OUT_TABLE = flags.DEFINE_string("out_table", "", "Markdown table to write.")
OUT_FIGURE = flags.DEFINE_string("out_figure", "", "PNG figure to write.")


def emit_table(text: str) -> None:
    """Prints a script's markdown table and writes it to --out_table when given (ending
    with one newline)."""
    print(text)
    if OUT_TABLE.value:
        with open(OUT_TABLE.value, "w") as f:
            f.write(text if text.endswith("\n") else text + "\n")


def arm_runs(path: str) -> list[str]:
    """The run directories of an arm: DIR's finished seeds (all seeds while none has
    finished), or DIR itself when it is one run."""
    seeds = layout.seed_dirs(path)
    if not seeds:
        if not os.path.exists(layout.config_path(path)):
            raise ValueError(f"{path}: neither a sweep (seed_<k>/) nor a run (config.json)")
        return [path]
    done = [d for d in seeds if layout.is_done(d)]
    return done or seeds


def parse_arms(specs: list[str]) -> dict[str, list[str]]:
    """{name: run dirs} from NAME=DIR flags."""
    arms = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if not name or not path:
            raise ValueError(f"--arm takes NAME=DIR, got {spec!r}")
        arms[name] = arm_runs(path)
    return arms


def mean_interval(values, seed: int = 0) -> tuple[float, float, float]:
    """(mean, 95% low, 95% high) over the finite values (nan, nan, nan when none)."""
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = rng.choice(values, size=(BOOTSTRAP_SAMPLES, values.size)).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def difference_interval(a, b, seed: int = 0) -> tuple[float, float, float]:
    """(mean(a) - mean(b), 95% low, high), each arm's finite values resampled on its own."""
    a = np.asarray([v for v in a if np.isfinite(v)], dtype=float)
    b = np.asarray([v for v in b if np.isfinite(v)], dtype=float)
    if a.size == 0 or b.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    diffs = rng.choice(a, size=(BOOTSTRAP_SAMPLES, a.size)).mean(axis=1) - rng.choice(
        b, size=(BOOTSTRAP_SAMPLES, b.size)
    ).mean(axis=1)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(a.mean() - b.mean()), float(low), float(high)


def fmt(interval: tuple[float, float, float], digits: int = 2) -> str:
    """'m [lo, hi]' (or '-' when undefined)."""
    mean, low, high = interval
    if not np.isfinite(mean):
        return "-"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
