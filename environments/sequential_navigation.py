"""Sequential navigation (the talk's "continuous gridworld"), with a point mass or the Ant.

A body in a walled square room must visit targets in turn. It observes where it is, where
all targets are, and which target to visit next (one-hot). Reaching the current target pays
+1 and draws the next one from the second-order Markov table of `environments.markov`:
the last two targets visited make the next one predictable (probability p), the last one
alone does not. A prior with memory can learn that structure; a memoryless prior cannot.

Choices made here (the talk does not fix them):
- Targets sit at fixed positions by default (K = 4 near the room's corners, at
  +-0.6 of the half-size), so the statistics of the visiting order are the only thing a
  prior has to learn about them; `random_targets=True` draws fresh positions every
  episode instead.
- The body starts anywhere in the room (uniformly, away from the walls and from the
  first target); the Ant also gets a uniform random heading.
- Episodes have a fixed number of control steps (no termination, discount 1 throughout);
  the point mass crosses the room in under a second, so a good policy visits about
  ten targets in the default 400 steps (10 s).
- Reaching means the body's centre (the Ant's torso) is within `reach_radius` of the
  target in the horizontal plane.

Built with dm_control's composer: the point mass and the target pads are
`composer.Entity`s, the room is a locomotion `Floor` with four walls added, and the task
is a `composer.Task` whose observables carry the target information.
"""

from __future__ import annotations

import numpy as np
from dm_control import composer, mjcf
from dm_control.composer.observation import observable
from dm_control.locomotion.arenas import floors
from dm_control.locomotion.walkers import ant

from environments.markov import TargetSequence

TARGET_COLOURS = (
    (0.2, 0.4, 0.9, 1.0),  # blue
    (0.2, 0.8, 0.3, 1.0),  # green
    (0.9, 0.2, 0.2, 1.0),  # red
    (0.1, 0.1, 0.1, 1.0),  # black
    (0.9, 0.8, 0.1, 1.0),
    (0.7, 0.3, 0.9, 1.0),
)


class WalledArena(floors.Floor):
    """A square floor of half-size `half_size` closed by four walls."""

    def _build(
        self,
        half_size: float = 1.0,
        wall_height: float = 0.3,
        wall_thickness: float = 0.05,
        name: str = "room",
    ) -> None:
        super()._build(size=(half_size, half_size), name=name)
        self._half_size = half_size
        self._walls = []
        h, t = half_size, wall_thickness
        for wall_name, pos, size in (
            ("wall_px", (h + t, 0.0), (t, h + 2 * t)),
            ("wall_nx", (-h - t, 0.0), (t, h + 2 * t)),
            ("wall_py", (0.0, h + t), (h + 2 * t, t)),
            ("wall_ny", (0.0, -h - t), (h + 2 * t, t)),
        ):
            self._walls.append(
                self._mjcf_root.worldbody.add(
                    "geom",
                    name=wall_name,
                    type="box",
                    pos=(*pos, wall_height / 2),
                    size=(*size, wall_height / 2),
                    rgba=(0.6, 0.6, 0.6, 1.0),
                )
            )

    @property
    def half_size(self) -> float:
        return self._half_size

    @property
    def walls(self) -> list:
        return self._walls


class PointMass(composer.Entity):
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


class PointMassObservables(composer.Observables):
    """World-frame position and velocity of the point mass."""

    @composer.observable
    def position(self):
        return observable.MJCFFeature("qpos", self._entity.joints)

    @composer.observable
    def velocity(self):
        return observable.MJCFFeature("qvel", self._entity.joints)


class TargetPad(composer.Entity):
    """A flat coloured disc on the floor; purely visual (no collisions)."""

    def _build(self, name: str = "target", radius: float = 0.1, rgba=(0.2, 0.8, 0.3, 1.0)):
        self._mjcf_root = mjcf.RootElement(model=name)
        self._geom = self._mjcf_root.worldbody.add(
            "geom",
            name="pad",
            type="cylinder",
            size=(radius, 0.002),
            pos=(0.0, 0.0, 0.002),
            rgba=rgba,
            contype=0,
            conaffinity=0,
        )

    @property
    def mjcf_model(self):
        return self._mjcf_root


def default_target_positions(num_targets: int, half_size: float) -> np.ndarray:
    """K = 4: near the corners (+-0.6 * half_size); otherwise evenly on a circle."""
    if num_targets == 4:
        s = 0.6 * half_size
        return np.array([[-s, s], [s, s], [s, -s], [-s, -s]], dtype=np.float64)
    angles = 2 * np.pi * np.arange(num_targets) / num_targets
    return 0.6 * half_size * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def random_positions(
    random_state: np.random.RandomState,
    count: int,
    half_size: float,
    margin: float,
    min_separation: float,
    avoid: np.ndarray | None = None,
    max_tries: int = 1000,
) -> np.ndarray:
    """`count` uniform xy points in the room, `min_separation` apart (and from `avoid`)."""
    placed = [] if avoid is None else [np.asarray(p, dtype=np.float64) for p in avoid]
    out = []
    limit = half_size - margin
    for _ in range(count):
        for _ in range(max_tries):
            candidate = random_state.uniform(-limit, limit, size=2)
            if all(np.linalg.norm(candidate - p) >= min_separation for p in placed):
                break
        # After max_tries, accept the last candidate (never hangs on crowded rooms).
        placed.append(candidate)
        out.append(candidate)
    return np.array(out, dtype=np.float64).reshape(count, 2)


def yaw_quaternion(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


class Body:
    """Adapter giving the tasks one interface to the point mass and to locomotion walkers."""

    def __init__(self, entity: composer.Entity, start_height: float = 0.0):
        self.entity = entity
        self.is_walker = not isinstance(entity, PointMass)
        self._start_height = start_height

    def attach_to(self, arena: composer.Arena) -> None:
        if self.is_walker:
            self.entity.create_root_joints(arena.attach(self.entity))
        else:
            arena.attach(self.entity)

    def xy(self, physics) -> np.ndarray:
        return np.array(physics.bind(self.entity.root_body).xpos[:2])

    def heading(self, physics) -> np.ndarray:
        """(cos, sin) of the body's yaw (the torso's x axis in the world plane)."""
        xmat = physics.bind(self.entity.root_body).xmat
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

    def place(self, physics, xy, yaw: float | None = None, random_state=None) -> None:
        """Puts the body at `xy` (at rest); walkers also get their initial pose and `yaw`."""
        xy = np.asarray(xy, dtype=np.float64)
        if not self.is_walker:
            physics.bind(self.entity.joints).qpos = xy
            physics.bind(self.entity.joints).qvel = 0.0
            return
        if random_state is not None:
            self.entity.reinitialize_pose(physics, random_state)
        quat = None if yaw is None else yaw_quaternion(yaw)
        self.entity.set_pose(physics, position=(*xy, self._start_height), quaternion=quat)
        self.entity.set_velocity(physics, velocity=np.zeros(3), angular_velocity=np.zeros(3))


def enable_walker_observables(walker) -> list[str]:
    """Turns on the walker's proprioception and sensors; returns their observation keys."""
    enabled = list(walker.observables.proprioception)
    enabled += list(walker.observables.kinematic_sensors)
    enabled.append(walker.observables.sensors_touch)
    keys = []
    for obs in enabled:
        obs.enabled = True
    prefix = walker.mjcf_model.model
    for name, obs in walker.observables.as_dict().items():
        if obs.enabled and name.startswith(prefix + "/"):
            keys.append(name)
    return keys


class SequentialNavigation(composer.Task):
    """Visit targets in the order drawn from the second-order Markov table.

    Observation keys: the body's own (point mass: `position`, `velocity`; walker: its
    proprioception plus `walker_position`, `walker_heading`), `target_positions` (all
    targets, [K * 2], world frame), `targets_egocentric` (walkers only: the targets in the
    walker's yaw frame) and `next_target` (one-hot of the target to visit now).
    """

    def __init__(
        self,
        body: composer.Entity,
        arena: WalledArena,
        num_targets: int = 4,
        p: float = 0.9,
        episode_length: int = 400,
        reach_radius: float = 0.1,
        random_targets: bool = False,
        target_positions: np.ndarray | None = None,
        physics_timestep: float = 0.005,
        control_timestep: float = 0.025,
        start_height: float = 0.0,
    ):
        self._arena = arena
        self._body = Body(body, start_height=start_height)
        self._body.attach_to(arena)
        self._num_targets = num_targets
        self._p = p
        self._episode_length = episode_length
        self._reach_radius = reach_radius
        self._random_targets = random_targets
        if target_positions is None:
            target_positions = default_target_positions(num_targets, arena.half_size)
        self._default_targets = np.asarray(target_positions, dtype=np.float64)
        self._target_positions = self._default_targets.copy()
        self._pads = []
        for k in range(num_targets):
            pad = TargetPad(
                name=f"target_{k}",
                radius=reach_radius,
                rgba=TARGET_COLOURS[k % len(TARGET_COLOURS)],
            )
            arena.attach(pad)
            self._pads.append(pad)
        self._sequence: TargetSequence | None = None
        self._reward = 0.0
        self._steps = 0
        self.target_history: list[int] = []

        if self._body.is_walker:
            self.walker_keys = enable_walker_observables(body)
        else:
            for obs in body.observables.as_dict().values():
                obs.enabled = True
            self.walker_keys = []
        self._task_observables = self._make_task_observables()
        for obs in self._task_observables.values():
            obs.enabled = True
        self.set_timesteps(control_timestep=control_timestep, physics_timestep=physics_timestep)

    # -- observables -------------------------------------------------------------------------

    def _make_task_observables(self) -> dict:
        out = {}
        if self._body.is_walker:
            out["walker_position"] = observable.Generic(lambda physics: self._body.xy(physics))
            out["walker_heading"] = observable.Generic(lambda physics: self._body.heading(physics))
            out["targets_egocentric"] = observable.Generic(
                lambda physics: self._body.egocentric(physics, self._target_positions).ravel()
            )
        out["target_positions"] = observable.Generic(
            lambda physics: self._target_positions.ravel().copy()
        )
        out["next_target"] = observable.Generic(lambda physics: self._one_hot(self.current_target))
        return out

    def _one_hot(self, index: int | None) -> np.ndarray:
        out = np.zeros(self._num_targets)
        if index is not None:
            out[index] = 1.0
        return out

    @property
    def task_observables(self) -> dict:
        return self._task_observables

    @property
    def root_entity(self) -> composer.Arena:
        return self._arena

    @property
    def body(self) -> Body:
        return self._body

    @property
    def p(self) -> float:
        """Probability of the favoured next target given the last two."""
        return self._p

    @property
    def episode_length(self) -> int:
        return self._episode_length

    @property
    def current_target(self) -> int | None:
        return None if self._sequence is None else self._sequence.current

    @property
    def target_positions(self) -> np.ndarray:
        return self._target_positions.copy()

    # -- episode -------------------------------------------------------------------------------

    def initialize_episode(self, physics, random_state) -> None:
        half = self._arena.half_size
        if self._random_targets:
            self._target_positions = random_positions(
                random_state, self._num_targets, half, margin=0.15 * half, min_separation=0.4 * half
            )
        for pad, pos in zip(self._pads, self._target_positions, strict=True):
            pad.set_pose(physics, position=(*pos, 0.0))
        self._sequence = TargetSequence(self._num_targets, self._p, seed=random_state)
        first = self._sequence.reset()
        self.target_history = [first]
        start = random_positions(
            random_state,
            1,
            half,
            margin=0.1 * half,
            min_separation=3 * self._reach_radius,
            avoid=self._target_positions[first : first + 1],
        )[0]
        yaw = random_state.uniform(-np.pi, np.pi) if self._body.is_walker else None
        self._body.place(physics, start, yaw=yaw, random_state=random_state)
        self._reward = 0.0
        self._steps = 0

    def before_step(self, physics, action, random_state) -> None:
        if self._body.is_walker:
            self._body.entity.apply_action(physics, action, random_state)
        else:
            physics.set_control(action)

    def after_step(self, physics, random_state) -> None:
        self._steps += 1
        self._reward = 0.0
        target = self._target_positions[self.current_target]
        if np.linalg.norm(self._body.xy(physics) - target) < self._reach_radius:
            self._reward = 1.0
            self.target_history.append(self._sequence.next())

    def get_reward(self, physics) -> float:
        return self._reward

    def should_terminate_episode(self, physics) -> bool:
        return self._steps >= self._episode_length

    def get_discount(self, physics) -> float:
        return 1.0  # the episode ends on a time limit only


POINTMASS_ROOM_HALF_SIZE = 1.0
ANT_ROOM_HALF_SIZE = 3.0


def make_pointmass_navigation(
    seed: int | None = None,
    p: float = 0.9,
    num_targets: int = 4,
    episode_length: int = 400,
    random_targets: bool = False,
    control_timestep: float = 0.025,
    physics_timestep: float = 0.0125,
    reach_radius: float = 0.1,
) -> composer.Environment:
    """Sequential navigation with the point mass in a 2 x 2 m room."""
    arena = WalledArena(half_size=POINTMASS_ROOM_HALF_SIZE)
    # No contacts but the walls: a plain solver is enough and keeps stepping fast.
    arena.mjcf_model.option.noslip_iterations = 0
    arena.mjcf_model.option.cone = "pyramidal"
    task = SequentialNavigation(
        PointMass(),
        arena,
        num_targets=num_targets,
        p=p,
        episode_length=episode_length,
        reach_radius=reach_radius,
        random_targets=random_targets,
        physics_timestep=physics_timestep,
        control_timestep=control_timestep,
    )
    return make_composer_env(task, seed)


def make_ant_navigation(
    seed: int | None = None,
    p: float = 0.9,
    num_targets: int = 4,
    episode_length: int = 1000,
    random_targets: bool = False,
) -> composer.Environment:
    """Sequential navigation with dm_control.locomotion's Ant in a 6 x 6 m room."""
    arena = WalledArena(half_size=ANT_ROOM_HALF_SIZE, wall_height=0.5, wall_thickness=0.1)
    task = SequentialNavigation(
        ant.Ant(),
        arena,
        num_targets=num_targets,
        p=p,
        episode_length=episode_length,
        reach_radius=0.5,
        random_targets=random_targets,
        physics_timestep=0.005,
        control_timestep=0.025,
    )
    return make_composer_env(task, seed)


def make_composer_env(task: composer.Task, seed: int | None) -> composer.Environment:
    """A composer environment that never recompiles (episodes only move things around)."""
    return composer.Environment(
        task,
        random_state=seed,
        strip_singleton_obs_buffer_dim=True,
        recompile_mjcf_every_episode=False,
    )
