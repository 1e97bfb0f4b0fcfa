"""Sweeps of the tiny walker config with real `bprl run` subprocesses and event files."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from bprl.launch import sweep
from bprl.launch.rundir import events

# pytest-xdist (the default run): these tests stay on one worker, for
# its module fixture (two sweeps).
pytestmark = pytest.mark.xdist_group("test_sweep")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--config=experiments/configs/walker_walk.py:tiny",
    "--config.stop.max_actor_steps=2000",
]


def bprl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bprl.launch.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def two_seed_sweep(tmp_path_factory):
    """--seeds=1, then the same sweep with --seeds=2: the second only runs seed_1."""
    workdir = str(tmp_path_factory.mktemp("sweep"))
    first = bprl("sweep", *TINY, "--seeds=1", f"--workdir={workdir}")
    assert first.returncode == 0, first.stdout + first.stderr
    with open(os.path.join(workdir, "seed_0", sweep.DONE)) as f:
        marker_before = f.read()
    events_before = sorted(os.listdir(os.path.join(workdir, "seed_0", "evaluator_0")))
    second = bprl("sweep", *TINY, "--seeds=2", f"--workdir={workdir}")
    assert second.returncode == 0, second.stdout + second.stderr
    return workdir, first, second, marker_before, events_before


def test_sweep_runs_every_seed_to_completion(two_seed_sweep):
    workdir, first, _, _, _ = two_seed_sweep
    assert "1 runs, 0 already done, 1 to run" in first.stdout
    for seed in (0, 1):
        run_dir = os.path.join(workdir, f"seed_{seed}")
        with open(os.path.join(run_dir, sweep.DONE)) as f:
            marker = json.load(f)
        assert marker["returncode"] == 0 and marker["seed"] == seed
        with open(os.path.join(run_dir, "config.json")) as f:
            assert json.load(f)["seed"] == seed
        scalars = events.read_scalars(os.path.join(run_dir, "evaluator_0"))
        assert scalars["policy_return"] and scalars["prior_return"]
    # the runs log the periodic progress line (not a TTY: one line at a time)
    with open(os.path.join(workdir, "seed_1", sweep.RUN_LOG)) as f:
        assert re.search(r"actor [\d,]+/2,000 .*learner [\d,]+ .*steps/s .*elapsed", f.read())


def test_rerun_runs_only_the_missing_seeds(two_seed_sweep):
    workdir, _, second, marker_before, events_before = two_seed_sweep
    assert "2 runs, 1 already done, 1 to run" in second.stdout
    assert "started seed_1" in second.stdout and "started seed_0" not in second.stdout
    with open(os.path.join(workdir, "seed_0", sweep.DONE)) as f:
        assert f.read() == marker_before  # seed_0 was not run again
    assert sorted(os.listdir(os.path.join(workdir, "seed_0", "evaluator_0"))) == events_before
    third = bprl("sweep", *TINY, "--seeds=2", f"--workdir={workdir}", timeout=60)
    assert third.returncode == 0 and "2 already done, 0 to run" in third.stdout


def test_report_table_equals_the_evaluator_returns(two_seed_sweep):
    workdir = two_seed_sweep[0]
    result = bprl("report", workdir, timeout=120)
    assert result.returncode == 0, result.stderr
    report_dir = os.path.join(workdir, "report")
    for name in ("policy_return.png", "prior_return.png", "episode_return.png"):
        with open(os.path.join(report_dir, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(os.path.join(report_dir, "summary.csv")) as f:
        rows = {(r["variant"], r["metric"]): r for r in csv.DictReader(f)}
    with open(os.path.join(report_dir, "summary.md")) as f:
        markdown = f.read()
    for metric in ("policy_return", "prior_return"):
        curves = [
            events.read_scalars(os.path.join(workdir, f"seed_{k}", "evaluator_0"))[metric]
            for k in (0, 1)
        ]
        finals = [curve[-1][1] for curve in curves]
        row = rows[("default", metric)]
        assert int(row["seeds"]) == 2
        assert float(row["final_mean"]) == pytest.approx(np.mean(finals))
        assert float(row["final_min"]) == pytest.approx(min(finals))
        assert float(row["final_max"]) == pytest.approx(max(finals))
        assert f"| default | {metric} | 2 | {np.mean(finals):.2f} |" in markdown


@pytest.mark.slow  # a SIGKILLed sweep: test_self_healing (slow too); ~20 s more
def test_sigterm_stops_the_runs_without_orphans(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bprl.launch.cli",
            "sweep",
            *TINY,
            "--seeds=2",
            f"--workdir={tmp_path}",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    child = None
    for line in proc.stdout:  # wait until the first run started ...
        match = re.search(r"started seed_0 \(pid (\d+)\)", line)
        if match:
            child = int(match.group(1))
            break
    assert child is not None
    logs = tmp_path / "seed_0" / "logs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (logs.is_dir() and len(list(logs.iterdir())) >= 5):
        time.sleep(0.5)  # ... and its nodes are up
    nodes = [p for p in psutil.process_iter() if _pgid(p.pid) == child]
    assert len(nodes) > 1  # the launcher and its node processes share the run's group
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, rest
    assert "interrupted" in rest
    psutil.wait_procs(nodes, timeout=30)
    assert [p.pid for p in psutil.process_iter() if _pgid(p.pid) == child] == []
    assert not (tmp_path / "seed_0" / sweep.DONE).exists()
    assert not (tmp_path / "seed_1").exists()


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_plan_of_a_swept_field(tmp_path):
    from bprl.experiments.configs import walker_walk

    config = walker_walk.get_config("tiny")
    runs = sweep.plan(
        config,
        str(tmp_path),
        2,
        "prior_info",
        sweep.split_values("proprioception;proprioception,velocity"),
    )
    assert [os.path.relpath(r.run_dir, tmp_path) for r in runs] == [
        "prior_info=proprioception/seed_0",
        "prior_info=proprioception/seed_1",
        "prior_info=proprioception+velocity/seed_0",
        "prior_info=proprioception+velocity/seed_1",
    ]
    assert runs[2].config.prior_info == ("proprioception", "velocity")
    assert runs[3].config.seed == 1
    assert runs[3].overrides == [
        "--config.prior_info=('proprioception', 'velocity')",
        "--config.seed=1",
    ]
    with pytest.raises(ValueError, match="no field"):
        sweep.plan(config, str(tmp_path), 2, "agent.nope", ["1"])
    with pytest.raises(ValueError, match="agent.alpha"):
        sweep.plan(config, str(tmp_path), 1, "agent.alpha", ["'high'"])


def test_config_args_are_forwarded_to_the_runs():
    argv = ["sweep", "--config", "a.py:tiny", "--config.seed=3", "--seeds=2", "--workdir=x"]
    assert sweep.config_args_from_argv(argv) == ["--config", "a.py:tiny", "--config.seed=3"]


def test_a_seed_dir_with_a_checkpoint_resumes_and_one_without_is_kept_aside(tmp_path):
    """Rerunning a sweep never deletes what an earlier attempt wrote."""
    from bprl.experiments.configs import walker_walk
    from bprl.launch.rundir import checkpoint_record

    runs = sweep.plan(walker_walk.get_config("tiny"), str(tmp_path), 2)
    said = []
    assert not sweep.prepare_run_dir(runs[0], said.append)  # a fresh seed
    assert os.path.isdir(runs[0].run_dir) and said == []
    # seed_0 left a checkpoint record: it resumes in place, its files untouched
    (tmp_path / "seed_0" / "events.out.tfevents.1").write_text("old")
    os.makedirs(checkpoint_record.checkpoint_dir(runs[0].run_dir))
    with open(checkpoint_record.counts_path(runs[0].run_dir), "w") as f:
        json.dump({"learner": "x", "counts": {"actor_steps": 1234}}, f)
    assert sweep.prepare_run_dir(runs[0], said.append)
    assert (tmp_path / "seed_0" / "events.out.tfevents.1").read_text() == "old"
    assert "resuming seed_0" in said[-1] and "1,234" in said[-1]
    # seed_1 stopped before any checkpoint: moved under .attempts/, a fresh directory made
    os.makedirs(runs[1].run_dir)
    (tmp_path / "seed_1" / "bprl_run.log").write_text("first attempt")
    assert not sweep.prepare_run_dir(runs[1], said.append)
    assert os.listdir(runs[1].run_dir) == []
    (kept,) = os.listdir(tmp_path / sweep.ATTEMPTS_DIR)
    assert kept.startswith("seed_1-")
    assert (tmp_path / sweep.ATTEMPTS_DIR / kept / "bprl_run.log").read_text() == "first attempt"
    assert sweep.seed_dirs(str(tmp_path)) == [runs[0].run_dir, runs[1].run_dir]


@pytest.mark.slow  # an interrupted run and its resumption: ~2 minutes
def test_an_interrupted_sweep_resumes_its_seed_from_the_checkpoint(tmp_path):
    args = [
        "sweep",
        "--config=experiments/configs/walker_walk.py:tiny",
        "--config.stop.max_actor_steps=6000",
        "--config.checkpoint.every_seconds=3",
        "--seeds=1",
        f"--workdir={tmp_path}",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bprl.launch.cli", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    counts = tmp_path / "seed_0" / "checkpoints" / "counts.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not counts.exists():
        time.sleep(0.5)
    assert counts.exists(), "the run wrote no checkpoint"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert proc.returncode == 130
    assert not (tmp_path / "seed_0" / sweep.DONE).exists()
    with open(counts) as f:
        checkpointed = json.load(f)["counts"]
    assert checkpointed.get("learner_steps", 0) > 0
    second = bprl(*args, timeout=400)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    assert "resuming seed_0 from its checkpoint" in second.stdout
    assert (tmp_path / "seed_0" / sweep.DONE).exists()
    assert not (tmp_path / sweep.ATTEMPTS_DIR).exists()
    logs = (tmp_path / "seed_0" / "logs" / "learner").glob("*")
    text = "".join(path.read_text() for path in logs)
    steps = [int(m) for m in re.findall(r"learner resumed at step (\d+)", text)]
    assert steps and steps[-1] > 0, text[-2000:]
