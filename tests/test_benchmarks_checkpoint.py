"""The checkpoint benchmark runs at a tiny size and restores what it saved (no timings)."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_checkpoint_benchmark_round_trips_a_small_replay(tmp_path):
    out = tmp_path / "checkpoint.json"
    subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "benchmarks", "checkpoint.py"),
            "--items",
            "50",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=300,
        cwd=REPO,
    )
    result = json.loads(out.read_text())
    assert result["items"] >= 50
    assert result["restored_items"] == result["items"]
    assert result["checkpoint_mib"] > 0
