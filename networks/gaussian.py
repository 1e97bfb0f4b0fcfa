"""Gaussian action heads for the policy and the prior.

Both heads are diagonal Gaussians on the unit action box (means squashed by tanh, scales
bounded below), so KL(policy || prior) is analytic and cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp

from networks import information, mlp

tfd = tfp.distributions


class GaussianHead(snt.Module):
    """observation dict -> MultivariateNormalDiag over actions, from the keys it may see."""

    def __init__(
        self,
        keys: Sequence[str],
        action_size: int,
        hidden_sizes: Sequence[int],
        min_scale: float = 1e-3,
        init_scale: float = 0.7,
        name: str = "gaussian_head",
    ):
        super().__init__(name=name)
        self.keys = tuple(keys)
        self.action_size = int(action_size)
        self._min_scale = float(min_scale)
        # softplus(0) * factor == init_scale at initialisation.
        self._scale_factor = float(init_scale) / float(np.log(2.0))
        self._torso = mlp.LayerNormMLP(hidden_sizes)
        small = snt.initializers.VarianceScaling(1e-4, "fan_in", "uniform")
        self._mean = snt.Linear(action_size, w_init=small, name="mean")
        self._scale = snt.Linear(action_size, w_init=small, name="scale")

    def moments(self, observation: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        h = self._torso(information.select(observation, self.keys))
        mean = tf.tanh(self._mean(h))
        scale = self._min_scale + self._scale_factor * tf.nn.softplus(self._scale(h))
        return mean, scale

    def __call__(self, observation: Mapping[str, tf.Tensor]) -> tfd.MultivariateNormalDiag:
        mean, scale = self.moments(observation)
        return tfd.MultivariateNormalDiag(loc=mean, scale_diag=scale)

    @snt.no_name_scope  # NumPy only: skip Sonnet's per-call TensorFlow name scope
    def numpy_params(self) -> list[np.ndarray]:
        """Current parameters as NumPy arrays, in the order `numpy_moments` reads them."""
        return self._torso.numpy_params() + [
            self._mean.w.numpy(),
            self._mean.b.numpy(),
            self._scale.w.numpy(),
            self._scale.b.numpy(),
        ]

    @snt.no_name_scope  # called once per actor step: the name scope cost ~15 us a call
    def numpy_moments(
        self, params: Sequence[np.ndarray], observation: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """NumPy twin of `moments` for fast single-step actor inference."""
        h = mlp.numpy_forward(params[:-4], information.select_numpy(observation, self.keys))
        mean_w, mean_b, scale_w, scale_b = params[-4:]
        mean = np.tanh(h @ mean_w + mean_b)
        z = h @ scale_w + scale_b
        softplus = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))
        return mean, self._min_scale + self._scale_factor * softplus


def gaussian_log_prob(mean: np.ndarray, scale: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log N(x; mean, diag(scale^2)), summed over the last axis (NumPy)."""
    z = (x - mean) / scale
    return (
        -0.5 * np.add.reduce(z * z, axis=-1)
        - np.add.reduce(np.log(scale), axis=-1)
        - (0.5 * mean.shape[-1] * np.log(2.0 * np.pi))
    )
