"""A sequence adder that buffers steps in NumPy and writes each sequence with one append.

It writes the same items as Acme's `SequenceAdder(sequence_length=T+1, period=T,
end_of_episode_behavior=EndBehavior.CONTINUE)`, for the same table signature:
- a row is (observation, action, reward, discount, start_of_episode, extras) where the
  action, reward, discount and extras are those that followed the observation;
- rows run on across episodes: an episode's final observation is a row of its own with
  zero action, reward, discount and extras, and the next episode's first row has
  start_of_episode=True;
- after the (T+1)-th row, and then after every T further rows, the last T+1 rows become one
  item (consecutive items overlap by one row), with priority 1;
- with a burn-in of N rows (an LSTM prior's, `prior.burn_in`), each item also holds the N
  rows before its T+1: items of N+T+1 rows every T rows, as Acme's
  `SequenceAdder(sequence_length=N+T+1, period=T)` writes them.

Acme's adder appends every step to a Reverb `TrajectoryWriter` (one Python-to-C++ call per
column per step) and slices the writer's history for each item. Here the rows are written
into preallocated NumPy arrays and each finished sequence goes to Reverb as a single step
whose columns have a leading time axis of T+1: one `append` and one `create_item` per T
environment steps.
"""

from __future__ import annotations

from collections.abc import Mapping

import dm_env
import numpy as np
import reverb
import tree
from absl import logging
from acme import adders
from acme.adders.reverb import base as reverb_base


class FastSequenceAdder(adders.Adder):
    """Overlapping sequences of N+T+1 rows every T rows, continuing across episodes."""

    def __init__(
        self,
        client: reverb.Client,
        sequence_length: int,
        table: str,
        priority: float = 1.0,
        max_in_flight_items: int = 2,
        get_signature_timeout_ms: int = 300_000,
        burn_in: int = 0,
    ):
        """`sequence_length` is T, the transitions per item; items hold `burn_in` + T + 1
        rows."""
        if sequence_length < 1:
            raise ValueError("sequence_length must be at least 1")
        if burn_in < 0:
            raise ValueError(f"burn_in must be >= 0, got {burn_in}")
        self._client = client
        self._length = int(burn_in) + int(sequence_length) + 1
        self._kept = int(burn_in) + 1  # rows the next item shares with this one
        self._table = table
        self._priority = float(priority)
        self._max_in_flight = max_in_flight_items
        self._timeout_ms = get_signature_timeout_ms
        self._writer: reverb.TrajectoryWriter | None = None
        self._buffers: dict | None = None  # {"observation": {...}, "action": ..., ...}
        self._count = 0  # complete rows in the buffers
        self._has_partial = False  # row `_count` holds an observation awaiting its action
        self._pending_first = None  # first observation seen before the buffers exist

    # --------------------------------------------------------------------- buffers

    def _allocate(self, observation, action, reward, discount, extras) -> None:
        def rows(value) -> np.ndarray:
            value = np.asarray(value)
            # Room for T+1 complete rows and one partial row.
            return np.zeros((self._length + 1, *value.shape), value.dtype)

        self._buffers = {
            "observation": tree.map_structure(rows, observation),
            "action": tree.map_structure(rows, action),
            "reward": rows(reward),
            "discount": rows(discount),
            "start_of_episode": np.zeros((self._length + 1,), bool),
            "extras": tree.map_structure(rows, extras),
        }

    def _set_observation(self, observation, start: bool) -> None:
        buffers, row = self._buffers, self._count
        if isinstance(observation, Mapping):
            obs_buffers = buffers["observation"]
            for key, value in observation.items():
                obs_buffers[key][row] = value
        else:
            tree.map_structure(lambda b, v: b.__setitem__(row, v), buffers["observation"],
                               observation)  # fmt: skip
        buffers["start_of_episode"][row] = start
        self._has_partial = True

    def _complete_row(self, action, reward, discount, extras) -> None:
        buffers, row = self._buffers, self._count
        if isinstance(action, np.ndarray):
            buffers["action"][row] = action
        else:
            tree.map_structure(lambda b, v: b.__setitem__(row, v), buffers["action"], action)
        buffers["reward"][row] = reward
        buffers["discount"][row] = discount
        if isinstance(extras, Mapping):
            extra_buffers = buffers["extras"]
            for key, value in extras.items():
                extra_buffers[key][row] = value
        else:
            tree.map_structure(lambda b, v: b.__setitem__(row, v), buffers["extras"], extras)
        self._count += 1
        self._has_partial = False
        if self._count == self._length:
            self._write_item()

    def _write_item(self) -> None:
        length = self._length
        trajectory = reverb_base.Trajectory(
            **tree.map_structure(lambda b: b[:length].copy(), self._buffers)
        )
        writer = self._get_writer()
        writer.append(trajectory)
        writer.create_item(
            self._table, self._priority, tree.map_structure(lambda c: c[-1], writer.history)
        )
        writer.flush(self._max_in_flight)
        # The last N+1 rows start the next item (rows are complete here: no partial row).
        kept = self._kept
        tree.map_structure(
            lambda b: b.__setitem__(slice(0, kept), b[length - kept : length]), self._buffers
        )
        self._count = kept

    def _get_writer(self) -> reverb.TrajectoryWriter:
        if self._writer is None:
            self._writer = self._client.trajectory_writer(
                num_keep_alive_refs=1, get_signature_timeout_ms=self._timeout_ms
            )
        return self._writer

    # ------------------------------------------------------------------ Adder API

    def add_first(self, timestep: dm_env.TimeStep) -> None:
        if not timestep.first():
            raise ValueError("add_first needs a first timestep (timestep.first() is True)")
        if self._buffers is not None and self._has_partial:
            raise ValueError("add_first called before the previous episode's last step")
        self._pending_first = timestep.observation
        if self._buffers is not None:
            self._set_observation(timestep.observation, True)

    def add(self, action, next_timestep: dm_env.TimeStep, extras: Mapping | tuple = ()) -> None:
        if self._buffers is None:
            if self._pending_first is None:
                raise ValueError("add_first must be called before add")
            self._allocate(
                self._pending_first, action, next_timestep.reward, next_timestep.discount, extras
            )
            self._set_observation(self._pending_first, True)
        if not self._has_partial:
            raise ValueError("add_first must be called before add")
        self._pending_first = None
        self._complete_row(action, next_timestep.reward, next_timestep.discount, extras)
        self._set_observation(next_timestep.observation, bool(next_timestep.first()))
        if next_timestep.last():
            # The final observation is a row of its own with zero action, reward, etc.
            zero = np.zeros_like
            self._complete_row(
                tree.map_structure(zero, action),
                zero(self._buffers["reward"][0]),
                zero(self._buffers["discount"][0]),
                tree.map_structure(zero, extras),
            )

    def reset(self) -> None:
        """Nothing to do: sequences continue across episodes (EndBehavior.CONTINUE)."""

    def flush(self, timeout_ms: int | None = None) -> None:
        """Blocks until every created item has reached the server."""
        if self._writer is not None:
            self._writer.flush(0, timeout_ms=timeout_ms)

    def close(self) -> None:
        if self._writer is not None:
            try:
                self._writer.flush(0, timeout_ms=10_000)
            except reverb.DeadlineExceededError as error:
                logging.error("timed out flushing the sequence writer: %s", error)
            self._writer.close()
            self._writer = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown; nothing left to do
            pass
