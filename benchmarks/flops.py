"""Section 5 of the throughput benchmark: the matrix-multiply floor of one update
(FLOPs counted from the sizes, over this machine's measured tf.matmul rate)."""

from __future__ import annotations

import argparse
import time


def matmul_rate(rows: int, inner: int, out: int, repeats: int) -> float:
    """FLOP/s of tf.matmul [rows, inner] x [inner, out] (float32) on this machine."""
    import tensorflow as tf

    a = tf.random.normal([rows, inner])
    b = tf.random.normal([inner, out])

    @tf.function
    def product(a, b):
        return tf.reduce_sum(tf.matmul(a, b))

    product(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        product(a, b).numpy()
    elapsed = time.perf_counter() - start
    return 2.0 * rows * inner * out * repeats / elapsed


def _mlp_layers(in_size: int, hidden, out_sizes) -> list[tuple[int, int]]:
    sizes = [in_size, *hidden]
    layers = list(zip(sizes[:-1], sizes[1:], strict=True))
    return layers + [(sizes[-1], o) for o in out_sizes]


def update_flops(
    obs: int, prior_obs: int, act: int, rows: int, samples: int, args: argparse.Namespace
) -> float:
    """Matrix-multiply FLOPs that one update of our learning rule cannot avoid.

    A dense layer on N rows costs 2*N*in*out forward, the same again for the weight
    gradient and again for the input gradient. Per update ((T+1)*B = `rows` rows, of which
    the T*B `transitions` are those Retrace and the critic loss read):
    online policy and prior: forward + weight gradients (+ input gradients past layer 1);
    target policy and prior: forward; target critic: forward on the taken actions and S
    target-policy samples at time steps 1..T (Retrace reads no value at step 0); online
    critic: forward on the taken actions at steps 0..T-1 (+ weight and input gradients,
    critic loss) and on S policy samples at every step (+ input gradients, SVG(0)).
    Elementwise work (LayerNorm, activations, KL, Retrace) is not counted.
    """
    transitions = rows - args.batch_size

    def fwd(layers, n):
        return sum(2.0 * n * i * o for i, o in layers)

    def dx(layers, n):  # input gradients; a first layer fed by data needs none
        return sum(2.0 * n * i * o for i, o in layers[1:])

    pol = _mlp_layers(obs, args.policy_hidden, [act, act])
    pri = _mlp_layers(prior_obs, args.prior_hidden, [act, act])
    cri = _mlp_layers(obs + act, args.critic_hidden, [1])
    cri_first_action = 2.0 * act * cri[0][1]  # gradient to the action columns only
    heads = fwd(pol, rows) * 3 + dx(pol, rows) + fwd(pri, rows) * 3 + dx(pri, rows)
    target_critic = fwd(cri, (samples + 1) * transitions)
    critic = fwd(cri, transitions) * 2 + dx(cri, transitions)
    svg = fwd(cri, samples * rows) + dx(cri, samples * rows) + cri_first_action * samples * rows
    return heads + target_critic + critic + svg
