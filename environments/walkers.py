"""The bodies of the room tasks: the point mass and dm_control.locomotion's Ant.

Both are composer entities with one interface, `PlanarWalker`, which is all a task uses:
attach with `create_root_joints(arena.attach(walker))`, `enable_observables`, `start_at`
(the episode's start), `place` (put it somewhere by hand), `xy` / `heading` /
`egocentric` (where it is) and `apply_action`. The Ant already has the locomotion walker's
root joints and actuation; the point mass gives itself the same.
"""

from __future__ import annotations

import abc

import numpy as np
from dm_control import composer, mjcf
from dm_control.composer.observation import observable
from dm_control.locomotion.walkers import ant

# The point mass's observation keys (`PointMass.enable_observables` turns on both).
POINTMASS_PROPRIOCEPTION = ("point_mass/velocity",)
POINTMASS_LOCATION = ("point_mass/position",)

# The observation keys `Ant.enable_observables` turns on (proprioception and sensors).
ANT_PROPRIOCEPTION = (
    "walker/appendages_pos",
    "walker/bodies_pos",
    "walker/bodies_quats",
    "walker/body_height",
    "walker/end_effectors_pos",
    "walker/joints_pos",
    "walker/joints_vel",
    "walker/sensors_accelerometer",
    "walker/sensors_gyro",
    "walker/sensors_touch",
    "walker/sensors_velocimeter",
    "walker/world_zaxis",
)


def yaw_quaternion(yaw: float) -> np.ndarray:
    """The quaternion of a rotation by `yaw` about the vertical axis."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


class PlanarWalker(abc.ABC):
    """What the room tasks need of a body that moves on the floor.

    Mixed into a composer entity with a `root_body` (its centre: the ball, the Ant's torso),
    `observables` and `mjcf_model`.
    """

    @abc.abstractmethod
    def create_root_joints(self, attachment_frame) -> None:
        """Adds the joints that let the body move in the arena (if it needs any)."""

    @abc.abstractmethod
    def apply_action(self, physics, action, random_state) -> None:
        """Writes the action to the body's actuators."""

    @abc.abstractmethod
    def enable_observables(self) -> tuple[str, ...]:
        """Turns on the body's own observables for the tasks; returns their keys."""

    @abc.abstractmethod
    def place(self, physics, xy, yaw: float | None = None) -> None:
        """Puts the body at rest at `xy` (turned to `yaw` if it has a heading)."""

    @abc.abstractmethod
    def start_at(self, physics, xy, random_state: np.random.RandomState) -> None:
        """The episode's start at `xy`: `place` plus whatever pose the body draws."""

    def _enabled_keys(self) -> tuple[str, ...]:
        return tuple(name for name, obs in self.observables.as_dict().items() if obs.enabled)

    def xy(self, physics) -> np.ndarray:
        """The body's centre in the floor plane."""
        return np.array(physics.bind(self.root_body).xpos[:2])

    def heading(self, physics) -> np.ndarray:
        """(cos, sin) of the body's yaw (its x axis in the floor plane)."""
        xmat = physics.bind(self.root_body).xmat
        vec = np.array([xmat[0], xmat[3]])
        norm = np.linalg.norm(vec)
        return vec / norm if norm > 1e-8 else np.array([1.0, 0.0])

    def egocentric(self, physics, points_xy: np.ndarray) -> np.ndarray:
        """Horizontal vectors from the body to `points_xy` ([N, 2]) in the body's yaw frame."""
        cos, sin = self.heading(physics)
        delta = np.asarray(points_xy) - self.xy(physics)
        return np.stack(
            [cos * delta[:, 0] + sin * delta[:, 1], -sin * delta[:, 0] + cos * delta[:, 1]], 1
        )


class PointMass(composer.Entity, PlanarWalker):
    """A sphere on two actuated slide joints (x, y): a 2-DoF body, a continuous gridworld."""

    def _build(
        self,
        name: str = "point_mass",
        radius: float = 0.05,
        mass: float = 1.0,
        max_force: float = 5.0,
        damping: float = 3.0,
    ) -> None:
        # Terminal speed max_force / damping ~ 1.7 m/s, time constant mass / damping ~ 0.3 s.
        self._mjcf_root = mjcf.RootElement(model=name)
        self._body = self._mjcf_root.worldbody.add(
            "body", name="body", pos=(0.0, 0.0, radius + 0.01)
        )
        self._joints = [
            self._body.add("joint", name=axis, type="slide", axis=vec, damping=damping)
            for axis, vec in (("x", (1, 0, 0)), ("y", (0, 1, 0)))
        ]
        self._body.add(
            "geom", name="ball", type="sphere", size=(radius,), mass=mass, rgba=(1, 0.5, 0, 1)
        )
        self._actuators = [
            self._mjcf_root.actuator.add(
                "motor",
                name=f"motor_{joint.name}",
                joint=joint,
                gear=(max_force,),
                ctrllimited=True,
                ctrlrange=(-1.0, 1.0),
            )
            for joint in self._joints
        ]

    def _build_observables(self) -> PointMassObservables:
        return PointMassObservables(self)

    @property
    def mjcf_model(self):
        return self._mjcf_root

    @property
    def root_body(self):
        return self._body

    @property
    def joints(self) -> list:
        return self._joints

    @property
    def actuators(self) -> list:
        return self._actuators

    def create_root_joints(self, attachment_frame) -> None:
        """None needed: the slide joints are part of the model."""

    def apply_action(self, physics, action, random_state) -> None:
        physics.bind(self._actuators).ctrl = action

    def enable_observables(self) -> tuple[str, ...]:
        """Position and velocity (world frame)."""
        for obs in self.observables.as_dict().values():
            obs.enabled = True
        return self._enabled_keys()

    def place(self, physics, xy, yaw: float | None = None) -> None:
        """At rest at `xy`; the ball has no heading, so `yaw` must be None."""
        if yaw is not None:
            raise ValueError("the point mass has no heading to turn to")
        physics.bind(self._joints).qpos = np.asarray(xy, dtype=np.float64)
        physics.bind(self._joints).qvel = 0.0

    def start_at(self, physics, xy, random_state: np.random.RandomState) -> None:
        """At rest at `xy` (nothing to draw)."""
        self.place(physics, xy)


class PointMassObservables(composer.Observables):
    """World-frame position and velocity of the point mass."""

    @composer.observable
    def position(self):
        return observable.MJCFFeature("qpos", self._entity.joints)

    @composer.observable
    def velocity(self):
        return observable.MJCFFeature("qvel", self._entity.joints)


class Ant(ant.Ant, PlanarWalker):
    """dm_control.locomotion's Ant (named `walker`), placed by its torso on the floor."""

    def enable_observables(self) -> tuple[str, ...]:
        """Proprioception, kinematic sensors and touch (`ANT_PROPRIOCEPTION`)."""
        for obs in (
            *self.observables.proprioception,
            *self.observables.kinematic_sensors,
            self.observables.sensors_touch,
        ):
            obs.enabled = True
        return self._enabled_keys()

    def place(self, physics, xy, yaw: float | None = None) -> None:
        """At rest at `xy`, keeping its joint configuration; turned to `yaw` if given."""
        xy = np.asarray(xy, dtype=np.float64)
        quat = None if yaw is None else yaw_quaternion(yaw)
        self.set_pose(physics, position=(*xy, 0.0), quaternion=quat)
        self.set_velocity(physics, velocity=np.zeros(3), angular_velocity=np.zeros(3))

    def start_at(self, physics, xy, random_state: np.random.RandomState) -> None:
        """A uniform heading and the Ant's initial (upright) pose, at rest at `xy`."""
        yaw = random_state.uniform(-np.pi, np.pi)
        self.reinitialize_pose(physics, random_state)
        self.place(physics, xy, yaw=yaw)
