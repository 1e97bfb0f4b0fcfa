"""Locomotion + manipulation: the Ant pushes a box onto a target, then walks to another one.

The talk's example of information asymmetry: the policy sees everything, while a prior may
see only proprioception, or proprioception plus the box, or plus the targets, and never
which target is the goal. Each episode draws new target positions, a box position, the
walker's position and heading, and which two targets are the box's goal and the walker's
goal (always different).

Rewards are sparse: +1 when the box's centre first comes within `target_radius` of its
target (horizontally), then +1 plus `completion_bonus` when the walker's torso comes
within `target_radius` of the other target; the episode then ends (discount 0). Goals are
achieved in order: walking to the second target before the box is delivered pays
nothing. Otherwise the episode runs for `episode_length` control steps (discount 1).

Observation keys: the Ant's proprioception (`walker/...`), `walker_position`,
`walker_heading`, `box_position` (world xyz), `box_egocentric` (box in the walker's yaw
frame), `target_positions`, `targets_egocentric`, `target_identity` (one-hot of the target
to move to now: the box's target, then the walker's) and `task_phase` (one-hot: delivering
the box / going to the target).
"""

from __future__ import annotations

import numpy as np
from dm_control import composer
from dm_control.composer.observation import observable

from bprl.environments import arenas, props, walkers
from bprl.environments.room_task import WALKER_LOCATION, RoomTask, make_composer_env, one_hot
from bprl.environments.task_spec import TaskSpec


class BoxToTargetThenGo(RoomTask):
    """Push the box onto target `box_target`, then walk to target `walker_target`."""

    def __init__(
        self,
        walker: walkers.PlanarWalker,
        arena: arenas.WalledArena,
        num_targets: int = 3,
        target_radius: float = 0.5,
        completion_bonus: float = 1.0,
        episode_length: int = 1500,
        physics_timestep: float = 0.005,
        control_timestep: float = 0.025,
    ):
        if num_targets < 2:
            raise ValueError("need at least two targets (the box's and the walker's)")
        super().__init__(
            walker, arena, episode_length, target_radius, physics_timestep, control_timestep
        )
        self._box = props.Box()
        arena.add_free_entity(self._box)
        self._num_targets = num_targets
        self._completion_bonus = completion_bonus
        self._pads = props.add_target_pads(arena, num_targets, target_radius)
        self._target_positions = np.zeros((num_targets, 2))
        self.box_target = 0
        self.walker_target = 1
        self._phase = 0

        self._set_task_observables(
            {
                **self._walker_location_observables(),
                "box_position": observable.Generic(
                    lambda physics: np.array(physics.bind(self._box.root_body).xpos)
                ),
                "box_egocentric": observable.Generic(
                    lambda physics: self._walker.egocentric(physics, self.box_xy(physics)[None])[0]
                ),
                "target_positions": self._targets_observable(),
                "targets_egocentric": self._targets_egocentric_observable(),
                "target_identity": observable.Generic(
                    lambda physics: one_hot(self._goal(), self._num_targets)
                ),
                "task_phase": observable.Generic(lambda physics: one_hot(min(self._phase, 1), 2)),
            }
        )

    @property
    def phase(self) -> int:
        """0: deliver the box; 1: go to the walker's target; 2: done."""
        return self._phase

    def _goal(self) -> int:
        """The target to move to now: the box's, then the walker's."""
        return self.box_target if self._phase == 0 else self.walker_target

    def box_xy(self, physics) -> np.ndarray:
        return self._box.xy(physics)

    # -- hand placement (tests, demonstrations) ------------------------------------------------

    def set_box_position(self, physics, xy) -> None:
        """Puts the box at rest, upright, on the floor at `xy`."""
        self._box.place(physics, xy)

    def set_walker_position(self, physics, xy, yaw: float | None = None) -> None:
        """Puts the walker at rest at `xy` (keeping its joint configuration)."""
        self._walker.place(physics, xy, yaw=yaw)

    # -- episode -------------------------------------------------------------------------------

    def initialize_episode(self, physics, random_state) -> None:
        half = self._arena.half_size
        self._target_positions = arenas.random_positions(
            random_state, self._num_targets, half, margin=0.6, min_separation=1.5
        )
        props.move_target_pads(physics, self._pads, self._target_positions)
        self.box_target, self.walker_target = (
            int(i) for i in random_state.choice(self._num_targets, size=2, replace=False)
        )
        box_xy = arenas.random_positions(
            random_state, 1, half, margin=0.8, min_separation=1.0, avoid=self._target_positions
        )[0]
        self._box.place(physics, box_xy)
        walker_xy = arenas.random_positions(
            random_state,
            1,
            half,
            margin=0.8,
            min_separation=1.0,
            avoid=np.concatenate([self._target_positions, box_xy[None]]),
        )[0]
        self._walker.start_at(physics, walker_xy, random_state)
        self._phase = 0
        self._reset_counts()

    def _step_reward(self, physics) -> float:
        reward = 0.0
        if self._phase == 0:
            box_goal = self._target_positions[self.box_target]
            if np.linalg.norm(self.box_xy(physics) - box_goal) < self._reach_radius:
                reward += 1.0
                self._phase = 1
        if self._phase == 1 and self._reaches(physics, self._target_positions[self.walker_target]):
            reward += 1.0 + self._completion_bonus
            self._phase = 2
        return reward

    def should_terminate_episode(self, physics) -> bool:
        return self._phase == 2 or super().should_terminate_episode(physics)

    def get_discount(self, physics) -> float:
        return 0.0 if self._phase == 2 else 1.0


def make_ant_box(
    seed: int | None = None,
    num_targets: int = 3,
    episode_length: int = 1500,
    completion_bonus: float = 1.0,
) -> composer.Environment:
    """The Ant, a box and `num_targets` targets in a 6 x 6 m walled room."""
    task = BoxToTargetThenGo(
        walkers.Ant(),
        arenas.ant_room(),
        num_targets=num_targets,
        completion_bonus=completion_bonus,
        episode_length=episode_length,
    )
    return make_composer_env(task, seed)


# Registered by environments/registry.py (see docs/tasks.md for the information sets).
TASKS = [
    TaskSpec(
        name="ant_box",
        factory=make_ant_box,
        information_sets={
            "proprioception": walkers.ANT_PROPRIOCEPTION,
            "location": WALKER_LOCATION,
            "box": ("box_position", "box_egocentric"),
            "targets": ("target_positions", "targets_egocentric"),
            "target_identity": ("target_identity", "task_phase"),
        },
        description="Ant pushes a box onto its target, then walks to another target; sparse",
    ),
]
