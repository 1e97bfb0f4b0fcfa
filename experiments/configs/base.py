"""Sizes shared by experiment configs; every field's default and comment is in
launch/config/defaults.py (`base_config`, re-exported here for the config files)."""

from __future__ import annotations

import ml_collections

from bprl.launch.config.defaults import base_config

__all__ = [
    "base_config",
    "apply_tiny",
    "apply_local_short",
    "apply_pointmass_room_local",
    "unknown_variant",
]


def apply_tiny(config: ml_collections.ConfigDict, every_actor_steps: int, max_actor_steps: int):
    """The `tiny` variant's sizes: smoke tests that start, learn a little and stop fast."""
    config.actors.num_actors = 2
    config.network.policy_hidden = (32,)
    config.network.prior_hidden = (32,)
    config.network.critic_hidden = (32,)
    config.agent.num_action_samples = 2
    config.replay.batch_size = 16
    config.replay.min_size = 20
    config.replay.samples_per_insert = 8.0
    config.evaluators.every_actor_steps = every_actor_steps
    config.stop.max_actor_steps = max_actor_steps
    config.logging.learner_every_steps = 10


def apply_local_short(config: ml_collections.ConfigDict) -> None:
    """The `local_short` variant's sizes: a few minutes on 2 cores."""
    config.actors.num_actors = 3
    config.network.policy_hidden = (128, 128)
    config.network.prior_hidden = (128, 128)
    config.network.critic_hidden = (128, 128)
    config.replay.batch_size = 64
    config.replay.min_size = 200
    config.replay.samples_per_insert = 16.0
    config.evaluators.every_actor_steps = 10_000
    config.stop.max_actor_steps = 60_000


def apply_pointmass_room_local(config: ml_collections.ConfigDict) -> None:
    """2-core sizes that made the point-mass room tasks learn (docs/results.md): 3 actors,
    128-unit networks, batch 64, 32 samples per insert, and wide exploration noise that
    never falls below 0.3 (bounded at 0.6 or 1.0, the policy found almost no targets).

    Used by seqnav_pointmass:local_short and multitask_pointmass:fixed_config; the caller
    sets its own evaluation cadence and budget.
    """
    config.actors.num_actors = 3
    config.actors.variable_update_period = 500
    config.network.policy_hidden = (128, 128)
    config.network.prior_hidden = (128, 128)
    config.network.critic_hidden = (128, 128)
    config.network.min_scale = 0.3
    config.network.init_scale = 1.0
    config.agent.num_action_samples = 4
    config.agent.target_update_period = 100
    config.replay.batch_size = 64
    config.replay.min_size = 500
    config.replay.max_size = 100_000
    config.replay.samples_per_insert = 32.0


def unknown_variant(
    variant: str, known: tuple[str, ...] = ("", "local_short", "tiny")
) -> ValueError:
    """The error for a variant a config file does not have, listing the ones it has."""
    names = ", ".join(repr(name) for name in known)
    return ValueError(f"unknown variant {variant!r}; use one of {names}")
