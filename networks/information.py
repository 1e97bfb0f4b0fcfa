"""Information sets: which observation keys a network may see.

A network's input is the concatenation, in a fixed order, of the observation entries named
by its keys. Restricting the prior's keys is how the prior is denied information.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf


def input_size(observation_spec: Mapping, keys: Sequence[str]) -> int:
    """Width of the concatenated input for `keys`; raises on an unknown key."""
    missing = [key for key in keys if key not in observation_spec]
    if missing:
        raise ValueError(
            f"observation keys {missing} are not observed by the environment; "
            f"it observes {sorted(observation_spec)}"
        )
    return int(sum(np.prod(observation_spec[key].shape) for key in keys))


def select(observation: Mapping[str, tf.Tensor], keys: Sequence[str]) -> tf.Tensor:
    """Concatenates `observation[key]` for `keys` along the last axis (TensorFlow)."""
    parts = [tf.cast(observation[key], tf.float32) for key in keys]
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)


def select_numpy(observation: Mapping[str, np.ndarray], keys: Sequence[str]) -> np.ndarray:
    """NumPy twin of `select`, used for actor inference."""
    parts = [observation[key] for key in keys]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)
