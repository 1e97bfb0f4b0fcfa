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
from dm_control import composer, mjcf
from dm_control.composer.observation import observable
from dm_control.locomotion.walkers import ant

from environments.sequential_navigation import (
    TARGET_COLOURS,
    Body,
    TargetPad,
    WalledArena,
    enable_walker_observables,
    make_composer_env,
    random_positions,
)


class Box(composer.Entity):
    """A free box the walker can push (1 kg against the Ant's 12 kg)."""

    def _build(self, name: str = "box", half_size: float = 0.2, mass: float = 1.0) -> None:
        self._half_size = half_size
        self._mjcf_root = mjcf.RootElement(model=name)
        self._body = self._mjcf_root.worldbody.add("body", name="body")
        self._body.add(
            "geom",
            name="geom",
            type="box",
            size=(half_size,) * 3,
            mass=mass,
            rgba=(0.8, 0.5, 0.2, 1.0),
        )

    @property
    def mjcf_model(self):
        return self._mjcf_root

    @property
    def root_body(self):
        return self._body

    @property
    def half_size(self) -> float:
        return self._half_size


class BoxToTargetThenGo(composer.Task):
    """Push the box onto target `box_target`, then walk to target `walker_target`."""

    def __init__(
        self,
        walker: composer.Entity,
        arena: WalledArena,
        num_targets: int = 3,
        target_radius: float = 0.5,
        completion_bonus: float = 1.0,
        episode_length: int = 1500,
        physics_timestep: float = 0.005,
        control_timestep: float = 0.025,
    ):
        if num_targets < 2:
            raise ValueError("need at least two targets (the box's and the walker's)")
        self._arena = arena
        self._body = Body(walker)
        self._body.attach_to(arena)
        self._box = Box()
        arena.add_free_entity(self._box)
        self._num_targets = num_targets
        self._target_radius = target_radius
        self._completion_bonus = completion_bonus
        self._episode_length = episode_length
        self._pads = []
        for k in range(num_targets):
            pad = TargetPad(name=f"target_{k}", radius=target_radius, rgba=TARGET_COLOURS[k % 6])
            arena.attach(pad)
            self._pads.append(pad)
        self._target_positions = np.zeros((num_targets, 2))
        self.box_target = 0
        self.walker_target = 1
        self._phase = 0
        self._reward = 0.0
        self._steps = 0

        self.walker_keys = enable_walker_observables(walker)
        self._task_observables = {
            "walker_position": observable.Generic(lambda physics: self._body.xy(physics)),
            "walker_heading": observable.Generic(lambda physics: self._body.heading(physics)),
            "box_position": observable.Generic(
                lambda physics: np.array(physics.bind(self._box.root_body).xpos)
            ),
            "box_egocentric": observable.Generic(
                lambda physics: self._body.egocentric(physics, self.box_xy(physics)[None])[0]
            ),
            "target_positions": observable.Generic(
                lambda physics: self._target_positions.ravel().copy()
            ),
            "targets_egocentric": observable.Generic(
                lambda physics: self._body.egocentric(physics, self._target_positions).ravel()
            ),
            "target_identity": observable.Generic(lambda physics: self._target_one_hot()),
            "task_phase": observable.Generic(lambda physics: np.eye(2)[min(self._phase, 1)].copy()),
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
    def target_positions(self) -> np.ndarray:
        return self._target_positions.copy()

    @property
    def phase(self) -> int:
        """0: deliver the box; 1: go to the walker's target; 2: done."""
        return self._phase

    def _target_one_hot(self) -> np.ndarray:
        out = np.zeros(self._num_targets)
        out[self.box_target if self._phase == 0 else self.walker_target] = 1.0
        return out

    def box_xy(self, physics) -> np.ndarray:
        return np.array(physics.bind(self._box.root_body).xpos[:2])

    # -- hand placement (tests, demonstrations) ------------------------------------------------

    def set_box_position(self, physics, xy) -> None:
        """Puts the box at rest, upright, on the floor at `xy`."""
        self._box.set_pose(
            physics, position=(*np.asarray(xy, float), self._box.half_size), quaternion=(1, 0, 0, 0)
        )
        self._box.set_velocity(physics, velocity=np.zeros(3), angular_velocity=np.zeros(3))

    def set_walker_position(self, physics, xy, yaw: float | None = None) -> None:
        """Puts the walker at rest at `xy` (keeping its joint configuration)."""
        self._body.place(physics, xy, yaw=yaw)

    # -- episode -------------------------------------------------------------------------------

    def initialize_episode(self, physics, random_state) -> None:
        half = self._arena.half_size
        self._target_positions = random_positions(
            random_state, self._num_targets, half, margin=0.6, min_separation=1.5
        )
        for pad, pos in zip(self._pads, self._target_positions, strict=True):
            pad.set_pose(physics, position=(*pos, 0.0))
        self.box_target, self.walker_target = (
            int(i) for i in random_state.choice(self._num_targets, size=2, replace=False)
        )
        box_xy = random_positions(
            random_state, 1, half, margin=0.8, min_separation=1.0, avoid=self._target_positions
        )[0]
        self.set_box_position(physics, box_xy)
        walker_xy = random_positions(
            random_state,
            1,
            half,
            margin=0.8,
            min_separation=1.0,
            avoid=np.concatenate([self._target_positions, box_xy[None]]),
        )[0]
        self._body.place(
            physics, walker_xy, yaw=random_state.uniform(-np.pi, np.pi), random_state=random_state
        )
        self._phase = 0
        self._reward = 0.0
        self._steps = 0

    def before_step(self, physics, action, random_state) -> None:
        self._body.entity.apply_action(physics, action, random_state)

    def after_step(self, physics, random_state) -> None:
        self._steps += 1
        self._reward = 0.0
        if self._phase == 0:
            box_goal = self._target_positions[self.box_target]
            if np.linalg.norm(self.box_xy(physics) - box_goal) < self._target_radius:
                self._reward += 1.0
                self._phase = 1
        if self._phase == 1:
            walker_goal = self._target_positions[self.walker_target]
            if np.linalg.norm(self._body.xy(physics) - walker_goal) < self._target_radius:
                self._reward += 1.0 + self._completion_bonus
                self._phase = 2

    def get_reward(self, physics) -> float:
        return self._reward

    def should_terminate_episode(self, physics) -> bool:
        return self._phase == 2 or self._steps >= self._episode_length

    def get_discount(self, physics) -> float:
        return 0.0 if self._phase == 2 else 1.0


ROOM_HALF_SIZE = 3.0


def make_ant_box(
    seed: int | None = None,
    num_targets: int = 3,
    episode_length: int = 1500,
    completion_bonus: float = 1.0,
) -> composer.Environment:
    """The Ant, a box and `num_targets` targets in a 6 x 6 m walled room."""
    arena = WalledArena(half_size=ROOM_HALF_SIZE, wall_height=0.5, wall_thickness=0.1)
    task = BoxToTargetThenGo(
        ant.Ant(),
        arena,
        num_targets=num_targets,
        completion_bonus=completion_bonus,
        episode_length=episode_length,
    )
    return make_composer_env(task, seed)
