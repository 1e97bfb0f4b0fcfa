"""The actor node: a light process (no TensorFlow) supervising one actor worker process.

Launchpad runs each node in a process that unpickles the node and everything its
arguments reference. This module, the config, the Courier handles and the replay's
`lp.Address` import only Launchpad, Courier, ml_collections and NumPy, so the supervising
process stays small (measured ~30-70 MB PSS against ~250 MB when it imported TensorFlow,
docs/results.md). The worker process it spawns imports `launch.nodes` (TensorFlow, Reverb,
Acme, MuJoCo) and runs the node's packed streams (`launch.nodes.run_actor_process`).
The replay is passed as its address, not as Launchpad's Reverb handle: dereferencing
that handle would import Reverb (and TensorFlow) into this process.
"""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections

from launch import supervision


class ActorNode:
    """Supervises one worker process that runs streams `stream_ids` into replay."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        stream_ids: Sequence[int],
        replay_address,
        counter,
        learner,
        workdir: str,
    ):
        self._args = (config, tuple(stream_ids), replay_address, counter, learner, workdir)
        self._max_restarts = config.actors.max_restarts
        self._name = f"actor_{stream_ids[0]}" + (
            f"-{stream_ids[-1]}" if len(stream_ids) > 1 else ""
        )

    def run(self) -> None:
        supervision.supervise(run_worker, self._args, self._max_restarts, name=self._name)


def run_worker(*args) -> None:
    """The worker process's entry: imports the heavy modules here, not in the node."""
    from launch import nodes

    nodes.run_actor_process(*args)
