"""The one metrics logger: an Acme `Logger` that writes TensorBoard event files."""

from __future__ import annotations

import numbers
import os
import time

import numpy as np
import tensorflow as tf
from acme.utils import loggers


class TensorBoardLogger(loggers.Logger):
    """Writes every numeric scalar it is given as a TensorBoard summary.

    The x-axis is `data[step_key]` when present (e.g. the shared `actor_steps`, so curves
    of different nodes line up), else the number of writes so far. Every write also
    records `process_cpu_seconds` (CPU time of the writing process so far), from which the
    CPU split between learner and actors is read (benchmarks/throughput.py).
    """

    def __init__(self, logdir: str, step_key: str | None = None, flush_secs: float = 5.0):
        os.makedirs(logdir, exist_ok=True)
        self._writer = tf.summary.create_file_writer(
            logdir, flush_millis=int(flush_secs * 1000), max_queue=1000
        )
        self._step_key = step_key
        self._num_writes = 0
        self.logdir = logdir

    def write(self, data: loggers.LoggingData) -> None:
        self._num_writes += 1
        step = self._num_writes
        if self._step_key is not None and self._step_key in data:
            step = int(data[self._step_key])
        with self._writer.as_default():
            tf.summary.scalar("process_cpu_seconds", time.process_time(), step=step)
            for key, value in data.items():
                value = np.asarray(value)
                if value.ndim == 0 and isinstance(value.item(), numbers.Number):
                    tf.summary.scalar(key, float(value), step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()
