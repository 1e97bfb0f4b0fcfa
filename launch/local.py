"""Launches a program on this machine with Launchpad's local_mp, one process per node."""

from __future__ import annotations

import json
import os

import ml_collections
from absl import logging

from launch import xla

# Every node process runs single-threaded numerical libraries unless it says otherwise:
# 32 actors on a few cores must not oversubscribe the CPU.
_NODE_ENV = {
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MUJOCO_GL": "disable",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}


def save_config(config: ml_collections.ConfigDict, workdir: str) -> str:
    path = os.path.join(workdir, "config.json")
    with open(path, "w") as f:
        json.dump(config.to_dict(), f, indent=2, default=list)
    return path


def launch_local(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Runs the program to completion; node output goes to `<workdir>/logs/<group>/<i>`."""
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    save_config(config, workdir)
    from launch.tensorboard import write_layout

    write_layout(workdir)  # TensorBoard's custom-scalars dashboard for this run
    # Launchpad reads this when its local launcher module is first imported, so it is set
    # before launchpad is imported (a process launches one run).
    os.environ["LAUNCHPAD_LOGGING_DIR"] = os.path.join(workdir, "logs")
    import launchpad as lp
    from launchpad.nodes.python.local_multi_processing import PythonProcess

    from launch.program import make_program

    program = make_program(config, workdir)
    resources = {}
    for group in program.groups:
        env = dict(_NODE_ENV)
        if group == "learner":  # the learner may use every core for its matrix products
            env = {k: v for k, v in env.items() if not k.endswith("_NUM_THREADS")}
            env.update(xla.learner_environment())
        resources[group] = PythonProcess(env=env)
    logging.info("launching %s: node logs in %s", program.name, os.environ["LAUNCHPAD_LOGGING_DIR"])
    from absl import flags

    if "lp_termination_notice_secs" in flags.FLAGS:
        # Time for the final checkpoints (learner, counts, replay) before Launchpad kills.
        flags.FLAGS.lp_termination_notice_secs = 25
    import contextlib
    import sys

    from launch.progress import run_progress
    from launch.quiet import LaunchpadConsole

    console = LaunchpadConsole(sys.stdout, os.environ["LAUNCHPAD_LOGGING_DIR"])
    with contextlib.redirect_stdout(console):
        manager = lp.launch(
            program,
            launch_type="local_mp",
            terminal="output_to_files",
            local_resources=resources,
        )
        with run_progress(config, workdir):
            manager.wait()


def node_errors(workdir: str) -> list[str]:
    """The last exception line of each node log that has one, as '<group>/<i>: line'."""
    found = []
    root = os.path.join(workdir, "logs")
    for group in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        for index in sorted(os.listdir(os.path.join(root, group))):
            with open(os.path.join(root, group, index), errors="replace") as f:
                lines = [line.strip() for line in f if "Error:" in line or "Exception:" in line]
            if lines:
                found.append(f"{group}/{index}: {lines[-1]}")
    return found
