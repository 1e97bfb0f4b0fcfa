"""The Vertex AI job's worker pools, planned from `config.cluster`.

Every node of the program (launch/program/graph.py) is one replica (one VM); nodes of
groups with the same machine, image and environment share a worker pool (Vertex AI allows
4). Here: the N1 machine type and GPU of each group, the image and environment its nodes
start with, and the pools themselves (`plan_pools`), which the job request
(launch/vertex/job_request.py), the check of `config.cluster` (launch/vertex/job.py) and
the rehearsal (launch/vertex/rehearsal.py) all read.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from bprl.launch.config import shape
from bprl.launch.config.errors import ConfigError
from bprl.launch.program import node_env

GROUPS = shape.GROUPS
MAX_WORKER_POOLS = 4  # Vertex AI custom jobs have at most 4 worker pools

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
# Set in the pools' environment so the stop node can cancel its own job
STOP_REGION_ENV = "BPRL_VERTEX_REGION"
STOP_PROJECT_ENV = "BPRL_VERTEX_PROJECT"


def machine_type(cpu: float, memory_gb: float) -> str:
    """The smallest N1 machine type with at least `cpu` vCPUs and `memory_gb` GiB."""
    fits = [(c + m, name) for name, (c, m) in _N1_MACHINES.items() if c >= cpu and m >= memory_gb]
    if not fits:
        raise ConfigError(
            f"cpu={cpu}, memory_gb={memory_gb} fits no Vertex AI N1 machine "
            f"(at most 96 vCPUs and 624 GiB)"
        )
    return min(fits)[1]


def group_sizes(config: ml_collections.ConfigDict) -> dict[str, int]:
    """Nodes per group of the program (launch/config/shape.py), empty groups left out; one
    VM per actor process: auto packing (actors.envs_per_process = 0) means one stream each."""
    sizes = shape.group_sizes(config, cores=int(config.actors.num_actors))
    return {group: n for group, n in sizes.items() if n > 0}


def learner_kernels(config: ml_collections.ConfigDict) -> str:
    """`resources.learner_kernels` as a Vertex AI learner runs it: the launching machine
    is not the learner's, so auto means xla_float32 there (set onednn_bfloat16 for a
    machine type with AVX512-BF16 or AMX)."""
    setting = str(config.resources.learner_kernels)
    return "xla_float32" if setting == "auto" else setting


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
        env.update(xla.learner_environment(learner_kernels(config), {}))
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


def pool_of_nodes(pools: list[Pool]) -> dict[tuple[str, int], tuple[str, int]]:
    """(group, index) -> (pool name, replica index)."""
    return {node: (pool.name, i) for pool in pools for i, node in enumerate(pool.nodes)}
