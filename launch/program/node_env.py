"""The process environment every node starts with, locally and on Vertex AI."""

from __future__ import annotations

# Every node process runs single-threaded numerical libraries unless it says otherwise:
# 32 actors on a few cores must not oversubscribe the CPU. (Vertex AI nodes get the same.)
NODE_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MUJOCO_GL": "disable",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def node_environment(group: str) -> dict[str, str]:
    """`NODE_ENV` as a node of `group` starts with it: the learner keeps every thread for
    its matrix products (its XLA flags are added by the launcher, `launch/config/xla.py`)."""
    if group == "learner":
        return {k: v for k, v in NODE_ENV.items() if not k.endswith("_NUM_THREADS")}
    return dict(NODE_ENV)
