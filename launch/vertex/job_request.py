"""The Vertex AI CustomJob request of one run, and the files in the run directory it names.

Every replica runs the project's own image (the Dockerfile's), started as `python -m
bprl.launch.program.node_entry --data_file=<run dir>/nodes/<pool>.pkl`, one pickle per
worker pool (launch/vertex/worker_pools.py). On Vertex AI every replica reads
`CLUSTER_SPEC` (pool -> `host:port` of each replica, and its own pool and index), which is
how Launchpad's Vertex address builder finds a node's peers and its own port; the pickles
are built the way Launchpad's vertex launcher builds them (its public node API: launch
context, address binding, serialization), but nothing is submitted through XManager: one
pure function (`custom_job_spec`) writes the CustomJob request. The submission
(launch/vertex/job.py) and the rehearsal (launch/vertex/rehearsal.py) both write the run
directory's files with this module and send or run the same request.

Internal Launchpad API relied on (0.5.2): `Node.launch_context.initialize`,
`Node.input_handles` / `Handle.connect`, `PyNode.bind_addresses(cluster=, instance=)`,
`PyNode.function` and `launchpad.launch.serialization.serialize_functions`.
"""

from __future__ import annotations

import copy
import os
import tempfile

import ml_collections

from bprl.launch.config.errors import ConfigError
from bprl.launch.vertex.worker_pools import (
    Pool,
    learner_kernels,
    plan_pools,
)

PORT = 2222  # the port Vertex AI gives every replica in CLUSTER_SPEC
TERMINATION_NOTICE_SECS = 25  # SIGTERM -> final checkpoints -> exit (as local runs)
# On Vertex AI the nodes reach gs:// through TensorFlow's built-in GCS filesystem. The
# rehearsal's replicas (and only they) use its modular one (tensorflow-io-gcs-filesystem,
# the build for TF 2.8), the one that can be pointed at a local emulator, with these
# settings: its read cache must be on (with it off, a read at a lower offset than the
# last one returns zeros or crashes; tests/test_gcs_emulator.py), and its larger reads
# crash, so the rehearsal reads objects through the emulator's API (launch/rundir/storage.py).
STORAGE_ENV = {
    "TF_USE_MODULAR_FILESYSTEM": "1",
    "GCS_READ_CACHE_BLOCK_SIZE_MB": "16",
    "GCS_READ_CACHE_MAX_SIZE_MB": "64",
}
# The image's init (the Dockerfile installs tini): PID 1 of the container, the node its
# child, so signals reach the node and orphans are reaped. A pool's command replaces the
# image's ENTRYPOINT, so it names the init itself.
INIT = ("/usr/bin/tini", "-g", "--")
# The environment every container of the image starts with (the Dockerfile's ENV; the
# rehearsal gives its replicas this, tests/test_cluster.py checks the two agree).
IMAGE_ENV = {
    "PYTHONUNBUFFERED": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "MUJOCO_GL": "disable",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}
MAX_TIMEOUT_SECS = 7 * 24 * 3600  # Vertex AI's longest scheduling.timeout
# Assumed rates for the job's timeout (scheduling.timeout): slow on purpose, so a run
# that is merely slow is not cut off; a hung job still ends (docs/cluster.md).
_ASSUMED_STREAM_STEPS_PER_SEC = 10.0
_ASSUMED_UPDATES_PER_SEC = 5.0


def data_file(run_dir: str, pool: Pool) -> str:
    """Where a pool's node pickle lives: in the run directory, the one shared place."""
    return f"{run_dir.rstrip('/')}/nodes/{pool.name}.pkl"


def node_command(run_dir: str, pool: Pool) -> tuple[list[str], list[str]]:
    """(command, args) of a pool's container: the image's node entry point."""
    return (
        [*INIT, "python", "-m", "bprl.launch.program.node_entry"],
        [
            f"--data_file={data_file(run_dir, pool)}",
            f"--lp_termination_notice_secs={TERMINATION_NOTICE_SECS}",
        ],
    )


def custom_job_spec(config: ml_collections.ConfigDict, run_dir: str, display_name: str) -> dict:
    """The Vertex AI CustomJob request (REST v1) of one run: what `submit` sends and what
    the rehearsal runs. Pure: reads nothing but its arguments."""
    pools = []
    for pool in plan_pools(config):
        command, args = node_command(run_dir, pool)
        machine = {"machineType": pool.machine_type}
        if pool.accelerator:
            machine["acceleratorType"] = pool.accelerator
            machine["acceleratorCount"] = pool.accelerator_count
        pools.append(
            {
                "machineSpec": machine,
                "replicaCount": str(len(pool.nodes)),
                "diskSpec": {"bootDiskType": "pd-ssd", "bootDiskSizeGb": 100},
                "containerSpec": {
                    "imageUri": pool.image,
                    "command": command,
                    "args": args,
                    "env": [{"name": k, "value": v} for k, v in pool.env],
                },
            }
        )
    job_spec: dict = {
        "workerPoolSpecs": pools,
        "scheduling": {
            "timeout": f"{job_timeout_secs(config)}s",
            # A replica restarted in place (maintenance, a non-zero exit) restarts the
            # whole job, so every node restores the same last complete checkpoint.
            "restartJobOnWorkerRestart": True,
        },
    }
    if config.cluster.get("service_account", ""):
        job_spec["serviceAccount"] = str(config.cluster.service_account)
    return {"displayName": display_name, "jobSpec": job_spec}


def job_timeout_secs(config: ml_collections.ConfigDict) -> int:
    """scheduling.timeout: `cluster.timeout_hours`, or the budget at slow assumed rates
    (10 steps/s per actor stream, 5 updates/s) three times over plus two hours."""
    hours = float(config.cluster.get("timeout_hours", 0) or 0)
    if hours > 0:
        return int(min(hours * 3600, MAX_TIMEOUT_SECS))
    expected = 0.0
    if config.stop.max_actor_steps:
        rate = _ASSUMED_STREAM_STEPS_PER_SEC * max(int(config.actors.num_actors), 1)
        expected = config.stop.max_actor_steps / rate
    elif config.stop.max_learner_steps:
        expected = config.stop.max_learner_steps / _ASSUMED_UPDATES_PER_SEC
    return int(min(2 * 3600 + 3 * expected, MAX_TIMEOUT_SECS))


def write_node_pickles(config: ml_collections.ConfigDict, run_dir: str, stopper=None) -> list[str]:
    """Builds the program for `run_dir` and writes each pool's node pickle into it, as
    Launchpad's vertex_ai launcher does (Vertex addresses from CLUSTER_SPEC); the stop
    node's `lp.stop()` calls `stopper` (default: `vertex_stop.cancel_job`)."""
    import tensorflow as tf
    from launchpad import context
    from launchpad.launch import serialization

    from bprl.launch.program.graph import make_program
    from bprl.launch.vertex import stop as vertex_stop

    stopper = stopper or vertex_stop.cancel_job
    pools = plan_pools(config)
    # Auto packing on Vertex AI: one stream per actor VM (each VM is one node); an explicit
    # actors.envs_per_process = N runs N streams in one process on each actor VM.
    program = make_program(
        config,
        run_dir,
        cores=config.actors.num_actors,
        ends_job=True,
        learner_kernels=learner_kernels(config),
    )
    # (make_program checks the groups it built against launch/config/shape.py, which the
    # pools were planned from.)
    for nodes in program.groups.values():
        for node in nodes:
            node.launch_context.initialize(
                context.LaunchType.VERTEX_AI, launch_config=None, program_stopper=stopper
            )
    for label, nodes in program.groups.items():
        for node in nodes:
            for handle in node.input_handles:
                handle.connect(node, label)
    written = []
    tf.io.gfile.makedirs(f"{run_dir.rstrip('/')}/nodes")
    # Every address is bound before any pickle is written: a pickle holds the addresses
    # of the nodes its nodes talk to, which may sit in any other pool.
    for pool in pools:
        for instance, (group, index) in enumerate(pool.nodes):
            program.groups[group][index].bind_addresses(cluster=pool.name, instance=instance)
    for pool in pools:
        nodes = [program.groups[group][index] for group, index in pool.nodes]
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, "nodes.pkl")
            serialization.serialize_functions(local, pool.name, [n.function for n in nodes])
            tf.io.gfile.copy(local, data_file(run_dir, pool), overwrite=True)
        written.append(data_file(run_dir, pool))
    return written


def display_name(config: ml_collections.ConfigDict, workdir: str) -> str:
    """The job's display name: the task, seed and run directory's last part."""
    name = os.path.basename(str(workdir).rstrip("/")) or "run"
    return f"bprl_{config.task}_seed{config.seed}_{name}"[:128]


def ship_prior_artifact(config: ml_collections.ConfigDict, directory: str):
    """`config` with `prior.artifact` copied into the run directory (`prior_artifact/`)
    when it is a path of this machine, which no replica can read."""
    from bprl.launch.rundir import storage

    artifact = str(config.prior.get("artifact", "") or "")
    if not artifact or storage.is_remote(artifact):
        return config
    from bprl.agents import prior_artifact

    try:
        prior_artifact.read_metadata(artifact)  # complete, checksums match
    except prior_artifact.ArtifactError as error:
        raise ConfigError(str(error)) from None
    target = storage.join(directory, "prior_artifact")
    storage.copy_tree(artifact, target, last=prior_artifact.METADATA)
    config = copy.deepcopy(config)
    config.prior.artifact = target
    return config
