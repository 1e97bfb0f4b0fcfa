"""Hung nodes (issue 31): the launcher of a local run notices a node that stopped making
progress, names it, kills it and handles it as a death (docs/reliability.md, "Hung nodes").

`Watchdog` looks at the launched program every few seconds from a thread of its own
(what it sees and how it asks: launch/local/node_probes.py), lets `HangRules` decide
which nodes are hung (the evidence and the rules: launch/local/hang_rules.py), and
SIGKILLs them, so the launcher's death path runs; `hang_bound` is how long it waits.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable

from absl import logging

from bprl.launch.local import node_probes
from bprl.launch.local.hang_rules import Hang, HangRules
from bprl.launch.local.node_probes import (
    PROBE_TIMEOUT_SECS,
    Observation,
    event_bytes,
    node_tree,
    sample_process,
)

HANG_FLOOR_SECS = 180.0  # the derived bound is never shorter than this
CHECKPOINT_FACTOR = 3.0  # ... nor shorter than this times the longest checkpoint so far


def longest_checkpoint_secs(workdir: str) -> float:
    """The longest checkpoint (learner + replay + record) of the run's two records."""
    from bprl.launch.rundir import checkpoint_record

    longest = 0.0
    for path in (
        checkpoint_record.counts_path(workdir),
        checkpoint_record.previous_counts_path(workdir),
    ):
        record = checkpoint_record.load_record(path) or {}
        try:
            longest = max(longest, float(record.get("total_seconds", 0.0)))
        except (TypeError, ValueError):
            continue
    return longest


def hang_bound(config, workdir: str) -> float:
    """Seconds without progress after which a node is hung; 0: not watched.

    `reliability.hang_timeout_secs` when positive; -1: off; 0 (the default): derived,
    max(180 s, 3 x the longest checkpoint of the run's records so far)."""
    value = float(config.reliability.hang_timeout_secs)
    if value > 0:
        return value
    if value < 0:
        return 0.0
    return max(HANG_FLOOR_SECS, CHECKPOINT_FACTOR * longest_checkpoint_secs(workdir))


def poll_interval(bound: float) -> float:
    """How often the watchdog looks: six times per bound, every 1 to 5 s."""
    return min(5.0, max(1.0, bound / 6.0))


def kill_tree(pid: int) -> None:
    """SIGKILL to `pid` and every descendant of it."""
    import psutil

    try:
        process = psutil.Process(pid)
        victims = [*process.children(recursive=True), process]
    except psutil.Error:
        return
    for victim in victims:
        try:
            victim.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass


class Watchdog:
    """Watches a launched local program from a daemon thread (a context manager around
    Launchpad's `manager.wait()`). A hung node is named on stderr and SIGKILLed, so
    Launchpad sees a dead worker and the launcher's death path runs (`hangs` says why);
    a hung actor worker is SIGKILLed alone: its actor node starts a new one."""

    def __init__(
        self,
        config,
        workdir: str,
        find_nodes: Callable[[], dict],
        expected: list[str],
        counter_address: str | None = None,
        replay_address: str | None = None,
        learner_address: str | None = None,
        event_dirs: dict[str, list[str]] | None = None,
        stopping: Callable[[], bool] = lambda: False,
        stream=None,
    ):
        self._config = config
        self._workdir = workdir
        self._find_nodes = find_nodes  # () -> {"group/i": psutil.Process}
        self._expected = list(expected)
        self._event_dirs = dict(event_dirs or {})
        self._stopping = stopping
        self._stream = stream
        self.bound = hang_bound(config, workdir)
        self._bound_checked = time.monotonic()
        self._rules = HangRules(
            self.bound,
            config.stop.max_actor_steps,
            config.stop.max_learner_steps,
            config.evaluators.every_actor_steps,
        )
        self.hangs: list[Hang] = []  # whole nodes declared hung and killed
        self.detected_at: float | None = None  # time.time() of that verdict
        self._probe_counter = node_probes.counter_probe(counter_address)
        self._probe_replay = node_probes.replay_probe(replay_address, node_probes.replay_state)
        self._probe_learner = node_probes.learner_probe(learner_address)
        self._probes = None  # a thread pool: the three probes at once (each <= 5 s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="liveness", daemon=True)

    def __enter__(self) -> Watchdog:
        if self.bound > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * PROBE_TIMEOUT_SECS + 5)
        if self._probes is not None:
            self._probes.shutdown(wait=False)

    def _loop(self) -> None:
        while not self._stop.wait(poll_interval(self.bound)):
            try:
                if self.poll():
                    return  # a node was killed: the death path takes over
            except Exception:  # noqa: BLE001 - watching must never break a run
                logging.exception("liveness watch failed; trying again")

    def _refresh_bound(self) -> None:
        """A derived bound grows with the checkpoints the run writes."""
        if float(self._config.reliability.hang_timeout_secs) != 0:
            return
        if time.monotonic() - self._bound_checked < 30:
            return
        self._bound_checked = time.monotonic()
        self.bound = max(self.bound, hang_bound(self._config, self._workdir))
        self._rules.bound = self.bound

    def observe(self) -> Observation | None:
        """One look at the program; None while a node is missing (it died: the death
        path is running) or the program is stopping."""
        if self._stopping():
            return None
        processes = self._find_nodes()
        if any(node not in processes for node in self._expected):
            return None
        samples = {}
        for node in self._expected:
            tree = [sample_process(p) for p in node_tree(processes[node])]
            if tree[0] is None:
                return None
            samples[node] = [s for s in tree if s is not None]
        if self._probes is None:
            from concurrent.futures import ThreadPoolExecutor

            self._probes = ThreadPoolExecutor(3, thread_name_prefix="liveness_probe")
        probes = [
            self._probes.submit(probe)
            for probe in (self._probe_counter, self._probe_replay, self._probe_learner)
        ]
        counts, replay, learner = (probe.result() for probe in probes)
        return Observation(
            time=time.monotonic(),
            processes=samples,
            counts=counts,
            replay=replay,
            learner=learner,
            event_bytes={node: event_bytes(dirs) for node, dirs in self._event_dirs.items()},
        )

    def poll(self) -> bool:
        """Looks once; True when it killed a whole node (the program is going down)."""
        self._refresh_bound()
        obs = self.observe()
        if obs is None or self._stopping():
            return False
        hangs = self._rules.update(obs)
        whole = [hang for hang in hangs if not hang.worker]
        for hang in hangs:
            if hang.worker:
                self._say(f"error: {hang.message()}; killing it: its actor node starts another")
                kill_tree(hang.pid)
                self._rules.forget(hang.node)
        if not whole:
            return False
        self.hangs = whole
        self.detected_at = time.time()
        for hang in whole:
            self._say(f"error: {hang.message()}; killing it")
        nodes = self._find_nodes()
        for hang in whole:
            process = nodes.get(hang.node)
            if process is not None:
                kill_tree(process.pid)
        return True

    def _say(self, line: str) -> None:
        stream = self._stream or sys.stderr
        print(line, file=stream, flush=True)
