"""Run by tests/test_self_healing.py in a subprocess whose checkpoint directory fills up.

argv: WORKDIR MODE. MODE "tmpfs": WORKDIR is a 16 MB tmpfs (a private mount namespace),
filled with a ballast file after the first checkpoint, so the second fails with ENOSPC.
MODE "fsize": a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) lets the first, small
checkpoint through and makes the second's larger data file fail partway with EFBIG: the
same fault (a write failing in the middle of a checkpoint) where mounts are not allowed.
Prints one JSON line with what it saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import sys

import numpy as np
import tensorflow as tf

from bprl.launch.rundir import checkpoint_record, checkpointing, resume


def digest(paths: list[str]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def files_of(prefix: str) -> list[str]:
    folder = os.path.dirname(prefix)
    base = os.path.basename(prefix)
    return [os.path.join(folder, n) for n in os.listdir(folder) if n.startswith(base + ".")]


def main() -> None:
    workdir, mode = sys.argv[1], sys.argv[2]
    small = np.full([1000], 1.0, np.float32)  # 4 KB
    # One checkpointer, as in a learner node; `w` grows (shape [None]) so that the second
    # checkpoint needs more room than is left.
    state = {
        "w": tf.Variable(small, shape=tf.TensorShape([None])),
        "step": tf.Variable(1, dtype=tf.int64),
    }
    checkpointer = checkpointing.RunCheckpointer(workdir, state, counter=None)
    first = checkpointer.save()
    before = digest(files_of(first["learner"]))
    if mode == "tmpfs":
        ballast = os.path.join(workdir, "ballast")
        with open(ballast, "wb") as f:  # fill the disk
            try:
                while True:
                    f.write(b"\0" * (1 << 16))
                    f.flush()
            except OSError:
                pass
    else:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
    # A checkpoint too big for what is left (4 MB of weights).
    state["w"].assign(np.full([1_000_000], 2.0, np.float32))
    state["step"].assign(2)
    failed = checkpointer.save()
    record = checkpoint_record.load_record(checkpoint_record.counts_path(workdir))
    after = digest(files_of(first["learner"]))
    check = resume.check_record(record)
    restored = {
        "w": tf.Variable(np.zeros([1], np.float32), shape=tf.TensorShape([None])),
        "step": tf.Variable(0, dtype=tf.int64),
    }
    restored_ok = checkpointing.RunCheckpointer(workdir, restored, counter=None).restore()
    if mode == "tmpfs":
        os.remove(ballast)
    else:
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    again = checkpointer.save()  # space is back: checkpoints resume
    print(
        json.dumps(
            {
                "failed_save": failed,
                "record_learner": record["learner"],
                "first_learner": first["learner"],
                "first_files_unchanged": before == after,
                "record_check": check,
                "restored": restored_ok,
                "restored_w": restored["w"].numpy().tolist(),
                "restored_step": int(restored["step"].numpy()),
                "again": again is not None
                and resume.check_record(
                    checkpoint_record.load_record(checkpoint_record.counts_path(workdir))
                )
                is None,
            }
        )
    )


if __name__ == "__main__":
    main()
