"""Run checkpoints: learner state, shared counts and the Reverb replay, in the run directory.

Layout under `<workdir>/checkpoints/`:
  learner/   tf.train.Checkpoint of networks, target networks, optimisers and step count
  replay/    Reverb's own checkpoints (the replay server loads the latest when it starts)
  counts.json  the counter's counts at the moment of the checkpoint, written last, so its
               presence marks a complete checkpoint.

A resumed run restores all three: learner steps and counters continue from the
checkpoint, so TensorBoard curves continue instead of restarting at zero.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable

import tensorflow as tf
from absl import logging
from acme.utils import counting

# Config fields that fix the shapes of networks, replay items or the task: a checkpoint
# taken under one value cannot be resumed under another.
STRUCTURAL_FIELDS = (
    "task",
    "task_kwargs",
    "seed",
    "prior_info",
    "network",
    "prior",
    "agent.action_squash",
    "replay.sequence_length",
)


def checkpoint_dir(workdir: str, part: str = "") -> str:
    return os.path.join(workdir, "checkpoints", part)


def counts_path(workdir: str) -> str:
    return os.path.join(checkpoint_dir(workdir), "counts.json")


def load_counts(workdir: str) -> dict:
    """The counts of the last complete checkpoint, or {} for a fresh run."""
    try:
        with open(counts_path(workdir)) as f:
            return json.load(f)["counts"]
    except FileNotFoundError:
        return {}


class RestoringCounter(counting.Counter):
    """The program's root counter; starts from the last checkpoint's counts, if any.

    When the program stops it keeps serving for `grace_secs`, so the learner's final
    checkpoint can still read the counts.
    """

    def __init__(self, workdir: str, grace_secs: float = 5.0):
        super().__init__()
        self._grace_secs = grace_secs
        counts = load_counts(workdir)
        if counts:
            self._counts = dict(counts)
            logging.info("counter resumed from checkpoint: %s", counts)

    def run(self) -> None:
        import launchpad as lp

        lp.wait_for_stop()
        time.sleep(self._grace_secs)


def _field(config_dict: dict, dotted: str):
    value = config_dict
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _normalise(value):
    """JSON round-trip, so tuples and lists compare equal."""
    return json.loads(json.dumps(value, default=list))


def check_resume_compatible(saved: dict, config: dict) -> None:
    """Raises ValueError naming the first structural field that differs."""
    for name in STRUCTURAL_FIELDS:
        old, new = _normalise(_field(saved, name)), _normalise(_field(config, name))
        if old != new:
            raise ValueError(
                f"cannot resume: config field {name!r} was {old!r} in the checkpointed run "
                f"and is {new!r} now; use a new --workdir or the original value"
            )


class RunCheckpointer:
    """Saves and restores a learner together with the counter and the replay server."""

    def __init__(
        self,
        workdir: str,
        learner_state: dict,
        counter,
        replay_client=None,
        learner_steps: Callable[[], int] | None = None,
    ):
        self._workdir = workdir
        self._learner_steps = learner_steps
        self._counter = counter
        self._replay = replay_client
        self._checkpoint = tf.train.Checkpoint(**learner_state)
        self._manager = tf.train.CheckpointManager(
            self._checkpoint, checkpoint_dir(workdir, "learner"), max_to_keep=2
        )
        self.last_save_time = time.time()
        self._last_counts: dict = {}
        self._last_replay: tuple[str | None, dict] = (None, {})

    def restore(self) -> bool:
        """Restores the latest complete checkpoint; False when there is none."""
        if not os.path.exists(counts_path(self._workdir)) or not self._manager.latest_checkpoint:
            return False
        with open(counts_path(self._workdir)) as f:
            record = json.load(f)
        learner_path = record["learner"]
        self._last_replay = (record.get("replay"), record.get("replay_items", {}))
        self._checkpoint.restore(learner_path).assert_existing_objects_matched()
        logging.info("learner restored from %s", learner_path)
        return True

    def save(self, include_replay: bool = True) -> dict:
        """Writes a checkpoint; returns what was written and how long each part took.

        A replay checkpoint that fails (the server is shutting down) is logged and the
        rest is still written; the record then keeps the previous replay checkpoint.
        """
        started = time.time()
        counts = self._read_counts()
        if self._learner_steps is not None:  # the shared count lags by up to a second
            counts["learner_steps"] = self._learner_steps()
        replay_secs = 0.0
        replay_path, replay_items = self._last_replay
        if self._replay is not None and include_replay:
            try:
                # Items present before the checkpoint call are all in it (none expire:
                # FIFO removal only runs on an insert past max_size).
                replay_items = {
                    name: info.current_size
                    for name, info in self._replay.server_info(timeout=10).items()
                }
                replay_started = time.time()
                replay_path = self._replay.checkpoint()
                replay_secs = time.time() - replay_started
                self._prune_replay(replay_path)
                self._last_replay = (replay_path, replay_items)
            except Exception:  # noqa: BLE001 - keep the learner's checkpoint regardless
                logging.exception("replay checkpoint failed; keeping the previous one")
        learner_started = time.time()
        learner_path = self._manager.save()
        learner_secs = time.time() - learner_started
        record = {
            "counts": counts,
            "learner": learner_path,
            "replay": replay_path,
            "replay_items": replay_items,
            "time": time.time(),
            "replay_seconds": replay_secs,
            "learner_seconds": learner_secs,
            "total_seconds": time.time() - started,
        }
        tmp = counts_path(self._workdir) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, counts_path(self._workdir))  # atomic: marks the checkpoint complete
        self.last_save_time = time.time()
        logging.info("checkpoint written in %.2fs: %s", record["total_seconds"], learner_path)
        return record

    def _read_counts(self) -> dict:
        """The counter's counts; the last ones read if it no longer answers (shutdown)."""
        if self._counter is None:
            return {}
        try:
            futures = getattr(self._counter, "futures", None)
            if futures is not None:
                counts = futures.get_counts().result(timeout=5.0)
            else:
                counts = self._counter.get_counts()
            self._last_counts = dict(counts)
        except Exception:  # noqa: BLE001 - a checkpoint without fresh counts beats none
            logging.warning("counter did not answer; checkpointing the last counts read")
        return dict(self._last_counts)

    def _prune_replay(self, keep: str) -> None:
        """Reverb keeps every checkpoint it wrote; keep the newest and the one before."""
        root = os.path.dirname(keep.rstrip("/"))
        entries = sorted(
            (os.path.join(root, name) for name in os.listdir(root)),
            key=os.path.getmtime,
        )
        for path in entries[:-2]:
            if os.path.isdir(path) and os.path.abspath(path) != os.path.abspath(keep):
                shutil.rmtree(path, ignore_errors=True)
