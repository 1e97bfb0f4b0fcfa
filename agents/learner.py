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

from agents.config import LearnerHyperparams
from agents.learning_rule import SequenceBatch, compute_losses
from networks.factory import Networks
from networks.recurrent import LSTMState


class NonFiniteUpdatesError(RuntimeError):
    """Raised after too many consecutive updates with a non-finite loss or gradient."""


def batch_from_replay(sample: reverb.ReplaySample) -> SequenceBatch:
    """Acme SequenceAdder sample ([B, T+1, ...]) -> time-major SequenceBatch."""
    data = sample.data

    def time_major(x: tf.Tensor) -> tf.Tensor:
        perm = [1, 0] + list(range(2, len(x.shape)))
        return tf.transpose(x, perm)

    return SequenceBatch(
        observation={k: time_major(v) for k, v in data.observation.items()},
        action=time_major(data.action),
        reward=time_major(data.reward),
        discount=time_major(data.discount),
        start_of_episode=time_major(data.start_of_episode),
        behaviour_log_prob=time_major(data.extras["log_prob"]),
        # LSTM prior: its state at each sequence's first step, as the actor stored it.
        prior_state=(
            LSTMState(data.extras["prior_hidden"][:, 0], data.extras["prior_cell"][:, 0])
            if "prior_hidden" in data.extras
            else None
        ),
        latent=time_major(data.extras["latent"]) if "latent" in data.extras else None,
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
    ):
        """`jit_compile` compiles the update with XLA (same computation, fused kernels).

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
        self._step_fn = tf.function(self._step, autograph=False, jit_compile=jit_compile)
        self._last_log_time = time.time()
        self._last_log_step = 0

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
        loss, (policy_grads, critic_grads, prior_grads) = self._gradients(batch)
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

    def learn_from_batch(self, batch: SequenceBatch) -> dict[str, np.ndarray]:
        """One update on an explicit batch (tests and benchmarks use this directly)."""
        metrics = {k: v.numpy() for k, v in self._step_fn(batch).items()}
        if metrics["update_applied"]:
            self._consecutive_bad = 0
        else:
            self._consecutive_bad += 1
            logging.warning(
                "skipped a non-finite update (%d in a row, %d in total)",
                self._consecutive_bad,
                int(self._bad_updates.numpy()),
            )
            if self._consecutive_bad >= self._hyper.max_bad_updates:
                raise NonFiniteUpdatesError(
                    f"{self._consecutive_bad} consecutive updates had a non-finite loss or "
                    "gradient; stopping (parameters were not written with them)"
                )
        return metrics

    def step(self) -> None:
        sample = next(self._iterator)  # may block on the rate limiter: outside the lock
        with self._update_lock:
            metrics = self.learn_from_batch(batch_from_replay(sample))
        counts = self._counter.increment(steps=1)
        step = self.num_steps
        if step - self._last_log_step >= self._log_every:
            now = time.time()
            metrics["learner_steps_per_second"] = (step - self._last_log_step) / max(
                now - self._last_log_time, 1e-9
            )
            metrics["bad_updates"] = int(self._bad_updates.numpy())
            metrics.update(counts)
            metrics.pop("update_applied")
            self._logger.write(metrics)
            self._last_log_time, self._last_log_step = now, step

    def get_variables(self, names: Sequence[str]) -> list[list[np.ndarray]]:
        return [[v.numpy() for v in self._variables[name]] for name in names]
