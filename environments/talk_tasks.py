"""Tasks from the talk: sequential navigation, locomotion + manipulation, multi-task.

Registered names and their information sets (see docs/tasks.md for the details):

- seqnav_pointmass: proprioception (velocity), location (position), targets (all target
  positions), next_target (one-hot of the target to visit now).
- seqnav_ant: proprioception (the Ant's joints, body pose and sensors), location (torso
  position and heading), targets (world and egocentric target positions), next_target.
- ant_box: proprioception, location, box, targets, target_identity (the target to move to
  now, and the task phase).
- multitask_pointmass: proprioception, location, targets, task_id (the DISTRAL task
  identity, which the prior never sees).
"""

from __future__ import annotations

from environments.box_manipulation import make_ant_box
from environments.multitask import make_multitask_pointmass
from environments.sequential_navigation import make_ant_navigation, make_pointmass_navigation
from environments.task_spec import TaskSpec

# The Ant's observation keys enabled by `sequential_navigation.enable_walker_observables`.
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
WALKER_LOCATION = ("walker_position", "walker_heading")

TASKS: list[TaskSpec] = []  # registered by environments/registry.py

TASKS.append(
    TaskSpec(
        name="seqnav_pointmass",
        factory=make_pointmass_navigation,
        information_sets={
            "proprioception": ("point_mass/velocity",),
            "location": ("point_mass/position",),
            "targets": ("target_positions",),
            "next_target": ("next_target",),
        },
        description="point mass visits 4 targets drawn by 2nd-order Markov dynamics (p=0.9)",
    )
)
TASKS.append(
    TaskSpec(
        name="seqnav_ant",
        factory=make_ant_navigation,
        information_sets={
            "proprioception": ANT_PROPRIOCEPTION,
            "location": WALKER_LOCATION,
            "targets": ("target_positions", "targets_egocentric"),
            "next_target": ("next_target",),
        },
        description="Ant visits 4 targets drawn by 2nd-order Markov dynamics (p=0.9)",
    )
)
TASKS.append(
    TaskSpec(
        name="ant_box",
        factory=make_ant_box,
        information_sets={
            "proprioception": ANT_PROPRIOCEPTION,
            "location": WALKER_LOCATION,
            "box": ("box_position", "box_egocentric"),
            "targets": ("target_positions", "targets_egocentric"),
            "target_identity": ("target_identity", "task_phase"),
        },
        description="Ant pushes a box onto its target, then walks to another target; sparse",
    )
)
TASKS.append(
    TaskSpec(
        name="multitask_pointmass",
        factory=make_multitask_pointmass,
        information_sets={
            "proprioception": ("point_mass/velocity",),
            "location": ("point_mass/position",),
            "targets": ("target_positions",),
            "task_id": ("task_id",),
        },
        description="DISTRAL-style: point mass goes to target task_id (drawn per episode)",
    )
)
