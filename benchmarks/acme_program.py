"""Acme's own distributed agent (`acme.agents.tf.svg0_prior.DistributedSVG0`) as a local
program, for the whole-system comparison in benchmarks/system_vs_acme.py.

Usage (normally started by system_vs_acme.py, one program per process):
  python benchmarks/acme_program.py --task=walker_walk --num_actors=4 --workdir=DIR

The program is Acme's, built by its `build()` and launched with Launchpad's local_mp, one
process per node, as Acme's examples launch it; only three things are added from outside:
- each node's environment names its group (`bprl.launch.local.launcher.NODE_GROUP_ENV`,
  so memory can be split by role) and has what our nodes have (`bprl.launch.program.node_env`:
  single-threaded BLAS but in the learner, headless MuJoCo), so both programs run under
  the same process settings;
- each actor's environment is wrapped to write `<workdir>/first_insert/<pid>` with the wall
  time of its (T+1)-th step: Acme's SequenceAdder (period T, T+1 steps per item) has
  created that actor's first replay item by then;
- this launcher process polls the counter node and the replay server once a second and
  appends `{"time", "counts", "inserted", "sampled"}` lines to `<workdir>/probe.jsonl`
  (Reverb's own insert and sample counts for the table).
SIGTERM stops the program (Launchpad's worker manager forwards it to every node).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

import bprl.environments  # noqa: E402,F401  (sets MUJOCO_GL before dm_control is imported)
from bprl.launch.rundir import layout  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("task", "walker_walk", "task name (environments/registry.py)")
flags.DEFINE_integer("num_actors", 1, "actor processes")
flags.DEFINE_string("workdir", None, "probe file, first-insert marks and node logs")
flags.DEFINE_integer("batch_size", 256, "sequences per update")
flags.DEFINE_integer("sequence_length", 10, "T")
flags.DEFINE_float("samples_per_insert", 32.0, "rate limiter")
flags.DEFINE_integer("min_replay_size", 1000, "items before sampling")
flags.DEFINE_list("policy_hidden", ["200", "100"], "policy widths")
flags.DEFINE_list("prior_hidden", ["200", "100"], "prior widths")
flags.DEFINE_list("critic_hidden", ["400", "300"], "critic widths")
flags.DEFINE_list("prior_info", ["proprioception"], "the prior's information sets")
flags.DEFINE_integer("seed", 0, "environment seed of actor 0 (others: seed + pid)")


def make_environment(task: str, marks_dir: str, mark_at: int, seed: int, is_eval: bool):
    """The task's environment; an actor's copy marks the step by which it has inserted."""
    from acme.wrappers import base

    from bprl.environments import registry

    env = registry.make_environment(task, seed=seed + os.getpid())
    if is_eval:
        return env

    class FirstInsertMark(base.EnvironmentWrapper):
        def __init__(self, environment):
            super().__init__(environment)
            self._steps = 0

        def step(self, action):
            timestep = self._environment.step(action)
            self._steps += 1
            if self._steps == mark_at:
                os.makedirs(marks_dir, exist_ok=True)
                with open(os.path.join(marks_dir, str(os.getpid())), "w") as f:
                    f.write(repr(time.time()))
            return timestep

    return FirstInsertMark(env)


def make_networks(action_spec, policy_hidden, critic_hidden, prior_hidden, policy_keys, prior_keys):
    """Acme's svg0_prior networks, as its examples make them."""
    from acme.agents.tf.svg0_prior import networks

    return networks.make_network_with_prior(
        action_spec,
        policy_layer_sizes=policy_hidden,
        critic_layer_sizes=critic_hidden,
        prior_layer_sizes=prior_hidden,
        policy_keys=policy_keys,
        prior_keys=prior_keys,
    )


def _probe(counter, client, path: str, stop: threading.Event) -> None:
    """Once a second: the counter's counts and the table's inserts and samples."""
    while not stop.wait(1.0):
        line = {"time": time.time()}
        try:
            line["counts"] = counter.get_counts()
        except Exception as error:  # noqa: BLE001  (not up yet, or shutting down)
            line["counts_error"] = type(error).__name__
        try:
            (info,) = client.server_info(timeout=2).values()
            line["inserted"] = int(info.rate_limiter_info.insert_stats.completed)
            line["sampled"] = int(info.rate_limiter_info.sample_stats.completed)
        except Exception as error:  # noqa: BLE001
            line["replay_error"] = type(error).__name__
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")


def main(argv) -> None:
    del argv
    workdir = os.path.abspath(FLAGS.workdir)
    os.makedirs(workdir, exist_ok=True)
    # Read by Launchpad's local launcher when it is first imported.
    os.environ["LAUNCHPAD_LOGGING_DIR"] = layout.logs_dir(workdir)
    import launchpad as lp
    from acme.agents.tf import svg0_prior
    from launchpad.nodes.python.local_multi_processing import PythonProcess

    from bprl.environments import registry
    from bprl.launch.local import launcher as local
    from bprl.launch.program import node_env

    spec_env = registry.make_environment(FLAGS.task, seed=FLAGS.seed)
    task = registry.get_task(FLAGS.task)
    observations = spec_env.observation_spec()
    prior_keys = list(task.keys_for(tuple(FLAGS.prior_info)))
    network_factory = functools.partial(
        make_networks,
        policy_hidden=[int(x) for x in FLAGS.policy_hidden],
        critic_hidden=[int(x) for x in FLAGS.critic_hidden],
        prior_hidden=[int(x) for x in FLAGS.prior_hidden],
        policy_keys=sorted(observations),
        prior_keys=prior_keys,
    )
    environment_factory = functools.partial(
        make_environment,
        FLAGS.task,
        os.path.join(workdir, "first_insert"),
        FLAGS.sequence_length + 1,
        FLAGS.seed,
    )
    agent = svg0_prior.DistributedSVG0(
        environment_factory=environment_factory,
        network_factory=network_factory,
        num_actors=FLAGS.num_actors,
        batch_size=FLAGS.batch_size,
        min_replay_size=FLAGS.min_replay_size,
        samples_per_insert=FLAGS.samples_per_insert,
        sequence_length=FLAGS.sequence_length,
    )
    program = agent.build()
    resources = {
        group: PythonProcess(
            env={
                **node_env.node_environment(group),
                local.NODE_GROUP_ENV: group,
                "PYTHONPATH": ROOT,
            }
        )
        for group in program.groups
    }
    manager = lp.launch(
        program, launch_type="local_mp", terminal="output_to_files", local_resources=resources
    )
    (counter_node,) = program.groups["counter"]
    (replay_node,) = program.groups["replay"]
    counter = counter_node.create_handle().dereference()
    replay = replay_node.create_handle().dereference()  # a reverb.Client
    stop = threading.Event()
    probe = threading.Thread(
        target=_probe,
        args=(counter, replay, os.path.join(workdir, "probe.jsonl"), stop),
        daemon=True,
    )
    probe.start()
    try:
        manager.wait(raise_error=False)
    finally:
        stop.set()


if __name__ == "__main__":
    flags.mark_flag_as_required("workdir")
    app.run(main)
