"""benchmarks/profile_roles.py profiles a real run at a tiny size (no timing assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmarks import profile_roles

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_stacks_are_named_by_their_first_matching_rule():
    learner = "run (threading.py:953);step (agents/learner.py:334);"
    assert profile_roles.classify(learner + "__next__ (tensorflow/data/ops/iterator_ops.py:1)") == (
        "learner: wait for a batch"
    )
    assert profile_roles.classify(learner + "learn_from_sample (agents/learner.py:325)") == (
        "learner: compiled update"
    )
    actor = "run (agents/packed_actor.py:170);"
    assert profile_roles.classify(
        actor + "observe (agents/packed_actor.py:108);add (agents/fast_adder.py:1)"
    ) == ("inserts (rate limiter included)")
    assert profile_roles.classify(actor + "step (dm_control/rl/control.py:1)") == "environment step"
    assert (
        profile_roles.classify(actor + "select_actions (agents/packed_actor.py:90)") == "inference"
    )
    assert profile_roles.classify("main (x.py:1)") == "other Python"


@pytest.mark.slow  # ~1.5 min: a tiny run, profiled for a few seconds
def test_profile_of_a_tiny_run_names_every_role_and_leaves_nothing(tmp_path):
    out = tmp_path / "profile.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "profile_roles.py")]
        + ["--config", "experiments/configs/point_mass_right.py:tiny"]
        + ["--warmup-secs", "45", "--window-secs", "6", "--workdir", str(tmp_path / "p")]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    processes = report["profile"]["processes"]
    assert {"launcher", "learner/0", "replay/0", "counter/0", "evaluator/0"} <= set(processes)
    assert {"actor/0 worker", "actor/1 worker"} <= set(processes)
    # py-spy saw the learner's training thread and the actors' main threads
    learner_threads = processes["learner/0"]["python_threads"]
    assert any(a.startswith("learner: ") for t in learner_threads for a in t["wall"])
    worker = processes["actor/0 worker"]["python_threads"]
    assert any(
        a in ("inserts (rate limiter included)", "environment step", "inference")
        for t in worker
        for a in t["wall"]
    )
    assert sum(p["cores"] for p in processes.values()) > 0
    assert "| learner/0 |" in proc.stdout
    from benchmarks.chaos_run import run_processes

    assert run_processes(str(tmp_path / "p" / "run")) == []
