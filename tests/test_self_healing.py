"""Runs that heal themselves (issue 16): no orphans, one run per directory, checks before
launch, checkpoints that survive damage, failures that name the node, program restarts.

Real processes and real signals throughout: `bprl run` subprocesses, SIGKILL, flock.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests_support import (
    BPRL,
    CONFIG,
    REPO,
    actor_workers,
    read_checkpoint_record,
    run_processes,
    wait_for,
)
from tests_support import (
    start_run as _start,
)


def _bprl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([BPRL, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _node_processes(workdir: str) -> list:
    """The run's Launchpad node processes (not the launcher, not actor workers)."""
    found = []
    for proc in run_processes(workdir):
        try:
            if "process_entry.py" in " ".join(proc.cmdline()):
                found.append(proc)
        except Exception:  # noqa: BLE001 - gone
            pass
    return found


def _kill_all(workdir: str) -> None:
    for proc in run_processes(workdir):
        try:
            proc.send_signal(signal.SIGKILL)
        except Exception:  # noqa: BLE001 - already gone
            pass


def test_sigkilled_launcher_leaves_no_process_and_a_live_run_refuses_a_second(tmp_path):
    """The key check of 'no orphans': kill -9 the launcher of a running program; every
    node and actor worker is gone within 30 s. While it ran, a second `bprl run` on the
    same directory was refused, naming the live launcher."""
    workdir = str(tmp_path / "run")
    proc = _start(workdir, "--config.stop.max_actor_steps=1000000")
    try:
        wait_for(lambda: len(actor_workers(workdir)) == 2, 180, "two actor workers")
        assert len(_node_processes(workdir)) == 7  # replay, counter, learner, 2 actors, ...

        second = _bprl("run", f"--config={CONFIG}:tiny", f"--workdir={workdir}")
        assert second.returncode == 1
        lines = _error_lines(second.stderr)
        assert lines == [
            f"error: {workdir} is in use by bprl run (pid {proc.pid}); stop it, or use "
            "another --workdir"
        ], second.stderr[-2000:]
        assert proc.poll() is None  # the first run is untouched

        killed = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: not run_processes(workdir), 30, "every process of the run to end")
        assert time.time() - killed <= 30
    finally:
        _kill_all(workdir)
        proc.communicate()
    holder = json.loads(open(os.path.join(workdir, ".lock")).read())
    assert holder["pid"] == proc.pid  # a stale record: its lock was freed with the process


def _hold_lock_in_child(directory: str) -> subprocess.Popen:
    """A real `bprl`-like process that takes the directory's lock and waits."""
    code = (
        "import sys, time; from bprl.launch.local import runlock; "
        f"runlock.acquire({directory!r}, 'bprl run'); print('locked', flush=True); "
        "time.sleep(600)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert child.stdout.readline().strip() == "locked"
    return child


def test_lock_refuses_while_held_and_is_taken_over_when_stale(tmp_path, capsys):
    from bprl.launch.config.errors import ConfigError
    from bprl.launch.local import runlock

    directory = str(tmp_path)
    child = _hold_lock_in_child(directory)
    try:
        with pytest.raises(ConfigError, match=rf"in use by bprl run \(pid {child.pid}\)"):
            runlock.acquire(directory, "bprl run")
    finally:
        child.kill()
        child.wait()
    fd = runlock.acquire(directory, "bprl sweep")  # the holder died: the lock is stale
    try:
        out = capsys.readouterr().out
        assert f"taking over the lock of bprl run (pid {child.pid})" in out
        assert json.loads(open(runlock.lock_path(directory)).read())["pid"] == os.getpid()
        # A second process is refused while this one holds it, naming this one.
        other = subprocess.run(
            [
                sys.executable,
                "-c",
                f"from bprl.launch.local import runlock; runlock.acquire({directory!r}, 'x')",
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert f"in use by bprl sweep (pid {os.getpid()})" in other.stderr
    finally:
        runlock.release(fd)
    assert open(runlock.lock_path(directory)).read() == ""  # a clean release: not stale


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("agent.policy_learning_rate", 0.0, "agent.policy_learning_rate must be > 0"),
        ("agent.critic_learning_rate", -1e-4, "agent.critic_learning_rate must be > 0"),
        ("agent.prior_learning_rate", float("nan"), "agent.prior_learning_rate must be > 0"),
        ("agent.retrace_lambda", 1.5, "agent.retrace_lambda must be in [0, 1]"),
        ("checkpoint.every_seconds", 0, "checkpoint.every_seconds must be > 0"),
        ("actors.variable_update_period", 0, "actors.variable_update_period must be >= 1"),
        ("evaluators.every_actor_steps", 0, "evaluators.every_actor_steps must be >= 1"),
        ("network.min_scale", 0.0, "network.min_scale must be > 0"),
        ("network.critic_hidden", (32, 0), "network.critic_hidden must be layer widths >= 1"),
        ("reliability.max_program_restarts", -1, "reliability.max_program_restarts must be >= 0"),
    ],
)
def test_numeric_fields_out_of_range_are_refused(field, value, message):
    from bprl.experiments.configs import walker_walk
    from bprl.launch.config import errors, validate

    config = walker_walk.get_config("tiny")
    config.update_from_flattened_dict({field: value})
    with pytest.raises(errors.ConfigError) as error:
        validate.validate_config(config)
    assert message in str(error.value)


def test_a_program_too_big_for_the_machine_is_refused_quickly(tmp_path):
    import psutil

    workdir = str(tmp_path / "run")
    started = time.monotonic()
    result = _bprl(
        "run",
        f"--config={CONFIG}:tiny",
        "--config.actors.num_actors=5000",
        "--config.actors.envs_per_process=1",
        f"--workdir={workdir}",
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    lines = _error_lines(result.stderr)
    assert len(lines) == 1, result.stderr[-2000:]
    total = psutil.virtual_memory().total / 2**30
    unpacked = r"needs about \d+\.\d GiB of memory \(5000 actor streams in 5000 actor "
    assert re.search(unpacked, lines[0])
    assert f"this machine has {total:.1f} GiB" in lines[0]
    assert not os.path.exists(os.path.join(workdir, "logs"))  # nothing was launched
    # Refused by the checks, not by a failed launch: seconds, not minutes (bound generous
    # for a loaded 2-core machine; it is ~5 s idle).
    assert elapsed < 30, elapsed


def _tiny_checkpointer(workdir: str, value: float):
    import tensorflow as tf

    from bprl.launch.rundir import checkpointing

    state = {"w": tf.Variable([value, value]), "step": tf.Variable(0, dtype=tf.int64)}
    return state, checkpointing.RunCheckpointer(workdir, state, counter=None)


def _save(workdir: str, checkpointer, state, value: float, step: int) -> dict:
    state["w"].assign([value, value])
    state["step"].assign(step)
    record = checkpointer.save()
    counts = dict(record["counts"], learner_steps=step)  # no counter here: record the step
    record["counts"] = counts
    from bprl.launch.rundir import checkpoint_record

    with open(checkpoint_record.counts_path(workdir), "w") as f:
        json.dump(record, f)
    return record


def test_a_stop_during_a_long_update_still_records_the_latest_counts(tmp_path):
    """The final checkpoint while an update holds the learner (the first update compiles,
    which can outlast the launcher's grace period): with no update applied since the last
    checkpoint, the latest counts are recorded with that unchanged learner checkpoint at
    once; once an update was applied, it waits for the update and saves the learner."""
    import threading

    import tensorflow as tf
    from acme.utils import counting

    from bprl.launch.rundir import checkpoint_record, checkpointing, resume

    workdir = str(tmp_path)
    state = {"w": tf.Variable([1.0]), "step": tf.Variable(0, dtype=tf.int64)}
    counter = counting.Counter()
    checkpointer = checkpointing.RunCheckpointer(
        workdir, state, counter, learner_steps=lambda: int(state["step"].numpy())
    )
    counter.increment(actor_steps=100)
    first = checkpointer.save()
    counter.increment(actor_steps=900)  # the actors go on while the learner compiles

    update_lock = threading.Lock()
    update_lock.acquire()  # an update in progress (compiling), held past the stop
    started = time.monotonic()
    record = checkpointing.final_checkpoint(checkpointer, update_lock, wait_secs=1.0)
    assert time.monotonic() - started < 10
    assert record["learner"] == first["learner"]
    assert record["counts"]["actor_steps"] == 1000 and record["counts"]["learner_steps"] == 0
    latest = checkpoint_record.load_record(checkpoint_record.counts_path(workdir))
    assert latest["counts"]["actor_steps"] == 1000 and resume.check_record(latest) is None

    state["step"].assign(1)  # an update was applied; the next one is still running
    state["w"].assign([2.0])
    threading.Timer(2.0, update_lock.release).start()
    record = checkpointing.final_checkpoint(checkpointer, update_lock, wait_secs=0.5)
    assert record["learner"] != first["learner"] and record["counts"]["learner_steps"] == 1
    restored = {"w": tf.Variable([0.0]), "step": tf.Variable(0, dtype=tf.int64)}
    assert checkpointing.RunCheckpointer(workdir, restored, None).restore()
    assert restored["w"].numpy().tolist() == [2.0]


def _can_mount_tmpfs() -> bool:
    probe = subprocess.run(
        ["unshare", "--mount", "--map-root-user", "sh", "-c", "mount -t tmpfs -o size=1m x /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path):
    """A checkpoint that fails partway (a full disk: a small tmpfs in a private mount
    namespace; where mounts are not allowed, a file-size limit that fails the write the
    same way; BPRL_TEST_FSIZE=1 forces that path) is logged, the learner goes on, the
    records still name the previous complete checkpoint whose files are unchanged and
    which restores; once there is space again, checkpoints resume."""
    workdir = str(tmp_path / "ckpt")
    os.makedirs(workdir)
    script = os.path.join(REPO, "tests", "full_disk_checkpoint.py")
    if os.environ.get("BPRL_TEST_FSIZE") != "1" and _can_mount_tmpfs():
        command = [
            "unshare", "--mount", "--map-root-user", "sh", "-c",
            'mount -t tmpfs -o size=16m tmpfs "$0" && exec "$1" "$2" "$0" tmpfs',
            workdir, sys.executable, script,
        ]  # fmt: skip
        fault = "No space left on device"
    else:
        command = [sys.executable, script, workdir, "fsize"]
        fault = "File too large"
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["failed_save"] is None
    assert "checkpoint failed" in result.stderr and fault in result.stderr, result.stderr[-3000:]
    assert seen["record_learner"] == seen["first_learner"] and seen["record_check"] is None
    assert seen["first_files_unchanged"]
    assert seen["restored"] and seen["restored_w"] == [1.0] * 1000 and seen["restored_step"] == 1
    assert seen["again"]


def test_truncated_latest_learner_checkpoint_falls_back_to_the_previous(tmp_path, capsys):
    """Real TensorFlow checkpoints: the newest one's data file is cut short; the resume
    reports it and restores the previous complete checkpoint instead."""
    from bprl.launch.rundir import checkpoint_record, resume

    workdir = str(tmp_path)
    state, checkpointer = _tiny_checkpointer(workdir, 0.0)
    _save(workdir, checkpointer, state, 1.0, 10)
    previous = _save(workdir, checkpointer, state, 2.0, 20)
    latest = _save(workdir, checkpointer, state, 3.0, 30)
    (data,) = [
        os.path.join(os.path.dirname(latest["learner"]), name)
        for name in os.listdir(os.path.dirname(latest["learner"]))
        if name.startswith(os.path.basename(latest["learner"]) + ".data")
    ]
    with open(data, "r+b") as f:
        f.truncate(os.path.getsize(data) // 2)

    chosen = resume.prepare_resume(workdir)
    out = capsys.readouterr().out
    assert chosen["learner"] == previous["learner"]
    assert "counts.json cannot be restored" in out and "unreadable" in out
    assert "resuming from the previous checkpoint instead: learner step 20" in out
    assert checkpoint_record.load_counts(workdir)["learner_steps"] == 20  # the counter agrees
    restored, fresh = _tiny_checkpointer(workdir, -1.0)
    assert fresh.restore()
    assert restored["w"].numpy().tolist() == [2.0, 2.0] and int(restored["step"]) == 20
    # Saving again goes on from there, and the records name checkpoints that exist.
    _save(workdir, fresh, restored, 4.0, 21)
    for path in (
        checkpoint_record.counts_path(workdir),
        checkpoint_record.previous_counts_path(workdir),
    ):
        assert resume.check_record(checkpoint_record.load_record(path)) is None


def test_no_readable_checkpoint_is_one_clear_error(tmp_path):
    from bprl.launch.rundir import checkpoint_record, resume

    workdir = str(tmp_path)
    state, checkpointer = _tiny_checkpointer(workdir, 0.0)
    for step in (1, 2):
        record = _save(workdir, checkpointer, state, float(step), step)
    learner_dir = os.path.dirname(record["learner"])
    for name in os.listdir(learner_dir):
        if ".data-" in name:
            os.remove(os.path.join(learner_dir, name))
    with pytest.raises(resume.CheckpointError) as error:
        resume.prepare_resume(workdir)
    message = str(error.value)
    assert "no readable checkpoint" in message
    assert f"delete {checkpoint_record.checkpoint_dir(workdir)}" in message


def _node(workdir: str, group: str):
    """The run's node process of `group` (task 0), or None."""
    for proc in _node_processes(workdir):
        try:
            if proc.environ().get("BPRL_NODE_GROUP") == group:
                return proc
        except Exception:  # noqa: BLE001 - gone
            pass
    return None


def _checkpoint_with_steps(workdir: str, steps: int):
    record = read_checkpoint_record(workdir)
    return record if record and record["counts"].get("learner_steps", 0) >= steps else None


def _assert_records_name_existing_checkpoints(workdir: str) -> None:
    from bprl.launch.rundir import checkpoint_record, resume

    for path in (
        checkpoint_record.counts_path(workdir),
        checkpoint_record.previous_counts_path(workdir),
    ):
        record = checkpoint_record.load_record(path)
        assert record is not None, path
        assert resume.check_record(record) is None, (path, record)


@pytest.mark.slow  # about 2 minutes; the healing test below names the node too
def test_a_killed_learner_is_named_and_stops_the_run_when_no_restart_is_allowed(tmp_path):
    workdir = str(tmp_path / "run")
    proc = _start(
        workdir,
        "--config.stop.max_actor_steps=1000000",
        "--config.reliability.max_program_restarts=0",
    )
    try:
        wait_for(lambda: _checkpoint_with_steps(workdir, 1), 240, "a learner checkpoint")
        learner = _node(workdir, "learner")
        learner.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=90)
    finally:
        _kill_all(workdir)
    assert proc.returncode == 1
    assert "error: learner/0 died (SIGKILL)" in err, err[-3000:]
    assert f"last lines of learner/0 ({workdir}/logs/learner/0):" in err
    assert "restart budget is spent (reliability.max_program_restarts=0)" in err
    wait_for(lambda: not run_processes(workdir), 5, "no process of the run left")


# The healing runs' learner budget: far enough that the kill (after the first checkpoint
# with 5 steps) lands before it. At `tiny` sizes the bfloat16 learner kernels (no
# whole-update XLA compilation) reach ~450 steps within 7 s of starting on 2 cores, past
# the 300 this once was.
LEARNER_BUDGET = 3000


def _start_to_learner_budget(workdir: str):
    """A run that ends at LEARNER_BUDGET learner steps and restarts after 1 s: actors racing
    ahead on a loaded machine cannot end the run (at its budget) before a kill is noticed."""
    return _start(
        workdir,
        "--config.stop.max_actor_steps=0",
        f"--config.stop.max_learner_steps={LEARNER_BUDGET}",
        "--config.reliability.restart_backoff_secs=1",
    )


@pytest.mark.slow  # about 3 minutes on 2 cores: two program starts
def test_a_killed_learner_heals_by_restarting_the_program_from_its_checkpoint(tmp_path):
    """kill -9 the learner: the launcher names it, restarts the whole program from the
    last complete checkpoint by itself, and the run reaches its budget without a person."""
    workdir = str(tmp_path / "run")
    proc = _start_to_learner_budget(workdir)
    try:
        at_kill = wait_for(lambda: _checkpoint_with_steps(workdir, 5), 300, "a checkpoint")
        _node(workdir, "learner").send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
    finally:
        _kill_all(workdir)
    assert proc.returncode == 0, err[-3000:]
    assert "error: learner/0 died (SIGKILL)" in err
    assert "restart 1 of 3 in 1 s" in err
    assert (
        "resuming" in out and "summary: " in out
    )  # the end-of-run summary (launch/rundir/summary.py)
    (entry,) = [json.loads(line) for line in open(os.path.join(workdir, "restarts.jsonl"))]
    assert entry["nodes"] == ["learner/0"] and entry["cause"] == "SIGKILL"
    assert entry["checkpoint_learner_steps"] >= at_kill["counts"]["learner_steps"]
    learner_log = open(os.path.join(workdir, "logs", "learner", "0")).read()
    resumed_at = int(re.search(r"learner resumed at step (\d+)", learner_log).group(1))
    assert resumed_at >= at_kill["counts"]["learner_steps"]
    assert os.path.isdir(os.path.join(workdir, "logs.failed.1"))  # the failed attempt's logs
    final = read_checkpoint_record(workdir)
    assert final["counts"]["learner_steps"] >= LEARNER_BUDGET > resumed_at
    _assert_restart_in_tensorboard(workdir, "learner/0", entry)
    _assert_records_name_existing_checkpoints(workdir)  # after a normal stop
    assert run_processes(workdir) == []


def _assert_restart_in_tensorboard(workdir: str, node: str, entry: dict) -> None:
    """The launcher's TensorBoard run holds the restart: its count, the learner steps lost
    and a text note naming the node (read back with TensorBoard's own reader)."""
    from tensorboard.backend.event_processing import event_accumulator

    from bprl.launch.rundir import events

    launcher = os.path.join(workdir, "launcher")
    scalars = events.read_events(launcher)
    assert [value for _, _, value in scalars["program_restarts"]] == [1.0]
    assert [value for _, _, value in scalars["learner_steps_lost"]] == [
        float(entry["learner_steps_lost"])
    ]
    accumulator = event_accumulator.EventAccumulator(launcher, size_guidance={"tensors": 0})
    accumulator.Reload()
    (note,) = accumulator.Tensors("reliability/restart")
    text = note.tensor_proto.string_val[0].decode()
    assert f"{node} died (SIGKILL)" in text and "restart 1 of 3" in text, text


@pytest.mark.slow  # about 3 minutes on 2 cores: two program starts
def test_a_killed_replay_node_heals_by_restarting_the_program_from_its_checkpoint(tmp_path):
    """kill -9 the Reverb replay node: the same whole-program restart; the learner goes on
    from its checkpoint and learns past the step it had at the kill."""
    workdir = str(tmp_path / "run")
    proc = _start_to_learner_budget(workdir)
    try:
        wait_for(lambda: _checkpoint_with_steps(workdir, 5), 300, "a checkpoint")
        killed_at = time.time()
        _node(workdir, "replay").send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
    finally:
        _kill_all(workdir)
    assert proc.returncode == 0, err[-3000:]
    assert "error: replay/0 died (SIGKILL)" in err, err[-3000:]
    assert "restart 1 of 3 in 1 s" in err
    (entry,) = [json.loads(line) for line in open(os.path.join(workdir, "restarts.jsonl"))]
    assert entry["nodes"] == ["replay/0"] and entry["cause"] == "SIGKILL"
    assert entry["time"] >= killed_at
    final = read_checkpoint_record(workdir)
    assert final["counts"]["learner_steps"] >= LEARNER_BUDGET > entry["learner_steps_at_failure"]
    _assert_restart_in_tensorboard(workdir, "replay/0", entry)
    _assert_records_name_existing_checkpoints(workdir)
    assert run_processes(workdir) == []


@pytest.mark.slow  # starts a 16-actor program (about 1 minute on 2 cores)
def test_sigterm_while_a_16_actor_program_starts_leaves_nothing(tmp_path):
    """SIGTERM as soon as the first node's log file appears, i.e. while Launchpad is still
    starting node processes: the launcher stops what it started and exits; nothing of the
    run is left 30 s after the signal."""
    workdir = str(tmp_path / "run")
    proc = _start(workdir, "--config.actors.num_actors=16", "--config.stop.max_actor_steps=1000000")
    logs = os.path.join(workdir, "logs")
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not os.path.isdir(logs):
            time.sleep(0.01)
        assert os.path.isdir(logs), "the launch never started"
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        wait_for(
            lambda: not run_processes(workdir),
            max(1.0, 30 - (time.monotonic() - sent)),
            "no process",
        )
    finally:
        _kill_all(workdir)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if "while starting" in out:  # the signal landed in Launchpad's launch loop
        assert "stopped by SIGTERM while starting; no process of the run is left" in out
        assert proc.returncode == 130, err[-2000:]


@pytest.mark.slow  # a sweep's run up to its nodes, then 30 s of shutdown
def test_sigkilled_sweep_takes_its_runs_along(tmp_path):
    """kill -9 `bprl sweep`: its `bprl run` child stops its program as on SIGTERM and
    exits; nothing of the sweep is left within 45 s (run: 25 s graceful stop, then kill)."""
    sweep_dir = str(tmp_path / "sweep")
    proc = subprocess.Popen(
        [
            BPRL,
            "sweep",
            f"--config={CONFIG}:tiny",
            "--config.stop.max_actor_steps=1000000",
            "--seeds=1",
            f"--workdir={sweep_dir}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    run_dir = os.path.join(sweep_dir, "seed_0")
    try:
        wait_for(lambda: len(actor_workers(run_dir)) == 2, 240, "the run's actor workers")
        killed = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: not run_processes(sweep_dir), 45, "every process of the sweep to end")
        assert time.monotonic() - killed <= 45
    finally:
        _kill_all(sweep_dir)


_COUNTER_SERVER = """
import sys, time, courier
from acme.utils import counting
counter = counting.Counter()
counter.increment(actor_steps=int(sys.argv[2]))
server = courier.Server("counter", port=int(sys.argv[1]))
server.Bind("get_counts", counter.get_counts)
server.Start()
print("up", flush=True)
time.sleep(600)
"""


def test_a_hung_counter_never_takes_the_recorded_counts_back(tmp_path):
    """A restarted learner whose counter hangs (SIGSTOP; the chaos soak found it) writes
    its final record with the last counts it could read: none yet. That record must keep
    the newest record's actor steps, not take them back to 0 for the next resume."""
    import courier
    import portpicker
    import tensorflow as tf

    from bprl.launch.rundir import checkpoint_record, checkpointing

    workdir = str(tmp_path)
    port = portpicker.pick_unused_port()
    server = subprocess.Popen(
        [sys.executable, "-c", _COUNTER_SERVER, str(port), "1000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout.readline().strip() == "up"
        counter = courier.Client(f"localhost:{port}", call_timeout=8)  # ends at teardown
        state = {"w": tf.Variable([1.0]), "step": tf.Variable(5, dtype=tf.int64)}
        steps = lambda: int(state["step"].numpy())  # noqa: E731
        first = checkpointing.RunCheckpointer(workdir, state, counter, learner_steps=steps)
        assert first.save()["counts"]["actor_steps"] == 1000
        # the program restarts; the new learner restores, and the counter hangs before
        # the learner ever read it
        again = checkpointing.RunCheckpointer(workdir, state, counter, learner_steps=steps)
        assert again.restore()
        os.kill(server.pid, signal.SIGSTOP)
        state["step"].assign(7)
        record = checkpointing.final_checkpoint(again, threading.Lock())
        assert record["counts"]["actor_steps"] == 1000 and record["counts"]["learner_steps"] == 7
        # a checkpointer that never restored (its counts empty) keeps them too
        fresh = checkpointing.RunCheckpointer(workdir, state, counter, learner_steps=steps)
        assert fresh.save()["counts"]["actor_steps"] == 1000
        newest = checkpoint_record.load_record(checkpoint_record.counts_path(workdir))
        assert newest["counts"]["actor_steps"] == 1000
    finally:
        server.kill()
        server.wait()
