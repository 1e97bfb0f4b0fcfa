"""Reliability with real processes and real signals: faults, kills, resume, SIGTERM, NaNs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from bprl.agents.config import LearnerHyperparams
from bprl.agents.learner import Learner, NonFiniteUpdatesError
from bprl.launch.local import netns
from tests_support import (
    actor_workers,
    read_checkpoint_record,
    run_processes,
    wait_for,
)
from tests_support import (
    start_run as _start,
)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _learner_has_checkpointed(workdir: str):
    record = read_checkpoint_record(workdir)
    return record if record and record["counts"].get("learner_steps", 0) > 0 else None


def _kill_all(workdir: str) -> None:
    for proc in run_processes(workdir):
        try:
            proc.send_signal(signal.SIGKILL)
        except Exception:  # noqa: BLE001 - already gone
            pass
    wait_for(lambda: not run_processes(workdir), 30, "killed processes to disappear")


@pytest.mark.slow  # about 70 s; the in-process actor rebuild is tested by default below
def test_killed_actor_process_is_replaced_and_run_completes(tmp_path):
    workdir = str(tmp_path / "run")
    proc = _start(workdir, "--config.stop.max_actor_steps=12000")
    try:
        workers = wait_for(lambda: len(actor_workers(workdir)) == 2, 120, "two actor workers")
        workers = actor_workers(workdir)
        at_kill = wait_for(lambda: _learner_has_checkpointed(workdir), 120, "a checkpoint")
        victim = workers[0]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        # The supervisor starts a new worker: the count of live actors returns to 2.
        replaced = wait_for(
            lambda: (
                [w for w in actor_workers(workdir) if w.pid != victim.pid]
                if len([w for w in actor_workers(workdir) if w.pid != victim.pid]) == 2
                else None
            ),
            90,
            "the killed actor to be replaced",
        )
        assert victim.pid not in {w.pid for w in replaced}
        code, out, err = _finish(proc)
    finally:
        if proc.poll() is None:
            _kill_all(workdir)
    assert code == 0, err[-3000:]
    final = read_checkpoint_record(workdir)
    assert final["counts"]["learner_steps"] > at_kill["counts"]["learner_steps"]
    assert final["counts"]["actor_steps"] >= 12000
    assert run_processes(workdir) == []


@pytest.mark.slow  # two program starts (~2 min); restoring: test_gcs_emulator, test_self_healing
def test_whole_run_killed_then_resumed_from_checkpoint(tmp_path):
    workdir = str(tmp_path / "run")
    proc = _start(workdir, "--config.stop.max_actor_steps=1000000")
    try:
        wait_for(
            lambda: (
                (r := _learner_has_checkpointed(workdir))
                and r["counts"]["learner_steps"] >= 50
                and sum(r["replay_items"].values()) > 0
            ),
            180,
            "a checkpoint with learner steps and replay items",
        )
    finally:
        _kill_all(workdir)  # kill -9 every process of the run, launcher included
    proc.communicate()
    checkpoint = read_checkpoint_record(workdir)
    target = int(checkpoint["counts"]["actor_steps"]) + 3000

    code, out, err = _finish(_start(workdir, f"--config.stop.max_actor_steps={target}"))
    assert code == 0, err[-3000:]
    assert "resuming" in out
    learner_log = open(os.path.join(workdir, "logs", "learner", "0")).read()
    resumed_at = int(re.search(r"learner resumed at step (\d+)", learner_log).group(1))
    assert resumed_at >= checkpoint["counts"]["learner_steps"] > 0
    replay_log = open(os.path.join(workdir, "logs", "replay", "0")).read()
    assert f"Loading checkpoint from {checkpoint['replay']}" in replay_log
    final = read_checkpoint_record(workdir)
    assert final["counts"]["learner_steps"] > resumed_at
    assert final["counts"]["actor_steps"] >= target
    # The restored table holds the checkpointed items (it only grows below max_size).
    assert sum(final["replay_items"].values()) >= sum(checkpoint["replay_items"].values())
    assert run_processes(workdir) == []


@pytest.mark.slow  # ~1.5 min; a SIGKILLed run leaving nothing: test_self_healing
def test_sigterm_writes_a_final_checkpoint_and_leaves_nothing(tmp_path):
    workdir = str(tmp_path / "run")
    proc = _start(workdir, "--config.stop.max_actor_steps=1000000")
    try:
        wait_for(lambda: _learner_has_checkpointed(workdir), 180, "a first checkpoint")
        _assert_loopback_only(workdir)
        sent = time.time()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)  # every process of the run exits within 30 s
        exited = time.time()
    finally:
        if proc.poll() is None:
            _kill_all(workdir)
    record = read_checkpoint_record(workdir)
    assert record["time"] >= sent, "no checkpoint was written after SIGTERM"
    assert exited - sent <= 30
    wait_for(lambda: not run_processes(workdir), 5, "no process of the run left")


def _assert_loopback_only(workdir: str) -> None:
    """Every process of the run lives in a network namespace whose only interface is lo."""
    assert netns.can_isolate(), "this machine kind is expected to support unshare --net"
    ours = os.readlink("/proc/self/ns/net")
    processes = run_processes(workdir)
    assert processes
    for proc in processes:
        assert os.readlink(f"/proc/{proc.pid}/ns/net") != ours
        with open(f"/proc/{proc.pid}/net/dev") as f:
            interfaces = [line.split(":")[0].strip() for line in f.readlines()[2:]]
        assert interfaces == ["lo"], interfaces


@pytest.mark.slow  # ~1 min; the rebuild after a worker death: test_packed_actors
def test_injected_actor_exceptions_are_survived(tmp_path):
    workdir = str(tmp_path / "run")
    code, out, err = _finish(
        _start(
            workdir,
            "--config.stop.max_actor_steps=2000",
            "--config.actors.inject_fault_every_steps=300",
        )
    )
    assert code == 0, err[-3000:]
    actor_log = open(os.path.join(workdir, "logs", "actor", "0")).read()
    assert "injected actor fault" in actor_log and "rebuilding" in actor_log
    assert read_checkpoint_record(workdir)["counts"]["actor_steps"] >= 2000


def _walker_batch(reward_value: float):
    from test_agent_losses import _batch_and_networks

    nets, _, batch = _batch_and_networks()
    reward = tf.fill(batch.reward.shape, reward_value)
    return nets, batch._replace(reward=reward)


@pytest.mark.parametrize(
    "jit_compile",
    [False, pytest.param(True, marks=pytest.mark.slow)],  # XLA: ~35 s more
)
def test_nan_rewards_skip_the_update_and_keep_parameters_finite(jit_compile):
    # With XLA the learner runs with fast math (reassociation); NaN checks must survive it.
    nets, batch = _walker_batch(float("nan"))
    learner = Learner(
        nets,
        iter(()),
        LearnerHyperparams(num_action_samples=2, max_bad_updates=3),
        jit_compile=jit_compile,
    )
    if jit_compile:
        assert "xla_cpu_enable_fast_math=true" in os.environ["XLA_FLAGS"]
    before = [v.numpy().copy() for v in nets.critic.variables + nets.policy.variables]
    for _ in range(2):
        metrics = learner.learn_from_batch(batch)
        assert not metrics["update_applied"]
    after = [v.numpy() for v in nets.critic.variables + nets.policy.variables]
    for old, new in zip(before, after, strict=True):
        np.testing.assert_array_equal(old, new)
        assert np.all(np.isfinite(new))
    assert learner.num_steps == 0
    assert int(learner.checkpoint_state()["bad_updates"].numpy()) == 2
    with pytest.raises(NonFiniteUpdatesError, match="3 consecutive updates"):
        learner.learn_from_batch(batch)
    # A finite batch afterwards is applied normally.
    _, good = _walker_batch(0.5)
    assert learner.learn_from_batch(good)["update_applied"]
