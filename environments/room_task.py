"""What the room tasks share: a walker in a walled arena, targets, a step count, a reward.

`RoomTask` is the `composer.Task` the three task modules (sequential navigation, box
manipulation, multi-task) build on: it attaches the walker, turns on its observables and
the task's, applies actions, counts control steps and ends episodes on the time limit.
A task fills in `initialize_episode` and `_step_reward`. `make_composer_env` wraps a task
in the composer environment every factory returns.
"""

from __future__ import annotations

import numpy as np
from dm_control import composer
from dm_control.composer.observation import observable

from bprl.environments.arenas import WalledArena, random_positions
from bprl.environments.walkers import PlanarWalker

# Task observables that say where a walker with a heading is (the Ant's location set).
WALKER_LOCATION = ("walker_position", "walker_heading")


def one_hot(index: int | None, size: int) -> np.ndarray:
    """A float one-hot of `index` (all zeros for None: before the first episode)."""
    out = np.zeros(size)
    if index is not None:
        out[index] = 1.0
    return out


class RoomTask(composer.Task):
    """A walker in a walled arena with targets; episodes last `episode_length` steps."""

    def __init__(
        self,
        walker: PlanarWalker,
        arena: WalledArena,
        episode_length: int,
        reach_radius: float,
        physics_timestep: float,
        control_timestep: float,
    ):
        self._arena = arena
        self._walker = walker
        walker.create_root_joints(arena.attach(walker))
        self.walker_keys = walker.enable_observables()  # the walker's own observation keys
        self._episode_length = episode_length
        self._reach_radius = reach_radius
        self._target_positions = np.zeros((0, 2))
        self._task_observables: dict = {}
        self._reward = 0.0
        self._steps = 0
        self.set_timesteps(control_timestep=control_timestep, physics_timestep=physics_timestep)

    def _set_task_observables(self, observables: dict) -> None:
        """The task's own observation keys (in this order), all turned on."""
        for obs in observables.values():
            obs.enabled = True
        self._task_observables = observables

    def _walker_location_observables(self) -> dict:
        """`walker_position` (xy) and `walker_heading` (cos, sin of yaw)."""
        return {
            "walker_position": observable.Generic(lambda physics: self._walker.xy(physics)),
            "walker_heading": observable.Generic(lambda physics: self._walker.heading(physics)),
        }

    def _targets_observable(self) -> observable.Generic:
        """`target_positions`: every target's xy, world frame, flat."""
        return observable.Generic(lambda physics: self._target_positions.ravel().copy())

    def _targets_egocentric_observable(self) -> observable.Generic:
        """`targets_egocentric`: every target in the walker's yaw frame, flat."""
        return observable.Generic(
            lambda physics: self._walker.egocentric(physics, self._target_positions).ravel()
        )

    @property
    def root_entity(self) -> composer.Arena:
        return self._arena

    @property
    def task_observables(self) -> dict:
        return self._task_observables

    @property
    def walker(self) -> PlanarWalker:
        return self._walker

    @property
    def episode_length(self) -> int:
        return self._episode_length

    @property
    def target_positions(self) -> np.ndarray:
        return self._target_positions.copy()

    def _reaches(self, physics, xy: np.ndarray) -> bool:
        """Whether the walker's centre is within the reach radius of `xy` (horizontally)."""
        return bool(np.linalg.norm(self._walker.xy(physics) - xy) < self._reach_radius)

    def _random_start(self, random_state: np.random.RandomState, target: int) -> np.ndarray:
        """A uniform start away from the walls and 3 reach radii from target `target`."""
        half = self._arena.half_size
        return random_positions(
            random_state,
            1,
            half,
            margin=0.1 * half,
            min_separation=3 * self._reach_radius,
            avoid=self._target_positions[target : target + 1],
        )[0]

    def _reset_counts(self) -> None:
        self._reward = 0.0
        self._steps = 0

    def before_step(self, physics, action, random_state) -> None:
        self._walker.apply_action(physics, action, random_state)

    def after_step(self, physics, random_state) -> None:
        self._steps += 1
        self._reward = self._step_reward(physics)

    def _step_reward(self, physics) -> float:
        """The reward of the control step just taken (and the task's updates on it)."""
        raise NotImplementedError

    def get_reward(self, physics) -> float:
        return self._reward

    def should_terminate_episode(self, physics) -> bool:
        return self._steps >= self._episode_length

    def get_discount(self, physics) -> float:
        return 1.0  # the episode ends on a time limit only


def make_composer_env(task: composer.Task, seed: int | None) -> composer.Environment:
    """A composer environment that never recompiles (episodes only move things around)."""
    return composer.Environment(
        task,
        random_state=seed,
        strip_singleton_obs_buffer_dim=True,
        recompile_mjcf_every_episode=False,
    )
