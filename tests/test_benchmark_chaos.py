"""benchmarks/chaos.py runs end to end at a tiny size, for one fault: SIGSTOP of the
learner, which the launcher's liveness watch finds and heals (no timing assertions
beyond the bound).

Slow (about 4 minutes on 2 cores: two program starts): run it with `make test-slow`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANG_SECS = 15


@pytest.mark.slow
def test_chaos_one_stopped_learner_is_found_healed_and_reported(tmp_path):
    out = tmp_path / "chaos.json"
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "chaos.py"),
            "--config=experiments/configs/walker_walk.py:tiny",
            "--override=stop.max_actor_steps=0",
            "--override=stop.max_learner_steps=3000",
            "--faults=1",
            "--every-minutes=0.2",
            "--targets=learner",
            "--signals=SIGSTOP",
            f"--hang-timeout-secs={HANG_SECS}",
            "--restart-backoff-secs=1",
            "--checkpoint-secs=3",
            "--sample-secs=2",
            "--no-baseline",
            f"--workdir={tmp_path}",
            f"--out={out}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    report = json.loads(out.read_text())
    chaos = report["chaos"]
    assert chaos["exit_code"] == 0
    (fault,) = chaos["faults"]
    assert fault["node"] == "learner/0" and fault["signal"] == "SIGSTOP"
    assert fault["how"] == "program restart" and fault["cause"] == "hung"
    assert fault["detected_line"].startswith("error: learner/0 made no progress for")
    # Found after the bound, within it plus a poll and two probe timeouts.
    assert HANG_SECS <= fault["detected_after_s"] <= HANG_SECS + 15, fault
    assert fault["recovered_after_s"] >= fault["detected_after_s"]
    assert fault["learner_steps_lost"] is not None
    assert chaos["counts_never_backwards"], chaos["backwards"]
    assert chaos["left_behind"] == 0
    assert chaos["samples"] and max(s["processes"] for s in chaos["samples"]) > 5
    assert [entry["cause"] for entry in chaos["restarts"]] == ["hung"]
    table = (tmp_path / "chaos.md").read_text()
    assert "| learner SIGSTOP | 1 |" in table and "program restart" in table
    with open(tmp_path / "chaos.png", "rb") as f:  # the memory and process-count figure
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
