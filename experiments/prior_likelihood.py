"""How well does a run's prior explain its policy's actions? Log-likelihood per step.

Reads a run (`launch.rollout.load_run`: config and checkpointed heads) and rollouts of its
policy recorded by `bprl rollout` (sampling actions, stored as the Gaussian sample u),
replays each episode's observations through the prior (an LSTM prior is unrolled over the
whole episode from its initial state, as the actors run it) and averages log pi0(u | x^D)
over the steps; the policy's own log pi(u | x) on the same steps is printed beside it as
the reference a perfect prior would reach.

    .venv/bin/python experiments/prior_likelihood.py --run=runs/nav_lstm \\
        [--rollouts=runs/nav_lstm/rollouts/policy.npz]

Hierarchical priors are not supported: their marginal likelihood has no closed form.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from absl import app, flags

from bprl.launch.reuse.rollout import load_run
from bprl.networks.gaussian import gaussian_log_prob

_RUN = flags.DEFINE_string("run", "", "Run directory (config.json and a checkpoint).")
_ROLLOUTS = flags.DEFINE_string(
    "rollouts", "", "Policy rollouts (.npz); default RUN/rollouts/policy.npz."
)


def head_log_probs(head, observation: dict[str, np.ndarray], action: np.ndarray) -> np.ndarray:
    """log head(action | observations) for one episode's [L, ...] arrays, step by step."""
    obs = {k: tf.constant(v, tf.float32) for k, v in observation.items()}
    if getattr(head, "is_recurrent", False):
        time_major = {k: v[:, None] for k, v in obs.items()}  # [L, 1, ...]
        start = np.zeros([len(action), 1], bool)
        start[0] = True
        mean, scale, _ = head.unroll(time_major, tf.constant(start), head.initial_state(1))
    else:
        mean, scale = head.moments(obs)
    return gaussian_log_prob(mean.numpy(), scale.numpy(), action)


def episode_log_likelihoods(networks, data: dict) -> dict[str, np.ndarray]:
    """{"prior": [E], "policy": [E]}: mean log-likelihood per step of each episode."""
    keys = [k.split("/", 1)[1] for k in data if k.startswith("observation/")]
    out: dict[str, list[float]] = {"prior": [], "policy": []}
    for episode in np.unique(data["episode"]):
        rows = data["episode"] == episode
        observation = {k: data[f"observation/{k}"][rows] for k in keys}
        action = data["action"][rows]
        for name in out:
            out[name].append(
                float(np.mean(head_log_probs(getattr(networks, name), observation, action)))
            )
    return {k: np.asarray(v) for k, v in out.items()}


def main(argv: list[str]) -> None:
    del argv
    config, networks, record = load_run(_RUN.value)
    if not networks.kind.closed_form_likelihood:
        raise app.UsageError("hierarchical priors have no closed-form marginal likelihood")
    path = _ROLLOUTS.value or os.path.join(_RUN.value, "rollouts", "policy.npz")
    data = dict(np.load(path))
    if str(data.get("head", "policy")) != "policy":
        raise app.UsageError(f"{path} holds {data['head']} rollouts; record the policy's")
    result = episode_log_likelihoods(networks, data)
    steps = record.get("counts", {}).get("learner_steps", "?")
    print(
        f"{_RUN.value} ({config.prior.kind} prior, learner step {steps}), "
        f"{len(result['prior'])} policy episodes:"
    )
    for name, values in result.items():
        stderr = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
        print(f"  log {name}(a | x) per step: {values.mean():.3f} +- {stderr:.3f}")


if __name__ == "__main__":
    flags.mark_flag_as_required("run")
    app.run(main)
