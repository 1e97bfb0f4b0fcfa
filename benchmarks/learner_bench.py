"""Section 3 of the throughput benchmark: updates/s of our Learner beside Acme's
SVG0Learner on the same replay data, sizes and batch, interleaved round by round."""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np

from benchmarks import common


def fill_table(task: str, config, client, num_steps: int) -> None:
    """Real environment data from our (untrained, stochastic) actor."""
    import acme
    from acme.utils import loggers

    from agents.actor import GaussianActor
    from launch import builders

    env = builders.make_environment(config, 4)
    networks = builders.build_networks(config, acme.make_environment_spec(env))
    actor = GaussianActor(
        networks.policy, stochastic=True, adder=builders.make_adder(config, client), seed=4
    )
    acme.EnvironmentLoop(env, actor, logger=loggers.NoOpLogger()).run(num_steps=num_steps)


def bench_learners(task: str, args: argparse.Namespace) -> dict:
    import acme
    import reverb
    import tensorflow as tf
    from acme import datasets
    from acme.agents.tf.svg0_prior import learning as acme_learning
    from acme.utils import counting, loggers

    from agents.learner import Learner
    from launch import builders

    config = common.make_config(task, args)
    env = builders.make_environment(config, 5)
    env_spec = acme.make_environment_spec(env)
    server = reverb.Server([common.never_blocking_table(config, env_spec, 1_000_000)])
    address = f"localhost:{server.port}"
    client = reverb.Client(address)
    fill_table(task, config, client, args.fill_steps)

    def dataset():
        return iter(
            datasets.make_reverb_dataset(
                server_address=address,
                batch_size=config.replay.batch_size,
                prefetch_size=config.replay.prefetch_size,
                table=builders.REPLAY_TABLE,
            )
        )

    hyper = builders.hyperparams(config)
    ours = Learner(
        networks=builders.build_networks(config, env_spec),
        dataset=dataset(),
        hyper=hyper,
        counter=counting.Counter(),
        logger=loggers.NoOpLogger(),
        log_every_steps=10**9,
    )
    online = common.make_acme_networks(env_spec, builders.prior_keys(config), args)
    target = copy.deepcopy(online)
    theirs = acme_learning.SVG0Learner(
        policy_network=online["policy"],
        critic_network=online["critic"],
        target_policy_network=target["policy"],
        target_critic_network=target["critic"],
        prior_network=online["prior"],
        target_prior_network=target["prior"],
        discount=hyper.discount,
        target_update_period=hyper.target_update_period,
        dataset_iterator=dataset(),
        distillation_cost=hyper.alpha,
        entropy_regularizer_cost=0.0,  # ours has no entropy bonus; the term is still computed
        num_action_samples=hyper.num_action_samples,
        lambda_=hyper.retrace_lambda,
        counter=counting.Counter(),
        logger=loggers.NoOpLogger(),
        checkpoint=False,
    )
    sync = {"ours": ours.networks.critic.variables[0], "acme": online["critic"].variables[0]}
    steppers = {"ours": ours.step, "acme": theirs.step}
    for step in steppers.values():  # trace and compile outside the timings
        for _ in range(args.warmup_updates):
            step()

    totals = {k: [0, 0.0] for k in steppers}
    rounds = []
    for _ in range(args.rounds):
        measured = {}
        for key, step in steppers.items():
            start = time.perf_counter()
            for _ in range(args.learner_updates):
                step()
            sync[key].numpy()
            measured[key] = (args.learner_updates, time.perf_counter() - start)
            totals[key][0] += measured[key][0]
            totals[key][1] += measured[key][1]
        rounds.append({k: common.rate(*v) for k, v in measured.items()})
    server.stop()
    del tf  # imported for its side effect of being initialised before the learners
    rates = {k: common.rate(*v) for k, v in totals.items()}
    transitions = config.replay.batch_size * config.replay.sequence_length
    return {
        "learner_updates_per_s": rates["ours"],
        "acme_learner_updates_per_s": rates["acme"],
        "learner_transitions_per_s": rates["ours"] * transitions,
        "acme_learner_transitions_per_s": rates["acme"] * transitions,
        "learner_over_acme": rates["ours"] / rates["acme"],
        "learner_update_s": 1.0 / rates["ours"],
        "learner_rounds": rounds,
        "obs_size": int(sum(np.prod(s.shape) for s in env_spec.observations.values())),
        "prior_obs_size": int(
            sum(np.prod(env_spec.observations[k].shape) for k in builders.prior_keys(config))
        ),
        "action_size": int(np.prod(env_spec.actions.shape)),
    }
