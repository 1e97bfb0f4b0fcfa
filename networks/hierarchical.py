"""Latent-variable (hierarchical) heads: a high level over z, a low level over actions.

pi(a|x) = integral of pi^H(z|x) pi^L(a|z, x^D) dz. The high level is a Gaussian head over
a latent z; the low level is a Gaussian head over actions whose input is the low-level
information sets plus z (passed as the pseudo-observation key `LATENT_KEY`). A prior is
the same structure with its own high level on the prior's sets; its low level is either
its own or the policy's (shared), in which case it is not among the prior's variables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import sonnet as snt
import tensorflow as tf

from bprl.networks.gaussian import GaussianHead, gaussian_log_prob, standard_normal

LATENT_KEY = "__latent__"


class _Borrowed:
    """Holds a module without making it a submodule (tf.Module does not look inside)."""

    def __init__(self, module: snt.Module):
        self.module = module


class HierarchicalHead(snt.Module):
    """z ~ high(x), a ~ low(x^D, z). With `shared_low`, the low level belongs to another head."""

    is_recurrent = False
    is_hierarchical = True

    def __init__(
        self,
        high: GaussianHead,
        low: GaussianHead | None = None,
        shared_low: GaussianHead | None = None,
        name: str = "hierarchical_head",
    ):
        super().__init__(name=name)
        if (low is None) == (shared_low is None):
            raise ValueError("give exactly one of `low` (own) and `shared_low` (borrowed)")
        self.high = high
        self._own_low = low
        # A shared low level is the policy's: held in a plain box so that it is not among
        # this module's variables (the prior's optimiser and checkpoint skip it), while a
        # deep copy of the networks still points the copy's prior at the copy's policy.
        self._shared_low = _Borrowed(shared_low) if shared_low is not None else None
        self.action_size = (low or shared_low).action_size
        self.latent_size = high.action_size
        self.keys = tuple(sorted(set(high.keys) | set((low or shared_low).keys) - {LATENT_KEY}))

    @property
    def low(self) -> GaussianHead:
        return self._own_low if self._own_low is not None else self._shared_low.module

    @property
    def shares_low(self) -> bool:
        return self._shared_low is not None

    def high_moments(self, observation: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        return self.high.moments(observation)

    def low_moments(
        self, observation: Mapping[str, tf.Tensor], latent: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        return self.low.moments({**observation, LATENT_KEY: latent})

    def create_variables(self, observation: Mapping[str, tf.Tensor]) -> None:
        mean, _ = self.high_moments(observation)
        self.low_moments(observation, mean)

    # --- NumPy acting (one unbatched observation per call) ---------------------------------

    @snt.no_name_scope
    def numpy_params(self) -> list:
        return [self.high.numpy_params(), self.low.numpy_params()]

    @snt.no_name_scope
    def numpy_initial_state(self) -> None:
        return None

    @snt.no_name_scope
    def numpy_act(self, params, observation, state, rng):
        """(action, log mu(z, a), {"latent": z}, state); `rng` None takes both means, a
        sequence of generators samples a packed batch (one per row, z then a per row)."""
        high_params, low_params = params
        z_mean, z_scale = self.high.numpy_moments(high_params, observation)
        z = z_mean if rng is None else z_mean + z_scale * standard_normal(rng, z_mean.shape)
        z = z.astype(np.float32)
        a_mean, a_scale = self.low.numpy_moments(low_params, {**observation, LATENT_KEY: z})
        if rng is None:
            zero = np.zeros(a_mean.shape[:-1], np.float32)[()]
            return a_mean.astype(np.float32), zero, {"latent": z}, state
        action = (a_mean + a_scale * standard_normal(rng, a_mean.shape)).astype(np.float32)
        log_prob = gaussian_log_prob(z_mean, z_scale, z)
        log_prob = log_prob + gaussian_log_prob(a_mean, a_scale, action)
        return action, np.asarray(log_prob, np.float32)[()], {"latent": z}, state


def make_hierarchical_pair(
    all_keys: Sequence[str],
    prior_keys: Sequence[str],
    action_size: int,
    latent_size: int,
    policy_hidden: Sequence[int],
    prior_hidden: Sequence[int],
    low_hidden: Sequence[int],
    share_low_level: bool,
    min_scale: float,
    init_scale: float,
    max_scale: float = 0.0,
    mean_bound: float = 1.0,
) -> tuple[HierarchicalHead, HierarchicalHead]:
    """(policy, prior): pi^H(z|x), pi0^H(z|x^D), and pi^L(a|z, x^D) (shared or not)."""
    low_keys = tuple(prior_keys) + (LATENT_KEY,)

    def low(name: str) -> GaussianHead:
        return GaussianHead(
            low_keys, action_size, low_hidden, min_scale, init_scale, name, max_scale, mean_bound
        )

    def high(keys, hidden, name: str) -> GaussianHead:
        # Latents start at unit scale: the low level learns what z means.
        return GaussianHead(keys, latent_size, hidden, min_scale, 1.0, name)

    policy_low = low("policy_low")
    policy = HierarchicalHead(
        high(all_keys, policy_hidden, "policy_high"), policy_low, name="policy"
    )
    if share_low_level:
        prior = HierarchicalHead(
            high(prior_keys, prior_hidden, "prior_high"), shared_low=policy_low, name="prior"
        )
    else:
        prior = HierarchicalHead(
            high(prior_keys, prior_hidden, "prior_high"), low("prior_low"), name="prior"
        )
    return policy, prior
