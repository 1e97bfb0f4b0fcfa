"""Our learner's kernels beside Acme's learner, oneDNN off and on, one process per arm.

Usage:
  python benchmarks/learner_settings.py [--tasks walker_walk,seqnav_pointmass] [--rounds 2]
      [--updates 10] [--arms NAME,...] [--hidden 32 --batch-size 16 --num-samples 2
      --sequence-length 10] [--updates-per-call K] [--out FILE.json]

By default Acme's sizes; --hidden and the others set other sizes (one width list for all
three networks), e.g. a config's tiny or local_short networks, to see where each setting
pays. --updates-per-call runs our learner with K updates per compiled call.

TensorFlow reads TF_ENABLE_ONEDNN_OPTS and TF_XLA_FLAGS once, when it is imported, so
each arm runs in its own child process of this script: ours with the xla_float32 kernels
and oneDNN off (TF 2.8's default) or on, ours with the onednn_bfloat16 kernels (in the
environment `launch.xla.learner_environment` gives a learner node), and Acme's
SVG0Learner with oneDNN off (as installed) or on. A child fills a never-blocking Reverb
table with real environment data (the same seed in every arm), builds its learner at the
throughput benchmark's sizes (Acme's widths, batch 256, T = 10, 10 action samples;
`benchmarks/common.py`), compiles it with `--warmup` updates, then times `--updates`
updates. First it measures tf.matmul's float32 rate on the critic's largest product
under its setting, for the update's arithmetic floor (`benchmarks/flops.py`). The arms
run one after the other, round after round in the same order, so a machine that drifts
slows every arm alike; updates/s are summed over rounds.

Reported per task: each arm's updates/s and update over floor, and our learner as its node
runs it on this machine (`resources.learner_kernels = auto`, resolved here) over Acme's
with oneDNN off (as installed) and on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import common, machine  # noqa: E402

# (name, side, kernels, TF_ENABLE_ONEDNN_OPTS); our kernels' environment from launch/config/xla.py.
ARMS = (
    ("ours_xla_onednn_off", "ours", "xla_float32", "0"),
    ("ours_xla_onednn_on", "ours", "xla_float32", "1"),
    ("ours_bfloat16", "ours", "onednn_bfloat16", "1"),
    ("acme_onednn_off", "acme", "", "0"),
    ("acme_onednn_on", "acme", "", "1"),
)
NODE_ARM = {"xla_float32": "ours_xla_onednn_on", "onednn_bfloat16": "ours_bfloat16"}


def child(args: argparse.Namespace) -> dict:
    """One arm in this process (TF_ENABLE_ONEDNN_OPTS already set by the parent)."""
    from bprl.launch.config import xla

    xla.request_fast_math()  # as the learner node's environment has it
    from benchmarks import flops, learner_bench

    rows = (args.sequence_length + 1) * args.batch_size
    shape = (rows * (args.num_samples + 1), args.critic_hidden[0], args.critic_hidden[-1])
    rate = flops.matmul_rate(*shape, 5)  # first: nothing else of this process running yet
    # The bfloat16 kernels' own floor: the same product in bfloat16 (oneDNN's kernels).
    bf16 = flops.matmul_rate(*shape, 5, "bfloat16") if args.kernels == "onednn_bfloat16" else 0.0
    data = learner_bench.setup(args.task, args)
    per_call = args.updates_per_call if args.side == "ours" else 1
    if args.side == "ours":
        step, variable = learner_bench.make_ours(data, args.kernels, per_call)
    else:
        step, variable = learner_bench.make_acme(data, args)
    calls = lambda n: max(1, -(-n // per_call))  # noqa: E731 - calls of `step` for n updates
    learner_bench.timed_updates(step, variable, calls(args.warmup))
    done, seconds = learner_bench.timed_updates(step, variable, calls(args.updates))
    updates = done * per_call
    size = learner_bench.sizes(data)
    update_flops = flops.update_flops(
        size["obs_size"], size["prior_obs_size"], size["action_size"], rows, args.num_samples, args
    )
    data["server"].stop()
    return {
        "updates": updates,
        "seconds": seconds,
        "matmul_flops_per_s": rate,
        "bfloat16_matmul_flops_per_s": bf16,
        "update_flops": update_flops,
    }


def run_arm(task: str, arm: tuple, args: argparse.Namespace) -> dict:
    from bprl.launch.config import xla

    name, side, kernels, onednn = arm
    env = dict(os.environ)
    if side == "ours":
        env.update(xla.learner_environment(kernels, {}))
    env[xla.ONEDNN_ENV] = onednn
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--task",
        task,
        "--side",
        side,
        "--kernels",
        kernels or "xla_float32",
        "--updates",
        str(args.updates),
        "--warmup",
        str(args.warmup),
        "--fill-steps",
        str(args.fill_steps),
    ] + (["--tiny"] if args.tiny else [])
    command += [f"--{k.replace('_', '-')}={v}" for k, v in args.sizes.items()]
    command.append(f"--updates-per-call={args.updates_per_call}")
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{name} on {task} failed: {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def summarise(runs: list[dict]) -> dict:
    updates = sum(r["updates"] for r in runs)
    seconds = sum(r["seconds"] for r in runs)
    rate = updates / seconds
    matmul = max(r["matmul_flops_per_s"] for r in runs)
    floor_s = runs[0]["update_flops"] / matmul
    bf16 = max(r.get("bfloat16_matmul_flops_per_s", 0.0) for r in runs)
    own = {}
    if bf16 > 0:  # a bfloat16 update against the floor of its own products as well
        own = {
            "bfloat16_matmul_gflops": bf16 / 1e9,
            "update_over_bfloat16_floor": (1.0 / rate) / (runs[0]["update_flops"] / bf16),
        }
    return {
        **own,
        "updates_per_s": rate,
        "rounds": [r["updates"] / r["seconds"] for r in runs],
        "matmul_gflops": matmul / 1e9,
        "update_gflop": runs[0]["update_flops"] / 1e9,
        "floor_s": floor_s,
        "update_over_floor": (1.0 / rate) / floor_s,
    }


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(common.TASKS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--updates", type=int, default=10, help="timed updates per arm and round")
    parser.add_argument("--warmup", type=int, default=6, help="untimed updates (compiling)")
    parser.add_argument("--fill-steps", type=int, default=3000, help="env steps into replay")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--task", default="walker_walk", help=argparse.SUPPRESS)
    parser.add_argument("--side", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--kernels", default="xla_float32", help=argparse.SUPPRESS)
    parser.add_argument(
        "--tiny", action="store_true", help="tiny sizes (the test): 16-unit layers, batch 8"
    )
    parser.add_argument(
        "--hidden", default=None, help="one width list for all three networks, e.g. 32 or 128,128"
    )
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--num-samples", type=int, default=None)
    parser.add_argument("--sequence-length", type=int, default=None)
    parser.add_argument(
        "--updates-per-call",
        type=int,
        default=1,
        help="our learner's updates per compiled call (resources.learner_updates_per_call)",
    )
    parser.add_argument("--arms", default=",".join(a[0] for a in ARMS), help="which arms to run")
    args = parser.parse_args(argv)
    # Other sizes (e.g. a config's tiny or local_short networks): forwarded to each child.
    args.sizes = {
        k: getattr(args, k)
        for k in ("hidden", "batch_size", "num_samples", "sequence_length")
        if getattr(args, k) is not None
    }
    # The throughput benchmark's sizes (common.make_config reads these).
    args.policy_hidden, args.prior_hidden = common.POLICY_HIDDEN, common.PRIOR_HIDDEN
    args.critic_hidden = common.CRITIC_HIDDEN
    args.num_samples, args.sequence_length, args.batch_size = 10, 10, 256
    args.adder, args.episode_steps = "fast", 0
    if args.tiny:
        args.policy_hidden = args.prior_hidden = args.critic_hidden = (16, 16)
        args.num_samples, args.sequence_length, args.batch_size = 2, 3, 8
        args.episode_steps = 50
    if args.hidden is not None:
        widths = tuple(int(w) for w in args.hidden.split(","))
        args.policy_hidden = args.prior_hidden = args.critic_hidden = widths
    for k in ("batch_size", "num_samples", "sequence_length"):
        if k in args.sizes:
            setattr(args, k, args.sizes[k])
    unknown = set(args.arms.split(",")) - {a[0] for a in ARMS}
    if unknown:
        parser.error(f"unknown arms {sorted(unknown)}; known: {[a[0] for a in ARMS]}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)), flush=True)
        os._exit(0)  # TensorFlow's teardown of the compiled update can take a minute
    from bprl.launch.config import xla

    report: dict = {**machine.report_header(argv, args), "tasks": {}}
    for task in [t for t in args.tasks.split(",") if t]:
        arms_run = [arm for arm in ARMS if arm[0] in args.arms.split(",")]
        runs: dict[str, list[dict]] = {arm[0]: [] for arm in arms_run}
        for _ in range(args.rounds):
            for arm in arms_run:
                runs[arm[0]].append(run_arm(task, arm, args))
        arms = {name: summarise(r) for name, r in runs.items()}
        # What a learner node of these sizes runs on this machine (resources.learner_kernels
        # = auto: this CPU and the update's size).
        node_kernels = xla.resolve_kernels("auto", next(iter(arms.values()))["update_gflop"] * 1e9)
        result = {"arms": arms, "load_after": machine.loadavg(), "node_kernels": node_kernels}

        node_arm = NODE_ARM[node_kernels]
        for name, ours, acme in (
            ("ours_node_over_acme_installed", node_arm, "acme_onednn_off"),
            ("ours_node_over_acme_onednn", node_arm, "acme_onednn_on"),
            ("ours_xla_over_acme_both_off", "ours_xla_onednn_off", "acme_onednn_off"),
        ):
            if ours in arms and acme in arms:
                result[name] = arms[ours]["updates_per_s"] / arms[acme]["updates_per_s"]
        report["tasks"][task] = result
        print(f"{task}:")
        for name, arm in arms.items():
            print(
                f"  {name:<20} {arm['updates_per_s']:.2f} upd/s (rounds "
                f"{', '.join(f'{x:.2f}' for x in arm['rounds'])}); update "
                f"{arm['update_over_floor']:.2f}x its floor ({arm['update_gflop']:.1f} GFLOP "
                f"at {arm['matmul_gflops']:.0f} GFLOP/s)"
                + (
                    f"; {arm['update_over_bfloat16_floor']:.2f}x its bfloat16 floor "
                    f"({arm['bfloat16_matmul_gflops']:.0f} GFLOP/s)"
                    if "update_over_bfloat16_floor" in arm
                    else ""
                )
            )
        for name, acme in (
            ("ours_node_over_acme_installed", "Acme as installed (oneDNN off)"),
            ("ours_node_over_acme_onednn", "Acme with oneDNN on"),
        ):
            if name in result:
                print(
                    f"  ours as its node runs here ({node_kernels}) / {acme}: {result[name]:.2f}x"
                )
        if "ours_xla_over_acme_both_off" in result:
            print(
                f"  ours xla_float32 / Acme, both oneDNN off: "
                f"{result['ours_xla_over_acme_both_off']:.2f}x"
            )
    report["uptime_end"] = machine.uptime()
    print(f"{report['cpu']}, {report['nproc']} CPUs; load end [{report['uptime_end']}]")
    machine.write_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
