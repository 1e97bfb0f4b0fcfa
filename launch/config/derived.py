"""Values derived from a validated config alone: the prior's kind, head sizes and keys.

Pure functions of the config (no environment is built), shared by the pre-launch checks
(an artifact's fit) and the program's builders. The agent's modules import TensorFlow,
so they are imported when called: the command line parses flags without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ml_collections

from bprl.environments import registry

if TYPE_CHECKING:
    from bprl.agents import prior_kinds


def prior_kind(config: ml_collections.ConfigDict) -> prior_kinds.PriorKind:
    from bprl.agents import prior_kinds

    return prior_kinds.get(config.prior.kind)


def head_sizes(config: ml_collections.ConfigDict) -> prior_kinds.HeadSizes:
    """The network sizes of `config` (config.network and config.prior)."""
    from bprl.agents import prior_kinds

    net, prior = config.network, config.prior
    return prior_kinds.HeadSizes(
        policy_hidden=tuple(net.policy_hidden),
        prior_hidden=tuple(net.prior_hidden),
        critic_hidden=tuple(net.critic_hidden),
        min_scale=net.min_scale,
        init_scale=net.init_scale,
        max_scale=net.max_scale,
        mean_bound=net.mean_bound,
        lstm_size=prior.lstm_size,
        latent_size=prior.latent_size,
        low_hidden=tuple(prior.low_hidden),
        share_low_level=prior.share_low_level,
    )


def prior_keys(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    return registry.get_task(config.task).keys_for(tuple(config.prior_info))
