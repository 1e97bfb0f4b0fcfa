"""Prior transfer on the point-mass room: a prior learned on a source task is reused for
sequential navigation (docs/transfer.md). Measured so far: `source_seqnav` -> the new task
(the same room and observations, another Markov table: a warm start more than a new task);
the multi-task source transferred nothing (its policy learned one goal in three).

Both tasks share the room, the 4 targets' layout, the body and the prior's inputs
(`proprioception`, `location`, `targets`: velocity, position, the 4 target positions);
the goal (`task_id` there, `next_target` here) is never shown to the prior.
  source  `multitask_pointmass`, random starts: go to the episode's goal target and stay
          there. The prior, blind to the goal, learns "head for a target and stop there".
  source_seqnav  `seqnav_pointmass` under another Markov table (p = 1/3: every other
          target equally likely next), 700k actor steps: the prior learns "go from target
          to target" without the order the new task uses.
  (none)  `seqnav_pointmass`, the new task: visit targets in the order a second-order
          Markov table draws (+1 per target reached: sparse). A policy learned from
          scratch finds almost no target for its first few hundred thousand steps.

Arms of the experiment (one sweep each, see docs/transfer.md for the commands):
  scratch     this config as is: policy and prior learned jointly, as in any run
  frozen      --config.prior.artifact=ART --config.prior.frozen=True
  finetune    --config.prior.artifact=ART
  untrained   --config.prior.frozen=True (a frozen, randomly initialised prior)
  no_prior    --config.agent.alpha=0
Variants (after a colon): `source`, (none) and `tiny_source` / `tiny` for tests.
"""

from __future__ import annotations

import ml_collections

from bprl.experiments.configs import multitask_pointmass, seqnav_pointmass
from bprl.experiments.configs.base import apply_pointmass_room_local, apply_tiny, unknown_variant

VARIANTS = ("", "source", "source_seqnav", "tiny", "tiny_source")


def _shared(config: ml_collections.ConfigDict) -> None:
    """What the two tasks must agree on for the prior to carry over unchanged."""
    config.prior_info = ("proprioception", "location", "targets")
    config.task_kwargs.control_timestep = 0.05
    config.agent.action_squash = "tanh"
    config.network.mean_bound = 3.0
    config.network.min_scale = 0.1
    config.agent.policy_learning_rate = 1e-3
    config.agent.critic_learning_rate = 1e-3
    config.agent.prior_learning_rate = 3e-4


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    if variant not in VARIANTS:
        raise unknown_variant(variant, VARIANTS)
    source = variant in ("source", "tiny_source", "source_seqnav")
    multitask = variant in ("source", "tiny_source")
    config = (multitask_pointmass if multitask else seqnav_pointmass).get_config()
    _shared(config)
    if multitask:
        config.task_kwargs.episode_length = 200  # 10 s at 0.05 s control steps
    if variant == "source_seqnav":
        # Another Markov table: every other target equally likely next (p = 1/3 for 4).
        config.task_kwargs.p = 1.0 / 3.0
    if variant.startswith("tiny"):
        config.task_kwargs.episode_length = 100
        apply_tiny(config, every_actor_steps=500, max_actor_steps=1_500)
        return config
    apply_pointmass_room_local(config)
    config.evaluators.episodes = 3
    config.evaluators.every_actor_steps = 10_000
    config.stop.max_actor_steps = {"source": 300_000, "source_seqnav": 700_000}.get(
        variant, 150_000
    )
    if not source:
        # Targets per episode (evaluation: mean of 3). Runs before 2026-12-07 used 1.0,
        # which a frozen source prior alone exceeds (3.3) and which is ~6% of the asymptote.
        config.report.threshold = seqnav_pointmass.THRESHOLD
        config.report.threshold_reason = seqnav_pointmass.THRESHOLD_REASON
    return config
