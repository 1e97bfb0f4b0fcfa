"""Sequential navigation (the talk's "continuous gridworld"), with a point mass or the Ant.

A body in a walled square room must visit targets in turn. It observes where it is, where
all targets are, and which target to visit next (one-hot). Reaching the current target pays
+1 and draws the next one from the second-order Markov table of `environments.markov`:
the last two targets visited make the next one predictable (probability p), the last one
alone does not. A prior with memory can learn that structure; a memoryless prior cannot.

Choices made here (the talk does not fix them):
- Targets sit at fixed positions by default (K = 4 near the room's corners, at
  +-0.6 of the half-size; `layout="sides"` puts them at the walls' middles instead), so
  the statistics of the visiting order are the only thing a prior has to learn about
  them; `random_targets=True` draws fresh positions every episode instead, kept
  `min_separation` (0.4 m in the point-mass room) from each other and, with
  `held_out_layout`, from that layout's targets (a source whose layouts never come near
  the new task's: issue 28's random-layout pair).
- The body starts anywhere in the room (uniformly, away from the walls and from the
  first target); the Ant also gets a uniform random heading.
- Episodes have a fixed number of control steps (no termination, discount 1 throughout);
  the point mass crosses the room in under a second, so a good policy visits about
  ten targets in the default 400 steps (10 s).
- Reaching means the body's centre (the Ant's torso) is within `reach_radius` of the
  target in the horizontal plane.
"""

from __future__ import annotations

import numpy as np
from dm_control import composer
from dm_control.composer.observation import observable

from bprl.environments import arenas, props, walkers
from bprl.environments.markov import TargetSequence
from bprl.environments.room_task import WALKER_LOCATION, RoomTask, make_composer_env, one_hot
from bprl.environments.task_spec import TaskSpec


class SequentialNavigation(RoomTask):
    """Visit targets in the order drawn from the second-order Markov table.

    Observation keys: the walker's own (point mass: `position`, `velocity`; Ant: its
    proprioception), with `egocentric=True` also `walker_position`, `walker_heading` and
    `targets_egocentric` (the targets in the walker's yaw frame), then `target_positions`
    (all targets, [K * 2], world frame) and `next_target` (one-hot of the target to visit
    now); with `next_target_offset=True` also `next_target_offset` (that target's xy minus
    the body's: on random layouts the one-hot alone asks a policy to learn which of the
    positions it names, which a policy did not learn in 1.3M actor steps, docs/results.md).
    """

    def __init__(
        self,
        walker: walkers.PlanarWalker,
        arena: arenas.WalledArena,
        num_targets: int = 4,
        p: float = 0.9,
        episode_length: int = 400,
        reach_radius: float = 0.1,
        random_targets: bool = False,
        target_positions: np.ndarray | None = None,
        layout: str = "corners",
        physics_timestep: float = 0.005,
        control_timestep: float = 0.025,
        egocentric: bool = False,
        held_out_layout: str | None = None,
        next_target_offset: bool = False,
    ):
        super().__init__(
            walker, arena, episode_length, reach_radius, physics_timestep, control_timestep
        )
        self._num_targets = num_targets
        self._p = p
        self._random_targets = random_targets
        if held_out_layout is not None and not random_targets:
            raise ValueError(
                "held_out_layout keeps random targets away from a layout: it "
                "needs random_targets=True"
            )
        self._held_out = (
            None
            if held_out_layout is None
            else arenas.default_target_positions(num_targets, arena.half_size, held_out_layout)
        )
        if target_positions is None:
            target_positions = arenas.default_target_positions(num_targets, arena.half_size, layout)
        self._target_positions = np.asarray(target_positions, dtype=np.float64).copy()
        self._pads = props.add_target_pads(arena, num_targets, reach_radius)
        self._sequence: TargetSequence | None = None
        self.target_history: list[int] = []

        observables = self._walker_location_observables() if egocentric else {}
        if egocentric:
            observables["targets_egocentric"] = self._targets_egocentric_observable()
        observables["target_positions"] = self._targets_observable()
        observables["next_target"] = observable.Generic(
            lambda physics: one_hot(self.current_target, self._num_targets)
        )
        if next_target_offset:
            observables["next_target_offset"] = observable.Generic(self._next_target_offset)
        self._set_task_observables(observables)

    @property
    def p(self) -> float:
        """Probability of the favoured next target given the last two."""
        return self._p

    @property
    def current_target(self) -> int | None:
        return None if self._sequence is None else self._sequence.current

    def _next_target_offset(self, physics) -> np.ndarray:
        """The current target's xy minus the body's, world frame ([2])."""
        if self.current_target is None:
            return np.zeros(2)
        return self._target_positions[self.current_target] - self._walker.xy(physics)

    def initialize_episode(self, physics, random_state) -> None:
        if self._random_targets:
            half = self._arena.half_size
            self._target_positions = self._draw_targets(random_state, half)
        props.move_target_pads(physics, self._pads, self._target_positions)
        self._sequence = TargetSequence(self._num_targets, self._p, seed=random_state)
        first = self._sequence.reset()
        self.target_history = [first]
        self._walker.start_at(physics, self._random_start(random_state, first), random_state)
        self._reset_counts()

    def _draw_targets(self, random_state, half: float) -> np.ndarray:
        """Fresh target positions, 0.4 * half apart and as far from the held-out layout's
        (redrawn whole until they are: the positions' own draw may give up in a crowd)."""
        separation = 0.4 * half
        for _ in range(100):
            positions = arenas.random_positions(
                random_state,
                self._num_targets,
                half,
                margin=0.15 * half,
                min_separation=separation,
                avoid=self._held_out,
            )
            if self._held_out is None:
                return positions
            gaps = np.linalg.norm(positions[:, None] - self._held_out[None], axis=-1)
            if gaps.min() >= separation:
                return positions
        raise RuntimeError("no target layout away from the held-out one in 100 draws")

    def _step_reward(self, physics) -> float:
        if not self._reaches(physics, self._target_positions[self.current_target]):
            return 0.0
        self.target_history.append(self._sequence.next())
        return 1.0


def make_pointmass_navigation(
    seed: int | None = None,
    p: float = 0.9,
    num_targets: int = 4,
    episode_length: int = 400,
    random_targets: bool = False,
    control_timestep: float = 0.025,
    physics_timestep: float = 0.0125,
    reach_radius: float = 0.1,
    layout: str = "corners",
    held_out_layout: str | None = None,
    next_target_offset: bool = False,
) -> composer.Environment:
    """Sequential navigation with the point mass in a 2 x 2 m room; `layout` places the
    fixed targets (`arenas.TARGET_LAYOUTS`: near the corners, or at the walls' middles);
    `random_targets` draws them per episode, away from `held_out_layout`'s if given;
    `next_target_offset` adds the observation of that name (no information set has it:
    the policy sees it, a prior never)."""
    task = SequentialNavigation(
        walkers.PointMass(),
        arenas.pointmass_room(),
        num_targets=num_targets,
        p=p,
        episode_length=episode_length,
        reach_radius=reach_radius,
        random_targets=random_targets,
        layout=layout,
        physics_timestep=physics_timestep,
        control_timestep=control_timestep,
        held_out_layout=held_out_layout,
        next_target_offset=next_target_offset,
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
    task = SequentialNavigation(
        walkers.Ant(),
        arenas.ant_room(),
        num_targets=num_targets,
        p=p,
        episode_length=episode_length,
        reach_radius=0.5,
        random_targets=random_targets,
        physics_timestep=0.005,
        control_timestep=0.025,
        egocentric=True,
    )
    return make_composer_env(task, seed)


# Registered by environments/registry.py (see docs/tasks.md for the information sets).
TASKS = [
    TaskSpec(
        name="seqnav_pointmass",
        factory=make_pointmass_navigation,
        information_sets={
            "proprioception": walkers.POINTMASS_PROPRIOCEPTION,
            "location": walkers.POINTMASS_LOCATION,
            "targets": ("target_positions",),
            "next_target": ("next_target",),
        },
        description="point mass visits 4 targets drawn by 2nd-order Markov dynamics (p=0.9)",
    ),
    TaskSpec(
        name="seqnav_ant",
        factory=make_ant_navigation,
        information_sets={
            "proprioception": walkers.ANT_PROPRIOCEPTION,
            "location": WALKER_LOCATION,
            "targets": ("target_positions", "targets_egocentric"),
            "next_target": ("next_target",),
        },
        description="Ant visits 4 targets drawn by 2nd-order Markov dynamics (p=0.9)",
    ),
]
