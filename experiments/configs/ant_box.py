"""Locomotion and manipulation with the Ant and a box; the prior sees its body and the box.

The task (`ant_box`, docs/tasks.md): the Ant, a box and 3 target pads in a walled 6 x 6 m
room. Sparse rewards: +1 when the box reaches its target, then +1 + bonus when the Ant
reaches the other target (which ends the episode). The policy sees the Ant's
proprioception, its position and heading (`location`), the box (`box`), the targets
(`targets`) and which target to move to now plus the task phase (`target_identity`).

The prior sees `proprioception` and `box` (the talk's "proprioception + box"
factorisation), not `target_identity` nor the targets: it can learn the behaviour shared
by every episode, walking to the box and pushing it around, but not where the box has to
go or where to walk afterwards, which is what changes from episode to episode. Swap in
`--config.prior_info="('proprioception',)"` or `"('proprioception', 'targets')"` for the
talk's other two factorisations.

Variants (after a colon): `bprl run --config=experiments/configs/ant_box.py:local_short`
  (none)       the full setting: 32 actors, 10M actor steps.
  local_short  a few minutes on 2 cores: 3 actors, small batch, 60k actor steps (a smoke
               run of the whole program; the task needs the full budget to learn).
  tiny         smoke tests: 2 actors, tiny networks, 100-step episodes, 1,500 actor steps.
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
    config.task = "ant_box"
    config.prior_info = ("proprioception", "box")
    if variant == "local_short":
        apply_local_short(config)
    elif variant == "tiny":
        config.task_kwargs.episode_length = 100  # short episodes, so every actor logs soon
        apply_tiny(config, every_actor_steps=500, max_actor_steps=1_500)
    elif variant:
        raise unknown_variant(variant)
    return config
