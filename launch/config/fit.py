"""Whether a local run fits this machine: its nodes, processes and memory from the program's
shape (shape.py), refused before launch with the most actors that would fit."""

from __future__ import annotations

import ml_collections

from bprl.launch.config import shape
from bprl.launch.config.errors import ConfigError

# Memory of one node process that imports TensorFlow, Reverb, Acme and dm_control (learner,
# replay, counter, stopper, evaluators; the launcher too), rounded up from the peak memory
# of the default 32-actor program (docs/results.md, "The default 32-actor program").
GIB_PER_NODE = 0.5
# An actor process: its light supervising node (no TensorFlow), the worker it spawns and
# multiprocessing's resource tracker; and each environment stream the worker runs
# (benchmarks/memory.py, docs/results.md "Throughput II"; rounded up).
GIB_PER_ACTOR_PROCESS = 0.4
GIB_PER_STREAM = 0.02


def program_size(config: ml_collections.ConfigDict) -> tuple[int, int, float]:
    """(nodes, processes, GiB) of a local run of `config`: each actor process is a node,
    its worker and a resource tracker (launch/config/packing.py groups the streams); replay,
    counter, learner, stopper and the evaluators one process each; and the launcher."""
    streams = int(config.actors.num_actors)
    sizes = shape.group_sizes(config)
    actor_processes = sizes["actor"]
    others = sum(sizes.values()) - actor_processes
    nodes = actor_processes + others
    processes = 1 + nodes + 2 * actor_processes  # launcher, nodes, workers, trackers
    gib = (
        GIB_PER_NODE * (others + 1)
        + GIB_PER_ACTOR_PROCESS * actor_processes
        + GIB_PER_STREAM * streams
    )
    return nodes, processes, gib


def validate_fits_machine(config: ml_collections.ConfigDict, runs_at_once: int = 1) -> None:
    """Refuses a local launch this machine cannot hold (memory, process limit)."""
    import resource

    import psutil

    nodes, processes, gib = program_size(config)
    processes, gib = processes * runs_at_once, gib * runs_at_once
    total = psutil.virtual_memory().total / 2**30
    streams = int(config.actors.num_actors)
    actor_processes = shape.group_sizes(config)["actor"]
    what = (
        f"{streams} actor streams in {actor_processes} actor processes, "
        f"~{GIB_PER_ACTOR_PROCESS} GiB each + {GIB_PER_STREAM} GiB per stream; "
        f"{nodes - actor_processes} other nodes + the launcher, ~{GIB_PER_NODE} GiB each"
    )
    if runs_at_once > 1:
        what += f"; times {runs_at_once} runs at once"
    if gib > total:
        fit = _most_streams_that_fit(config, total / runs_at_once)
        raise ConfigError(
            f"the program needs about {gib:.1f} GiB of memory ({what}; {processes} "
            f"processes) but this machine has {total:.1f} GiB; "
            f"use at most {fit} actors (--config.actors.num_actors)"
        )
    limit = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    ceiling = pid_max if limit == resource.RLIM_INFINITY else min(limit, pid_max)
    if processes > ceiling:
        raise ConfigError(
            f"the program needs {processes} processes ({what}) but this machine allows "
            f"{ceiling} (ulimit -u / kernel.pid_max)"
        )


def _most_streams_that_fit(config: ml_collections.ConfigDict, gib: float) -> int:
    """The most actor streams (same packing setting) whose program fits in `gib`."""
    trial = ml_collections.ConfigDict(config.to_dict())
    low, high = 0, int(config.actors.num_actors)
    while low < high:  # program_size grows with the number of streams
        middle = (low + high + 1) // 2
        trial.actors.num_actors = middle
        if program_size(trial)[2] <= gib:
            low = middle
        else:
            high = middle - 1
    return low
