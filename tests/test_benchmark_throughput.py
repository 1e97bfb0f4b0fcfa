"""benchmarks/throughput.py runs end to end at a tiny size (no timing assertions).

Slow (about 3 minutes: it compiles our and Acme's learners for two tasks): run it with
`make test-slow`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = [
    "--rounds=1",
    "--env-steps=20",
    "--actor-steps=20",
    "--acme-actor-steps=5",
    "--batch-size=4",
    "--sequence-length=3",
    "--num-samples=2",
    "--policy-hidden=8",
    "--prior-hidden=8",
    "--critic-hidden=8,8",
    "--fill-steps=20",
    "--learner-updates=1",
    "--warmup-updates=1",
    "--matmul-repeats=1",
    "--skip-system",
    "--episode-steps=30",
]


@pytest.mark.slow
def test_throughput_runs_and_writes_json(tmp_path):
    out = tmp_path / "throughput.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "throughput.py"), *TINY]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["tasks"]) == {"walker_walk", "seqnav_pointmass"}
    for result in report["tasks"].values():
        for key in (
            "actor_over_raw",
            "actor_over_acme",
            "learner_over_acme",
            "raw_steps_per_s",
            "actor_steps_per_s",
            "acme_actor_steps_per_s",
            "learner_updates_per_s",
            "acme_learner_updates_per_s",
            "learner_transitions_per_s",
            "update_flops",
            "update_over_floor",
        ):
            assert result[key] > 0, key
        assert result["items_written"] > 0
    assert report["matmul_flops_per_s"] > 0
    assert "uptime_start" in report and "system" not in report
    assert "actor env steps/s" in proc.stdout
