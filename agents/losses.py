"""Losses of the behavior-prior agent (DESIGN.md, "The learning rule").

Everything is time-major: tensors have shape [T+1, B, ...]. Row t holds observation x_t,
the action a_t taken there, the reward r_t and environment discount d_t that followed,
mu(a_t|x_t) and `start_t` (x_t begins an episode). When an episode ends inside a sequence,
its final observation has a row of its own whose action is a placeholder; the next row
is a start. Such a row is not a transition: it is masked out of the critic loss and cuts
the traces.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf


class SequenceBatch(NamedTuple):
    """A batch of replay sequences, time-major ([T+1, B, ...])."""

    observation: dict
    action: tf.Tensor
    reward: tf.Tensor
    discount: tf.Tensor
    start_of_episode: tf.Tensor
    behaviour_log_prob: tf.Tensor
    prior_state: tuple | None = None  # LSTM prior: (hidden, cell) [B, H] at the first step
    latent: tf.Tensor | None = None  # hierarchical: the behaviour's z, [T+1, B, Z]


class Losses(NamedTuple):
    critic: tf.Tensor
    policy: tf.Tensor
    prior: tf.Tensor
    kl: tf.Tensor  # mean KL(pi || pi0'): what the policy pays (the target prior; a bound
    # for hierarchical heads). `prior` is the same KL against the online prior.
    q: tf.Tensor  # mean Q of the taken actions
    retrace_target: tf.Tensor
    importance_weight: tf.Tensor  # mean clipped pi'(a|x) / mu(a|x)


def gaussian_kl(mean_p, scale_p, mean_q, scale_q) -> tf.Tensor:
    """KL(N(mean_p, scale_p^2) || N(mean_q, scale_q^2)) for diagonal Gaussians, summed over
    the last axis."""
    var_ratio = tf.square(scale_p / scale_q)
    mahalanobis = tf.square((mean_p - mean_q) / scale_q)
    return 0.5 * tf.reduce_sum(var_ratio + mahalanobis - 1.0 - tf.math.log(var_ratio), axis=-1)


def gaussian_log_prob(mean, scale, x) -> tf.Tensor:
    """log N(x; mean, diag(scale^2)), summed over the last axis."""
    z = (x - mean) / scale
    log_2pi = 1.8378770664093453
    return -0.5 * tf.reduce_sum(z * z + log_2pi, axis=-1) - tf.reduce_sum(tf.math.log(scale), -1)


def retrace_targets(
    next_q_taken: tf.Tensor,
    next_values: tf.Tensor,
    reward: tf.Tensor,
    discount: tf.Tensor,
    next_traces: tf.Tensor,
    start_of_episode: tf.Tensor,
    gamma: float,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Retrace targets for rows 0..T-1 and the mask of rows that are transitions.

    Q_ret_t = r_t + gamma d_t (V(x_{t+1}) + c_{t+1} [Q_ret_{t+1} - Q'(x_{t+1}, a_{t+1})]),
    with Q_ret_{T-1} bootstrapped from V(x_T) alone; c_{t+1} is zeroed where row t+1 is
    not a transition (an episode's final observation), so traces never cross an episode
    start. Unrolling gives the sum form in DESIGN.md. Only rows 1..T of Q', V and c are
    ever read, so only those are passed.

    Args:
      next_q_taken: [T, B] target critic Q'(x_t, a_t) for t = 1..T.
      next_values: [T, B] soft values V(x_t) for t = 1..T.
      reward, discount: [T+1, B] (row T is not read).
      next_traces: [T, B] c_t = lambda * min(1, pi'(a_t|x_t) / mu(a_t|x_t)), t = 1..T.
      start_of_episode: [T+1, B] bool.
      gamma: the agent's discount.
    Returns:
      (targets [T, B], is_transition [T, B] float mask).
    """
    num_transitions = next_q_taken.shape[0]
    is_transition = 1.0 - tf.cast(start_of_episode[1:], tf.float32)  # [T, B]: row t
    pcontinue = gamma * discount[:-1]  # [T, B]
    # c_{t+1} for t = 0..T-1, zero where row t+1 is not a transition; [T, B]
    cut_traces = next_traces * tf.concat([is_transition[1:], tf.ones_like(is_transition[:1])], 0)
    target = reward[-2] + pcontinue[-1] * next_values[-1]  # [B]: Q_ret_{T-1}
    targets = [target]
    for t in range(num_transitions - 2, -1, -1):
        correction = cut_traces[t] * (target - next_q_taken[t])  # row t+1's correction
        target = reward[t] + pcontinue[t] * (next_values[t] + correction)
        targets.append(target)
    return tf.stack(targets[::-1]), is_transition
