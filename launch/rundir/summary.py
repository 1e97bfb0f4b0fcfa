"""What `bprl run` prints at the end of a run, and the learning-curve PNG it leaves.

Read from the run's event files (launch/rundir/events.py): the evaluators' policy and prior
returns (mean over evaluators at each evaluation), the counts as the progress line sees
them (launch/rundir/progress.py).
"""

from __future__ import annotations

import os

import numpy as np

from bprl.launch.rundir import events
from bprl.launch.rundir.progress import RunProgress, format_duration

CURVE_FILE = "learning_curve.png"
_LABELS = {"policy_return": "policy", "prior_return": "prior alone"}


def eval_curves(workdir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'policy_return' / 'prior_return': (actor steps, mean return over evaluators)}."""
    by_metric: dict[str, dict[int, list[float]]] = {}
    names = sorted(os.listdir(workdir)) if os.path.isdir(workdir) else []
    for name in names:
        if not name.startswith("evaluator_"):
            continue
        scalars = events.read_scalars(os.path.join(workdir, name))
        for metric in _LABELS:
            for step, value in scalars.get(metric, []):
                by_metric.setdefault(metric, {}).setdefault(step, []).append(value)
    return {
        metric: (
            np.array(sorted(points), dtype=np.float64),
            np.array([np.mean(points[s]) for s in sorted(points)], dtype=np.float64),
        )
        for metric, points in by_metric.items()
    }


def write_learning_curve(workdir: str, title: str = "", out_dir: str | None = None) -> str | None:
    """`<out_dir or workdir>/learning_curve.png`: policy and prior evaluation returns;
    None if none."""
    from bprl.launch.rundir.plots import plot_curves

    curves = eval_curves(workdir)
    if not curves:
        return None
    return plot_curves(
        os.path.join(out_dir or workdir, CURVE_FILE),
        {_LABELS[metric]: curve for metric, curve in curves.items()},
        title=title or "evaluation return",
        ylabel="return per episode",
    )


def summary_lines(workdir: str, seconds: float, out_dir: str | None = None) -> list[str]:
    """The end-of-run summary: steps, time, first and last evaluation, where things are."""
    counts = RunProgress(workdir).poll()
    lines = [
        f"summary: {counts.actor_steps:,} actor steps, {counts.learner_steps:,} learner "
        f"steps in {format_duration(seconds)}"
    ]
    curves = eval_curves(workdir)
    for metric, label in _LABELS.items():
        if metric in curves:
            steps, values = curves[metric]
            lines.append(
                f"  {label + ' return:':<22}{values[0]:8.1f} at {int(steps[0]):,} actor steps "
                f"-> {values[-1]:8.1f} at {int(steps[-1]):,}"
            )
    if curves:
        lines.append(f"  learning curve: {os.path.join(out_dir or workdir, CURVE_FILE)}")
    lines.append(f"  node logs: {os.path.join(out_dir or workdir, 'logs')}")
    lines.append(f"  TensorBoard: tensorboard --logdir {workdir}")
    return lines
