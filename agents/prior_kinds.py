"""The prior's architectures, each one object: networks, replay extras, acting, learning terms.

A prior kind (`config.prior.kind`) decides:
  - which heads are built for the policy and the prior (`make_heads`),
  - what each replay step carries besides the transition (`replay_extras`),
  - whether an actor must run the prior too, to store its state (`actor_prior`,
    `stateful`: only then can the learner burn that state in, `prior.burn_in`),
  - what the policy and the prior contribute to the losses (`terms`),
  - whether the update compiles well with XLA (`jit_compile`),
  - whether its log-likelihood of an action has a closed form (`closed_form_likelihood`),
  - which modules a prior artifact holds, and which variables stay fixed when a loaded
    prior is frozen (`transfer_modules`, `frozen_policy_variables`).
Nothing outside this module branches on the kind: add a kind by adding a class here and
naming it in `KINDS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import sonnet as snt
import tensorflow as tf
from acme import specs

from bprl.agents import latent_terms, learning_rule
from bprl.networks import information
from bprl.networks.critic import Critic
from bprl.networks.factory import Networks
from bprl.networks.gaussian import GaussianHead
from bprl.networks.hierarchical import make_hierarchical_pair
from bprl.networks.recurrent import RecurrentGaussianHead


@dataclasses.dataclass(frozen=True)
class HeadSizes:
    """Sizes of the policy, prior and critic (config.network and config.prior)."""

    policy_hidden: tuple[int, ...] = (256, 256)
    prior_hidden: tuple[int, ...] = (256, 256)
    critic_hidden: tuple[int, ...] = (256, 256)
    min_scale: float = 1e-3
    init_scale: float = 0.7
    max_scale: float = 0.0
    mean_bound: float = 1.0
    lstm_size: int = 128
    latent_size: int = 4
    low_hidden: tuple[int, ...] = (128, 128)
    share_low_level: bool = True


class PriorKind:
    """Base: a Gaussian MLP policy; subclasses say what differs for their prior."""

    name = ""
    stateful = False  # the prior carries a state from step to step (stored by the actors)
    jit_compile = True  # XLA helps the feed-forward kinds (docs/results.md, issue 5)
    # log pi0(a | x) in closed form (experiments/prior_likelihood.py); a latent prior has none
    closed_form_likelihood = True
    # `HeadSizes` fields that shape the prior (a loaded prior must match them).
    prior_size_fields: tuple[str, ...] = (
        "prior_hidden",
        "min_scale",
        "init_scale",
        "max_scale",
        "mean_bound",
    )

    def make_heads(
        self, all_keys: Sequence[str], prior_keys: Sequence[str], action_size: int, sizes: HeadSizes
    ) -> tuple[snt.Module, snt.Module]:
        raise NotImplementedError

    def replay_extras(self, sizes: HeadSizes) -> dict[str, specs.Array]:
        """Extras besides the behaviour log-probability (which every kind stores)."""
        return {}

    def actor_prior(self, networks: Networks):
        """The prior an actor must run beside the policy (to store its state), or None."""
        return None

    def terms(
        self,
        networks: Networks,
        target_networks: Networks,
        batch: learning_rule.SequenceBatch,
        obs: dict,
        num_samples: int,
        noise: tuple[tf.Tensor, tf.Tensor] | None,
    ) -> learning_rule.PolicyTerms:
        raise NotImplementedError

    def transfer_modules(self, networks: Networks) -> dict[str, snt.Module]:
        """The modules a prior artifact holds (saved and loaded as one checkpoint)."""
        return {"prior": networks.prior}

    def frozen_policy_variables(self, networks: Networks) -> tuple[tf.Variable, ...]:
        """Policy variables that a frozen, loaded prior also fixes (none for flat priors)."""
        return ()


def _gaussian_head(keys, action_size: int, hidden, sizes: HeadSizes, name: str) -> snt.Module:
    """A feed-forward Gaussian head on `keys` with the run's scale and mean bounds."""
    return GaussianHead(
        keys,
        action_size,
        hidden,
        sizes.min_scale,
        sizes.init_scale,
        name,
        sizes.max_scale,
        sizes.mean_bound,
    )


def _latent_pair(all_keys, prior_keys, action_size: int, sizes: HeadSizes, share_low: bool):
    """(latent policy, hierarchical prior) with the run's sizes (networks/hierarchical.py)."""
    return make_hierarchical_pair(
        all_keys,
        prior_keys,
        action_size,
        sizes.latent_size,
        sizes.policy_hidden,
        sizes.prior_hidden,
        sizes.low_hidden,
        share_low,
        sizes.min_scale,
        sizes.init_scale,
        sizes.max_scale,
        sizes.mean_bound,
    )


class MlpPrior(PriorKind):
    """pi0(a | x^D): a feed-forward Gaussian, like the policy but on fewer inputs."""

    name = "mlp"

    def make_heads(self, all_keys, prior_keys, action_size, sizes):
        return self.policy_head(all_keys, action_size, sizes), self.prior_head(
            prior_keys, action_size, sizes
        )

    def policy_head(self, all_keys, action_size: int, sizes: HeadSizes) -> snt.Module:
        """The task policy: a feed-forward Gaussian on every observation key."""
        return _gaussian_head(all_keys, action_size, sizes.policy_hidden, sizes, "policy")

    def prior_head(self, prior_keys, action_size: int, sizes: HeadSizes) -> snt.Module:
        """The prior on its information set (same head shape as the policy here)."""
        return _gaussian_head(prior_keys, action_size, sizes.prior_hidden, sizes, "prior")

    def terms(self, networks, target_networks, batch, obs, num_samples, noise):
        def moments(prior):
            return prior.moments(obs)

        return learning_rule.flat_terms(
            networks, target_networks, batch, obs, num_samples, noise, moments
        )


class LstmPrior(MlpPrior):
    """pi0(a_t | x^D_1..t): an LSTM prior; actors store its state, the learner unrolls it."""

    name = "lstm"
    stateful = True
    prior_size_fields = (*MlpPrior.prior_size_fields, "lstm_size")
    # XLA on CPU runs the step-by-step unroll slower than the plain graph (measured side by
    # side at the seqnav local_short sizes: docs/results.md, "Prior architectures").
    jit_compile = False

    def prior_head(self, prior_keys, action_size, sizes):
        return RecurrentGaussianHead(
            prior_keys,
            action_size,
            sizes.prior_hidden,
            sizes.lstm_size,
            sizes.min_scale,
            sizes.init_scale,
            "prior",
            sizes.max_scale,
            sizes.mean_bound,
        )

    def replay_extras(self, sizes):
        return {
            name: specs.Array((sizes.lstm_size,), np.float32, name=name)
            for name in ("prior_hidden", "prior_cell")
        }

    def actor_prior(self, networks):
        return networks.prior

    def terms(self, networks, target_networks, batch, obs, num_samples, noise):
        if batch.prior_state is None:
            raise ValueError("an LSTM prior needs the sequences' stored prior state")

        def moments(prior):
            state = self.sequence_state(prior, batch)
            mean, scale, _ = prior.unroll(batch.observation, batch.start_of_episode, state)
            return mean, scale

        return learning_rule.flat_terms(
            networks, target_networks, batch, obs, num_samples, noise, moments
        )

    @staticmethod
    def sequence_state(prior, batch: learning_rule.SequenceBatch) -> tuple:
        """`prior`'s state ([B, H] each) at the sequences' first row: as the actor stored
        it, or with a burn-in, recomputed by `prior` over the N rows before (from the state
        stored at the first of them, reset at episode starts; no gradient flows into it)."""
        if batch.burn_in is None:
            return batch.prior_state
        burn_in = batch.burn_in
        _, _, state = prior.unroll(burn_in.observation, burn_in.start_of_episode, batch.prior_state)
        return tf.nest.map_structure(tf.stop_gradient, state)


class HierarchicalPrior(PriorKind):
    """pi0^H(z | x^D) over a latent z, then pi^L(a | z, x^D), shared with the policy or own.

    What a prior artifact carries: the prior's high level and the low level it uses (the
    policy's, when shared). A frozen loaded prior with a shared low level fixes that low
    level too, so the new policy learns only its high level: it steers the old skills.
    """

    name = "hierarchical"
    closed_form_likelihood = False  # the marginal over z has no closed form
    prior_size_fields = (
        *PriorKind.prior_size_fields,
        "latent_size",
        "low_hidden",
        "share_low_level",
    )

    def make_heads(self, all_keys, prior_keys, action_size, sizes):
        return _latent_pair(all_keys, prior_keys, action_size, sizes, sizes.share_low_level)

    def replay_extras(self, sizes):
        return {"latent": specs.Array((sizes.latent_size,), np.float32, name="latent")}

    def terms(self, networks, target_networks, batch, obs, num_samples, noise):
        if noise is not None:  # latent and action noise are drawn inside
            raise ValueError("fixed noise is supported for flat (Gaussian) policies only")
        return latent_terms.hierarchical_terms(networks, target_networks, batch, obs, num_samples)

    def transfer_modules(self, networks):
        modules = {"prior": networks.prior}
        if networks.prior.shares_low:
            modules["shared_low"] = networks.prior.low
        return modules

    def frozen_policy_variables(self, networks):
        return tuple(networks.prior.low.variables) if networks.prior.shares_low else ()


class MlpPriorLatentPolicy(HierarchicalPrior):
    """The hierarchical kind's policy (pi^H(z|x), pi^L(a|z, x^D)) with the MLP kind's flat
    Gaussian prior pi0(a|x^D): the control for "is a hierarchical prior better?" that keeps
    the policy's architecture the same (agents/latent_terms.py has the KL bound)."""

    name = "mlp_latent_policy"
    closed_form_likelihood = True  # the prior is a Gaussian
    prior_size_fields = PriorKind.prior_size_fields

    def make_heads(self, all_keys, prior_keys, action_size, sizes):
        policy, _ = _latent_pair(all_keys, prior_keys, action_size, sizes, share_low=True)
        return policy, _gaussian_head(prior_keys, action_size, sizes.prior_hidden, sizes, "prior")

    def terms(self, networks, target_networks, batch, obs, num_samples, noise):
        if noise is not None:
            raise ValueError("fixed noise is supported for flat (Gaussian) policies only")
        return latent_terms.latent_policy_flat_prior_terms(
            networks, target_networks, batch, obs, num_samples
        )

    def transfer_modules(self, networks):
        return {"prior": networks.prior}

    def frozen_policy_variables(self, networks):
        return ()


KINDS: dict[str, PriorKind] = {
    kind.name: kind
    for kind in (MlpPrior(), LstmPrior(), HierarchicalPrior(), MlpPriorLatentPolicy())
}
PRIOR_KINDS = tuple(KINDS)


def get(name: str) -> PriorKind:
    """The prior kind called `name` (ValueError listing the kinds otherwise)."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown prior kind {name!r}; use one of {PRIOR_KINDS}") from None


def make_networks(
    observation_spec: Mapping,
    action_size: int,
    prior_keys: Sequence[str],
    policy_hidden: Sequence[int] = (256, 256),
    prior_hidden: Sequence[int] = (256, 256),
    critic_hidden: Sequence[int] = (256, 256),
    prior_kind: str = "mlp",
    **sizes,
) -> Networks:
    """Policy and critic see every observation key; the prior sees only `prior_keys`.

    `sizes` are the other `HeadSizes` fields (scales, mean bound, LSTM and latent sizes).
    """
    kind = get(prior_kind)
    head_sizes = HeadSizes(
        policy_hidden=tuple(policy_hidden),
        prior_hidden=tuple(prior_hidden),
        critic_hidden=tuple(critic_hidden),
        **{k: tuple(v) if isinstance(v, list) else v for k, v in sizes.items()},
    )
    all_keys = tuple(sorted(observation_spec))
    information.input_size(observation_spec, prior_keys)  # validates the keys
    policy, prior = kind.make_heads(all_keys, tuple(prior_keys), action_size, head_sizes)
    networks = Networks(policy, prior, Critic(all_keys, head_sizes.critic_hidden, "critic"), kind)
    networks.create_variables(observation_spec)
    return networks
