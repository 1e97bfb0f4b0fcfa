"""walker-walk with a prior that sees proprioception only (joint orientations and height).

Variants (after a colon): `bprl run --config=experiments/configs/walker_walk.py:local_short`
  (none)       the full setting: 32 actors, 10M actor steps.
  local_short  a few minutes on 2 cores: 3 actors, small batch, 60k actor steps.
  tiny         smoke tests: 2 actors, tiny networks, a few thousand steps.
"""

from __future__ import annotations

import ml_collections

from bprl.experiments.configs.base import (
    apply_local_short,
    apply_tiny,
    base_config,
    unknown_variant,
)


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = base_config()
    config.task = "walker_walk"
    config.prior_info = ("proprioception",)
    if variant == "local_short":
        apply_local_short(config)
    elif variant == "tiny":
        config.task_kwargs.time_limit = 5.0  # 200-step episodes, so every actor logs soon
        apply_tiny(config, every_actor_steps=1_000, max_actor_steps=4_000)
    elif variant:
        raise unknown_variant(variant)
    return config
