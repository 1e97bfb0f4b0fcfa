"""Nodes whose processes stay light (no TensorFlow): the actor supervisor, the stop
condition (and the counter, `launch.rundir.resume.RestoringCounter`).

Launchpad runs each node in a process that unpickles the node and everything its
arguments reference. This module, the config, the Courier handles and the replay's
`lp.Address` import only Launchpad, Courier, ml_collections, Acme's counter and NumPy, so
these processes stay small (an actor node ~40 MB PSS against ~250 MB when it imported
TensorFlow, docs/results.md) and start fast. The actor worker process an actor node
spawns imports `launch.nodes` (TensorFlow, Reverb, Acme, MuJoCo) and runs the node's
packed streams (`launch.nodes.run_actor_process`). The replay is passed to it as its
address, not as Launchpad's Reverb handle: dereferencing that handle would import Reverb
(and TensorFlow) into the supervising process.
"""

from __future__ import annotations

from collections.abc import Sequence

import launchpad as lp
import ml_collections
from absl import logging

from bprl.launch.config import packing
from bprl.launch.program import supervision


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
        self._name = packing.process_name(stream_ids)

    def run(self) -> None:
        supervision.supervise(run_worker, self._args, self._max_restarts, name=self._name)


def run_worker(*args) -> None:
    """The worker process's entry: imports the heavy modules here, not in the node."""
    from bprl.launch.program import nodes

    nodes.run_actor_process(*args)


STOPPED_EXIT_CODE = 143  # 128 + SIGTERM: the primary replica stopped before its budget


class StopConditionNode:
    """Stops the whole program once the actor-step or learner-step budget is spent."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        counter,
        poll_secs: float = 1.0,
        learner=None,
        workdir: str | None = None,
    ):
        self._max_actor_steps = config.stop.max_actor_steps
        self._max_learner_steps = config.stop.max_learner_steps
        self._counter = counter
        self._poll_secs = poll_secs
        # With the learner's handle (a job that ends itself: Vertex AI), the budget ends
        # the run by the learner's last checkpoint and this node returning.
        self._learner = learner
        self._workdir = workdir

    def run(self) -> None:
        while True:
            counts = self._counter.get_counts()
            actor_steps = counts.get("actor_steps", 0)
            learner_steps = counts.get("learner_steps", 0)
            done_actor = self._max_actor_steps and actor_steps >= self._max_actor_steps
            done_learner = self._max_learner_steps and learner_steps >= self._max_learner_steps
            if done_actor or done_learner:
                logging.info(
                    "budget reached (actor steps %d, learner steps %d): stopping",
                    actor_steps,
                    learner_steps,
                )
                if self._learner is not None:
                    self._finish()
                    return
                lp.stop()
                return
            if lp.stop_event().wait(self._poll_secs):
                if self._learner is not None:
                    # The job's primary replica: exiting 0 here would end the job
                    # SUCCEEDED before its budget (a VM's maintenance SIGTERMs it too).
                    logging.info("stopped before the budget: exiting non-zero")
                    raise SystemExit(STOPPED_EXIT_CODE)
                return  # the program is stopping (SIGTERM, Ctrl-C): nothing left to do

    def _finish(self, attempts: int = 30) -> None:
        """The learner's last checkpoint (with the replay's) and the run's FINISHED mark;
        raises when it cannot be written, so the replica fails and the job restarts from
        the last complete checkpoint instead of ending without its final state."""
        import time

        for attempt in range(1, attempts + 1):
            try:
                record = self._learner.finish()
            except Exception as error:  # noqa: BLE001 - the learner may be restarting
                logging.warning("final checkpoint failed (%d/%d): %s", attempt, attempts, error)
            else:
                if record:
                    logging.info(
                        "run complete: final checkpoint %s; this replica exits 0 and the job ends",
                        record.get("learner"),
                    )
                    return
                logging.warning("final checkpoint not written (%d/%d)", attempt, attempts)
            time.sleep(min(5.0 * attempt, 30.0))  # e.g. the first update still compiles
        raise RuntimeError("the final checkpoint could not be written; failing the replica")
