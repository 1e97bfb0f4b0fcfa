"""Sequential navigation with the Ant; the prior sees everything but `next_target`.

The task (`seqnav_ant`, docs/tasks.md): the Ant in a walled 6 x 6 m room visits 4 targets
in turn; each target reached pays +1 and the next one is drawn from a second-order Markov
table (p = 0.9). The policy sees the Ant's proprioception, its torso position and heading
(`location`), the targets in world and egocentric coordinates (`targets`) and the one-hot
of the target to visit now (`next_target`).

The prior sees `proprioception`, `location` and `targets`, not `next_target` (the talk's
choice): it can learn how to walk and to walk towards targets, while which target comes
next must be carried by the history of the body's movement, which a memoryless prior
cannot see. The statistics of the visiting order are thus the one thing it lacks.

Variants (after a colon): `bprl run --config=experiments/configs/seqnav_ant.py:local_short`
  (none)       the full setting: 32 actors, 10M actor steps.
  local_short  a few minutes on 2 cores: 3 actors, small batch, 60k actor steps (a smoke
               run of the whole program; the Ant needs the full budget to learn).
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
    config.task = "seqnav_ant"
    config.prior_info = ("proprioception", "location", "targets")
    if variant == "local_short":
        apply_local_short(config)
    elif variant == "tiny":
        config.task_kwargs.episode_length = 100  # short episodes, so every actor logs soon
        apply_tiny(config, every_actor_steps=500, max_actor_steps=1_500)
    elif variant:
        raise unknown_variant(variant)
    return config
