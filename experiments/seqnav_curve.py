"""Targets reached per episode against actor steps, from a `seqnav_pointmass` run directory.

    .venv/bin/python experiments/seqnav_curve.py runs/seqnav_pm_DATE \
        --out docs/figures/seqnav_pointmass_curve.png [--bin 20000]

Reads the run's TensorBoard event files (`launch.events.read_scalars`): the evaluator's
`policy_return` (the deterministic policy) and `prior_return` (the prior alone), and every
actor's `episode_return` (the sampling policy). In `seqnav_pointmass` an episode's return
is the number of targets reached (+1 each), so these are targets reached per episode.
Writes one PNG and prints a Markdown table: per bin of actor steps, the mean of each curve
over the points that fall in the bin (evaluator points are at the actor-step count when
the evaluation started; actor points at the shared count when the episode ended).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bprl.launch.rundir import (
    events,  # noqa: E402
    layout,  # noqa: E402
)

Curve = list[tuple[int, float]]


def read_run(workdir: str) -> dict[str, Curve]:
    """{"policy": ..., "prior": ..., "actors": ...}: (actor steps, targets reached) points."""
    evaluator: dict[str, Curve] = {}
    actors: Curve = []
    for logdir in events.run_dirs(workdir):
        scalars = events.read_scalars(logdir)
        relative = os.path.relpath(logdir, workdir)
        if relative.startswith("evaluator_"):
            for tag in ("policy_return", "prior_return"):
                evaluator.setdefault(tag, []).extend(scalars.get(tag, []))
        elif relative.split(os.sep)[0] == "actors":
            actors.extend(scalars.get("episode_return", []))
    budget = _actor_step_budget(workdir)
    curves = {
        name: sorted((step, value) for step, value in curve if step < budget)
        for name, curve in (
            ("policy", evaluator.get("policy_return", [])),
            ("prior", evaluator.get("prior_return", [])),
            ("actors", actors),
        )
    }
    if not curves["policy"] and not curves["actors"]:
        raise FileNotFoundError(f"no evaluator or actor returns under {workdir!r}")
    return curves


def _actor_step_budget(workdir: str) -> float:
    """The run's stop.max_actor_steps (from its config.json), else no limit.

    Points at or past the budget (episodes that end as the program shuts down) are left
    out, so the last bin is not one stray episode.
    """
    try:
        with open(layout.config_path(workdir)) as f:
            budget = json.load(f)["stop"]["max_actor_steps"]
    except (OSError, KeyError, ValueError):
        return float("inf")
    return float(budget) if budget else float("inf")


def binned(curve: Curve, width: int) -> dict[int, float]:
    """{bin start: mean value} over the points whose step falls in [start, start + width)."""
    groups: dict[int, list[float]] = {}
    for step, value in curve:
        groups.setdefault(step // width * width, []).append(value)
    return {start: float(np.mean(values)) for start, values in sorted(groups.items())}


def table(curves: dict[str, Curve], width: int) -> str:
    columns = {name: binned(curve, width) for name, curve in curves.items()}
    starts = sorted(set().union(*columns.values()))
    lines = [
        "| actor steps | policy (eval, deterministic) | prior (eval) | actors (mean, sampling) |",
        "|---:|---:|---:|---:|",
    ]
    for start in starts:
        cells = []
        for name in ("policy", "prior", "actors"):
            value = columns[name].get(start)
            cells.append("-" if value is None else f"{value:.2f}")
        lines.append(f"| {start:,}-{start + width:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(curves: dict[str, Curve], width: int, out: str, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=100)
    styles = {
        "policy": ("policy (evaluator, deterministic)", "tab:blue"),
        "prior": ("prior alone (evaluator)", "tab:orange"),
        "actors": ("actors (sampling policy), mean per bin", "tab:green"),
    }
    for name, (label, colour) in styles.items():
        curve = curves[name]
        if not curve:
            continue
        if name == "actors":
            means = binned(curve, width)
            xs = [start + width / 2 for start in means]
            ax.plot(xs, list(means.values()), "-o", ms=3, color=colour, label=label)
        else:
            xs, ys = zip(*curve, strict=True)
            ax.plot(xs, ys, ".", ms=4, alpha=0.35, color=colour)
            means = binned(curve, width)
            ax.plot(
                [start + width / 2 for start in means],
                list(means.values()),
                "-",
                color=colour,
                label=f"{label}, mean per bin",
            )
    ax.set_xlabel("actor steps")
    ax.set_ylabel("targets reached per episode")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", help="the run directory given to `bprl run --workdir`")
    parser.add_argument("--out", default="seqnav_pointmass_curve.png", help="PNG to write")
    parser.add_argument("--bin", type=int, default=20_000, help="actor steps per table row")
    args = parser.parse_args(argv)
    curves = read_run(args.workdir)
    title = f"seqnav_pointmass: {os.path.basename(os.path.normpath(args.workdir))}"
    plot(curves, args.bin, args.out, title)
    print(table(curves, args.bin))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
