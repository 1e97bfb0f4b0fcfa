"""The matrix-product work of one learner update, counted from the sizes.

One model serves two readers: the benchmarks' arithmetic floor (benchmarks/flops.py) and
the choice of the learner's kernels (`launch.xla.resolve_kernels`): bfloat16 products on
oneDNN only pay where products are most of an update's time, which this count says.
No TensorFlow here: the launcher reads it before any node starts.
"""

from __future__ import annotations

from collections.abc import Sequence


def mlp_layers(in_size: int, hidden: Sequence[int], out_sizes: Sequence[int]) -> list[tuple]:
    """(in, out) of each dense layer of an MLP torso with one dense head per output."""
    sizes = [in_size, *hidden]
    layers = list(zip(sizes[:-1], sizes[1:], strict=True))
    return layers + [(sizes[-1], o) for o in out_sizes]


def update_matmul_flops(
    obs: int,
    prior_obs: int,
    act: int,
    batch_size: int,
    sequence_length: int,
    num_samples: int,
    policy_hidden: Sequence[int],
    prior_hidden: Sequence[int],
    critic_hidden: Sequence[int],
) -> float:
    """Matrix-multiply FLOPs that one update of the learning rule cannot avoid.

    A dense layer on N rows costs 2*N*in*out forward, the same again for the weight
    gradient and again for the input gradient. Per update ((T+1)*B rows, of which the T*B
    transitions are those Retrace and the critic loss read): online policy and prior:
    forward + weight gradients (+ input gradients past layer 1); target policy and prior:
    forward; target critic: forward on the taken actions and S target-policy samples at
    steps 1..T (Retrace reads no value at step 0); online critic: forward on the taken
    actions at steps 0..T-1 (+ weight and input gradients, critic loss) and on S policy
    samples at every step (+ input gradients, SVG(0)). Elementwise work (LayerNorm,
    activations, KL, Retrace) is not counted; an LSTM or hierarchical prior is counted as
    an MLP of its widths.
    """
    rows = (sequence_length + 1) * batch_size
    transitions = rows - batch_size

    def fwd(layers, n):
        return sum(2.0 * n * i * o for i, o in layers)

    def dx(layers, n):  # input gradients; a first layer fed by data needs none
        return sum(2.0 * n * i * o for i, o in layers[1:])

    pol = mlp_layers(obs, policy_hidden, [act, act])
    pri = mlp_layers(prior_obs, prior_hidden, [act, act])
    cri = mlp_layers(obs + act, critic_hidden, [1])
    cri_first_action = 2.0 * act * cri[0][1]  # gradient to the action columns only
    heads = fwd(pol, rows) * 3 + dx(pol, rows) + fwd(pri, rows) * 3 + dx(pri, rows)
    target_critic = fwd(cri, (num_samples + 1) * transitions)
    critic = fwd(cri, transitions) * 2 + dx(cri, transitions)
    svg = (
        fwd(cri, num_samples * rows)
        + dx(cri, num_samples * rows)
        + cri_first_action * num_samples * rows
    )
    return heads + target_critic + critic + svg
