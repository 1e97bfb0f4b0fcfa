"""The second-order Markov target table: exact properties and chi-square tests on draws.

Chi-square tests use the level ALPHA = 0.001 (a fixed seed makes them deterministic; the
level says how surprising a failure would be for a correct sampler).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

import bprl.environments  # noqa: F401  (sets MUJOCO_GL before anything imports dm_control)
from bprl.environments import markov

ALPHA = 0.001
NUM_DRAWS = 100_000


def test_table_is_a_distribution_that_never_repeats_the_current_target():
    table = markov.transition_table(4, 0.9)
    for i, j in itertools.permutations(range(4), 2):
        assert table[i, j].sum() == pytest.approx(1.0)
        assert table[i, j, j] == 0.0
    for j in range(4):
        assert not table[j, j].any()


@pytest.mark.parametrize("num_targets,p", [(3, 0.9), (4, 0.9), (4, 0.5), (5, 0.7), (6, 0.95)])
def test_construction_properties_hold_exactly(num_targets, p):
    table = markov.transition_table(num_targets, p)
    others = 1.0 / (num_targets - 1)
    # Given the last two targets, exactly one next target has probability p (the maximum).
    for i, j in itertools.permutations(range(num_targets), 2):
        row = table[i, j]
        assert row.max() == p
        assert np.sum(row == p) == 1
        assert np.argmax(row) == markov.favoured_successor(i, j, num_targets)
    # For each current target, every candidate is favoured by exactly one previous target.
    for j in range(num_targets):
        favoured = [
            markov.favoured_successor(i, j, num_targets) for i in range(num_targets) if i != j
        ]
        assert sorted(favoured) == [k for k in range(num_targets) if k != j]
        # ... and the block is doubly stochastic (columns over previous targets sum to 1).
        block = table[:, j, :].sum(axis=0)
        np.testing.assert_allclose(np.delete(block, j), 1.0)
    # The stationary pair distribution is uniform over ordered pairs (checked, not assumed).
    stationary = markov.stationary_pair_distribution(table)
    expected = (1 - np.eye(num_targets)) / (num_targets * (num_targets - 1))
    np.testing.assert_allclose(stationary, expected, atol=1e-12)
    # Hence, given only the last target, every other target is equally likely.
    marginal = markov.first_order_marginal(table)
    np.testing.assert_allclose(marginal, (1 - np.eye(num_targets)) * others, atol=1e-12)


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError):
        markov.transition_table(2, 0.9)
    with pytest.raises(ValueError):
        markov.transition_table(4, 0.2)  # below 1/(K-1): p would not be the maximum
    with pytest.raises(ValueError):
        markov.transition_table(4, 1.1)


def _chi_square(observed: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Pearson statistic and degrees of freedom over the cells with positive probability."""
    mask = probs > 0
    assert observed[~mask].sum() == 0, "drew a target with probability zero"
    expected = observed.sum() * probs[mask]
    return float(((observed[mask] - expected) ** 2 / expected).sum()), int(mask.sum() - 1)


def test_empirical_second_order_statistics_match_the_table():
    """One chain of 100,000 draws; counts per context (last two) against the table row.

    Given the context, each draw is a fresh categorical draw (Markov property), so the
    per-context counts are multinomial and Pearson's test applies; the statistics of all
    K (K - 1) contexts are summed (independent given the context counts).
    """
    sampler = markov.TargetSequence(4, 0.9, seed=123)
    seq = sampler.sample(NUM_DRAWS)
    counts = np.zeros((4, 4, 4))
    np.add.at(counts, (seq[:-2], seq[1:-1], seq[2:]), 1)
    assert not np.any(seq[1:] == seq[:-1])
    total, dof = 0.0, 0
    for i, j in itertools.permutations(range(4), 2):
        stat, df = _chi_square(counts[i, j], sampler.table[i, j])
        total, dof = total + stat, dof + df
        empirical = counts[i, j] / counts[i, j].sum()
        assert np.argmax(empirical) == markov.favoured_successor(i, j, 4)
        assert empirical.max() == pytest.approx(0.9, abs=0.02)
    assert dof == 12 * 2
    assert stats.chi2.sf(total, dof) > ALPHA, (total, dof)


def test_empirical_first_order_statistics_are_uniform():
    """100,000 independent triples (fresh sampler episodes) give iid draws of the next
    target given the last one; each row of P(next | last) must be uniform over the others."""
    sampler = markov.TargetSequence(4, 0.9, seed=7)
    counts = np.zeros((4, 4))
    for _ in range(NUM_DRAWS):
        _, last, nxt = sampler.sample(3)
        counts[last, nxt] += 1
    total, dof = 0.0, 0
    for j in range(4):
        probs = np.full(4, 1.0 / 3.0)
        probs[j] = 0.0
        stat, df = _chi_square(counts[j], probs)
        total, dof = total + stat, dof + df
        np.testing.assert_allclose(np.delete(counts[j] / counts[j].sum(), j), 1 / 3, atol=0.02)
    assert stats.chi2.sf(total, dof) > ALPHA, (total, dof)


def test_same_seed_same_sequence():
    a = markov.TargetSequence(4, 0.9, seed=5).sample(500)
    b = markov.TargetSequence(4, 0.9, seed=5).sample(500)
    c = markov.TargetSequence(4, 0.9, seed=6).sample(500)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sampler_accepts_a_random_state():
    sampler = markov.TargetSequence(4, 0.9, seed=np.random.RandomState(0))
    seq = sampler.sample(1000)
    assert set(seq.tolist()) == {0, 1, 2, 3}
    assert not np.any(seq[1:] == seq[:-1])
