"""Shared test set-up: headless MuJoCo, quiet TensorFlow."""

import os

os.environ.setdefault("MUJOCO_GL", "disable")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
