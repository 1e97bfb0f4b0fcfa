"""Turns a validated config into the pieces each process needs, once.

`RunBuilder` is made from the config in each process (the learner, an actor process, an
evaluator, a reuse tool); what the config implies (the environment spec, the head sizes,
the prior's keys and kind, the replay extras, the learner's kernels and updates per call)
are its fields, computed once and never written back into the config; its `make_*`
methods build the environments, networks, replay tables, adders and the learner's
dataset. The config-free pieces (the replay table's shape) are functions below it."""

from __future__ import annotations

import dataclasses
import functools

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
from bprl.launch.config import derived, xla
from bprl.networks.factory import Networks

REPLAY_TABLE = "replay"
EXTRAS_SPEC = {"log_prob": specs.Array(shape=(), dtype=np.float32, name="log_prob")}


def stored_steps(transitions: int, burn_in: int = 0) -> int:
    """Steps per replay item: T transitions need T + 1 steps (the last one bootstraps),
    after the N burn-in steps of an LSTM prior (`prior.burn_in`)."""
    return burn_in + transitions + 1


def sequence_table(
    env_spec: specs.EnvironmentSpec,
    extras: dict,
    transitions: int,
    max_size: int,
    rate_limiter: reverb.rate_limiters.RateLimiter,
    sampler: reverb.selectors.Selector | None = None,
    max_times_sampled: int = 0,
    name: str = REPLAY_TABLE,
    burn_in: int = 0,
) -> reverb.Table:
    """The one place a replay table is made (the program, benchmarks and tests use it):
    items of `stored_steps(transitions, burn_in)` steps, FIFO removal, uniform sampling
    unless `sampler` says otherwise."""
    return reverb.Table(
        name=name,
        sampler=sampler or reverb.selectors.Uniform(),
        remover=reverb.selectors.Fifo(),
        max_size=max_size,
        max_times_sampled=max_times_sampled,
        rate_limiter=rate_limiter,
        signature=reverb_adders.SequenceAdder.signature(
            env_spec, extras, sequence_length=stored_steps(transitions, burn_in)
        ),
    )


# Below this many matrix-product FLOPs per update, the work around an update (its call,
# dataset element and batch transposes) is a large part of it, and `auto` runs
# AUTO_UPDATES_PER_CALL updates per call (the gain measured at several sizes:
# docs/results.md, "The learner's input pipeline").
SMALL_UPDATE_FLOPS = 4e9
AUTO_UPDATES_PER_CALL = 4


class RunBuilder:
    """What one process makes from the validated `config`, derived once.

    `env_spec`: the task's spec when the caller already has an environment (else one
    environment is built the first time the spec is needed). `learner_kernels`: the
    learner's kernels as its launcher resolved them (else resolved on this machine).
    """

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        env_spec: specs.EnvironmentSpec | None = None,
        learner_kernels: str | None = None,
    ):
        self.config = config
        self.prior_kind = derived.prior_kind(config)
        self.head_sizes = derived.head_sizes(config)
        self.prior_keys = derived.prior_keys(config)
        self._env_spec = env_spec
        self._learner_kernels = learner_kernels

    # What the config implies, each computed once.

    @functools.cached_property
    def env_spec(self) -> specs.EnvironmentSpec:
        if self._env_spec is None:
            env = self.make_environment(self.config.seed)
            self._env_spec = specs.make_environment_spec(env)
            env.close()
        return self._env_spec

    @functools.cached_property
    def extras_spec(self) -> dict:
        """What each replay step carries besides the transition: always the behaviour
        log-probability; the prior's kind adds what it needs (an LSTM prior its state
        before the step, a hierarchical policy its z)."""
        return {**EXTRAS_SPEC, **self.prior_kind.replay_extras(self.head_sizes)}

    @property
    def burn_in(self) -> int:
        """N rows each replay item holds before its sequence (`prior.burn_in`)."""
        return int(self.config.prior.get("burn_in", 0))

    @functools.cached_property
    def hyperparams(self) -> LearnerHyperparams:
        return LearnerHyperparams(**self.config.agent.to_dict())

    @functools.cached_property
    def update_flops(self) -> float:
        """Matrix-product FLOPs of one learner update (`agents/update_cost.py`)."""
        spec, config = self.env_spec, self.config
        obs = {k: int(np.prod(s.shape)) for k, s in spec.observations.items()}
        net = config.network
        return update_cost.update_matmul_flops(
            obs=sum(obs.values()),
            prior_obs=sum(obs[k] for k in self.prior_keys),
            act=int(np.prod(spec.actions.shape)),
            batch_size=config.replay.batch_size,
            sequence_length=config.replay.sequence_length,
            num_samples=config.agent.num_action_samples,
            policy_hidden=tuple(net.policy_hidden),
            prior_hidden=tuple(net.prior_hidden),
            critic_hidden=tuple(net.critic_hidden),
        )

    def resolve_learner_kernels(self, has_bfloat16: bool | None = None) -> str:
        """`resources.learner_kernels` as a learner on this machine runs it: auto is decided
        by this CPU (or `has_bfloat16`) and the update's size (`xla.resolve_kernels`)."""
        setting = self.config.resources.learner_kernels
        if setting != "auto":
            return xla.resolve_kernels(setting, 0.0, has_bfloat16)
        flops = self.update_flops
        if flops < xla.BFLOAT16_MIN_UPDATE_FLOPS:  # no need to look at the CPU (a probe)
            return "xla_float32"
        return xla.resolve_kernels(setting, flops, has_bfloat16)

    @functools.cached_property
    def learner_kernels(self) -> str:
        return self._learner_kernels or self.resolve_learner_kernels()

    @functools.cached_property
    def updates_per_call(self) -> int:
        """`resources.learner_updates_per_call`, with 0 (auto) decided by the update's size."""
        k = int(self.config.resources.learner_updates_per_call)
        if k > 0:
            return k
        return AUTO_UPDATES_PER_CALL if self.update_flops < SMALL_UPDATE_FLOPS else 1

    @functools.cached_property
    def learner_threads(self) -> int:
        """`resources.learner_threads`, with 0 (auto) decided by the update's size: 1 thread
        for a small update, else TensorFlow's default (returned as 0: leave it)."""
        threads = int(self.config.resources.learner_threads)
        if threads > 0:
            return threads
        if threads < 0:
            return 0
        return 1 if self.update_flops < SMALL_UPDATE_FLOPS else 0

    # What a process makes.

    def make_environment(self, seed: int) -> dm_env.Environment:
        """The task, taking the policy's samples as they are stored in replay: with
        `agent.action_squash = "tanh"` it executes tanh(sample); otherwise the canonical
        wrapper clips the sample to the unit box."""
        config = self.config
        env = registry.make_environment(config.task, seed, **config.task_kwargs.to_dict())
        if config.agent.get("action_squash", "clip") == "tanh":
            env = TanhActions(env)
        return env

    def make_environments(self, seeds: list[int]) -> list[dm_env.Environment]:
        """One environment per seed; the first gives the spec when none is known yet (no
        environment is built just for it)."""
        envs = [self.make_environment(seed) for seed in seeds]
        if self._env_spec is None and envs:
            self._env_spec = specs.make_environment_spec(envs[0])
        return envs

    def make_networks(self) -> Networks:
        """The run's networks, seeded by `config.seed`; a configured prior artifact
        (`prior.artifact`) replaces the prior's initial weights."""
        config, spec = self.config, self.env_spec
        tf.random.set_seed(config.seed)
        networks = prior_kinds.make_networks(
            spec.observations,
            int(np.prod(spec.actions.shape)),
            self.prior_keys,
            prior_kind=config.prior.kind,
            **dataclasses.asdict(self.head_sizes),
        )
        if config.prior.artifact:
            from bprl.agents import prior_artifact

            prior_artifact.load_into(config.prior.artifact, networks)
        return networks

    def make_learner_networks(self) -> tuple[Networks, bool]:
        """The networks set up for `learner_kernels`, and whether to XLA-compile the
        update. The process's environment must match (`xla.learner_environment`)."""
        networks = self.make_networks()
        networks.critic.one_pass_bytes = int(self.config.resources.critic_one_pass_bytes)
        if self.learner_kernels == "onednn_bfloat16":
            networks.set_product_dtype(tf.bfloat16)
            return networks, False  # products on oneDNN; XLA's auto-clustering fuses the rest
        return networks, networks.kind.jit_compile

    def make_replay_tables(self) -> list[reverb.Table]:
        """The program's table: uniform sampling, FIFO removal, samples-per-insert limiter."""
        rep = self.config.replay
        error_buffer = max(
            2.0 * max(1.0, rep.samples_per_insert),
            rep.min_size * rep.samples_per_insert * rep.samples_per_insert_tolerance,
        )
        limiter = reverb.rate_limiters.SampleToInsertRatio(
            samples_per_insert=rep.samples_per_insert,
            min_size_to_sample=rep.min_size,
            error_buffer=error_buffer,
        )
        spec = self.env_spec
        table = sequence_table(
            spec, self.extras_spec, rep.sequence_length, rep.max_size, limiter, burn_in=self.burn_in
        )
        return [table]

    def make_unlimited_table(
        self, max_size: int | None = None, min_size: int = 1, in_order: bool = False
    ) -> reverb.Table:
        """The program's table without its rate limiter (benchmarks, tests): sampling waits
        only for `min_size` items; `in_order` samples FIFO, each item once."""
        return sequence_table(
            self.env_spec,
            self.extras_spec,
            self.config.replay.sequence_length,
            max_size or self.config.replay.max_size,
            reverb.rate_limiters.MinSize(min_size),
            sampler=reverb.selectors.Fifo() if in_order else None,
            max_times_sampled=1 if in_order else 0,
            burn_in=self.burn_in,
        )

    def make_adder(self, client: reverb.Client) -> adders.Adder:
        """Overlapping sequences of N+T+1 steps every T steps, continuing across episodes
        (N = `prior.burn_in`, usually 0).

        `replay.adder` picks the writer: "fast" (`agents.fast_adder.FastSequenceAdder`) or
        "acme" (Acme's `SequenceAdder`); their items are identical.
        """
        transitions = self.config.replay.sequence_length
        kind = self.config.replay.get("adder", "fast")
        if kind == "fast":
            from bprl.agents.fast_adder import FastSequenceAdder

            return FastSequenceAdder(
                client, sequence_length=transitions, table=REPLAY_TABLE, burn_in=self.burn_in
            )
        if kind != "acme":
            raise ValueError(f"unknown replay.adder {kind!r}; use 'fast' or 'acme'")
        return reverb_adders.SequenceAdder(
            client,
            sequence_length=stored_steps(transitions, self.burn_in),
            period=transitions,
            priority_fns={REPLAY_TABLE: None},
            end_of_episode_behavior=reverb_adders.EndBehavior.CONTINUE,
        )

    def make_dataset(self, server_address: str, updates_per_call: int | None = None):
        """The learner's dataset: elements of `updates_per_call` (K; default: this
        builder's) batches of B sequences.

        One Reverb sampler stream, batched and prefetched (`replay.prefetch_size` batches,
        at least one element). Every sample taken ahead of the learner counts against the
        rate limiter, and while the learner's first call compiles the actors run ahead by
        as many items as samples were taken, divided by samples per insert. So this
        pipeline keeps only 2B samples in flight plus the prefetched elements, far fewer
        than Acme's dataset (parallel samplers each assembling whole elements), and still
        samples faster than the learner consumes: benchmarks/samples_ahead.py, figures in
        docs/results.md ("The learner's input pipeline").
        """
        batch = self.config.replay.batch_size
        k = updates_per_call or self.updates_per_call
        dataset = reverb.TrajectoryDataset.from_table_signature(
            server_address=server_address,
            table=REPLAY_TABLE,
            max_in_flight_samples_per_worker=2 * batch,
        )
        dataset = dataset.batch(batch * k, drop_remainder=True)
        return dataset.prefetch(max(1, -(-self.config.replay.prefetch_size // k)))


def set_tf_threads(threads: int) -> None:
    """Pins TensorFlow's thread pools (0 keeps TensorFlow's default)."""
    if threads > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # already initialised in this process
            pass
