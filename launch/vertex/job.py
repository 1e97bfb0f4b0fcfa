"""`--launch=vertex_ai`: the program (launch/program/graph.py) as one Vertex AI custom job.

Every node is one replica (one VM) running the project's own image (the Dockerfile's),
started as `python -m bprl.launch.program.node_entry --data_file=<run dir>/nodes/<pool>.pkl`.
Nodes of groups with the same machine, image and environment share a worker pool (Vertex AI allows
4). On Vertex AI every replica reads `CLUSTER_SPEC` (pool -> `host:port` of each replica,
and its own pool and index), which is how Launchpad's Vertex address builder finds a
node's peers and its own port; the pickles are built the way Launchpad's vertex launcher
builds them (its public node API: launch context, address binding, serialization), but
nothing is submitted through XManager: one pure function (`custom_job_spec`) writes the
CustomJob request, and `submit` POSTs it to the Vertex AI REST API. `bprl run
--launch=vertex_ai_local` (launch/vertex/rehearsal.py) runs exactly that request on this machine.

Internal Launchpad API relied on (0.5.2): `Node.launch_context.initialize`,
`Node.input_handles` / `Handle.connect`, `PyNode.bind_addresses(cluster=, instance=)`,
`PyNode.function` and `launchpad.launch.serialization.serialize_functions`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import tempfile

import ml_collections

from bprl.launch.config.validate import ConfigError
from bprl.launch.program import node_env
from bprl.launch.rundir import layout

GROUPS = ("replay", "counter", "learner", "actor", "evaluator", "stopper")
MAX_WORKER_POOLS = 4  # Vertex AI custom jobs have at most 4 worker pools
PORT = 2222  # the port Vertex AI gives every replica in CLUSTER_SPEC
TERMINATION_NOTICE_SECS = 25  # SIGTERM -> final checkpoints -> exit (as local runs)

# Vertex AI N1 machine types (vCPUs, GiB): a group's (cpu, memory) must fit one of them.
_N1_MACHINES = {
    "n1-standard-4": (4, 15),
    "n1-standard-8": (8, 30),
    "n1-standard-16": (16, 60),
    "n1-standard-32": (32, 120),
    "n1-standard-64": (64, 240),
    "n1-standard-96": (96, 360),
    "n1-highmem-2": (2, 13),
    "n1-highmem-4": (4, 26),
    "n1-highmem-8": (8, 52),
    "n1-highmem-16": (16, 104),
    "n1-highmem-32": (32, 208),
    "n1-highmem-64": (64, 416),
    "n1-highmem-96": (96, 624),
    "n1-highcpu-16": (16, 14),
    "n1-highcpu-32": (32, 28),
    "n1-highcpu-64": (64, 57),
    "n1-highcpu-96": (96, 86),
}
# config name -> Vertex AI acceleratorType (the GPUs that N1 machines take)
ACCELERATORS = {
    "T4": "NVIDIA_TESLA_T4",
    "P4": "NVIDIA_TESLA_P4",
    "P100": "NVIDIA_TESLA_P100",
    "V100": "NVIDIA_TESLA_V100",
}
_ACCELERATOR_COUNTS = (1, 2, 4, 8)
# Set in the pools' environment so the stop node can cancel its own job
STOP_REGION_ENV = "BPRL_VERTEX_REGION"
STOP_PROJECT_ENV = "BPRL_VERTEX_PROJECT"
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


def machine_type(cpu: float, memory_gb: float) -> str:
    """The smallest N1 machine type with at least `cpu` vCPUs and `memory_gb` GiB."""
    fits = [(c + m, name) for name, (c, m) in _N1_MACHINES.items() if c >= cpu and m >= memory_gb]
    if not fits:
        raise ConfigError(
            f"cpu={cpu}, memory_gb={memory_gb} fits no Vertex AI N1 machine "
            f"(at most 96 vCPUs and 624 GiB)"
        )
    return min(fits)[1]


def validate_cluster(config: ml_collections.ConfigDict, submit: bool = True) -> None:
    """Raises ConfigError (one line) for the first problem in `config.cluster`.

    `submit=False` checks what a rehearsal needs (not the project and bucket).
    """
    if "cluster" not in config:
        raise ConfigError("the config has no `cluster` section (launch/config/defaults.py)")
    cluster = config.cluster
    for group in GROUPS:
        if group not in cluster:
            raise ConfigError(f"cluster.{group} is missing (cpu and memory_gb per group)")
        spec = cluster[group]
        if not spec.cpu > 0:
            raise ConfigError(f"cluster.{group}.cpu must be > 0, got {spec.cpu}")
        if not spec.memory_gb > 0:
            raise ConfigError(f"cluster.{group}.memory_gb must be > 0, got {spec.memory_gb}")
        try:
            machine_type(spec.cpu, spec.memory_gb)
        except ConfigError as error:
            raise ConfigError(f"cluster.{group}: {error}") from None
        if group != "learner" and spec.get("accelerator"):
            raise ConfigError(f"cluster.{group}.accelerator: only the learner takes a GPU")
    learner = cluster.learner
    accelerator = learner.get("accelerator", "")
    count = learner.get("accelerator_count", 0)
    if accelerator:
        if accelerator not in ACCELERATORS:
            raise ConfigError(
                f"cluster.learner.accelerator {accelerator!r} is not one of "
                f"{sorted(ACCELERATORS)} (or '' for none)"
            )
        if count not in _ACCELERATOR_COUNTS:
            raise ConfigError(
                f"cluster.learner.accelerator_count must be one of {_ACCELERATOR_COUNTS} "
                f"with accelerator {accelerator}, got {count}"
            )
        if not cluster.get("learner_image", ""):
            raise ConfigError(
                f"cluster.learner.accelerator={accelerator}: the project image installs "
                f"tensorflow-cpu, so the GPU would sit idle; set cluster.learner_image to "
                f"an image with a GPU TensorFlow 2.8 build (docs/cluster.md) or "
                f"accelerator=''"
            )
    elif count:
        raise ConfigError("cluster.learner.accelerator_count is set but accelerator is ''")
    if not cluster.region:
        raise ConfigError("cluster.region is empty (e.g. us-central1)")
    try:
        plan_pools(config)
    except ConfigError as error:
        raise ConfigError(f"cluster: {error}") from None
    if cluster.get("network", ""):
        # Reverb and Courier take unauthenticated connections and Courier unpickles what
        # it receives: a peered VPC would let any of its machines run code in the nodes.
        raise ConfigError(
            f"cluster.network={cluster.network!r} would peer the job with a VPC whose every "
            f"machine could reach the nodes' unauthenticated ports (Reverb, Courier); leave "
            f"it '' so only the job's own replicas reach them (docs/cluster.md)"
        )
    account = str(cluster.get("service_account", "") or "")
    if account and not re.fullmatch(r"[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com", account):
        raise ConfigError(
            f"cluster.service_account {account!r} is not a service account e-mail "
            f"(NAME@PROJECT.iam.gserviceaccount.com)"
        )
    if submit:
        if "@sha256:" not in default_image(config):
            raise ConfigError(
                f"cluster.image must be pinned by digest (IMAGE@sha256:...), got "
                f"{default_image(config)!r}: the node pickles name the image's modules, so "
                f"every replica must run the same build (docs/cluster.md, 'The image')"
            )
        if not cluster.project:
            raise ConfigError("cluster.project is empty: set --config.cluster.project=PROJECT")
        if not str(cluster.bucket).startswith("gs://"):
            raise ConfigError(
                f"cluster.bucket must be a gs:// path for the run directories, "
                f"got {cluster.bucket!r}"
            )


def group_sizes(config: ml_collections.ConfigDict) -> dict[str, int]:
    """Nodes per group of the program (launch/program/graph.py), empty groups left out."""
    from bprl.launch.config import packing

    sizes = {
        "replay": 1,
        "counter": 1,
        "learner": 1,
        # actor processes (one per VM): streams packed by actors.envs_per_process (auto: 1)
        "actor": len(packing.stream_groups(config, cores=int(config.actors.num_actors))),
        "evaluator": int(config.evaluators.num_evaluators),
        "stopper": 1,
    }
    return {group: n for group, n in sizes.items() if n > 0}


def learner_kernels_resolved(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`config` with `resources.learner_kernels` as a Vertex AI learner runs it: the
    launching machine is not the learner's, so auto means xla_float32 there (set
    onednn_bfloat16 for a machine type with AVX512-BF16 or AMX)."""
    if config.resources.learner_kernels != "auto":
        return config
    config = copy.deepcopy(config)
    config.resources.learner_kernels = "xla_float32"
    return config


def node_environment(config: ml_collections.ConfigDict, group: str) -> dict[str, str]:
    """The environment a node of `group` starts with on Vertex AI (and in the rehearsal).

    Set explicitly, because a Vertex replica gets only the image's environment and this.
    """
    from bprl.launch.config import xla

    # As local nodes (single-threaded numerical libraries but the learner's: many nodes may
    # share cores in the rehearsal; headless MuJoCo; quiet TensorFlow), logs unbuffered;
    # the learner also gets XLA fast math, oneDNN and its kernels' flags (launch/config/xla.py).
    env = {**node_env.node_environment(group), "PYTHONUNBUFFERED": "1"}
    if group == "learner":
        kernels = learner_kernels_resolved(config).resources.learner_kernels
        env.update(xla.learner_environment(kernels, {}))
    env[STOP_PROJECT_ENV] = str(config.cluster.project)
    env[STOP_REGION_ENV] = str(config.cluster.region)
    # TensorFlow 2 behaviour from the node process's first import on: TensorFlow sets this
    # when it is imported, so local nodes inherit it from their launcher; a replica that
    # starts without it had its learner's first update fail in the rehearsal ("Function
    # while_cond_N is not defined", "... is out of scope").
    env["TF2_BEHAVIOR"] = "1"
    return env


def default_image(config: ml_collections.ConfigDict) -> str:
    """The project image's URI: `cluster.image`, or the Artifact Registry default (a tag:
    fine for a rehearsal; a submission needs `cluster.image` pinned by digest)."""
    if config.cluster.get("image", ""):
        return str(config.cluster.image)
    project = config.cluster.project or "PROJECT"
    return f"{config.cluster.region}-docker.pkg.dev/{project}/bprl/bprl:latest"


@dataclasses.dataclass(frozen=True)
class Pool:
    """One Vertex AI worker pool: its replicas (one node each) and what they run on."""

    name: str  # workerpool0 .. workerpool3 (CLUSTER_SPEC's key)
    nodes: tuple[tuple[str, int], ...]  # (group, index in the group) of each replica
    machine_type: str
    accelerator: str  # Vertex acceleratorType, or ""
    accelerator_count: int
    image: str
    env: tuple[tuple[str, str], ...]  # sorted (name, value)

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(group for group, _ in self.nodes))


def plan_pools(config: ml_collections.ConfigDict) -> list[Pool]:
    """The worker pools of the job: groups with equal machine, image and environment share
    one. The first pool (Vertex AI's primary replica, exactly one, whose exit status is
    the job's) is the stop node alone: at the budget it has the final checkpoint written
    and exits 0, which ends the job SUCCEEDED."""
    keyed: dict[tuple, list[tuple[str, int]]] = {}
    for group, size in group_sizes(config).items():
        spec = config.cluster[group]
        accelerator = spec.get("accelerator", "") or ""
        image = default_image(config)
        if group == "learner" and config.cluster.get("learner_image", ""):
            image = str(config.cluster.learner_image)
        key = (
            machine_type(spec.cpu, spec.memory_gb),
            ACCELERATORS.get(accelerator, ""),
            int(spec.get("accelerator_count", 0) or 0) if accelerator else 0,
            image,
            tuple(sorted(node_environment(config, group).items())),
        )
        if group == "stopper":
            key = ("stopper", *key)  # never shared: it is the job's primary replica
        keyed.setdefault(key, []).extend((group, i) for i in range(size))
    pools = list(keyed.items())
    first = next(i for i, (key, _) in enumerate(pools) if key[0] == "stopper")
    key, nodes = pools.pop(first)
    pools.insert(0, (key[1:], nodes))
    if len(pools) > MAX_WORKER_POOLS:
        shared = sorted(g for g in GROUPS if g != "stopper")
        raise ConfigError(
            f"{len(pools)} worker pools needed: the stop node has the first to itself and "
            f"the groups {shared} differ in machine, GPU, image or environment; Vertex AI "
            f"allows {MAX_WORKER_POOLS}: give more of those groups equal cpu/memory_gb "
            f"(e.g. the counter the actors' machine)"
        )
    return [
        Pool(f"workerpool{i}", tuple(nodes), *key[:4], key[4])
        for i, (key, nodes) in enumerate(pools)
    ]


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


def pool_of_nodes(pools: list[Pool]) -> dict[tuple[str, int], tuple[str, int]]:
    """(group, index) -> (pool name, replica index)."""
    return {node: (pool.name, i) for pool in pools for i, node in enumerate(pool.nodes)}


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
        learner_kernels_resolved(config), run_dir, cores=config.actors.num_actors, ends_job=True
    )
    sizes = {group: len(nodes) for group, nodes in program.groups.items() if nodes}
    if sizes != group_sizes(config):
        raise ConfigError(f"cluster: program groups {sizes} differ from {group_sizes(config)}")
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


def run_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
    """A run directory under the bucket (`workdir` relative to it, or a gs:// path)."""
    if str(workdir).startswith("gs://"):
        return str(workdir).rstrip("/")
    return f"{str(config.cluster.bucket).rstrip('/')}/{str(workdir).strip('/')}"


def display_name(config: ml_collections.ConfigDict, workdir: str) -> str:
    """The job's display name: the task, seed and run directory's last part."""
    name = os.path.basename(str(workdir).rstrip("/")) or "run"
    return f"bprl_{config.task}_seed{config.seed}_{name}"[:128]


def access_token() -> str:
    """An OAuth token for the REST API: google-auth's default credentials where they are
    set up, else `gcloud auth print-access-token`."""
    adc = os.path.expanduser("~/.config/gcloud/application_default_credentials.json")
    try:  # only with credentials on disk: no probe of a metadata server from a workstation
        if not (os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or os.path.exists(adc)):
            raise FileNotFoundError(adc)
        import google.auth
        import google.auth.transport.requests

        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        credentials.refresh(google.auth.transport.requests.Request())
        return credentials.token
    except Exception:  # noqa: BLE001 - fall back to the gcloud CLI
        import subprocess

        try:
            out = subprocess.run(
                ["gcloud", "auth", "print-access-token"],
                capture_output=True,
                text=True,
                check=True,
            )
        except (OSError, subprocess.CalledProcessError) as error:
            raise ConfigError(
                f"no Google Cloud credentials: run `gcloud auth application-default login` "
                f"(google-auth) or `gcloud auth login` ({error})"
            ) from None
        return out.stdout.strip()


def submit(spec: dict, project: str, region: str, token: str) -> dict:
    """POSTs the CustomJob to Vertex AI (REST v1); returns the created job resource."""
    import requests

    url = (
        f"https://{region}-aiplatform.googleapis.com/v1/projects/{project}/locations/"
        f"{region}/customJobs"
    )
    response = requests.post(
        url, json=spec, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    if response.status_code >= 400:
        raise ConfigError(
            f"Vertex AI refused the job ({response.status_code}): "
            f"{' '.join(response.text.split())[:500]}"
        )
    return response.json()


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


def launch_vertex(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Writes the node pickles under the bucket and submits one run; returns its run dir."""
    validate_cluster(config, submit=True)
    token = access_token()  # before anything is written
    directory = run_dir(config, workdir)
    config = ship_prior_artifact(config, directory)
    write_node_pickles(config, directory)
    layout.save_config(config, directory)
    spec = custom_job_spec(config, directory, display_name(config, workdir))
    job = submit(spec, config.cluster.project, config.cluster.region, token)
    print(f"submitted {job.get('name', '?')}; run directory {directory}")
    for pool in plan_pools(config):
        print(f"  {pool.name}: {', '.join(pool.groups)} ({len(pool.nodes)} x {pool.machine_type})")
    print(f"watch it with: tensorboard --logdir {directory}")
    return directory


def launch_sweep(runs, workdir: str) -> int:
    """Submits every run of a sweep (launch/sweep.py plan) to Vertex AI; returns 0."""
    for run in runs:
        relative = os.path.join(workdir, run.variant, f"seed_{run.seed}")
        launch_vertex(run.config, relative)
    return 0
