"""Section 5 of the throughput benchmark: the matrix-multiply floor of one update
(FLOPs counted from the sizes, over this machine's measured tf.matmul rate)."""

from __future__ import annotations

import argparse
import time


def matmul_rate(rows: int, inner: int, out: int, repeats: int, dtype: str = "float32") -> float:
    """FLOP/s of tf.matmul [rows, inner] x [inner, out] in `dtype` on this machine."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal([rows, inner]), dtype)
    b = tf.cast(tf.random.normal([inner, out]), dtype)

    @tf.function
    def product(a, b):
        return tf.reduce_sum(tf.matmul(a, b))

    product(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        product(a, b).numpy()
    elapsed = time.perf_counter() - start
    return 2.0 * rows * inner * out * repeats / elapsed


def update_flops(
    obs: int, prior_obs: int, act: int, rows: int, samples: int, args: argparse.Namespace
) -> float:
    """Matrix-multiply FLOPs that one update cannot avoid (`agents/update_cost.py`), at
    the benchmark's sizes; `rows` = (T+1) * batch."""
    from bprl.agents.update_cost import update_matmul_flops

    return update_matmul_flops(
        obs,
        prior_obs,
        act,
        batch_size=args.batch_size,
        sequence_length=rows // args.batch_size - 1,
        num_samples=samples,
        policy_hidden=args.policy_hidden,
        prior_hidden=args.prior_hidden,
        critic_hidden=args.critic_hidden,
    )
