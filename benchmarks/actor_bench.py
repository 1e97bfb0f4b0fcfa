"""Sections 1-2 of the throughput benchmark: the raw environment rate, and the actor
rate of ours beside Acme's SVG0Actor, interleaved round by round."""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks import common


def raw_env_rate(env, num_steps: int, rng: np.random.Generator) -> tuple[int, float]:
    spec = env.action_spec()
    actions = rng.uniform(spec.minimum, spec.maximum, size=(num_steps, *spec.shape))
    actions = actions.astype(spec.dtype)
    env.reset()
    start = time.perf_counter()
    for action in actions:
        if env.step(action).last():
            env.reset()
    return num_steps, time.perf_counter() - start


def bench_actors(task: str, args: argparse.Namespace) -> dict:
    """Sections 1 and 2 for one task: raw, ours and Acme's, interleaved per round."""
    import acme
    import reverb
    from acme.adders import reverb as reverb_adders
    from acme.agents.tf.svg0_prior import acting as acme_acting
    from acme.utils import counting, loggers

    from bprl.agents.actor import GaussianActor
    from bprl.launch.program import builders

    config = common.make_config(task, args)
    raw_env = builders.RunBuilder(config).make_environment(1)
    our_env = builders.RunBuilder(config).make_environment(2)
    acme_env = builders.RunBuilder(config).make_environment(3)
    env_spec = acme.make_environment_spec(our_env)
    server = reverb.Server([common.never_blocking_table(config, env_spec, args.actor_table_size)])
    client = reverb.Client(f"localhost:{server.port}")

    networks = builders.RunBuilder(config, env_spec).make_networks()
    ours = GaussianActor(
        networks.policy,
        stochastic=True,
        adder=builders.RunBuilder(config).make_adder(client),
        seed=0,
    )
    acme_nets = common.make_acme_networks(env_spec, builders.RunBuilder(config).prior_keys, args)
    acme_adder = reverb_adders.SequenceAdder(  # what svg0_prior's builder makes
        client,
        sequence_length=builders.stored_steps(config.replay.sequence_length),
        period=config.replay.sequence_length,
        priority_fns={builders.REPLAY_TABLE: lambda x: 1.0},
        end_of_episode_behavior=reverb_adders.EndBehavior.CONTINUE,
    )
    theirs = acme_acting.SVG0Actor(acme_nets["policy"], adder=acme_adder)
    our_counter, acme_counter = counting.Counter(), counting.Counter()
    our_loop = acme.EnvironmentLoop(our_env, ours, counter=our_counter, logger=loggers.NoOpLogger())
    acme_loop = acme.EnvironmentLoop(
        acme_env, theirs, counter=acme_counter, logger=loggers.NoOpLogger()
    )
    # Warm-up (first TF calls, table creation, writer start) outside the timings.
    our_loop.run(num_steps=1)
    acme_loop.run(num_steps=1)
    raw_env_rate(raw_env, 100, np.random.default_rng(0))

    rng = np.random.default_rng(0)
    totals = {k: [0, 0.0] for k in ("raw", "ours", "acme")}
    rounds = []
    for _ in range(args.rounds):
        measured = {
            "raw": raw_env_rate(raw_env, args.env_steps, rng),
            "ours": common.timed_loop(our_loop, our_counter, args.actor_steps),
            "acme": common.timed_loop(acme_loop, acme_counter, args.acme_actor_steps),
        }
        for key, (steps, secs) in measured.items():
            totals[key][0] += steps
            totals[key][1] += secs
        rounds.append({k: common.rate(*v) for k, v in measured.items()})
    items = int(client.server_info()[builders.REPLAY_TABLE].current_size)
    server.stop()
    rates = {k: common.rate(*v) for k, v in totals.items()}
    return {
        "raw_steps_per_s": rates["raw"],
        "actor_steps_per_s": rates["ours"],
        "acme_actor_steps_per_s": rates["acme"],
        "actor_steps": totals["ours"][0],
        "acme_actor_steps": totals["acme"][0],
        "actor_over_raw": rates["ours"] / rates["raw"],
        "actor_over_acme": rates["ours"] / rates["acme"],
        "acme_actor_over_raw": rates["acme"] / rates["raw"],
        "actor_rounds": rounds,
        "items_written": items,
        "adder": config.replay.adder,
    }
