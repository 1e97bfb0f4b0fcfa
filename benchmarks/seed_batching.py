"""What running K seeds' learner updates in one compiled call can buy (issue 30, part 2).

Usage:
  python benchmarks/seed_batching.py [--seeds 5] [--rounds 3] [--out FILE.json]

A seed-batched sweep pays off only if K seeds' updates together cost much less than K
updates. Two sections at `seqnav_pointmass:local_short` sizes (128-unit networks, batch 64,
T = 10, 4 action samples), each interleaved round by round so a busy machine slows every
variant alike, all XLA-compiled as the learner is:
  1. products: a chain of 20 [rows, 128] x [128, 128] products with tanh between, rows =
     (T+1) * B as in an update: one seed; K seeds' weights one after another in one call;
     K seeds' weights stacked on a seed axis (one batched product per layer); one shared
     weight for K * rows (what stacking would approach if batched products ran as fast as
     one large product; seeds do not share weights, so this is an upper bound, not an option).
  2. updates: our whole update of one seed, one update per call and K per call (what the
     per-call cost is); and K seeds' updates in one call, the learning rule vectorised over
     a seed axis (`tf.vectorized_map` over stacked weights, the JAX-style `vmap`). Before
     timing, the vectorised losses and gradients are checked against each seed computed
     alone on the same batch and noise (`check` in the report).
Per-seed milliseconds are what a sweep of K seeds would pay per update and seed.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import bprl.environments  # noqa: E402,F401  (sets MUJOCO_GL before dm_control is imported)
from benchmarks import learner_bench, machine  # noqa: E402


def timed(fn, repeats: int) -> float:
    """Seconds per call of `fn` (which returns a tensor), waiting for the last result."""
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    np.asarray(out)
    return (time.perf_counter() - start) / repeats


def interleaved(fns: dict, rounds: int, repeats: int) -> dict:
    """{name: best seconds per call over `rounds`}, the variants alternating each round."""
    for fn in fns.values():  # trace and compile outside the timings
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            best[name] = min(best[name], timed(fn, repeats))
    return best


def products(seeds: int, rows: int, width: int, layers: int, rounds: int, repeats: int) -> dict:
    """Section 1: ms per seed of a product chain, for each way of holding K seeds' weights."""
    x = tf.random.normal([seeds, rows, width])  # [K, rows, W]
    w = tf.Variable(tf.random.normal([seeds, width, width]) / width**0.5)  # [K, W, W]

    def chain(h, weight):
        for _ in range(layers):
            h = tf.tanh(tf.matmul(h, weight))
        return tf.reduce_sum(h)

    compiled = {
        "one_seed": lambda: chain(x[0], w[0]),
        "seeds_in_turn": lambda: tf.add_n([chain(x[k], w[k]) for k in range(seeds)]),
        "seeds_stacked": lambda: chain(x, w),
        "shared_weight_bound": lambda: chain(tf.reshape(x, [-1, width]), w[0]),
    }
    fns = {k: tf.function(f, jit_compile=True) for k, f in compiled.items()}
    best = interleaved(fns, rounds, repeats)
    per_seed = {k: 1000 * s / (1 if k == "one_seed" else seeds) for k, s in best.items()}
    return {f"{k}_ms_per_seed": v for k, v in per_seed.items()}


def variable_slots(networks) -> list[tuple[object, str, tf.Variable]]:
    """(module, attribute, variable) for every trainable variable of the three networks, in
    the order of their `trainable_variables`: where to put a tensor in its place."""
    slots = []
    for net in (networks.policy, networks.prior, networks.critic):
        found = {}
        for module in (net, *net.submodules):
            for name, value in vars(module).items():
                if isinstance(value, tf.Variable) and value.trainable:
                    found[value.ref()] = (module, name, value)
        wanted = net.trainable_variables
        if len(found) != len(wanted):
            raise ValueError(f"{net.name}: {len(found)} variable attributes, {len(wanted)}")
        slots += [found[v.ref()] for v in wanted]
    return slots


@contextlib.contextmanager
def substituted(slots, tensors):
    """The modules compute with `tensors` in place of their variables (tracing only)."""
    for (module, name, _), tensor in zip(slots, tensors, strict=True):
        object.__setattr__(module, name, tensor)
    try:
        yield
    finally:
        for module, name, variable in slots:
            object.__setattr__(module, name, variable)


def updates(data: dict, seeds: int, rounds: int, repeats: int) -> dict:
    """Section 2: ms per seed and update of one seed alone and of K seeds vectorised."""
    from bprl.agents.learner import batch_from_replay, split_updates
    from bprl.agents.learning_rule import SequenceBatch, compute_losses
    from bprl.launch.program import builders

    builder = builders.RunBuilder(data["config"], data["env_spec"])
    networks, _ = builder.make_learner_networks()
    targets = copy.deepcopy(networks)
    hyper = builder.hyperparams
    online_slots, target_slots = variable_slots(networks), variable_slots(targets)
    # K seeds' weights: independent initialisations (a fresh set of networks each).
    per_seed = [[v for _, _, v in variable_slots(builder.make_networks())] for _ in range(seeds)]
    stacked = [tf.Variable(tf.stack(vs)) for vs in zip(*per_seed, strict=True)]  # [K, ...]
    replay = data["config"].replay
    samples, rows = hyper.num_action_samples, (replay.sequence_length + 1) * replay.batch_size
    action_size = int(np.prod(data["env_spec"].actions.shape))

    def one_seed(params, fields, noise):  # losses [3] and gradients of one seed
        batch = SequenceBatch(**fields)
        with substituted(online_slots, params), substituted(target_slots, params):
            with tf.GradientTape() as tape:
                tape.watch(params)
                loss = compute_losses(networks, targets, batch, hyper, noise)
                total = loss.critic + loss.policy + loss.prior
        grads = tape.gradient(total, params)
        return tf.stack([loss.critic, loss.policy, loss.prior]), grads

    def split(sample):  # K seeds' batches: [K, T+1, B, ...], without the absent fields
        batch = split_updates(batch_from_replay(sample), seeds)
        return {k: v for k, v in batch._asdict().items() if v is not None}

    def noise():  # [K, S, rows, A] each
        return tuple(tf.random.normal([seeds, samples, rows, action_size]) for _ in range(2))

    def vectorised(sample, eps):
        def body(args):
            return one_seed(*args)

        params = [tf.convert_to_tensor(v) for v in stacked]
        return tf.vectorized_map(body, (params, split(sample), eps), fallback_to_while_loop=False)

    def in_turn(sample, eps):
        fields = split(sample)
        out = [
            one_seed(
                [v[k] for v in stacked],
                tf.nest.map_structure(lambda x, k=k: x[k], fields),
                (eps[0][k], eps[1][k]),
            )
            for k in range(seeds)
        ]
        grads = [tf.stack(g) for g in zip(*(o[1] for o in out), strict=True)]
        return tf.stack([o[0] for o in out]), grads

    iterator = data["dataset"](seeds)  # elements of K * B sequences: B per seed
    compiled = {  # each traced and compiled once, by the check
        name: tf.function(fn, autograph=False, jit_compile=True)
        for name, fn in (("seeds_vectorised", vectorised), ("seeds_in_turn", in_turn))
    }
    sample, eps = next(iterator), noise()
    got = compiled["seeds_vectorised"](sample, eps)
    want = compiled["seeds_in_turn"](sample, eps)
    errors = [
        np.max(np.abs(a - b)) / (1e-6 + np.max(np.abs(b)))
        for a, b in zip([got[0], *got[1]], [want[0], *want[1]], strict=True)
    ]
    check = {"max_relative_error": float(max(errors)), "arrays": len(errors)}

    def apply(fn):
        def step():
            losses, grads = fn(next(iterator), noise())
            for variable, grad in zip(stacked, grads, strict=True):
                variable.assign_sub(1e-4 * grad)
            return losses

        return step

    single = {k: learner_bench.make_ours(data, updates_per_call=k)[0] for k in (1, seeds)}
    fns = {
        "one_seed_1_per_call": single[1],
        f"one_seed_{seeds}_per_call": single[seeds],
        "seeds_vectorised": apply(compiled["seeds_vectorised"]),
        "seeds_in_turn": apply(compiled["seeds_in_turn"]),
    }
    best = interleaved({k: _synced(f, stacked[0]) for k, f in fns.items()}, rounds, repeats)
    divide = {"one_seed_1_per_call": 1, f"one_seed_{seeds}_per_call": seeds}
    result = {f"{k}_ms_per_seed": 1000 * s / divide.get(k, seeds) for k, s in best.items()}
    return {**result, "check": check}


def _synced(step, variable):
    """`step` then a read of `variable`, so the timer waits for the update."""

    def call():
        step()
        return variable.read_value()

    return call


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="K seeds per call")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10, help="calls per timing")
    parser.add_argument("--batch-size", type=int, default=64, help="per seed")
    parser.add_argument("--sequence-length", type=int, default=10)
    parser.add_argument("--num-samples", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=20, help="products per chain")
    parser.add_argument("--fill-steps", type=int, default=3000)
    parser.add_argument("--out", default=None)
    parser.add_argument("--markdown", default=None)
    return parser.parse_args(argv)


def table(report: dict) -> str:
    lines = ["| section | variant | ms per seed |", "|---|---|---|"]
    for section in ("products", "updates"):
        for key, value in report[section].items():
            if key.endswith("_ms_per_seed"):
                lines.append(f"| {section} | {key[: -len('_ms_per_seed')]} | {value:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    hidden = (args.hidden, args.hidden)
    bench = argparse.Namespace(
        policy_hidden=hidden,
        prior_hidden=hidden,
        critic_hidden=hidden,
        num_samples=args.num_samples,
        sequence_length=args.sequence_length,
        batch_size=args.batch_size,  # per seed: K seeds' batches are K of them
        adder="fast",
        episode_steps=0,
        fill_steps=args.fill_steps,
    )
    rows = (args.sequence_length + 1) * args.batch_size
    report = machine.report_header(argv, args)
    report["products"] = products(
        args.seeds, rows, args.hidden, args.layers, args.rounds, args.repeats
    )
    data = learner_bench.setup("seqnav_pointmass", bench)
    try:
        report["updates"] = updates(data, args.seeds, args.rounds, args.repeats)
    finally:
        data["server"].stop()
    text = table(report)
    print(text)
    print("check:", report["updates"]["check"])
    path = machine.write_outputs(report, text, args.out, args.markdown, ROOT, "seed_batching")
    print("wrote", path)


if __name__ == "__main__":
    main()
