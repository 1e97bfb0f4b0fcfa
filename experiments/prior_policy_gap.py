"""How close does each arm's policy stay to its prior, and how broad is that prior?

Why the transfer arms differ (issue 28): a frozen prior pulls the policy towards it with
weight alpha. This script plays `--policy_episodes` episodes of each seed's policy (its last
checkpoint, sampling) and, on the observations of those episodes, evaluates both heads:
- the prior's and the policy's scale (the Gaussian's standard deviation before the tanh,
  averaged over steps and action dimensions),
- |mean difference| between the two heads, averaged the same way,
- KL(pi || pi0) per step in nats (the learning rule's closed form for diagonal Gaussians,
  summed over action dimensions): what the learner's `kl_policy_prior` logs, but on the
  policy's own states,
- the policy's return per episode, so a policy glued to a useless prior shows as both.

Per arm: the value of every seed and the mean over seeds with a 95% bootstrap interval
over seeds (experiments/across_seeds.py). Flat priors under a flat policy only (kind
`mlp`): an LSTM prior's state and a latent policy's or prior's marginal are not per-step
Gaussians, so those runs are refused with the reason.

    python experiments/prior_policy_gap.py --arm untrained=SWEEPS/untrained_frozen \\
        --arm transferred=SWEEPS/frozen --policy_episodes=3 --out_table gap.md
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from absl import app, flags

from bprl.agents.learning_rule import gaussian_kl
from bprl.experiments import across_seeds
from bprl.launch.reuse.rollout import load_run, record_rollouts

# Names of their own: the analysis scripts share one flag namespace in a test process.
_EPISODES = flags.DEFINE_integer("policy_episodes", 3, "Policy episodes per seed.")
_SEED = flags.DEFINE_integer("rollout_seed", 123, "Environment seed of the episodes.")

STATISTICS = (
    ("prior_scale", "prior scale"),
    ("policy_scale", "policy scale"),
    ("mean_gap", "abs. mean difference"),
    ("kl", "KL to the prior, nats/step"),  # no pipes: a markdown cell
    ("return", "policy return / episode"),
)


def head_gap(networks, observation: dict[str, np.ndarray]) -> dict[str, float]:
    """The statistics above (but the return) on a batch of [N, ...] observations."""
    obs = {k: tf.constant(v, tf.float32) for k, v in observation.items()}
    prior_mean, prior_scale = networks.prior.moments(obs)  # [N, A] each
    policy_mean, policy_scale = networks.policy.moments(obs)  # [N, A] each
    kl = gaussian_kl(policy_mean, policy_scale, prior_mean, prior_scale)  # [N], the rule's
    return {
        "prior_scale": float(tf.reduce_mean(prior_scale)),
        "policy_scale": float(tf.reduce_mean(policy_scale)),
        "mean_gap": float(tf.reduce_mean(tf.abs(policy_mean - prior_mean))),
        "kl": float(tf.reduce_mean(kl)),
    }


def seed_statistic(run_dir: str, episodes: int, seed: int) -> dict[str, float]:
    """One seed's statistics on `episodes` episodes of its policy."""
    config, networks, _ = load_run(run_dir)
    if config.prior.kind != "mlp":
        raise app.UsageError(
            f"{run_dir}: prior kind {config.prior.kind}; this script reads the flat kind "
            "(mlp) only (a recurrent or latent head has no per-step closed-form KL)"
        )
    data = record_rollouts(config, networks, use_prior=False, episodes=episodes, seed=seed)
    observation = {
        k[len("observation/") :]: v for k, v in data.items() if k.startswith("observation/")
    }
    return {**head_gap(networks, observation), "return": float(data["reward"].sum() / episodes)}


def arms_table(arms: dict[str, list[dict[str, float]]]) -> str:
    """Markdown: per arm and statistic, every seed's value and the mean [95% CI]."""
    lines = [
        f"On each seed's own policy episodes ({_EPISODES.value} per seed, sampling). Scales "
        "are the Gaussian's standard deviation before the tanh; mean over seeds with a 95% "
        "bootstrap interval over seeds.",
        "",
        "| arm | statistic | per seed | mean [95% CI] |",
        "|---|---|---|---|",
    ]
    for name, seeds in arms.items():
        for key, label in STATISTICS:
            values = [s[key] for s in seeds]
            per_seed = ", ".join(f"{v:.2f}" for v in values)
            mean = across_seeds.fmt(across_seeds.mean_interval(values))
            lines.append(f"| {name} | {label} | {per_seed} | {mean} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    del argv
    if not across_seeds.ARMS.value:
        raise app.UsageError("give at least one --arm NAME=DIR")
    arms = {
        name: [seed_statistic(r, _EPISODES.value, _SEED.value) for r in runs]
        for name, runs in across_seeds.parse_arms(across_seeds.ARMS.value).items()
    }
    across_seeds.emit_table(arms_table(arms))


if __name__ == "__main__":
    app.run(main)
