"""Which nodes of a local run are hung (issue 31; docs/reliability.md, "Hung nodes"):
`HangRules` is fed what the liveness watch (launch/local/liveness.py) saw at each poll
(an `Observation`, launch/local/node_probes.py) and names the nodes to kill. It decides
on observations alone, so it is tested on sequences of them written out.

The launcher cannot see inside the nodes, so it decides from three kinds of evidence:
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

from bprl.launch.local.node_probes import Observation

IDLE_CPU_FRACTION = 0.02  # a node below this share of one core over a poll is idle
FROZEN_STATES = frozenset({"stopped", "tracing-stop"})
# Groups in the order a hang is blamed on: nodes that others wait on first.
_BLAME_ORDER = ("counter", "replay", "learner", "actor", "evaluator", "stopper")


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
