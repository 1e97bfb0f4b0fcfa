"""Hung nodes are noticed (issue 31, part 1; launch/local/liveness.py, docs/reliability.md).

A node whose processes are stopped (SIGSTOP), or idle without progress while what it
waits on could serve it, is declared hung after the bound, named, killed, and handled as
a death: the whole-program restart. A slow but live node is not. Real processes and real
signals; the rules' decisions are also checked on observation sequences written out.
"""

from __future__ import annotations

import concurrent.futures
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from bprl.launch.config import errors, validate
from bprl.launch.config.defaults import base_config
from bprl.launch.local import launcher as local
from bprl.launch.local import liveness
from bprl.launch.local.hang_rules import HangRules
from bprl.launch.local.node_probes import Observation, ProcessSample, ReplayState
from tests_support import read_checkpoint_record, run_processes, wait_for
from tests_support import start_run as _start

BOUND = 20.0  # the bound the slow tests set (the default is derived: >= 180 s)

# --- the decision, on observations written out ---------------------------------------

_PIDS = {"counter/0": 10, "replay/0": 11, "learner/0": 12, "actor/0": 13, "evaluator/0": 14}


class _Run:
    """Builds the observations of a program polled every 5 s: each node's CPU grows by
    its `busy` share of a core per poll, the replay's rate limiter as given."""

    def __init__(self, bound: float = 30.0, every_actor_steps: int = 10**9):
        self.rules = HangRules(bound, max_actor_steps=10**9, every_actor_steps=every_actor_steps)
        self.t = 0.0
        self.cpu = dict.fromkeys(_PIDS, 0.0)
        self.io = dict.fromkeys(_PIDS, 0)
        self.learner_steps = 0
        self.actor_steps = 0
        self.inserts = 1000
        self.samples = 8000
        self.events = 0
        self.evaluations = 0

    def step(
        self,
        busy=(),
        io=(),
        learner_steps=0,
        inserts=0,
        samples=0,
        blocked=False,
        status=None,
        events=0,
        evaluations=0,
        counts=True,
        replay=True,
        learner=True,
    ):
        self.t += 5.0
        for node in busy:
            self.cpu[node] += 2.5  # half a core
        for node in io:
            self.io[node] += 4096
        self.learner_steps += learner_steps
        self.inserts += inserts
        self.samples += samples
        self.events += events
        self.evaluations += evaluations
        self.actor_steps += 10 * inserts
        status = status or {}
        processes = {
            node: [ProcessSample(pid, status.get(node, "sleeping"), self.cpu[node], self.io[node])]
            for node, pid in _PIDS.items()
        }
        spi = 8.0
        # diff = inserts * spi - samples: at max_diff inserts wait, at min_diff samples do
        max_diff = self.inserts * spi - self.samples if blocked else 1e12
        state = ReplayState(self.inserts, self.inserts, self.samples, spi, -1e12, max_diff, 20)
        obs = Observation(
            time=self.t,
            processes=processes,
            counts={"learner_steps": self.learner_steps, "actor_steps": self.actor_steps}
            if counts
            else None,
            replay=state if replay else None,
            learner=learner,
            event_bytes={"actor/0": self.events, "evaluator/0": self.evaluations},
        )
        return self.rules.update(obs)

    def start(self):
        """The program running: the learner has stepped (the actor rule applies), the
        evaluator has evaluated (the next one is due in 10**9 actor steps)."""
        for _ in range(2):
            self.step(busy=_PIDS, learner_steps=1, inserts=1, samples=8, events=1, evaluations=1)


def _hung(hangs):
    return [(h.node, h.state) for h in hangs]


def test_a_deadlocked_learner_is_hung_after_the_bound_and_not_before():
    """Learner steps flat, the learner idle, and the replay waits on it (inserts blocked,
    no samples, the replay idle): hung once that has held for the bound (30 s)."""
    run = _Run(bound=30.0)
    run.start()
    found = []
    for poll in range(12):
        found = run.step(blocked=True, busy=["actor/0"] if poll == 0 else ())
        if found:
            break
    assert _hung(found) == [("learner/0", "sleeping")]
    assert 30 <= found[0].seconds < 35 and not found[0].worker
    assert 6 <= poll <= 8, poll
    assert found[0].message() == "learner/0 made no progress for 30 s (state: sleeping)"


def test_a_rate_limited_learner_is_never_hung():
    """The learner waits for inserts (the rate limiter holds samples back; the replay
    holds far more than a batch): flat and idle for 20 bounds, never hung."""
    run = _Run(bound=30.0)
    run.start()
    for _ in range(120):  # 600 s
        assert run.step(busy=["actor/0"], inserts=1) == []


def test_a_compiling_learner_and_a_learner_waiting_on_a_replay_checkpoint_are_not_hung():
    """No steps and the replay waiting on the learner, but the learner burns CPU (a long
    first XLA compile), or the replay does (a checkpoint the learner waits on)."""
    for busy, disk in ((["learner/0"], ()), (["replay/0"], ()), ((), ["replay/0"])):
        run = _Run(bound=30.0)
        run.start()
        for _ in range(60):
            assert run.step(busy=busy, io=disk, blocked=True) == [], (busy, disk)


def test_a_stopped_process_is_hung_and_one_paused_briefly_is_not():
    run = _Run(bound=30.0)
    run.start()
    for i in range(40):  # stopped for 20 s, running for 5 s, again and again
        paused = i % 5 != 4
        status = {"actor/0": "stopped"} if paused else {}
        hangs = run.step(busy=[] if paused else ["actor/0"], status=status)
        assert hangs == []
    found = []
    for _ in range(8):
        found = found or run.step(status={"counter/0": "stopped"})
    assert _hung(found) == [("counter/0", "stopped")]


def test_an_actor_that_stops_stepping_while_the_replay_takes_inserts_is_hung():
    """Its event files flat and its processes idle while the replay accepts inserts
    (the learner waits for them); not while inserts are blocked (the learner is slow)."""
    run = _Run(bound=30.0)
    run.start()
    for _ in range(40):
        assert run.step(busy=["learner/0"], blocked=True) == []
    found = []
    for _ in range(8):
        found = found or run.step()
    assert _hung(found) == [("actor/0", "sleeping")]


def test_an_evaluator_waiting_on_a_stopped_learner_is_not_blamed():
    """The evaluator (an evaluation due) blocks on the stopped learner's variables and
    goes idle a poll before the learner is seen stopped: the learner alone is named."""
    run = _Run(bound=30.0, every_actor_steps=10)
    run.start()
    run.step(busy=["learner/0"], inserts=2, learner=True)  # the evaluator stalls
    found = []
    for _ in range(10):
        # (learner=None: no variables probe, so only the stop itself tells)
        found = found or run.step(status={"learner/0": "stopped"}, blocked=True, learner=None)
    assert _hung(found) == [("learner/0", "stopped")]


def test_a_learner_whose_process_does_not_answer_is_hung_not_those_waiting_on_it():
    """Idle, no steps, no answer to a variables request while the counter and replay
    answer (a wedged process): the learner is named, not the actor or evaluator."""
    run = _Run(bound=30.0, every_actor_steps=10)
    run.start()
    found = []
    for _ in range(10):
        found = found or run.step(learner=False)
    assert _hung(found) == [("learner/0", "sleeping")]


def test_a_silent_counter_is_hung_only_while_nothing_of_the_run_moves():
    run = _Run(bound=30.0)
    run.start()
    for _ in range(40):  # the probe fails, but actors write events: the probe's problem
        assert run.step(busy=["actor/0"], inserts=1, events=1, counts=False) == []
    found = []
    for _ in range(8):
        found = found or run.step(counts=False)
    assert _hung(found) == [("counter/0", "sleeping")]


def test_the_bound_is_derived_from_the_checkpoints_and_can_be_set(tmp_path):
    config = base_config()
    workdir = str(tmp_path)
    assert liveness.hang_bound(config, workdir) == 180.0
    os.makedirs(os.path.join(workdir, "checkpoints"))
    with open(os.path.join(workdir, "checkpoints", "counts.json"), "w") as f:
        json.dump({"counts": {}, "learner": "x", "total_seconds": 100.0}, f)
    assert liveness.hang_bound(config, workdir) == 300.0
    config.reliability.hang_timeout_secs = 20.0
    assert liveness.hang_bound(config, workdir) == 20.0
    config.reliability.hang_timeout_secs = -1.0
    assert liveness.hang_bound(config, workdir) == 0.0  # not watched
    config.reliability.hang_timeout_secs = -2.0
    with pytest.raises(errors.ConfigError, match="hang_timeout_secs must be >= 0"):
        validate.validate_config(config)


# --- real processes, real signals ------------------------------------------------------


def _fake_node(group: str, code: str) -> subprocess.Popen:
    """A real child process that the launcher's node discovery takes for `<group>/0`."""
    env = {**os.environ, local.NODE_GROUP_ENV: group}
    return subprocess.Popen([sys.executable, "-c", code, "--lp_task_id", "0"], env=env)


def test_the_watchdog_kills_a_stopped_node_and_spares_live_ones(tmp_path):
    """SIGSTOP one of three real processes: within the bound (3 s) plus two polls it is
    named with its state and SIGKILLed (no SIGCONT is sent); a sleeping process and one
    that burns CPU are not touched."""
    config = base_config()
    config.reliability.hang_timeout_secs = 3.0
    nodes = {
        "learner": _fake_node("learner", "import time; time.sleep(600)"),
        "stopper": _fake_node("stopper", "import time; time.sleep(600)"),
        "evaluator": _fake_node("evaluator", "while True: pass"),
    }
    expected = [f"{group}/0" for group in nodes]
    try:
        wait_for(lambda: set(local.node_processes()) >= set(expected), 10, "the processes")
        console = io.StringIO()
        watchdog = liveness.Watchdog(
            config, str(tmp_path), local.node_processes, expected, stream=console
        )
        assert watchdog.bound == 3.0
        with watchdog:
            time.sleep(5)  # all live: nothing happens
            assert console.getvalue() == "" and watchdog.hangs == []
            stopped = time.monotonic()
            nodes["learner"].send_signal(signal.SIGSTOP)
            nodes["learner"].wait(timeout=3.0 + 2 * liveness.poll_interval(3.0) + 2)
            found = time.monotonic() - stopped
        assert nodes["learner"].returncode == -signal.SIGKILL
        assert found <= 3.0 + 2 * liveness.poll_interval(3.0) + 1, found
        assert [hang.node for hang in watchdog.hangs] == ["learner/0"]
        line = console.getvalue().strip()
        assert re.fullmatch(
            r"error: learner/0 made no progress for [3-6] s \(state: stopped\); killing it", line
        ), line
        assert nodes["stopper"].poll() is None and nodes["evaluator"].poll() is None
    finally:
        for proc in nodes.values():
            proc.kill()
            proc.wait()


# --- a real run -------------------------------------------------------------------------


def _node(workdir: str, group: str):
    for proc in run_processes(workdir):
        try:
            if "process_entry.py" in " ".join(proc.cmdline()):
                if proc.environ().get(local.NODE_GROUP_ENV) == group:
                    return proc
        except psutil.Error:
            pass
    return None


def _kill_all(workdir: str) -> None:
    for proc in run_processes(workdir):
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            pass


def _checkpoint_with_steps(workdir: str, steps: int):
    record = read_checkpoint_record(workdir)
    return record if record and record["counts"].get("learner_steps", 0) >= steps else None


LEARNER_BUDGET = 3000  # far enough that the stop lands before the run ends


@pytest.mark.slow  # about 3 minutes on 2 cores: two program starts
def test_a_stopped_learner_is_named_killed_and_the_run_heals(tmp_path):
    """SIGSTOP the learner of a tiny run (bound 20 s): the launcher names it with its
    state within the bound, kills it, restarts the program from its checkpoint, and the
    run finishes its budget; no SIGCONT is sent and nothing is left behind."""
    workdir = str(tmp_path / "run")
    proc = _start(
        workdir,
        "--config.stop.max_actor_steps=0",
        f"--config.stop.max_learner_steps={LEARNER_BUDGET}",
        "--config.reliability.restart_backoff_secs=1",
        f"--config.reliability.hang_timeout_secs={BOUND:g}",
    )
    try:
        wait_for(lambda: _checkpoint_with_steps(workdir, 5), 300, "a checkpoint")
        learner = _node(workdir, "learner")
        learner.send_signal(signal.SIGSTOP)
        stopped = time.time()
        wait_for(lambda: not learner.is_running() or learner.status() == "zombie", 120, "kill")
        killed = time.time() - stopped
        out, err = proc.communicate(timeout=600)
    finally:
        _kill_all(workdir)
    assert proc.returncode == 0, err[-3000:]
    # Named within the bound plus a poll: 3.3 s apart, and up to 5 s longer while a probe
    # of the stopped learner waits for its timeout.
    assert killed <= BOUND + 15, killed
    match = re.search(r"error: learner/0 made no progress for (\d+) s \(state: stopped\)", err)
    assert match, err[-3000:]
    assert BOUND <= int(match.group(1)) <= BOUND + 10
    assert "restart 1 of 3 in 1 s" in err
    assert "resuming" in out and "summary: " in out
    (entry,) = [json.loads(line) for line in open(os.path.join(workdir, "restarts.jsonl"))]
    assert entry["nodes"] == ["learner/0"] and entry["cause"] == "hung"
    assert entry["hang"].startswith("learner/0 made no progress for")
    assert entry["errors"] == {}  # a hang is never taken for a deterministic failure
    final = read_checkpoint_record(workdir)
    assert final["counts"]["learner_steps"] >= LEARNER_BUDGET
    assert run_processes(workdir) == []


@pytest.mark.slow  # about 3 minutes on 2 cores
def test_a_learner_rate_limited_for_longer_than_the_bound_is_not_hung(tmp_path):
    """samples_per_insert 0.005: each learner call (4 batches of 16) waits for 12,800
    inserts, i.e. 128,000 actor steps, while the replay holds far more than a batch. The
    learner sits idle for longer than the bound (15 s) again and again; it is not hung."""
    bound = 15.0
    workdir = str(tmp_path / "run")
    learner_log = os.path.join(workdir, "logs", "learner", "0")
    proc = _start(
        workdir,
        "--config.replay.samples_per_insert=0.005",
        "--config.stop.max_actor_steps=250000",
        f"--config.reliability.hang_timeout_secs={bound:g}",
    )
    learner_started = None
    try:
        # Drain the pipes in the background while the learner's start is watched for.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            result = pool.submit(proc.communicate, timeout=900)
            while not result.done():
                if learner_started is None and os.path.exists(learner_log):
                    if "learner started" in open(learner_log).read():
                        learner_started = time.monotonic()
                time.sleep(0.5)
            out, err = result.result()
        ended = time.monotonic()
    finally:
        _kill_all(workdir)
    assert proc.returncode == 0, err[-3000:]
    assert learner_started is not None, "the learner never logged its start"
    assert "made no progress" not in err, err[-3000:]
    assert not os.path.exists(os.path.join(workdir, "restarts.jsonl"))
    # At most ~250,000 / 128,000 calls of 4 updates, plus one that the limiter's error
    # buffer allows (often none completes: the dataset's sampler workers split the few
    # samples allowed). Over the learner's life its calls leave calls + 1 idle gaps, so the
    # longest gap is at least life / (calls + 1): the learner really sat idle for longer
    # than the bound, whatever the machine's speed (CI's ran 150,000 steps in under 60 s).
    final = read_checkpoint_record(workdir)
    updates = final["counts"]["learner_steps"] if final else 0
    assert updates <= 12, final
    calls = -(-updates // 4)
    longest_gap_at_least = (ended - learner_started) / (calls + 1)
    assert longest_gap_at_least > bound, (ended - learner_started, updates)
