"""experiments/across_seeds.py and the analysis scripts' per-arm tables (issue 28)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from bprl.experiments import across_seeds, next_target_table, prior_modes, prior_policy_gap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BPRL = os.path.join(os.path.dirname(sys.executable), "bprl")


def test_the_bootstrap_interval_of_the_mean_against_its_exact_distribution():
    # Three seeds, 0, 0 and 1: a resample's mean is k/3 with k ~ Binomial(3, 1/3), so
    # P(mean = 0) = 8/27 ~ 0.30 and P(mean = 1) = 1/27 ~ 0.037: the 2.5% point is 0 and
    # the 97.5% point 2/3 (P(mean >= 2/3) = 7/27 > 2.5%, P(mean = 1) > 2.5% too: 1).
    mean, low, high = across_seeds.mean_interval([0.0, 0.0, 1.0])
    assert mean == pytest.approx(1 / 3)
    exact = sorted(
        np.mean(c) for c in itertools.product([0.0, 0.0, 1.0], repeat=3)
    )  # all 27 equally likely resamples
    assert low == pytest.approx(np.percentile(exact, 2.5), abs=1e-9)
    assert high == pytest.approx(np.percentile(exact, 97.5), abs=1 / 3 + 1e-9)
    assert 0.0 <= low <= mean <= high <= 1.0


def test_constant_seeds_give_a_point_and_nan_seeds_are_left_out():
    assert across_seeds.mean_interval([0.4, 0.4, float("nan"), 0.4]) == pytest.approx((0.4,) * 3)
    assert all(np.isnan(across_seeds.mean_interval([float("nan")])))
    assert across_seeds.fmt((float("nan"),) * 3) == "-"
    assert across_seeds.fmt((0.5, 0.25, 0.75)) == "0.50 [0.25, 0.75]"


def test_a_difference_interval_excludes_zero_only_when_the_arms_differ():
    rng = np.random.default_rng(0)
    same_a, same_b = rng.normal(0.5, 0.1, 5), rng.normal(0.5, 0.1, 5)
    diff, low, high = across_seeds.difference_interval(same_a, same_b)
    assert low < 0.0 < high and diff == pytest.approx(same_a.mean() - same_b.mean())
    far = same_a + 1.0
    diff, low, high = across_seeds.difference_interval(far, same_b)
    assert 0.0 < low < diff < high


def test_an_arm_is_a_sweeps_finished_seeds_or_one_run(tmp_path):
    for k in range(3):
        os.makedirs(tmp_path / "sweep" / f"seed_{k}")
        (tmp_path / "sweep" / f"seed_{k}" / "config.json").write_text("{}")
    runs = across_seeds.arm_runs(str(tmp_path / "sweep"))
    assert [os.path.basename(r) for r in runs] == ["seed_0", "seed_1", "seed_2"]  # none done
    (tmp_path / "sweep" / "seed_1" / "DONE").write_text("")
    assert across_seeds.arm_runs(str(tmp_path / "sweep")) == [str(tmp_path / "sweep" / "seed_1")]
    one = str(tmp_path / "sweep" / "seed_0")
    assert across_seeds.arm_runs(one) == [one]
    with pytest.raises(ValueError, match="neither a sweep"):
        across_seeds.arm_runs(str(tmp_path))
    with pytest.raises(ValueError, match="NAME=DIR"):
        across_seeds.parse_arms(["just_a_name"])


def test_modality_of_first_targets():
    stats = prior_modes.modality(np.array([0] * 5 + [1] * 5 + [-1] * 10), num_targets=4)
    assert stats == {"modes": 2.0, "effective_targets": pytest.approx(2.0), "reach": 0.5}
    one = prior_modes.modality(np.array([3] * 19 + [2]), num_targets=4)
    assert one["modes"] == 1.0  # 5% is no mode
    p = np.array([0.95, 0.05])
    assert one["effective_targets"] == pytest.approx(np.exp(-np.sum(p * np.log(p))))
    assert np.isnan(prior_modes.modality(np.array([-1, -1]), 4)["effective_targets"])


def test_on_target_share_counts_the_steps_within_reach():
    """4 steps: on target 0, between, on target 1, just outside reach: a half."""
    targets = np.tile([[0.0, 0.0, 1.0, 0.0]], (4, 1))
    data = {
        "task": np.asarray("seqnav_pointmass"),
        "observation/point_mass/position": np.array([[0.05, 0], [0.5, 0], [1, 0.02], [1.1, 0]]),
        "observation/target_positions": targets,
    }
    assert next_target_table.on_target_share(data) == 0.5


def test_arm_tables_give_each_arm_its_seeds_mean_and_difference():
    seeds = lambda values: [  # noqa: E731
        {
            "favoured": v,
            "triples": 40,
            "visits_per_episode": 5.0,
            "on_target": 0.25,
            "prior_kind": "lstm",
            "kind": "hierarchical",
            "modes": v,
            "effective_targets": v,
            "reach": 1.0,
            "policy_return": 10.0,
        }
        for v in values
    ]
    arms = {"a": seeds([0.3, 0.3, float("nan")]), "b": seeds([0.9, 0.9, 0.9])}
    text = next_target_table.arms_table(arms, p=0.9, num_targets=4)
    rows = [
        line for line in text.splitlines() if line.startswith("| a ") or line.startswith("| b ")
    ]
    assert "| 5.0, 5.0, 5.0 | 0.25, 0.25, 0.25 |" in rows[0]
    assert "| 2 of 3 |" in rows[0] and "| 0.30, 0.30, - | 0.30 [0.30, 0.30] | - |" in rows[0]
    assert rows[1].endswith("| 0.90 [0.90, 0.90] | 0.60 [0.60, 0.60] |")
    modes = prior_modes.arms_table(arms).splitlines()
    assert len(modes) == 2 + 2 * 4  # header, then 4 statistics x 2 arms
    assert modes[3].startswith("| b | hierarchical | modes (targets >= 10%) | 0.90, 0.90, 0.90 |")


def test_the_gap_statistics_equal_tfp_and_vanish_when_the_prior_is_the_policy():
    """The KL it uses (the learning rule's) against TensorFlow Probability's; then real
    networks of the point mass whose prior sees every key, with the prior's weights
    copied from the policy's: scales equal, no mean difference, KL 0; a different prior
    gives a positive KL."""
    import tensorflow_probability as tfp

    from bprl.agents.prior_kinds import make_networks
    from bprl.environments import registry

    rng = np.random.default_rng(0)
    mp, mq = rng.normal(size=(2, 7, 3))
    sp, sq = rng.uniform(0.2, 2.0, size=(2, 7, 3))
    expected = tfp.distributions.kl_divergence(
        tfp.distributions.MultivariateNormalDiag(mp, sp),
        tfp.distributions.MultivariateNormalDiag(mq, sq),
    ).numpy()
    np.testing.assert_allclose(prior_policy_gap.gaussian_kl(mp, sp, mq, sq), expected, rtol=1e-6)

    env = registry.make_environment("seqnav_pointmass", 0)
    spec = env.observation_spec()
    keys = sorted(spec)
    nets = make_networks(spec, 2, keys, (16,), (16,), (16,))
    observation = {k: rng.normal(size=(5,) + s.shape).astype(np.float32) for k, s in spec.items()}
    different = prior_policy_gap.head_gap(nets, observation)
    assert different["kl"] > 0.0 and different["mean_gap"] > 0.0
    for mine, theirs in zip(nets.prior.variables, nets.policy.variables, strict=True):
        mine.assign(theirs)
    same = prior_policy_gap.head_gap(nets, observation)
    assert same["prior_scale"] == pytest.approx(same["policy_scale"])
    assert same["mean_gap"] == 0.0 and same["kl"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_the_scripts_read_every_seed_of_a_real_sweep(tmp_path):
    """A 2-seed tiny sweep of the fixed configuration, then both scripts' --arm modes on it
    (prior_modes reads the fixed start; next_target_table records seqnav prior rollouts)."""
    sweeps = {
        "mt": ("multitask_pointmass.py:tiny", ["--config.task_kwargs.fixed_start=True"]),
        "seqnav": ("seqnav_pointmass.py:tiny", []),
    }
    for name, (config, extra) in sweeps.items():
        result = subprocess.run(
            [BPRL, "sweep", f"--config=experiments/configs/{config}", "--seeds=2",
             "--parallel=2", f"--workdir={tmp_path / name}", *extra],
            capture_output=True, text=True, timeout=900, cwd=REPO,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    script = os.path.join(REPO, "experiments", "prior_modes.py")
    out = subprocess.run(
        [sys.executable, script, f"--arm=a={tmp_path / 'mt'}", f"--arm=b={tmp_path / 'mt'}",
         "--episodes=4", "--samples=50", f"--out_table={tmp_path / 'modes.md'}"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    rows = (tmp_path / "modes.md").read_text().splitlines()
    b_modes = [r for r in rows if r.startswith("| b |") and "modes (" in r][0]
    # The same seeds in both arms: the difference is 0 and its interval holds 0 (it is
    # [0, 0] only when the seeds agree; each arm is resampled on its own).
    difference = b_modes.rstrip(" |").split("|")[-1].strip()
    mean, low, high = (
        float(x) for x in difference.replace("[", "").replace("]", "").replace(",", "").split()
    )
    assert mean == 0.0 and low <= 0.0 <= high, b_modes
    assert len(b_modes.split("|")[4].split(",")) == 2  # two seeds
    script = os.path.join(REPO, "experiments", "next_target_table.py")
    out = subprocess.run(
        [sys.executable, script, f"--arm=x={tmp_path / 'seqnav'}", "--prior_episodes=2",
         "--min_triples=0", f"--out_table={tmp_path / 'next.md'}"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    row = [r for r in (tmp_path / "next.md").read_text().splitlines() if r.startswith("| x |")][0]
    assert "| 2 of 2 |" in row or "| 1 of 2 |" in row or "| 0 of 2 |" in row
    script = os.path.join(REPO, "experiments", "prior_policy_gap.py")
    out = subprocess.run(
        [sys.executable, script, f"--arm=x={tmp_path / 'seqnav'}", "--policy_episodes=1",
         f"--out_table={tmp_path / 'gap.md'}"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [r for r in (tmp_path / "gap.md").read_text().splitlines() if r.startswith("| x |")]
    assert len(rows) == len(prior_policy_gap.STATISTICS)
    kl_row = next(r for r in rows if "KL" in r)
    per_seed = [float(v) for v in kl_row.split("|")[3].split(",")]
    assert len(per_seed) == 2 and all(v >= 0.0 for v in per_seed), kl_row
