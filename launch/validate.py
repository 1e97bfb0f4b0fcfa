"""Checks an experiment config before anything is launched: one clear line per problem."""

from __future__ import annotations

import os
import tempfile

import ml_collections

from environments import registry
from networks import information


class ConfigError(ValueError):
    """A configuration problem, reported as one line before any process starts."""


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming the first problem found in `config`."""
    try:
        task = registry.get_task(config.task)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if isinstance(config.prior_info, str) or not config.prior_info:
        raise ConfigError(
            f"prior_info must be a non-empty tuple of information-set names, got "
            f"{config.prior_info!r}; task {task.name!r} has {sorted(task.information_sets)}"
        )
    try:
        keys = task.keys_for(tuple(config.prior_info))
        env = registry.make_environment(config.task, config.seed, **config.task_kwargs.to_dict())
        observation_spec, action_shape = env.observation_spec(), env.action_spec().shape
        information.input_size(observation_spec, keys)
        env.close()
    except (ValueError, TypeError) as error:
        raise ConfigError(f"prior_info {tuple(config.prior_info)}: {error}") from None

    from agents.learner import ACTION_SQUASHES
    from agents.prior_kinds import PRIOR_KINDS

    checks = [
        (
            config.prior.kind in PRIOR_KINDS,
            f"prior.kind must be one of {PRIOR_KINDS}, got {config.prior.kind!r}",
        ),
        (config.prior.lstm_size >= 1, "prior.lstm_size must be >= 1"),
        (
            config.network.max_scale <= 0
            or config.network.min_scale < config.network.init_scale < config.network.max_scale,
            "network.max_scale > 0 needs network.min_scale < network.init_scale < max_scale",
        ),
        (config.prior.latent_size >= 1, "prior.latent_size must be >= 1"),
        (config.network.mean_bound > 0, "network.mean_bound must be > 0"),
        (
            config.agent.action_squash in ACTION_SQUASHES,
            f"agent.action_squash must be one of {ACTION_SQUASHES}, "
            f"got {config.agent.action_squash!r}",
        ),
        (
            config.actors.num_actors >= 1,
            f"actors.num_actors must be >= 1, got {config.actors.num_actors}",
        ),
        (config.evaluators.num_evaluators >= 0, "evaluators.num_evaluators must be >= 0"),
        (config.replay.sequence_length >= 1, "replay.sequence_length must be >= 1"),
        (config.replay.batch_size >= 1, "replay.batch_size must be >= 1"),
        (config.replay.min_size >= 1, "replay.min_size must be >= 1"),
        (
            config.replay.max_size >= config.replay.min_size,
            "replay.max_size must be >= replay.min_size",
        ),
        (config.replay.samples_per_insert > 0, "replay.samples_per_insert must be > 0"),
        (config.agent.num_action_samples >= 1, "agent.num_action_samples must be >= 1"),
        (config.agent.alpha >= 0, "agent.alpha must be >= 0"),
        (0.0 <= config.agent.discount <= 1.0, "agent.discount must be in [0, 1]"),
        (config.agent.target_update_period >= 1, "agent.target_update_period must be >= 1"),
        (
            config.stop.max_actor_steps > 0 or config.stop.max_learner_steps > 0,
            "set stop.max_actor_steps or stop.max_learner_steps, or the run never ends",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    if config.prior.artifact:
        from launch import transfer

        transfer.check_artifact(config, observation_spec, action_shape)


def validate_workdir(workdir: str) -> None:
    """The run directory must be creatable and writable."""
    if not workdir:
        raise ConfigError("--workdir is required")
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as error:
        raise ConfigError(f"workdir {workdir!r} is not writable: {error.strerror}") from None


def validate_resume(config: ml_collections.ConfigDict, workdir: str) -> bool:
    """True when `workdir` holds an earlier run to resume; raises if `config` cannot."""
    from launch import checkpointing, defaults

    saved_path = os.path.join(workdir, "config.json")
    if not os.path.exists(saved_path):
        return False
    saved = defaults.load_saved(saved_path).to_dict()
    try:
        checkpointing.check_resume_compatible(saved, config.to_dict())
    except ValueError as error:
        raise ConfigError(str(error)) from None
    return True
