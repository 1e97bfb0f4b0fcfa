"""Layer-normalised MLP torso shared by policy, prior and critic."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sonnet as snt
import tensorflow as tf


class Linear(snt.Linear):
    """`snt.Linear` whose matrix product can run in bfloat16 (`product_dtype`, set by
    `Networks.set_product_dtype` for the learner's onednn_bfloat16 kernels, launch/config/xla.py).

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
        self._norm_built = False
        self.width = int(hidden_sizes[0])  # the first layer's units

    def __call__(self, inputs: tf.Tensor, data_columns: int = 0) -> tf.Tensor:
        """[..., in] -> [..., last width].

        The first `data_columns` input columns are data no gradient is asked of (a critic's
        observation, beside its action). With float32 products (the learner's XLA update)
        two rewrites of the same arithmetic took 12% off a walker update at Acme's sizes
        (seqnav 6% slower; docs/results.md, issue 18): the first layer's input gradient
        covers the other columns only (`_first_layer`), and the layer norm's row means are
        matrix products (`_normalise`). With bfloat16 products it runs as snt.LayerNorm.
        """
        first = self._linears[0]
        float32 = first.product_dtype == tf.float32
        if data_columns and float32:
            first._initialize(inputs)  # creates w and b on the first call
            data, wanted = inputs[..., :data_columns], inputs[..., data_columns:]
            h = _first_layer(data, wanted, first.w, first.b)  # [..., width]
        else:
            h = first(inputs)  # [..., width]
        if not self._norm_built:  # creates the layer norm's scale and offset
            self._norm(h)
            self._norm_built = True
        if float32:
            h = _normalise(h) * self._norm.scale + self._norm.offset  # [..., width]
        else:
            h = self._norm(h)
        h = tf.tanh(h)
        for linear in self._linears[1:]:
            h = tf.nn.elu(linear(h))  # [..., width_i]
        return h

    @snt.no_name_scope
    def numpy_params(self) -> list[np.ndarray]:
        """Parameters in the order `numpy_forward` reads them."""
        params = [self._linears[0].w, self._linears[0].b, self._norm.scale, self._norm.offset]
        for linear in self._linears[1:]:
            params += [linear.w, linear.b]
        return [p.numpy() for p in params]


def _rows(x: tf.Tensor) -> tf.Tensor:
    """[..., W] -> [M, W]: the leading axes merged (a no-op for the learner's [N, W])."""
    return tf.reshape(x, [-1, x.shape[-1]])


def _unrows(x: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """[M, W'] -> [..., W'] with the leading axes of `like`."""
    return tf.reshape(x, tf.concat([tf.shape(like)[:-1], [x.shape[-1]]], axis=0))


def _row_mean(h: tf.Tensor) -> tf.Tensor:
    """[..., W] -> [..., 1]: the mean over the last axis, as a matrix product.

    XLA:CPU rewrites a reduction over more than 32 elements into a reduce-window pass that
    runs on one thread; a product with a [W, 2] matrix of 1/W (two columns, so XLA keeps
    it a matrix product) runs on every core. Same sum, another order of additions.
    """
    width = h.shape[-1]
    mean = tf.matmul(_rows(h), tf.fill([width, 2], 1.0 / width))[:, :1]  # [M, 1]
    return _unrows(mean, h)


@tf.custom_gradient
def _normalise(h: tf.Tensor):
    """Layer normalisation before its scale and offset: (h - mean) / sqrt(var + 1e-5) over
    the last axis, as snt.LayerNorm computes it; every row mean is a `_row_mean` product,
    in the gradient too (written out: dh = (dy - mean(dy) - y mean(dy y)) / sqrt(var + eps))."""
    centred = h - _row_mean(h)  # [..., W]
    inverse = tf.math.rsqrt(_row_mean(centred * centred) + 1e-5)  # [..., 1]
    y = centred * inverse  # [..., W]

    def grad(dy):  # dy [..., W]
        return inverse * (dy - _row_mean(dy) - y * _row_mean(dy * y))

    return y, grad


def _first_layer(data: tf.Tensor, wanted: tf.Tensor, w: tf.Variable, b: tf.Variable) -> tf.Tensor:
    """[data, wanted] @ w + b: [..., D] and [..., A] -> [..., out], with gradients for
    `wanted`, w and b only. Automatic differentiation would compute the input gradient of
    all D + A columns and drop the first D (for a critic: its observation, of 24 columns
    beside 6 of action on walker)."""
    data_columns = data.shape[-1]

    @tf.custom_gradient
    def layer(wanted, w, b):
        inputs = tf.concat([_rows(data), _rows(wanted)], axis=-1)  # [M, D + A]
        out = tf.matmul(inputs, w) + b  # [M, out]

        def grad(dy):  # dy [..., out]
            dy = _rows(dy)  # [M, out]
            d_wanted = tf.matmul(dy, w[data_columns:], transpose_b=True)  # [M, A]
            d_w = tf.matmul(inputs, dy, transpose_a=True)  # [D + A, out]
            return _unrows(d_wanted, wanted), d_w, tf.reduce_sum(dy, axis=0)

        return _unrows(out, wanted), grad

    return layer(wanted, tf.convert_to_tensor(w), tf.convert_to_tensor(b))


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
