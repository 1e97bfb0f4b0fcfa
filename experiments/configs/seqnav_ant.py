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

from experiments.configs.base import base_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = base_config()
    config.task = "seqnav_ant"
    config.prior_info = ("proprioception", "location", "targets")
    if variant == "local_short":
        config.actors.num_actors = 3
        config.network.policy_hidden = (128, 128)
        config.network.prior_hidden = (128, 128)
        config.network.critic_hidden = (128, 128)
        config.replay.batch_size = 64
        config.replay.min_size = 200
        config.replay.samples_per_insert = 16.0
        config.evaluators.every_actor_steps = 10_000
        config.stop.max_actor_steps = 60_000
    elif variant == "tiny":
        config.task_kwargs.episode_length = 100  # short episodes, so every actor logs soon
        config.actors.num_actors = 2
        config.network.policy_hidden = (32,)
        config.network.prior_hidden = (32,)
        config.network.critic_hidden = (32,)
        config.agent.num_action_samples = 2
        config.replay.batch_size = 16
        config.replay.min_size = 20
        config.replay.samples_per_insert = 8.0
        config.evaluators.every_actor_steps = 500
        config.stop.max_actor_steps = 1_500
        config.logging.learner_every_steps = 10
    elif variant:
        raise ValueError(f"unknown variant {variant!r}; use '', 'local_short' or 'tiny'")
    return config
