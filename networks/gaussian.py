"""Gaussian action heads for the policy and the prior.

Both heads are diagonal Gaussians with means squashed by tanh into [-mean_bound, mean_bound]
(1 by default: the unit action box) and scales bounded below, so KL(policy || prior) is
analytic and cheap. With `agent.action_squash = "tanh"` the Gaussian lives before a tanh
(docs/priors.md) and a larger `mean_bound` lets the mean reach the box's edges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp

from bprl.networks import information, mlp

tfd = tfp.distributions


class ScaleTransform:
    """Maps a pre-activation z to a standard deviation.

    Unbounded (max_scale <= 0): min_scale + c * softplus(z), min_scale + init_scale at
    z = 0. Bounded (max_scale > 0): min_scale + (max_scale - min_scale) * sigmoid(z + b),
    init_scale at z = 0. A bound keeps a policy from
    growing its noise when the critic, which sees actions clipped to the unit box, values
    the box's corners: without it the scale can drift to where most samples are clipped.
    """

    def __init__(self, min_scale: float, init_scale: float, max_scale: float = 0.0):
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        if self.max_scale > 0.0:
            if not self.min_scale < init_scale < self.max_scale:
                raise ValueError(
                    f"need min_scale < init_scale < max_scale, got {min_scale}, "
                    f"{init_scale}, {max_scale}"
                )
            fraction = (init_scale - self.min_scale) / (self.max_scale - self.min_scale)
            self._offset = float(np.log(fraction / (1.0 - fraction)))
        else:
            self._factor = float(init_scale) / float(np.log(2.0))  # softplus(0) = log 2

    def __call__(self, z: tf.Tensor) -> tf.Tensor:
        if self.max_scale > 0.0:
            return self.min_scale + (self.max_scale - self.min_scale) * tf.sigmoid(z + self._offset)
        return self.min_scale + self._factor * tf.nn.softplus(z)

    def numpy(self, z: np.ndarray) -> np.ndarray:
        if self.max_scale > 0.0:
            sigmoid = sigmoid_numpy(z + self._offset)
            return self.min_scale + (self.max_scale - self.min_scale) * sigmoid
        return self.min_scale + self._factor * softplus_numpy(z)


def output_layers(action_size: int) -> tuple[snt.Linear, snt.Linear]:
    """The mean and scale layers of a head, initialised near zero (created in its scope)."""
    small = snt.initializers.VarianceScaling(1e-4, "fan_in", "uniform")
    return (
        mlp.Linear(action_size, w_init=small, name="mean"),
        mlp.Linear(action_size, w_init=small, name="scale"),
    )


def output_moments(
    features: tf.Tensor,
    mean: snt.Linear,
    scale: snt.Linear,
    to_scale: ScaleTransform,
    mean_bound: float = 1.0,
) -> tuple[tf.Tensor, tf.Tensor]:
    """(mean squashed into [-mean_bound, mean_bound], scale) of a head from its features."""
    return mean_bound * tf.tanh(mean(features)), to_scale(scale(features))


def output_params(mean: snt.Linear, scale: snt.Linear) -> list[np.ndarray]:
    """The output layers' parameters in the order `numpy_output_moments` reads them."""
    return [mean.w.numpy(), mean.b.numpy(), scale.w.numpy(), scale.b.numpy()]


def numpy_output_moments(
    features: np.ndarray,
    params: Sequence[np.ndarray],
    to_scale: ScaleTransform,
    mean_bound: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of `output_moments`."""
    mean_w, mean_b, scale_w, scale_b = params
    mean = mean_bound * np.tanh(features @ mean_w + mean_b)
    return mean, to_scale.numpy(features @ scale_w + scale_b)


class GaussianHead(snt.Module):
    """observation dict -> MultivariateNormalDiag over actions, from the keys it may see."""

    is_recurrent = False

    def __init__(
        self,
        keys: Sequence[str],
        action_size: int,
        hidden_sizes: Sequence[int],
        min_scale: float = 1e-3,
        init_scale: float = 0.7,
        name: str = "gaussian_head",
        max_scale: float = 0.0,
        mean_bound: float = 1.0,
    ):
        super().__init__(name=name)
        self.keys = tuple(keys)
        self.action_size = int(action_size)
        self._to_scale = ScaleTransform(min_scale, init_scale, max_scale)
        self._mean_bound = float(mean_bound)
        self._torso = mlp.LayerNormMLP(hidden_sizes)
        self._mean, self._scale = output_layers(action_size)

    def moments(self, observation: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        h = self._torso(information.select(observation, self.keys))
        return output_moments(h, self._mean, self._scale, self._to_scale, self._mean_bound)

    def __call__(self, observation: Mapping[str, tf.Tensor]) -> tfd.MultivariateNormalDiag:
        mean, scale = self.moments(observation)
        return tfd.MultivariateNormalDiag(loc=mean, scale_diag=scale)

    def create_variables(self, observation: Mapping[str, tf.Tensor]) -> None:
        self.moments(observation)

    @snt.no_name_scope  # NumPy only: skip Sonnet's per-call TensorFlow name scope
    def numpy_params(self) -> list[np.ndarray]:
        """Current parameters as NumPy arrays, in the order `numpy_moments` reads them."""
        return self._torso.numpy_params() + output_params(self._mean, self._scale)

    @snt.no_name_scope  # called once per actor step: the name scope cost ~15 us a call
    def numpy_moments(
        self, params: Sequence[np.ndarray], observation: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """NumPy twin of `moments` for fast single-step actor inference."""
        h = mlp.numpy_forward(params[:-4], information.select_numpy(observation, self.keys))
        return numpy_output_moments(h, params[-4:], self._to_scale, self._mean_bound)

    @snt.no_name_scope
    def numpy_initial_state(self) -> None:
        """Feed-forward: no state (the recurrent head's twin returns its LSTM state)."""
        return None

    @snt.no_name_scope
    def numpy_step(self, params, observation, state: None = None):
        """`numpy_moments` with the recurrent heads' signature: (mean, scale, state)."""
        return (*self.numpy_moments(params, observation), state)

    @snt.no_name_scope
    def numpy_act(self, params, observation, state, rng):
        """(action, log-probability, extras, state); `rng` None takes the mean, a sequence
        of generators samples a packed batch (one per row)."""
        mean, scale = self.numpy_moments(params, observation)
        return (*act_from_moments(mean, scale, rng), {}, state)


def standard_normal(rng, shape: tuple[int, ...]) -> np.ndarray:
    """Unit Gaussian noise of `shape`: from one generator, or, for a packed batch of
    streams ([N, ...] rows), row i from generator i of the sequence `rng`. A stream's row
    is then the draw it would get acting alone, whatever the other streams do."""
    if isinstance(rng, np.random.Generator):
        return rng.standard_normal(shape)
    return np.stack([generator.standard_normal(shape[1:]) for generator in rng])


def act_from_moments(mean: np.ndarray, scale: np.ndarray, rng):
    """(float32 action, its float32 log-probability); the mean (log-prob 0) when `rng` is None.

    `rng`: a generator, or one per row for a packed batch (`standard_normal`).
    """
    if rng is None:
        return mean.astype(np.float32), np.zeros(mean.shape[:-1], np.float32)[()]
    action = (mean + scale * standard_normal(rng, mean.shape)).astype(np.float32)
    # log mu of the float32 action actually sent to the environment and stored.
    return action, np.asarray(gaussian_log_prob(mean, scale, action), np.float32)[()]


def sigmoid_numpy(z: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-z)) without overflow."""
    return 0.5 * (np.tanh(0.5 * z) + 1.0)


def softplus_numpy(z: np.ndarray) -> np.ndarray:
    """log(1 + exp(z)) without overflow."""
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def gaussian_log_prob(mean: np.ndarray, scale: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log N(x; mean, diag(scale^2)), summed over the last axis (NumPy)."""
    z = (x - mean) / scale
    return (
        -0.5 * np.add.reduce(z * z, axis=-1)
        - np.add.reduce(np.log(scale), axis=-1)
        - (0.5 * mean.shape[-1] * np.log(2.0 * np.pi))
    )
