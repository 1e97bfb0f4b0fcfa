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

from environments.sequential_navigation import (
    POINTMASS_ROOM_HALF_SIZE,
    TARGET_COLOURS,
    Body,
    PointMass,
    TargetPad,
    WalledArena,
    default_target_positions,
    make_composer_env,
    random_positions,
)


class MultiTaskNavigation(composer.Task):
    """Go to target `task_id` and stay there; `task_id` is drawn per episode."""

    def __init__(
        self,
        arena: WalledArena,
        num_tasks: int = 4,
        episode_length: int = 200,
        reach_radius: float = 0.1,
        physics_timestep: float = 0.0125,
        control_timestep: float = 0.025,
        fixed_start: bool = False,
    ):
        self._arena = arena
        self._fixed_start = fixed_start
        self._body = Body(PointMass())
        self._body.attach_to(arena)
        self._num_tasks = num_tasks
        self._episode_length = episode_length
        self._reach_radius = reach_radius
        self._target_positions = default_target_positions(num_tasks, arena.half_size)
        for k, pos in enumerate(self._target_positions):
            pad = TargetPad(name=f"target_{k}", radius=reach_radius, rgba=TARGET_COLOURS[k % 6])
            arena.attach(pad).pos = (*pos, 0.0)
        self.task_id = 0
        self._reward = 0.0
        self._steps = 0
        for obs in self._body.entity.observables.as_dict().values():
            obs.enabled = True
        self._task_observables = {
            "target_positions": observable.Generic(
                lambda physics: self._target_positions.ravel().copy()
            ),
            "task_id": observable.Generic(lambda physics: np.eye(self._num_tasks)[self.task_id]),
        }
        for obs in self._task_observables.values():
            obs.enabled = True
        self.set_timesteps(control_timestep=control_timestep, physics_timestep=physics_timestep)

    @property
    def root_entity(self) -> composer.Arena:
        return self._arena

    @property
    def task_observables(self) -> dict:
        return self._task_observables

    @property
    def body(self) -> Body:
        return self._body

    @property
    def target_positions(self) -> np.ndarray:
        return self._target_positions.copy()

    def initialize_episode(self, physics, random_state) -> None:
        self.task_id = int(random_state.randint(self._num_tasks))
        if self._fixed_start:
            start = np.zeros(2)
        else:
            half = self._arena.half_size
            start = random_positions(
                random_state,
                1,
                half,
                margin=0.1 * half,
                min_separation=3 * self._reach_radius,
                avoid=self._target_positions[self.task_id : self.task_id + 1],
            )[0]
        self._body.place(physics, start)
        self._reward = 0.0
        self._steps = 0

    def before_step(self, physics, action, random_state) -> None:
        physics.set_control(action)

    def after_step(self, physics, random_state) -> None:
        self._steps += 1
        goal = self._target_positions[self.task_id]
        inside = np.linalg.norm(self._body.xy(physics) - goal) < self._reach_radius
        self._reward = 1.0 if inside else 0.0

    def get_reward(self, physics) -> float:
        return self._reward

    def should_terminate_episode(self, physics) -> bool:
        return self._steps >= self._episode_length

    def get_discount(self, physics) -> float:
        return 1.0


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
    arena = WalledArena(half_size=POINTMASS_ROOM_HALF_SIZE)
    arena.mjcf_model.option.noslip_iterations = 0
    arena.mjcf_model.option.cone = "pyramidal"
    task = MultiTaskNavigation(
        arena,
        num_tasks=num_tasks,
        episode_length=episode_length,
        fixed_start=fixed_start,
        control_timestep=control_timestep,
    )
    return make_composer_env(task, seed)
