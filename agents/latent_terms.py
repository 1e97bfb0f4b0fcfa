"""What a latent-variable (hierarchical) policy and its prior add to the learning rule.

The policy is pi(a|x) = integral of pi^H(z|x) pi^L(a|z, x^D) dz (networks/hierarchical.py).
Its marginal has no closed form, so the KL the policy pays is replaced by an upper bound,
and the importance weights use the behaviour's stored (z, a) (agents/learning_rule.py's
`compute_losses` reads the returned `PolicyTerms` the same way for every kind). Two priors:
  hierarchical  pi0(a|x^D) = integral of pi0^H(z|x^D) pi0^L(a|z, x^D) dz, the low level
                shared with the policy or its own: KL(pi || pi0) <= KL(pi^H || pi0^H)
                + E_{z ~ pi^H} KL(pi^L || pi0^L) (the chain rule on the joint over (z, a));
  flat          a Gaussian pi0(a|x^D) (an MLP): KL(pi || pi0) <= E_{z ~ pi^H} KL(pi^L(.|z)
                || pi0), the joint convexity of the KL over the mixture's components.
                The prior minimising it matches the policy's marginal moments: the same
                policy as the hierarchical kind's, with a prior that cannot be multi-modal.
Shapes as in agents/learning_rule.py: rows = (T+1) * B, S action samples, A the action's
size, Z the latent's.
"""

from __future__ import annotations

import tensorflow as tf

from bprl.agents.learning_rule import (
    PolicyTerms,
    SequenceBatch,
    gaussian_kl,
    gaussian_log_prob,
    merge_time_batch,
    tile_obs,
)
from bprl.networks.factory import Networks


def _behaviour_terms(
    networks: Networks, target_networks: Networks, batch: SequenceBatch, obs: dict, num_samples
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """(target samples [S*rows, A], log pi'(z, a) of the stored (z, a) [rows], the policy's
    latent samples [S, rows, Z] and reparameterised actions [S*rows, A])."""
    policy, target_policy = networks.policy, target_networks.policy
    action = merge_time_batch(batch.action)  # [rows, A]
    latent = merge_time_batch(batch.latent)  # [rows, Z]: the behaviour's z
    rows, action_size = action.shape[0], action.shape[-1]
    latent_size = policy.latent_size
    tiled = tile_obs(obs, num_samples)  # [S * rows, .]

    def sample_actions(head):
        eps_z = tf.random.normal([num_samples, rows, latent_size])
        eps_a = tf.random.normal([num_samples * rows, action_size])
        z_mean, z_scale = head.high_moments(obs)  # [rows, Z] each
        z = z_mean + z_scale * eps_z  # [S, rows, Z]
        a_mean, a_scale = head.low_moments(tiled, tf.reshape(z, [-1, latent_size]))  # [S*rows, A]
        return z, a_mean + a_scale * eps_a  # [S, rows, Z], [S * rows, A]

    _, target_samples = sample_actions(target_policy)
    z_mean, z_scale = target_policy.high_moments(obs)  # [rows, Z] each
    a_mean, a_scale = target_policy.low_moments(obs, latent)  # [rows, A] each
    target_log_prob = gaussian_log_prob(z_mean, z_scale, latent) + gaussian_log_prob(
        a_mean, a_scale, action
    )  # [rows]
    policy_latents, policy_samples = sample_actions(policy)
    return target_samples, target_log_prob, policy_latents, policy_samples


def hierarchical_terms(
    networks: Networks,
    target_networks: Networks,
    batch: SequenceBatch,
    obs: dict,
    num_samples: int,
) -> PolicyTerms:
    """Hierarchical policy and hierarchical prior."""
    policy, prior, target_prior = networks.policy, networks.prior, target_networks.prior
    target_samples, target_log_prob, policy_latents, policy_samples = _behaviour_terms(
        networks, target_networks, batch, obs, num_samples
    )
    kl = hierarchical_kl_bound(policy, target_prior, obs, policy_latents)  # [rows]

    # Prior loss: the same bound with the policy held fixed (gradients reach phi only).
    high_mean, high_scale = policy.high_moments(obs)  # [rows, Z] each
    prior_high_mean, prior_high_scale = prior.high_moments(obs)  # [rows, Z] each
    prior_loss = gaussian_kl(  # [rows]
        tf.stop_gradient(high_mean), tf.stop_gradient(high_scale), prior_high_mean, prior_high_scale
    )
    if not prior.shares_low:
        prior_loss += _low_level_kl(
            policy, prior, obs, tf.stop_gradient(policy_latents), stop_policy=True
        )
    return PolicyTerms(target_samples, target_log_prob, policy_samples, kl, prior_loss)


def hierarchical_kl_bound(policy, prior, obs: dict, latent_samples: tf.Tensor) -> tf.Tensor:
    """[rows] KL(pi^H || pi0^H) + mean over the S latent samples of KL(pi^L || pi0^L).

    `latent_samples` is [S, rows, Z]; the low-level term is skipped (it is exactly zero)
    when the prior borrows the policy's low level.
    """
    mean, scale = policy.high_moments(obs)  # [rows, Z] each
    mean0, scale0 = prior.high_moments(obs)  # [rows, Z] each
    bound = gaussian_kl(mean, scale, mean0, scale0)  # [rows]
    if prior.shares_low:
        return bound
    return bound + _low_level_kl(policy, prior, obs, latent_samples)


def _low_level_kl(policy, prior, obs, latent_samples, stop_policy: bool = False) -> tf.Tensor:
    """[rows] mean over the S latent samples [S, rows, Z] of KL(pi^L(.|z) || pi0^L(.|z))."""
    num_samples = latent_samples.shape[0]  # S
    tiled = tile_obs(obs, num_samples)  # [S * rows, .]
    z = tf.reshape(latent_samples, [-1, latent_samples.shape[-1]])  # [S * rows, Z]
    low_mean, low_scale = policy.low_moments(tiled, z)  # [S * rows, A] each
    if stop_policy:
        low_mean, low_scale = tf.stop_gradient(low_mean), tf.stop_gradient(low_scale)
    low_mean0, low_scale0 = prior.low_moments(tiled, z)  # [S * rows, A] each
    low_kl = gaussian_kl(low_mean, low_scale, low_mean0, low_scale0)  # [S * rows]
    return tf.reduce_mean(tf.reshape(low_kl, [num_samples, -1]), axis=0)  # [rows]


def latent_policy_flat_prior_terms(
    networks: Networks,
    target_networks: Networks,
    batch: SequenceBatch,
    obs: dict,
    num_samples: int,
) -> PolicyTerms:
    """Hierarchical policy and a flat Gaussian prior (the MLP prior kind's prior)."""
    policy, prior, target_prior = networks.policy, networks.prior, target_networks.prior
    target_samples, target_log_prob, policy_latents, policy_samples = _behaviour_terms(
        networks, target_networks, batch, obs, num_samples
    )
    kl = flat_prior_kl_bound(policy, target_prior, obs, policy_latents)  # [rows]
    prior_loss = flat_prior_kl_bound(  # [rows]; gradients reach phi only
        policy, prior, obs, tf.stop_gradient(policy_latents), stop_policy=True
    )
    return PolicyTerms(target_samples, target_log_prob, policy_samples, kl, prior_loss)


def flat_prior_kl_bound(
    policy, prior, obs: dict, latent_samples: tf.Tensor, stop_policy: bool = False
) -> tf.Tensor:
    """[rows] mean over the S latent samples [S, rows, Z] of KL(pi^L(.|z, x^D) || pi0(.|x^D)).

    An upper bound on KL(pi || pi0) for the mixture pi = E_z pi^L(.|z): the KL is jointly
    convex, and pi0 is the same Gaussian under every component.
    """
    num_samples = latent_samples.shape[0]  # S
    tiled = tile_obs(obs, num_samples)  # [S * rows, .]
    z = tf.reshape(latent_samples, [-1, latent_samples.shape[-1]])  # [S * rows, Z]
    low_mean, low_scale = policy.low_moments(tiled, z)  # [S * rows, A] each
    if stop_policy:
        low_mean, low_scale = tf.stop_gradient(low_mean), tf.stop_gradient(low_scale)
    mean0, scale0 = prior.moments(obs)  # [rows, A] each: the prior does not see z
    tiled_mean0 = tf.tile(mean0, [num_samples, 1])  # [S * rows, A]
    tiled_scale0 = tf.tile(scale0, [num_samples, 1])  # [S * rows, A]
    kl = gaussian_kl(low_mean, low_scale, tiled_mean0, tiled_scale0)  # [S * rows]
    return tf.reduce_mean(tf.reshape(kl, [num_samples, -1]), axis=0)  # [rows]
