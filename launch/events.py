"""Reads scalar curves back from TensorBoard event files (TensorBoard's own reader)."""

from __future__ import annotations

import os

import numpy as np
from tensorboard.backend.event_processing import event_accumulator


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} for every scalar written under `logdir` (one run dir)."""
    accumulator = event_accumulator.EventAccumulator(
        logdir, size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0}
    )
    accumulator.Reload()
    curves: dict[str, list[tuple[int, float]]] = {}
    for tag in accumulator.Tags().get(event_accumulator.TENSORS, []):
        curves[tag] = [
            (int(e.step), float(np.asarray(_tensor_value(e.tensor_proto))))
            for e in accumulator.Tensors(tag)
        ]
    for tag in accumulator.Tags().get(event_accumulator.SCALARS, []):
        curves[tag] = [(int(e.step), float(e.value)) for e in accumulator.Scalars(tag)]
    return curves


def _tensor_value(proto) -> np.ndarray:
    import tensorflow as tf

    return tf.make_ndarray(proto)


def run_dirs(root: str) -> list[str]:
    """Every directory under `root` that directly holds event files."""
    found = []
    for dirpath, _, filenames in os.walk(root):
        if any(name.startswith("events.out.tfevents") for name in filenames):
            found.append(dirpath)
    return sorted(found)
