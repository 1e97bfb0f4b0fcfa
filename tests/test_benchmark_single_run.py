"""benchmarks/single_run.py at a tiny size: each variant's `bprl run` finishes with its
overrides applied, and the report holds its rates (no timing assertions).

Slow (two tiny runs, about 2 minutes): run it with `make test-slow`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_single_run_benchmark_runs_each_variant_with_its_overrides(tmp_path):
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "single_run.py"),
            "--config=experiments/configs/seqnav_pointmass.py:tiny",
            "--variant=base=",
            "--variant=one_thread=resources.learner_threads=1,logging.learner_every_steps=7",
            "--system-steps=1500",
            "--system-log-every=10",
            "--rounds=1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["variants"]) == {"base", "one_thread"}
    for runs in report["variants"].values():
        (run,) = runs
        assert run["returncode"] == 0, run.get("error")
        assert run["final_learner_steps"] > 0
        assert run["final_actor_steps"] > 0  # at the learner's last write
    # the overrides reached the run (the command line shows them)
    assert "--config.resources.learner_threads=1" in report["variants"]["one_thread"][0]["command"]
    assert "learner_threads" not in report["variants"]["base"][0]["command"]
