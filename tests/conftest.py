"""Shared test set-up: headless MuJoCo, quiet TensorFlow, the learner node's XLA flags."""

import os

os.environ.setdefault("MUJOCO_GL", "disable")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# What a learner node's environment gets (launch/local.py): set before anything compiles.
from launch import xla  # noqa: E402

xla.request_fast_math()
