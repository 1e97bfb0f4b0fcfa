"""Turns an experiment config into the pieces each node needs (tasks, networks, replay)."""

from __future__ import annotations

import dataclasses

import dm_env
import ml_collections
import numpy as np
import reverb
import tensorflow as tf
from acme import adders, specs
from acme.adders import reverb as reverb_adders

from bprl.agents import prior_kinds, update_cost
from bprl.agents.config import LearnerHyperparams
from bprl.environments import registry
from bprl.environments.wrappers import TanhActions
from bprl.launch.config import xla
from bprl.launch.config.derived import head_sizes, prior_keys, prior_kind
from bprl.networks.factory import Networks

REPLAY_TABLE = "replay"
EXTRAS_SPEC = {"log_prob": specs.Array(shape=(), dtype=np.float32, name="log_prob")}


def extras_spec(config: ml_collections.ConfigDict) -> dict:
    """What each replay step carries besides the transition, for the prior's architecture.

    Always the behaviour log-probability; the prior's kind adds what it needs (an LSTM
    prior its state before the step, a hierarchical policy its z).
    """
    return {**EXTRAS_SPEC, **prior_kind(config).replay_extras(head_sizes(config))}


def make_environment(config: ml_collections.ConfigDict, seed: int) -> dm_env.Environment:
    """The task, taking the policy's samples as they are stored in replay.

    With `agent.action_squash = "tanh"` it executes tanh(sample); otherwise the canonical
    wrapper clips the sample to the unit box.
    """
    env = registry.make_environment(config.task, seed, **config.task_kwargs.to_dict())
    if config.agent.get("action_squash", "clip") == "tanh":
        env = TanhActions(env)
    return env


def environment_spec(config: ml_collections.ConfigDict) -> specs.EnvironmentSpec:
    env = make_environment(config, config.seed)
    spec = specs.make_environment_spec(env)
    env.close()
    return spec


def build_networks(config: ml_collections.ConfigDict, env_spec: specs.EnvironmentSpec) -> Networks:
    """The run's networks, seeded by `config.seed`; a configured prior artifact
    (`prior.artifact`) replaces the prior's initial weights."""
    tf.random.set_seed(config.seed)
    sizes = dataclasses.asdict(head_sizes(config))
    networks = prior_kinds.make_networks(
        env_spec.observations,
        int(np.prod(env_spec.actions.shape)),
        prior_keys(config),
        prior_kind=config.prior.kind,
        **sizes,
    )
    if config.prior.artifact:
        from bprl.agents import prior_artifact

        prior_artifact.load_into(config.prior.artifact, networks)
    return networks


def update_flops(
    config: ml_collections.ConfigDict, env_spec: specs.EnvironmentSpec | None = None
) -> float:
    """Matrix-product FLOPs of one learner update of `config` (`agents/update_cost.py`)."""
    env_spec = env_spec or environment_spec(config)
    obs = {k: int(np.prod(s.shape)) for k, s in env_spec.observations.items()}
    net = config.network
    return update_cost.update_matmul_flops(
        obs=sum(obs.values()),
        prior_obs=sum(obs[k] for k in prior_keys(config)),
        act=int(np.prod(env_spec.actions.shape)),
        batch_size=config.replay.batch_size,
        sequence_length=config.replay.sequence_length,
        num_samples=config.agent.num_action_samples,
        policy_hidden=tuple(net.policy_hidden),
        prior_hidden=tuple(net.prior_hidden),
        critic_hidden=tuple(net.critic_hidden),
    )


def resolve_learner_kernels(
    config: ml_collections.ConfigDict,
    env_spec: specs.EnvironmentSpec | None = None,
    has_bfloat16: bool | None = None,
) -> str:
    """`config.resources.learner_kernels` as a learner on this machine runs it: auto is
    decided by this CPU and the update's size (`xla.resolve_kernels`)."""
    setting = config.resources.learner_kernels
    if has_bfloat16 is None:
        has_bfloat16 = xla.cpu_has_bfloat16()
    if setting != "auto" or not has_bfloat16:  # the update's size cannot matter: not counted
        return xla.resolve_kernels(setting, 0.0, has_bfloat16)
    return xla.resolve_kernels(setting, update_flops(config, env_spec), has_bfloat16)


def apply_learner_kernels(
    config: ml_collections.ConfigDict,
    networks: Networks,
    env_spec: specs.EnvironmentSpec | None = None,
) -> bool:
    """Sets the learner's networks up for `config.resources.learner_kernels` (resolved on
    this machine if still auto, `resolve_learner_kernels`); returns whether to XLA-compile
    the update. The process's environment must match (`xla.learner_environment`)."""
    kernels = resolve_learner_kernels(config, env_spec)
    if kernels == "onednn_bfloat16":
        networks.set_product_dtype(tf.bfloat16)
        return False  # products on oneDNN; XLA's auto-clustering fuses the rest
    return networks.kind.jit_compile


def hyperparams(config: ml_collections.ConfigDict) -> LearnerHyperparams:
    return LearnerHyperparams(**config.agent.to_dict())


def stored_steps(transitions: int) -> int:
    """Steps per replay item: T transitions need T + 1 steps (the last one bootstraps)."""
    return transitions + 1


def sequence_table(
    env_spec: specs.EnvironmentSpec,
    extras: dict,
    transitions: int,
    max_size: int,
    rate_limiter: reverb.rate_limiters.RateLimiter,
    sampler: reverb.selectors.Selector | None = None,
    max_times_sampled: int = 0,
    name: str = REPLAY_TABLE,
) -> reverb.Table:
    """The one place a replay table is made (the program, benchmarks and tests use it):
    items of `stored_steps(transitions)` steps, FIFO removal, uniform sampling unless
    `sampler` says otherwise."""
    return reverb.Table(
        name=name,
        sampler=sampler or reverb.selectors.Uniform(),
        remover=reverb.selectors.Fifo(),
        max_size=max_size,
        max_times_sampled=max_times_sampled,
        rate_limiter=rate_limiter,
        signature=reverb_adders.SequenceAdder.signature(
            env_spec, extras, sequence_length=stored_steps(transitions)
        ),
    )


def replay_table(
    config: ml_collections.ConfigDict, env_spec: specs.EnvironmentSpec
) -> reverb.Table:
    """The program's table: uniform sampling, FIFO removal, samples-per-insert limiter."""
    rep = config.replay
    error_buffer = max(
        2.0 * max(1.0, rep.samples_per_insert),
        rep.min_size * rep.samples_per_insert * rep.samples_per_insert_tolerance,
    )
    limiter = reverb.rate_limiters.SampleToInsertRatio(
        samples_per_insert=rep.samples_per_insert,
        min_size_to_sample=rep.min_size,
        error_buffer=error_buffer,
    )
    return sequence_table(env_spec, extras_spec(config), rep.sequence_length, rep.max_size, limiter)


def unlimited_table(
    config: ml_collections.ConfigDict,
    env_spec: specs.EnvironmentSpec,
    max_size: int | None = None,
    min_size: int = 1,
    in_order: bool = False,
) -> reverb.Table:
    """The program's table without its rate limiter (benchmarks, tests): sampling waits
    only for `min_size` items; `in_order` samples FIFO, each item once."""
    return sequence_table(
        env_spec,
        extras_spec(config),
        config.replay.sequence_length,
        max_size or config.replay.max_size,
        reverb.rate_limiters.MinSize(min_size),
        sampler=reverb.selectors.Fifo() if in_order else None,
        max_times_sampled=1 if in_order else 0,
    )


def make_adder(config: ml_collections.ConfigDict, client: reverb.Client) -> adders.Adder:
    """Overlapping sequences of T+1 steps every T steps, continuing across episodes.

    `config.replay.adder` picks the writer: "fast" (`agents.fast_adder.FastSequenceAdder`)
    or "acme" (Acme's `SequenceAdder`); their items are identical.
    """
    kind = config.replay.get("adder", "fast")
    if kind == "fast":
        from bprl.agents.fast_adder import FastSequenceAdder

        return FastSequenceAdder(
            client, sequence_length=config.replay.sequence_length, table=REPLAY_TABLE
        )
    if kind != "acme":
        raise ValueError(f"unknown replay.adder {kind!r}; use 'fast' or 'acme'")
    return reverb_adders.SequenceAdder(
        client,
        sequence_length=stored_steps(config.replay.sequence_length),
        period=config.replay.sequence_length,
        priority_fns={REPLAY_TABLE: None},
        end_of_episode_behavior=reverb_adders.EndBehavior.CONTINUE,
    )


# Below this many matrix-product FLOPs per update, the work around an update (its call,
# dataset element and batch transposes) is a large part of it, and `auto` runs
# AUTO_UPDATES_PER_CALL updates per call: 1.83x the updates/s at 5 MFLOP, 1.26x at 0.2
# GFLOP, 1.14x at 1.1 GFLOP (docs/results.md, issue 18).
SMALL_UPDATE_FLOPS = 4e9
AUTO_UPDATES_PER_CALL = 4


def updates_per_call(
    config: ml_collections.ConfigDict, env_spec: specs.EnvironmentSpec | None = None
) -> int:
    """`resources.learner_updates_per_call`, with 0 (auto) decided by the update's size."""
    k = int(config.resources.learner_updates_per_call)
    if k > 0:
        return k
    return AUTO_UPDATES_PER_CALL if update_flops(config, env_spec) < SMALL_UPDATE_FLOPS else 1


def make_dataset(config: ml_collections.ConfigDict, server_address: str, updates_per_call: int = 1):
    """The learner's dataset: elements of `updates_per_call` (K) batches of B sequences.

    One Reverb sampler stream, batched and prefetched (`replay.prefetch_size` batches,
    at least one element). Every sample taken ahead of the learner counts against the rate
    limiter, and while the learner's first call compiles the actors run ahead by as many
    items as samples were taken, divided by samples per insert. Acme's dataset (12 parallel
    samplers, each assembling whole elements) took 944 samples at the tiny sizes (59
    batches; the actors then reached a 1,500-step budget before the first update) and
    2,720 with 4 batches per element; this pipeline takes 2B in flight plus the prefetched
    elements (104 samples at K = 1, 152 at K = 4) and still samples 140-2,700 batches/s,
    far more than the learner consumes (benchmarks/samples_ahead.py, docs/results.md).
    """
    batch, k = config.replay.batch_size, updates_per_call
    dataset = reverb.TrajectoryDataset.from_table_signature(
        server_address=server_address,
        table=REPLAY_TABLE,
        max_in_flight_samples_per_worker=2 * batch,
    )
    dataset = dataset.batch(batch * k, drop_remainder=True)
    return dataset.prefetch(max(1, -(-config.replay.prefetch_size // k)))


def set_tf_threads(threads: int) -> None:
    """Pins TensorFlow's thread pools (0 keeps TensorFlow's default)."""
    if threads > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # already initialised in this process
            pass
