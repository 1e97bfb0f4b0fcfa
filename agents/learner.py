"""The learner: one update of policy, critic and prior per batch of replay sequences."""

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

from agents import losses as losses_lib
from agents.config import LearnerHyperparams
from agents.policy_terms import merge_time_batch
from networks.factory import Networks
from networks.recurrent import LSTMState


class NonFiniteUpdatesError(RuntimeError):
    """Raised after too many consecutive updates with a non-finite loss or gradient."""


def compute_losses(
    networks: Networks,
    target_networks: Networks,
    batch: losses_lib.SequenceBatch,
    hyper: LearnerHyperparams,
    noise: tuple[tf.Tensor, tf.Tensor] | None = None,
) -> losses_lib.Losses:
    """All three losses on one time-major batch (see DESIGN.md, "The learning rule").

    Policy and prior run once on the flattened [(T+1) * B] rows (no loop over time; an LSTM
    prior unrolls over the T+1 steps). The target critic runs on the taken actions and S
    target-policy samples of time steps 1..T only (Retrace reads no value at step 0); the
    online critic on the taken actions of steps 0..T-1 (the critic loss) and on S
    reparameterised policy samples of every step (SVG(0)), one sample set at a time
    (`Critic.sampled`). What the policy and prior contribute comes from the prior's kind
    (`agents.prior_kinds`, via `agents.policy_terms`). `noise` = (eps for the target-policy
    samples, eps for the policy samples), each [S, (T+1) * B, action size] standard normal;
    drawn when None (tests fix it; Gaussian policies only).
    """
    time_steps, batch_size = batch.reward.shape[0], batch.reward.shape[1]  # T+1, B
    rows = time_steps * batch_size  # (T+1) * B, row t * B + b
    num_samples = hyper.num_action_samples  # S
    obs = {key: merge_time_batch(value) for key, value in batch.observation.items()}  # [rows, .]
    action = merge_time_batch(batch.action)  # [rows, A]: as sampled (before clip or tanh)
    terms = networks.kind.terms(networks, target_networks, batch, obs, num_samples, noise)

    # The critic always sees actions as the environment executes them (clipped to the unit
    # box, or squashed by tanh). Otherwise the policy could exploit the critic's
    # extrapolation far outside the box.
    def executed(raw: tf.Tensor) -> tf.Tensor:
        return squash_action(raw, hyper.action_squash)

    # Retrace reads Q'(x_t, a_t), V(x_t) and c_t only for t = 1..T: the target critic and
    # everything after it work on those T * B rows ("later").
    later = {key: value[batch_size:] for key, value in obs.items()}  # [T * B, .]
    target_actions = tf.concat(  # [1 + S, rows, A]: the taken actions, then S samples
        [action[None], tf.reshape(terms.target_samples, [num_samples, rows, -1])], 0
    )
    target_q = target_networks.critic.sampled(  # [1 + S, T * B]
        later, executed(target_actions[:, batch_size:])
    )
    next_q_taken = target_q[0]  # [T * B] Q'(x_t, a_t), t = 1..T
    next_soft_q = tf.reduce_mean(target_q[1:], axis=0)  # [T * B] E_{a~pi'} Q'(x_t, a)
    next_values = tf.stop_gradient(  # [T * B] V(x_t) = E Q' - alpha KL(pi' || pi0'), t = 1..T
        next_soft_q - hyper.alpha * terms.kl_to_target_prior[batch_size:]
    )

    log_ratio = terms.target_log_prob - merge_time_batch(batch.behaviour_log_prob)  # [rows]
    ratio = tf.minimum(1.0, tf.exp(tf.minimum(log_ratio, 0.0)))  # [rows] min(1, pi'/mu)
    next_traces = hyper.retrace_lambda * ratio[batch_size:]  # [T * B] c_t, t = 1..T

    def by_time(tensor: tf.Tensor) -> tf.Tensor:  # [T * B] -> [T, B]
        return tf.reshape(tensor, [time_steps - 1, batch_size])

    targets, is_transition = losses_lib.retrace_targets(  # [T, B] each, rows 0..T-1
        next_q_taken=by_time(next_q_taken),
        next_values=by_time(next_values),
        reward=batch.reward,
        discount=batch.discount,
        next_traces=by_time(next_traces),
        start_of_episode=batch.start_of_episode,
        gamma=hyper.discount,
    )
    targets = tf.stop_gradient(targets)

    # Online critic on the taken actions (critic loss) and, in a separate call, on S
    # reparameterised policy samples (SVG(0)): the critic's weight gradients then run over
    # the taken actions only, the policy's input gradients over the samples only.
    transitions = rows - batch_size  # T * B: rows 0..T-1 (the last row only bootstraps)
    first_rows = {key: value[:transitions] for key, value in obs.items()}  # [T * B, .]
    q_taken = tf.reshape(  # [T, B] Q(x_t, a_t), t = 0..T-1
        networks.critic(first_rows, executed(action[:transitions])), [-1, batch_size]
    )
    policy_actions = tf.reshape(terms.policy_samples, [num_samples, rows, -1])  # [S, rows, A]
    q_policy = tf.reduce_mean(  # [rows] E_eps Q(x, mu(x) + sigma(x) eps): SVG(0)
        networks.critic.sampled(obs, executed(policy_actions)), axis=0
    )

    td = targets - q_taken  # [T, B]
    critic_loss = (  # scalar: mean squared TD error over transition rows
        0.5
        * tf.reduce_sum(is_transition * tf.square(td))
        / tf.maximum(tf.reduce_sum(is_transition), 1.0)
    )
    # scalar: -Q + alpha KL(pi || pi0'), every row
    policy_loss = tf.reduce_mean(-q_policy + hyper.alpha * terms.kl_to_target_prior)
    prior_loss = tf.reduce_mean(terms.prior_loss)  # scalar: KL(sg(pi) || pi0), every row
    return losses_lib.Losses(
        critic=critic_loss,
        policy=policy_loss,
        prior=prior_loss,
        kl=tf.reduce_mean(terms.kl_to_target_prior),
        q=tf.reduce_mean(q_taken),
        retrace_target=tf.reduce_mean(targets),
        importance_weight=tf.reduce_mean(ratio),
    )


ACTION_SQUASHES = ("clip", "tanh")


def squash_action(action: tf.Tensor, squash: str = "clip") -> tf.Tensor:
    """Actions as the environment executes them, from the Gaussian samples replay stores.

    "clip": the canonical wrapper clips to [-1, 1] the same way; "tanh": the actors'
    environments apply tanh first (`environments.wrappers.TanhActions`).
    """
    if squash == "clip":
        return tf.clip_by_value(action, -1.0, 1.0)
    if squash == "tanh":
        return tf.tanh(action)
    raise ValueError(f"unknown action_squash {squash!r}; use one of {ACTION_SQUASHES}")


def batch_from_replay(sample: reverb.ReplaySample) -> losses_lib.SequenceBatch:
    """Acme SequenceAdder sample ([B, T+1, ...]) -> time-major SequenceBatch."""
    data = sample.data

    def time_major(x: tf.Tensor) -> tf.Tensor:
        perm = [1, 0] + list(range(2, len(x.shape)))
        return tf.transpose(x, perm)

    return losses_lib.SequenceBatch(
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

    def _gradients(self, batch: losses_lib.SequenceBatch, noise=None):
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

    def _step(self, batch: losses_lib.SequenceBatch) -> dict[str, tf.Tensor]:
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

    def learn_from_batch(self, batch: losses_lib.SequenceBatch) -> dict[str, np.ndarray]:
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
