"""benchmarks/env_speed.py runs end to end at a tiny size (no timing assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_env_speed_runs_and_writes_json(tmp_path):
    out = tmp_path / "speed.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "env_speed.py"), "--steps", "5"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    names = set(report["results"])
    assert {"seqnav_pointmass", "seqnav_ant", "ant_box", "multitask_pointmass"} <= names
    assert "dm_control point_mass/easy" in names
    assert "dm_control locomotion Ant GoToTarget" in names
    for result in report["results"].values():
        assert result["steps"] == 5 and result["steps_per_s"] > 0
    assert "steps/s" in proc.stdout
