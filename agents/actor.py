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


class VersionedVariableClient(variable_utils.VariableClient):
    """Acme's variable client that counts how often it copied new values in."""

    version = 0

    def _copy(self, new_variables) -> None:
        super()._copy(new_variables)
        self.version += 1


class LearnerParams:
    """NumPy copies of the acting head's (and a recurrent prior's) parameters, taken again
    whenever the variable client has fetched a newer version from the learner."""

    _client: VersionedVariableClient | None
    _version: int

    def _refresh(self) -> None:
        if self._client is not None and self._client.version != self._version:
            self._params = self._head.numpy_params()
            if self._prior is not None:
                self._prior_params = self._prior.numpy_params()
            self._version = self._client.version


class GaussianActor(LearnerParams, core.Actor):
    """Acts with a head (policy or prior): samples (`stochastic=True`) or takes the mean.

    Any head of networks/ works: feed-forward, recurrent (its state is carried from step to
    step and reset at episode starts) or hierarchical (z, then a). With an adder, each
    step's extras hold the behaviour log-probability log mu (of (z, a) for a hierarchical
    head) under "log_prob", the latent under "latent", and, when `recurrent_prior` is
    given, that prior's LSTM state *before* the step ("prior_hidden", "prior_cell"): the
    learner unrolls the prior from the state stored at a sequence's first step.
    """

    def __init__(
        self,
        head,
        stochastic: bool,
        adder: adders.Adder | None = None,
        variable_client: VersionedVariableClient | None = None,
        seed: int = 0,
        recurrent_prior=None,
    ):
        self._head = head
        self._adder = adder
        self._client = variable_client
        self._rng = np.random.default_rng(seed) if stochastic else None
        self._params = head.numpy_params()
        self._state = head.numpy_initial_state()
        self._prior = recurrent_prior
        if recurrent_prior is not None:
            self._prior_params = recurrent_prior.numpy_params()
            self._prior_state = recurrent_prior.numpy_initial_state()
        self._version = variable_client.version if variable_client else 0
        self._extras: dict = {}

    def reset(self) -> None:
        """Starts a new episode: recurrent states back to zeros."""
        self._state = self._head.numpy_initial_state()
        if self._prior is not None:
            self._prior_state = self._prior.numpy_initial_state()

    def select_action(self, observation: Mapping[str, np.ndarray]) -> np.ndarray:
        action, log_prob, extras, self._state = self._head.numpy_act(
            self._params, observation, self._state, self._rng
        )
        if self._adder is not None:
            extras["log_prob"] = log_prob
            if self._prior is not None:
                extras["prior_hidden"], extras["prior_cell"] = self._prior_state
                *_, self._prior_state = self._prior.numpy_step(
                    self._prior_params, observation, self._prior_state
                )
        self._extras = extras
        return action

    @property
    def last_extras(self) -> dict:
        """What the last `select_action` produced besides the action (e.g. the latent z)."""
        return self._extras

    def observe_first(self, timestep: dm_env.TimeStep) -> None:
        self.reset()
        if self._adder is not None:
            self._adder.add_first(timestep)

    def observe(self, action: np.ndarray, next_timestep: dm_env.TimeStep) -> None:
        if self._adder is not None:
            self._adder.add(action, next_timestep, extras=self._extras)

    def update(self, wait: bool = False) -> None:
        if self._client is not None:
            self._client.update(wait)
            self._refresh()
