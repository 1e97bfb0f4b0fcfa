"""The replay checkpoints of a run directory on object storage (gs://).

Reverb writes its checkpoints to a staging folder on the replay's own disk; the replay
node mirrors each complete one into the run directory, and copies the one a resumed run
starts from back before the server starts. A local run directory needs none of this:
Reverb writes there directly.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time

from absl import logging

from bprl.launch.rundir import storage
from bprl.launch.rundir.checkpoint_record import (
    checkpoint_dir,
    latest_complete,
    load_record,
    record_paths,
)


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
        for path in record_paths(self.workdir):
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
