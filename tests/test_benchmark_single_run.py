"""benchmarks/single_run.py at a tiny size: each variant's `bprl run` finishes with its
overrides applied, and the report holds its rates (no timing assertions).

Slow (two tiny runs, about 2 minutes): run it with `make test-slow`.
"""

from __future__ import annotations

import pytest

from tests_support import run_benchmark


@pytest.mark.slow
def test_single_run_benchmark_runs_each_variant_with_its_overrides(tmp_path):
    _, report = run_benchmark(
        "single_run.py",
        [
            "--config=experiments/configs/seqnav_pointmass.py:tiny",
            "--variant=base=",
            "--variant=one_thread=resources.learner_threads=1,logging.learner_every_steps=7",
            "--system-steps=1500",
            "--system-log-every=10",
            "--rounds=1",
        ],
        tmp_path,
    )
    assert set(report["variants"]) == {"base", "one_thread"}
    for runs in report["variants"].values():
        (run,) = runs
        assert run["returncode"] == 0, run.get("error")
        assert run["final_learner_steps"] > 0
        assert run["final_actor_steps"] > 0  # at the learner's last write
    # the overrides reached the run (the command line shows them)
    assert "--config.resources.learner_threads=1" in report["variants"]["one_thread"][0]["command"]
    assert "learner_threads" not in report["variants"]["base"][0]["command"]
