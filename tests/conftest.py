"""Shared test set-up: headless MuJoCo, quiet TensorFlow, a learner node's XLA and oneDNN."""

import os

os.environ.setdefault("MUJOCO_GL", "disable")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# What a learner node's environment gets (launch/local/launcher.py): set before anything compiles
# and before TensorFlow is imported (oneDNN's kernels, which the bfloat16 products use).
from bprl.launch.config import xla  # noqa: E402

xla.request_fast_math()
os.environ.setdefault(xla.ONEDNN_ENV, "1")


import pytest  # noqa: E402


@pytest.fixture
def eager_tf():
    """tf.functions run eagerly: for tests of what an update changes, not of its compiled
    program (tracing one learner update takes ~10 s on 2 cores, running it eagerly ~1 s;
    the compiled update is checked against a reference in tests/test_learner_reference.py)."""
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(False)
