"""benchmarks/samples_ahead.py runs end to end at a tiny size (no timing assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # ~1 min; benchmarks at a tiny size run in `make test-slow`
def test_samples_ahead_runs_and_writes_json(tmp_path):
    out = tmp_path / "ahead.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "samples_ahead.py")]
        + ["--updates-per-call", "1,2", "--hold", "1", "--items", "40", "--elements", "5"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    batch = 16  # walker_walk.py:tiny
    assert {(r["pipeline"], r["updates_per_call"]) for r in report["ahead"]} == {
        (kind, k) for kind in ("node", "acme") for k in (1, 2)
    }
    for row in report["ahead"]:
        # the first element was taken, so at least its samples and min_size items exist
        assert row["samples_taken"] >= batch * row["updates_per_call"]
        assert row["items_inserted"] >= 20
    for row in report["rate"]:
        assert row["batch_size"] == batch and row["samples_per_s"] > 0
    assert "samples ahead" in proc.stdout and "samples/s" in proc.stdout
