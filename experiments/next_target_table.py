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

Across seeds (issue 28): `--arm NAME=SWEEP_DIR` (repeatable) records `--prior_episodes` prior-only
episodes of every seed's last checkpoint and reports P(favoured successor) per seed, the
arm's mean with a 95% bootstrap interval over seeds, and its difference from the first
arm (experiments/across_seeds.py). A seed with fewer than `--min_triples` visit triples
(a policy that never learned to visit targets leaves its prior nothing to show) has no
value, and the table says how many seeds had one.

    python experiments/next_target_table.py --arm mlp=SWEEPS/seqnav_mlp \\
        --arm lstm=SWEEPS/seqnav_lstm --arm none=SWEEPS/seqnav_noprior --out_table arms.md
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

from bprl.environments import markov
from bprl.experiments import across_seeds
from bprl.experiments.trajectories import visits
from bprl.launch.reuse.rollout import load_run, record_rollouts

_ROLLOUTS = flags.DEFINE_multi_string("rollouts", [], "NAME=FILE.npz from `bprl rollout`.")
_P = flags.DEFINE_float("p", 0.9, "the task's p (probability of the favoured successor).")
_EPISODES = flags.DEFINE_integer("prior_episodes", 20, "--arm: prior-only episodes per seed.")
# 50 triples: a proportion's standard error is then at most 0.07 (0.11 at 20).
_MIN_TRIPLES = flags.DEFINE_integer("min_triples", 50, "--arm: triples a seed's value needs.")

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


def on_target_share(data: dict) -> float:
    """Share of all steps the body spends within reach of some target: high with few
    visits is a prior that goes to a target and stays (the multi-task room's "reach and
    stay"), low with few visits one that wanders between them."""
    task = str(data["task"])
    positions = data[f"observation/{POSITION_KEYS[task]}"][:, :2]  # [L, 2]
    targets = data["observation/target_positions"].reshape(len(positions), -1, 2)  # [L, K, 2]
    distance = np.linalg.norm(positions[:, None] - targets, axis=-1)  # [L, K]
    return float(np.mean(distance.min(axis=1) < REACH_RADIUS[task]))


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


def seed_statistic(run_dir: str, episodes: int, min_triples: int) -> dict:
    """The prior's P(favoured successor) in `episodes` prior-only episodes of one run."""
    config, networks, record = load_run(run_dir)
    data = record_rollouts(config, networks, True, episodes, seed=12345)
    data["task"] = np.asarray(config.task)
    sequences = episode_visits(data)
    k = data["observation/target_positions"].shape[-1] // 2
    favoured, triples = favoured_probability(triple_counts(sequences, k))
    return {
        "run": run_dir,
        "favoured": favoured if triples >= min_triples else float("nan"),
        "triples": triples,
        "visits_per_episode": float(np.mean([len(seq) for seq in sequences])),
        "on_target": on_target_share(data),
        "learner_steps": int(record.get("counts", {}).get("learner_steps", -1)),
        "prior_kind": str(config.prior.kind),
        "num_targets": k,
    }


def arms_table(arms: dict[str, list[dict]], p: float, num_targets: int) -> str:
    """One row per arm: per-seed values, the mean with its interval, minus the first arm."""
    first = next(iter(arms))
    lines = [
        f"P(next = the favoured successor) of the prior alone; the Markov table's: {p:.2f}, "
        f"a memoryless prior's best: {1 / (num_targets - 1):.2f}. Mean over seeds with a 95% "
        "bootstrap interval over seeds; '-': fewer visit triples than the minimum. On a "
        "target: the share of the prior's steps within reach of some target.",
        "",
        "| arm | prior kind | seeds with a value | visits / episode (per seed) "
        "| on a target (per seed) "
        f"| triples (per seed) | P(favoured) per seed | mean [95% CI] | minus {first} [95% CI] |",
        "|---|---|---:|---|---|---|---|---|---|",
    ]
    for name, seeds in arms.items():
        values = [s["favoured"] for s in seeds]
        cells = ", ".join("-" if not np.isfinite(v) else f"{v:.2f}" for v in values)
        visits = ", ".join(f"{s['visits_per_episode']:.1f}" for s in seeds)
        on_target = ", ".join(f"{s.get('on_target', float('nan')):.2f}" for s in seeds)
        triples = ", ".join(str(s["triples"]) for s in seeds)
        diff = (
            "-"
            if name == first
            else across_seeds.fmt(
                across_seeds.difference_interval(values, [s["favoured"] for s in arms[first]])
            )
        )
        lines.append(
            f"| {name} | {seeds[0]['prior_kind']} | {int(np.sum(np.isfinite(values)))} of "
            f"{len(values)} | {visits} | {on_target} | {triples} | {cells} "
            f"| {across_seeds.fmt(across_seeds.mean_interval(values))} | {diff} |"
        )
    return "\n".join(lines) + "\n"


def main_arms(specs: list[str]) -> str:
    arms = {}
    for name, runs in across_seeds.parse_arms(specs).items():
        arms[name] = [seed_statistic(r, _EPISODES.value, _MIN_TRIPLES.value) for r in runs]
    num_targets = next(iter(arms.values()))[0]["num_targets"]
    return arms_table(arms, _P.value, num_targets)


def main(argv: list[str]) -> None:
    del argv
    if across_seeds.ARMS.value:
        across_seeds.emit_table(main_arms(across_seeds.ARMS.value))
        return
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
    across_seeds.emit_table(table)
    if across_seeds.OUT_FIGURE.value:
        draw(results, across_seeds.OUT_FIGURE.value)
        print(f"figure: {across_seeds.OUT_FIGURE.value}")


if __name__ == "__main__":
    app.run(main)
