"""Second-order Markov target sequences for the sequential-navigation tasks.

The talk's sequential-navigation task draws the next target to visit so that the last *two*
targets make it predictable (one candidate has probability `p`, e.g. 0.9) while the last
target alone says nothing (every other target is equally likely). A prior with memory can
then beat a memoryless prior, which is the point of the experiment.

Construction (K >= 3 targets, 1 / (K - 1) <= p <= 1)
----------------------------------------------------
States are ordered pairs (i, j) of distinct targets: i the previous target, j the current
one. The next target k is never j. For each current target j let S_j = {0..K-1} minus {j},
listed in increasing order s_0 < s_1 < ... < s_{K-2}. The *favoured* successor of (i, j) is
the next element of S_j after i, cyclically:

    f(s_m, j) = s_{(m + 1) mod (K - 1)}

so for fixed j the map i -> f(i, j) is a permutation of S_j with no fixed point (each
candidate is favoured by exactly one previous target, and the favoured target is never a
return to i: a Latin-square arrangement). Then

    T[i, j, k] = p                      if k == f(i, j),
                 (1 - p) / (K - 2)      if k != j and k != f(i, j),
                 0                      if k == j (or i == j, an unused row).

Why the remaining mass is spread uniformly: for fixed j, the (K-1) x (K-1) block
B_j[i, k] = T[i, j, k] (i, k in S_j) must be *doubly stochastic*. Rows sum to 1 because it
is a distribution; each column k holds exactly one p (from the unique i with f(i, j) = k)
and K - 2 entries (1 - p) / (K - 2), so columns sum to 1 too. Any other choice of the
remaining mass works exactly when it keeps the columns summing to 1 (for instance the
talk's "0.9 / 0.1 / 0" example puts all of 1 - p on a second permutation); the uniform
spread is the one that needs no second choice and keeps every transition possible.

First-order marginal: P(k | j) = sum_i P(i | j) T[i, j, k]. If the previous target is
uniform given the current one, P(i | j) = 1 / (K - 1), this is (column sum) / (K - 1) =
1 / (K - 1): uniform over the K - 1 other targets, as required.

Stationary distribution: the uniform distribution over the K (K - 1) pairs is stationary
for the pair chain (i, j) -> (j, k): the mass flowing into (j, k) is
sum_i 1 / (K (K - 1)) T[i, j, k] = (column sum) / (K (K - 1)) = 1 / (K (K - 1)). Under it
P(i | j) = 1 / (K - 1), which is the assumption above. The sampler *starts* in this
distribution (first target uniform over K, second uniform over the K - 1 others), so the
marginal is exactly uniform at every step, not only asymptotically. For p < 1 every
transition (i, j) -> (j, k), k != j, has positive probability, so the pair chain is
irreducible and aperiodic (it has cycles of length 2 and 3) and the uniform distribution is
its unique stationary distribution. The most likely next target given the last two has
probability max(p, (1 - p) / (K - 2)) = p because p >= 1 / (K - 1).
"""

from __future__ import annotations

import numpy as np


def favoured_successor(previous: int, current: int, num_targets: int) -> int:
    """The target that follows (previous, current) with probability p (see module doc)."""
    if previous == current:
        raise ValueError("previous and current targets must differ")
    others = [k for k in range(num_targets) if k != current]
    return others[(others.index(previous) + 1) % len(others)]


def transition_table(num_targets: int = 4, p: float = 0.9) -> np.ndarray:
    """T[i, j, k] = P(next = k | previous = i, current = j); rows with i == j are zero."""
    if num_targets < 3:
        raise ValueError("the construction needs at least 3 targets")
    if not 1.0 / (num_targets - 1) <= p <= 1.0:
        raise ValueError(f"p must lie in [1/(K-1), 1] = [{1.0 / (num_targets - 1):.3f}, 1]")
    rest = (1.0 - p) / (num_targets - 2)
    table = np.zeros((num_targets,) * 3)
    for i in range(num_targets):
        for j in range(num_targets):
            if i == j:
                continue
            table[i, j, :] = rest
            table[i, j, j] = 0.0
            table[i, j, favoured_successor(i, j, num_targets)] = p
    return table


def first_order_marginal(table: np.ndarray) -> np.ndarray:
    """M[j, k] = P(next = k | current = j) under the stationary (uniform) pair distribution."""
    num_targets = table.shape[0]
    return table.sum(axis=0) / (num_targets - 1)


def stationary_pair_distribution(table: np.ndarray, iterations: int = 10_000) -> np.ndarray:
    """The pair chain's stationary distribution D[i, j], found by power iteration.

    Used by the tests to check (rather than assume) that it is uniform over i != j.
    """
    num_targets = table.shape[0]
    dist = np.ones((num_targets, num_targets)) - np.eye(num_targets)
    dist /= dist.sum()
    # Start off-uniform so the check is not vacuous.
    dist = dist * np.linspace(0.5, 1.5, dist.size).reshape(dist.shape)
    dist /= dist.sum()
    for _ in range(iterations):
        # new[j, k] = sum_i dist[i, j] * table[i, j, k]
        new = np.einsum("ij,ijk->jk", dist, table)
        if np.allclose(new, dist, atol=1e-15, rtol=0):
            break
        dist = new
    return dist


def _normalised_cumsum(probs: np.ndarray) -> np.ndarray:
    """Cumulative sums ending at exactly 1 (zero rows stay zero), for inverse-CDF draws.

    Dividing by the total makes a zero-probability entry after the last positive one equal
    to exactly 1.0, so a uniform draw in [0, 1) can never select it.
    """
    cumulative = np.cumsum(probs, axis=-1)
    total = cumulative[..., -1:]
    return np.divide(cumulative, total, out=np.zeros_like(cumulative), where=total > 0)


class TargetSequence:
    """Draws target sequences from the second-order table with a seeded numpy RNG.

    `reset()` returns the first target (uniform); each `next()` returns the following one.
    The second target is uniform over the others; every later one is drawn from
    `table[previous, current]`.
    """

    def __init__(
        self,
        num_targets: int = 4,
        p: float = 0.9,
        seed: int | np.random.Generator | np.random.RandomState | None = None,
    ):
        self.num_targets = num_targets
        self.p = p
        self.table = transition_table(num_targets, p)
        self._cumulative = _normalised_cumsum(self.table)
        if isinstance(seed, (np.random.Generator, np.random.RandomState)):
            self._rng = seed
        else:
            self._rng = np.random.default_rng(seed)
        self.previous: int | None = None
        self.current: int | None = None

    def _choice(self, cumulative: np.ndarray) -> int:
        # Inverse-CDF draw; `uniform` exists on both Generator and RandomState (composer
        # hands tasks a RandomState). Zero-probability entries can never be chosen.
        index = int(np.searchsorted(cumulative, self._rng.uniform(), side="right"))
        return min(index, self.num_targets - 1)

    def reset(self) -> int:
        self.previous = None
        self.current = self._choice(np.arange(1, self.num_targets + 1) / self.num_targets)
        return self.current

    def next(self) -> int:
        if self.current is None:
            return self.reset()
        if self.previous is None:
            probs = np.full(self.num_targets, 1.0 / (self.num_targets - 1))
            probs[self.current] = 0.0
            cumulative = _normalised_cumsum(probs)
        else:
            cumulative = self._cumulative[self.previous, self.current]
        self.previous, self.current = self.current, self._choice(cumulative)
        return self.current

    def sample(self, length: int) -> np.ndarray:
        """A fresh sequence of `length` targets (starts with `reset`)."""
        out = np.empty(length, dtype=np.int64)
        for t in range(length):
            out[t] = self.reset() if t == 0 else self.next()
        return out
