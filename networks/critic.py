"""State-action value network Q(x, a)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sonnet as snt
import tensorflow as tf

from bprl.networks import information, mlp

# `Critic.sampled` runs all action sets in one pass while the first layer's activations for
# all of them stay below this many bytes (they then fit the CPU's caches; the learner sets
# `resources.critic_one_pass_bytes`): at point-mass sizes (4-5 sets x 640-704 rows x 128
# units, 1.3-1.6 MB) one pass did not measurably change a whole run's speed (docs/results.md,
# issue 30); at Acme's walker sizes (10 x 2816 x 400, 45 MB) one set at a time was faster
# (issue 5).
ONE_PASS_BYTES = 4 * 2**20


class Critic(snt.Module):
    """Q(x, a): an MLP on [observation keys, action] with a scalar output."""

    def __init__(self, keys: Sequence[str], hidden_sizes: Sequence[int], name: str = "critic"):
        super().__init__(name=name)
        self.keys = tuple(keys)
        self._torso = mlp.LayerNormMLP(hidden_sizes)
        self._out = mlp.Linear(1, name="value")
        self.one_pass_bytes = ONE_PASS_BYTES  # `sampled`'s choice (0: one set at a time)

    def __call__(self, observation: Mapping[str, tf.Tensor], action: tf.Tensor) -> tf.Tensor:
        seen = information.select(observation, self.keys)  # [N, D]
        inputs = tf.concat([seen, action], axis=-1)  # [N, D + A]
        return tf.squeeze(self._out(self._torso(inputs, data_columns=seen.shape[-1])), axis=-1)

    def sampled(self, observation: Mapping[str, tf.Tensor], actions: tf.Tensor) -> tf.Tensor:
        """Q(x_n, a_kn) for K actions per observation row: actions [K, N, A] -> [K, N].

        Small: one call on K tiled copies of the observations (larger products run faster).
        Large (first-layer activations over `ONE_PASS_BYTES`): one action set at a time,
        so each set's [N, width] activations stay in the CPU cache where one [K * N, width]
        pass would stream them through memory (the layer norm and activations are
        memory-bound at that size; docs/results.md, issue 5). The same values either way.
        """
        sets, rows = actions.shape[0], actions.shape[1]  # K, N
        if sets * rows * self._torso.width * 4 > self.one_pass_bytes:
            return tf.stack([self(observation, actions[k]) for k in range(sets)])
        tiled = {  # [K * N, .]: set k's rows are rows k * N .. (k + 1) * N - 1
            key: tf.tile(value, [sets] + [1] * (len(value.shape) - 1))
            for key, value in observation.items()
        }
        q = self(tiled, tf.reshape(actions, [sets * rows, actions.shape[-1]]))  # [K * N]
        return tf.reshape(q, [sets, rows])
