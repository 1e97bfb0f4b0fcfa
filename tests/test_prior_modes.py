"""experiments/prior_modes.py: first target reached per episode, shares, modes, the table."""

from __future__ import annotations

import numpy as np

from bprl.experiments import prior_modes

TARGETS = np.array([[-0.5, 0.5], [0.5, 0.5], [0.5, -0.5], [-0.5, -0.5]])


def _rollouts(goals: list[int | None], steps: int = 20) -> dict[str, np.ndarray]:
    """Straight paths from the centre to each goal (None: a path that stays at the centre)."""
    positions, episodes = [], []
    for episode, goal in enumerate(goals):
        end = np.zeros(2) if goal is None else TARGETS[goal]
        path = np.linspace(0.0, 1.0, steps)[:, None] * end[None]
        positions.append(np.concatenate([path, np.zeros((steps, 1))], axis=1))
        episodes += [episode] * steps
    return {
        prior_modes.POSITION_KEY: np.concatenate(positions),
        "observation/target_positions": np.tile(TARGETS.ravel(), (len(episodes), 1)),
        "episode": np.asarray(episodes),
        "reward": np.ones(len(episodes)),
    }


def test_first_target_of_each_episode_and_shares():
    goals = [2, 2, 0, None, 1, 2]
    firsts, paths, targets = prior_modes.first_targets(_rollouts(goals))
    assert firsts.tolist() == [2, 2, 0, -1, 1, 2]
    assert len(paths) == 6 and paths[0].shape == (20, 2)
    np.testing.assert_array_equal(targets, TARGETS)
    shares = prior_modes.first_target_shares(firsts, num_targets=4)
    np.testing.assert_allclose(shares, [1 / 6, 1 / 6, 3 / 6, 0, 1 / 6])


def test_table_counts_modes_at_ten_percent():
    firsts = {"prior": np.array([0] * 5 + [1] * 4 + [2] * 1 + [-1] * 10), "policy": np.array([3])}
    result = {"name": "x", "kind": "mlp", "targets": TARGETS}
    for head, first in firsts.items():
        result[head] = {"firsts": first, "return": 1.0}
    rows = prior_modes.table([result]).splitlines()
    prior_row, policy_row = rows[2], rows[3]
    assert prior_row.endswith("| 0.25 | 0.20 | 0.05 | 0.00 | 0.50 | 2 |")  # 5% is no mode
    assert policy_row.endswith("| 0.00 | 0.00 | 0.00 | 1.00 | 0.00 | 1 |")
