"""Props of the room tasks: the target pads and the box the Ant pushes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from dm_control import composer, mjcf

TARGET_COLOURS = (
    (0.2, 0.4, 0.9, 1.0),  # blue
    (0.2, 0.8, 0.3, 1.0),  # green
    (0.9, 0.2, 0.2, 1.0),  # red
    (0.1, 0.1, 0.1, 1.0),  # black
    (0.9, 0.8, 0.1, 1.0),
    (0.7, 0.3, 0.9, 1.0),
)


class TargetPad(composer.Entity):
    """A flat coloured disc on the floor; purely visual (no collisions)."""

    def _build(
        self, name: str = "target", radius: float = 0.1, rgba: Sequence[float] = TARGET_COLOURS[1]
    ) -> None:
        self._mjcf_root = mjcf.RootElement(model=name)
        self._geom = self._mjcf_root.worldbody.add(
            "geom",
            name="pad",
            type="cylinder",
            size=(radius, 0.002),
            pos=(0.0, 0.0, 0.002),
            rgba=rgba,
            contype=0,
            conaffinity=0,
        )

    @property
    def mjcf_model(self):
        return self._mjcf_root


def add_target_pads(
    arena: composer.Arena, count: int, radius: float, positions: np.ndarray | None = None
) -> list[TargetPad]:
    """Attaches pads `target_0..` in the target colours, of the reach radius's size.

    `positions` ([count, 2]) fixes the pads in the model; without it they are moved each
    episode with `move_target_pads`.
    """
    pads = []
    for k in range(count):
        pad = TargetPad(
            name=f"target_{k}", radius=radius, rgba=TARGET_COLOURS[k % len(TARGET_COLOURS)]
        )
        frame = arena.attach(pad)
        if positions is not None:
            frame.pos = (*positions[k], 0.0)
        pads.append(pad)
    return pads


def move_target_pads(physics, pads: Sequence[TargetPad], positions: np.ndarray) -> None:
    """Puts each pad on the floor at its xy in `positions` ([len(pads), 2])."""
    for pad, pos in zip(pads, positions, strict=True):
        pad.set_pose(physics, position=(*pos, 0.0))


class Box(composer.Entity):
    """A free box the walker can push (1 kg against the Ant's 12 kg)."""

    def _build(self, name: str = "box", half_size: float = 0.2, mass: float = 1.0) -> None:
        self._half_size = half_size
        self._mjcf_root = mjcf.RootElement(model=name)
        self._body = self._mjcf_root.worldbody.add("body", name="body")
        self._body.add(
            "geom",
            name="geom",
            type="box",
            size=(half_size,) * 3,
            mass=mass,
            rgba=(0.8, 0.5, 0.2, 1.0),
        )

    @property
    def mjcf_model(self):
        return self._mjcf_root

    @property
    def root_body(self):
        return self._body

    @property
    def half_size(self) -> float:
        return self._half_size

    def xy(self, physics) -> np.ndarray:
        """The box's centre in the floor plane."""
        return np.array(physics.bind(self._body).xpos[:2])

    def place(self, physics, xy) -> None:
        """Puts the box at rest, upright, on the floor at `xy`."""
        self.set_pose(
            physics, position=(*np.asarray(xy, float), self._half_size), quaternion=(1, 0, 0, 0)
        )
        self.set_velocity(physics, velocity=np.zeros(3), angular_velocity=np.zeros(3))
