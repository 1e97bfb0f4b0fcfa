"""Hung nodes (issue 31): the launcher of a local run notices a node that stopped making
progress, names it, kills it and handles it as a death (docs/reliability.md, "Hung nodes").

The launcher cannot see inside the nodes, so it watches them from outside, every few
seconds (`Watchdog`), and decides with `HangRules`, from three kinds of evidence:
- each node's processes (psutil): state, CPU time, storage bytes read and written;
- each node's progress: learner steps (the counter's counts), the event files of each
  actor process's streams and of each evaluator, and whether the counter, the replay
  and the learner answer the launcher's own probes (`get_counts`, Reverb's
  `server_info`, an empty `get_variables`; at once, 5 s timeouts);
- whether a node's work is possible now, from the replay's rate limiter (samples per
  insert: with diff = inserts * spi - samples, an insert waits while diff + spi >
  max_diff, i.e. until the learner samples; a sample waits while diff - 1 < min_diff).

A node is hung when one of these has held, at every poll, for the bound:
- frozen: one of its processes (the node's own, or an actor node's worker) is in state
  `stopped` or `tracing-stop` (SIGSTOP, a debugger) and its CPU time does not move. Such a
  process runs nothing at all, however slow the machine.
- idle while its work is possible: the node made no progress, its processes used less
  than 2% of one core and read or wrote nothing, and what it waits on can serve it:
  * learner: its step count is flat while the replay blocks the actors' inserts (the
    rate limiter waits for samples) and serves no sample, the replay being idle too
    (no checkpoint in progress); or flat while its process does not answer the
    variables request (served by a Courier thread of its own) and the counter and the
    replay do;
  * actor process: its streams' event files are flat while the replay accepts inserts
    and writes nothing (no checkpoint), the learner has stepped since the start and
    answers, and the counter answers;
  * evaluator: its event file is flat while an evaluation is due (the counter's actor
    steps are past its last one by `evaluators.every_actor_steps`), the learner has
    stepped since the start and answers, and the counter answers;
  * counter, replay: no answer to any probe, no event file of the run grows, and the
    node is idle;
  * stopper: the budget is reached by the counter's counts and the program goes on.

Frozen processes are blamed alone; while any process is stopped the second rule names
no one (those waiting on it look idle); otherwise the node the others wait on is blamed.
A slow but live node is therefore never hung: a first XLA compile, a checkpoint, a load
at start, a machine loaded so that a node gets a fraction of a core, all use CPU or I/O;
a learner or actor waiting on the rate limiter, or for the replay's `min_size`, waits on
something that cannot serve it; the bound only sets how long the evidence must hold.
Not detected: a node that spins (uses CPU) without progress; an actor process hung while
the replay blocks inserts (a learner-bound run) unless it is frozen.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from absl import logging

HANG_FLOOR_SECS = 180.0  # the derived bound is never shorter than this
CHECKPOINT_FACTOR = 3.0  # ... nor shorter than this times the longest checkpoint so far
IDLE_CPU_FRACTION = 0.02  # a node below this share of one core over a poll is idle
PROBE_TIMEOUT_SECS = 5
FROZEN_STATES = frozenset({"stopped", "tracing-stop"})
# Groups in the order a hang is blamed on: nodes that others wait on first.
_BLAME_ORDER = ("counter", "replay", "learner", "actor", "evaluator", "stopper")


def longest_checkpoint_secs(workdir: str) -> float:
    """The longest checkpoint (learner + replay + record) of the run's two records."""
    from bprl.launch.rundir import checkpointing

    longest = 0.0
    for path in (checkpointing.counts_path(workdir), checkpointing.previous_counts_path(workdir)):
        record = checkpointing.load_record(path) or {}
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


@dataclasses.dataclass(frozen=True)
class ProcessSample:
    pid: int
    status: str  # psutil's: "running", "sleeping", "disk-sleep", "stopped", ...
    cpu: float  # user + system seconds so far
    io: int  # storage bytes read + written so far


@dataclasses.dataclass(frozen=True)
class ReplayState:
    """The replay table's size and rate limiter, from Reverb's `server_info`."""

    size: int
    inserts: int
    samples: int
    samples_per_insert: float
    min_diff: float
    max_diff: float
    min_size: int

    @property
    def inserts_blocked(self) -> bool:
        """An insert waits now: the rate limiter waits for samples (Reverb's CanInsert)."""
        if self.size + 1 <= self.min_size:
            return False
        diff = (self.inserts + 1) * self.samples_per_insert - self.samples
        return diff > self.max_diff

    @classmethod
    def from_table_info(cls, info) -> ReplayState:
        limiter = info.rate_limiter_info
        return cls(
            size=int(info.current_size),
            inserts=int(limiter.insert_stats.completed),
            samples=int(limiter.sample_stats.completed),
            samples_per_insert=float(limiter.samples_per_insert),
            min_diff=float(limiter.min_diff),
            max_diff=float(limiter.max_diff),
            min_size=int(limiter.min_size_to_sample),
        )


@dataclasses.dataclass
class Observation:
    """What the watchdog saw at one poll."""

    time: float
    processes: dict[str, list[ProcessSample]]  # node -> its processes, its own first
    counts: dict | None = None  # the counter's answer; None: no answer
    replay: ReplayState | None = None  # None: no answer
    learner: bool | None = None  # the learner answered a variables request; None: not asked
    event_bytes: dict[str, int] = dataclasses.field(default_factory=dict)  # node -> bytes


@dataclasses.dataclass(frozen=True)
class Hang:
    node: str  # "learner/0"
    seconds: float  # how long the evidence held
    state: str  # the state of the process blamed
    pid: int  # that process
    worker: bool  # the process is an actor node's worker, not the node itself

    def message(self) -> str:
        where = f"{self.state}, its worker process {self.pid}" if self.worker else self.state
        return f"{self.node} made no progress for {self.seconds:.0f} s (state: {where})"


class _Since:
    """When a condition became continuously true; None while it is false."""

    __slots__ = ("time",)

    def __init__(self) -> None:
        self.time: float | None = None

    def update(self, holds: bool, now: float) -> None:
        if not holds:
            self.time = None
        elif self.time is None:
            self.time = now


class HangRules:
    """The decision, fed one `Observation` per poll; `update` returns the hung nodes."""

    def __init__(
        self,
        bound: float,
        max_actor_steps: int = 0,
        max_learner_steps: int = 0,
        every_actor_steps: int = 0,
    ):
        self.bound = float(bound)
        self._max_actor_steps = int(max_actor_steps or 0)
        self._max_learner_steps = int(max_learner_steps or 0)
        self._every_actor_steps = int(every_actor_steps or 0)
        self._since: dict[tuple, _Since] = collections.defaultdict(_Since)
        self._previous: Observation | None = None
        self._last_counts: dict | None = None
        self._first_learner_steps: int | None = None
        self._learner_up = False  # the learner has stepped since the watch began
        self._eval_due: dict[str, int] = {}  # evaluator -> actor steps its next one is due

    def forget(self, node: str) -> None:
        """Starts `node`'s evidence over (its worker was replaced)."""
        for key in [key for key in self._since if key[1] == node]:
            del self._since[key]

    def _hold(self, key: tuple, holds: bool, now: float) -> None:
        self._since[key].update(holds, now)

    def _held(self, now: float, *keys: tuple) -> float | None:
        """How long all of `keys` have held, when that is at least the bound."""
        starts = [self._since[key].time for key in keys]
        if any(start is None for start in starts):
            return None
        seconds = now - max(starts)
        return seconds if seconds >= self.bound else None

    def _idle(self, node: str, obs: Observation) -> bool:
        """The node's processes used < 2% of a core and no storage I/O since the last poll
        (a process that appeared or went away is activity: a worker restarted)."""
        previous = self._previous
        if previous is None or node not in previous.processes:
            return False
        before = {p.pid: p for p in previous.processes[node]}
        now = {p.pid: p for p in obs.processes.get(node, [])}
        if set(before) != set(now) or not now:
            return False
        dt = max(obs.time - previous.time, 1e-6)
        cpu = sum(now[pid].cpu - before[pid].cpu for pid in now)
        io = sum(now[pid].io - before[pid].io for pid in now)
        return cpu < IDLE_CPU_FRACTION * dt and io == 0

    def update(self, obs: Observation) -> list[Hang]:
        now = obs.time
        previous = self._previous
        counts = obs.counts
        if counts is not None:
            learner_steps = int(counts.get("learner_steps", 0))
            if self._first_learner_steps is None:
                self._first_learner_steps = learner_steps
            elif learner_steps > self._first_learner_steps:
                self._learner_up = True
        last_counts = self._last_counts
        hangs: list[Hang] = []

        for node, processes in obs.processes.items():
            before = {}
            if previous is not None:
                before = {p.pid: p for p in previous.processes.get(node, [])}
            for process in processes:
                old = before.get(process.pid)
                # Stopped now, and not run since the last poll if it was stopped then
                # too (the CPU a process used before it was stopped shows up at the
                # first poll that sees it stopped).
                ran = old is not None and old.status in FROZEN_STATES and old.cpu != process.cpu
                frozen = process.status in FROZEN_STATES and not ran
                self._hold(("frozen", node, process.pid), frozen, now)
                seconds = self._held(now, ("frozen", node, process.pid))
                if seconds is not None:
                    worker = process.pid != processes[0].pid
                    hangs.append(Hang(node, seconds, process.status, process.pid, worker))
            self._hold(("idle", node), self._idle(node, obs), now)
        # Forget processes that went away.
        pids = {(node, p.pid) for node, ps in obs.processes.items() for p in ps}
        for key in [k for k in self._since if k[0] == "frozen" and (k[1], k[2]) not in pids]:
            del self._since[key]
        if hangs:  # frozen processes are certain: blame them alone
            self._finish(obs)
            return hangs
        # While a process is stopped, the nodes waiting on it look idle: the frozen rule
        # decides (within the bound), the others' evidence is kept but not acted on.
        stopped = any(p.status in FROZEN_STATES for ps in obs.processes.values() for p in ps)
        served = obs.learner is not False  # the learner serves its variables (or unknown)

        run_bytes = sum(obs.event_bytes.values())
        run_flat = previous is not None and run_bytes == sum(previous.event_bytes.values())
        replay, old_replay = obs.replay, previous.replay if previous else None
        replay_node = _first(obs.processes, "replay")
        for node in obs.processes:
            group = node.split("/")[0]
            flat_events = (
                previous is not None
                and node in obs.event_bytes
                and obs.event_bytes[node] == previous.event_bytes.get(node)
            )
            if group == "counter":
                self._hold(("silent", node), counts is None and run_flat, now)
                keys = [("silent", node), ("idle", node)]
            elif group == "replay":
                self._hold(("silent", node), replay is None and run_flat, now)
                keys = [("silent", node), ("idle", node)]
            elif group == "learner":
                flat = (
                    counts is not None
                    and last_counts is not None
                    and int(counts.get("learner_steps", 0))
                    == int(last_counts.get("learner_steps", 0))
                )
                waits = (
                    replay is not None
                    and old_replay is not None
                    and replay.inserts_blocked
                    and replay.samples == old_replay.samples
                )
                self._hold(("flat", node), flat, now)
                self._hold(("replay waits on", node), waits, now)
                # Or its process does not answer (its Courier server, which serves the
                # variables from a thread of its own) while the counter and replay do.
                silent = obs.learner is False and counts is not None and replay is not None
                self._hold(("silent", node), silent, now)
                keys = [("flat", node), ("replay waits on", node), ("idle", node)]
                if replay_node:
                    keys.append(("idle", replay_node))
                if self._held(now, *keys) is None:
                    keys = [("flat", node), ("silent", node), ("idle", node)]
            elif group == "actor":
                accepts = replay is not None and not replay.inserts_blocked
                quiet = replay_node is not None and self._replay_quiet(replay_node, obs)
                self._hold(("flat", node), flat_events, now)
                can = accepts and quiet and served and self._up(counts)
                self._hold(("can insert", node), can, now)
                keys = [("flat", node), ("can insert", node), ("idle", node)]
            elif group == "evaluator":
                if not flat_events and counts is not None:
                    steps = int(counts.get("actor_steps", 0))
                    self._eval_due[node] = steps + self._every_actor_steps
                elif not flat_events and last_counts is not None:
                    steps = int(last_counts.get("actor_steps", 0))
                    self._eval_due[node] = steps + self._every_actor_steps
                due = (
                    self._up(counts)
                    and served
                    and int(counts.get("actor_steps", 0)) >= self._eval_due.get(node, 0)
                    and previous is not None
                )
                self._hold(("flat", node), flat_events, now)
                self._hold(("due", node), due, now)
                keys = [("flat", node), ("due", node), ("idle", node)]
            elif group == "stopper":
                self._hold(("budget reached", node), self._budget_reached(counts), now)
                keys = [("budget reached", node), ("idle", node)]
            else:
                continue
            seconds = self._held(now, *keys)
            if seconds is not None:
                processes = obs.processes[node]
                blamed = processes[-1] if group == "actor" else processes[0]
                hangs.append(
                    Hang(node, seconds, blamed.status, blamed.pid, blamed.pid != processes[0].pid)
                )
        self._finish(obs)
        if not hangs or stopped:
            return []
        first = min(_BLAME_ORDER.index(h.node.split("/")[0]) for h in hangs)
        return [h for h in hangs if _BLAME_ORDER.index(h.node.split("/")[0]) == first]

    def _up(self, counts: dict | None) -> bool:
        return counts is not None and self._learner_up

    def _replay_quiet(self, replay_node: str, obs: Observation) -> bool:
        """The replay wrote and read nothing since the last poll (no checkpoint)."""
        previous = self._previous
        if previous is None or replay_node not in previous.processes:
            return False
        before = {p.pid: p.io for p in previous.processes[replay_node]}
        now = {p.pid: p.io for p in obs.processes.get(replay_node, [])}
        return set(before) == set(now) and all(now[pid] == before[pid] for pid in now)

    def _budget_reached(self, counts: dict | None) -> bool:
        if counts is None:
            return False
        actor, learner = int(counts.get("actor_steps", 0)), int(counts.get("learner_steps", 0))
        return bool(
            (self._max_actor_steps and actor >= self._max_actor_steps)
            or (self._max_learner_steps and learner >= self._max_learner_steps)
        )

    def _finish(self, obs: Observation) -> None:
        self._previous = obs
        if obs.counts is not None:
            self._last_counts = obs.counts


def _first(processes: dict, group: str) -> str | None:
    return next((node for node in processes if node.split("/")[0] == group), None)


def sample_process(process) -> ProcessSample | None:
    """A psutil.Process's state, CPU and storage I/O; None if it is gone."""
    import psutil

    try:
        with process.oneshot():
            times = process.cpu_times()
            status = process.status()
            try:
                io = process.io_counters()
                io_bytes = int(io.read_bytes + io.write_bytes)
            except (psutil.AccessDenied, AttributeError):
                io_bytes = 0
        return ProcessSample(process.pid, status, float(times.user + times.system), io_bytes)
    except psutil.Error:
        return None


def node_tree(process) -> list:
    """A node process and the worker processes it spawned (an actor node's), not
    multiprocessing's resource tracker."""
    import psutil

    found = [process]
    try:
        for child in process.children(recursive=True):
            try:
                if "spawn_main" in " ".join(child.cmdline()):
                    found.append(child)
            except psutil.Error:
                continue
    except psutil.Error:
        pass
    return found


def event_bytes(directories: list[str]) -> int:
    """Bytes in the TensorBoard event files of `directories` (grows with every write)."""
    total = 0
    for directory in directories:
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name.startswith("events.out.tfevents"):
                        total += entry.stat().st_size
        except OSError:
            continue
    return total


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
        self._counter_address = counter_address
        self._replay_address = replay_address
        self._learner_address = learner_address
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
        self._counter = None
        self._replay = None
        self._learner = None
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

    def _probe_counter(self) -> dict | None:
        if not self._counter_address:
            return None
        try:
            if self._counter is None:
                import courier

                self._counter = courier.Client(
                    self._counter_address, call_timeout=PROBE_TIMEOUT_SECS
                )
            return dict(self._counter.get_counts())
        except Exception:  # noqa: BLE001 - no answer (stopped, busy, gone): a new client next
            self._counter = None
            return None

    def _probe_learner(self) -> bool | None:
        """Whether the learner serves a (empty) variables request: its Courier server
        runs in a thread of its own, so only a stopped or wedged process fails it."""
        if not self._learner_address:
            return None
        try:
            if self._learner is None:
                import courier

                self._learner = courier.Client(
                    self._learner_address, call_timeout=PROBE_TIMEOUT_SECS
                )
            self._learner.get_variables([])
            return True
        except Exception:  # noqa: BLE001 - no answer: a new client next time
            self._learner = None
            return False

    def _probe_replay(self) -> ReplayState | None:
        if not self._replay_address:
            return None
        try:
            if self._replay is None:
                import reverb

                self._replay = reverb.Client(self._replay_address)
            tables = self._replay.server_info(timeout=PROBE_TIMEOUT_SECS)
            return ReplayState.from_table_info(next(iter(tables.values())))
        except Exception:  # noqa: BLE001 - no answer: a new client next time
            self._replay = None
            return None
