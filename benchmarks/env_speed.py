"""Environment steps per second of the talk's tasks beside two dm_control references.

Usage: python benchmarks/env_speed.py [--steps N] [--out FILE.json]

Each environment is built, reset, and stepped N times with uniform random actions (resets
at episode ends are counted in the time, as an actor would see them). Our tasks are timed
through `registry.make_environment` (the canonical wrapper the agents use); the
references are dm_control's suite point_mass/easy and the locomotion GoToTarget task with
the Ant walker, timed raw. One process, one environment at a time, one CPU thread.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bprl.environments  # noqa: E402,F401  (sets MUJOCO_GL before dm_control is imported)
from benchmarks import machine  # noqa: E402
from bprl.environments import registry  # noqa: E402

OUR_TASKS = ("seqnav_pointmass", "multitask_pointmass", "seqnav_ant", "ant_box")


def _point_mass_easy(seed: int):
    from dm_control import suite

    return suite.load("point_mass", "easy", task_kwargs={"random": seed})


def _ant_go_to_target(seed: int):
    from dm_control import composer
    from dm_control.locomotion.arenas import floors
    from dm_control.locomotion.tasks import go_to_target
    from dm_control.locomotion.walkers import ant

    task = go_to_target.GoToTarget(walker=ant.Ant(), arena=floors.Floor())
    return composer.Environment(task, time_limit=20.0, random_state=seed)


def environments_to_time() -> dict[str, Callable[[int], object]]:
    out: dict[str, Callable[[int], object]] = {
        name: (lambda seed, name=name: registry.make_environment(name, seed)) for name in OUR_TASKS
    }
    out["dm_control point_mass/easy"] = _point_mass_easy
    out["dm_control locomotion Ant GoToTarget"] = _ant_go_to_target
    return out


def time_environment(make: Callable[[int], object], steps: int, seed: int = 0) -> dict:
    """Builds, resets and steps one environment; returns timings and the episode count."""
    start = time.perf_counter()
    env = make(seed)
    env.reset()
    build_s = time.perf_counter() - start
    spec = env.action_spec()
    rng = np.random.default_rng(seed)
    low = np.broadcast_to(spec.minimum, spec.shape)
    high = np.broadcast_to(spec.maximum, spec.shape)
    actions = rng.uniform(low, high, size=(steps, *spec.shape)).astype(spec.dtype)
    episodes = 0
    start = time.perf_counter()
    for action in actions:
        if env.step(action).last():
            episodes += 1
            env.reset()
    elapsed = time.perf_counter() - start
    return {
        "steps": steps,
        "seconds": elapsed,
        "steps_per_s": steps / elapsed if elapsed > 0 else float("inf"),
        "episodes_ended": episodes,
        "build_and_reset_s": build_s,
        "action_dim": int(np.prod(spec.shape)),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="steps per environment")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    results = {}
    for name, make in environments_to_time().items():
        results[name] = time_environment(make, args.steps)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": machine.cpu_model(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "steps_per_env": args.steps,
        "results": results,
    }
    width = max(len(name) for name in results)
    print(
        f"{'environment':<{width}}  {'steps/s':>9}  {'act dim':>7}  {'episodes':>8}  {'build s':>7}"
    )
    for name, r in results.items():
        print(
            f"{name:<{width}}  {r['steps_per_s']:>9.0f}  {r['action_dim']:>7d}  "
            f"{r['episodes_ended']:>8d}  {r['build_and_reset_s']:>7.2f}"
        )
    print(f"({args.steps} random-action steps each; {report['cpu']}, {report['nproc']} CPUs)")
    machine.write_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
