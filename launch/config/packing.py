"""How the actor streams of a run are packed into actor processes (issue 18).

`actors.num_actors` is the number of environment streams; each actor process runs
`actors.envs_per_process` of them with one batched inference per step
(`agents/packed_actor.py`), so a run has ceil(num_actors / envs_per_process) actor
processes. Stream i keeps actor i's id, seed (seed * 1000 + i) and event directory
(`actors/<i>/`) whatever the packing, so packed and unpacked runs compare.

0 (auto) picks about one actor process per core of the machine that builds the program,
at most `MAX_AUTO_ENVS_PER_PROCESS` streams each. Light on purpose (no TensorFlow): the
actor node's supervising process imports it.
"""

from __future__ import annotations

import math
import os

import ml_collections

# Auto packing never puts more streams than this into one process: one process steps its
# environments one after another, so a long row of them adds latency per inference.
MAX_AUTO_ENVS_PER_PROCESS = 16


def machine_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def envs_per_process(config: ml_collections.ConfigDict, cores: int | None = None) -> int:
    """Streams per actor process: the configured number, or for 0 (auto)
    ceil(num_actors / cores), capped at MAX_AUTO_ENVS_PER_PROCESS (`cores`: this machine's)."""
    streams = int(config.actors.num_actors)
    chosen = int(config.actors.get("envs_per_process", 1))
    if chosen > 0:
        return max(1, min(chosen, streams))
    cores = cores if cores is not None else machine_cores()
    return max(1, min(MAX_AUTO_ENVS_PER_PROCESS, math.ceil(streams / max(1, cores))))


def stream_groups(
    config: ml_collections.ConfigDict, cores: int | None = None
) -> list[tuple[int, ...]]:
    """The stream ids of each actor process, in order: [(0, 1, ...), (k, k + 1, ...), ...]."""
    streams = int(config.actors.num_actors)
    size = envs_per_process(config, cores)
    return [tuple(range(start, min(start + size, streams))) for start in range(0, streams, size)]


def process_name(stream_ids) -> str:
    """An actor process's name in logs: actor_<id> or actor_<first>-<last>."""
    ids = tuple(stream_ids)
    return f"actor_{ids[0]}" + (f"-{ids[-1]}" if len(ids) > 1 else "")
