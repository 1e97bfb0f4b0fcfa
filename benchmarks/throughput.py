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
     from the learner's TensorBoard events (`launch/events.py`). Slow: `--skip-system`.
  5. floor: the matrix-multiply FLOPs of one of our updates counted from the sizes, this
     machine's tf.matmul rate measured once, and our update time over that floor.
Both environments come from `environments.registry.make_environment`. Acme's agent is
imported from the installed package.
"""

from __future__ import annotations

import os

# The actor nodes of a run get single-threaded BLAS (launch/local.py): measure the actor
# the same way. Multithreaded OpenBLAS on a 1x256 matmul costs several times more, and far
# more when the other core is busy. Set before NumPy is imported. TensorFlow's learner
# threads are not affected.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import contextlib
import copy
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import environments  # noqa: E402,F401  (sets MUJOCO_GL before dm_control is imported)
from benchmarks import machine  # noqa: E402

TASKS = ("walker_walk", "seqnav_pointmass")
# The prior's information sets per task (the prior is denied the task-identifying inputs).
PRIOR_INFO = {
    "walker_walk": ("proprioception",),
    "seqnav_pointmass": ("proprioception", "location", "targets"),
}
# Acme's make_network_with_prior widths, used on both sides.
POLICY_HIDDEN = (200, 100)
PRIOR_HIDDEN = (200, 100)
CRITIC_HIDDEN = (400, 300)


# ----------------------------------------------------------------------------- helpers


def make_config(task: str, args: argparse.Namespace):
    """Our experiment config with the benchmark's sizes (identical to Acme's side)."""
    from experiments.configs.base import base_config

    config = base_config()
    config.task = task
    config.prior_info = PRIOR_INFO.get(task, config.prior_info)
    config.network.policy_hidden = tuple(args.policy_hidden)
    config.network.prior_hidden = tuple(args.prior_hidden)
    config.network.critic_hidden = tuple(args.critic_hidden)
    config.agent.num_action_samples = args.num_samples
    config.replay.sequence_length = args.sequence_length
    config.replay.batch_size = args.batch_size
    config.replay.adder = args.adder
    if args.episode_steps:  # shorter episodes (the tiny-size test); the control step stays
        if task == "walker_walk":
            config.task_kwargs.time_limit = args.episode_steps * 0.025
        else:
            config.task_kwargs.episode_length = args.episode_steps
    return config


def never_blocking_table(config, env_spec, max_size: int):
    """`builders.replay_table`'s table (name, selectors, signature) with MinSize(1)."""
    from launch import builders

    return builders.unlimited_table(config, env_spec, max_size=max_size)


def make_acme_networks(env_spec, prior_keys, args):
    """Acme's svg0_prior networks (policy, critic, prior) with variables created."""
    from acme.agents.tf.svg0_prior import networks as acme_networks
    from acme.tf import utils as tf2_utils

    nets = acme_networks.make_network_with_prior(
        env_spec.actions,
        policy_layer_sizes=tuple(args.policy_hidden),
        critic_layer_sizes=tuple(args.critic_hidden),
        prior_layer_sizes=tuple(args.prior_hidden),
        policy_keys=sorted(env_spec.observations),
        prior_keys=list(prior_keys),
    )
    tf2_utils.create_variables(nets["policy"], [env_spec.observations])
    tf2_utils.create_variables(nets["prior"], [env_spec.observations])
    tf2_utils.create_variables(nets["critic"], [env_spec.observations, env_spec.actions])
    return nets


def _steps_of(counter) -> int:
    return int(counter.get_counts().get("steps", 0))


def _timed_loop(loop, counter, num_steps: int) -> tuple[int, float]:
    before = _steps_of(counter)
    start = time.perf_counter()
    loop.run(num_steps=num_steps)
    return _steps_of(counter) - before, time.perf_counter() - start


def _rate(steps: int, seconds: float) -> float:
    return steps / seconds if seconds > 0 else float("nan")


# ----------------------------------------------------------------------- sections 1-2


def raw_env_rate(env, num_steps: int, rng: np.random.Generator) -> tuple[int, float]:
    spec = env.action_spec()
    actions = rng.uniform(spec.minimum, spec.maximum, size=(num_steps, *spec.shape))
    actions = actions.astype(spec.dtype)
    env.reset()
    start = time.perf_counter()
    for action in actions:
        if env.step(action).last():
            env.reset()
    return num_steps, time.perf_counter() - start


def bench_actors(task: str, args: argparse.Namespace) -> dict:
    """Sections 1 and 2 for one task: raw, ours and Acme's, interleaved per round."""
    import acme
    import reverb
    from acme.adders import reverb as reverb_adders
    from acme.agents.tf.svg0_prior import acting as acme_acting
    from acme.utils import counting, loggers

    from agents.actor import GaussianActor
    from launch import builders

    config = make_config(task, args)
    raw_env = builders.make_environment(config, 1)
    our_env = builders.make_environment(config, 2)
    acme_env = builders.make_environment(config, 3)
    env_spec = acme.make_environment_spec(our_env)
    server = reverb.Server([never_blocking_table(config, env_spec, args.actor_table_size)])
    client = reverb.Client(f"localhost:{server.port}")

    networks = builders.build_networks(config, env_spec)
    ours = GaussianActor(
        networks.policy, stochastic=True, adder=builders.make_adder(config, client), seed=0
    )
    acme_nets = make_acme_networks(env_spec, builders.prior_keys(config), args)
    acme_adder = reverb_adders.SequenceAdder(  # what svg0_prior's builder makes
        client,
        sequence_length=builders.stored_steps(config.replay.sequence_length),
        period=config.replay.sequence_length,
        priority_fns={builders.REPLAY_TABLE: lambda x: 1.0},
        end_of_episode_behavior=reverb_adders.EndBehavior.CONTINUE,
    )
    theirs = acme_acting.SVG0Actor(acme_nets["policy"], adder=acme_adder)
    our_counter, acme_counter = counting.Counter(), counting.Counter()
    our_loop = acme.EnvironmentLoop(our_env, ours, counter=our_counter, logger=loggers.NoOpLogger())
    acme_loop = acme.EnvironmentLoop(
        acme_env, theirs, counter=acme_counter, logger=loggers.NoOpLogger()
    )
    # Warm-up (first TF calls, table creation, writer start) outside the timings.
    our_loop.run(num_steps=1)
    acme_loop.run(num_steps=1)
    raw_env_rate(raw_env, 100, np.random.default_rng(0))

    rng = np.random.default_rng(0)
    totals = {k: [0, 0.0] for k in ("raw", "ours", "acme")}
    rounds = []
    for _ in range(args.rounds):
        measured = {
            "raw": raw_env_rate(raw_env, args.env_steps, rng),
            "ours": _timed_loop(our_loop, our_counter, args.actor_steps),
            "acme": _timed_loop(acme_loop, acme_counter, args.acme_actor_steps),
        }
        for key, (steps, secs) in measured.items():
            totals[key][0] += steps
            totals[key][1] += secs
        rounds.append({k: _rate(*v) for k, v in measured.items()})
    items = int(client.server_info()[builders.REPLAY_TABLE].current_size)
    server.stop()
    rates = {k: _rate(*v) for k, v in totals.items()}
    return {
        "raw_steps_per_s": rates["raw"],
        "actor_steps_per_s": rates["ours"],
        "acme_actor_steps_per_s": rates["acme"],
        "actor_steps": totals["ours"][0],
        "acme_actor_steps": totals["acme"][0],
        "actor_over_raw": rates["ours"] / rates["raw"],
        "actor_over_acme": rates["ours"] / rates["acme"],
        "acme_actor_over_raw": rates["acme"] / rates["raw"],
        "actor_rounds": rounds,
        "items_written": items,
        "adder": config.replay.adder,
    }


# ------------------------------------------------------------------------- section 3


def fill_table(task: str, config, client, num_steps: int) -> None:
    """Real environment data from our (untrained, stochastic) actor."""
    import acme
    from acme.utils import loggers

    from agents.actor import GaussianActor
    from launch import builders

    env = builders.make_environment(config, 4)
    networks = builders.build_networks(config, acme.make_environment_spec(env))
    actor = GaussianActor(
        networks.policy, stochastic=True, adder=builders.make_adder(config, client), seed=4
    )
    acme.EnvironmentLoop(env, actor, logger=loggers.NoOpLogger()).run(num_steps=num_steps)


def bench_learners(task: str, args: argparse.Namespace) -> dict:
    import acme
    import reverb
    import tensorflow as tf
    from acme import datasets
    from acme.agents.tf.svg0_prior import learning as acme_learning
    from acme.utils import counting, loggers

    from agents.learner import Learner
    from launch import builders

    config = make_config(task, args)
    env = builders.make_environment(config, 5)
    env_spec = acme.make_environment_spec(env)
    server = reverb.Server([never_blocking_table(config, env_spec, 1_000_000)])
    address = f"localhost:{server.port}"
    client = reverb.Client(address)
    fill_table(task, config, client, args.fill_steps)

    def dataset():
        return iter(
            datasets.make_reverb_dataset(
                server_address=address,
                batch_size=config.replay.batch_size,
                prefetch_size=config.replay.prefetch_size,
                table=builders.REPLAY_TABLE,
            )
        )

    hyper = builders.hyperparams(config)
    ours = Learner(
        networks=builders.build_networks(config, env_spec),
        dataset=dataset(),
        hyper=hyper,
        counter=counting.Counter(),
        logger=loggers.NoOpLogger(),
        log_every_steps=10**9,
    )
    online = make_acme_networks(env_spec, builders.prior_keys(config), args)
    target = copy.deepcopy(online)
    theirs = acme_learning.SVG0Learner(
        policy_network=online["policy"],
        critic_network=online["critic"],
        target_policy_network=target["policy"],
        target_critic_network=target["critic"],
        prior_network=online["prior"],
        target_prior_network=target["prior"],
        discount=hyper.discount,
        target_update_period=hyper.target_update_period,
        dataset_iterator=dataset(),
        distillation_cost=hyper.alpha,
        entropy_regularizer_cost=0.0,  # ours has no entropy bonus; the term is still computed
        num_action_samples=hyper.num_action_samples,
        lambda_=hyper.retrace_lambda,
        counter=counting.Counter(),
        logger=loggers.NoOpLogger(),
        checkpoint=False,
    )
    sync = {"ours": ours.networks.critic.variables[0], "acme": online["critic"].variables[0]}
    steppers = {"ours": ours.step, "acme": theirs.step}
    for step in steppers.values():  # trace and compile outside the timings
        for _ in range(args.warmup_updates):
            step()

    totals = {k: [0, 0.0] for k in steppers}
    rounds = []
    for _ in range(args.rounds):
        measured = {}
        for key, step in steppers.items():
            start = time.perf_counter()
            for _ in range(args.learner_updates):
                step()
            sync[key].numpy()
            measured[key] = (args.learner_updates, time.perf_counter() - start)
            totals[key][0] += measured[key][0]
            totals[key][1] += measured[key][1]
        rounds.append({k: _rate(*v) for k, v in measured.items()})
    server.stop()
    del tf  # imported for its side effect of being initialised before the learners
    rates = {k: _rate(*v) for k, v in totals.items()}
    transitions = config.replay.batch_size * config.replay.sequence_length
    return {
        "learner_updates_per_s": rates["ours"],
        "acme_learner_updates_per_s": rates["acme"],
        "learner_transitions_per_s": rates["ours"] * transitions,
        "acme_learner_transitions_per_s": rates["acme"] * transitions,
        "learner_over_acme": rates["ours"] / rates["acme"],
        "learner_update_s": 1.0 / rates["ours"],
        "learner_rounds": rounds,
        "obs_size": int(sum(np.prod(s.shape) for s in env_spec.observations.values())),
        "prior_obs_size": int(
            sum(np.prod(env_spec.observations[k].shape) for k in builders.prior_keys(config))
        ),
        "action_size": int(np.prod(env_spec.actions.shape)),
    }


# ------------------------------------------------------------------------- section 5


def matmul_rate(rows: int, inner: int, out: int, repeats: int) -> float:
    """FLOP/s of tf.matmul [rows, inner] x [inner, out] (float32) on this machine."""
    import tensorflow as tf

    a = tf.random.normal([rows, inner])
    b = tf.random.normal([inner, out])

    @tf.function
    def product(a, b):
        return tf.reduce_sum(tf.matmul(a, b))

    product(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        product(a, b).numpy()
    elapsed = time.perf_counter() - start
    return 2.0 * rows * inner * out * repeats / elapsed


def _mlp_layers(in_size: int, hidden, out_sizes) -> list[tuple[int, int]]:
    sizes = [in_size, *hidden]
    layers = list(zip(sizes[:-1], sizes[1:], strict=True))
    return layers + [(sizes[-1], o) for o in out_sizes]


def update_flops(
    obs: int, prior_obs: int, act: int, rows: int, samples: int, args: argparse.Namespace
) -> float:
    """Matrix-multiply FLOPs that one update of our learning rule cannot avoid.

    A dense layer on N rows costs 2*N*in*out forward, the same again for the weight
    gradient and again for the input gradient. Per update ((T+1)*B = `rows` rows, of which
    the T*B `transitions` are those Retrace and the critic loss read):
    online policy and prior: forward + weight gradients (+ input gradients past layer 1);
    target policy and prior: forward; target critic: forward on the taken actions and S
    target-policy samples at time steps 1..T (Retrace reads no value at step 0); online
    critic: forward on the taken actions at steps 0..T-1 (+ weight and input gradients,
    critic loss) and on S policy samples at every step (+ input gradients, SVG(0)).
    Elementwise work (LayerNorm, activations, KL, Retrace) is not counted.
    """
    transitions = rows - args.batch_size

    def fwd(layers, n):
        return sum(2.0 * n * i * o for i, o in layers)

    def dx(layers, n):  # input gradients; a first layer fed by data needs none
        return sum(2.0 * n * i * o for i, o in layers[1:])

    pol = _mlp_layers(obs, args.policy_hidden, [act, act])
    pri = _mlp_layers(prior_obs, args.prior_hidden, [act, act])
    cri = _mlp_layers(obs + act, args.critic_hidden, [1])
    cri_first_action = 2.0 * act * cri[0][1]  # gradient to the action columns only
    heads = fwd(pol, rows) * 3 + dx(pol, rows) + fwd(pri, rows) * 3 + dx(pri, rows)
    target_critic = fwd(cri, (samples + 1) * transitions)
    critic = fwd(cri, transitions) * 2 + dx(cri, transitions)
    svg = fwd(cri, samples * rows) + dx(cri, samples * rows) + cri_first_action * samples * rows
    return heads + target_critic + critic + svg


# ------------------------------------------------------------------------- section 4


def _learner_events(workdir: str):
    """(wall_time, learner_steps, actor_steps) triples from the learner's event files."""
    from launch import events

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
    TensorBoard writes (`process_cpu_seconds`, written by `launch/tensorboard.py`)."""
    from launch import events

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


def bench_system(num_actors: int, args: argparse.Namespace) -> dict:
    """One `bprl run` with `num_actors` actors; rates between the learner's log points."""
    from launch import builders  # noqa: F401  (checks the project imports)

    workdir = tempfile.mkdtemp(prefix=f"bprl_tp_{num_actors}_")
    bprl = os.path.join(os.path.dirname(sys.executable), "bprl")
    command = [
        bprl,
        "run",
        f"--config={os.path.join(ROOT, 'experiments/configs/walker_walk.py')}:local_short",
        f"--config.actors.num_actors={num_actors}",
        f"--config.stop.max_actor_steps={args.system_steps}",
        f"--config.logging.learner_every_steps={args.system_log_every}",
        f"--config.replay.adder={args.adder}",
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
    points = _learner_events(workdir)
    if len(points) >= 2:
        (t0, l0, a0), (t1, l1, a1) = points[0], points[-1]
        with open(os.path.join(workdir, "config.json")) as f:
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


# ---------------------------------------------------------------------------- main


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints = lambda s: tuple(int(x) for x in s.split(",") if x)  # noqa: E731
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
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
    parser.add_argument("--policy-hidden", type=ints, default=POLICY_HIDDEN)
    parser.add_argument("--prior-hidden", type=ints, default=PRIOR_HIDDEN)
    parser.add_argument("--critic-hidden", type=ints, default=CRITIC_HIDDEN)
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
    from launch import xla

    xla.request_fast_math()  # as a learner node's environment has it (launch/local.py)
    args = parse_args(argv)
    report: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": machine.cpu_model(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + (argv or sys.argv[1:])),
        "uptime_start": machine.uptime(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "tasks": {},
    }
    rows = (args.sequence_length + 1) * args.batch_size
    rate = matmul_rate(rows * (args.num_samples + 1), args.critic_hidden[0],
                       args.critic_hidden[-1], args.matmul_repeats)  # fmt: skip
    report["matmul_flops_per_s"] = rate
    for task in [t for t in args.tasks.split(",") if t]:
        result = {"load_before": machine.loadavg()}
        result.update(bench_actors(task, args))
        result.update(bench_learners(task, args))
        flops = update_flops(
            result["obs_size"],
            result["prior_obs_size"],
            result["action_size"],
            rows,
            args.num_samples,
            args,
        )
        result["update_flops"] = flops
        result["update_floor_s"] = flops / rate
        result["update_over_floor"] = result["learner_update_s"] / result["update_floor_s"]
        result["load_after"] = machine.loadavg()
        report["tasks"][task] = result
        print_task(task, result)
    if not args.skip_system:
        report["system"] = []
        for n in args.system_actors:
            report["system"].append(bench_system(n, args))
            print_system(report["system"][-1])
    report["uptime_end"] = machine.uptime()
    print(f"matmul rate: {rate / 1e9:.1f} GFLOP/s; {report['cpu']}, {report['nproc']} CPUs")
    print(f"load: start [{report['uptime_start']}] end [{report['uptime_end']}]")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2, default=float)
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
