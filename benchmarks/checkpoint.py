"""Checkpoint cost of a full replay: Reverb checkpoint time and size, and restore time.

  python benchmarks/checkpoint.py [--items N] [--task walker_walk] [--out FILE.json]

Fills a replay table shaped like the trainer's (sequences of T+1 steps with the behaviour
log-probability) with real environment steps under random actions, written by the
trainer's own adder; then checkpoints it with Reverb, measures the files, and times a new
server that loads the checkpoint (what a resumed run's replay node does).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import acme
import numpy as np
import reverb

from bprl.experiments.configs.base import base_config
from bprl.launch.program import builders


def _dir_size(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def _table(config, spec) -> reverb.Table:
    """The trainer's table (same signature and selectors) without rate limiting."""
    return builders.RunBuilder(config, spec).make_unlimited_table()


def measure(task: str, items: int, workdir: str) -> dict:
    config = base_config()
    config.task = task
    config.replay.max_size = items
    env = builders.RunBuilder(config).make_environment(0)
    spec = acme.make_environment_spec(env)
    table = _table(config, spec)
    path = os.path.join(workdir, "replay")
    server = reverb.Server(
        [table], port=None, checkpointer=reverb.checkpointers.DefaultCheckpointer(path)
    )
    client = reverb.Client(f"localhost:{server.port}")
    adder = builders.RunBuilder(config).make_adder(client)
    rng = np.random.default_rng(0)
    fill_started = time.time()
    steps = 0
    while client.server_info()[builders.REPLAY_TABLE].current_size < items:
        timestep = env.reset()
        adder.add_first(timestep)
        while not timestep.last():
            action = rng.uniform(-1, 1, spec.actions.shape).astype(np.float32)
            timestep = env.step(action)
            adder.add(action, timestep, extras={"log_prob": np.float32(0.0)})
            steps += 1
    fill_secs = time.time() - fill_started
    del adder
    size = client.server_info()[builders.REPLAY_TABLE].current_size

    started = time.time()
    checkpoint_path = client.checkpoint()
    checkpoint_secs = time.time() - started
    checkpoint_bytes = _dir_size(checkpoint_path)
    server.stop()

    started = time.time()
    restored = reverb.Server(
        [_table(config, spec)],
        port=None,
        checkpointer=reverb.checkpointers.DefaultCheckpointer(path),
    )
    restore_secs = time.time() - started
    restored_items = (
        reverb.Client(f"localhost:{restored.port}")
        .server_info()[builders.REPLAY_TABLE]
        .current_size
    )
    restored.stop()
    return {
        "task": task,
        "items": size,
        "env_steps_written": steps,
        "fill_seconds": round(fill_secs, 1),
        "checkpoint_seconds": round(checkpoint_secs, 3),
        "checkpoint_mib": round(checkpoint_bytes / 2**20, 1),
        "restore_seconds": round(restore_secs, 3),
        "restored_items": restored_items,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--task", default="walker_walk")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        result = measure(args.task, args.items, workdir)
    for key, value in result.items():
        print(f"{key:>20}: {value}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
