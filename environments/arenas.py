"""The walled room the talk's tasks take place in, and where things go in it.

The room is a locomotion `Floor` closed by four box walls. `pointmass_room` and `ant_room`
are the two rooms the tasks use (size, walls and solver options); `default_target_positions`
and `random_positions` lay targets, boxes and start positions out in a room.
"""

from __future__ import annotations

import numpy as np
from dm_control.locomotion.arenas import floors

POINTMASS_ROOM_HALF_SIZE = 1.0
ANT_ROOM_HALF_SIZE = 3.0


class WalledArena(floors.Floor):
    """A square floor of half-size `half_size` closed by four walls."""

    def _build(
        self,
        half_size: float = 1.0,
        wall_height: float = 0.3,
        wall_thickness: float = 0.05,
        name: str = "room",
    ) -> None:
        super()._build(size=(half_size, half_size), name=name)
        self._half_size = half_size
        self._walls = []
        h, t = half_size, wall_thickness
        for wall_name, pos, size in (
            ("wall_px", (h + t, 0.0), (t, h + 2 * t)),
            ("wall_nx", (-h - t, 0.0), (t, h + 2 * t)),
            ("wall_py", (0.0, h + t), (h + 2 * t, t)),
            ("wall_ny", (0.0, -h - t), (h + 2 * t, t)),
        ):
            self._walls.append(
                self._mjcf_root.worldbody.add(
                    "geom",
                    name=wall_name,
                    type="box",
                    pos=(*pos, wall_height / 2),
                    size=(*size, wall_height / 2),
                    rgba=(0.6, 0.6, 0.6, 1.0),
                )
            )

    @property
    def half_size(self) -> float:
        return self._half_size

    @property
    def walls(self) -> list:
        return self._walls


def pointmass_room() -> WalledArena:
    """The point mass's 2 x 2 m room, with the plain solver its wall-only contacts allow."""
    arena = WalledArena(half_size=POINTMASS_ROOM_HALF_SIZE)
    # No contacts but the walls: a plain solver is enough and keeps stepping fast.
    arena.mjcf_model.option.noslip_iterations = 0
    arena.mjcf_model.option.cone = "pyramidal"
    return arena


def ant_room() -> WalledArena:
    """The Ant's 6 x 6 m room (higher, thicker walls; the default solver for its contacts)."""
    return WalledArena(half_size=ANT_ROOM_HALF_SIZE, wall_height=0.5, wall_thickness=0.1)


TARGET_LAYOUTS = ("corners", "sides")


def default_target_positions(
    num_targets: int, half_size: float, layout: str = "corners"
) -> np.ndarray:
    """K = 4: near the corners (+-0.6 * half_size), or with `layout="sides"` at the middles
    of the walls' sides (the corners' layout turned by 45 degrees and pulled in to the same
    0.6 * half_size from the centre's axes: a layout no corner target is near); otherwise
    evenly on a circle (turned by half a step for "sides")."""
    if layout not in TARGET_LAYOUTS:
        raise ValueError(f"unknown target layout {layout!r}; use one of {TARGET_LAYOUTS}")
    s = 0.6 * half_size
    if num_targets == 4 and layout == "corners":
        return np.array([[-s, s], [s, s], [s, -s], [-s, -s]], dtype=np.float64)
    if num_targets == 4:
        return np.array([[0.0, s], [s, 0.0], [0.0, -s], [-s, 0.0]], dtype=np.float64)
    offset = 0.0 if layout == "corners" else np.pi / num_targets
    angles = 2 * np.pi * np.arange(num_targets) / num_targets + offset
    return s * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def random_positions(
    random_state: np.random.RandomState,
    count: int,
    half_size: float,
    margin: float,
    min_separation: float,
    avoid: np.ndarray | None = None,
    max_tries: int = 1000,
) -> np.ndarray:
    """`count` uniform xy points in the room, `min_separation` apart (and from `avoid`)."""
    placed = [] if avoid is None else [np.asarray(p, dtype=np.float64) for p in avoid]
    out = []
    limit = half_size - margin
    for _ in range(count):
        for _ in range(max_tries):
            candidate = random_state.uniform(-limit, limit, size=2)
            if all(np.linalg.norm(candidate - p) >= min_separation for p in placed):
                break
        # After max_tries, accept the last candidate (never hangs on crowded rooms).
        placed.append(candidate)
        out.append(candidate)
    return np.array(out, dtype=np.float64).reshape(count, 2)
