"""Defaults shared by every experiment config. Each field has a default and a comment."""

from __future__ import annotations

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.task = "walker_walk"  # a name from `bprl tasks`
    config.task_kwargs = ml_collections.ConfigDict()  # extra keyword arguments for the task
    config.seed = 0  # seeds networks, actors (seed * 1000 + actor id) and evaluators
    config.prior_info = ("proprioception",)  # information sets the prior sees

    config.network = ml_collections.ConfigDict()
    config.network.policy_hidden = (256, 256)  # policy MLP widths
    config.network.prior_hidden = (256, 256)  # prior MLP widths
    config.network.critic_hidden = (256, 256)  # critic MLP widths
    config.network.min_scale = 1e-3  # lower bound on the Gaussian heads' standard deviation
    config.network.init_scale = 0.7  # standard deviation of the heads at initialisation

    config.agent = ml_collections.ConfigDict()
    config.agent.alpha = 0.01  # weight of KL(pi || pi0)
    config.agent.discount = 0.99  # gamma
    config.agent.retrace_lambda = 1.0  # lambda in c = lambda * min(1, pi'/mu)
    config.agent.num_action_samples = 10  # S: samples for the soft value and SVG(0)
    config.agent.policy_learning_rate = 1e-4  # Adam, policy
    config.agent.critic_learning_rate = 1e-4  # Adam, critic
    config.agent.prior_learning_rate = 1e-4  # Adam, prior
    config.agent.target_update_period = 100  # learner steps between target-network copies
    config.agent.max_bad_updates = 100  # consecutive non-finite updates before stopping

    config.replay = ml_collections.ConfigDict()
    config.replay.sequence_length = 10  # T: transitions per replay item (T+1 steps stored)
    config.replay.batch_size = 256  # sequences per learner update
    config.replay.min_size = 1000  # items in replay before the learner may sample
    config.replay.max_size = 1_000_000  # FIFO capacity in items
    config.replay.samples_per_insert = 32.0  # rate limiter: sampled items per inserted item
    config.replay.samples_per_insert_tolerance = 0.1  # slack of the rate limiter, fraction
    config.replay.prefetch_size = 4  # batches the learner's dataset prefetches

    config.actors = ml_collections.ConfigDict()
    config.actors.num_actors = 32  # actor processes
    config.actors.variable_update_period = 1000  # actor steps between weight refreshes

    config.evaluators = ml_collections.ConfigDict()
    config.evaluators.num_evaluators = 1  # evaluator processes (policy mean and prior alone)
    config.evaluators.episodes = 1  # episodes of each kind per evaluation
    config.evaluators.every_actor_steps = 20_000  # actor steps between evaluations

    config.stop = ml_collections.ConfigDict()
    config.stop.max_actor_steps = (
        10_000_000  # stop when the actors took this many steps (0: no limit)
    )
    config.stop.max_learner_steps = 0  # stop after this many learner updates (0: no limit)

    config.logging = ml_collections.ConfigDict()
    config.logging.learner_every_steps = 100  # learner steps between TensorBoard writes

    config.resources = ml_collections.ConfigDict()
    config.resources.learner_threads = 0  # TensorFlow intra-op threads of the learner (0: all)
    config.resources.actor_threads = 1  # threads of each actor / evaluator process
    return config
