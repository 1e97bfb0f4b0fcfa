"""`bprl rollout`: play a trained run's prior (or policy) alone and record trajectories.

Loads `RUN/config.json` and the run's latest complete learner checkpoint, then plays
episodes in a fresh environment with the chosen head, sampling its actions (the prior is
a distribution over behaviour; its samples are what the analysis looks at). Everything an
analysis needs goes into one .npz: per step the observations, actions, rewards, the
latent z of a hierarchical head, and per episode the task's own target sequence where the
task keeps one (`experiments/next_target_table.py` reads it).
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np
import tensorflow as tf

from bprl.agents.actor import GaussianActor
from bprl.launch.config import defaults
from bprl.launch.config.errors import ConfigError
from bprl.launch.program import builders
from bprl.launch.rundir import checkpoint_record, layout


def load_run(
    workdir: str, learner_checkpoint: str | None = None
) -> tuple[ml_collections.ConfigDict, object, dict]:
    """(config, networks with the checkpointed weights, checkpoint record) of a run.

    The weights are those of the latest complete checkpoint, or of `learner_checkpoint`
    (a path under RUN/checkpoints/learner/) when given.
    """
    config_path = layout.config_path(workdir)
    if not os.path.exists(config_path):
        raise ConfigError(f"{workdir} is not a run directory (no config.json)")
    config = defaults.load_saved(config_path)  # fields added since take their defaults
    record_path = checkpoint_record.counts_path(workdir)
    record = checkpoint_record.load_record(record_path)
    if record is None:
        raise ConfigError(
            f"{workdir} has no complete checkpoint yet ({record_path} is missing or unreadable)"
        )
    # The checkpoint holds every weight: a prior artifact the run started from is not read.
    fresh = ml_collections.ConfigDict(config.to_dict())
    fresh.prior.artifact = ""
    networks = builders.RunBuilder(fresh).make_networks()
    checkpoint = tf.train.Checkpoint(
        policy=networks.policy, prior=networks.prior, critic=networks.critic
    )
    # The learner's checkpoint also holds targets and optimisers: only the heads are read.
    path = learner_checkpoint or record["learner"]
    checkpoint.restore(path).expect_partial().assert_existing_objects_matched()
    return config, networks, record


def record_rollouts(
    config: ml_collections.ConfigDict,
    networks,
    use_prior: bool,
    episodes: int,
    seed: int,
    stochastic: bool = True,
) -> dict[str, np.ndarray]:
    """Plays `episodes` episodes; returns flat per-step arrays keyed for np.savez."""
    env = builders.RunBuilder(config).make_environment(seed)
    head = networks.prior if use_prior else networks.policy
    actor = GaussianActor(head, stochastic=stochastic, seed=seed)
    steps: dict[str, list] = {"episode": [], "step": [], "action": [], "reward": []}
    observations: dict[str, list] = {}
    latents: list = []
    history, history_episode = [], []
    for episode in range(episodes):
        timestep = env.reset()
        actor.reset()
        t = 0
        while not timestep.last():
            for key, value in timestep.observation.items():
                observations.setdefault(key, []).append(np.asarray(value))
            action = actor.select_action(timestep.observation)
            if "latent" in actor.last_extras:
                latents.append(actor.last_extras["latent"])
            timestep = env.step(action)
            steps["episode"].append(episode)
            steps["step"].append(t)
            steps["action"].append(action)
            steps["reward"].append(float(timestep.reward))
            t += 1
        task_history = getattr(getattr(env, "task", None), "target_history", None)
        if task_history is not None:
            history += list(task_history)
            history_episode += [episode] * len(task_history)
    env.close()
    out = {key: np.asarray(value) for key, value in steps.items()}
    out.update({f"observation/{k}": np.stack(v) for k, v in observations.items()})
    if latents:
        out["latent"] = np.stack(latents)
    if history:
        out["target_history"] = np.asarray(history)
        out["target_history_episode"] = np.asarray(history_episode)
    return out


def rollout_command(
    workdir: str, use_prior: bool, episodes: int, out: str, seed: int = 12345
) -> str:
    """Loads the run, records the rollouts into `out` (default under the run); returns it."""
    if episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {episodes}")
    config, networks, record = load_run(workdir)
    data = record_rollouts(config, networks, use_prior, episodes, seed)
    data["learner_steps"] = np.asarray(record.get("counts", {}).get("learner_steps", -1))
    data["actor_steps"] = np.asarray(record.get("counts", {}).get("actor_steps", -1))
    data["head"] = np.asarray("prior" if use_prior else "policy")
    data["task"] = np.asarray(config.task)
    data["prior_kind"] = np.asarray(config.prior.kind)
    if not out:
        out = os.path.join(workdir, "rollouts", f"{'prior' if use_prior else 'policy'}.npz")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    np.savez_compressed(out, **data)
    returns = np.bincount(data["episode"], weights=data["reward"])
    print(
        f"{episodes} {'prior' if use_prior else 'policy'} episodes of {config.task} at learner "
        f"step {int(data['learner_steps'])}: mean return {returns.mean():.2f}"
    )
    return out
