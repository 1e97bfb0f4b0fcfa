"""The learner: applies the learning rule (agents/learning_rule.py) to replay batches.

This file holds the optimisers, target networks, the non-finite guard, checkpoint state
and logging; the losses themselves are computed in agents/learning_rule.py.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
import reverb
import sonnet as snt
import tensorflow as tf
from absl import logging
from acme import core
from acme.utils import counting, loggers

from bprl.agents.config import LearnerHyperparams
from bprl.agents.learning_rule import BurnIn, SequenceBatch, compute_losses
from bprl.networks.factory import Networks
from bprl.networks.recurrent import LSTMState


class NonFiniteUpdatesError(RuntimeError):
    """Raised after too many consecutive updates with a non-finite loss or gradient."""


def batch_from_replay(sample: reverb.ReplaySample, burn_in: int = 0) -> SequenceBatch:
    """Acme SequenceAdder sample ([B, N+T+1, ...]) -> time-major SequenceBatch of the last
    T+1 rows; the first N (`burn_in`) rows' observations and starts go to `batch.burn_in`."""
    data = sample.data

    def time_major(x: tf.Tensor, rows: slice = slice(burn_in, None)) -> tf.Tensor:
        perm = [1, 0] + list(range(2, len(x.shape)))
        return tf.transpose(x[:, rows], perm)

    head = slice(0, burn_in)
    return SequenceBatch(
        burn_in=BurnIn(
            observation={k: time_major(v, head) for k, v in data.observation.items()},
            start_of_episode=time_major(data.start_of_episode, head),
        )
        if burn_in
        else None,
        observation={k: time_major(v) for k, v in data.observation.items()},
        action=time_major(data.action),
        reward=time_major(data.reward),
        discount=time_major(data.discount),
        start_of_episode=time_major(data.start_of_episode),
        behaviour_log_prob=time_major(data.extras["log_prob"]),
        # LSTM prior: its state at each item's first row, as the actor stored it.
        prior_state=(
            LSTMState(data.extras["prior_hidden"][:, 0], data.extras["prior_cell"][:, 0])
            if "prior_hidden" in data.extras
            else None
        ),
        latent=time_major(data.extras["latent"]) if "latent" in data.extras else None,
    )


def split_updates(batch: SequenceBatch, updates: int) -> SequenceBatch:
    """A batch of `updates` * B sequences -> the same tensors with a leading [updates] axis,
    update k's B sequences being the k-th B of the batch (as sampled, in order)."""

    def split(x: tf.Tensor | None, axis: int) -> tf.Tensor | None:
        if x is None:
            return None
        shape = list(x.shape)
        shape[axis : axis + 1] = [updates, shape[axis] // updates]
        x = tf.reshape(x, shape)  # [..., K, B, ...]
        return tf.transpose(x, [axis] + [i for i in range(len(shape)) if i != axis])

    # Every field is time-major ([T+1, K*B, ...] -> [K, T+1, B, ...]; a burn-in's [N, K*B,
    # ...] alike) but the LSTM prior's state at the first row ([K*B, H] -> [K, B, H]).
    stacked = tf.nest.map_structure(lambda x: split(x, 1), batch._replace(prior_state=None))
    state = batch.prior_state
    return stacked._replace(
        prior_state=None if state is None else type(state)(*(split(x, 0) for x in state))
    )


class Learner(core.Learner):
    """Trains policy, critic and prior jointly with three Adam optimisers."""

    def __init__(
        self,
        networks: Networks,
        dataset: Iterator[reverb.ReplaySample],
        hyper: LearnerHyperparams,
        counter: counting.Counter | None = None,
        logger: loggers.Logger | None = None,
        log_every_steps: int = 100,
        update_lock: threading.Lock | None = None,
        jit_compile: bool = True,
        frozen_prior: bool = False,
        updates_per_call: int = 1,
        burn_in: int = 0,
    ):
        """`jit_compile` compiles the update with XLA (same computation, fused kernels).

        `updates_per_call` K: each `step` takes one dataset element of K * B sequences
        and runs K updates, one per B of them in the order sampled, in one compiled call
        (a loop inside it). Each update is the same as alone; what K saves is the work
        around an update (the call, the dataset's element, the batch's transposes), which
        is most of an update's time for small networks. The K batches are sampled before
        the first of their updates, so data inserted during those updates waits for the
        next call; with uniform sampling the batches' distribution is otherwise unchanged.

        `burn_in` N: each replay item holds N rows before its sequence, over which the
        prior kind recomputes its state (`batch_from_replay`, `prior.burn_in`).

        `frozen_prior` keeps the prior as it was given (e.g. loaded from a prior artifact):
        no prior update, so the target prior always equals it, and the policy's KL is
        against it. Variables the prior shares with the policy (a hierarchical prior's
        shared low level, `PriorKind.frozen_policy_variables`) stay fixed too.

        With XLA, fast math is requested for the process (`request_xla_fast_math`); the
        learner is built before its first update, so the flag is read in time.
        """
        # Held while parameters change, so a checkpoint never sees half an update.
        self._update_lock = update_lock or contextlib.nullcontext()
        self._networks = networks
        self._target_networks = copy.deepcopy(networks)
        self._iterator = dataset
        self._hyper = hyper
        self._counter = counter or counting.Counter(prefix="learner")
        self._logger = logger or loggers.NoOpLogger()
        self._log_every = log_every_steps

        self._policy_optimizer = snt.optimizers.Adam(hyper.policy_learning_rate)
        self._critic_optimizer = snt.optimizers.Adam(hyper.critic_learning_rate)
        self._prior_optimizer = snt.optimizers.Adam(hyper.prior_learning_rate)
        self._num_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="num_steps")
        self._bad_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_updates")
        self._consecutive_bad = 0
        self._frozen_prior = frozen_prior
        fixed = (
            {v.ref() for v in networks.kind.frozen_policy_variables(networks)}
            if frozen_prior
            else set()
        )
        self._policy_trainables = tuple(
            v for v in networks.policy.trainable_variables if v.ref() not in fixed
        )
        self._prior_trainables = () if frozen_prior else tuple(networks.prior.trainable_variables)
        self._variables = {
            "policy": networks.policy.variables,
            "prior": networks.prior.variables,
            "critic": networks.critic.variables,
        }
        if updates_per_call < 1:
            raise ValueError(f"updates_per_call must be >= 1, got {updates_per_call}")
        self._updates_per_call = updates_per_call
        self._burn_in = int(burn_in)
        # Fixed (target eps, policy eps) noise for every update instead of fresh samples:
        # tests compare two ways of running the same updates with it. Set before the first.
        self.fixed_noise: tuple[tf.Tensor, tf.Tensor] | None = None
        self._step_fn = tf.function(self._step, autograph=False, jit_compile=jit_compile)
        self._sample_fn = tf.function(
            self._updates_from_sample, autograph=False, jit_compile=jit_compile
        )
        self._last_log_time = time.time()
        self._last_log_step = 0
        self._log_lock = threading.Lock()
        self._latest: tuple[dict, dict] | None = None  # the latest update's metrics, counts

    @property
    def networks(self) -> Networks:
        return self._networks

    @property
    def target_networks(self) -> Networks:
        return self._target_networks

    @property
    def num_steps(self) -> int:
        return int(self._num_steps.numpy())

    def checkpoint_state(self) -> dict:
        """Everything needed to resume exactly (networks, targets, optimisers, step)."""
        return {
            "policy": self._networks.policy,
            "prior": self._networks.prior,
            "critic": self._networks.critic,
            "target_policy": self._target_networks.policy,
            "target_prior": self._target_networks.prior,
            "target_critic": self._target_networks.critic,
            "policy_optimizer": self._policy_optimizer,
            "critic_optimizer": self._critic_optimizer,
            "prior_optimizer": self._prior_optimizer,
            "num_steps": self._num_steps,
            "bad_updates": self._bad_updates,
        }

    def _gradients(self, batch: SequenceBatch, noise=None):
        """(losses, (policy, critic, prior) gradients); `noise` as in `compute_losses`."""
        nets = self._networks
        with tf.GradientTape(persistent=True) as tape:
            loss = compute_losses(nets, self._target_networks, batch, self._hyper, noise)
        grads = (
            tape.gradient(loss.policy, self._policy_trainables),
            tape.gradient(loss.critic, nets.critic.trainable_variables),
            tape.gradient(loss.prior, self._prior_trainables) if self._prior_trainables else (),
        )
        del tape
        return loss, grads

    def _step(self, batch: SequenceBatch) -> dict[str, tf.Tensor]:
        loss, (policy_grads, critic_grads, prior_grads) = self._gradients(batch, self.fixed_noise)
        nets = self._networks
        checks = [
            tf.reduce_all(tf.math.is_finite(x)) for x in (loss.critic, loss.policy, loss.prior)
        ]
        checks += [
            tf.reduce_all(tf.math.is_finite(g))
            for g in (*policy_grads, *critic_grads, *prior_grads)
        ]
        finite = tf.reduce_all(tf.stack(checks))

        def apply() -> tf.Tensor:
            self._policy_optimizer.apply(policy_grads, self._policy_trainables)
            self._critic_optimizer.apply(critic_grads, nets.critic.trainable_variables)
            if self._prior_trainables:  # a frozen prior is never updated
                self._prior_optimizer.apply(prior_grads, self._prior_trainables)
            self._num_steps.assign_add(1)
            update_targets = tf.equal(self._num_steps % self._hyper.target_update_period, 0)

            def copy_targets() -> tf.Tensor:
                for online, target in (
                    (nets.policy, self._target_networks.policy),
                    (nets.prior, self._target_networks.prior),
                    (nets.critic, self._target_networks.critic),
                ):
                    for src, dst in zip(online.variables, target.variables, strict=True):
                        dst.assign(src)
                return tf.constant(True)

            tf.cond(update_targets, copy_targets, lambda: tf.constant(False))
            return tf.constant(True)

        def skip() -> tf.Tensor:
            self._bad_updates.assign_add(1)
            return tf.constant(False)

        applied = tf.cond(finite, apply, skip)
        return {
            "critic_loss": loss.critic,
            "policy_loss": loss.policy,
            "prior_loss": loss.prior,
            "kl_policy_prior": loss.kl,
            "q_mean": loss.q,
            "retrace_target_mean": loss.retrace_target,
            "importance_weight_mean": loss.importance_weight,
            "update_applied": applied,
        }

    def _updates_from_sample(self, sample: reverb.ReplaySample) -> dict[str, tf.Tensor]:
        """`updates_per_call` updates on one dataset element (compiled: the transposes of
        `batch_from_replay` fuse into the update). Returns the updates' mean losses and
        diagnostics, how many were applied, and how many skipped ones ended the call."""
        batch = batch_from_replay(sample, self._burn_in)  # [T+1, K*B, ...]
        k = self._updates_per_call
        if k == 1:
            metrics = self._step(batch)
            applied = metrics.pop("update_applied")
            metrics["updates_applied"] = tf.cast(applied, tf.int64)
            metrics["trailing_skipped"] = 1 - metrics["updates_applied"]
            return metrics
        stacked = split_updates(batch, k)  # [K, T+1, B, ...]
        names = [n for n in self._metric_names if n != "update_applied"]

        def body(i, applied, trailing, totals):
            one = tf.nest.map_structure(lambda x: None if x is None else x[i], stacked)
            metrics = self._step(one)
            assert set(metrics) == set(self._metric_names), sorted(metrics)
            ok = tf.cast(metrics["update_applied"], tf.int64)
            trailing = tf.where(ok > 0, tf.zeros_like(trailing), trailing + 1)
            totals = [
                t + tf.cast(metrics[n], tf.float32) for t, n in zip(totals, names, strict=True)
            ]
            return i + 1, applied + ok, trailing, totals

        zero = tf.constant(0, tf.int64)
        _, applied, trailing, totals = tf.while_loop(
            lambda i, *_: i < k,
            body,
            (tf.constant(0), zero, zero, [tf.constant(0.0)] * len(names)),
        )
        metrics = {n: t / k for n, t in zip(names, totals, strict=True)}
        metrics["updates_applied"] = applied
        metrics["trailing_skipped"] = trailing
        return metrics

    _metric_names = (
        "critic_loss",
        "policy_loss",
        "prior_loss",
        "kl_policy_prior",
        "q_mean",
        "retrace_target_mean",
        "importance_weight_mean",
        "update_applied",
    )

    def _count_skipped(self, applied: int, trailing: int, updates: int) -> None:
        """The non-finite guard's bookkeeping after `updates` updates, of which `applied`
        were applied and the last `trailing` skipped; raises after too many in a row."""
        if applied == updates:
            self._consecutive_bad = 0
            return
        self._consecutive_bad = trailing if applied else self._consecutive_bad + updates
        logging.warning(
            "skipped %d non-finite update(s) (%d in a row, %d in total)",
            updates - applied,
            self._consecutive_bad,
            int(self._bad_updates.numpy()),
        )
        if self._consecutive_bad >= self._hyper.max_bad_updates:
            raise NonFiniteUpdatesError(
                f"{self._consecutive_bad} consecutive updates had a non-finite loss or "
                "gradient; stopping (parameters were not written with them)"
            )

    def learn_from_batch(self, batch: SequenceBatch) -> dict[str, np.ndarray]:
        """One update on an explicit batch (tests and benchmarks use this directly)."""
        metrics = {k: v.numpy() for k, v in self._step_fn(batch).items()}
        applied = int(metrics["update_applied"])
        self._count_skipped(applied, 1 - applied, 1)
        return metrics

    def learn_from_sample(self, sample: reverb.ReplaySample) -> dict[str, np.ndarray]:
        """`updates_per_call` updates on one dataset element of K * B sequences."""
        metrics = {k: v.numpy() for k, v in self._sample_fn(sample).items()}
        applied = int(metrics.pop("updates_applied"))
        trailing = int(metrics.pop("trailing_skipped"))
        self._count_skipped(applied, trailing, self._updates_per_call)
        return metrics

    def step(self) -> None:
        sample = next(self._iterator)  # may block on the rate limiter: outside the lock
        with self._update_lock:
            metrics = self.learn_from_sample(sample)
        counts = self._counter.increment(steps=self._updates_per_call)
        with self._log_lock:
            self._latest = (metrics, counts)
            if self.num_steps - self._last_log_step >= self._log_every:
                self._write_latest()

    def flush_logs(self) -> None:
        """Writes the latest update's figures if not yet written, and flushes the logger.

        Called when the program stops: the updates since the last periodic write (all of
        them, in a short run) would otherwise never reach TensorBoard.
        """
        with self._log_lock:
            if self._latest is not None and self.num_steps > self._last_log_step:
                self._write_latest()
            flush = getattr(self._logger, "flush", None)
            if flush is not None:
                flush()

    def _write_latest(self) -> None:
        metrics, counts = self._latest
        metrics = dict(metrics)
        step, now = self.num_steps, time.time()
        metrics["learner_steps_per_second"] = (step - self._last_log_step) / max(
            now - self._last_log_time, 1e-9
        )
        metrics["bad_updates"] = int(self._bad_updates.numpy())
        metrics.update(counts)
        self._logger.write(metrics)
        self._last_log_time, self._last_log_step = now, step

    def get_variables(self, names: Sequence[str]) -> list[list[np.ndarray]]:
        return [[v.numpy() for v in self._variables[name]] for name in names]
