"""benchmarks/samples_ahead.py runs end to end at a tiny size (no timing assertions)."""

from __future__ import annotations

import pytest

from tests_support import run_benchmark


@pytest.mark.slow  # ~1 min; benchmarks at a tiny size run in `make test-slow`
def test_samples_ahead_runs_and_writes_json(tmp_path):
    proc, report = run_benchmark(
        "samples_ahead.py",
        ["--updates-per-call", "1,2", "--hold", "1", "--items", "40", "--elements", "5"],
        tmp_path,
        timeout=300,
    )
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
