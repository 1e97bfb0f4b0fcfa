"""What the liveness watch (launch/local/liveness.py) sees of a local run's nodes, from
outside, at one poll: each node's processes (psutil: state, CPU time, storage I/O), the
sizes of the event files it writes, and the answers of the counter, the replay and the
learner to short probes (Courier, Reverb).

Its own module so that what looks and what decides (launch/local/hang_rules.py) stay
apart, and so that benchmarks/chaos_run.py probes a run with the same code.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

PROBE_TIMEOUT_SECS = 5


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


class Probe:
    """One question to a node's server, asked from outside at each call: the answer, or
    `failed` when there is none (stopped, busy, gone: a new client next time)."""

    def __init__(self, address, connect: Callable, ask: Callable, failed=None):
        # "host:port"; or a callable giving one, called when connecting (it may fail
        # too: no answer); None or "": not asked (None).
        self._address = address
        self._connect = connect  # address -> client
        self._ask = ask  # client -> answer
        self._failed = failed
        self._client = None

    def __call__(self):
        if not self._address:
            return None
        try:
            if self._client is None:
                address = self._address() if callable(self._address) else self._address
                self._client = self._connect(address)
            return self._ask(self._client)
        except Exception:  # noqa: BLE001 - no answer (stopped, busy, gone): a new client next
            self._client = None
            return self._failed


def _courier(timeout: float) -> Callable:
    def connect(address: str):
        import courier

        return courier.Client(address, call_timeout=timeout)

    return connect


def counter_probe(address, timeout: float = PROBE_TIMEOUT_SECS) -> Probe:
    """The counter's counts (`get_counts`) as a dict; None: no answer."""
    return Probe(address, _courier(timeout), lambda client: dict(client.get_counts()))


def learner_probe(address, timeout: float = PROBE_TIMEOUT_SECS) -> Probe:
    """Whether the learner serves a (empty) variables request: its Courier server
    runs in a thread of its own, so only a stopped or wedged process fails it (False)."""

    def ask(client) -> bool:
        client.get_variables([])
        return True

    return Probe(address, _courier(timeout), ask, failed=False)


def replay_probe(address, read: Callable, timeout: float = PROBE_TIMEOUT_SECS) -> Probe:
    """`read` of the replay's tables (Reverb's `server_info`: name -> table info);
    None: no answer."""

    def connect(address: str):
        import reverb

        return reverb.Client(address)

    return Probe(address, connect, lambda client: read(client.server_info(timeout=timeout)))


def replay_state(tables: dict) -> ReplayState:
    """The (first) replay table's size and rate limiter, from `server_info`'s tables."""
    return ReplayState.from_table_info(next(iter(tables.values())))
