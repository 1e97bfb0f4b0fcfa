"""The talk's analysis: which target comes next, given the last two visited?

Reads rollouts recorded by `bprl rollout` (prior alone, or policy) on sequential
navigation, finds the targets each episode *visits* (the body enters a target's reach
radius; a visit to the same target twice in a row counts once), and tabulates the
empirical P(next | previous, current) beside the task's second-order Markov table.
A prior with memory can reproduce the table's structure (the favoured successor with
probability p); a memoryless prior cannot do better than the first-order marginal, which
is uniform over the other targets.

    python experiments/next_target_table.py --rollouts lstm=RUN_A/rollouts/prior.npz \\
        --rollouts mlp=RUN_B/rollouts/prior.npz --out_table table.md --out_figure table.png
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

from bprl.environments import markov
from bprl.experiments.trajectories import visits

_ROLLOUTS = flags.DEFINE_multi_string("rollouts", [], "NAME=FILE.npz from `bprl rollout`.")
_OUT_TABLE = flags.DEFINE_string("out_table", "", "Markdown table to write.")
_OUT_FIGURE = flags.DEFINE_string("out_figure", "", "PNG figure to write.")
_P = flags.DEFINE_float("p", 0.9, "the task's p (probability of the favoured successor).")

POSITION_KEYS = {"seqnav_pointmass": "point_mass/position", "seqnav_ant": "walker_position"}
REACH_RADIUS = {"seqnav_pointmass": 0.1, "seqnav_ant": 0.5}


def episode_visits(data: dict) -> list[list[int]]:
    """Visit sequences of every episode in a rollout file's arrays."""
    task = str(data["task"])
    positions = data[f"observation/{POSITION_KEYS[task]}"][:, :2]
    targets_flat = data["observation/target_positions"]
    out = []
    for episode in np.unique(data["episode"]):
        rows = data["episode"] == episode
        targets = targets_flat[rows][0].reshape(-1, 2)
        out.append(visits(positions[rows], targets, REACH_RADIUS[task]))
    return out


def triple_counts(sequences: list[list[int]], num_targets: int) -> np.ndarray:
    """counts[i, j, k] of (previous, current, next) = (i, j, k) in the visit sequences."""
    counts = np.zeros((num_targets,) * 3)
    for seq in sequences:
        for i, j, k in zip(seq, seq[1:], seq[2:], strict=False):
            counts[i, j, k] += 1
    return counts


def conditional(counts: np.ndarray) -> np.ndarray:
    totals = counts.sum(axis=-1, keepdims=True)
    return np.divide(counts, totals, out=np.full_like(counts, np.nan), where=totals > 0)


def favoured_probability(counts: np.ndarray) -> tuple[float, int]:
    """P(next = the table's favoured successor), pooled over all (previous, current)."""
    k = counts.shape[0]
    hits = total = 0.0
    for i in range(k):
        for j in range(k):
            if i != j:
                hits += counts[i, j, markov.favoured_successor(i, j, k)]
                total += counts[i, j].sum()
    return (hits / total if total else float("nan")), int(total)


def summarise(named: dict[str, dict], p: float) -> tuple[str, dict]:
    """Markdown table and the per-source conditionals."""
    k = None
    results = {}
    for name, data in named.items():
        sequences = episode_visits(data)
        k = data["observation/target_positions"].shape[-1] // 2
        counts = triple_counts(sequences, k)
        favoured, triples = favoured_probability(counts)
        results[name] = {
            "conditional": conditional(counts),
            "favoured": favoured,
            "triples": triples,
            "visits_per_episode": float(np.mean([len(s) for s in sequences])),
            "episodes": len(sequences),
            "head": str(data["head"]),
            "prior_kind": str(data["prior_kind"]),
            "learner_steps": int(data["learner_steps"]),
        }
    truth = markov.transition_table(k, p)
    lines = [
        "| source | head | prior kind | episodes | visits / episode | triples "
        "| P(favoured successor) |",
        "|---|---|---|---:|---:|---:|---:|",
        f"| Markov table | - | - | - | - | - | {p:.2f} (uniform: {1 / (k - 1):.2f}) |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['head']} | {r['prior_kind']} | {r['episodes']} "
            f"| {r['visits_per_episode']:.1f} | {r['triples']} | {r['favoured']:.2f} |"
        )
    lines += ["", "P(next | previous, current) per pair; columns are the next target.", ""]
    header = "| previous, current | " + " | ".join(
        f"next={c}: table / " + " / ".join(results) for c in range(k)
    )
    lines += [header + " |", "|---|" + "---|" * k]
    for i in range(k):
        for j in range(k):
            if i == j:
                continue
            cells = []
            for c in range(k):
                values = [f"{truth[i, j, c]:.2f}"] + [
                    "-"
                    if np.isnan(r["conditional"][i, j, c])
                    else f"{r['conditional'][i, j, c]:.2f}"
                    for r in results.values()
                ]
                cells.append(" / ".join(values))
            lines.append(f"| {i}, {j} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", {"truth": truth, **results}


def draw(results: dict, path: str) -> None:
    """Heat maps of P(next | previous, current): the table, then each source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth = results["truth"]
    k = truth.shape[0]
    pairs = [(i, j) for i in range(k) for j in range(k) if i != j]
    panels = [("Markov table", truth)] + [
        (f"{name} ({r['head']}, P(fav)={r['favoured']:.2f})", r["conditional"])
        for name, r in results.items()
        if name != "truth"
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 5), sharey=True)
    for ax, (title, table) in zip(np.atleast_1d(axes), panels, strict=True):
        grid = np.array([table[i, j] for i, j in pairs])
        image = ax.imshow(np.nan_to_num(grid, nan=0.0), vmin=0, vmax=1, cmap="viridis")
        ax.set_title(title, fontsize=8)
        ax.set_xticks(range(k))
        ax.set_xlabel("next target")
        ax.set_yticks(range(len(pairs)))
        ax.set_yticklabels([f"{i}->{j}" for i, j in pairs])
    np.atleast_1d(axes)[0].set_ylabel("previous -> current")
    fig.colorbar(image, ax=axes, shrink=0.6, label="probability")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str]) -> None:
    del argv
    named = {}
    for item in _ROLLOUTS.value:
        name, _, path = item.partition("=")
        if not path:
            raise app.UsageError(f"--rollouts takes NAME=FILE.npz, got {item!r}")
        with np.load(path) as f:
            named[name] = {key: f[key] for key in f.files}
    if not named:
        raise app.UsageError("give at least one --rollouts NAME=FILE.npz")
    table, results = summarise(named, _P.value)
    print(table)
    if _OUT_TABLE.value:
        with open(_OUT_TABLE.value, "w") as f:
            f.write(table)
    if _OUT_FIGURE.value:
        draw(results, _OUT_FIGURE.value)
        print(f"figure: {_OUT_FIGURE.value}")


if __name__ == "__main__":
    app.run(main)
