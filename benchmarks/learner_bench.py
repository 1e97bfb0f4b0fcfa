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

    from bprl.agents.actor import GaussianActor
    from bprl.launch.program import builders

    builder = builders.RunBuilder(config)
    env = builder.make_environment(4)
    networks = builder.make_networks()
    actor = GaussianActor(
        networks.policy, stochastic=True, adder=builder.make_adder(client), seed=4
    )
    acme.EnvironmentLoop(env, actor, logger=loggers.NoOpLogger()).run(num_steps=num_steps)


def setup(task: str, args: argparse.Namespace) -> dict:
    """A Reverb table filled with real environment data, the config, spec and a dataset
    maker: what both learners sample from."""
    import acme
    import reverb

    from bprl.launch.program import builders

    config = common.make_config(task, args)
    env = builders.RunBuilder(config).make_environment(5)
    env_spec = acme.make_environment_spec(env)
    server = reverb.Server([common.never_blocking_table(config, env_spec, 1_000_000)])
    address = f"localhost:{server.port}"
    fill_table(task, config, reverb.Client(address), args.fill_steps)

    def dataset(updates_per_call: int = 1):  # the learner node's input pipeline
        return iter(builders.RunBuilder(config).make_dataset(address, updates_per_call))

    return {"config": config, "env_spec": env_spec, "server": server, "dataset": dataset}


def make_ours(data: dict, kernels: str = "xla_float32", updates_per_call: int = 1):
    """Our Learner on `setup`'s data with these learner kernels (`launch/config/xla.py`; the
    process's environment must match) and updates per call; returns (step function, a
    variable to sync on). Each call of the step function runs `updates_per_call` updates."""
    from acme.utils import counting, loggers

    from bprl.agents.learner import Learner
    from bprl.launch.program import builders

    builder = builders.RunBuilder(data["config"], data["env_spec"], learner_kernels=kernels)
    networks, jit_compile = builder.make_learner_networks()
    ours = Learner(
        networks=networks,
        dataset=data["dataset"](updates_per_call),
        hyper=builder.hyperparams,
        counter=counting.Counter(),
        logger=loggers.NoOpLogger(),
        log_every_steps=10**9,
        jit_compile=jit_compile,
        updates_per_call=updates_per_call,
    )
    return ours.step, ours.networks.critic.variables[0]


def make_acme(data: dict, args: argparse.Namespace):
    """Acme's SVG0Learner on `setup`'s data, same sizes and hyperparameters."""
    from acme.agents.tf.svg0_prior import learning as acme_learning
    from acme.utils import counting, loggers

    from bprl.launch.program import builders

    config = data["config"]
    hyper = builders.RunBuilder(config).hyperparams
    online = common.make_acme_networks(
        data["env_spec"], builders.RunBuilder(config).prior_keys, args
    )
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
        dataset_iterator=data["dataset"](),
        distillation_cost=hyper.alpha,
        entropy_regularizer_cost=0.0,  # ours has no entropy bonus; the term is still computed
        num_action_samples=hyper.num_action_samples,
        lambda_=hyper.retrace_lambda,
        counter=counting.Counter(),
        logger=loggers.NoOpLogger(),
        checkpoint=False,
    )
    return theirs.step, online["critic"].variables[0]


def timed_updates(step, sync_variable, updates: int) -> tuple[int, float]:
    """(updates, seconds) of `updates` calls of `step`, waiting for the last to finish."""
    start = time.perf_counter()
    for _ in range(updates):
        step()
    sync_variable.numpy()
    return updates, time.perf_counter() - start


def sizes(data: dict) -> dict:
    from bprl.launch.program import builders

    spec = data["env_spec"]
    return {
        "obs_size": int(sum(np.prod(s.shape) for s in spec.observations.values())),
        "prior_obs_size": int(
            sum(
                np.prod(spec.observations[k].shape)
                for k in builders.RunBuilder(data["config"]).prior_keys
            )
        ),
        "action_size": int(np.prod(spec.actions.shape)),
    }


def bench_learners(task: str, args: argparse.Namespace) -> dict:
    data = setup(task, args)
    config = data["config"]
    (ours_step, ours_var), (acme_step, acme_var) = make_ours(data), make_acme(data, args)
    sync = {"ours": ours_var, "acme": acme_var}
    steppers = {"ours": ours_step, "acme": acme_step}
    for step in steppers.values():  # trace and compile outside the timings
        for _ in range(args.warmup_updates):
            step()

    totals = {k: [0, 0.0] for k in steppers}
    rounds = []
    for _ in range(args.rounds):
        measured = {
            k: timed_updates(step, sync[k], args.learner_updates) for k, step in steppers.items()
        }
        for key, (n, seconds) in measured.items():
            totals[key][0] += n
            totals[key][1] += seconds
        rounds.append({k: common.rate(*v) for k, v in measured.items()})
    data["server"].stop()
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
        **sizes(data),
    }
