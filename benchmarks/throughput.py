"""Throughput of our actor and learner beside Acme's svg0_prior agent, measured side by side.

Usage:
  python benchmarks/throughput.py [--out FILE.json] [--system-actors 1,2,4,32 | --skip-system]

Sections (issue 5), each task in one process, ours and Acme's interleaved round by round so
that a busy machine slows both alike:
  1. raw: `env.step` with uniform random actions (the ceiling for an actor).
  2. actor: env steps/s through `acme.EnvironmentLoop` of our `GaussianActor` (NumPy
     inference, the configured adder) and of Acme's `SVG0Actor` (its SequenceAdder), both
     writing T+1-step sequences into a real in-process Reverb table shaped like
     `launch.builders.replay_table` but with a `MinSize(1)` limiter that never blocks.
  3. learner: updates/s and transitions/s of our `Learner` and Acme's `SVG0Learner`, same
     batch, sequence length, network sizes (Acme's `make_network_with_prior` widths) and
     number of action samples, each sampling through `acme.datasets.make_reverb_dataset`
     from a Reverb table filled with real environment data.
  4. system: `bprl run` (Launchpad local_mp) on walker_walk:local_short with N actors;
     aggregate actor steps/s, learner updates/s and the achieved samples per insert, read
     from the learner's TensorBoard events (`launch/rundir/events.py`). Slow: `--skip-system`.
  5. floor: the matrix-multiply FLOPs of one of our updates counted from the sizes, this
     machine's tf.matmul rate measured once, and our update time over that floor.
Both environments come from `environments.registry.make_environment`. Acme's agent is
imported from the installed package. This file is the command line and the report; each
section is its own module: benchmarks/actor_bench.py (1-2), learner_bench.py (3),
system_bench.py (4), flops.py (5), over the shared sizes and tables of common.py.
"""

from __future__ import annotations

import os

# The actor nodes of a run get single-threaded BLAS (launch/local/launcher.py): measure the actor
# the same way. Multithreaded OpenBLAS on a 1x256 matmul costs several times more, and far
# more when the other core is busy. Set before NumPy is imported. TensorFlow's learner
# threads are not affected.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import contextlib
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bprl.environments  # noqa: E402,F401  (sets MUJOCO_GL before dm_control is imported)
from benchmarks import (  # noqa: E402
    actor_bench,
    common,
    flops,
    learner_bench,
    machine,
    system_bench,
)

# ---------------------------------------------------------------------------- main


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints = lambda s: tuple(int(x) for x in s.split(",") if x)  # noqa: E731
    parser.add_argument(
        "--tasks", default=",".join(common.TASKS), help="comma-separated task names"
    )
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per section")
    parser.add_argument("--env-steps", type=int, default=3000, help="raw steps per round")
    parser.add_argument("--actor-steps", type=int, default=3000, help="our actor, per round")
    parser.add_argument("--acme-actor-steps", type=int, default=300, help="Acme's, per round")
    parser.add_argument("--actor-table-size", type=int, default=1_000_000)
    parser.add_argument("--adder", default="fast", choices=("fast", "acme"))
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--sequence-length", type=int, default=10, help="T")
    parser.add_argument("--num-samples", type=int, default=10, help="S, action samples")
    parser.add_argument("--policy-hidden", type=ints, default=common.POLICY_HIDDEN)
    parser.add_argument("--prior-hidden", type=ints, default=common.PRIOR_HIDDEN)
    parser.add_argument("--critic-hidden", type=ints, default=common.CRITIC_HIDDEN)
    parser.add_argument("--fill-steps", type=int, default=5000, help="env steps into replay")
    parser.add_argument("--learner-updates", type=int, default=5, help="per side per round")
    parser.add_argument("--warmup-updates", type=int, default=2)
    parser.add_argument("--matmul-repeats", type=int, default=10)
    parser.add_argument(
        "--episode-steps", type=int, default=0, help="episode length override (0: the task's)"
    )
    parser.add_argument("--skip-system", action="store_true", help="skip section 4 (slow)")
    parser.add_argument("--system-actors", type=ints, default=(1, 2, 4, 32))
    parser.add_argument("--system-steps", type=int, default=40_000, help="max_actor_steps")
    parser.add_argument("--system-log-every", type=int, default=20, help="learner log period")
    parser.add_argument("--system-timeout", type=int, default=900, help="seconds per run")
    parser.add_argument("--keep-workdirs", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    from bprl.launch.config import xla

    xla.request_fast_math()  # as a learner node's environment has it (launch/local/launcher.py)
    args = parse_args(argv)
    report: dict = {**machine.report_header(argv, args), "tasks": {}}
    rows = (args.sequence_length + 1) * args.batch_size
    rate = flops.matmul_rate(
        rows * (args.num_samples + 1),
        args.critic_hidden[0],
        args.critic_hidden[-1],
        args.matmul_repeats,
    )
    report["matmul_flops_per_s"] = rate
    for task in [t for t in args.tasks.split(",") if t]:
        result = {"load_before": machine.loadavg()}
        result.update(actor_bench.bench_actors(task, args))
        result.update(learner_bench.bench_learners(task, args))
        update_flops = flops.update_flops(
            result["obs_size"],
            result["prior_obs_size"],
            result["action_size"],
            rows,
            args.num_samples,
            args,
        )
        result["update_flops"] = update_flops
        result["update_floor_s"] = update_flops / rate
        result["update_over_floor"] = result["learner_update_s"] / result["update_floor_s"]
        result["load_after"] = machine.loadavg()
        report["tasks"][task] = result
        print_task(task, result)
    if not args.skip_system:
        report["system"] = []
        for n in args.system_actors:
            report["system"].append(system_bench.bench_system(n, args))
            print_system(report["system"][-1])
    report["uptime_end"] = machine.uptime()
    print(f"matmul rate: {rate / 1e9:.1f} GFLOP/s; {report['cpu']}, {report['nproc']} CPUs")
    print(f"load: start [{report['uptime_start']}] end [{report['uptime_end']}]")
    machine.write_report(report, args.out, default=float)
    return report


def print_task(task: str, r: dict) -> None:
    print(f"\n== {task} (load {r['load_before']} -> {r['load_after']})")
    print(f"{'measure':<34} {'ours':>12} {'acme':>12} {'ratio':>8}")
    line = "{:<34} {:>12.1f} {:>12.1f} {:>8.2f}"
    print(f"{'raw env steps/s':<34} {r['raw_steps_per_s']:>12.1f}")
    print(line.format("actor env steps/s", r["actor_steps_per_s"],
                      r["acme_actor_steps_per_s"], r["actor_over_acme"]))  # fmt: skip
    print(f"{'actor / raw':<34} {r['actor_over_raw']:>12.3f} {r['acme_actor_over_raw']:>12.4f}")
    print(line.format("learner updates/s", r["learner_updates_per_s"],
                      r["acme_learner_updates_per_s"], r["learner_over_acme"]))  # fmt: skip
    print(line.format("learner transitions/s", r["learner_transitions_per_s"],
                      r["acme_learner_transitions_per_s"], r["learner_over_acme"]))  # fmt: skip
    print(
        f"{'update: GFLOP, floor s, ours s, x':<34} {r['update_flops'] / 1e9:>12.2f} "
        f"{r['update_floor_s']:>12.3f} {r['learner_update_s']:>8.3f} "
        f"x{r['update_over_floor']:.2f}"
    )


def print_system(r: dict) -> None:
    if "actor_steps_per_s" not in r:
        print(f"system {r['num_actors']} actors: no rates (rc {r['returncode']})")
        return
    print(
        f"system {r['num_actors']:>2} actors: actor steps/s {r['actor_steps_per_s']:8.1f}  "
        f"learner updates/s {r['learner_updates_per_s']:6.2f}  "
        f"samples/insert {r['samples_per_insert']:5.1f} (target "
        f"{r['target_samples_per_insert']})  cores: learner {_fmt(r.get('learner_cores'))} "
        f"actors {_fmt(r.get('actor_cores'))}  wall {r['wall_s']:.0f}s"
    )


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
