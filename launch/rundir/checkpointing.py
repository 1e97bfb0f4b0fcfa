"""Run checkpoints: learner state, shared counts and the Reverb replay, in the run directory.

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
at shutdown, updates the newest record (both under a lock on `.record.lock`). The learner
keeps its last 3 checkpoints: the two records name at most two, a third is being written.

A resumed run restores all three: learner steps and counters continue from the
checkpoint, so TensorBoard curves continue instead of restarting at zero.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable

from absl import logging
from acme.utils import counting

from bprl.launch.rundir import storage

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
    if storage.is_remote(workdir):
        return storage.join(workdir, "checkpoints", part)
    return os.path.join(workdir, "checkpoints", part)


def counts_path(workdir: str) -> str:
    return storage.join(checkpoint_dir(workdir), "counts.json")


def previous_counts_path(workdir: str) -> str:
    return storage.join(checkpoint_dir(workdir), "counts.previous.json")


class CheckpointError(RuntimeError):
    """No checkpoint record of a run can be read back."""


def load_record(path: str) -> dict | None:
    """A checkpoint record, or None when the file is missing or unreadable."""
    try:
        record = storage.read_json(path)
        return record if isinstance(record, dict) and "learner" in record else None
    except (OSError, ValueError):
        return None


def load_counts(workdir: str) -> dict:
    """The counts of the last complete checkpoint, or {} for a fresh run."""
    for path in (counts_path(workdir), previous_counts_path(workdir)):
        record = load_record(path)
        if record is not None:
            return dict(record.get("counts", {}))
    return {}


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


def replay_staging_dir(workdir: str) -> str:
    """Where the Reverb server writes its checkpoints: the run's own `checkpoints/replay/`
    on a local disk. On object storage, a folder on the replay's machine instead, whose
    complete checkpoints the replay node mirrors into the run directory (`ReplayMirror`):
    Reverb's checkpointer writes through TensorFlow's C++ files, which the modular GCS
    filesystem does not upload (checked against a GCS emulator: only DONE arrived)."""
    if not storage.is_remote(workdir):
        return checkpoint_dir(workdir, "replay")
    digest = hashlib.sha1(str(workdir).encode()).hexdigest()[:12]
    return os.path.join("/tmp", "bprl_replay", digest)


def wait_for_mirror(workdir: str, local_path: str, timeout: float = 120.0) -> str | None:
    """The run directory's copy of replay checkpoint `local_path` once it is complete (its
    DONE file is copied last); None if it does not arrive within `timeout`."""
    remote = storage.join(checkpoint_dir(workdir, "replay"), os.path.basename(local_path))
    deadline = time.time() + timeout
    while time.time() < deadline:
        if storage.exists(storage.join(remote, "DONE")):
            return remote
        time.sleep(0.5)
    logging.warning("replay checkpoint %s did not reach %s in %.0fs", local_path, remote, timeout)
    return None


class ReplayMirror:
    """Keeps the run directory's replay checkpoints in step with the replay machine's own.

    `restore` (before the server starts) copies the checkpoint the newest record names,
    or else the newest complete one, into the staging folder, which Reverb then loads;
    `start` uploads each new complete checkpoint (DONE last) every `period` seconds and
    keeps the newest `keep`; `stop` uploads what is left.
    """

    def __init__(self, workdir: str, period: float = 1.0, keep: int = 3):
        self.workdir = workdir
        self.staging = replay_staging_dir(workdir)
        self.remote = checkpoint_dir(workdir, "replay")
        self._period = period
        self._keep = keep
        self._uploaded: set[str] = set(storage.listdir(self.remote))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def restore(self) -> str | None:
        shutil.rmtree(self.staging, ignore_errors=True)
        os.makedirs(self.staging, exist_ok=True)
        chosen = None
        for path in (counts_path(self.workdir), previous_counts_path(self.workdir)):
            record = load_record(path)
            named = record and record.get("replay")
            if named and storage.exists(storage.join(named, "DONE")):
                chosen = named
                break
        chosen = chosen or latest_complete(self.remote)
        if chosen:
            storage.copy_tree(chosen, os.path.join(self.staging, storage.basename(chosen)), "DONE")
            logging.info("replay checkpoint %s copied to %s", chosen, self.staging)
        return chosen

    def sync(self) -> list[str]:
        """Uploads the complete local checkpoints not uploaded yet; returns their names."""
        with self._lock:
            done = []
            for name in sorted(os.listdir(self.staging)) if os.path.isdir(self.staging) else []:
                local = os.path.join(self.staging, name)
                if name in self._uploaded or not os.path.exists(os.path.join(local, "DONE")):
                    continue
                try:
                    storage.copy_tree(local, storage.join(self.remote, name), last="DONE")
                except Exception:  # noqa: BLE001 - Reverb may delete it meanwhile: next time
                    logging.exception("mirroring replay checkpoint %s failed", local)
                    continue
                self._uploaded.add(name)
                done.append(name)
            if done:
                for old in sorted(self._uploaded)[: -self._keep]:
                    storage.remove_tree(storage.join(self.remote, old))
                    self._uploaded.discard(old)
            return done

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self._period):
                self.sync()

        self._thread = threading.Thread(target=loop, name="replay-mirror", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.sync()


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


def prepare_resume(workdir: str) -> dict | None:
    """Chooses the checkpoint a resumed run starts from; returns its record (None: there is
    none, start from scratch).

    The newest record whose learner and replay checkpoints read back wins. A damaged
    newest one is reported and set aside (`counts.damaged.json`), and the previous record
    takes its place, so the counter, the learner and the replay all start from it.
    Raises CheckpointError, saying what to delete, when records exist but none is usable.
    """
    paths = [counts_path(workdir), previous_counts_path(workdir)]
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
        for path in (counts_path(self._workdir), previous_counts_path(self._workdir)):
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
                counts = self._read_counts()
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
