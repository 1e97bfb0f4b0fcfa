"""dm_control suite tasks with information sets.

walker_walk: the prior's `proprioception` set is the body's joint orientations and torso
height (the pose), without the velocities: a prior that sees pose alone must learn a
default gait that cannot depend on how fast the body is moving.
"""

from __future__ import annotations

import numpy as np
from dm_control import suite
from dm_control.rl import control
from dm_control.suite import point_mass
from dm_control.utils import rewards

from bprl.environments.task_spec import TaskSpec


def _suite_factory(domain: str, task: str):
    def factory(seed: int, time_limit: float | None = None):
        kwargs = {"random": seed}
        if time_limit is not None:
            kwargs["time_limit"] = time_limit
        return suite.load(domain, task, task_kwargs=kwargs)

    return factory


TASKS: list[TaskSpec] = []  # registered by environments/registry.py

TASKS.append(
    TaskSpec(
        name="walker_walk",
        factory=_suite_factory("walker", "walk"),
        information_sets={
            "proprioception": ("orientations", "height"),
            "velocity": ("velocity",),
        },
        description="dm_control walker/walk; proprioception = orientations + height",
    )
)
TASKS.append(
    TaskSpec(
        name="point_mass_easy",
        factory=_suite_factory("point_mass", "easy"),
        information_sets={"position": ("position",), "velocity": ("velocity",)},
        description="dm_control point_mass/easy",
    )
)
TASKS.append(
    TaskSpec(
        name="cartpole_balance",
        factory=_suite_factory("cartpole", "balance"),
        information_sets={"position": ("position",), "velocity": ("velocity",)},
        description="dm_control cartpole/balance",
    )
)
TASKS.append(
    TaskSpec(
        name="cheetah_run",
        factory=_suite_factory("cheetah", "run"),
        information_sets={"position": ("position",), "velocity": ("velocity",)},
        description="dm_control cheetah/run",
    )
)


class _DenseReach(point_mass.PointMass):
    """point_mass/easy with a dense reward: 1 at the target, falling linearly to 0 at 0.6 m.

    A small task whose return rises within a few thousand steps of learning, for tests.
    """

    def get_reward(self, physics: point_mass.Physics) -> float:
        return float(
            rewards.tolerance(
                physics.mass_to_target_dist(), bounds=(0.0, 0.02), margin=0.6, sigmoid="linear"
            )
        )


def _point_mass_factory(task_class: type, default_time_limit: float):
    """Factory for a point_mass task class of ours (the suite's model and physics)."""

    def factory(
        seed: int, time_limit: float = default_time_limit, n_sub_steps: int = 1
    ) -> control.Environment:
        """`n_sub_steps` physics steps (0.02 s each) per action: coarser control."""
        physics = point_mass.Physics.from_xml_string(*point_mass.get_model_and_assets())
        task = task_class(randomize_gains=False, random=seed)
        return control.Environment(physics, task, time_limit=time_limit, n_sub_steps=n_sub_steps)

    return factory


TASKS.append(
    TaskSpec(
        name="point_mass_reach",
        factory=_point_mass_factory(_DenseReach, default_time_limit=5.0),
        information_sets={"position": ("position",), "velocity": ("velocity",)},
        description="point mass reaching a target with a dense reward, 5 s episodes (small task)",
    )
)


class _PushRight(point_mass.PointMass):
    """point_mass/easy started at the left wall; reward: how far right (0 at x=-0.3, 1 at 0.3).

    The smallest task with a clear optimum (push right and stay at the right wall): a
    policy that does not push stays near the left wall and earns little, so learning shows
    as a large rise within a few thousand steps.
    """

    def initialize_episode(self, physics: point_mass.Physics) -> None:
        super().initialize_episode(physics)
        physics.named.data.qpos["root_x"] = self.random.uniform(-0.28, -0.22)
        physics.named.data.qvel[:] = 0.0

    def get_reward(self, physics: point_mass.Physics) -> float:
        x = float(physics.named.data.geom_xpos["pointmass"][0])
        return float(np.clip((x + 0.3) / 0.6, 0.0, 1.0))


TASKS.append(
    TaskSpec(
        name="point_mass_right",
        factory=_point_mass_factory(_PushRight, default_time_limit=8.0),
        information_sets={"position": ("position",), "velocity": ("velocity",)},
        description="point mass rewarded for being far right, 8 s episodes (smoke-test task)",
    )
)
