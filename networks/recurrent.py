"""A Gaussian head with memory: MLP torso -> LSTM core -> mean and scale.

Used for the LSTM prior: it sees only its restricted information sets, and the LSTM lets
it keep a summary of its history (e.g. which targets were visited). Actors run the same
core step by step in NumPy; the learner unrolls it over a replay sequence from the state
the actor stored at the sequence's first step (see docs/priors.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import sonnet as snt
import tensorflow as tf

from bprl.networks import information, mlp
from bprl.networks.gaussian import (
    ScaleTransform,
    act_from_moments,
    numpy_output_moments,
    output_layers,
    output_moments,
    output_params,
    sigmoid_numpy,
)


class LSTMState(NamedTuple):
    hidden: tf.Tensor | np.ndarray
    cell: tf.Tensor | np.ndarray


class LSTMCore(snt.Module):
    """A plain LSTM cell: gates (input, forget, candidate, output) from [x, h] @ w + b."""

    def __init__(self, size: int, forget_bias: float = 1.0, name: str = "lstm"):
        super().__init__(name=name)
        self.size = int(size)
        self._forget_bias = float(forget_bias)
        self._w: tf.Variable | None = None

    @snt.once
    def _initialize(self, input_size: int) -> None:
        init = snt.initializers.VarianceScaling(1.0, "fan_avg", "uniform")
        self._w = tf.Variable(init([input_size + self.size, 4 * self.size], tf.float32), name="w")
        bias = np.zeros(4 * self.size, np.float32)
        bias[self.size : 2 * self.size] = self._forget_bias  # start by remembering
        self._b = tf.Variable(bias, name="b")

    def __call__(self, inputs: tf.Tensor, state: LSTMState) -> tuple[tf.Tensor, LSTMState]:
        self._initialize(int(inputs.shape[-1]))
        gates = tf.matmul(tf.concat([inputs, state.hidden], axis=-1), self._w) + self._b
        i, f, g, o = tf.split(gates, 4, axis=-1)
        cell = tf.sigmoid(f) * state.cell + tf.sigmoid(i) * tf.tanh(g)
        hidden = tf.sigmoid(o) * tf.tanh(cell)
        return hidden, LSTMState(hidden, cell)

    @snt.no_name_scope
    def numpy_params(self) -> list[np.ndarray]:
        return [self._w.numpy(), self._b.numpy()]


def numpy_lstm_step(
    params: Sequence[np.ndarray], inputs: np.ndarray, state: LSTMState
) -> LSTMState:
    """NumPy twin of `LSTMCore.__call__` (returns the new state; its hidden is the output)."""
    w, b = params
    gates = np.concatenate([inputs, state.hidden], axis=-1) @ w + b
    i, f, g, o = np.split(gates, 4, axis=-1)
    cell = sigmoid_numpy(f) * state.cell + sigmoid_numpy(i) * np.tanh(g)
    return LSTMState(sigmoid_numpy(o) * np.tanh(cell), cell)


class RecurrentGaussianHead(snt.Module):
    """(observation, LSTM state) -> diagonal Gaussian over actions, and the next state."""

    is_recurrent = True

    def __init__(
        self,
        keys: Sequence[str],
        action_size: int,
        hidden_sizes: Sequence[int],
        lstm_size: int,
        min_scale: float = 1e-3,
        init_scale: float = 0.7,
        name: str = "recurrent_gaussian_head",
        max_scale: float = 0.0,
        mean_bound: float = 1.0,
    ):
        super().__init__(name=name)
        self.keys = tuple(keys)
        self.action_size = int(action_size)
        self.state_size = int(lstm_size)
        self._to_scale = ScaleTransform(min_scale, init_scale, max_scale)
        self._mean_bound = float(mean_bound)
        self._torso = mlp.LayerNormMLP(hidden_sizes)
        self._core = LSTMCore(lstm_size)
        self._mean, self._scale = output_layers(action_size)

    def initial_state(self, batch_size: int) -> LSTMState:
        zeros = tf.zeros([batch_size, self.state_size], tf.float32)
        return LSTMState(zeros, zeros)

    def _moments(self, features: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return output_moments(features, self._mean, self._scale, self._to_scale, self._mean_bound)

    def step(
        self, observation: Mapping[str, tf.Tensor], state: LSTMState
    ) -> tuple[tf.Tensor, tf.Tensor, LSTMState]:
        """One time step for a batch: (mean, scale, next state)."""
        out, state = self._core(self._torso(information.select(observation, self.keys)), state)
        return (*self._moments(out), state)

    def unroll(
        self,
        observation: Mapping[str, tf.Tensor],
        start_of_episode: tf.Tensor,
        state: LSTMState,
    ) -> tuple[tf.Tensor, tf.Tensor, LSTMState]:
        """Time-major unroll ([T, B, ...]) from `state`; resets to zeros at episode starts.

        Returns mean and scale flattened to [T * B, A] (row t * B + b) and the final state.
        """
        inputs = information.select(observation, self.keys)
        time_steps, batch_size = inputs.shape[0], tf.shape(inputs)[1]
        flat = tf.reshape(inputs, [-1, inputs.shape[-1]])
        features = tf.reshape(self._torso(flat), [time_steps, batch_size, -1])
        keep = 1.0 - tf.cast(start_of_episode, tf.float32)[..., None]
        outputs = []
        for t in range(time_steps):  # static: T + 1 is small and known when tracing
            state = LSTMState(state.hidden * keep[t], state.cell * keep[t])
            out, state = self._core(features[t], state)
            outputs.append(out)
        mean, scale = self._moments(tf.concat(outputs, axis=0))
        return mean, scale, state

    def create_variables(self, observation: Mapping[str, tf.Tensor]) -> None:
        batch = int(next(iter(observation.values())).shape[0])
        self.step(observation, self.initial_state(batch))

    @snt.no_name_scope
    def numpy_params(self) -> list[np.ndarray]:
        return (
            self._torso.numpy_params()
            + self._core.numpy_params()
            + output_params(self._mean, self._scale)
        )

    @snt.no_name_scope
    def numpy_initial_state(self) -> LSTMState:
        zeros = np.zeros([self.state_size], np.float32)
        return LSTMState(zeros, zeros)

    @snt.no_name_scope
    def numpy_step(
        self, params: Sequence[np.ndarray], observation: Mapping[str, np.ndarray], state
    ) -> tuple[np.ndarray, np.ndarray, LSTMState]:
        """NumPy twin of `step` for one unbatched observation."""
        torso, core, heads = params[:-6], params[-6:-4], params[-4:]
        features = mlp.numpy_forward(torso, information.select_numpy(observation, self.keys))
        state = numpy_lstm_step(core, features, state)
        moments = numpy_output_moments(state.hidden, heads, self._to_scale, self._mean_bound)
        return (*moments, state)

    @snt.no_name_scope
    def numpy_act(self, params, observation, state, rng):
        """(action, log-probability, extras, next state); `rng` None takes the mean, a
        sequence of generators samples a packed batch (one per row)."""
        mean, scale, state = self.numpy_step(params, observation, state)
        return (*act_from_moments(mean, scale, rng), {}, state)
