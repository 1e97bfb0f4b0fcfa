"""Trajectory helpers shared by the analysis scripts (no flags, so any script may import it)."""

from __future__ import annotations

import numpy as np


def visits(positions: np.ndarray, targets: np.ndarray, radius: float) -> list[int]:
    """Targets entered along one trajectory ([L, 2] positions, [K, 2] targets), in order.

    A target counts when the body comes within `radius` of it; staying inside, or leaving
    and re-entering the same target with no other visit between, counts once.
    """
    distance = np.linalg.norm(positions[:, None, :] - targets[None], axis=-1)  # [L, K]
    order: list[int] = []
    for inside in distance < radius:
        hits = np.flatnonzero(inside)
        if hits.size and (not order or hits[0] != order[-1]):
            order.append(int(hits[0]))
    return order
