"""Section 4 of the throughput benchmark: a whole `bprl run` (Launchpad local_mp) with N
actors; rates and CPU split read from its TensorBoard events (`launch/rundir/events.py`)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks import machine
from benchmarks.common import ROOT
from bprl.launch.rundir import layout


def learner_events(workdir: str):
    """(wall_time, learner_steps, actor_steps) triples from the learner's event files."""
    from bprl.launch.rundir import events

    points = []
    for run_dir in events.run_dirs(workdir):
        if os.path.basename(run_dir) != "learner":
            continue
        scalars = events.read_events(run_dir)
        # both counts are written by every learner write, in the same order
        for (wall, _, learner), (_, _, actor) in zip(
            scalars.get("learner_steps", []), scalars.get("actor_steps", []), strict=False
        ):
            points.append((wall, int(learner), int(actor)))
    return sorted(points)


def _cpu_cores(run_dir: str) -> float | None:
    """Cores a node used: process CPU seconds over wall seconds between its first and last
    TensorBoard writes (`process_cpu_seconds`, written by `launch/program/tensorboard.py`)."""
    from bprl.launch.rundir import events

    if not os.path.isdir(run_dir):
        return None
    points = sorted(
        (wall, value)
        for wall, _, value in events.read_events(run_dir).get("process_cpu_seconds", [])
    )
    if len(points) < 2 or points[-1][0] - points[0][0] < 1.0:
        return None
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def cpu_split(workdir: str) -> dict:
    """Cores used by the learner and by all actor processes together, during the run."""
    learner = _cpu_cores(os.path.join(workdir, "learner"))
    actor_root = os.path.join(workdir, "actors")
    actors = [
        _cpu_cores(os.path.join(actor_root, name))
        for name in (os.listdir(actor_root) if os.path.isdir(actor_root) else [])
    ]
    actors = [a for a in actors if a is not None]
    return {
        "learner_cores": learner,
        "actor_cores": sum(actors) if actors else None,
        "actors_with_cpu_data": len(actors),
    }


def bench_system(
    num_actors: int | None,
    args: argparse.Namespace,
    config: str = "experiments/configs/walker_walk.py:local_short",
    overrides: tuple[str, ...] = (),
) -> dict:
    """One `bprl run` of `config` (path relative to the repository) with `num_actors` actors
    (None: the config's) and `overrides` ("key=value"); rates between the learner's log
    points."""
    from bprl.launch.program import builders  # noqa: F401  (checks the project imports)

    workdir = tempfile.mkdtemp(prefix=f"bprl_tp_{num_actors}_")
    bprl = os.path.join(os.path.dirname(sys.executable), "bprl")
    command = [
        bprl,
        "run",
        f"--config={os.path.join(ROOT, config)}",
        *([f"--config.actors.num_actors={num_actors}"] if num_actors else []),
        f"--config.stop.max_actor_steps={args.system_steps}",
        f"--config.logging.learner_every_steps={args.system_log_every}",
        f"--config.replay.adder={args.adder}",
        *(f"--config.{item}" for item in overrides),
        f"--workdir={workdir}",
    ]
    start = time.perf_counter()
    load_before = machine.loadavg()
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=args.system_timeout, cwd=ROOT
    )
    wall = time.perf_counter() - start
    result = {
        "num_actors": num_actors,
        "returncode": proc.returncode,
        "wall_s": wall,
        "load_before": load_before,
        "load_after": machine.loadavg(),
        "command": " ".join(command),
    }
    points = learner_events(workdir)
    if len(points) >= 2:
        (t0, l0, a0), (t1, l1, a1) = points[0], points[-1]
        with open(layout.config_path(workdir)) as f:
            cfg = json.load(f)
        seq, batch = cfg["replay"]["sequence_length"], cfg["replay"]["batch_size"]
        span = max(t1 - t0, 1e-9)
        result.update(
            {
                "measured_span_s": span,
                "actor_steps_per_s": (a1 - a0) / span,
                "learner_updates_per_s": (l1 - l0) / span,
                "samples_per_insert": (l1 - l0) * batch / max((a1 - a0) / seq, 1e-9),
                "target_samples_per_insert": cfg["replay"]["samples_per_insert"],
                "final_actor_steps": a1,
                "final_learner_steps": l1,
                **cpu_split(workdir),
            }
        )
    else:
        result["error"] = (proc.stderr or "")[-2000:]
    if not args.keep_workdirs:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        result["workdir"] = workdir
    return result
