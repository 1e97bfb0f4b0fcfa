"""What the policy and the prior contribute to the losses, for each prior architecture.

The critic, Retrace and loss assembly (agents/learner.py) only need, per batch row:
samples of the target policy's actions (soft value), the target policy's log-probability
of the stored behaviour (importance weights), reparameterised samples of the online
policy (SVG(0)), the policy's KL term against the target prior, and the prior's loss.
Flat heads (an MLP or LSTM prior) have analytic KLs; the hierarchical heads use the upper
bound of DESIGN.md: KL(pi^H || pi0^H) + E_z[KL(pi^L || pi0^L)], whose second term vanishes
when the low level is shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import tensorflow as tf

from agents import losses as losses_lib
from networks.factory import Networks


class PolicyTerms(NamedTuple):
    target_samples: tf.Tensor  # [S * rows, A] actions a ~ pi_theta' (no gradient needed)
    target_log_prob: tf.Tensor  # [rows] log pi_theta'(behaviour) (of (z, a) if hierarchical)
    policy_samples: tf.Tensor  # [S * rows, A] reparameterised a ~ pi_theta
    kl_to_target_prior: tf.Tensor  # [rows] KL(pi_theta || pi0_phi') (or its bound)
    prior_loss: tf.Tensor  # [rows] KL(sg(pi_theta) || pi0_phi) (or its bound)


def merge_time_batch(tensor: tf.Tensor) -> tf.Tensor:
    shape = tf.shape(tensor)
    return tf.reshape(tensor, tf.concat([[shape[0] * shape[1]], shape[2:]], axis=0))


def tile_obs(observation: dict, times: int) -> dict:
    """Repeats every observation row `times` times along the leading axis (block-wise)."""
    return {k: tf.tile(v, [times] + [1] * (len(v.shape) - 1)) for k, v in observation.items()}


def flat_terms(
    networks: Networks,
    target_networks: Networks,
    batch: losses_lib.SequenceBatch,
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
        target_log_prob=losses_lib.gaussian_log_prob(target_pi_mean, target_pi_scale, action),
        policy_samples=tf.reshape(pi_mean + pi_scale * policy_eps, [-1, action_size]),
        kl_to_target_prior=losses_lib.gaussian_kl(
            pi_mean, pi_scale, target_pi0_mean, target_pi0_scale
        ),
        prior_loss=losses_lib.gaussian_kl(
            tf.stop_gradient(pi_mean), tf.stop_gradient(pi_scale), pi0_mean, pi0_scale
        ),
    )


def hierarchical_kl_bound(policy, prior, obs: dict, latent_samples: tf.Tensor) -> tf.Tensor:
    """[rows] KL(pi^H || pi0^H) + mean over the S latent samples of KL(pi^L || pi0^L).

    `latent_samples` is [S, rows, Z]; the low-level term is skipped (it is exactly zero)
    when the prior borrows the policy's low level.
    """
    mean, scale = policy.high_moments(obs)
    mean0, scale0 = prior.high_moments(obs)
    bound = losses_lib.gaussian_kl(mean, scale, mean0, scale0)
    if prior.shares_low:
        return bound
    num_samples = latent_samples.shape[0]
    tiled = tile_obs(obs, num_samples)
    z = tf.reshape(latent_samples, [-1, latent_samples.shape[-1]])
    low_mean, low_scale = policy.low_moments(tiled, z)
    low_mean0, low_scale0 = prior.low_moments(tiled, z)
    low_kl = losses_lib.gaussian_kl(low_mean, low_scale, low_mean0, low_scale0)
    return bound + tf.reduce_mean(tf.reshape(low_kl, [num_samples, -1]), axis=0)


def hierarchical_terms(
    networks: Networks,
    target_networks: Networks,
    batch: losses_lib.SequenceBatch,
    obs: dict,
    num_samples: int,
) -> PolicyTerms:
    """Hierarchical policy and prior; importance weights use the stored (z, a)."""
    policy, prior = networks.policy, networks.prior
    target_policy, target_prior = target_networks.policy, target_networks.prior
    action = merge_time_batch(batch.action)
    latent = merge_time_batch(batch.latent)
    rows, action_size = action.shape[0], action.shape[-1]
    latent_size = policy.latent_size
    tiled = tile_obs(obs, num_samples)

    def sample_actions(head, eps_z, eps_a):
        z_mean, z_scale = head.high_moments(obs)
        z = z_mean + z_scale * eps_z  # [S, rows, Z]
        a_mean, a_scale = head.low_moments(tiled, tf.reshape(z, [-1, latent_size]))
        return z, a_mean + a_scale * tf.reshape(eps_a, [-1, action_size])

    def noise():
        return (
            tf.random.normal([num_samples, rows, latent_size]),
            tf.random.normal([num_samples, rows, action_size]),
        )

    _, target_samples = sample_actions(target_policy, *noise())
    z_mean, z_scale = target_policy.high_moments(obs)
    a_mean, a_scale = target_policy.low_moments(obs, latent)
    target_log_prob = losses_lib.gaussian_log_prob(
        z_mean, z_scale, latent
    ) + losses_lib.gaussian_log_prob(a_mean, a_scale, action)

    policy_latents, policy_samples = sample_actions(policy, *noise())
    kl = hierarchical_kl_bound(policy, target_prior, obs, policy_latents)

    # Prior loss: the same bound with the policy held fixed (gradients reach phi only).
    high_mean, high_scale = policy.high_moments(obs)
    prior_high_mean, prior_high_scale = prior.high_moments(obs)
    prior_loss = losses_lib.gaussian_kl(
        tf.stop_gradient(high_mean), tf.stop_gradient(high_scale), prior_high_mean, prior_high_scale
    )
    if not prior.shares_low:
        z = tf.reshape(tf.stop_gradient(policy_latents), [-1, latent_size])
        low_mean, low_scale = policy.low_moments(tiled, z)
        low_mean0, low_scale0 = prior.low_moments(tiled, z)
        low_kl = losses_lib.gaussian_kl(
            tf.stop_gradient(low_mean), tf.stop_gradient(low_scale), low_mean0, low_scale0
        )
        prior_loss += tf.reduce_mean(tf.reshape(low_kl, [num_samples, rows]), axis=0)
    return PolicyTerms(
        target_samples=target_samples,
        target_log_prob=target_log_prob,
        policy_samples=policy_samples,
        kl_to_target_prior=kl,
        prior_loss=prior_loss,
    )
