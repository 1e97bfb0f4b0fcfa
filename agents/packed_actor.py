"""Packed actors: N environment streams in one process, one batched NumPy inference per step.

Each stream keeps what a separate actor would have: its own environment, seed (its own
noise generator), episode, sequence adder and, for a recurrent head or an LSTM prior, its
own state row. Per step the N observations are stacked ([N, ...] per key) and the head
runs once on the batch; row i's noise comes from stream i's generator
(`networks.gaussian.standard_normal`), so a stream writes the items it would write
alone. Not bit for bit: BLAS sums a [N, D] @ [D, H] product in another order than a
[D] @ [D, H] one (about 1e-7 relative in float32), and the environment carries that on.

Nothing here knows about processes; `launch/program/nodes.py` runs a `PackedLoop` in each actor
worker process.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import dm_env
import numpy as np
import tree
from absl import logging
from acme import adders
from acme.utils import counting, loggers

from bprl.agents.actor import LearnerParams, VersionedVariableClient


def _stack_rows(states: Sequence) -> object:
    """[state, state, ...] -> one state whose arrays have a leading stream axis (None: None)."""
    if states[0] is None:
        return None
    return tree.map_structure(lambda *rows: np.stack(rows), *states)


def _reset_row(batched, initial, row: int) -> None:
    """Row `row` of a stacked state back to `initial` (a stateless head: nothing)."""
    if batched is not None:
        tree.map_structure(lambda b, i: b.__setitem__(row, i), batched, initial)


class PackedActor(LearnerParams):
    """Acts for N streams with one head call per step; writes each stream to its adder.

    `head`: any head of networks/ (feed-forward, recurrent or hierarchical); `adders[i]`
    and `seeds[i]` belong to stream i. With `recurrent_prior`, each step's extras hold that
    prior's state before the step ("prior_hidden", "prior_cell"), per stream, as
    `agents.actor.GaussianActor` stores them.
    """

    def __init__(
        self,
        head,
        adders_: Sequence[adders.Adder],
        seeds: Sequence[int],
        variable_client: VersionedVariableClient | None = None,
        recurrent_prior=None,
    ):
        if len(adders_) != len(seeds) or not seeds:
            raise ValueError("a packed actor needs one adder and one seed per stream (>= 1)")
        self._head = head
        self._adders = list(adders_)
        self._rngs = [np.random.default_rng(seed) for seed in seeds]
        self._client = variable_client
        self._params = head.numpy_params()
        self._initial = head.numpy_initial_state()
        self._state = _stack_rows([self._initial] * len(seeds))  # [N, ...] or None
        self._prior = recurrent_prior
        if recurrent_prior is not None:
            self._prior_params = recurrent_prior.numpy_params()
            self._prior_initial = recurrent_prior.numpy_initial_state()
            self._prior_state = _stack_rows([self._prior_initial] * len(seeds))
        self._version = variable_client.version if variable_client else 0
        self._extras: dict = {}  # this step's batched extras, [N, ...] per key

    @property
    def num_streams(self) -> int:
        return len(self._rngs)

    def reset(self, stream: int) -> None:
        """Starts stream `stream`'s new episode: its recurrent state rows back to zeros."""

        _reset_row(self._state, self._initial, stream)
        if self._prior is not None:
            _reset_row(self._prior_state, self._prior_initial, stream)

    def select_actions(self, observations: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:
        """Stream i's observation -> row i of the actions, [N, A] float32."""
        batch = {key: np.stack([obs[key] for obs in observations]) for key in observations[0]}
        actions, log_prob, extras, state = self._head.numpy_act(
            self._params, batch, self._state, self._rngs
        )
        self._state = state  # new arrays each step: a reset row touches no stored extras
        extras["log_prob"] = log_prob  # [N]
        if self._prior is not None:
            extras["prior_hidden"], extras["prior_cell"] = self._prior_state  # [N, H] each
            *_, prior_state = self._prior.numpy_step(self._prior_params, batch, self._prior_state)
            self._prior_state = prior_state
        self._extras = extras
        return actions

    def observe_first(self, stream: int, timestep: dm_env.TimeStep) -> None:
        self.reset(stream)
        self._adders[stream].add_first(timestep)

    def observe(self, stream: int, action: np.ndarray, next_timestep: dm_env.TimeStep) -> None:
        extras = {key: value[stream] for key, value in self._extras.items()}
        self._adders[stream].add(action, next_timestep, extras=extras)

    def flush(self, stream: int) -> None:
        """Blocks until stream `stream`'s created items reached replay (adders that can)."""
        flush = getattr(self._adders[stream], "flush", None)
        if flush is not None:
            flush()

    def update(self, wait: bool = False) -> None:
        """Counts one step towards the weight refresh (every `update_period` calls)."""
        if self._client is not None:
            self._client.update(wait)
            self._refresh()


class PackedLoop:
    """Acme's `EnvironmentLoop`, for N streams stepped in lockstep with one inference.

    Per stream and episode, what Acme's loop does for one actor: stream i's logger gets
    the episode's length, return and steps/s with the counts, and the shared counter one
    more episode. Steps reach the counter at least every `count_every_s` seconds, at
    episode ends and when the loop stops (an injected or real error included), not only
    at episode ends as in Acme's loop: N streams started together end their episodes
    together, so per-episode steps would move the count (its progress, rates and the step
    budget) by N x 1,000 steps at once, and a stream rebuilt after an error before its
    episode ended would never count its steps. Give it a counter that forwards every
    increment (Acme's `Counter(parent, time_delta=0)`): this loop does the batching.
    `first_insert_steps`: after that many steps of a stream (its first replay item), the
    loop waits for the item to reach replay and logs "actor stream <id>: first sequence
    inserted" (read by `launch.layout.inserted_streams`).
    """

    def __init__(
        self,
        environments: Sequence[dm_env.Environment],
        actor: PackedActor,
        counter: counting.Counter,
        loggers_: Sequence[loggers.Logger],
        stream_ids: Sequence[int],
        first_insert_steps: int = 0,
        count_every_s: float = 1.0,
    ):
        if not len(environments) == len(loggers_) == len(stream_ids) == actor.num_streams:
            raise ValueError("one environment, logger and stream id per stream of the actor")
        self._envs = list(environments)
        self._actor = actor
        self._counter = counter
        self._loggers = list(loggers_)
        self._ids = list(stream_ids)
        self._first_insert_steps = first_insert_steps
        self._count_every_s = count_every_s
        self._pending = 0  # steps taken and not yet added to the counter
        self._last_count = 0.0

    def run(self, num_steps: int | None = None) -> None:
        """Steps every stream `num_steps` times (None: for ever; the process is stopped
        from outside). Each call starts every stream on a new episode."""
        n = len(self._envs)
        timesteps = [None] * n
        lengths, returns, starts = [0] * n, [0.0] * n, [0.0] * n
        total = [0] * n
        announced = [self._first_insert_steps <= 0] * n
        for i, env in enumerate(self._envs):
            timesteps[i] = env.reset()
            self._actor.observe_first(i, timesteps[i])
            starts[i] = time.time()
        steps = 0
        self._last_count = time.time()
        try:
            while num_steps is None or steps < num_steps:
                actions = self._actor.select_actions([ts.observation for ts in timesteps])
                for i, env in enumerate(self._envs):
                    action = actions[i]
                    timestep = env.step(action)
                    self._pending += 1
                    self._actor.observe(i, action, timestep)
                    lengths[i] += 1
                    total[i] += 1
                    returns[i] += float(timestep.reward)
                    if not announced[i] and total[i] >= self._first_insert_steps:
                        self._actor.flush(i)
                        logging.info("actor stream %d: first sequence inserted", self._ids[i])
                        announced[i] = True
                    if timestep.last():
                        self._end_episode(i, lengths[i], returns[i], starts[i])
                        lengths[i], returns[i] = 0, 0.0
                        timestep = env.reset()
                        self._actor.observe_first(i, timestep)
                        starts[i] = time.time()
                    timesteps[i] = timestep
                if time.time() - self._last_count >= self._count_every_s:
                    self._count()
                self._actor.update()
                steps += 1
        finally:
            try:  # the steps taken so far count, also when a stream's step raised
                if self._pending:
                    self._count()
            except Exception as error:  # noqa: BLE001 - the loop's own error matters more
                logging.warning("could not add %d steps to the counter: %s", self._pending, error)

    def _count(self, **more: int) -> dict:
        """Adds the pending steps (and `more`) to the counter; returns its counts."""
        counts = self._counter.increment(steps=self._pending, **more)
        self._pending = 0
        self._last_count = time.time()
        return counts

    def _end_episode(self, i: int, length: int, episode_return: float, start: float) -> None:
        counts = self._count(episodes=1)
        result = {
            "episode_length": length,
            "episode_return": episode_return,
            "steps_per_second": length / max(time.time() - start, 1e-9),
            **counts,
        }
        self._loggers[i].write(result)
