"""The one metrics logger (an Acme `Logger` writing TensorBoard event files), and the
custom-scalars layout a run's TensorBoard opens with."""

from __future__ import annotations

import itertools
import numbers
import os
import socket
import time
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
from acme.utils import loggers

from bprl.launch.rundir import events

_FILE_NUMBERS = itertools.count()  # event files this process opened
REMOTE_FLUSH_SECS = 30.0  # the shortest flush period of an event file on object storage

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
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        # TensorBoard's event records with the protos `tf.summary.scalar` writes (a float32
        # scalar tensor of the `scalars` plugin): the same files, much cheaper per write
        # than TensorFlow's eager summary ops, which cost the learner a noticeable share of
        # its time at small sizes (figures: docs/results.md, issue 18). Written in the
        # caller's thread (no writer thread left running when a node's process ends), to
        # tf.io.gfile (local paths and gs://), flushed at a write `flush_secs` after the
        # last flush, at every write when flush_secs <= 0 (actor workers: a worker is
        # terminated, or killed, at any time), and by flush() and close().
        tf.io.gfile.makedirs(logdir)
        if "://" in str(logdir):
            # Object storage re-uploads the whole object at every flush: flushing each
            # write would make the upload volume grow with the square of the file's
            # length and hit the per-object update rate. Flush at most every 30 s there.
            flush_secs = max(flush_secs, REMOTE_FLUSH_SECS)
        host, number = socket.gethostname(), next(_FILE_NUMBERS)
        name = f"events.out.tfevents.{int(time.time()):010d}.{host}.{os.getpid()}.{number}.v2"
        remote = "://" in str(logdir)
        path = f"{str(logdir).rstrip('/')}/{name}" if remote else os.path.join(logdir, name)
        self._writer = RecordWriter(tf.io.gfile.GFile(path, "wb"))
        self._flush_secs = flush_secs
        self._closed = False
        self._writer.write(
            event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()
        )
        self.flush()
        self._tagged: set[str] = set()  # tags written once with their plugin metadata
        self._step_key = step_key
        self._group = group
        self._cpu_seconds = cpu_seconds
        self._num_writes = 0
        self.logdir = logdir

    def write(self, data: loggers.LoggingData) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        self._num_writes += 1
        step = self._num_writes
        if self._step_key is not None and self._step_key in data:
            step = int(data[self._step_key])
        scalars = {}
        if self._cpu_seconds:
            scalars["process_cpu_seconds"] = time.process_time()
        for key, value in data.items():
            value = np.asarray(value)
            if value.ndim == 0 and isinstance(value.item(), numbers.Number):
                scalars[key] = float(value)
        values = [self._value(events.tag_for(k, self._group), v) for k, v in scalars.items()]
        event = event_pb2.Event(
            wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=values)
        )
        self._writer.write(event.SerializeToString())
        if time.monotonic() - self._last_flush >= self._flush_secs:
            self.flush()

    def _value(self, tag: str, value: float):
        from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2

        tensor = tensor_pb2.TensorProto(
            dtype=1,  # DT_FLOAT
            tensor_shape=tensor_shape_pb2.TensorShapeProto(),
            float_val=[value],
        )
        if tag in self._tagged:
            return summary_pb2.Summary.Value(tag=tag, tensor=tensor)
        self._tagged.add(tag)
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        )
        return summary_pb2.Summary.Value(tag=tag, metadata=metadata, tensor=tensor)

    def flush(self) -> None:
        self._writer.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if not self._closed:
            self.flush()
            self._writer.close()
            self._closed = True


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
