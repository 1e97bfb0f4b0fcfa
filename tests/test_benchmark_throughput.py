"""benchmarks/throughput.py and learner_settings.py run end to end at a tiny size (no timing
assertions).

Slow (about 3 minutes: it compiles our and Acme's learners for two tasks): run it with
`make test-slow`.
"""

from __future__ import annotations

import pytest

from tests_support import run_benchmark

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
    proc, report = run_benchmark("throughput.py", TINY, tmp_path)
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


@pytest.mark.slow
def test_learner_settings_runs_every_arm_in_its_own_process(tmp_path):
    """benchmarks/learner_settings.py at a tiny size: every arm (our two kernels, oneDNN
    off and on, Acme's learner) measured in a child process with its own environment."""
    tiny = ["--tiny", "--tasks=walker_walk", "--rounds=1", "--updates=1", "--warmup=1"]
    proc, report = run_benchmark("learner_settings.py", [*tiny, "--fill-steps=60"], tmp_path)
    result = report["tasks"]["walker_walk"]
    assert set(result["arms"]) == {
        "ours_xla_onednn_off",
        "ours_xla_onednn_on",
        "ours_bfloat16",
        "acme_onednn_off",
        "acme_onednn_on",
    }
    for arm in result["arms"].values():
        assert arm["updates_per_s"] > 0 and arm["update_over_floor"] > 0
    # only the bfloat16 arm is also set against a bfloat16 product's rate
    assert [n for n, a in result["arms"].items() if "update_over_bfloat16_floor" in a] == [
        "ours_bfloat16"
    ]
    assert result["arms"]["ours_bfloat16"]["update_over_bfloat16_floor"] > 0
    assert result["node_kernels"] == "xla_float32"  # an update of a few kFLOP: not bfloat16
    assert result["ours_node_over_acme_onednn"] > 0
    assert "Acme as installed" in proc.stdout
