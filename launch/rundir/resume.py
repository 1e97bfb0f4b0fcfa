"""Resuming a run from its checkpoints: which one to start from, and whether it fits.

A resumed run restores all three (learner, counter, replay): learner steps and counters
continue from the checkpoint, so TensorBoard curves continue instead of restarting at
zero. Here: choosing a checkpoint that reads back (setting a damaged one aside), the
root counter that starts from its counts, and the check that the config still fits it.
"""

from __future__ import annotations

import json
import time

from absl import logging
from acme.utils import counting

from bprl.launch.rundir import storage
from bprl.launch.rundir.checkpoint_record import (
    checkpoint_dir,
    counts_path,
    latest_replay_checkpoint,
    load_counts,
    load_record,
    record_paths,
    write_record,
)

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


class CheckpointError(RuntimeError):
    """No checkpoint record of a run can be read back."""


def check_record(record: dict) -> str | None:
    """Why `record`'s checkpoints cannot be restored, or None when they can: the learner
    checkpoint's every tensor is read back, and the replay checkpoint must exist."""
    learner = record.get("learner")
    if not learner or not storage.exists(learner + ".index"):
        return f"learner checkpoint {learner} is missing"
    try:
        import tensorflow as tf  # here: the counter node imports this module, light

        reader = tf.train.load_checkpoint(learner)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as error:  # noqa: BLE001 - TF raises OpError, IndexError, ValueError...
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        return f"learner checkpoint {learner} is unreadable ({reason})"
    return None


def prepare_resume(workdir: str) -> dict | None:
    """Chooses the checkpoint a resumed run starts from; returns its record (None: there is
    none, start from scratch).

    The newest record whose learner and replay checkpoints read back wins. A damaged
    newest one is reported and set aside (`counts.damaged.json`), and the previous record
    takes its place, so the counter, the learner and the replay all start from it.
    Raises CheckpointError, saying what to delete, when records exist but none is usable.
    """
    paths = list(record_paths(workdir))
    problems = []
    for path in paths:
        if not storage.exists(path):
            continue
        record = load_record(path)
        problem = "the record is unreadable" if record is None else check_record(record)
        if problem is None:
            replay = record.get("replay")
            if replay and not storage.isdir(replay):  # Reverb kept only a newer one
                newest = latest_replay_checkpoint(workdir)
                print(
                    f"warning: replay checkpoint {replay} is gone; the replay starts from "
                    + (f"the newest one, {newest}" if newest else "empty")
                )
                record = dict(record, replay=newest)
                if path == paths[0]:
                    write_record(workdir, record, keep_previous=False)
            if path != paths[0]:
                _promote(workdir, path, record)
            return record
        problems.append(f"{storage.basename(path)}: {problem}")
        print(f"warning: checkpoint {storage.basename(path)} cannot be restored: {problem}")
    if problems:
        raise CheckpointError(
            f"no readable checkpoint in {checkpoint_dir(workdir)} ({'; '.join(problems)}); "
            f"delete {checkpoint_dir(workdir)} to start this run over from step 0, or use "
            f"another --workdir"
        )
    return None


def _promote(workdir: str, path: str, record: dict) -> None:
    """Makes the record at `path` the newest; the damaged newest one is kept aside."""
    latest = counts_path(workdir)
    if storage.exists(latest):
        storage.replace(latest, storage.join(checkpoint_dir(workdir), "counts.damaged.json"))
    write_record(workdir, record, keep_previous=False)
    print(
        f"resuming from the previous checkpoint instead: learner step "
        f"{int(record.get('counts', {}).get('learner_steps', 0))} ({record['learner']})"
    )


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
