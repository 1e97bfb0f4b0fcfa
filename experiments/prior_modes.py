"""The talk's "fixed configuration" analysis: is a prior that does not see the goal multi-modal?

For trained runs of `multitask_pointmass:fixed_config` (every episode starts at the room's
centre; only the goal `task_id`, which the prior never sees, changes), this script:
- samples the prior's action at the start state many times, and the policy's for each goal
  (the Gaussian sample u, before the tanh squash);
- plays the prior alone (and the policy) from the start and records which target each
  episode reaches first (within the task's reach radius), or none;
- writes a Markdown table (distribution of the first target reached, mean return, number
  of targets reached first in at least 10% of the prior's episodes = its modes) and a PNG
  (per run: action samples at the start; prior-only trajectories).

    python experiments/prior_modes.py --run flat=RUN_A --run hierarchical=RUN_B \\
        --out_table docs/figures/prior_modes_pointmass.md \\
        --out_figure docs/figures/prior_modes_pointmass.png

Across seeds (issue 28): `--arm NAME=SWEEP_DIR` (repeatable) analyses every seed of a
sweep and reports per seed the prior's modes, its effective number of targets (exp of the
entropy of the first-target shares among the episodes that reach one: 1 for a prior that
always heads for the same target, 4 for one spread evenly over the 4) and the share of
its episodes that reach a target, with each arm's mean, a 95% bootstrap interval over
seeds and the difference from the first arm (experiments/across_seeds.py).

    python experiments/prior_modes.py --arm hierarchical=SWEEPS/mt_hier \\
        --arm flat=SWEEPS/mt_flat_latent --out_table modes.md
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

from bprl.agents.actor import GaussianActor
from bprl.experiments import across_seeds
from bprl.experiments.trajectories import visits
from bprl.launch.program import builders
from bprl.launch.reuse.rollout import load_run, record_rollouts

_RUNS = flags.DEFINE_multi_string("run", [], "NAME=RUN_DIR of a multitask_pointmass run.")
_SAMPLES = flags.DEFINE_integer("samples", 2000, "action samples at the start state per head.")
_EPISODES = flags.DEFINE_integer("episodes", 100, "prior-only (and policy) episodes per run.")

POSITION_KEY = "observation/point_mass/position"
REACH_RADIUS = 0.1
MODE_SHARE = 0.1  # a target reached first in >= 10% of the episodes counts as a mode


def start_action_samples(config, networks, samples: int, seed: int) -> dict[str, np.ndarray]:
    """Samples u at the start state (before the tanh/clip): the prior's, the policy's per goal.

    Shown before the squash because a wide Gaussian squashed by tanh piles its mass in the
    corners of the action box, which would look like modes that the head does not have.
    """
    env = builders.RunBuilder(config).make_environment(seed)
    observation = dict(env.reset().observation)
    env.close()
    out = {}
    prior = GaussianActor(networks.prior, stochastic=True, seed=seed)
    out["prior"] = np.stack([prior.select_action(observation) for _ in range(samples)])
    num_goals = observation["task_id"].shape[-1]
    policy = GaussianActor(networks.policy, stochastic=True, seed=seed + 1)
    for goal in range(num_goals):
        goal_observation = {**observation, "task_id": np.eye(num_goals, dtype=np.float32)[goal]}
        out[f"policy_goal_{goal}"] = np.stack(
            [policy.select_action(goal_observation) for _ in range(samples // num_goals)]
        )
    return out


def first_targets(data: dict[str, np.ndarray]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Per episode: the first target reached (-1: none), its xy path, and the targets."""
    positions = data[POSITION_KEY][:, :2]
    targets = data["observation/target_positions"][0].reshape(-1, 2)
    firsts, paths = [], []
    for episode in np.unique(data["episode"]):
        path = positions[data["episode"] == episode]
        order = visits(path, targets, REACH_RADIUS)
        firsts.append(order[0] if order else -1)
        paths.append(path)
    return np.asarray(firsts), paths, targets


def analyse(name: str, workdir: str, samples: int, episodes: int) -> dict:
    config, networks, record = load_run(workdir)
    if config.task != "multitask_pointmass" or not config.task_kwargs.get("fixed_start", False):
        raise ValueError(f"{workdir}: needs a multitask_pointmass run with fixed_start=True")
    result = {
        "name": name,
        "kind": config.prior.kind,
        "actor_steps": record["counts"].get("actor_steps", -1),
        "learner_steps": record["counts"].get("learner_steps", -1),
        "actions": start_action_samples(config, networks, samples, seed=7),
    }
    for head in ("prior", "policy"):
        data = record_rollouts(config, networks, head == "prior", episodes, seed=12345)
        firsts, paths, targets = first_targets(data)
        returns = np.bincount(data["episode"], weights=data["reward"])
        result[head] = {"firsts": firsts, "paths": paths, "return": float(returns.mean())}
        result["targets"] = targets
    return result


def first_target_shares(firsts: np.ndarray, num_targets: int) -> np.ndarray:
    """Shares of episodes whose first target was 0..K-1, then none (last entry)."""
    counts = np.bincount(np.where(firsts < 0, num_targets, firsts), minlength=num_targets + 1)
    return counts / max(len(firsts), 1)


def modality(firsts: np.ndarray, num_targets: int) -> dict[str, float]:
    """A head's modes (targets reached first in >= 10% of its episodes), effective number
    of targets (exp of the entropy of the shares among episodes reaching one; nan when
    none does) and the share of episodes that reach a target."""
    shares = first_target_shares(firsts, num_targets)
    reached = shares[:num_targets]
    total = reached.sum()
    if total > 0:
        q = reached[reached > 0] / total
        effective = float(np.exp(-np.sum(q * np.log(q))))
    else:
        effective = float("nan")
    return {
        "modes": float(np.sum(reached >= MODE_SHARE)),
        "effective_targets": effective,
        "reach": float(total),
    }


ARM_STATISTICS = (
    ("modes", "modes (targets >= 10%)"),
    ("effective_targets", "effective number of targets"),
    ("reach", "share of episodes reaching a target"),
)


def arms_table(arms: dict[str, list[dict]]) -> str:
    """Per arm and statistic of the prior alone: per-seed values, mean [95% CI], minus the
    first arm [95% CI]; then the policies' mean returns."""
    first = next(iter(arms))
    lines = [
        "| arm | prior kind | statistic (prior alone) | per seed | mean [95% CI] "
        f"| minus {first} [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in ARM_STATISTICS + (("policy_return", "policy's mean return"),):
        for name, seeds in arms.items():
            values = [s[key] for s in seeds]
            other = [s[key] for s in arms[first]]
            diff = across_seeds.difference_interval(values, other)
            lines.append(
                f"| {name} | {seeds[0]['kind']} | {label} | "
                + ", ".join("-" if not np.isfinite(v) else f"{v:.2f}" for v in values)
                + f" | {across_seeds.fmt(across_seeds.mean_interval(values))} | "
                + ("-" if name == first else across_seeds.fmt(diff))
                + " |"
            )
    return "\n".join(lines)


def seed_modality(workdir: str, samples: int, episodes: int) -> dict:
    """One seed's statistics (experiments/across_seeds.py summarises them)."""
    result = analyse("seed", workdir, samples, episodes)
    stats = modality(result["prior"]["firsts"], len(result["targets"]))
    return {**stats, "kind": result["kind"], "policy_return": result["policy"]["return"]}


def table(results: list[dict]) -> str:
    num_targets = len(results[0]["targets"])
    header = " | ".join(f"target {k}" for k in range(num_targets))
    lines = [
        f"| run (prior kind) | head | mean return | first target reached: {header} | none "
        "| modes (targets >= 10%) |",
        "|---|---|---:|" + "---:|" * (num_targets + 2),
    ]
    for r in results:
        for head in ("prior", "policy"):
            shares = first_target_shares(r[head]["firsts"], num_targets)
            modes = int(np.sum(shares[:num_targets] >= MODE_SHARE))
            cells = " | ".join(f"{s:.2f}" for s in shares)
            lines.append(
                f"| {r['name']} ({r['kind']}) | {head} | {r[head]['return']:.1f} | {cells} "
                f"| {modes} |"
            )
    return "\n".join(lines)


def figure(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = ["tab:red", "tab:blue", "tab:green", "tab:orange"]
    fig, axes = plt.subplots(len(results), 2, figsize=(10, 5 * len(results)), squeeze=False)
    for row, r in zip(axes, results, strict=True):
        ax = row[0]
        prior = r["actions"]["prior"]
        ax.scatter(prior[:, 0], prior[:, 1], s=3, c="black", alpha=0.25, label="prior")
        for goal, colour in enumerate(colours[: len(r["targets"])]):
            u = r["actions"][f"policy_goal_{goal}"]
            ax.scatter(u[:, 0], u[:, 1], s=3, c=colour, alpha=0.3, label=f"policy, goal {goal}")
        ax.set(aspect="equal", xlabel="u_x", ylabel="u_y")
        label = r["name"] if r["name"] == r["kind"] else f"{r['name']} ({r['kind']})"
        ax.set_title(f"{label}: action samples u at the start (pre-tanh)", fontsize=10)
        ax.legend(loc="lower left", fontsize=7, markerscale=3)
        ax = row[1]
        firsts = r["prior"]["firsts"]
        for xy, first in zip(r["prior"]["paths"], firsts, strict=True):
            colour = colours[first] if first >= 0 else "grey"
            ax.plot(xy[:, 0], xy[:, 1], c=colour, alpha=0.4, lw=0.8)
        for k, (x, y) in enumerate(r["targets"]):
            ax.add_patch(plt.Circle((x, y), REACH_RADIUS, color=colours[k], fill=False, lw=2))
        half = float(np.max(np.abs(r["targets"]))) / 0.6
        ax.set(xlim=(-half, half), ylim=(-half, half), aspect="equal", xlabel="x", ylabel="y")
        ax.set_title(f"prior alone: {len(firsts)} episodes, coloured by first target", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str]) -> None:
    del argv
    if across_seeds.ARMS.value:
        arms = {
            name: [seed_modality(r, _SAMPLES.value, _EPISODES.value) for r in runs]
            for name, runs in across_seeds.parse_arms(across_seeds.ARMS.value).items()
        }
        across_seeds.emit_table(arms_table(arms))
        return
    if not _RUNS.value:
        raise app.UsageError("give at least one --run NAME=RUN_DIR or --arm NAME=SWEEP_DIR")
    results = []
    for spec in _RUNS.value:
        name, _, workdir = spec.partition("=")
        results.append(analyse(name, workdir, _SAMPLES.value, _EPISODES.value))
    across_seeds.emit_table(table(results))
    if across_seeds.OUT_FIGURE.value:
        figure(results, across_seeds.OUT_FIGURE.value)


if __name__ == "__main__":
    app.run(main)
