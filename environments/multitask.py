"""Multi-task point-mass navigation (the DISTRAL setting of the behavior-prior framework).

A task distribution over configurations of one room: K fixed targets, and each episode
draws which of them is the goal (`task_id`, uniform). The policy sees `task_id`
(one-hot); the prior is given every other key, so the best it can do is the behavior
shared by all tasks (leave the start, head for *some* target), which is what DISTRAL's
distilled policy is. `task_id` has an information set of its own so that configs can leave
it out of the prior's input.

Reward: +1 for every control step the point mass spends within `reach_radius` of the goal
target (so a policy should get there fast and stay). Episodes last `episode_length`
control steps (discount 1).
"""

from __future__ import annotations

import numpy as np
from dm_control import composer
from dm_control.composer.observation import observable

from bprl.environments import arenas, props, walkers
from bprl.environments.room_task import RoomTask, make_composer_env, one_hot
from bprl.environments.task_spec import TaskSpec


class MultiTaskNavigation(RoomTask):
    """Go to target `task_id` and stay there; `task_id` is drawn per episode."""

    def __init__(
        self,
        arena: arenas.WalledArena,
        num_tasks: int = 4,
        episode_length: int = 200,
        reach_radius: float = 0.1,
        physics_timestep: float = 0.0125,
        control_timestep: float = 0.025,
        fixed_start: bool = False,
    ):
        super().__init__(
            walkers.PointMass(),
            arena,
            episode_length,
            reach_radius,
            physics_timestep,
            control_timestep,
        )
        self._fixed_start = fixed_start
        self._num_tasks = num_tasks
        self._target_positions = arenas.default_target_positions(num_tasks, arena.half_size)
        props.add_target_pads(arena, num_tasks, reach_radius, positions=self._target_positions)
        self.task_id = 0
        self._set_task_observables(
            {
                "target_positions": self._targets_observable(),
                "task_id": observable.Generic(lambda physics: one_hot(self.task_id, num_tasks)),
            }
        )

    def initialize_episode(self, physics, random_state) -> None:
        self.task_id = int(random_state.randint(self._num_tasks))
        if self._fixed_start:
            start = np.zeros(2)
        else:
            start = self._random_start(random_state, self.task_id)
        self._walker.start_at(physics, start, random_state)
        self._reset_counts()

    def _step_reward(self, physics) -> float:
        return 1.0 if self._reaches(physics, self._target_positions[self.task_id]) else 0.0


def make_multitask_pointmass(
    seed: int | None = None,
    num_tasks: int = 4,
    episode_length: int = 200,
    fixed_start: bool = False,
    control_timestep: float = 0.025,
) -> composer.Environment:
    """Point mass, K fixed targets, one drawn per episode as the goal (`task_id`).

    `fixed_start`: every episode starts at the room's centre, so the configuration (body,
    targets) is fixed and only the goal changes: the setting where a prior that does not see
    the goal should be multi-modal (one mode per target).
    """
    task = MultiTaskNavigation(
        arenas.pointmass_room(),
        num_tasks=num_tasks,
        episode_length=episode_length,
        fixed_start=fixed_start,
        control_timestep=control_timestep,
    )
    return make_composer_env(task, seed)


# Registered by environments/registry.py (see docs/tasks.md for the information sets).
TASKS = [
    TaskSpec(
        name="multitask_pointmass",
        factory=make_multitask_pointmass,
        information_sets={
            "proprioception": walkers.POINTMASS_PROPRIOCEPTION,
            "location": walkers.POINTMASS_LOCATION,
            "targets": ("target_positions",),
            "task_id": ("task_id",),
        },
        description="DISTRAL-style: point mass goes to target task_id (drawn per episode)",
    ),
]
