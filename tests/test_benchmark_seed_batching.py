"""benchmarks/seed_batching.py at a tiny size: it runs, writes its report, and the learning
rule vectorised over a seed axis gives each seed the losses and gradients it has alone
(no timing assertions).

Slow (about 2 minutes of compiling): run it with `make test-slow`.
"""

from __future__ import annotations

import pytest

from tests_support import run_benchmark

TINY = [
    "--seeds=2",
    "--rounds=1",
    "--repeats=1",
    "--batch-size=4",
    "--sequence-length=3",
    "--num-samples=2",
    "--hidden=8",
    "--layers=2",
    "--fill-steps=50",
]


@pytest.mark.slow
def test_seed_batching_runs_and_vectorised_seeds_match_separate_ones(tmp_path):
    _, report = run_benchmark("seed_batching.py", TINY, tmp_path)
    for variant in ("one_seed", "seeds_in_turn", "seeds_stacked", "shared_weight_bound"):
        assert report["products"][f"{variant}_ms_per_seed"] > 0
    updates = report["updates"]
    for variant in ("one_seed_1_per_call", "one_seed_2_per_call", "seeds_vectorised"):
        assert updates[f"{variant}_ms_per_seed"] > 0
    # Losses [K, 3] and the gradient of every variable, stacked over the 2 seeds.
    assert updates["check"]["arrays"] > 3
    assert updates["check"]["max_relative_error"] < 1e-4
    assert "| updates | seeds_vectorised |" in (tmp_path / "report.md").read_text()
