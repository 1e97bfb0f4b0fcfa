"""The run-directory layout, in one place: sweeps, reports, progress and analyses share it.

A run directory (`bprl run --workdir=RUN`):
    RUN/config.json            the run's whole config (launch/config/defaults.py's fields)
    RUN/learner/               learner TensorBoard events
    RUN/actors/<i>/            actor stream i's events (whatever the packing)
    RUN/evaluator_<i>/         evaluator i's events (policy and prior returns)
    RUN/launcher/              the launcher's events (a restart after a node died)
    RUN/restarts.jsonl         the same restarts, one JSON line each
    RUN/logs/<group>/<i>       each node's output
    RUN/logs.failed.<k>/       the node logs of the attempt that restart k replaced
    RUN/checkpoints/           learner, replay and counts (launch/rundir/checkpoint_record.py)
    RUN/FINISHED.json          a Vertex AI job's mark of its budget reached, final
                               checkpoint written (then the stop node exits 0)
    RUN/vertex_job.json        the Vertex AI job last submitted on it (a resubmission
                               while it is live is refused)
A sweep directory (`bprl sweep --workdir=DIR`):
    DIR/seed_<k>/              one run per seed, or DIR/<variant>/seed_<k>/ per swept value
    DIR/<...>/seed_<k>/DONE    written by the sweep when the run exited 0
    DIR/<...>/seed_<k>/bprl_run.log   the run's console output
    DIR/report/                `bprl report`'s figures and tables
"""

from __future__ import annotations

import os
import re

import ml_collections

from bprl.launch.rundir import storage

CONFIG_FILE = "config.json"
LOGS_DIR = "logs"
FAILED_LOGS_PREFIX = "logs.failed."
CHECKPOINTS_DIR = "checkpoints"
RESTARTS_FILE = "restarts.jsonl"
DONE = "DONE"
FINISHED = "FINISHED.json"  # a job that ended itself at its budget (Vertex AI)
VERTEX_JOB = "vertex_job.json"  # the Vertex AI job last submitted on the directory
RUN_LOG = "bprl_run.log"
REPORT_DIR = "report"
LEARNER_DIR = "learner"
LAUNCHER_DIR = "launcher"
ACTORS_DIR = "actors"
EVALUATOR_PREFIX = "evaluator_"
_SEED_DIR = re.compile(r"^seed_(\d+)$")


def seed_dir_name(seed: int) -> str:
    return f"seed_{seed}"


def config_path(run_dir: str) -> str:
    """RUN/config.json (local or gs://)."""
    return storage.join(run_dir, CONFIG_FILE)


def learner_dir(run_dir: str) -> str:
    """RUN/learner/: the learner's TensorBoard events."""
    return storage.join(run_dir, LEARNER_DIR)


def launcher_dir(run_dir: str) -> str:
    """RUN/launcher/: the launcher's events (restarts)."""
    return storage.join(run_dir, LAUNCHER_DIR)


def logs_dir(run_dir: str) -> str:
    """RUN/logs/: one file per node, `<group>/<i>` (Launchpad's LAUNCHPAD_LOGGING_DIR)."""
    return os.path.join(run_dir, LOGS_DIR)


def node_log(run_dir: str, node: str) -> str:
    """RUN/logs/<group>/<i> for the node named '<group>/<i>'."""
    return os.path.join(run_dir, LOGS_DIR, node)


def failed_logs_dir(run_dir: str, restart: int) -> str:
    """RUN/logs.failed.<k>/: the node logs of the attempt that restart k replaced."""
    return os.path.join(run_dir, f"{FAILED_LOGS_PREFIX}{restart}")


def restarts_path(run_dir: str) -> str:
    """RUN/restarts.jsonl: one JSON line per restart of the program."""
    return os.path.join(run_dir, RESTARTS_FILE)


def seed_dirs(root: str) -> list[str]:
    """The `seed_<k>` directories directly under `root`, by seed (links to run
    directories count; a file or a dangling link of that name does not)."""
    if not os.path.isdir(root):
        return []
    found = [
        (int(m.group(1)), name)
        for name in os.listdir(root)
        if (m := _SEED_DIR.match(name)) and os.path.isdir(os.path.join(root, name))
    ]
    return [os.path.join(root, name) for _, name in sorted(found)]


def is_done(run_dir: str) -> bool:
    """The sweep's DONE marker, or the FINISHED mark of a Vertex AI job that ended itself."""
    return os.path.exists(os.path.join(run_dir, DONE)) or os.path.exists(
        os.path.join(run_dir, FINISHED)
    )


def actor_dir(run_dir: str, actor_id: int) -> str:
    return os.path.join(run_dir, ACTORS_DIR, str(actor_id))


def actor_dirs(run_dir: str) -> list[str]:
    root = os.path.join(run_dir, ACTORS_DIR)
    return [os.path.join(root, n) for n in sorted(os.listdir(root))] if os.path.isdir(root) else []


def evaluator_dir(run_dir: str, evaluator_id: int) -> str:
    return os.path.join(run_dir, f"{EVALUATOR_PREFIX}{evaluator_id}")


def evaluator_dirs(run_dir: str) -> list[str]:
    if not os.path.isdir(run_dir):
        return []
    return [
        os.path.join(run_dir, name)
        for name in sorted(os.listdir(run_dir))
        if name.startswith(EVALUATOR_PREFIX)
    ]


# Logged by each actor stream once its first sequence is in replay (agents/packed_actor.py).
_FIRST_INSERT = re.compile(r"actor stream (\d+): first sequence inserted")


def inserted_streams(run_dir: str) -> set[int]:
    """Ids of the actor streams whose first sequence reached replay (from the node logs)."""
    found: set[int] = set()
    root = node_log(run_dir, "actor")
    for name in os.listdir(root) if os.path.isdir(root) else []:
        with open(os.path.join(root, name), errors="replace") as f:
            found.update(int(m.group(1)) for m in _FIRST_INSERT.finditer(f.read()))
    return found


def save_config(config: ml_collections.ConfigDict, directory: str) -> str:
    """Writes the run's whole config as `directory/config.json` (local or gs://), the one
    place a run's config is saved; returns the file's path."""
    storage.makedirs(directory)
    path = config_path(directory)
    storage.write_json(path, config.to_dict(), indent=2)
    return path
