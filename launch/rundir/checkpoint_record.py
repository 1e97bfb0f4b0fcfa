"""The checkpoint record of a run (`counts.json`) and the paths of its checkpoints.

Layout under `<workdir>/checkpoints/`:
  learner/   tf.train.Checkpoint of networks, target networks, optimisers and step count
  replay/    Reverb's own checkpoints (the replay server loads the latest when it starts)
  counts.json  the counter's counts at the moment of the checkpoint and the paths of the
               learner and replay checkpoints taken with them, written last, so its
               presence marks a complete checkpoint.
  counts.previous.json  the record before it: the fallback when the newest checkpoint
               turns out damaged (truncated or missing files).

Reverb keeps only its newest replay checkpoint (it deletes the older ones itself when it
stores one) and loads that one when the replay server starts. The record's `replay` is
therefore always the newest replay checkpoint: the learner names it when it writes a
record without asking for a new one, and the replay node, after its own final checkpoint
at shutdown, updates the newest record (both under a lock on `.record.lock`).

Kept apart from the checkpointer so the readers of a run (launchers, health checks,
reports) find and read the records without TensorFlow.
"""

from __future__ import annotations

import json
import os

from bprl.launch.rundir import layout, storage


def checkpoint_dir(workdir: str, part: str = "") -> str:
    return storage.join(workdir, layout.CHECKPOINTS_DIR, part)


def counts_path(workdir: str) -> str:
    return storage.join(checkpoint_dir(workdir), "counts.json")


def previous_counts_path(workdir: str) -> str:
    return storage.join(checkpoint_dir(workdir), "counts.previous.json")


def record_paths(workdir: str) -> tuple[str, str]:
    """The newest checkpoint record, then the one before it: where a resume looks."""
    return counts_path(workdir), previous_counts_path(workdir)


def load_record(path: str) -> dict | None:
    """A checkpoint record, or None when the file is missing or unreadable."""
    try:
        record = storage.read_json(path)
        return record if isinstance(record, dict) and "learner" in record else None
    except (OSError, ValueError):
        return None


def load_counts(workdir: str) -> dict:
    """The counts of the last complete checkpoint, or {} for a fresh run."""
    for path in record_paths(workdir):
        record = load_record(path)
        if record is not None:
            return dict(record.get("counts", {}))
    return {}


def latest_replay_checkpoint(workdir: str) -> str | None:
    """The newest complete Reverb checkpoint (one with its DONE file), the one Reverb loads."""
    return latest_complete(checkpoint_dir(workdir, "replay"))


def latest_complete(root: str) -> str | None:
    """The newest checkpoint directory under `root` that has Reverb's DONE file.

    Reverb names its checkpoints by their UTC time, so on object storage (where
    directories have no time) the name orders them."""
    names = storage.listdir(root)
    if not storage.is_remote(root):
        names.sort(key=lambda name: os.path.getmtime(os.path.join(root, name)))
    else:
        names.sort()
    done = [name for name in names if storage.exists(storage.join(root, name, "DONE"))]
    return storage.join(root, done[-1]) if done else None


def record_lock(workdir: str):
    """Serialises the writers of the records (learner node, replay node at shutdown)."""
    return storage.lock(checkpoint_dir(workdir))


def write_record(workdir: str, record: dict, keep_previous: bool) -> None:
    """Writes the newest record atomically (its presence marks a complete checkpoint);
    with `keep_previous`, the record it replaces becomes `counts.previous.json`."""
    path = counts_path(workdir)
    if storage.is_remote(path):  # objects are replaced whole: no temporary file needed
        if keep_previous and storage.exists(path):
            storage.write_text(previous_counts_path(workdir), storage.read_text(path))
        storage.write_json(path, record)
        return
    os.makedirs(checkpoint_dir(workdir), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
        f.flush()
        os.fsync(f.fileno())  # a full disk fails here, before the records are touched
    if keep_previous and os.path.exists(path):
        os.replace(path, previous_counts_path(workdir))
    os.replace(tmp, path)


def note_final_replay(workdir: str, replay_path: str, replay_items: dict) -> None:
    """Called by the replay node after its final checkpoint, which made Reverb delete the
    one the newest record names: the record now names the new one."""
    with record_lock(workdir):
        record = load_record(counts_path(workdir))
        if record is None:
            return
        record["replay"], record["replay_items"] = replay_path, replay_items
        write_record(workdir, record, keep_previous=False)
