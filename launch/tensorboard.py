"""The one metrics logger (an Acme `Logger` writing TensorBoard event files), and the
custom-scalars layout a run's TensorBoard opens with."""

from __future__ import annotations

import numbers
import os
import time
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
from acme.utils import loggers

from launch import events

if TYPE_CHECKING:
    from tensorboard.plugins.custom_scalar import layout_pb2


class TensorBoardLogger(loggers.Logger):
    """Writes every numeric scalar it is given as a TensorBoard summary.

    Each short name is written under its grouped tag (`launch.events.TAGS`; one not listed
    goes under `group/`). The x-axis is `data[step_key]` when present (every node passes
    the shared `actor_steps`, so all curves of a run line up), else the number of writes
    so far. Every write also records `process_cpu_seconds` (CPU time of the writing
    process so far; `cpu_seconds=False` leaves it out, as all but the first stream of a
    packed actor process do), from which the CPU split between learner and actors is read
    (benchmarks/throughput.py).
    """

    def __init__(
        self,
        logdir: str,
        group: str,
        step_key: str | None = "actor_steps",
        flush_secs: float = 5.0,
        cpu_seconds: bool = True,
    ):
        os.makedirs(logdir, exist_ok=True)
        self._writer = tf.summary.create_file_writer(
            logdir, flush_millis=int(flush_secs * 1000), max_queue=1000
        )
        self._step_key = step_key
        self._group = group
        self._cpu_seconds = cpu_seconds
        self._num_writes = 0
        self.logdir = logdir

    def write(self, data: loggers.LoggingData) -> None:
        self._num_writes += 1
        step = self._num_writes
        if self._step_key is not None and self._step_key in data:
            step = int(data[self._step_key])
        with self._writer.as_default():
            if self._cpu_seconds:
                tf.summary.scalar(
                    events.tag_for("process_cpu_seconds", self._group), time.process_time(), step
                )
            for key, value in data.items():
                value = np.asarray(value)
                if value.ndim == 0 and isinstance(value.item(), numbers.Number):
                    tf.summary.scalar(events.tag_for(key, self._group), float(value), step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()


def layout() -> layout_pb2.Layout:
    """The custom-scalars dashboard of a run: the method at a glance, then the details.

    Charts match tags by regular expression in every run (node directory) of the logdir:
    with a sweep's root as logdir, each chart holds every seed's curves.
    """
    from tensorboard.plugins.custom_scalar import layout_pb2

    def chart(title: str, *regexes: str) -> layout_pb2.Chart:
        return layout_pb2.Chart(
            title=title, multiline=layout_pb2.MultilineChartContent(tag=list(regexes))
        )

    return layout_pb2.Layout(
        category=[
            layout_pb2.Category(
                title="behavior prior at a glance (x: actor steps)",
                chart=[
                    chart(
                        "evaluation return: policy and prior alone",
                        r"^eval/(policy|prior)_return$",
                    ),
                    chart("KL(policy || prior)", r"^kl/"),
                    chart("training episode return (actors)", r"^actor/episode_return$"),
                ],
            ),
            layout_pb2.Category(
                title="learner (x: actor steps)",
                chart=[
                    chart("critic loss", r"^loss/critic$"),
                    chart("policy loss", r"^loss/policy$"),
                    chart("prior loss", r"^loss/prior$"),
                    chart("learner steps", r"^counts/learner_steps$"),
                    chart("steps per second", r"^(actor|learner)/steps_per_second$"),
                    chart("program restarts and learner steps lost (launcher)", r"^reliability/"),
                ],
            ),
        ]
    )


def write_layout(workdir: str) -> str | None:
    """Writes the custom-scalars layout into `workdir`'s own event file, once per run
    (a resumed run keeps its first); returns the directory written, or None."""
    if any(name.startswith("events.out.tfevents") for name in tf.io.gfile.listdir(workdir)):
        return None
    from tensorboard.plugins.custom_scalar import summary as custom_scalar_summary

    writer = tf.summary.create_file_writer(workdir)
    with writer.as_default():
        proto = custom_scalar_summary.pb(layout())
        tf.summary.experimental.write_raw_pb(proto.SerializeToString(), step=0)
    writer.close()
    return workdir
