"""The launcher names the node that failed first, not every node that died after it
(launch/local/exits.py): real child processes, real signals, real waitid."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil

from bprl.launch.local.exits import ExitRecorder
from bprl.launch.local.launcher import NodeFailure, first_failure


def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def test_exits_are_recorded_in_order_with_their_cause_and_left_for_the_parent_to_reap():
    sleeper = "import time; time.sleep(60)"
    replay, evaluator, actor = _child(sleeper), _child(sleeper), _child(sleeper)
    crasher = _child(sleeper)
    processes = {
        "replay/0": psutil.Process(replay.pid),
        "evaluator/0": psutil.Process(evaluator.pid),
        "actor/0": psutil.Process(actor.pid),
        "actor/1": psutil.Process(crasher.pid),
    }
    recorder = ExitRecorder(processes)
    try:
        replay.send_signal(signal.SIGKILL)
        time.sleep(0.3)
        evaluator.send_signal(signal.SIGSEGV)
        time.sleep(0.3)
        actor.terminate()
        time.sleep(0.3)
        crasher.kill()
        deadline = time.time() + 10
        while len(recorder.exits()) < 4 and time.time() < deadline:
            time.sleep(0.05)
        exits = recorder.exits()
        assert [(e.node, e.cause) for e in exits] == [
            ("replay/0", "SIGKILL"),
            ("evaluator/0", "SIGSEGV"),
            ("actor/0", "SIGTERM"),
            ("actor/1", "SIGKILL"),
        ]
        # WNOWAIT: the real parent (here the test, in the launcher Launchpad) still reaps
        # each child and sees its status.
        assert replay.wait(5) == -signal.SIGKILL
        assert evaluator.wait(5) == -signal.SIGSEGV
    finally:
        recorder.close()
        for child in (replay, evaluator, actor, crasher):
            child.kill()
            child.wait()


def test_an_exit_code_is_read_as_such():
    child = _child("import sys, time; time.sleep(0.5); sys.exit(3)")
    recorder = ExitRecorder({"learner/0": psutil.Process(child.pid)})
    try:
        # Wait for the recorder before reaping: a reaped child's status is gone (on a busy
        # machine its thread can see the exit after the test's wait() did).
        deadline = time.time() + 10
        while not recorder.exits() and time.time() < deadline:
            time.sleep(0.05)
        assert [(e.node, e.cause) for e in recorder.exits()] == [("learner/0", "exit code 3")]
        assert child.wait(10) == 3  # WNOWAIT left the status for the parent
    finally:
        recorder.close()


def test_the_first_failure_is_named_and_the_later_deaths_listed_after_it():
    from bprl.launch.local.exits import Exit

    exits = [
        Exit("replay/0", 1.0, "SIGKILL"),
        Exit("evaluator/0", 1.2, "SIGSEGV"),
        Exit("actor/0", 1.3, "SIGTERM"),  # killed by the launcher's stop: not found dead
    ]
    dead = ["replay/0", "evaluator/0", "counter/0"]  # counter: its exit was not recorded
    nodes, cause, after = first_failure(dead, exits, "SIGKILL")
    assert (nodes, cause) == (["replay/0"], "SIGKILL")
    assert after == [("evaluator/0", "SIGSEGV"), ("counter/0", "")]
    failure = NodeFailure(nodes, cause, {}, after=after)
    assert str(failure) == (
        "replay/0 died (SIGKILL); then evaluator/0 (SIGSEGV), counter/0 (unknown)"
    )
    # A clean exit first (a node that finished) is not the failure.
    exits = [Exit("evaluator/0", 0.5, "exit code 0"), Exit("learner/0", 0.9, "exit code 1")]
    nodes, cause, _ = first_failure(["evaluator/0", "learner/0"], exits, "exit code 1")
    assert (nodes, cause) == (["learner/0"], "exit code 1")
    # Nothing recorded (an old kernel without pidfds): every dead node, Launchpad's cause.
    assert first_failure(["replay/0", "evaluator/0"], [], "SIGKILL") == (
        ["replay/0", "evaluator/0"],
        "SIGKILL",
        [],
    )
