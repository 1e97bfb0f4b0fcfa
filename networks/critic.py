"""State-action value network Q(x, a)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sonnet as snt
import tensorflow as tf

from bprl.networks import information, mlp


class Critic(snt.Module):
    """Q(x, a): an MLP on [observation keys, action] with a scalar output."""

    def __init__(self, keys: Sequence[str], hidden_sizes: Sequence[int], name: str = "critic"):
        super().__init__(name=name)
        self.keys = tuple(keys)
        self._torso = mlp.LayerNormMLP(hidden_sizes)
        self._out = mlp.Linear(1, name="value")

    def __call__(self, observation: Mapping[str, tf.Tensor], action: tf.Tensor) -> tf.Tensor:
        seen = information.select(observation, self.keys)  # [N, D]
        inputs = tf.concat([seen, action], axis=-1)  # [N, D + A]
        return tf.squeeze(self._out(self._torso(inputs, data_columns=seen.shape[-1])), axis=-1)

    def sampled(self, observation: Mapping[str, tf.Tensor], actions: tf.Tensor) -> tf.Tensor:
        """Q(x_n, a_kn) for K actions per observation row: actions [K, N, A] -> [K, N].

        The same values as one call on K tiled copies of the observations, computed one
        action set at a time: each set's [N, width] activations then stay in the CPU cache,
        where one [K * N, width] pass streams them through memory (the layer norm and
        activations are memory-bound at that size; docs/results.md, issue 5).
        """
        return tf.stack([self(observation, actions[k]) for k in range(actions.shape[0])])
