"""Deterministic errors fail fast (issue 31): before launch, or after one restart.

- The pre-launch check builds the task with the run's keywords, resets it and takes one
  step, so an error there is one `error:` line before anything starts.
- A node that fails the same way at every start, with no progress in between, is not
  restarted again: the launcher names it and its error (launch/local/restart_policy.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import dm_env
import numpy as np
import pytest
from dm_env import specs

from bprl.environments import registry
from bprl.environments.task_spec import TaskSpec
from bprl.launch.config import errors, validate
from bprl.launch.config.defaults import base_config
from bprl.launch.local import restart_policy
from tests_support import BPRL, CONFIG, REPO, run_processes

SEQNAV = os.path.join(REPO, "experiments", "configs", "seqnav_pointmass.py")


def bprl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([BPRL, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_task_keyword_that_fails_at_reset_is_one_error_line_and_launches_nothing(
    tmp_path, command
):
    """p = 0.2 is refused by the Markov table, built at reset (not when the task is
    built): today's actors and evaluator would all die with it after launch."""
    workdir = str(tmp_path / "run")
    extra = ["--seeds=2"] if command == "sweep" else []
    started = time.monotonic()
    result = bprl(
        command,
        f"--config={SEQNAV}:tiny",
        "--config.task_kwargs.p=0.2",
        *extra,
        f"--workdir={workdir}",
        timeout=120,
    )
    elapsed = time.monotonic() - started
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert lines[0].startswith("error: task seqnav_pointmass with task_kwargs {"), lines[0]
    assert "'p': 0.2" in lines[0]
    assert "fails at reset: ValueError: p must lie in [1/(K-1), 1]" in lines[0]
    assert result.returncode == 1
    assert not os.path.exists(workdir)  # no run directory: nothing was launched
    assert run_processes(workdir) == []
    assert "run directory" not in result.stdout
    assert elapsed < 60, f"the check took {elapsed:.0f} s"


class _StepFails(dm_env.Environment):
    """A real (tiny) task: one observation, a box of actions that is not centred at 0;
    `fail_at` = "reset" or "step" makes that call raise, as a task's own check would."""

    last_action = None

    def __init__(self, seed: int, fail_at: str = ""):
        self._fail_at = fail_at

    def reset(self) -> dm_env.TimeStep:
        if self._fail_at == "reset":
            raise ValueError("bad keyword, seen at reset")
        return dm_env.restart({"state": np.zeros(2)})

    def step(self, action) -> dm_env.TimeStep:
        type(self).last_action = np.asarray(action)
        if self._fail_at == "step":
            raise RuntimeError("bad keyword\nseen on the first step")
        return dm_env.transition(0.0, {"state": np.zeros(2)})

    def observation_spec(self):
        return {"state": specs.Array((2,), np.float64, name="state")}

    def action_spec(self):
        return specs.BoundedArray((2,), np.float64, [0.0, -4.0], [2.0, 0.0], name="action")


_TASK = "fail_fast_test_task"
if _TASK not in registry.all_tasks():
    registry.register(TaskSpec(_TASK, _StepFails, {"state": ("state",)}, "a test task"))


def _config(fail_at: str):
    config = base_config()
    config.task = _TASK
    config.prior_info = ("state",)
    config.task_kwargs.fail_at = fail_at
    return config


def test_the_check_resets_and_steps_the_task_once_with_the_middle_action():
    _StepFails.last_action = None
    validate.validate_config(_config(""))
    np.testing.assert_allclose(_StepFails.last_action, [1.0, -2.0])  # the box's middle


@pytest.mark.parametrize(
    "fail_at, message",
    [
        ("reset", "fails at reset: ValueError: bad keyword, seen at reset"),
        ("step", "fails on its first step: RuntimeError: bad keyword; seen on the first step"),
    ],
)
def test_an_error_at_reset_or_on_the_first_step_is_one_config_error(fail_at, message):
    with pytest.raises(errors.ConfigError) as error:
        validate.validate_config(_config(fail_at))
    text = str(error.value)
    assert text.startswith(f"task {_TASK} with task_kwargs {{'fail_at': '{fail_at}'}} ")
    assert message in text and "\n" not in text


# A failure the pre-launch check cannot see and that recurs at every start: every actor
# raises on its first step (the fault-injection aid, every step), its worker gives up at
# the first error and its node at the first dead worker.
FAILS_AT_EVERY_START = (
    "--config.actors.inject_fault_every_steps=1",
    "--config.actors.max_errors=1",
    "--config.actors.max_restarts=0",
    "--config.reliability.restart_backoff_secs=0",
)


@pytest.mark.slow  # two program starts (~2 min); the decision: the test below
def test_a_node_that_fails_identically_after_a_restart_is_not_restarted_again(tmp_path):
    """About 45 s on 2 cores: two program starts. The first failure is retried (it might
    be transient); the restart fails the same way with no progress, and the launcher
    stops there (restart budget 3) naming the node and its error."""
    workdir = str(tmp_path / "run")
    result = bprl("run", f"--config={CONFIG}:tiny", *FAILS_AT_EVERY_START, f"--workdir={workdir}")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]
    with open(os.path.join(workdir, "restarts.jsonl")) as f:
        entries = [json.loads(line) for line in f]
    assert len(entries) == 1, entries  # one restart, not three
    (entry,) = entries
    assert entry["cause"] == "exit code 1" and entry["actor_steps_at_failure"] == 0
    node = entry["nodes"][0]
    assert node.startswith("actor/"), entry
    assert "injected actor fault" in entry["errors"][node]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: actor/"), result.stderr[-3000:]
    assert "the same way at every start (RuntimeError: actor_" in last  # one or both
    assert "injected actor fault (actors.inject_fault_every_steps)" in last
    assert "not restarting" in last
    assert result.stderr.count("restarting the whole program") == 1
    assert not os.path.exists(os.path.join(workdir, "logs.failed.2"))
    assert run_processes(workdir) == []


def _entry(**fields) -> dict:
    base = {
        "restart": 1,
        "nodes": ["actor/0"],
        "cause": "exit code 1",
        "errors": {"actor/0": "RuntimeError: actor_0: worker died 1 times; giving up"},
        "checkpoint_learner_steps": 0,
        "checkpoint_actor_steps": 0,
        "learner_steps_at_failure": 0,
        "actor_steps_at_failure": 0,
    }
    return {**base, **fields}


def test_only_a_recurring_failure_without_progress_stops_the_restarts(tmp_path):
    """The decision itself, on node logs as Launchpad writes them (tracebacks after absl
    log lines): the same error in the same node group stops; a kill, another error, a
    node with no exception, or any progress is retried."""
    logs = tmp_path / "logs"
    (logs / "actor").mkdir(parents=True)
    (logs / "learner").mkdir()
    (logs / "actor" / "1").write_text(
        "I1204 02:40:41.818 140 supervision.py:120] actor_1: started worker process 77\n"
        "E1204 02:40:43.001 140 supervision.py:88] actor_1 failed (1/1); rebuilding\n"
        "Traceback (most recent call last):\n"
        '  File "launch/program/supervision.py", line 146, in supervise\n'
        '    raise RuntimeError(f"...")\n'
        "RuntimeError: actor_1: worker died 1 times; giving up\n"
        "W1204 02:40:44.000 140 node.py:1] Error: not a traceback line\n"
    )
    (logs / "learner" / "0").write_text("I1204 learner started at step 0\n")
    errors = restart_policy.node_exceptions(str(logs), ["actor/1", "learner/0"])
    assert errors == {
        "actor/1": "RuntimeError: actor_1: worker died 1 times; giving up",
        "learner/0": "",
    }
    previous = _entry()
    same = _entry(nodes=["actor/1"], errors={"actor/1": errors["actor/1"]})  # another replica
    assert restart_policy.recurring_failure(previous, same) == {"actor/1": errors["actor/1"]}
    # Found dead beside it: nodes Launchpad stopped once the actor had exited (no exception).
    stopped = {"replay/0": "", "learner/0": "", "stopper/0": ""}
    late = _entry(nodes=["actor/1", *stopped], errors={"actor/1": errors["actor/1"], **stopped})
    assert restart_policy.recurring_failure(previous, late) == {"actor/1": errors["actor/1"]}
    assert restart_policy.describe({"actor/1": "E: x"}) == (
        "actor/1 fails the same way at every start (E: x)"
    )
    assert restart_policy.describe({"actor/0": "E: actor_0", "actor/1": "E: actor_1"}) == (
        "actor/0, actor/1 fail the same way at every start (E: actor_0)"
    )
    retried = {
        "first attempt of this launch": (None, same),
        "a kill": (previous, {**same, "cause": "SIGKILL"}),
        "a kill before": (_entry(cause="SIGKILL"), same),
        "another error": (previous, _entry(errors={"actor/0": "OSError: disk"})),
        "another group": (
            previous,
            _entry(nodes=["learner/0"], errors={"learner/0": previous["errors"]["actor/0"]}),
        ),
        "no exception": (previous, _entry(nodes=["learner/0"], errors={"learner/0": ""})),
        "new actor steps": (previous, _entry(actor_steps_at_failure=5)),
        "new learner steps": (previous, _entry(learner_steps_at_failure=3)),
        "a new checkpoint": (previous, _entry(checkpoint_actor_steps=80)),
    }
    for what, (before, now) in retried.items():
        assert restart_policy.recurring_failure(before, now) == {}, what


def test_the_restart_back_off_grows_only_while_restarts_make_no_progress():
    """A run that heals and trains on between faults waits the base time after each; only
    restarts in a row with no progress wait longer, and never more than the cap."""
    from bprl.launch.local import restart_policy as policy

    def attempt(checkpoint_steps, reached):
        return policy.attempt_record(
            ["learner/0"], "SIGKILL", {}, {"learner_steps": checkpoint_steps}, reached, 0
        )

    first = attempt(100, 150)
    assert policy.restarts_without_progress(None, first) == 0
    first["restarts_without_progress"] = 0
    stuck = attempt(100, 150)  # the next attempt got no further
    assert policy.restarts_without_progress(first, stuck) == 1
    stuck["restarts_without_progress"] = 1
    assert policy.restarts_without_progress(stuck, attempt(100, 150)) == 2
    assert policy.restarts_without_progress(stuck, attempt(180, 200)) == 0  # trained on
    assert [policy.backoff_secs(10, k) for k in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    assert policy.backoff_secs(600, 3) == 600  # a base above the cap is kept
    assert policy.backoff_secs(0, 5) == 0
