"""The learner's checkpoints, taken together with the counter's counts and the replay.

`RunCheckpointer` saves and restores a learner with the counter and the replay server
(the records and paths are in `checkpoint_record`); `final_checkpoint` is the learner
node's last one when the program stops. The learner keeps its last 3 checkpoints: the
two records name at most two, a third is being written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from absl import logging

from bprl.launch.rundir import storage
from bprl.launch.rundir.checkpoint_record import (
    checkpoint_dir,
    counts_path,
    latest_replay_checkpoint,
    load_record,
    record_lock,
    record_paths,
    write_record,
)
from bprl.launch.rundir.replay_mirror import wait_for_mirror


def _readable_copy(prefix: str) -> str:
    """`prefix` itself, or in a rehearsal a local copy of its files: TensorFlow would read
    them through the modular GCS filesystem, whose larger reads crash (launch/rundir/storage.py)."""
    if not (storage.is_remote(prefix) and os.environ.get(storage.EMULATOR_ENV)):
        return prefix
    import tempfile

    parent, name = prefix.rsplit("/", 1)
    local = tempfile.mkdtemp(prefix="bprl_learner_")
    for file in storage.listdir(parent):
        if file.startswith(name + "."):
            storage.copy(storage.join(parent, file), os.path.join(local, file))
    return os.path.join(local, name)


def never_below(counts: dict, newest: dict | None) -> dict:
    """`counts` with every count the newest record (`newest`, None: none yet) holds at
    least as high as there.

    The counter resumes from that record and only counts up, so this changes nothing while
    it answers; when it does not (hung, killed) and the counts at hand are older than the
    record (or none were read yet), a new record must not take the run's counts back.
    The learner's own step count is left alone: it belongs to the learner's checkpoint."""
    floor = dict((newest or {}).get("counts", {}))
    floor.pop("learner_steps", None)
    merged = dict(counts)
    for key, value in floor.items():
        merged[key] = max(merged.get(key, 0), value)
    return merged


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
        import tensorflow as tf

        self._checkpoint = tf.train.Checkpoint(**learner_state)
        self._manager = tf.train.CheckpointManager(
            # Two records (newest, previous) name two of these; the third is the one a
            # save is writing before its record replaces the newest.
            self._checkpoint,
            checkpoint_dir(workdir, "learner"),
            max_to_keep=3,
        )
        self.last_save_time = time.time()
        self._last_counts: dict = {}
        self._last_replay: tuple[str | None, dict] = (None, {})
        self._saved_learner_steps: int | None = None  # learner steps of the newest checkpoint

    def restore(self) -> bool:
        """Restores the newest complete checkpoint that reads back; False when there is none.

        The launcher has already chosen it (`prepare_resume`); the previous record is
        still tried here if the newest fails, so a damaged file never stops the learner.
        """
        for path in record_paths(self._workdir):
            record = load_record(path)
            if record is None:
                continue
            try:
                path = _readable_copy(record["learner"])
                self._checkpoint.restore(path).assert_existing_objects_matched()
            except Exception as error:  # noqa: BLE001 - any failure to read it back
                logging.error("cannot restore %s (%s); trying the previous", path, error)
                continue
            self._last_replay = (record.get("replay"), record.get("replay_items", {}))
            self._saved_learner_steps = self._current_learner_steps()
            logging.info("learner restored from %s", record["learner"])
            return True
        return False

    def save(self, include_replay: bool = True) -> dict | None:
        """Writes a checkpoint; returns what was written and how long each part took.

        A replay checkpoint that fails (the server is shutting down) is logged and the
        rest is still written; the record then keeps the previous replay checkpoint.
        A learner checkpoint or record that cannot be written (a full disk, a lost mount)
        is logged and None returned: the records still name the previous complete
        checkpoint, whose files are not touched, and training goes on (the next period
        tries again).
        """
        import tensorflow as tf

        try:
            return self._save(include_replay)
        except (OSError, tf.errors.OpError) as error:
            self.last_save_time = time.time()  # retry after a period, not at every step
            logging.error(
                "checkpoint failed (%s: %s); the previous complete checkpoint is kept: %s",
                type(error).__name__,
                error,
                load_record(counts_path(self._workdir)) and counts_path(self._workdir),
            )
            return None

    def _save(self, include_replay: bool) -> dict:
        started = time.time()
        counts = self._read_counts()
        if self._learner_steps is not None:  # the shared count lags by up to a second
            counts["learner_steps"] = self._learner_steps()
        replay_secs = 0.0
        with record_lock(self._workdir):
            counts = never_below(counts, load_record(counts_path(self._workdir)))
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
                    self._last_replay = (replay_path, replay_items)
                except Exception:  # noqa: BLE001 - keep the learner's checkpoint regardless
                    logging.exception("replay checkpoint failed; keeping the previous one")
            if self._replay is not None and storage.is_remote(self._workdir) and replay_path:
                # The replay server wrote it on its own disk; its node mirrors it here.
                replay_path = wait_for_mirror(self._workdir, replay_path)
            if self._replay is not None and (replay_path is None or not storage.isdir(replay_path)):
                replay_path = latest_replay_checkpoint(self._workdir)  # what Reverb kept
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
            write_record(self._workdir, record, keep_previous=True)
        self.last_save_time = time.time()
        self._saved_learner_steps = counts.get("learner_steps")
        logging.info("checkpoint written in %.2fs: %s", record["total_seconds"], learner_path)
        return record

    def _current_learner_steps(self) -> int | None:
        return None if self._learner_steps is None else int(self._learner_steps())

    def learner_unchanged(self) -> bool:
        """True when no update was applied since the newest checkpoint (or restore)."""
        steps = self._current_learner_steps()
        return steps is not None and steps == self._saved_learner_steps

    def save_counts(self) -> dict | None:
        """A record with the counter's latest counts naming the newest learner checkpoint,
        without touching the learner's variables: for a final checkpoint while an update
        (e.g. the first one, compiling) holds them and none was applied since that
        checkpoint. None when there is no checkpoint to name yet."""
        try:
            with record_lock(self._workdir):
                record = load_record(counts_path(self._workdir))
                if record is None:
                    return None
                counts = never_below(self._read_counts(), record)
                counts["learner_steps"] = int(record.get("counts", {}).get("learner_steps", 0))
                record = dict(record, counts=counts, time=time.time())
                if self._replay is not None:
                    record["replay"] = latest_replay_checkpoint(self._workdir) or record["replay"]
                write_record(self._workdir, record, keep_previous=True)
        except OSError as error:
            logging.error("counts record failed (%s); the previous one is kept", error)
            return None
        logging.info("counts recorded with the unchanged learner checkpoint %s", record["learner"])
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


def final_checkpoint(
    checkpointer: RunCheckpointer, update_lock, wait_secs: float = 5.0
) -> dict | None:
    """The learner node's last checkpoint when the program stops.

    An update holds `update_lock`; the first one compiles, which can take longer than the
    launcher's grace period on a loaded machine. If the lock is not free within
    `wait_secs` and no update was applied since the newest checkpoint, the latest counts
    are recorded with that (unchanged) checkpoint instead of waiting, so a stop during the
    first compile still keeps the actors' progress. Otherwise it waits for the update.
    """
    if update_lock.acquire(timeout=wait_secs):
        try:
            return checkpointer.save(include_replay=False)
        finally:
            update_lock.release()
    if checkpointer.learner_unchanged():
        logging.info("an update is still running and none was applied since the last checkpoint")
        return checkpointer.save_counts()
    with update_lock:
        return checkpointer.save(include_replay=False)
