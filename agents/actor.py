"""Actors: act with the policy (or the prior) in NumPy and write sequences to replay.

Inference runs on a NumPy copy of the head's weights: one small MLP per step costs tens of
microseconds, where a TensorFlow call would cost far more than the environment step.
The TensorFlow variables are kept in sync by Acme's variable client; the NumPy copy is
refreshed whenever the client copies new values in.
"""

from __future__ import annotations

from collections.abc import Mapping

import dm_env
import numpy as np
from acme import adders, core
from acme.tf import variable_utils

from networks.gaussian import GaussianHead, gaussian_log_prob


class VersionedVariableClient(variable_utils.VariableClient):
    """Acme's variable client that counts how often it copied new values in."""

    version = 0

    def _copy(self, new_variables) -> None:
        super()._copy(new_variables)
        self.version += 1


class GaussianActor(core.Actor):
    """Acts with a Gaussian head: samples (`stochastic=True`) or takes the mean.

    With an adder, stores each step's behaviour log-probability log mu(a|x) in the
    extras under "log_prob", as the learner's importance weights need it.
    """

    def __init__(
        self,
        head: GaussianHead,
        stochastic: bool,
        adder: adders.Adder | None = None,
        variable_client: VersionedVariableClient | None = None,
        seed: int = 0,
    ):
        self._head = head
        self._stochastic = stochastic
        self._adder = adder
        self._client = variable_client
        self._rng = np.random.default_rng(seed)
        self._params = head.numpy_params()
        self._version = variable_client.version if variable_client else 0
        self._log_prob = np.float32(0.0)

    def _refresh(self) -> None:
        if self._client is not None and self._client.version != self._version:
            self._params = self._head.numpy_params()
            self._version = self._client.version

    def select_action(self, observation: Mapping[str, np.ndarray]) -> np.ndarray:
        mean, scale = self._head.numpy_moments(self._params, observation)
        if not self._stochastic:
            return mean.astype(np.float32)
        action = (mean + scale * self._rng.standard_normal(mean.shape)).astype(np.float32)
        if self._adder is not None:
            # log mu of the float32 action actually sent to the environment and stored.
            self._log_prob = np.float32(gaussian_log_prob(mean, scale, action))
        return action

    def observe_first(self, timestep: dm_env.TimeStep) -> None:
        if self._adder is not None:
            self._adder.add_first(timestep)

    def observe(self, action: np.ndarray, next_timestep: dm_env.TimeStep) -> None:
        if self._adder is not None:
            self._adder.add(action, next_timestep, extras={"log_prob": self._log_prob})

    def update(self, wait: bool = False) -> None:
        if self._client is not None:
            self._client.update(wait)
            self._refresh()
