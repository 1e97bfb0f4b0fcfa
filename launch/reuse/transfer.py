"""`bprl export-prior`: take a trained run's prior out as a self-describing artifact.

The artifact (agents/prior_artifact.py) holds the prior's weights and everything needed
to rebuild and check it without the run: kind and sizes, information sets, observation
keys/shapes/dtypes, action spec and squash, and its source (run, learner step, config,
date). A new run starts from it with `--config.prior.artifact=DIR` (and
`--config.prior.frozen=True` to keep it fixed); the pre-launch check is
`bprl.launch.config.validate.check_artifact`.
"""

from __future__ import annotations

import os

import tensorflow as tf

from bprl.agents import prior_artifact
from bprl.launch.config.errors import ConfigError
from bprl.launch.program import builders
from bprl.launch.reuse import rollout
from bprl.launch.rundir import checkpoint_record

_STEP_KEY = "num_steps/.ATTRIBUTES/VARIABLE_VALUE"


def learner_checkpoints(workdir: str) -> list[tuple[int, str]]:
    """[(learner step, checkpoint path)] of the run's learner checkpoints still on disk."""
    state = tf.train.get_checkpoint_state(checkpoint_record.checkpoint_dir(workdir, "learner"))
    found = []
    for path in state.all_model_checkpoint_paths if state else []:
        try:
            found.append((int(tf.train.load_checkpoint(path).get_tensor(_STEP_KEY)), path))
        except (tf.errors.OpError, ValueError):
            continue  # unreadable (partial or damaged): not offered
    return sorted(found)


def export_prior(workdir: str, out: str, step: int | None = None) -> dict:
    """Writes the prior of `workdir` at learner step `step` (default: the latest complete
    checkpoint) into the new directory `out`; returns the artifact's metadata."""
    workdir = os.path.abspath(workdir)
    if not out:
        raise ConfigError("--out (the artifact directory to write) is required")
    if os.path.exists(out):
        raise ConfigError(f"--out {out!r} already exists; choose a new directory")
    path = None
    if step is not None:
        available = learner_checkpoints(workdir)
        by_step = dict(available)
        if step not in by_step:
            steps = ", ".join(str(s) for s, _ in available) or "none"
            raise ConfigError(f"{workdir} has no learner checkpoint at step {step} (has: {steps})")
        path = by_step[step]
    config, networks, record = rollout.load_run(workdir, path)
    path = path or record["learner"]
    builder = builders.RunBuilder(config)
    env_spec = builder.env_spec
    learner_step = int(tf.train.load_checkpoint(path).get_tensor(_STEP_KEY))
    source = {
        "run": workdir,
        "learner_step": learner_step,
        "actor_steps": int(record.get("counts", {}).get("actor_steps", -1))
        if path == record["learner"]
        else None,
        "learner_checkpoint": path,
        "task": config.task,
        "config": config.to_dict(),
    }
    try:
        return prior_artifact.save(
            out,
            networks,
            builder.head_sizes,
            tuple(config.prior_info),
            builder.prior_keys,
            env_spec.observations,
            env_spec.actions,
            config.agent.action_squash,
            source,
        )
    except prior_artifact.ArtifactError as error:
        raise ConfigError(str(error)) from None
