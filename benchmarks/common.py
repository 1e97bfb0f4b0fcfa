"""What the throughput benchmark's sections share: task sizes, configs, tables, timers.

Our side and Acme's use the same sizes (Acme's `make_network_with_prior` widths) and the
same replay table (`launch.builders.unlimited_table`, a never-blocking limiter).
"""

from __future__ import annotations

import argparse
import os
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = ("walker_walk", "seqnav_pointmass")
# The prior's information sets per task (the prior is denied the task-identifying inputs).
PRIOR_INFO = {
    "walker_walk": ("proprioception",),
    "seqnav_pointmass": ("proprioception", "location", "targets"),
}
# Acme's make_network_with_prior widths, used on both sides.
POLICY_HIDDEN = (200, 100)
PRIOR_HIDDEN = (200, 100)
CRITIC_HIDDEN = (400, 300)


def make_config(task: str, args: argparse.Namespace):
    """Our experiment config with the benchmark's sizes (identical to Acme's side)."""
    from bprl.experiments.configs.base import base_config

    config = base_config()
    config.task = task
    config.prior_info = PRIOR_INFO.get(task, config.prior_info)
    config.network.policy_hidden = tuple(args.policy_hidden)
    config.network.prior_hidden = tuple(args.prior_hidden)
    config.network.critic_hidden = tuple(args.critic_hidden)
    config.agent.num_action_samples = args.num_samples
    config.replay.sequence_length = args.sequence_length
    config.replay.batch_size = args.batch_size
    config.replay.adder = args.adder
    if args.episode_steps:  # shorter episodes (the tiny-size test); the control step stays
        if task == "walker_walk":
            config.task_kwargs.time_limit = args.episode_steps * 0.025
        else:
            config.task_kwargs.episode_length = args.episode_steps
    return config


def never_blocking_table(config, env_spec, max_size: int):
    """`builders.replay_table`'s table (name, selectors, signature) with MinSize(1)."""
    from bprl.launch.program import builders

    return builders.RunBuilder(config, env_spec).make_unlimited_table(max_size=max_size)


def make_acme_networks(env_spec, prior_keys, args):
    """Acme's svg0_prior networks (policy, critic, prior) with variables created."""
    from acme.agents.tf.svg0_prior import networks as acme_networks
    from acme.tf import utils as tf2_utils

    nets = acme_networks.make_network_with_prior(
        env_spec.actions,
        policy_layer_sizes=tuple(args.policy_hidden),
        critic_layer_sizes=tuple(args.critic_hidden),
        prior_layer_sizes=tuple(args.prior_hidden),
        policy_keys=sorted(env_spec.observations),
        prior_keys=list(prior_keys),
    )
    tf2_utils.create_variables(nets["policy"], [env_spec.observations])
    tf2_utils.create_variables(nets["prior"], [env_spec.observations])
    tf2_utils.create_variables(nets["critic"], [env_spec.observations, env_spec.actions])
    return nets


def steps_of(counter) -> int:
    return int(counter.get_counts().get("steps", 0))


def timed_loop(loop, counter, num_steps: int) -> tuple[int, float]:
    before = steps_of(counter)
    start = time.perf_counter()
    loop.run(num_steps=num_steps)
    return steps_of(counter) - before, time.perf_counter() - start


def rate(steps: int, seconds: float) -> float:
    return steps / seconds if seconds > 0 else float("nan")
