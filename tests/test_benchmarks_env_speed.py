"""benchmarks/env_speed.py runs end to end at a tiny size (no timing assertions)."""

from __future__ import annotations

from tests_support import run_benchmark


def test_env_speed_runs_and_writes_json(tmp_path):
    proc, report = run_benchmark("env_speed.py", ["--steps", "5"], tmp_path, timeout=300)
    names = set(report["results"])
    assert {"seqnav_pointmass", "seqnav_ant", "ant_box", "multitask_pointmass"} <= names
    assert "dm_control point_mass/easy" in names
    assert "dm_control locomotion Ant GoToTarget" in names
    for result in report["results"].values():
        assert result["steps"] == 5 and result["steps_per_s"] > 0
    assert "steps/s" in proc.stdout
