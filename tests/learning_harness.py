"""A single-process actor/learner loop on a real Reverb server, for the learning test."""

from __future__ import annotations

import ml_collections
import numpy as np
import reverb

from bprl.agents.actor import GaussianActor, VersionedVariableClient
from bprl.agents.learner import Learner
from bprl.launch.program import builders
from bprl.launch.program.nodes import run_episode


def evaluate(config, networks, episodes: int, seed: int) -> float:
    env = builders.RunBuilder(config).make_environment(seed)
    actor = GaussianActor(networks.policy, stochastic=False)
    return float(np.mean([run_episode(env, actor) for _ in range(episodes)]))


def train(
    config: ml_collections.ConfigDict, env_steps: int, updates_per_step: float, eval_episodes: int
) -> tuple[float, float, Learner]:
    """Trains for `env_steps` actor steps; returns (return before, return after, learner)."""
    builder = builders.RunBuilder(config)
    env = builder.make_environment(config.seed)
    table = builder.make_unlimited_table(min_size=config.replay.min_size)
    server = reverb.Server([table], port=None)
    address = f"localhost:{server.port}"
    client = reverb.Client(address)
    # The kernels and updates per call a learner node picks for this config on this
    # machine (conftest.py turns oneDNN on, as the node's environment does).
    learner_networks, jit_compile = builder.make_learner_networks()
    per_call = builder.updates_per_call
    learner = Learner(
        learner_networks,
        iter(builder.make_dataset(address)),
        builder.hyperparams,
        jit_compile=jit_compile,
        updates_per_call=per_call,
    )
    actor_networks = builder.make_networks()
    variable_client = VersionedVariableClient(
        learner, {"policy": actor_networks.policy.variables}, update_period=1
    )
    variable_client.update_and_wait()
    before = evaluate(config, actor_networks, eval_episodes, seed=10_000)
    actor = GaussianActor(
        actor_networks.policy,
        stochastic=True,
        adder=builder.make_adder(client),
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
