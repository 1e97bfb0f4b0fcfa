"""A single-process actor/learner loop on a real Reverb server, for the learning test."""

from __future__ import annotations

import acme
import ml_collections
import numpy as np
import reverb

from bprl.agents.actor import GaussianActor, VersionedVariableClient
from bprl.agents.learner import Learner
from bprl.launch.program import builders
from bprl.launch.program.nodes import run_episode


def evaluate(config, networks, episodes: int, seed: int) -> float:
    env = builders.make_environment(config, seed)
    actor = GaussianActor(networks.policy, stochastic=False)
    return float(np.mean([run_episode(env, actor) for _ in range(episodes)]))


def train(
    config: ml_collections.ConfigDict, env_steps: int, updates_per_step: float, eval_episodes: int
) -> tuple[float, float, Learner]:
    """Trains for `env_steps` actor steps; returns (return before, return after, learner)."""
    env = builders.make_environment(config, config.seed)
    env_spec = acme.make_environment_spec(env)
    table = builders.unlimited_table(config, env_spec, min_size=config.replay.min_size)
    server = reverb.Server([table], port=None)
    address = f"localhost:{server.port}"
    client = reverb.Client(address)
    learner_networks = builders.build_networks(config, env_spec)
    # The kernels and updates per call a learner node picks for this config on this
    # machine (conftest.py turns oneDNN on, as the node's environment does).
    per_call = builders.updates_per_call(config, env_spec)
    learner = Learner(
        learner_networks,
        iter(builders.make_dataset(config, address, per_call)),
        builders.hyperparams(config),
        jit_compile=builders.apply_learner_kernels(config, learner_networks, env_spec),
        updates_per_call=per_call,
    )
    actor_networks = builders.build_networks(config, env_spec)
    variable_client = VersionedVariableClient(
        learner, {"policy": actor_networks.policy.variables}, update_period=1
    )
    variable_client.update_and_wait()
    before = evaluate(config, actor_networks, eval_episodes, seed=10_000)
    actor = GaussianActor(
        actor_networks.policy,
        stochastic=True,
        adder=builders.make_adder(config, client),
        variable_client=variable_client,
        seed=config.seed,
    )
    steps, owed = 0, 0.0
    timestep = env.reset()
    actor.observe_first(timestep)
    while steps < env_steps:
        action = actor.select_action(timestep.observation)
        timestep = env.step(action)
        actor.observe(action, timestep)
        steps += 1
        if timestep.last():
            timestep = env.reset()
            actor.observe_first(timestep)
        if client.server_info()[builders.REPLAY_TABLE].current_size >= config.replay.min_size:
            owed += updates_per_step
            while owed >= per_call:  # each step is `per_call` updates
                learner.step()
                owed -= per_call
            if steps % 50 == 0:
                variable_client.update_and_wait()
                actor.update()
    variable_client.update_and_wait()
    after = evaluate(config, actor_networks, eval_episodes, seed=10_000)
    del actor  # closes the adder's writer while the server still runs
    server.stop()
    return before, after, learner
