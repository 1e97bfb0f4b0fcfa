"""The program's shape, in one place: its node groups in launch order and how many nodes
each has for a config. The program (launch/program/graph.py), the Vertex AI worker pools
(launch/vertex/worker_pools.py) and the machine-fit check (launch/config/fit.py) all read it.
Light on purpose (no TensorFlow, no Launchpad)."""

from __future__ import annotations

import ml_collections

from bprl.launch.config import packing

# The groups, in the order the program adds them (the replay first: the others connect).
GROUPS = ("replay", "counter", "learner", "actor", "evaluator", "stopper")


def actor_streams(config: ml_collections.ConfigDict, cores: int | None = None) -> list[tuple]:
    """The stream ids each actor node runs (launch/config/packing.py)."""
    return packing.stream_groups(config, cores)


def group_sizes(config: ml_collections.ConfigDict, cores: int | None = None) -> dict[str, int]:
    """Nodes per group, every group of GROUPS in order (an empty one has 0).

    `cores`: what auto packing spreads the actor streams over (None: this machine's)."""
    sizes = {
        "replay": 1,
        "counter": 1,
        "learner": 1,
        "actor": len(actor_streams(config, cores)),
        "evaluator": int(config.evaluators.num_evaluators),
        "stopper": 1,
    }
    assert tuple(sizes) == GROUPS
    return sizes
