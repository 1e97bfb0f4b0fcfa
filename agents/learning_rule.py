"""The learning rule, top to bottom: one update's losses from a batch of replay sequences.

KL-regularised RL with a learned behavior prior (DESIGN.md, "The learning rule"):
  critic  Q_psi:   0.5 (Q_ret - Q(x_t, a_t))^2 over transitions, Q_ret from Retrace with
                   the target critic and the soft value V = E_{a~pi'} Q' - alpha KL(pi || pi0')
                   (actions sampled from the target policy pi'; the KL of the online policy
                   pi, as Acme's svg0_prior does);
  policy  pi_theta: SVG(0), minimise -Q(x, a ~ pi) + alpha KL(pi || pi0') on every row but
                   an episode's final observation; Q is the online critic Q_psi (Acme's
                   svg0_prior differentiates its target critic instead: a choice, both are
                   estimates of the same value; the online one is the one fit to the latest
                   Retrace targets);
  prior   pi0_phi:  minimise KL(sg(pi) || pi0) on the same rows, with pi0 seeing only its
                   information set x^D (so it learns the behaviour it can explain from x^D).
Read in this order: the batch and result types, `compute_losses` (the whole rule),
`retrace_targets`, then what the policy and prior contribute for flat priors (`flat_terms`;
latent policies' terms are in agents/latent_terms.py), then the Gaussian helpers. The optimisers,
target copies and non-finite checks are in agents/learner.py; which terms a prior kind
uses is in agents/prior_kinds.py.

Everything is time-major: tensors have shape [T+1, B, ...]. Row t holds observation x_t,
the action a_t taken there, the reward r_t and environment discount d_t that followed,
mu(a_t|x_t) and `start_t` (x_t begins an episode). When an episode ends inside a sequence,
its final observation has a row of its own whose action is a placeholder; the next row
is a start. Such a row is not a transition: it is masked out of the critic loss and cuts
the traces, and out of the policy and prior losses (no critic is trained on it, so its Q
is extrapolation). The last row T cannot be told apart (its successor is not in the
sequence) and counts; consecutive items overlap by that row, and the next item masks it.
Flattened tensors have rows = (T+1) * B, row t * B + b; S is the number of action samples,
A the action size, Z a hierarchical latent's size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import tensorflow as tf

from bprl.agents.config import LearnerHyperparams
from bprl.networks.factory import Networks


class BurnIn(NamedTuple):
    """The N rows an item holds before its sequence (an LSTM prior's burn-in, R2D2)."""

    observation: dict  # [N, B, ...] each
    start_of_episode: tf.Tensor  # [N, B] bool


class SequenceBatch(NamedTuple):
    """A batch of replay sequences, time-major ([T+1, B, ...])."""

    observation: dict
    action: tf.Tensor
    reward: tf.Tensor
    discount: tf.Tensor
    start_of_episode: tf.Tensor
    behaviour_log_prob: tf.Tensor
    prior_state: tuple | None = None  # LSTM prior: (hidden, cell) [B, H] at the item's first
    # row as the actor stored it: the sequence's first step, or the burn-in's when there is one
    latent: tf.Tensor | None = None  # hierarchical: the behaviour's z, [T+1, B, Z]
    burn_in: BurnIn | None = None  # LSTM prior with `prior.burn_in` = N > 0


class Losses(NamedTuple):
    """Scalars of one update: the three losses, then diagnostics (each logged once)."""

    critic: tf.Tensor
    policy: tf.Tensor
    prior: tf.Tensor
    kl: tf.Tensor  # mean KL(pi || pi0'): what the policy pays (the target prior; a bound
    # for hierarchical heads). `prior` is the same KL against the online prior.
    q: tf.Tensor  # mean Q of the taken actions
    retrace_target: tf.Tensor
    importance_weight: tf.Tensor  # mean clipped pi'(a|x) / mu(a|x)


class PolicyTerms(NamedTuple):
    """What the policy and the prior contribute, per batch row (from the prior's kind)."""

    target_samples: tf.Tensor  # [S * rows, A] actions a ~ pi_theta' (no gradient needed)
    target_log_prob: tf.Tensor  # [rows] log pi_theta'(behaviour) (of (z, a) if hierarchical)
    policy_samples: tf.Tensor  # [S * rows, A] reparameterised a ~ pi_theta
    kl_to_target_prior: tf.Tensor  # [rows] KL(pi_theta || pi0_phi') (or its bound)
    prior_loss: tf.Tensor  # [rows] KL(sg(pi_theta) || pi0_phi) (or its bound)


def compute_losses(
    networks: Networks,
    target_networks: Networks,
    batch: SequenceBatch,
    hyper: LearnerHyperparams,
    noise: tuple[tf.Tensor, tf.Tensor] | None = None,
) -> Losses:
    """All three losses on one time-major batch (see DESIGN.md, "The learning rule").

    Policy and prior run once on the flattened [(T+1) * B] rows (no loop over time; an LSTM
    prior unrolls over the T+1 steps). The target critic runs on the taken actions and S
    target-policy samples of time steps 1..T only (Retrace reads no value at step 0); the
    online critic on the taken actions of steps 0..T-1 (the critic loss) and on S
    reparameterised policy samples of every step (SVG(0)), one sample set at a time
    (`Critic.sampled`). What the policy and prior contribute comes from the prior's kind
    (`agents.prior_kinds`: `flat_terms` below, or agents/latent_terms.py for latent
    policies). `noise` = (eps for the target-policy samples, eps for the policy samples),
    each [S, (T+1) * B, A] standard normal; drawn when None (tests fix it; Gaussian
    policies only).
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
    next_values = tf.stop_gradient(  # [T * B] V(x_t) = E Q' - alpha KL(pi || pi0'), t = 1..T
        next_soft_q - hyper.alpha * terms.kl_to_target_prior[batch_size:]
    )

    log_ratio = terms.target_log_prob - merge_time_batch(batch.behaviour_log_prob)  # [rows]
    ratio = tf.minimum(1.0, tf.exp(tf.minimum(log_ratio, 0.0)))  # [rows] min(1, pi'/mu)
    next_traces = hyper.retrace_lambda * ratio[batch_size:]  # [T * B] c_t, t = 1..T

    def by_time(tensor: tf.Tensor) -> tf.Tensor:  # [T * B] -> [T, B]
        return tf.reshape(tensor, [time_steps - 1, batch_size])

    targets, is_transition = retrace_targets(  # [T, B] each, rows 0..T-1
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
    # The policy and the prior learn on every row but an episode's final observation (a
    # row followed by a start); row T counts (see the module docstring).
    start = batch.start_of_episode  # [T+1, B] bool
    is_final = tf.concat([start[1:], tf.zeros_like(start[:1])], 0)  # [T+1, B] bool
    row_weight = 1.0 - tf.cast(merge_time_batch(is_final), tf.float32)  # [rows]

    def row_mean(per_row: tf.Tensor) -> tf.Tensor:  # [rows] -> scalar, over weighted rows
        return tf.reduce_sum(row_weight * per_row) / tf.maximum(tf.reduce_sum(row_weight), 1.0)

    # scalar: -Q + alpha KL(pi || pi0')
    policy_loss = row_mean(-q_policy + hyper.alpha * terms.kl_to_target_prior)
    prior_loss = row_mean(terms.prior_loss)  # scalar: KL(sg(pi) || pi0)
    return Losses(
        critic=critic_loss,
        policy=policy_loss,
        prior=prior_loss,
        kl=row_mean(terms.kl_to_target_prior),
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


def flat_terms(
    networks: Networks,
    target_networks: Networks,
    batch: SequenceBatch,
    obs: dict,
    num_samples: int,
    noise: tuple[tf.Tensor, tf.Tensor] | None,
    prior_moments: Callable[[Any], tuple[tf.Tensor, tf.Tensor]],
) -> PolicyTerms:
    """Gaussian policy with a flat prior; `noise` = (target eps, policy eps).

    `prior_moments(prior)` gives a prior head's [rows, A] mean and scale on the batch (an
    MLP reads the rows, an LSTM unrolls from the stored state: the prior kind decides).
    """
    action = merge_time_batch(batch.action)  # [rows, A], rows = (T+1) * B
    rows, action_size = action.shape[0], action.shape[-1]
    pi_mean, pi_scale = networks.policy.moments(obs)  # [rows, A] each
    pi0_mean, pi0_scale = prior_moments(networks.prior)  # [rows, A] each
    target_pi_mean, target_pi_scale = target_networks.policy.moments(obs)  # [rows, A]
    target_pi0_mean, target_pi0_scale = prior_moments(target_networks.prior)  # [rows, A]
    if noise is None:
        noise = (
            tf.random.normal([num_samples, rows, action_size]),
            tf.random.normal([num_samples, rows, action_size]),
        )
    eps, policy_eps = noise
    return PolicyTerms(
        target_samples=tf.reshape(target_pi_mean + target_pi_scale * eps, [-1, action_size]),
        target_log_prob=gaussian_log_prob(target_pi_mean, target_pi_scale, action),
        policy_samples=tf.reshape(pi_mean + pi_scale * policy_eps, [-1, action_size]),
        kl_to_target_prior=gaussian_kl(pi_mean, pi_scale, target_pi0_mean, target_pi0_scale),
        prior_loss=gaussian_kl(
            tf.stop_gradient(pi_mean), tf.stop_gradient(pi_scale), pi0_mean, pi0_scale
        ),
    )


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


def merge_time_batch(tensor: tf.Tensor) -> tf.Tensor:
    """[T+1, B, ...] -> [(T+1) * B, ...], row t * B + b."""
    shape = tf.shape(tensor)
    return tf.reshape(tensor, tf.concat([[shape[0] * shape[1]], shape[2:]], axis=0))


def tile_obs(observation: dict, times: int) -> dict:
    """Repeats every observation row `times` times along the leading axis (block-wise)."""
    return {k: tf.tile(v, [times] + [1] * (len(v.shape) - 1)) for k, v in observation.items()}
