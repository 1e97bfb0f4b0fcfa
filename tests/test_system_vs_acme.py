"""The whole-system benchmark beside Acme's DistributedSVG0, run at a tiny size.

It asserts that both programs were measured (first inserts, first update, rates, memory)
and stopped cleanly; it asserts no timing. Figures: docs/results.md, `make test-slow`.
"""

from __future__ import annotations

import pytest


@pytest.mark.slow  # two real programs, ours and Acme's, started and stopped (~4 min on 2 cores)
def test_system_benchmark_measures_both_programs_at_a_tiny_size(tmp_path):
    from benchmarks import system_vs_acme

    out = tmp_path / "vs_acme.json"
    report = system_vs_acme.main(
        [
            "--actors=2",
            "--window=6",
            "--batch-size=8",
            "--min-replay-size=20",
            "--samples-per-insert=4",
            "--timeout=400",
            f"--out={out}",
        ]
    )
    assert out.exists()
    ours, acme = report["runs"]
    assert (ours["side"], acme["side"]) == ("ours", "acme")
    for run in (ours, acme):
        assert "error" not in run and "skipped" not in run, run
        assert run["streams_inserted"] == 2
        assert 0 < run["all_inserted_s"] and 0 < run["first_update_s"]
        assert run["actor_steps_per_s"] > 0 and run["learner_updates_per_s"] > 0
        assert run["samples_per_insert"] > 0
        # every process of the program was found, and the actors told apart by their group
        assert run["total_gib"] > run["actor_gib"] > 0
        assert run["learner_pids"] == 1 and run["replay_pids"] == 1
        assert run["left_behind"] == 0
    assert acme["actor_pids"] == 2  # Acme: one process per actor
    assert acme["reverb_samples_per_insert"] > 0
