"""Layer-normalised MLP torso shared by policy, prior and critic."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sonnet as snt
import tensorflow as tf


class Linear(snt.Linear):
    """`snt.Linear` whose matrix product can run in bfloat16 (`product_dtype`, set by
    `Networks.set_product_dtype` for the learner's onednn_bfloat16 kernels, launch/xla.py).

    x @ w + b: [N, in] -> [N, out] float32. In bfloat16, x and w are rounded for the
    product only (oneDNN accumulates in float32, rounds the result to bfloat16; it comes
    back as float32); w stays a float32 variable with a float32 gradient, so the optimiser
    and the actors see float32 weights.
    """

    product_dtype = tf.float32

    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        if self.product_dtype == tf.float32:
            return super().__call__(inputs)
        self._initialize(inputs)
        dtype = self.product_dtype
        product = tf.matmul(tf.cast(inputs, dtype), tf.cast(self.w, dtype))  # [N, out]
        return tf.cast(product, tf.float32) + self.b


class LayerNormMLP(snt.Module):
    """Linear -> LayerNorm -> tanh, then (Linear -> ELU) for each further layer.

    The first layer is normalised and squashed so inputs of very different scales
    (positions, velocities, one-hot identities) start on an equal footing.
    """

    def __init__(self, hidden_sizes: Sequence[int], name: str = "layer_norm_mlp"):
        super().__init__(name=name)
        if not hidden_sizes:
            raise ValueError("an MLP needs at least one hidden layer")
        self._linears = [
            Linear(size, w_init=snt.initializers.VarianceScaling(1.0, "fan_in", "uniform"))
            for size in hidden_sizes
        ]
        self._norm = snt.LayerNorm(axis=-1, create_scale=True, create_offset=True)

    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        h = tf.tanh(self._norm(self._linears[0](inputs)))
        for linear in self._linears[1:]:
            h = tf.nn.elu(linear(h))
        return h

    @snt.no_name_scope
    def numpy_params(self) -> list[np.ndarray]:
        """Parameters in the order `numpy_forward` reads them."""
        params = [self._linears[0].w, self._linears[0].b, self._norm.scale, self._norm.offset]
        for linear in self._linears[1:]:
            params += [linear.w, linear.b]
        return [p.numpy() for p in params]


def numpy_forward(params: Sequence[np.ndarray], inputs: np.ndarray) -> np.ndarray:
    """NumPy twin of `LayerNormMLP.__call__` (same parameters, same result)."""
    # Written with bare ufuncs: an actor calls this once per environment step, where
    # `ndarray.mean`/`var` and `np.where` cost more in Python overhead than the matmuls.
    w, b, scale, offset = params[:4]
    h = inputs @ w + b
    width = h.shape[-1]
    centred = h - np.add.reduce(h, axis=-1, keepdims=True) / width
    var = np.add.reduce(centred * centred, axis=-1, keepdims=True) / width
    h = np.tanh(centred / np.sqrt(var + 1e-5) * scale + offset)
    for i in range(4, len(params), 2):
        h = h @ params[i] + params[i + 1]
        # elu(h) = max(h, 0) + expm1(min(h, 0))
        h = np.maximum(h, 0.0) + np.expm1(np.minimum(h, 0.0))
    return h
