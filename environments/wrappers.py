"""dm_env wrappers shared by all tasks: flat float32 observations, normalised actions."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import dm_env
import numpy as np
from dm_env import specs


class CanonicalObservationWrapper(dm_env.Environment):
    """Makes every observation a dict of flat float32 vectors and actions live in [-1, 1].

    Agents then need one code path: they concatenate named keys (an information set) and
    emit actions in the unit box, which this wrapper rescales to the task's bounds.
    """

    def __init__(self, environment: dm_env.Environment):
        self._env = environment
        obs_spec = environment.observation_spec()
        if not isinstance(obs_spec, dict):
            raise TypeError("tasks must emit dict observations (named keys)")
        self._obs_spec = OrderedDict(
            (
                key,
                specs.Array(shape=(int(np.prod(spec.shape)),), dtype=np.float32, name=key),
            )
            for key, spec in obs_spec.items()
        )
        action_spec = environment.action_spec()
        self._low = np.asarray(action_spec.minimum, dtype=np.float64) * np.ones(action_spec.shape)
        self._high = np.asarray(action_spec.maximum, dtype=np.float64) * np.ones(action_spec.shape)
        if not (np.all(np.isfinite(self._low)) and np.all(np.isfinite(self._high))):
            raise ValueError("tasks must have bounded actions")
        self._action_spec = specs.BoundedArray(
            shape=action_spec.shape, dtype=np.float32, minimum=-1.0, maximum=1.0, name="action"
        )

    def _convert(self, timestep: dm_env.TimeStep) -> dm_env.TimeStep:
        observation = OrderedDict(
            (key, np.asarray(value, dtype=np.float32).reshape(-1))
            for key, value in timestep.observation.items()
        )
        reward = 0.0 if timestep.reward is None else timestep.reward
        discount = 1.0 if timestep.discount is None else timestep.discount
        return timestep._replace(
            observation=observation,
            reward=np.float32(reward),
            discount=np.float32(discount),
        )

    def reset(self) -> dm_env.TimeStep:
        return self._convert(self._env.reset())

    def step(self, action: np.ndarray) -> dm_env.TimeStep:
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        scaled = self._low + (action + 1.0) * 0.5 * (self._high - self._low)
        return self._convert(self._env.step(scaled))

    def observation_spec(self) -> OrderedDict:
        return self._obs_spec

    def action_spec(self) -> specs.BoundedArray:
        return self._action_spec

    def reward_spec(self) -> specs.Array:
        return specs.Array(shape=(), dtype=np.float32, name="reward")

    def discount_spec(self) -> specs.BoundedArray:
        return specs.BoundedArray(
            shape=(), dtype=np.float32, minimum=0.0, maximum=1.0, name="discount"
        )

    def close(self) -> None:
        self._env.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


class TanhActions(dm_env.Environment):
    """Takes actions on the whole real line and executes tanh(action) in the unit box.

    For agents whose Gaussian lives before a tanh squash: they store and score the
    unsquashed sample, and the environment sees a smooth map of it instead of a clip.
    """

    def __init__(self, environment: dm_env.Environment):
        self._env = environment
        inner = environment.action_spec()
        self._action_spec = specs.Array(shape=inner.shape, dtype=inner.dtype, name="action")

    def reset(self) -> dm_env.TimeStep:
        return self._env.reset()

    def step(self, action: np.ndarray) -> dm_env.TimeStep:
        return self._env.step(np.tanh(np.asarray(action, dtype=np.float64)))

    def observation_spec(self):
        return self._env.observation_spec()

    def action_spec(self) -> specs.Array:
        return self._action_spec

    def reward_spec(self):
        return self._env.reward_spec()

    def discount_spec(self):
        return self._env.discount_spec()

    def close(self) -> None:
        self._env.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)
