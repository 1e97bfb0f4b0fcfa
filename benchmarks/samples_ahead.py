"""How far the learner's input pipeline samples ahead of the updates, and how fast it samples.

Every sample the learner's dataset takes counts against the replay table's rate limiter
(`launch.builders.replay_table`), so the samples it holds ahead of the updates let the
actors insert that many more items, divided by samples per insert. While the learner's
first call compiles (seconds to tens of seconds), that is how far the actors run ahead of
the first update; a short run can reach its budget before it (issue 18).

Two pipelines, each with one to several batches per element (K updates per call):
- `node`: the learner node's (`launch.builders.make_dataset`);
- `acme`: Acme's `datasets.make_reverb_dataset` with the same batch, prefetch and
  in-flight samples (its 12 parallel samplers).

Part 1 (ahead): a real replay server with the program's rate-limited table; a thread
steps a real environment with random actions and writes sequences with the program's
adder as fast as the limiter allows; the pipeline's first element is taken, then nothing
for `--hold` seconds (a compiling first call). Reported: items inserted and samples
taken by then. Part 2 (rate): a never-blocking table of `--items` sequences; elements
per second over `--elements` elements after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

PIPELINES = ("node", "acme")


def make_pipeline(kind: str, config, address: str, k: int):
    from acme import datasets

    from bprl.launch.program import builders

    if kind == "node":
        return builders.RunBuilder(config).make_dataset(address, k)
    batch = config.replay.batch_size
    return datasets.make_reverb_dataset(
        server_address=address,
        batch_size=batch * k,
        prefetch_size=max(1, -(-config.replay.prefetch_size // k)),
        max_in_flight_samples_per_worker=2 * batch,
        table=builders.REPLAY_TABLE,
    )


def write_steps(config, client, stop: threading.Event, seed: int, max_steps: int = 0) -> None:
    """Random-action steps of a real environment through the program's adder."""
    import numpy as np

    from bprl.launch.program import builders

    env = builders.RunBuilder(config).make_environment(seed)
    adder = builders.RunBuilder(config).make_adder(client)
    extras_spec = builders.RunBuilder(config).extras_spec
    extras = {key: np.zeros(s.shape, s.dtype) for key, s in extras_spec.items()}
    spec = env.action_spec()
    rng = np.random.default_rng(seed)
    timestep = env.reset()
    adder.add_first(timestep)
    steps = 0
    while not stop.is_set() and (max_steps <= 0 or steps < max_steps):
        action = rng.uniform(spec.minimum, spec.maximum, spec.shape).astype(spec.dtype)
        timestep = env.step(action)
        adder.add(action, timestep, extras=extras) if extras else adder.add(action, timestep)
        steps += 1
        if timestep.last():
            timestep = env.reset()
            adder.add_first(timestep)
    if max_steps > 0:
        adder.flush()


def measure_ahead(config, kind: str, k: int, hold: float) -> dict:
    import reverb

    from bprl.launch.program import builders

    env_spec = builders.RunBuilder(config).env_spec
    server = reverb.Server([builders.RunBuilder(config, env_spec).make_replay_tables()[0]])
    address = f"localhost:{server.port}"
    client = reverb.Client(address)
    stop = threading.Event()
    writer = threading.Thread(target=write_steps, args=(config, client, stop, 1), daemon=True)
    writer.start()
    # The first element needs min_size items: fail instead of waiting on a dead writer.
    deadline = time.time() + 120
    while client.server_info()[builders.REPLAY_TABLE].current_size < config.replay.min_size:
        if not writer.is_alive() or time.time() > deadline:
            raise RuntimeError("the writer thread did not fill the table to min_size")
        time.sleep(0.1)
    iterator = iter(make_pipeline(kind, config, address, k))
    next(iterator)
    time.sleep(hold)
    info = client.server_info()[builders.REPLAY_TABLE].rate_limiter_info
    stop.set()
    batch = config.replay.batch_size
    result = {
        "pipeline": kind,
        "updates_per_call": k,
        "items_inserted": int(info.insert_stats.completed),
        "samples_taken": int(info.sample_stats.completed),
        "samples_ahead": int(info.sample_stats.completed) - batch * k,
    }
    result["actor_steps_ahead"] = result["items_inserted"] * config.replay.sequence_length
    del iterator
    server.stop()
    return result


def measure_rate(config, kind: str, k: int, items: int, elements: int) -> dict:
    import reverb

    from bprl.launch.program import builders

    env_spec = builders.RunBuilder(config).env_spec
    table = builders.RunBuilder(config, env_spec).make_unlimited_table(max_size=max(items, 1))
    server = reverb.Server([table])
    address = f"localhost:{server.port}"
    client = reverb.Client(address)
    steps = items * config.replay.sequence_length
    write_steps(config, client, threading.Event(), 2, max_steps=steps)
    iterator = iter(make_pipeline(kind, config, address, k))
    for _ in range(5):
        next(iterator)
    start = time.perf_counter()
    for _ in range(elements):
        next(iterator)
    seconds = time.perf_counter() - start
    batch = config.replay.batch_size
    del iterator
    server.stop()
    return {
        "pipeline": kind,
        "updates_per_call": k,
        "batch_size": batch,
        "samples_per_s": elements * k * batch / seconds,
        "batches_per_s": elements * k / seconds,
    }


def main(argv: list[str] | None = None) -> dict:
    from benchmarks import machine
    from bprl.launch.config import loading

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        default="experiments/configs/walker_walk.py:tiny",
        help="config FILE:variant, FILE relative to the repository",
    )
    parser.add_argument("--updates-per-call", default="1,4", help="K values, comma-separated")
    parser.add_argument("--pipelines", default="node,acme")
    parser.add_argument("--batch-size", type=int, default=0, help="0: the config's")
    parser.add_argument("--hold", type=float, default=15.0, help="seconds of a first call")
    parser.add_argument("--items", type=int, default=3000, help="sequences in the rate table")
    parser.add_argument("--elements", type=int, default=300, help="elements timed per rate")
    parser.add_argument("--out", default=None, help="JSON report")
    args = parser.parse_args(argv)
    config = loading.load_config(os.path.join(ROOT, args.config))
    if args.batch_size:
        config.replay.batch_size = args.batch_size
    kinds = [kind for kind in args.pipelines.split(",") if kind]
    unknown = sorted(set(kinds) - set(PIPELINES))
    if unknown:
        parser.error(f"unknown pipeline(s) {unknown}; choose from {PIPELINES}")
    ks = [int(k) for k in args.updates_per_call.split(",") if k]
    report = machine.report_header(argv, args)
    report["ahead"], report["rate"] = [], []
    for k in ks:
        for kind in kinds:
            ahead = measure_ahead(config, kind, k, args.hold)
            report["ahead"].append(ahead)
            print(
                f"ahead  {kind:5s} K={k}: {ahead['samples_ahead']:6d} samples ahead, "
                f"{ahead['items_inserted']} items ({ahead['actor_steps_ahead']} actor steps) "
                f"inserted {args.hold:g} s after the first element",
                flush=True,
            )
    for k in ks:
        for kind in kinds:
            rate = measure_rate(config, kind, k, args.items, args.elements)
            report["rate"].append(rate)
            print(
                f"rate   {kind:5s} K={k} B={rate['batch_size']}: "
                f"{rate['samples_per_s']:,.0f} samples/s ({rate['batches_per_s']:,.0f} batches/s)",
                flush=True,
            )
    machine.write_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
