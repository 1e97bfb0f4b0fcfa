"""A compact live progress line for a run, read from its TensorBoard event files.

The launching process cannot see inside the nodes, but every node writes event files
under the run directory: actors (`actors/<i>`), the learner (`learner`) and the
evaluators (`evaluator_<i>`, `policy_return` / `prior_return`), all against actor steps,
each write with the counter's `actor_steps` and `learner_steps` (names as in
launch/rundir/events.py; in runs written before the tags were grouped, the learner's x-axis is
learner steps). `RunProgress` re-reads them incrementally; `ProgressPrinter` prints its
line from a background thread: rewritten in place with '\\r' on a terminal, one line every
~10 s otherwise (log files, CI).
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from bprl.launch.rundir import events, layout

# Keep only the newest value of each tag: the progress line needs nothing else.
_SIZE_GUIDANCE = {event_accumulator.TENSORS: 1, event_accumulator.SCALARS: 1}


def _has_events(path: str) -> bool:
    try:
        return any(name.startswith("events.out.tfevents") for name in os.listdir(path))
    except OSError:
        return False


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class _LastValues:
    """Newest (step, value) of every scalar of one event-file directory, by short name."""

    def __init__(self, path: str):
        self._path = path
        self._accumulator = event_accumulator.EventAccumulator(path, size_guidance=_SIZE_GUIDANCE)
        self._files = self._signature()
        self.grouped = False  # tags grouped by prefix: a run whose x-axis is actor steps

    def _signature(self) -> dict[str, int]:
        """Inode of each event file: object storage (a rehearsal's emulated bucket) replaces
        a file whole at every flush, which an open reader would never see."""
        found = {}
        for name in os.listdir(self._path):
            if name.startswith("events.out.tfevents"):
                try:
                    found[name] = os.stat(os.path.join(self._path, name)).st_ino
                except OSError:
                    continue
        return found

    def read(self) -> dict[str, tuple[int, float]]:
        files = self._signature()
        if any(self._files.get(name, ino) != ino for name, ino in files.items()):
            self._accumulator = event_accumulator.EventAccumulator(
                self._path, size_guidance=_SIZE_GUIDANCE
            )
        self._files = files
        self._accumulator.Reload()  # incremental: only new events are read
        tags = self._accumulator.Tags()
        last: dict[str, tuple[int, float]] = {}
        for tag in tags.get(event_accumulator.TENSORS, []):
            event = self._accumulator.Tensors(tag)[-1]
            value = np.asarray(tensor_util.make_ndarray(event.tensor_proto))
            last[events.name_for(tag)] = (int(event.step), float(value))
        for tag in tags.get(event_accumulator.SCALARS, []):
            event = self._accumulator.Scalars(tag)[-1]
            last[events.name_for(tag)] = (int(event.step), float(event.value))
        self.grouped = self.grouped or any(events.name_for(tag) != tag for tag in _all(tags))
        return last


def _all(tags: dict) -> list[str]:
    return [*tags.get(event_accumulator.TENSORS, []), *tags.get(event_accumulator.SCALARS, [])]


class RunProgress:
    """Where one run stands, from the event files under its run directory."""

    def __init__(
        self,
        workdir: str,
        max_actor_steps: int = 0,
        max_learner_steps: int = 0,
        label: str = "",
        rate_window_secs: float = 60.0,
    ):
        self.workdir = workdir
        self.max_actor_steps = int(max_actor_steps or 0)
        self.max_learner_steps = int(max_learner_steps or 0)
        self.label = label
        self.start_time = time.monotonic()
        self.actor_steps = 0
        self.learner_steps = 0
        self.policy_return: float | None = None
        self.prior_return: float | None = None
        self._readers: dict[str, _LastValues] = {}
        self._rate_window_secs = rate_window_secs
        self._history: collections.deque[tuple[float, int]] = collections.deque()

    def _event_dirs(self) -> list[str]:
        dirs = [layout.learner_dir(self.workdir)]
        actors = os.path.join(self.workdir, "actors")
        if os.path.isdir(actors):
            dirs += [os.path.join(actors, name) for name in sorted(os.listdir(actors))]
        if os.path.isdir(self.workdir):
            dirs += [
                os.path.join(self.workdir, name)
                for name in sorted(os.listdir(self.workdir))
                if name.startswith("evaluator_")
            ]
        return [d for d in dirs if _has_events(d)]

    def poll(self) -> RunProgress:
        """Reads what was written since the last poll; returns self."""
        actor_steps, learner_steps = self.actor_steps, self.learner_steps
        eval_step = -1
        for path in self._event_dirs():
            reader = self._readers.setdefault(path, _LastValues(path))
            try:
                last = reader.read()
            except Exception:  # noqa: BLE001 - a half-written file: try again next poll
                continue
            name = os.path.basename(path)
            for tag, (step, value) in last.items():
                if tag == "actor_steps":
                    actor_steps = max(actor_steps, int(value))
                elif tag == "learner_steps":
                    learner_steps = max(learner_steps, int(value))
                if name == "learner" and not reader.grouped:  # an old run's learner
                    learner_steps = max(learner_steps, step)
                else:  # every node of a new run, actors and evaluators of old ones
                    actor_steps = max(actor_steps, step)
            if name.startswith("evaluator_") and "policy_return" in last:
                step = last["policy_return"][0]
                if step >= eval_step:
                    eval_step = step
                    self.policy_return = last["policy_return"][1]
                    self.prior_return = last.get("prior_return", (step, None))[1]
        self.actor_steps, self.learner_steps = actor_steps, learner_steps
        now = time.monotonic()
        self._history.append((now, actor_steps))
        while len(self._history) > 2 and now - self._history[1][0] >= self._rate_window_secs:
            self._history.popleft()
        return self

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start_time

    @property
    def steps_per_second(self) -> float:
        """Actor steps per second over the last minute or so (0 until two polls differ)."""
        if len(self._history) < 2:
            return 0.0
        (t0, s0), (t1, s1) = self._history[0], self._history[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0

    def remaining_seconds(self) -> float | None:
        rate = self.steps_per_second
        if self.max_actor_steps and rate > 0:
            return max(0, self.max_actor_steps - self.actor_steps) / rate
        return None

    def line(self) -> str:
        parts = []
        if self.label:
            parts.append(self.label)
        actor = f"actor {self.actor_steps:,}"
        if self.max_actor_steps:
            share = min(1.0, self.actor_steps / self.max_actor_steps)
            actor += f"/{self.max_actor_steps:,} ({share:.0%})"
        parts.append(actor)
        learner = f"learner {self.learner_steps:,}"
        if self.max_learner_steps:
            learner += f"/{self.max_learner_steps:,}"
        parts.append(learner)
        if self.policy_return is None:
            parts.append("eval -")
        else:
            prior = "-" if self.prior_return is None else f"{self.prior_return:.1f}"
            parts.append(f"eval policy {self.policy_return:.1f} prior {prior}")
        parts.append(f"{self.steps_per_second:,.0f} steps/s")
        timing = f"{format_duration(self.elapsed)} elapsed"
        remaining = self.remaining_seconds()
        if remaining is not None:
            timing += f", ~{format_duration(remaining)} left"
        parts.append(timing)
        return " | ".join(parts)


class ProgressPrinter:
    """Prints `render()` from a daemon thread until stopped (use as a context manager)."""

    def __init__(
        self,
        render: Callable[[], str],
        stream: TextIO | None = None,
        tty_interval: float = 1.0,
        plain_interval: float = 10.0,
    ):
        self._render = render
        self._stream = stream or sys.stdout
        self._tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self._interval = tty_interval if self._tty else plain_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._width = 0

    def _emit(self, final: bool = False) -> None:
        try:
            text = self._render()
        except Exception as error:  # noqa: BLE001 - progress must never break a run
            text = f"(progress unavailable: {error})"
        if self._tty:
            pad = " " * max(0, self._width - len(text))
            self._width = len(text)
            self._stream.write("\r" + text + pad + ("\n" if final else ""))
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._emit()

    def __enter__(self) -> ProgressPrinter:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._emit(final=True)


def run_progress(config, workdir: str, label: str = "") -> ProgressPrinter:
    """The progress printer of one run of `config` logging under `workdir`."""
    progress = RunProgress(
        workdir,
        max_actor_steps=config.stop.max_actor_steps,
        max_learner_steps=config.stop.max_learner_steps,
        label=label,
    )
    return ProgressPrinter(lambda: progress.poll().line())
