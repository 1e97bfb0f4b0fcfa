"""dm_control suite tasks with information sets.

walker_walk: the prior's `proprioception` set is the body's joint orientations and torso
height (the pose), without the velocities: a prior that sees pose alone must learn a
default gait that cannot depend on how fast the body is moving.
"""

from __future__ import annotations

from dm_control import suite

from environments.registry import TaskSpec, register


def _suite_factory(domain: str, task: str):
    def factory(seed: int, time_limit: float | None = None):
        kwargs = {"random": seed}
        if time_limit is not None:
            kwargs["time_limit"] = time_limit
        return suite.load(domain, task, task_kwargs=kwargs)

    return factory


register(
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
register(
    TaskSpec(
        name="point_mass_easy",
        factory=_suite_factory("point_mass", "easy"),
        information_sets={"position": ("position",), "velocity": ("velocity",)},
        description="dm_control point_mass/easy",
    )
)
register(
    TaskSpec(
        name="cartpole_balance",
        factory=_suite_factory("cartpole", "balance"),
        information_sets={"position": ("position",), "velocity": ("velocity",)},
        description="dm_control cartpole/balance",
    )
)
register(
    TaskSpec(
        name="cheetah_run",
        factory=_suite_factory("cheetah", "run"),
        information_sets={"position": ("position",), "velocity": ("velocity",)},
        description="dm_control cheetah/run",
    )
)
